"""The paper's studies as pieces the level loop calls: transfers and sign perturbation.

- Mask transfer (`mask_source`): level k trains with the mask the source run
  trained its level k with.
- Sign transfer (`sign_transfer`, optionally from `sign_source`): after the
  rewind, magnitudes and signs are combined (`signs.transfer`).
- Sign perturbation (`perturb_probs`): before epochs e with
  e % perturb_every == perturb_every - 1 of a level (paper code: 29, 59, ...,
  149 of 150), each unpruned weight's sign flips with the replica's
  probability.

A source run is a run directory of one method with as many replicas as each
method of this run; replica i of any method here uses the source's replica i.
"""

from __future__ import annotations

import jax
import numpy as np

from lrr_jax import checkpoints, config_base, replicas, signs, train
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


def source_params(config, reps, level: int, like_one_method):
    """The weights that start the source's level k: its level k-1 final weights."""
    state = _source_state(config, "sign_source", level - 1, like_one_method)
    return replicas.take(state.params, [r.index for r in reps])


def transfer_signs(config, reps, level: int, state, init, trained_params, source):
    """Apply `config.sign_transfer` to each replica of a start-of-level state.

    Without a sign source the signs are the replica's own trained ones: level
    k-1's final weights before the rewind (`trained_params`; paper code:
    reset_weight_amplitude).
    """
    sign_of = source if source is not None else trained_params
    one = replicas.one
    out = [signs.transfer(config.sign_transfer, one(state.params, i), one(init.params, i),
                          one(sign_of, i), one(state.mask, i), seed=r.seed * 1000 + level)
           for i, r in enumerate(reps)]
    return state.replace(params=replicas.stack(out))


def perturbs_before(config, epoch: int) -> bool:
    """True when the signs are perturbed before `epoch` of a level (paper code's timing)."""
    every = int(config.perturb_every)
    return epoch % every == every - 1


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
    keys = np.asarray(jax.random.split(shared, len(config_base.replica_settings(config))))
    return keys[np.asarray([r.index for r in reps])]


def perturb(config, reps, state, level: int, epoch: int, put):
    """`state` (on the devices) with the replicas' signs perturbed before `epoch`."""
    keys = perturbation_keys(config, reps, level, epoch)
    probs = np.asarray([r.perturb_prob for r in reps], np.float32)
    return put(train.perturb_signs(state, keys, probs))
