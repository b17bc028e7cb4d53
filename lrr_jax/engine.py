"""The compiled programs of a run and the input they read.

`make(config)` chooses the devices and the input pipeline
(`config.input_pipeline`):

- 'device': the dataset is loaded once and placed on the devices; the
  level's epoch is one compiled scan that gathers, augments and trains every
  batch on the device (`train.make_train_epoch`).
- 'stream': the prepared records are read on the host, one global batch
  per step, each process reading only its devices' share
  (`lrr_jax.data.stream`), into a compiled step (`train.make_stream_step`);
  evaluation streams the test split the same way. For datasets that do not
  fit on a device (ImageNet) and to compare the two paths on the others.

The returned `Engine` builds each program on first use (initialization, the
warm-up epoch, the level epoch, evaluation) and keeps it for every replica
group, method and level of the run: they all share one model, input and
schedule. `Engine.traces` counts how often each program was traced, so a
test can check that a 3-method run is one program.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from lrr_jax import data, models, parallel, replicas, train
from lrr_jax.errors import ConfigError

PIPELINES = ("device", "stream")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the programs need to know of the data, whichever pipeline feeds them."""

    name: str
    num_train: int
    num_test: int
    example_shape: tuple
    num_classes: int
    mean: np.ndarray
    std: np.ndarray

    @property
    def is_image(self) -> bool:
        return len(self.example_shape) == 3


@dataclasses.dataclass
class Partial:
    """Where a streamed epoch stopped (a preemption notice): steps done, reader position,
    the metric sums so far; with the state, what a mid-epoch checkpoint holds."""

    step: int
    reader: dict
    sums: dict


