"""lrr_jax: IMP, weight rewinding and learning-rate rewinding in JAX/Flax.

Reproduces "Masks, Signs, and Learning Rate Rewinding" (Gadhikar & Burkholz,
ICLR 2024). Run `python -m lrr_jax.main --config=configs/quickstart.py
--workdir=/tmp/quick`; analyse finished runs with

    import lrr_jax
    df = lrr_jax.load_results("/tmp/quick")            # results.csv rows, every run
    flips = lrr_jax.load_results("/tmp/quick", kind="sign_flips")
    level = lrr_jax.load_level("/tmp/quick/lrr", 3)   # or "init", "rewind"
    level["params"], level["mask"], level["batch_stats"]

Both are imported lazily: `load_results` (`lrr_jax.reporting.analysis`, no
JAX) and `load_level` (reads checkpoints, imports JAX), so that
`import lrr_jax.reporting` stays free of JAX.
"""

__version__ = "0.1.0"
__all__ = ["load_level", "load_results"]


def __getattr__(name):
    if name == "load_level":
        from lrr_jax import workdir
        return workdir.load_level
    if name == "load_results":
        from lrr_jax.reporting import analysis
        return analysis.load_results
    raise AttributeError(f"module 'lrr_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
