"""Run a few epochs of a narrow ResNet on 1 and N devices; print loss trajectories as JSON.

Started by tests/test_parallel.py in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX starts.
"""

import json
import sys

import jax
import numpy as np

from lrr_jax import config_base, models, parallel, train


def trajectory(kind: str, num_devices: int, epochs: int = 3, sharded: bool = False) -> list[float]:
    c = config_base.get_base_config()
    c.model, c.width, c.batch_size, c.epochs_per_level = "resnet18", 0.0625, 64, epochs
    # A small learning rate keeps the tiny net out of the chaotic regime where
    # float32 reassociation differences grow exponentially with the steps.
    c.lr, c.lr_min = 0.01, 0.01
    c.num_replicas = 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(128, 8, 8, 3), dtype=np.uint8)
    y = (x[..., 0].mean(axis=(1, 2)) > 127).astype(np.int32)  # learnable labels
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    backend = parallel.Backend(kind, jax.local_devices()[:num_devices])
    model = models.create(c, 2, bn_axis_name=train.AXIS)
    state = train.create_replicas(model, c, [0, 1], np.zeros((1, 8, 8, 3), np.float32))
    per = 128 // num_devices if sharded else 128
    fn, _ = train.make_train_epoch(apply_fn=model.apply, config=c, phase="level", num_train=per,
                                   num_devices=num_devices, mean=mean, std=std, image=True,
                                   sharded=sharded)
    epoch = backend.map(fn, 4, donate_first=True, sharded=(1, 2) if sharded else ())
    state = backend.put(state)
    if sharded:  # device d holds examples d, d + D, ... (as driver.shard_train_data)
        xs, ys = (backend.put_sharded(np.stack([a[d::num_devices] for d in range(num_devices)]))
                  for a in (x, y))
    else:
        xs, ys = backend.put(x), backend.put(y)
    losses = []
    for e in range(epochs):
        state, m = epoch(state, xs, ys, jax.random.PRNGKey(e))
        losses += np.asarray(m["loss"]).tolist()
    return losses


if __name__ == "__main__":
    n = int(sys.argv[1])
    out = {f"{kind}_{d}": trajectory(kind, d) for kind in parallel.BACKENDS for d in (1, n)}
    out |= {f"{kind}_{n}_sharded": trajectory(kind, n, sharded=True) for kind in parallel.BACKENDS}
    print(json.dumps(out))
