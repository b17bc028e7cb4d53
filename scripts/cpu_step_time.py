"""Time the engine's compiled train step for a CIFAR ResNet on this machine.

    python scripts/cpu_step_time.py --model=resnet18 --batch=256 --steps=3

Builds the same per-device epoch program the driver runs (lax.scan over steps,
masks multiplied in, on-device crop/flip) on random CIFAR-shaped data, runs
one epoch to compile, then times epochs of `--steps` steps and prints seconds
per step (median) as JSON. `--plain` times the same `train.train_step` jitted
on its own instead (no scan): on XLA:CPU, convolutions inside a loop body run
much more slowly than in a standalone program.
"""

import argparse
import functools
import json
import os
import time

import jax
import numpy as np

from lrr_jax import config_base, models, parallel, train


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--plain", action="store_true", help="time one jitted step, no scan")
    a = p.parse_args()
    c = config_base.get_base_config()
    c.model, c.width, c.batch_size, c.dtype = a.model, a.width, a.batch, a.dtype
    n = a.batch * a.steps
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=(n,), dtype=np.int32)
    backend = parallel.Backend("pmap")
    model = models.create(c, 10, bn_axis_name=train.AXIS)
    state = train.create_replicas(model, c, [0], np.zeros((1, 32, 32, 3), np.float32))
    fn, steps = train.make_train_epoch(apply_fn=model.apply, config=c, phase="level",
                                       num_train=n, num_devices=backend.num_devices,
                                       mean=np.full(3, 0.5, np.float32),
                                       std=np.full(3, 0.25, np.float32), image=True)
    if a.plain:
        return plain_step(model, c, state, x, y, a)
    epoch = backend.map(fn, 4, donate_first=True)
    state, xs, ys = backend.put(state), backend.put(x), backend.put(y)
    t0 = time.perf_counter()
    state, m = epoch(state, xs, ys, jax.random.PRNGKey(0))
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        state, m = epoch(state, xs, ys, jax.random.PRNGKey(r + 1))
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"model": a.model, "width": a.width, "batch": a.batch, "dtype": a.dtype,
                      "device": jax.devices()[0].device_kind, "steps_per_epoch": steps,
                      "first_epoch_seconds_incl_compile": round(compile_s, 2),
                      "step_seconds_median": round(float(np.median(times)), 3),
                      "images_per_second": round(a.batch / float(np.median(times)), 1),
                      "loadavg": os.getloadavg()}))


def plain_step(model, c, state, x, y, a):
    """Time `train.train_step` as one pmapped program over one batch (no scan)."""
    step = functools.partial(train.train_step, apply_fn=model.apply,
                             tx=train.make_optimizer(c), lr_fn=lambda s: c.lr)
    f = jax.pmap(step, axis_name=train.AXIS)
    bx = (x[None, : a.batch].astype(np.float32) / 255.0 - 0.5) / 0.25
    by = y[None, : a.batch]
    t0 = time.perf_counter()
    state, m = f(state, bx, by)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        state, m = f(state, bx, by)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"model": a.model, "width": a.width, "batch": a.batch, "dtype": a.dtype,
                      "mode": "plain jitted step", "device": jax.devices()[0].device_kind,
                      "first_call_seconds_incl_compile": round(first, 2),
                      "step_seconds": [round(t, 2) for t in times],
                      "step_seconds_median": round(float(np.median(times)), 3),
                      "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
