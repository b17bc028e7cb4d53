"""The paper's studies as pieces the level loop calls: transfers and sign perturbation.

- Mask transfer (`mask_source`): level k trains with the mask the source run
  trained its level k with.
- Sign transfer (`sign_transfer`, optionally from `sign_source`): after the
  rewind, magnitudes and signs are combined (`signs.transfer`). A sign source
  gives its level-k final signs to level k (`sign_source_level='same'`, the
  paper code) or its level k-1 ones (`'previous'`). LRR with init signs takes
  the signs, and the optimizer state, of the rewind point
  (`init_signs_from='rewind_point'`, the paper code) or sign(theta_0) with
  the momentum kept (`'theta0'`); the optimizer part is LRR's rewind row
  (`rewind.table(..., optimizer_from_point=True)`), checked by
  `invariants.check_rewind`.
- Sign perturbation (`perturb_probs`): before epochs e with
  e % perturb_every == perturb_every - 1 of a level (paper code: 29, 59, ...,
  149 of 150), each unpruned weight's sign flips with the replica's
  probability; `perturb_recovery_epochs` > 1 stops the flips that many epochs
  before the level's end (a longer recovery budget).

A source run is a run directory of one method with as many replicas as each
method of this run; replica i of any method here uses the source's replica i.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from lrr_jax import checkpoints, replicas, signs, train
from lrr_jax.errors import ConfigError


def _source_state(config, key: str, level: int, like):
    src = checkpoints.Store(config[key])
    name = checkpoints.level_name(level)
    if not src.exists(name):
        raise ConfigError(key, f"{config[key]} has no finished level {level}")
    state, _ = src.restore(name, like)
    return state


def source_mask(config, reps, level: int, like_one_method):
    """The source's level-k masks for `reps` (the mask it trained level k with)."""
    state = _source_state(config, "mask_source", level, like_one_method)
    return replicas.take(state.mask, [r.index for r in reps])


SIGN_SOURCE_LEVELS = ("same", "previous")
INIT_SIGNS_FROM = ("rewind_point", "theta0")


def sign_source_level(config, level: int) -> int:
    """The source level whose final weights give level `level` its signs.

    'same' (default): the source's level k. The paper code loads
    `sign_list_{load_expt_sign}_{level}` (imp-lrr-lts main.py:1286) right after
    `level += 1` (main.py:1269), i.e. indexed by the level about to be trained,
    while every level-indexed file it writes is named after the level whose
    training produced it (`mask_{name}_{level}`, `model_{name}_{level}`,
    main.py:1267-1268, written before the increment). The sign lists are not
    written anywhere in that repository; named by the same rule,
    `sign_list_X_k` holds run X's signs at the end of its level k.
    'previous': the source's level k-1 final weights, the ones its level k
    starts from (lrr_jax's behaviour before this key existed).
    """
    return level if config.sign_source_level == "same" else level - 1


def source_params(config, reps, level: int, like_one_method):
    """The source's weights whose signs level `level` takes (`sign_source_level`)."""
    state = _source_state(config, "sign_source", sign_source_level(config, level),
                          like_one_method)
    return replicas.take(state.params, [r.index for r in reps])


def optimizer_from_point(config) -> bool:
    """LRR with init signs restores the rewind point's optimizer state (paper code).

    imp-lrr-lts main.py:1397-1411 (`reset_only_weight_sign`): the signs come
    from `model_{name}_init.pt` and the optimizer is reloaded from
    `optimizer_{name}.pt`; both are saved after the warm-up (main.py:1024-1025),
    i.e. at the rewind point (theta_0 without warm-up).
    """
    return config.sign_transfer == "init_signs" and config.init_signs_from == "rewind_point"


@dataclasses.dataclass(frozen=True)
class SignInputs:
    """Where a sign transfer takes signs and magnitudes from (stacked, one per replica):
    theta_0, the rewind point, the replicas' trained weights of the previous level, and
    the sign source run's weights (None without one)."""

    init: Any
    point: Any
    trained_params: Any
    source: Any = None


def transfer_signs(config, reps, level: int, state, inputs: SignInputs):
    """Apply `config.sign_transfer` to each replica of a start-of-level state.

    Without a sign source the signs are the replica's own trained ones: level
    k-1's final weights before the rewind (`inputs.trained_params`; paper code:
    reset_weight_amplitude). 'init_signs' takes the signs of the rewind point
    or of theta_0, per `init_signs_from`.
    """
    sign_of = inputs.source if inputs.source is not None else inputs.trained_params
    init = inputs.init
    if optimizer_from_point(config):  # init_signs from the rewind point
        init = inputs.point  # the paper code's model_{name}_init.pt: the end of the warm-up
    one = replicas.one
    out = [signs.transfer(config.sign_transfer, one(state.params, i), one(init.params, i),
                          one(sign_of, i), one(state.mask, i), seed=r.seed * 1000 + level)
           for i, r in enumerate(reps)]
    return state.replace(params=replicas.stack(out))


def perturbs_before(config, epoch: int) -> bool:
    """True when the signs are perturbed before `epoch` of a level (paper code's timing).

    Epochs e with e % perturb_every == perturb_every - 1, up to the one that leaves
    `perturb_recovery_epochs` epochs of training after it (1, the default, restricts
    nothing: no epoch comes after the last).
    """
    every = int(config.perturb_every)
    last = int(config.epochs_per_level) - int(config.get("perturb_recovery_epochs", 1))
    return epoch % every == every - 1 and epoch <= last


def steps_after_last_flip(config, steps_per_epoch: int) -> int | None:
    """Training steps between a level's last sign perturbation and its end (recovery budget)."""
    flips = [e for e in range(int(config.epochs_per_level)) if perturbs_before(config, e)]
    if not flips:
        return None
    return (int(config.epochs_per_level) - flips[-1]) * steps_per_epoch


def perturbation_keys(config, reps, level: int, epoch: int) -> jax.Array:
    """One key per replica for the sign flips before `epoch`.

    per_replica: keyed by the replica's seed; shared: one key of `config.seed`
    split over the replicas of a method, as before data_order existed.
    """
    if config.data_order == "per_replica":
        return np.stack([np.asarray(jax.random.fold_in(replicas.epoch_key(r.seed, level, epoch),
                                                       7)) for r in reps])
    shared = jax.random.fold_in(replicas.epoch_key(int(config.seed), level, epoch), 7)
    keys = np.asarray(jax.random.split(shared, len(replicas.replica_settings(config))))
    return keys[np.asarray([r.index for r in reps])]


def perturb(config, reps, state, level: int, epoch: int, put):
    """`state` (on the devices) with the replicas' signs perturbed before `epoch`."""
    keys = perturbation_keys(config, reps, level, epoch)
    probs = np.asarray([r.perturb_prob for r in reps], np.float32)
    return put(train.perturb_signs(state, keys, probs))
