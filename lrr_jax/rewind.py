"""State surgery between levels: the only place that resets params, batch_stats, opt_state or step.

The level loop prunes first (a new mask) and then calls the rewind of the
replica's method on the finished level's state. Every mode leaves the mask
alone and sets the step to 0, which restarts the learning-rate schedule.

`table` says, per method, where each part of the start-of-level state comes
from: 'finished' (the level just trained, kept), 'init' (theta_0), 'point'
(the rewind point: the end of the warm-up) or 'zeros'. It is the paper
code's table (imp-lrr-lts main.py's rewinds); `invariants.check_rewind` checks every
rewind against it and `tests/test_rewind.py` writes it out again by hand.

| method | kernels (and biases) | BN scale/bias | BN running stats | optimizer state |
|---|---|---|---|---|
| imp | theta_0 | theta_0 | kept (paper code) | theta_0's |
| wr | the rewind point | the rewind point | kept | the rewind point's |
| lrr | kept | kept | kept | kept (momentum carries over), or zeros, or the rewind point's |
| lrr_bn_rewind | kept | the rewind point | the rewind point's | the rewind point's |

`rewind_batch_stats=True` also resets BN running stats for imp/wr.
`optimizer_from_point=True` (LRR with init signs, `studies.optimizer_from_point`)
restores the rewind point's optimizer state for lrr, as the paper code's
`reset_only_weight_sign` reloads `optimizer_{name}.pt` (imp-lrr-lts main.py:1405).

To add a mode: write its function and register it with its table row in
`MODES` (here, or from a config file), and add its test to tests/test_rewind.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from lrr_jax import masks

PyTree = Any
PARTS = ("weights", "bn_params", "batch_stats", "opt_state")
SOURCES = ("finished", "init", "point", "zeros")


def _restart(state):
    return state.replace(step=jax.numpy.zeros_like(state.step))


def rewind_weights(state, point, *, rewind_batch_stats: bool = False):
    """IMP (point = theta_0) and WR (point = the warm-up state): weights and optimizer rewound."""
    state = state.replace(params=point.params, opt_state=point.opt_state)
    if rewind_batch_stats:
        state = state.replace(batch_stats=point.batch_stats)
    return _restart(state)


def rewind_to_init(state, *, init, point, reset_momentum=False, rewind_batch_stats=False,
                   optimizer_from_point=False):
    """IMP: the surviving weights go back to theta_0."""
    del point, reset_momentum, optimizer_from_point
    return rewind_weights(state, init, rewind_batch_stats=rewind_batch_stats)


def weight_rewind(state, *, init, point, reset_momentum=False, rewind_batch_stats=False,
                  optimizer_from_point=False):
    """WR: the surviving weights go back to the end of the warm-up."""
    del init, reset_momentum, optimizer_from_point
    return rewind_weights(state, point, rewind_batch_stats=rewind_batch_stats)


def learning_rate_rewind(state, *, init=None, point=None, reset_momentum: bool = False,
                         rewind_batch_stats=False, optimizer_from_point: bool = False):
    """LRR: keep the trained weights; only the learning-rate schedule restarts.

    With `reset_momentum`, the optimizer state becomes zeros; with
    `optimizer_from_point`, the rewind point's (LRR with init signs).
    """
    del init, rewind_batch_stats
    if optimizer_from_point:
        state = state.replace(opt_state=point.opt_state)
    elif reset_momentum:
        state = state.replace(opt_state=jax.tree.map(jax.numpy.zeros_like, state.opt_state))
    return _restart(state)


def is_batchnorm_param(params: PyTree, batch_stats: PyTree) -> PyTree:
    """Bool pytree over params: leaves of modules that also hold BatchNorm running stats."""
    bn_modules = {masks.path_name(path).rsplit("/", 1)[0]
                  for path, _ in jax.tree_util.tree_flatten_with_path(batch_stats)[0]}

    def flag(path, _):
        return masks.path_name(path).rsplit("/", 1)[0] in bn_modules

    return jax.tree_util.tree_map_with_path(flag, params)


def learning_rate_rewind_bn(state, *, init=None, point, reset_momentum=False,
                            rewind_batch_stats=False, optimizer_from_point=False):
    """LRR with BN rewind: weights kept; BN scale/bias, running stats and optimizer rewound."""
    del init, reset_momentum, rewind_batch_stats, optimizer_from_point
    flags = is_batchnorm_param(state.params, state.batch_stats)
    params = jax.tree.map(lambda f, p, q: q if f else p, flags, state.params, point.params)
    return _restart(state.replace(params=params, batch_stats=point.batch_stats,
                                  opt_state=point.opt_state))


@dataclasses.dataclass(frozen=True)
class Mode:
    """A method's rewind and its row of the table.

    `row`: where each of `PARTS` of the start-of-level state comes from
    (`SOURCES`); `invariants.check_rewind` checks `rewind` against it.
    """

    rewind: Callable
    row: dict

    @property
    def needs_point(self) -> bool:
        """Whether it rewinds to the end of the warm-up (which must then lie within a level)."""
        return "point" in self.row.values()


# The registry: method name -> Mode. Validation and --help read it; a config file may add one.
MODES: dict[str, Mode] = {
    "imp": Mode(rewind_to_init, {"weights": "init", "bn_params": "init",
                                 "batch_stats": "finished", "opt_state": "init"}),
    "wr": Mode(weight_rewind, {"weights": "point", "bn_params": "point",
                               "batch_stats": "finished", "opt_state": "point"}),
    "lrr": Mode(learning_rate_rewind, {"weights": "finished", "bn_params": "finished",
                                       "batch_stats": "finished", "opt_state": "finished"}),
    "lrr_bn_rewind": Mode(learning_rate_rewind_bn, {
        "weights": "finished", "bn_params": "point", "batch_stats": "point",
        "opt_state": "point"}),
}


def table(method: str, *, reset_momentum: bool = False, rewind_batch_stats: bool = False,
          optimizer_from_point: bool = False) -> dict[str, str]:
    """Where each of `PARTS` of the start-of-level state comes from, for `method` and the
    options: `rewind_batch_stats` takes BN running statistics from where the weights come
    (a mode that rewinds its weights); `reset_momentum` zeroes, and `optimizer_from_point`
    takes from the rewind point, an optimizer state the mode keeps (LRR)."""
    row = dict(MODES[method].row)
    rewinds_weights = row["weights"] in ("init", "point")
    if rewind_batch_stats and rewinds_weights:
        row["batch_stats"] = row["weights"]
    if row["opt_state"] == "finished":
        if optimizer_from_point:
            row["opt_state"] = "point"
        elif reset_momentum:
            row["opt_state"] = "zeros"
    return row


def for_method(method: str, state, *, init, point, reset_momentum: bool = False,
               rewind_batch_stats: bool = False, optimizer_from_point: bool = False):
    """Start-of-level state for `method` from the finished level's state (mask already new).

    Args:
      method: a key of MODES.
      state: the finished level's state with the new mask.
      init: theta_0's state (IMP's rewind target).
      point: the warm-up state (WR's and LRR-BN's rewind target).
      reset_momentum: LRR only: zero the optimizer state.
      rewind_batch_stats: IMP/WR only: also reset BN running stats.
      optimizer_from_point: LRR only: the rewind point's optimizer state (LRR
        with init signs; takes precedence over reset_momentum).
    """
    if method not in MODES:
        raise ValueError(f"unknown method {method!r}; expected one of {tuple(MODES)}")
    return MODES[method].rewind(state, init=init, point=point, reset_momentum=reset_momentum,
                         rewind_batch_stats=rewind_batch_stats,
                         optimizer_from_point=optimizer_from_point)
