"""The train step, one epoch as a compiled scan, and evaluation.

One `TrainState` with one step counter. The learning rate is a function of
`state.step` alone (optax keeps no count), so rewinding the schedule for LRR
is `step = 0` and nothing can drift apart. Masks multiply the params inside
the loss, so gradients of pruned weights are exactly zero.

Everything here is written per device: `parallel` maps it over devices with
the data axis `AXIS`; gradients, metrics and BatchNorm statistics are averaged
over that axis. Every function is also `jax.vmap`ped over a leading replica
axis of the state (seeds, perturbation probabilities), so K models share each
batch inside one compiled program.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrr_jax import masks, signs
from lrr_jax.data import augment

AXIS = "data"
PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, for one replica (or K stacked)."""

    step: jax.Array  # steps taken in the current phase (warm-up or level)
    params: PyTree  # raw parameters; the forward pass uses params * mask
    batch_stats: PyTree  # BatchNorm running statistics ({} for models without BN)
    opt_state: PyTree  # optimizer state (momentum buffer)
    mask: PyTree  # 0/1 float32, structure of params


def make_optimizer(config) -> optax.GradientTransformation:
    """SGD with coupled weight decay and heavy-ball momentum, without the learning rate.

    As PyTorch's SGD (paper code): g <- g + wd * w; b <- mu * b + g; w <- w - lr * b.
    The caller scales by -lr(step).
    """
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.trace(decay=config.momentum, nesterov=False),
    )


def lr_schedule(config, phase: str, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """Learning rate as a function of the step within a phase, constant within an epoch.

    optax schedules of the epoch index `step // steps_per_epoch`, so `state.step`
    stays the only counter and restarting the schedule (LRR) is `step = 0`:
    'warmup': `optax.linear_schedule`, lr * (e + 1) / warmup_epochs (0.01 -> 0.1
    over 10 epochs); 'level': `optax.cosine_decay_schedule` from lr to lr_min
    (alpha = lr_min / lr) over epochs_per_level, per epoch (paper code).
    """
    lr, lr_min = float(config.lr), float(config.lr_min)
    if phase == "warmup":
        epochs = max(int(config.warmup_epochs), 1)
        per_epoch = optax.linear_schedule(lr / epochs, lr, transition_steps=epochs - 1)
    elif phase == "level":
        per_epoch = optax.cosine_decay_schedule(lr, int(config.epochs_per_level),
                                                alpha=lr_min / lr)
    else:
        raise ValueError(f"unknown phase {phase!r}")
    return lambda step: per_epoch(step // steps_per_epoch)


def create_state(model, config, rng: jax.Array, sample_x: jax.Array) -> TrainState:
    """theta_0 of one replica: Kaiming-normal kernels, dense mask, zero momentum."""
    variables = model.init(rng, sample_x, train=False)
    params = variables["params"]
    tx = make_optimizer(config)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        mask=jax.tree.map(lambda p: jnp.ones(p.shape, jnp.float32), params),
    )


def replica_initializer(model, config, sample_x) -> Callable[[list[int]], TrainState]:
    """A compiled function: seeds -> K replicas stacked on a leading axis (r from seeds[r])."""
    init = jax.jit(jax.vmap(lambda k: create_state(model, config, k, sample_x)))
    return lambda seeds: init(jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds]))


def create_replicas(model, config, seeds, sample_x) -> TrainState:
    """K replicas stacked on a leading axis, replica r initialized from seeds[r]."""
    return replica_initializer(model, config, sample_x)(seeds)


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(state: TrainState, x, y, *, apply_fn, tx, lr_fn,
               masked: bool = True) -> tuple[TrainState, dict]:
    """One SGD step of one replica on this device's share of the batch.

    `masked=False` (benchmarks only) drops the mask multiply: the dense step.
    """
    # Under shard_map, gradients of replicated params come back summed over
    # devices; marking them device-varying first makes the pmean below the
    # only reduction, the same as under pmap.
    params = jax.lax.pcast(state.params, AXIS, to="varying")

    def loss_fn(p):
        variables = {"params": masks.apply(p, state.mask) if masked else p}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
            logits, updates = apply_fn(variables, x, train=True, mutable=["batch_stats"])
            new_stats = updates["batch_stats"]
        else:
            logits, new_stats = apply_fn(variables, x, train=True), state.batch_stats
        return cross_entropy(logits, y), (logits, new_stats)

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    grads = jax.lax.pmean(grads, AXIS)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    lr = lr_fn(state.step)
    params = jax.tree.map(lambda p, u: p - lr * u, state.params, updates)
    metrics = {"loss": loss, "acc": jnp.mean(jnp.argmax(logits, -1) == y)}
    metrics = jax.lax.pmean(metrics, AXIS)
    return state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                         opt_state=opt_state), metrics


