"""lrr_jax: IMP, weight rewinding and learning-rate rewinding in JAX/Flax.

Reproduces "Masks, Signs, and Learning Rate Rewinding" (Gadhikar & Burkholz,
ICLR 2024). Run `python -m lrr_jax.main --config=configs/quickstart.py
--workdir=/tmp/quick`; analyse finished runs with

    import lrr_jax
    level = lrr_jax.load_level("/tmp/quick/lrr", 3)   # or "init", "rewind"
    level["params"], level["mask"], level["batch_stats"]

`load_level` is imported lazily so that `lrr_jax.reporting` stays free of JAX.
"""

__version__ = "0.1.0"
__all__ = ["load_level"]


def __getattr__(name):
    if name == "load_level":
        from lrr_jax import driver
        return driver.load_level
    raise AttributeError(f"module 'lrr_jax' has no attribute {name!r}")