@dataclasses.dataclass
class Engine:
    """The input, the model, and the compiled programs built from them."""

    config: Any
    info: DataInfo
    backend: parallel.Backend
    model: Any
    eval_batch: int
    placed: dict | None = None  # 'device': train_x, train_y, test_x, test_y, test_w
    streams: Any = None  # 'stream': data.stream.Streams
    programs: dict = dataclasses.field(default_factory=dict)
    traces: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    steps_per_epoch: int = 0

    @property
    def streaming(self) -> bool:
        return self.streams is not None

    def _epoch_program(self, phase: str):
        if phase not in self.programs:
            shard = self.placed["train_x"].shape[1] if self.config.shard_train_data and \
                not self.streaming else 0
            fn, self.steps_per_epoch = epoch_program(
                self.config, self.model, self.backend, self.info, phase,
                pipeline="stream" if self.streaming else "device",
                host_augment=self.streaming and self.streams.host_augment, shard_rows=shard,
                on_trace=lambda: self.traces.update([phase]))
            self.programs[phase] = fn
        return self.programs[phase]

    def epoch_keys(self, reps, level: int, epoch: int):
        """The data-order keys of an epoch: one per replica, or `config.seed`'s for all."""
        if self.config.data_order == "per_replica":
            return np.stack([np.asarray(replicas.epoch_key(r.seed, level, epoch)) for r in reps])
        return np.asarray(replicas.epoch_key(int(self.config.seed), level, epoch))

    def train_epoch(self, phase: str, state, reps, level: int, epoch: int, *,
                    resume: Partial | None = None, stop: Callable[[int], bool] | None = None):
        """One epoch of `phase` ('warmup' | 'level', level -1 is the warm-up) for the
        replicas `reps` whose stacked device `state` is given.

        Returns (state, metrics, partial): metrics {'loss', 'acc'} per replica
        and partial None for a finished epoch. Streamed epochs can also start
        from a `Partial` (`resume`) and stop early: `stop(steps_done)` is asked
        after every step, and when it says True the epoch returns (state,
        None, Partial) at once.
        """
        program = self._epoch_program(phase)
        keys = self.epoch_keys(reps, level, epoch)
        if not self.streaming:
            p = self.placed
            state, metrics = program(state, p["train_x"], p["train_y"], keys)
            return state, metrics, None
        return self._stream_epoch(program, state, reps, level, epoch, keys, resume, stop)

    def _stream_epoch(self, program, state, reps, level, epoch, keys, resume, stop):
        from lrr_jax.data import stream

        config, b = self.config, self.backend
        seeds = list(dict.fromkeys(replicas.data_seed(config, r) for r in reps))
        streams = np.asarray([seeds.index(replicas.data_seed(config, r)) for r in reps],
                             np.int32)
        orders = [np.asarray(jax.random.permutation(replicas.epoch_key(s, level, epoch),
                                                    self.info.num_train)) for s in seeds]
        mine = [b.devices.index(d) for d in b.local_devices]
        indices = stream.plan(orders, int(config.batch_size), b.num_devices, mine)
        reader = stream.EpochReader(config, self.streams.train, indices, seeds, level, epoch,
                                    mine, start=resume.reader if resume else None)
        if resume:
            sums = b.put({k: np.asarray(v, np.float32) for k, v in resume.sums.items()})
        else:
            sums = b.put({"loss": np.zeros(len(reps), np.float32),
                          "acc": np.zeros(len(reps), np.float32)})
        keys, streams = b.put(keys), b.put(streams)

        def put(item):
            batch, position = item
            return b.put_sharded(batch["x"]), b.put_sharded(batch["y"]), position

        step = resume.step if resume else 0
        for x, y, position in stream.Prefetch(reader, put, depth=2):
            state, sums = program(state, sums, x, y, keys, np.int32(step), streams)
            step += 1
            if stop is not None and step < len(indices) and stop(step):
                return state, None, Partial(step, position, parallel.get(sums))
        steps = len(indices)
        return state, {k: v / np.float32(steps) for k, v in parallel.get(sums).items()}, None

    def evaluate(self, state) -> dict:
        """{'loss', 'acc'} per replica of a (device or host) state, on the test set."""
        if not isinstance(jax.tree.leaves(state)[0], jax.Array):  # host arrays: place them
            state = self.backend.put(state)
        info, b = self.info, self.backend
        if "eval" not in self.programs:
            if self.streaming:
                fn = train.make_stream_evaluate(apply_fn=self.model.apply, mean=info.mean,
                                                std=info.std)
                self.programs["eval"] = b.map(fn, 4, sharded=(1, 2, 3))
            else:
                fn = train.make_evaluate(apply_fn=self.model.apply, num_devices=b.num_devices,
                                         mean=info.mean, std=info.std,
                                         eval_batch=self.eval_batch)
                self.programs["eval"] = b.map(fn, 4)
        if not self.streaming:
            p = self.placed
            return parallel.get(self.programs["eval"](state, p["test_x"], p["test_y"],
                                                      p["test_w"]))
        from lrr_jax.data import stream

        mine = [b.devices.index(d) for d in b.local_devices]
        total = None
        batches = stream.eval_batches(self.streams.test, b.num_devices, self.eval_batch, mine)
        put = lambda xyw: tuple(b.put_sharded(a) for a in xyw)  # noqa: E731
        for x, y, w in stream.Prefetch(batches, put, depth=2):
            out = self.programs["eval"](state, x, y, w)
            total = out if total is None else jax.tree.map(lambda a, c: a + c, total, out)
        loss, correct, count = (np.asarray(a, np.float64) for a in parallel.get(total))
        return {"loss": (loss / count).astype(np.float32),
                "acc": (correct / count).astype(np.float32)}

    def _transform(self):
        info = self.info
        return train.batch_transform(self.config, info.is_image, info.mean, info.std,
                                     augment_on_device=not self._host_augment)

    @property
    def _host_augment(self) -> bool:
        return self.streaming and self.streams.host_augment

    @property
    def input_shape(self) -> tuple:
        """One example's shape as the model sees it (`model_input_shape`)."""
        if "input_shape" not in self.programs:
            self.programs["input_shape"] = model_input_shape(self.config, self.info,
                                                             self._host_augment)
        return self.programs["input_shape"]

    def score_batch(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One training batch (x as the model takes it: transformed and normalized, y),
        drawn by `seed`: what a data-dependent pruning score (SNIP) reads. The same on
        every process (each reads the same examples)."""
        n, b = self.info.num_train, int(self.config.batch_size)
        key = jax.random.PRNGKey(int(seed))
        idx = np.asarray(jax.random.permutation(key, n))[:b]
        if self.streaming:
            src = self.streams.train
            pairs = [src.read(int(i), np.random.default_rng((int(seed), int(i)))
                              if src.random else None) for i in idx]
            x, y = np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs])
        else:
            if "host_train" not in self.programs:  # the data loaders cache their arrays
                ds = data.load(self.config)
                self.programs["host_train"] = (ds.train_x, ds.train_y)
            train_x, train_y = self.programs["host_train"]
            x, y = train_x[idx], train_y[idx]
        x = jax.jit(self._transform())(jax.random.fold_in(key, 1), np.arange(b), x)
        return np.asarray(x), np.asarray(y, np.int32)

    def init_states(self, seeds: list[int]):
        """theta_0 of each seed, stacked (host arrays)."""
        if "init" not in self.programs:
            sample = np.zeros((1, *self.info.example_shape), np.float32)
            self.programs["init"] = train.replica_initializer(self.model, self.config, sample)
        return parallel.get(self.programs["init"](seeds))

    def put(self, tree):
        return self.backend.put(tree)


def epoch_program(config, model, backend, info: DataInfo, phase: str, *,
                  pipeline: str = "device", masked: bool = True, host_augment: bool = False,
                  shard_rows: int = 0, on_trace: Callable[[], None] | None = None):
    """The compiled program of one epoch of `phase` ('warmup' | 'level'), mapped over
    `backend`'s devices: the one builder the run, its plan, the TPU compile check and the
    benchmarks use. Returns (program, steps per epoch).

    'device': (state, train_x, train_y, keys) -> (state, metrics), one epoch
    as a scan over the placed data (`train.make_train_epoch`), `shard_rows` > 0
    when each device holds only its shard of that many examples. 'stream':
    (state, sums, x, y, keys, step, streams) -> (state, sums), one step of a
    streamed epoch (`train.make_stream_step`). `masked=False` (benchmarks
    only) drops the mask multiply; `on_trace` is called at each trace.
    """
    per_replica = config.data_order == "per_replica"
    common = {"apply_fn": model.apply, "config": config, "phase": phase,
              "num_devices": backend.num_devices, "mean": info.mean, "std": info.std,
              "image": info.is_image, "per_replica": per_replica}
    if pipeline == "stream":
        steps = info.num_train // int(config.batch_size)
        fn = train.make_stream_step(steps_per_epoch=steps, augment_on_device=not host_augment,
                                    **common)
        args, sharded = 7, (2, 3)
    else:
        fn, steps = train.make_train_epoch(num_train=shard_rows or info.num_train,
                                           masked=masked, sharded=bool(shard_rows), **common)
        args, sharded = 4, ((1, 2) if shard_rows else ())

    def traced(*a):
        if on_trace is not None:
            on_trace()  # runs once per trace, not per call
        return fn(*a)

    return backend.map(traced, args, donate_first=True, sharded=sharded), steps


def model_input_shape(config, info: DataInfo, host_augment: bool) -> tuple:
    """One example's shape as the model sees it, after the on-device train transform
    (Tiny ImageNet's 64x64 images are seen at 224); shapes only, no data."""
    transform = train.batch_transform(config, info.is_image, info.mean, info.std,
                                      augment_on_device=not host_augment)
    example = jax.ShapeDtypeStruct((1, *info.example_shape), np.uint8
                                   if info.is_image else np.float32)
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    out = jax.eval_shape(lambda k, x: transform(k, np.zeros(1, np.int32), x), key, example)
    return tuple(out.shape[1:])


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


def pipeline(config) -> str:
    """`config.input_pipeline`, checked against the dataset."""
    name = config.get("input_pipeline", "device")
    if name not in PIPELINES:
        raise ConfigError("input_pipeline", f"unknown input pipeline {name!r}; expected one of "
                          f"{PIPELINES}")
    if name == "device" and data.spec(config.get("dataset")).load is None:
        raise ConfigError("input_pipeline", f"{config.dataset} does not fit on a device: use "
                          "--config.input_pipeline=stream")
    if name == "stream" and config.get("shard_train_data"):
        raise ConfigError("shard_train_data", "the stream already reads each process's share "
                          "of every batch; shard_train_data is for input_pipeline='device'")
    return name


def check_batch_size(config, num_train: int) -> None:
    """Refuse a global batch larger than the training set (the run and its dry run)."""
    if num_train < config.batch_size:
        raise ConfigError("batch_size", f"{config.batch_size} exceeds the {num_train} training "
                          "examples")


def make(config) -> Engine:
    """Choose devices, open the input and place what lives on the devices.

    Raises ConfigError on bad input (before anything is compiled).
    """
    devices_used = devices(config)
    kind = pipeline(config)
    backend = parallel.Backend(config.parallel, devices_used)
    if kind == "stream":
        s = data.open_streams(config)
        check_batch_size(config, s.train.size)
        info = DataInfo(s.name, s.train.size, s.test.size, s.train.shape, s.num_classes,
                        s.mean, s.std)
        eval_batch = train.per_device_eval_batch(s.test.size, backend.num_devices,
                                                 config.eval_batch_size)
        model = models.create(config, info.num_classes, bn_axis_name=train.AXIS)
        return _checked(Engine(config, info, backend, model, eval_batch, streams=s))
    dataset = data.load(config)
    check_batch_size(config, dataset.train_x.shape[0])
    info = DataInfo(dataset.name, dataset.train_x.shape[0], dataset.test_x.shape[0],
                    tuple(dataset.train_x.shape[1:]), dataset.num_classes, dataset.mean,
                    dataset.std)
    model = models.create(config, dataset.num_classes, bn_axis_name=train.AXIS)
    _checked(Engine(config, info, backend, model, 1))  # before placing the data
    test_x, test_y, test_w, eval_batch = train.pad_for_eval(
        dataset.test_x, dataset.test_y, backend.num_devices, config.eval_batch_size)
    placed = backend.put({"test_x": test_x, "test_y": test_y, "test_w": test_w})
    if config.shard_train_data:
        placed.update(shard_train_data(dataset, backend))
    else:
        placed.update(backend.put({"train_x": dataset.train_x, "train_y": dataset.train_y}))
    return Engine(config, info, backend, model, eval_batch, placed=placed)


def _checked(e: Engine) -> Engine:
    """`e`, once its model takes the dataset's examples: traced on one (shapes only,
    nothing compiled), else ConfigError('model') naming both."""
    try:
        shape = e.input_shape
        jax.eval_shape(lambda x: e.model.init(jax.random.PRNGKey(0), x, train=False),
                       jax.ShapeDtypeStruct((1, *shape), np.float32))
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the model raises on these shapes
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError("model", f"{e.config.model} cannot take {e.info.name}'s examples "
                          f"of shape {tuple(shape)}: {first}") from None
    return e


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
