"""One process of a multi-process CPU run (or the 1-process reference); prints JSON.

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR [driver-only]

Started by tests/test_multihost.py with
XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts. With
NUM_PROCESSES > 1 it joins the others through `lrr_jax.distributed` (gloo CPU
collectives on localhost). Prints one JSON line: the device counts this
process sees, the loss trajectories of a small ResNet (2 vmapped replicas,
both backends) and the result rows of a full `campaign.run` of a tiny MLP
campaign in WORKDIR.
"""

import dataclasses
import json
import os
import sys
import time


def main():
    pid, nproc, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    from lrr_jax import distributed

    if nproc > 1:
        distributed.initialize(f"127.0.0.1:{port}", nproc, pid)
    import flax.linen as nn
    import jax
    import numpy as np

    from lrr_jax import campaign, config_base, engine, parallel
    from lrr_jax import train as lrr_train

    class TinyConvNet(nn.Module):
        """conv - BatchNorm (statistics averaged over the global data axis) - dense."""

        @nn.compact
        def __call__(self, x, train):
            x = nn.Conv(4, (3, 3), use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             axis_name=lrr_train.AXIS)(x)
            return nn.Dense(2)(nn.relu(x).mean(axis=(1, 2)))

    def trajectory(kind: str, epochs: int = 3) -> list[float]:
        # tests/dp_worker.py's setting with a tiny BatchNorm net (compiles in
        # seconds): gradients, losses and batch statistics are averaged across
        # both processes' devices.
        c = config_base.get_base_config()
        c.batch_size, c.epochs_per_level, c.lr, c.lr_min = 32, epochs, 0.05, 0.05
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(96, 8, 8, 3), dtype=np.uint8)
        y = (x[..., 0].mean(axis=(1, 2)) > 127).astype(np.int32)
        mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
        backend = parallel.Backend(kind)  # all global devices
        model = TinyConvNet()
        state = lrr_train.create_replicas(model, c, [0, 1], np.zeros((1, 8, 8, 3), np.float32))
        fn, _ = lrr_train.make_train_epoch(apply_fn=model.apply, config=c, phase="level",
                                       num_train=96, num_devices=backend.num_devices,
                                       mean=mean, std=std, image=True)
        epoch = backend.map(fn, 4, donate_first=True)
        state, xs, ys = backend.put(parallel.get(state)), backend.put(x), backend.put(y)
        losses = []
        for e in range(epochs):
            state, m = epoch(state, xs, ys, jax.random.PRNGKey(e))
            losses += np.asarray(m["loss"]).tolist()
        return losses

    t0 = time.time()
    out = {"process_index": jax.process_index(), "process_count": jax.process_count(),
           "devices": jax.device_count(), "local_devices": jax.local_device_count(),
           "trajectories": {} if "driver-only" in sys.argv[5:] else
           {kind: trajectory(kind) for kind in parallel.BACKENDS}}
    out["seconds"] = {"trajectories": round(time.time() - t0, 1)}

    c = config_base.get_base_config()
    c.dataset, c.model, c.mlp_hidden = "digits", "mlp", (32,)
    c.methods = "lrr,wr"
    c.levels, c.epochs_per_level, c.warmup_epochs = 2, 2, 1
    c.batch_size, c.eval_batch_size, c.num_replicas = 64, 100, 2
    c.checkpoint_every_epochs, c.progress, c.tensorboard = 1, False, True
    c.parallel = "shard_map"
    t0 = time.time()
    results = campaign.run(c, workdir)
    out["seconds"]["driver"] = round(time.time() - t0, 1)
    out["rows"] = {m: [{k: r[k] for k in ("level", "replica", "density", "test_acc",
                                          "train_loss")} for r in rows]
                   for m, rows in results.items()}
    out["files"] = sorted(os.listdir(os.path.join(workdir, "lrr")))

    # The same campaign with each device holding only its shard of the data.
    c.shard_train_data, c.methods, c.tensorboard = True, "lrr", False
    setup = engine.make(c)
    x = setup.placed["train_x"]
    out["sharded_local_examples"] = sum(s.data.shape[0] * s.data.shape[1]
                                        for s in x.addressable_shards)
    out["sharded_global_shape"] = list(x.shape)
    t0 = time.time()
    results = campaign.run(c, os.path.join(workdir, "sharded"))
    out["seconds"]["sharded"] = round(time.time() - t0, 1)
    out["sharded_rows"] = [{k: r[k] for k in ("level", "replica", "density", "test_acc",
                                             "train_loss")} for r in results["lrr"]]
    # The same campaign streamed (input_pipeline='stream'): what each process reads is
    # recorded, per epoch (the plan of its share) and per example (the reads).
    from lrr_jax import data
    from lrr_jax.data import stream

    plans, reads, real_plan, real_open = [], [], stream.plan, data.open_streams

    def recording_plan(*args, **kwargs):
        indices = real_plan(*args, **kwargs)
        plans.append(np.asarray(indices).tolist())
        return indices

    def recording_open(config):
        s = real_open(config)
        read = s.train.read
        return dataclasses.replace(s, train=dataclasses.replace(
            s.train, read=lambda i, rng: (reads.append(int(i)), read(i, rng))[1]))

    stream.plan, data.open_streams = recording_plan, recording_open
    c.shard_train_data, c.methods, c.input_pipeline = False, "lrr,wr", "stream"
    t0 = time.time()
    results = campaign.run(c, os.path.join(workdir, "stream"))
    out["seconds"]["stream"] = round(time.time() - t0, 1)
    out["stream_rows"] = {m: [{k: r[k] for k in ("level", "replica", "density", "test_acc",
                                                 "train_loss")} for r in rows]
                          for m, rows in results.items()}
    out["stream_plans"], out["stream_reads"] = plans, sorted(reads)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
