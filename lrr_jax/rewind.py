"""State surgery between levels: the only place that resets params, batch_stats, opt_state or step.

The driver prunes first (a new mask) and then calls the rewind of its method
on the finished level's state. Every mode leaves the mask alone and sets the
step to 0, which restarts the learning-rate schedule.

| method | weights | BN running stats | optimizer state |
|---|---|---|---|
| imp | theta_0 (kernels, biases, BN scale/bias) | kept (paper code) | theta_0's |
| wr | the rewind point (after warm-up) | kept | the rewind point's |
| lrr | kept | kept | kept (momentum carries over), or reset |
| lrr_bn_rewind | kept, BN scale/bias from the rewind point | rewind point's | rewind point's |

`rewind_batch_stats=True` also resets BN running stats for imp/wr.
"""

from __future__ import annotations

from typing import Any

import jax

from lrr_jax import masks

METHODS = ("imp", "wr", "lrr", "lrr_bn_rewind")
PyTree = Any


def _restart(state):
    return state.replace(step=jax.numpy.zeros_like(state.step))


def rewind_weights(state, point, *, rewind_batch_stats: bool = False):
    """IMP (point = theta_0) and WR (point = the warm-up state): weights and optimizer rewound."""
    state = state.replace(params=point.params, opt_state=point.opt_state)
    if rewind_batch_stats:
        state = state.replace(batch_stats=point.batch_stats)
    return _restart(state)


def learning_rate_rewind(state, *, reset_momentum: bool = False, point=None):
    """LRR: keep the trained weights; only the learning-rate schedule restarts.

    With `reset_momentum`, the optimizer state becomes zeros.
    """
    if reset_momentum:
        state = state.replace(opt_state=jax.tree.map(jax.numpy.zeros_like, state.opt_state))
    return _restart(state)


def is_batchnorm_param(params: PyTree, batch_stats: PyTree) -> PyTree:
    """Bool pytree over params: leaves of modules that also hold BatchNorm running stats."""
    bn_modules = {masks.path_name(path).rsplit("/", 1)[0]
                  for path, _ in jax.tree_util.tree_flatten_with_path(batch_stats)[0]}

    def flag(path, _):
        return masks.path_name(path).rsplit("/", 1)[0] in bn_modules

    return jax.tree_util.tree_map_with_path(flag, params)


def learning_rate_rewind_bn(state, point):
    """LRR with BN rewind: weights kept; BN scale/bias, running stats and optimizer rewound."""
    flags = is_batchnorm_param(state.params, state.batch_stats)
    params = jax.tree.map(lambda f, p, q: q if f else p, flags, state.params, point.params)
    return _restart(state.replace(params=params, batch_stats=point.batch_stats,
                                  opt_state=point.opt_state))


def for_method(method: str, state, *, init, point, reset_momentum: bool = False,
               rewind_batch_stats: bool = False):
    """Start-of-level state for `method` from the finished level's state (mask already new).

    Args:
      method: one of METHODS.
      state: the finished level's state with the new mask.
      init: theta_0's state (IMP's rewind target).
      point: the warm-up state (WR's and LRR-BN's rewind target).
      reset_momentum: LRR only: zero the optimizer state.
      rewind_batch_stats: IMP/WR only: also reset BN running stats.
    """
    if method == "imp":
        return rewind_weights(state, init, rewind_batch_stats=rewind_batch_stats)
    if method == "wr":
        return rewind_weights(state, point, rewind_batch_stats=rewind_batch_stats)
    if method == "lrr":
        return learning_rate_rewind(state, reset_momentum=reset_momentum)
    if method == "lrr_bn_rewind":
        return learning_rate_rewind_bn(state, point)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