def make_train_epoch(*, apply_fn, config, phase: str, num_train: int, num_devices: int,
                     mean: np.ndarray, std: np.ndarray, image: bool,
                     masked: bool = True, sharded: bool = False,
                     per_replica: bool = False) -> tuple[Callable, int]:
    """Per-device function (state, train_x, train_y, key) -> (state, metrics) for one epoch.

    Data order: with `per_replica=False` (`config.data_order = 'shared'`) `key`
    is one PRNG key and every replica sees the same batches and augmentation;
    with `per_replica=True` `key` holds one key per replica (K, 2) and each
    replica draws its own permutation and crops, as a separate run would: the
    K replicas then gather K batches per step instead of one (K times the
    input work and batch memory; the model's work is the same).

    Replicated data (`sharded=False`): every device holds the whole training
    set (`num_train` examples); the epoch's permutation comes from `key` (the
    same on every device) and each device takes its slice of every global
    batch, so the result does not depend on the device count.

    Sharded data (`sharded=True`, `config.shard_train_data`): each device holds
    only its own shard of `num_train` examples (per device) and permutes it
    with `key` folded with its device index; a global batch is every device's
    local batch. The data order then depends on the device count (and on
    nothing else: N devices on one process or on several give the same run).

    The last partial batch is dropped. Returns the function and the number of
    steps per epoch.
    """
    batch = config.batch_size
    local = batch // num_devices
    steps = (num_train // local) if sharded else (num_train // batch)
    tx = make_optimizer(config)
    lr_fn = lr_schedule(config, phase, steps)
    one_step = functools.partial(train_step, apply_fn=apply_fn, tx=tx, lr_fn=lr_fn,
                                 masked=masked)
    augment_images = image and config.augment

    def run_epoch(step, state, train_x, train_y, key):
        dev = jax.lax.axis_index(AXIS)
        # Position of each of this device's examples in the global epoch order:
        # (steps, local). It keys the augmentation of that example.
        positions = jnp.arange(steps * batch).reshape(steps, num_devices, local)
        positions = jax.lax.dynamic_index_in_dim(positions, dev, axis=1, keepdims=False)
        if sharded:
            perm = jax.random.permutation(jax.random.fold_in(key, dev), num_train)
            order = perm[: steps * local].reshape(steps, local)
        else:
            perm = jax.random.permutation(key, num_train)[: steps * batch]
            order = perm[positions]
        aug_key = jax.random.fold_in(key, 1)

        def body(state, pos_ids):
            pos, ids = pos_ids
            x, y = train_x[ids], train_y[ids]
            if augment_images:
                x = augment.per_example(aug_key, pos, x, augment.train_transform(config))
            x = augment.normalize(x, mean, std)
            return step(state, x, y)

        state, metrics = jax.lax.scan(body, state, (positions, order))
        return state, jax.tree.map(lambda m: m.mean(0), metrics)

    if per_replica:  # each replica its own epoch (and keys); the data stay shared
        epoch = jax.vmap(functools.partial(run_epoch, one_step), in_axes=(0, None, None, 0))
    else:  # one epoch order; the step is vmapped over replicas sharing each batch
        epoch = functools.partial(run_epoch, jax.vmap(one_step, in_axes=(0, None, None)))
    return epoch, steps


def make_evaluate(*, apply_fn, num_devices: int, mean, std, eval_batch: int) -> Callable:
    """Per-device function (state, x, y, weight) -> {'loss', 'acc'} per replica.

    x, y, weight are the test set padded (weight 0) to a multiple of
    num_devices * eval_batch; each device evaluates a contiguous slice.
    """

    def one_replica(state, x, y, w):
        variables = {"params": masks.apply(state.params, state.mask)}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        logits = apply_fn(variables, augment.normalize(x, mean, std), train=False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y)
        return jnp.sum(losses * w), jnp.sum(correct * w)

    def evaluate(state, x, y, w):
        per_dev = x.shape[0] // num_devices
        start = jax.lax.axis_index(AXIS) * per_dev
        xs, ys, ws = (jax.lax.dynamic_slice_in_dim(a, start, per_dev) for a in (x, y, w))
        nb = per_dev // eval_batch
        xs, ys, ws = (a.reshape(nb, eval_batch, *a.shape[1:]) for a in (xs, ys, ws))

        def body(carry, batch):
            loss, correct = jax.vmap(one_replica, in_axes=(0, None, None, None))(state, *batch)
            return (carry[0] + loss, carry[1] + correct), None

        k = jax.tree.leaves(state.step)[0].shape[0]
        # The per-device sums vary over devices until the psum below (shard_map checks this).
        zeros = jax.lax.pcast(jnp.zeros((k,), jnp.float32), AXIS, to="varying")
        (loss, correct), _ = jax.lax.scan(body, (zeros, zeros), (xs, ys, ws))
        loss, correct, count = jax.lax.psum((loss, correct, ws.sum()), AXIS)
        return {"loss": loss / count, "acc": correct / count}

    return evaluate


def pad_for_eval(x: np.ndarray, y: np.ndarray, num_devices: int, eval_batch: int):
    """Pad a split to a multiple of num_devices * eval_batch.

    Returns x, y, weights (1 for real examples, 0 for padding) and the eval
    batch used (`eval_batch`, lowered for a split smaller than one batch per device).
    """
    n = x.shape[0]
    eval_batch = max(1, min(eval_batch, math.ceil(n / num_devices)))
    chunk = num_devices * eval_batch
    total = math.ceil(n / chunk) * chunk
    pad = total - n
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros(pad, y.dtype)])
    return x, y, w, eval_batch


@functools.partial(jax.jit, donate_argnums=0)
def perturb_signs(state: TrainState, keys: jax.Array, probs: jax.Array) -> TrainState:
    """Flip each unpruned weight's sign with its replica's probability (leading axis K).

    `keys`: one PRNG key per replica, (K, 2).
    """
    params = jax.vmap(signs.perturb)(state.params, state.mask, keys, probs)
    return state.replace(params=params)
