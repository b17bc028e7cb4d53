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

from lrr_jax import data, masks, signs
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


def _cosine(config):
    """The paper's schedules: linear warm-up lr * (e + 1) / warmup_epochs (0.01 -> 0.1 over
    10 epochs), then per level a cosine from lr to lr_min (alpha = lr_min / lr) over
    epochs_per_level, per epoch (imp-lrr-lts `warmup_lr`, `cosine_lr`)."""
    lr, lr_min = float(config.lr), float(config.lr_min)
    epochs = max(int(config.warmup_epochs), 1)
    return (optax.linear_schedule(lr / epochs, lr, transition_steps=epochs - 1),
            optax.cosine_decay_schedule(lr, int(config.epochs_per_level), alpha=lr_min / lr))


def _imagenet_step(boundaries):
    """imp-lrr-lts's ImageNet schedules: the warm-up at 0.1 * lr (`warmup_lr` for
    `--set imagenet`), each level piecewise constant with drops of 10x at `boundaries`."""

    def make(config):
        lr = float(config.lr)
        scales = dict(boundaries)
        return (optax.constant_schedule(0.1 * lr),
                optax.piecewise_constant_schedule(scales.pop("init", 1.0) * lr, scales))
    return make


# Learning-rate schedules (`config.lr_schedule`): name -> config -> (warm-up, level), each a
# function of the epoch index within its phase.
LR_SCHEDULES = {
    "cosine": _cosine,
    # 'imagenet-step-warmup': 0.1*lr for epochs 0-9, lr to 39, 0.1*lr to 69, then 0.01*lr.
    "imagenet_step_warmup": _imagenet_step({"init": 0.1, 10: 10.0, 40: 0.1, 70: 0.1}),
    # 'imagenet-step': lr to epoch 39, 0.1*lr to 79, then 0.01*lr.
    "imagenet_step": _imagenet_step({40: 0.1, 80: 0.1}),
}


