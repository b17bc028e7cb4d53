"""A minimal vmapped MLP epoch in plain JAX: the floor `lrr_jax.bench --only=vmap` compares to.

    python scripts/vmap_reference.py --replicas=16

The quickstart's shapes (mnist1d 40 -> 256 -> 256 -> 10, batch 100, 40 steps,
SGD with momentum) with none of lrr_jax's machinery (no masks, augmentation,
on-device shuffling, replica state or collectives): one `lax.scan` epoch, as
K vmapped replicas and as one replica. Prints JSON with the seconds per epoch,
the matmul GFLOP/s of each and the speedup of K vmapped replicas over K
single-replica epochs. If lrr_jax's figures are close to these, the remaining
gap to the device's matmul peak is XLA's, not the engine's.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

SIZES = (40, 256, 256, 10)
BATCH, STEPS = 100, 40


def loss(params, xb, yb):
    h = xb
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, yb).mean()


def make_epoch(x, y, vmapped: bool):
    grad = jax.grad(loss)
    if vmapped:
        grad = jax.vmap(grad, in_axes=(0, None, None))

    def epoch(params, momentum):
        def body(carry, i):
            p, m = carry
            xb = jax.lax.dynamic_slice_in_dim(x, i * BATCH, BATCH)
            yb = jax.lax.dynamic_slice_in_dim(y, i * BATCH, BATCH)
            m = jax.tree.map(lambda a, g: 0.9 * a + g, m, grad(p, xb, yb))
            p = jax.tree.map(lambda a, v: a - 0.1 * v, p, m)
            return (p, m), None
        return jax.lax.scan(body, (params, momentum), jnp.arange(STEPS))[0]

    return jax.jit(epoch)


def seconds(fn, args, repeats):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    k, rng = args.replicas, np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(BATCH * STEPS, SIZES[0])), jnp.float32)
    y = jnp.asarray(rng.integers(0, SIZES[-1], BATCH * STEPS))
    params = [(jnp.asarray(rng.normal(size=(k, a, b)) * 0.05, jnp.float32), jnp.zeros((k, b)))
              for a, b in zip(SIZES[:-1], SIZES[1:])]
    momentum = jax.tree.map(jnp.zeros_like, params)
    vmapped = seconds(make_epoch(x, y, True), (params, momentum), args.repeats)
    one = jax.tree.map(lambda a: a[0], (params, momentum))
    single = seconds(make_epoch(x, y, False), one, args.repeats)
    flops = 6 * BATCH * STEPS * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    print(json.dumps({
        "replicas": k, "device": jax.devices()[0].device_kind,
        "vmapped_epoch_seconds": round(vmapped, 5), "single_epoch_seconds": round(single, 5),
        "vmapped_gflops_per_second": round(k * flops / vmapped / 1e9, 1),
        "single_gflops_per_second": round(flops / single / 1e9, 1),
        "vmap_speedup": round(k * single / vmapped, 3)}))


if __name__ == "__main__":
    main()
