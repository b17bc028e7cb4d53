"""Run-time invariants of the level loop; a violation stops the run (`main` exits 4).

Checked by the driver (all on the host, cheap next to a level's training):
- at the end of each level (`driver.MethodRun.check_invariants`): the number
  of unpruned weights is exactly `masks.scheduled_count` (without a mask
  source), the mask only shrank since the previous level, and it did not
  change during training;
- at the end of each pruned level, `check_pruned_inert`: replacing the raw
  values of the pruned weights by random numbers leaves the test loss and
  accuracy of the compiled evaluation unchanged (pruned weights contribute
  nothing to the forward pass; their gradients are zero by construction,
  `tests/test_train.py` checks that);
- right after each rewind, `check_rewind`: the rewound parts equal their
  rewind point and the kept parts equal the finished level's, per method
  (the table in `rewind.py`), and the step is 0.
"""

from __future__ import annotations

import jax
import numpy as np

from lrr_jax import masks, rewind


class InvariantViolation(AssertionError):
    """A run-time invariant failed: the results would be wrong, so the run stops."""


def _first_difference(a, b) -> str | None:
    """Name of the first leaf where pytrees `a` and `b` differ (structure or values), or None."""
    la = jax.tree_util.tree_flatten_with_path(a)[0]
    lb = jax.tree.leaves(b)
    if len(la) != len(lb):
        return f"structure ({len(la)} vs {len(lb)} leaves)"
    for (path, x), y in zip(la, lb):
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            return masks.path_name(path) or "<root>"
    return None


def _require_equal(what: str, a, b, level: int, method: str) -> None:
    where = _first_difference(a, b)
    if where is not None:
        raise InvariantViolation(f"{method} level {level}: after the rewind, {what} differ "
                                 f"from the expected values at {where}")


def check_rewind(method: str, state, *, level: int, prev, init, point, new_mask,
                 reset_momentum: bool = False, rewind_batch_stats: bool = False) -> None:
    """The start-of-level state right after `rewind.for_method`, against the method's table.

    `prev` is the finished level's state (old mask), `init` theta_0's state,
    `point` the warm-up state, `new_mask` the mask just pruned.
    """
    if np.any(np.asarray(state.step) != 0):
        raise InvariantViolation(f"{method} level {level}: the step is {state.step} after the "
                                 "rewind, not 0 (the learning-rate schedule did not restart)")
    _require_equal("the mask", state.mask, new_mask, level, method)
    if method in ("imp", "wr"):
        target = init if method == "imp" else point
        name = "theta_0" if method == "imp" else "the rewind point"
        _require_equal(f"the weights and {name}'s", state.params, target.params, level, method)
        _require_equal(f"the optimizer state and {name}'s", state.opt_state,
                       target.opt_state, level, method)
        stats = target.batch_stats if rewind_batch_stats else prev.batch_stats
        _require_equal("the BatchNorm statistics", state.batch_stats, stats, level, method)
    elif method == "lrr":
        _require_equal("the weights and the finished level's", state.params, prev.params,
                       level, method)
        opt = (jax.tree.map(np.zeros_like, prev.opt_state) if reset_momentum
               else prev.opt_state)
        _require_equal("the optimizer state", state.opt_state, opt, level, method)
        _require_equal("the BatchNorm statistics", state.batch_stats, prev.batch_stats,
                       level, method)
    elif method == "lrr_bn_rewind":
        bn = rewind.is_batchnorm_param(prev.params, prev.batch_stats)
        params = jax.tree.map(lambda f, p, q: q if f else p, bn, prev.params, point.params)
        _require_equal("the weights (BN from the rewind point, others kept)", state.params,
                       params, level, method)
        _require_equal("the BatchNorm statistics and the rewind point's", state.batch_stats,
                       point.batch_stats, level, method)
        _require_equal("the optimizer state and the rewind point's", state.opt_state,
                       point.opt_state, level, method)
    else:
        raise InvariantViolation(f"unknown method {method!r}")


def randomize_pruned(state, seed: int):
    """`state` (host arrays) with every pruned raw weight replaced by a N(0, 1) draw."""
    rng = np.random.default_rng(seed)

    def fill(p, m):
        p, m = np.asarray(p), np.asarray(m)
        if m.all():
            return p
        return np.where(m > 0, p, rng.standard_normal(p.shape).astype(p.dtype))

    return state.replace(params=jax.tree.map(fill, state.params, state.mask))


def check_pruned_inert(level: int, method: str, state, evaluate) -> None:
    """Test loss/accuracy do not move when the pruned raw weights change.

    `evaluate(host_state) -> {'loss', 'acc'}` is the run's compiled evaluation.
    Both calls run the same program on weights that are identical after the
    mask multiply, so the results agree to the last bit; the tolerance only
    absorbs non-deterministic reductions some accelerators may use.
    """
    if all(np.asarray(m).all() for m in jax.tree.leaves(state.mask)):
        return  # dense: nothing is pruned
    reference = evaluate(state)
    other = evaluate(randomize_pruned(state, seed=level))
    for key in ("loss", "acc"):
        a, b = np.asarray(reference[key]), np.asarray(other[key])
        if not np.allclose(a, b, rtol=1e-5, atol=1e-6):
            raise InvariantViolation(
                f"{method} level {level}: pruned weights change the test {key} "
                f"({a.tolist()} -> {b.tolist()} with random values in their place): the "
                "forward pass does not apply the mask")