def lr_schedule(config, phase: str, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """Learning rate as a function of the step within a phase, constant within an epoch.

    optax schedules of the epoch index `step // steps_per_epoch`, so `state.step`
    stays the only counter and restarting the schedule (LRR) is `step = 0`.
    `config.lr_schedule` names the pair (`LR_SCHEDULES`); 'cosine' (default):
    'warmup' is lr * (e + 1) / warmup_epochs (0.01 -> 0.1 over 10 epochs),
    'level' a cosine from lr to lr_min (alpha = lr_min / lr) over
    epochs_per_level, per epoch (paper code).
    """
    warmup, level = LR_SCHEDULES[config.get("lr_schedule", "cosine")](config)
    if phase not in ("warmup", "level"):
        raise ValueError(f"unknown phase {phase!r}")
    per_epoch = warmup if phase == "warmup" else level
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
    one_step = _step_fn(apply_fn, config, phase, steps, masked)
    transform = batch_transform(config, image, mean, std)

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
            return step(state, transform(aug_key, pos, train_x[ids]), train_y[ids])

        state, metrics = jax.lax.scan(body, state, (positions, order))
        return state, jax.tree.map(lambda m: m.mean(0), metrics)

    if per_replica:  # each replica its own epoch (and keys); the data stay shared
        epoch = jax.vmap(functools.partial(run_epoch, one_step), in_axes=(0, None, None, 0))
    else:  # one epoch order; the step is vmapped over replicas sharing each batch
        epoch = functools.partial(run_epoch, jax.vmap(one_step, in_axes=(0, None, None)))
    return epoch, steps


def _step_fn(apply_fn, config, phase: str, steps_per_epoch: int, masked: bool = True):
    """The train step of one replica with the phase's optimizer and schedule."""
    return functools.partial(train_step, apply_fn=apply_fn, tx=make_optimizer(config),
                             lr_fn=lr_schedule(config, phase, steps_per_epoch), masked=masked)


def batch_transform(config, image: bool, mean, std, *, augment_on_device: bool = True):
    """(augmentation key, positions, raw batch) -> the normalized batch the step reads.

    Images get `config.augment`'s per-example transform (keyed by each
    example's position in the epoch), unless the host already applied it
    (`augment_on_device=False`: ImageNet's stream).
    """
    augment_images = image and config.augment and augment_on_device
    per_example = data.train_transform(config) if augment_images else None
    augment_images = per_example is not None

    def transform(aug_key, positions, x):
        if per_example is not None:
            x = augment.per_example(aug_key, positions, x, per_example)
        return augment.normalize(x, mean, std)

    return transform


def make_stream_step(*, apply_fn, config, phase: str, steps_per_epoch: int, num_devices: int,
                     mean: np.ndarray, std: np.ndarray, image: bool, per_replica: bool,
                     augment_on_device: bool) -> Callable:
    """Per-device function of one streamed step (`lrr_jax.data.stream`).

    (state, sums, x, y, keys, step, streams) -> (state, sums): `x`, `y` are
    this device's block of the global batch for each stream, (streams, local,
    ...); `streams` (K,) says which stream replica r reads; `keys` are the
    epoch keys as in `make_train_epoch` (one, or one per replica with
    `per_replica`); `step` is the step's index in the epoch, which gives each
    example its position (so on-device augmentation draws what the on-device
    pipeline draws for it); `sums` accumulates each replica's loss and
    accuracy over the epoch's steps (K,) (the epoch's metrics are sums /
    steps).
    """
    batch = config.batch_size
    local = batch // num_devices
    one_step = _step_fn(apply_fn, config, phase, steps_per_epoch)
    transform = batch_transform(config, image, mean, std, augment_on_device=augment_on_device)

    def run(state, sums, x, y, keys, step, streams):
        positions = step * batch + jax.lax.axis_index(AXIS) * local + jnp.arange(local)

        def replica(state_r, key, stream):
            xs = jax.lax.dynamic_index_in_dim(x, stream, keepdims=False)
            ys = jax.lax.dynamic_index_in_dim(y, stream, keepdims=False)
            return one_step(state_r, transform(jax.random.fold_in(key, 1), positions, xs), ys)

        if per_replica:
            state, metrics = jax.vmap(replica)(state, keys, streams)
        else:  # one batch for every replica, transformed once
            xs = transform(jax.random.fold_in(keys, 1), positions, x[0])
            state, metrics = jax.vmap(one_step, in_axes=(0, None, None))(state, xs, y[0])
        return state, jax.tree.map(jnp.add, sums, metrics)

    return run


def _eval_sums(apply_fn, mean, std):
    """(state of one replica, x, y, weight) -> (sum of weighted losses, weighted correct)."""

    def one_replica(state, x, y, w):
        variables = {"params": masks.apply(state.params, state.mask)}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        logits = apply_fn(variables, augment.normalize(x, mean, std), train=False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y)
        return jnp.sum(losses * w), jnp.sum(correct * w)

    return one_replica


def make_evaluate(*, apply_fn, num_devices: int, mean, std, eval_batch: int) -> Callable:
    """Per-device function (state, x, y, weight) -> {'loss', 'acc'} per replica.

    x, y, weight are the test set padded (weight 0) to a multiple of
    num_devices * eval_batch; each device evaluates a contiguous slice.
    """
    one_replica = _eval_sums(apply_fn, mean, std)

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


def make_stream_evaluate(*, apply_fn, mean, std) -> Callable:
    """Per-device function (state, x, y, weight) -> (loss sum, correct sum, weight sum).

    x, y, weight are this device's block of one streamed test batch; the sums
    (per replica, over all devices) are added up over the batches on the host.
    """
    one_replica = _eval_sums(apply_fn, mean, std)

    def evaluate(state, x, y, w):
        loss, correct = jax.vmap(one_replica, in_axes=(0, None, None, None))(state, x, y, w)
        return jax.lax.psum((loss, correct, w.sum()), AXIS)

    return evaluate


def per_device_eval_batch(n: int, num_devices: int, eval_batch: int) -> int:
    """`eval_batch` (per device), lowered for a split of n examples smaller than one
    batch per device."""
    return max(1, min(int(eval_batch), math.ceil(n / num_devices)))


def pad_for_eval(x: np.ndarray, y: np.ndarray, num_devices: int, eval_batch: int):
    """Pad a split to a multiple of num_devices * eval_batch.

    Returns x, y, weights (1 for real examples, 0 for padding) and the eval
    batch used (`eval_batch`, lowered for a split smaller than one batch per device).
    """
    n = x.shape[0]
    eval_batch = per_device_eval_batch(n, num_devices, eval_batch)
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
