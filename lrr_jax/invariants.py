"""Run-time invariants of the level loop; a violation stops the run (`main` exits 4).

Checked by the level loop (`levels`; all on the host, cheap next to a level's training):
- at the end of each level (`check_level`): the number
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
  (`rewind.table`, the one place that defines it), and the step is 0.
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
    if len(la) != len(lb) or jax.tree.structure(a) != jax.tree.structure(b):
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
                 reset_momentum: bool = False, rewind_batch_stats: bool = False,
                 optimizer_from_point: bool = False) -> None:
    """The start-of-level state right after `rewind.for_method`, against `rewind.table`.

    `prev` is the finished level's state (old mask), `init` theta_0's state,
    `point` the warm-up state, `new_mask` the mask just pruned. Sign transfers
    come after this check (they change the weights on purpose).
    """
    if np.any(np.asarray(state.step) != 0):
        raise InvariantViolation(f"{method} level {level}: the step is {state.step} after the "
                                 "rewind, not 0 (the learning-rate schedule did not restart)")
    _require_equal("the mask", state.mask, new_mask, level, method)
    row = rewind.table(method, reset_momentum=reset_momentum,
                       rewind_batch_stats=rewind_batch_stats,
                       optimizer_from_point=optimizer_from_point)
    sources = {"finished": prev, "init": init, "point": point}

    def part(name, getter):
        source = row[name]
        if source == "zeros":
            return jax.tree.map(np.zeros_like, getter(prev))
        return getter(sources[source])

    words = {"init": "theta_0's", "point": "the rewind point's", "finished": "the finished "
             "level's", "zeros": "zeros"}
    bn = rewind.is_batchnorm_param(prev.params, prev.batch_stats)
    weights, bn_params = part("weights", lambda s: s.params), part("bn_params", lambda s: s.params)
    params = jax.tree.map(lambda f, w, b: b if f else w, bn, weights, bn_params)
    _require_equal(f"the weights and {words[row['weights']]} (BN scale/bias: "
                   f"{words[row['bn_params']]})",
                   state.params, params, level, method)
    _require_equal(f"the BatchNorm statistics and {words[row['batch_stats']]}",
                   state.batch_stats,
                   part("batch_stats", lambda s: s.batch_stats), level, method)
    _require_equal(f"the optimizer state and {words[row['opt_state']]}", state.opt_state,
                   part("opt_state", lambda s: s.opt_state), level, method)


def check_level(level: int, names: list[str], state, start, prev_mask,
                expected: list[int | None]) -> None:
    """Cheap end-of-level checks on K stacked replicas; a violation stops the run.

    `names[r]` labels replica r in messages; `expected[r]` is the number of
    unpruned weights its pruning rule planned (None: a transferred mask);
    `prev_mask` is the previous level's mask (None at level 0).
    """
    for r, name in enumerate(names):
        mask = jax.tree.map(lambda a, r=r: a[r], state.mask)
        kept, _ = masks.count(mask)
        if expected[r] is not None and kept != expected[r]:
            raise InvariantViolation(
                f"level {level} {name}: {kept} unpruned weights, planned {expected[r]}")
        if prev_mask is not None and expected[r] is not None:
            grew = any(np.any((np.asarray(m) > 0) & (np.asarray(p)[r] == 0)) for m, p in zip(
                jax.tree.leaves(mask), jax.tree.leaves(prev_mask)))
            if grew:
                raise InvariantViolation(f"level {level} {name}: the mask grew")
    for a, b in zip(jax.tree.leaves(state.mask), jax.tree.leaves(start.mask), strict=True):
        if not np.array_equal(a, b):
            raise InvariantViolation(f"level {level}: the mask changed during training")


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
