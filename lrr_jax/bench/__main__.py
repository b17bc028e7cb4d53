"""`python -m lrr_jax.bench`: see the package docstring and `lrr_jax/bench/cli.py`."""

from lrr_jax.bench import cli

if __name__ == "__main__":
    cli.run()
