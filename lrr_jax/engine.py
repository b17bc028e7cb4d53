"""The compiled programs of a run and the data on the devices they read.

`make(config)` loads the data, chooses the devices and places the data once;
the returned `Engine` builds each program on first use (initialization, the
warm-up epoch, the level epoch, evaluation) and keeps it for every replica
group, method and level of the run: they all share one model, data and
schedule. `Engine.traces` counts how often each program was traced, so a test
can check that a 3-method run is one program.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import jax
import numpy as np

from lrr_jax import data, models, parallel, train
from lrr_jax.errors import ConfigError


@dataclasses.dataclass
class Engine:
    """Data placed on the devices, the model, and the compiled programs built from them."""

    config: Any
    dataset: data.Dataset
    backend: parallel.Backend
    placed: dict  # device arrays: train_x, train_y, test_x, test_y, test_w
    eval_batch: int
    model: Any
    programs: dict = dataclasses.field(default_factory=dict)
    traces: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    steps_per_epoch: int = 0

    def _epoch_program(self, phase: str):
        if phase not in self.programs:
            config, ds, b = self.config, self.dataset, self.backend
            sharded = bool(config.shard_train_data)
            fn, steps = train.make_train_epoch(
                apply_fn=self.model.apply, config=config, phase=phase,
                num_train=self.placed["train_x"].shape[1] if sharded else ds.train_x.shape[0],
                num_devices=b.num_devices, mean=ds.mean, std=ds.std, image=ds.is_image,
                sharded=sharded, per_replica=config.data_order == "per_replica")

            def counted(*args):
                self.traces[phase] += 1  # runs once per trace, not per call
                return fn(*args)

            self.programs[phase] = b.map(counted, 4, donate_first=True,
                                         sharded=(1, 2) if sharded else ())
            self.steps_per_epoch = steps
        return self.programs[phase]

    def train_epoch(self, phase: str, state, keys):
        """One epoch of `phase` ('warmup' | 'level') for a group of replicas on the devices."""
        p = self.placed
        return self._epoch_program(phase)(state, p["train_x"], p["train_y"], keys)

    def evaluate(self, state) -> dict:
        """{'loss', 'acc'} per replica of a (device or host) state, on the test set."""
        if "eval" not in self.programs:
            ds = self.dataset
            fn = train.make_evaluate(apply_fn=self.model.apply,
                                     num_devices=self.backend.num_devices, mean=ds.mean,
                                     std=ds.std, eval_batch=self.eval_batch)
            self.programs["eval"] = self.backend.map(fn, 4)
        p = self.placed
        if not isinstance(jax.tree.leaves(state)[0], jax.Array):  # host arrays: place them
            state = self.backend.put(state)
        out = self.programs["eval"](state, p["test_x"], p["test_y"], p["test_w"])
        return parallel.get(out)

    def init_states(self, seeds: list[int]):
        """theta_0 of each seed, stacked (host arrays)."""
        if "init" not in self.programs:
            sample = np.zeros((1, *self.dataset.train_x.shape[1:]), np.float32)
            self.programs["init"] = train.replica_initializer(self.model, self.config, sample)
        return parallel.get(self.programs["init"](seeds))

    def put(self, tree):
        return self.backend.put(tree)


def devices(config) -> list:
    """The devices a run uses; raises ConfigError when the config does not fit them."""
    # Global devices: in a multi-process run (lrr_jax.distributed) the data axis
    # spans every process; with one process these are the local devices.
    devices = jax.devices()
    if config.num_devices and jax.process_count() > 1:
        raise ConfigError("num_devices", "must be 0 (all devices) in a multi-process run")
    if config.num_devices:
        if config.num_devices > len(devices):
            raise ConfigError("num_devices", f"{config.num_devices} requested, "
                              f"{len(devices)} available")
        devices = devices[: config.num_devices]
    if config.batch_size % len(devices):
        raise ConfigError("batch_size", f"{config.batch_size} is not divisible by the "
                          f"{len(devices)} devices")
    return devices


def check_batch_size(config, num_train: int) -> None:
    """Refuse a global batch larger than the training set (the run and its dry run)."""
    if num_train < config.batch_size:
        raise ConfigError("batch_size", f"{config.batch_size} exceeds the {num_train} training "
                          "examples")


def make(config) -> Engine:
    """Load data, choose devices and place the data; raises ConfigError on bad input."""
    devices_used = devices(config)
    dataset = data.load(config)
    check_batch_size(config, dataset.train_x.shape[0])
    backend = parallel.Backend(config.parallel, devices_used)
    test_x, test_y, test_w, eval_batch = train.pad_for_eval(
        dataset.test_x, dataset.test_y, backend.num_devices, config.eval_batch_size)
    placed = backend.put({"test_x": test_x, "test_y": test_y, "test_w": test_w})
    if config.shard_train_data:
        placed.update(shard_train_data(dataset, backend))
        # This process keeps only its devices' shards (its `dataset` loses the rest).
        dataset = dataclasses.replace(dataset, train_x=dataset.train_x[:0],
                                      train_y=dataset.train_y[:0])
    else:
        placed.update(backend.put({"train_x": dataset.train_x, "train_y": dataset.train_y}))
    model = models.create(config, dataset.num_classes, bn_axis_name=train.AXIS)
    return Engine(config, dataset, backend, placed, eval_batch, model)


def shard_train_data(dataset, backend) -> dict:
    """This process's devices' shards of the training set, placed on those devices.

    Device d of D (its position in the global device list) holds examples
    d, d + D, d + 2D, ... (every class in about the same proportion), cut to
    the same count n // D on every device. Returns {'train_x', 'train_y'} of
    shape (D, n // D, ...), each device holding only its own block.
    """
    # n >= batch_size (checked by make), so every device holds at least
    # one local batch: n // D >= batch_size // D.
    n, d_all = dataset.train_x.shape[0], backend.num_devices
    per = n // d_all
    mine = [backend.devices.index(d) for d in backend.local_devices]
    return {name: backend.put_sharded(np.stack([a[i::d_all][:per] for i in mine]))
            for name, a in (("train_x", dataset.train_x), ("train_y", dataset.train_y))}
