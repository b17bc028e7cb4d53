"""A run compiled for a TPU topology on a host without a TPU: `--config.compile_for=tpu:TOPOLOGY`.

With `--config.dry_run=True --config.compile_for=tpu:v5e:2x2`, the dry run
compiles the programs the run would compile (initialization, the warm-up and
level epochs, evaluation, the sign perturbation when there is one) with the
configured backend (`parallel`), replica grouping and dtype, for the
compile-only devices libtpu describes for that topology
(`jax.experimental.topologies.get_topology_desc`; the approach of MaxText's
`train_compile.py`). Nothing runs and no data is read beyond its shapes: the
arguments are `jax.ShapeDtypeStruct`s of the state (from `jax.eval_shape` of
the initializer) and of the data as `engine.make` places it (shapes from the
dataset when it is prepared, else its standard sizes, `data.real_sizes`). The
epochs are `engine.epoch_program`, the builder the run itself uses: with the
on-device pipeline a scan over the resident split, with the streamed one
(`input_pipeline='stream'`, ImageNet) one step taking its batch as an argument.

What comes from the TPU compiler (libtpu): whether each program compiles, its
`memory_analysis()` per chip (arguments, temporaries, outputs, generated code,
all as laid out on the TPU, padding included), the HBM it allows a program
(the `RESOURCE_EXHAUSTED` limit it states, probed with a program that cannot
fit), and the FLOPs and bytes accessed of one scanned step (`cost_analysis()`
of an epoch counts one iteration of its `lax.scan`; its `optimal_seconds` is
not used: it comes out negative). What does not: time. The projected campaign
time, labelled as a projection wherever it is printed, is the campaign's FLOPs
at `ASSUMED_UTILIZATION` of the chips' published peak bfloat16 rate. The bytes
accessed at the published HBM bandwidth are printed beside it, as a second,
cruder bound: the byte count is the compiler's cost model, and it includes the
epoch's once-per-epoch work outside the scan (the FLOPs include it too, about
1% of a step's).

Memory per chip while a program runs is what stays resident for the whole run
plus the program's own memory (temporaries, code, outputs it does not write
into donated arguments). Resident: the training and test splits (`engine.make`
places both once, on every chip; a streamed run holds two steps' batches and
two evaluation batches instead, the step's and the one prefetched) and the
state of every replica (every group's state is placed before an epoch, so
`replica_batch` bounds the activations of a program, not the state on the
chip). The data part is computed in one place (`data_arguments`).

The replica capacity ("how many replicas fit a chip") is the largest replica
count K of one program whose peak fits the compiler's HBM limit: predicted
from two compiled counts (memory grows linearly in K), then confirmed by
compiling K (and K + 1, which must not fit). A config that does not fit raises
`ConfigError` naming the key to change, before compiling where the exact
state and data sizes already exceed the chip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import SingleDeviceSharding

from lrr_jax import data, engine, faults, models, parallel, replicas, train
from lrr_jax.errors import ConfigError

GiB = 2**30
# The projection's assumption: the fraction of the chip's peak bfloat16 rate the run sustains.
# Not measured (no TPU here); ResNet training on TPUs commonly reaches a few tens of percent.
ASSUMED_UTILIZATION = 0.4
# Largest replica count tried when looking for the chip's replica capacity.
MAX_REPLICAS = 512


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published figures of a TPU generation (Google Cloud's system architecture page, `source`)."""

    name: str
    hbm_bytes: int  # HBM per chip
    hbm_text: str  # as the page writes it
    peak_bf16: float  # FLOP/s per chip
    hbm_bandwidth: float  # bytes/s per chip
    source: str
    chip_config: str | None = None  # libtpu's chip config: 'megacore' = one device per chip


# The pages write "GB" for v5e, v5p and v6e; the limits the compiler states (15.75, 95.74 and
# 31.25 GiB available to a program) show they are binary units, as v4's page says (32 GiB).
# v4 and v5p chips have two TensorCores that JAX drives as one device ("megacore"), as on a TPU VM.
CHIPS = {
    "v4": Chip("TPU v4", 32 * GiB, "32 GiB", 275e12, 1200e9,
               "https://cloud.google.com/tpu/docs/v4", "megacore"),
    "v5e": Chip("TPU v5e", 16 * GiB, "16 GB", 197e12, 819e9,
                "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("TPU v5p", 95 * GiB, "95 GB", 459e12, 2765e9,
                "https://cloud.google.com/tpu/docs/v5p", "megacore"),
    "v6e": Chip("TPU v6e", 32 * GiB, "32 GB", 918e12, 1638e9,
                "https://cloud.google.com/tpu/docs/v6e"),
}
_TARGET = re.compile(r"tpu:([a-z0-9]+):(\d+(?:x\d+)*)")
_OOM = re.compile(r"RESOURCE_EXHAUSTED.*?\(([\d.]+)([KMGTP]?)i?B?\).*?exceeds available HBM "
                  r"\(([\d.]+)([KMGTP]?)i?B?\)", re.S)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


def parse_target(value: str) -> tuple[str, str]:
    """'tpu:v5e:2x2' -> ('v5e', 'v5e:2x2'); ConfigError('compile_for') for anything else."""
    match = _TARGET.fullmatch(str(value))
    if not match:
        gpu = str(value).startswith(("gpu", "cuda"))
        raise ConfigError("compile_for", f"expected 'tpu:TOPOLOGY' (e.g. tpu:v5e:2x2, "
                          f"tpu:v4:2x2x2), got {value!r}" + (
                              " (XLA:GPU has no compile-only devices in this JAX: check a GPU "
                              "with scripts/gpu_check.sh on it)" if gpu else ""))
    return match.group(1), f"{match.group(1)}:{match.group(2)}"


def topology(value: str) -> list:
    """The compile-only devices of a 'tpu:TOPOLOGY' target (libtpu; no TPU needed)."""
    generation, name = parse_target(value)
    if importlib.util.find_spec("libtpu") is None:
        raise ConfigError("compile_for", "needs libtpu, which compiles for the TPU on this host: "
                          "pip install -e '.[tpu]'")
    from jax.experimental import topologies

    start_jax_quietly()
    chip = CHIPS.get(generation)
    kwargs = {"chip_config_name": chip.chip_config} if chip and chip.chip_config else {}
    try:
        with _quiet_stderr():  # libtpu's start-up warnings about the missing TPU hardware
            return list(topologies.get_topology_desc(topology_name=name, platform="tpu",
                                                     **kwargs).devices)
    except Exception as e:  # noqa: BLE001 - libtpu's own message says what is wrong
        raise ConfigError("compile_for", f"libtpu has no topology {name!r}: "
                          f"{' '.join(str(e).split())[:300]}") from None


def start_jax_quietly() -> None:
    """Start JAX's backends with libtpu's warnings about the missing TPU sent nowhere.

    With libtpu installed, JAX tries the TPU first; on a host without one libtpu
    writes a few lines of warnings to stderr before JAX falls back to the CPU.
    libtpu also lets one process at a time load it (/tmp/libtpu_lockfile), and a
    JAX process that tried the TPU holds it for its lifetime; compiling for
    compile-only devices runs nothing on a TPU, so the lock is shared
    (ALLOW_MULTIPLE_LIBTPU_LOAD=1, unless set). A no-op once JAX has started.
    """
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    with _quiet_stderr():
        jax.devices()


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 (where libtpu's C++ logging writes) to a discarded file."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _bytes(text: str, unit: str) -> int:
    return int(float(text) * _UNITS[unit])


def compiler_hbm_limit(device) -> int | None:
    """The HBM the TPU compiler lets one program use on `device`'s chip, in bytes.

    Asked the only way the compiler tells it: a program that needs 1 TiB is
    refused with "... exceeds available HBM (15.75G)" (binary units). None when
    the message does not say.
    """
    fn = jax.jit(lambda: jnp.zeros((2**38,), jnp.float32),
                 out_shardings=SingleDeviceSharding(device))
    try:
        fn.lower().compile()
    except Exception as e:  # noqa: BLE001 - the refusal is the answer
        match = _OOM.search(str(e))
        return _bytes(match.group(3), match.group(4)) if match else None
    return None


@dataclasses.dataclass
class Compiled:
    """One program compiled for the target: the compiler's figures per chip."""

    program: str
    replicas: int
    seconds: float
    arguments: int = 0
    temporaries: int = 0
    outputs: int = 0
    aliased: int = 0  # outputs written into donated arguments (the state of an epoch)
    code: int = 0
    flops: float | None = None  # cost_analysis: one scanned step for an epoch
    bytes_accessed: float | None = None  # cost_analysis: memory traffic of the same
    refused: str = ""  # the compiler's RESOURCE_EXHAUSTED message when it did not fit
    required: int = 0  # what the refusal says the program needs

    @property
    def total(self) -> int:
        """Bytes on the chip while it runs (the refusal's figure when refused)."""
        if self.refused:
            return self.required
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


def compile_program(name: str, k: int, lowerable, args) -> Compiled:
    """Lower and compile `lowerable(*args)`; a RESOURCE_EXHAUSTED refusal is a result too."""
    if _STATUS["path"]:  # in `describe_in_a_process`'s child: what a crash interrupted
        with open(_STATUS["path"], "w") as f:
            f.write(f"the {_NAMES[name]} of {k} replica(s)")
    faults.hit("compiling", name, k)  # LRR_JAX_FAULT=compiling:level:1: a crash, for the tests
    t = time.perf_counter()
    try:
        compiled = lowerable.lower(*args).compile()
    except Exception as e:  # noqa: BLE001 - the compiler's refusals are findings
        if not isinstance(e, jax.errors.JaxRuntimeError):
            raise
        match = _OOM.search(str(e))
        if "RESOURCE_EXHAUSTED" not in str(e):  # an op or a layout the TPU does not take
            raise ConfigError("compile_for", f"the TPU compiler rejects the {_NAMES[name]} of "
                              f"{k} replica(s): {' '.join(str(e).split())[:400]}") from None
        return Compiled(name, k, time.perf_counter() - t, refused=" ".join(str(e).split())[:300],
                        required=_bytes(match.group(1), match.group(2)) if match else 0)
    seconds = time.perf_counter() - t
    m = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return Compiled(name, k, seconds, arguments=int(m.argument_size_in_bytes),
                    temporaries=int(m.temp_size_in_bytes), outputs=int(m.output_size_in_bytes),
                    aliased=int(m.alias_size_in_bytes),
                    code=int(m.generated_code_size_in_bytes),
                    flops=float(cost["flops"]) if cost and "flops" in cost else None,
                    bytes_accessed=float(cost["bytes accessed"]) if cost and
                    "bytes accessed" in cost else None)


@dataclasses.dataclass
class Shapes:
    """The dataset the programs are compiled for: sizes and example shapes, no data."""

    n_train: int
    n_test: int
    shape: tuple  # one training example
    test_shape: tuple  # one test example (Tiny ImageNet at 224: resized on the host)
    classes: int
    image: bool
    source: str  # where the sizes come from
    stream: bool = False  # input_pipeline='stream': batches as arguments, nothing resident


def data_arguments(config, s: Shapes, backend: parallel.Backend) -> dict:
    """The data the programs take, as `engine.make` places it, as abstract arrays.

    Today every chip holds the training split (or its shard with
    `shard_train_data`) and the padded test split for the whole run. Returns
    {'train_x', 'train_y', 'test_x', 'test_y', 'test_w', 'eval_batch', 'sharded',
    'bytes'} with 'bytes' the exact per-chip size of each split ('train', 'test').
    """
    d = backend.num_devices
    x_dtype = np.uint8 if s.image else np.float32
    if s.stream:
        return _stream_arguments(config, s, backend, x_dtype)
    sharded = bool(config.shard_train_data)
    if sharded:  # engine.shard_train_data: (D, n // D, ...), each device its block
        per = s.n_train // d
        train_x = jax.ShapeDtypeStruct((d, per, *s.shape), x_dtype)
        train_y = jax.ShapeDtypeStruct((d, per), np.int32)
    else:
        train_x = jax.ShapeDtypeStruct((s.n_train, *s.shape), x_dtype)
        train_y = jax.ShapeDtypeStruct((s.n_train,), np.int32)
    # train.pad_for_eval on a zero-width stand-in: the padded length and eval batch, no data.
    _, test_y, _, eval_batch = train.pad_for_eval(np.zeros((s.n_test, 0), np.uint8),
                                                  np.zeros(s.n_test, np.int32), d,
                                                  int(config.eval_batch_size))
    n = len(test_y)
    test = {"test_x": jax.ShapeDtypeStruct((n, *s.test_shape), x_dtype),
            "test_y": jax.ShapeDtypeStruct((n,), np.int32),
            "test_w": jax.ShapeDtypeStruct((n,), np.float32)}
    per_chip = (1 / d) if sharded else 1
    train_bytes = int(round((_nbytes(train_x) + _nbytes(train_y)) * per_chip))
    return {"train_x": backend.abstract(train_x, sharded=sharded),
            "train_y": backend.abstract(train_y, sharded=sharded),
            **{k: backend.abstract(v) for k, v in test.items()},
            "eval_batch": eval_batch, "sharded": sharded,
            "bytes": {"train": train_bytes, "test": sum(_nbytes(v) for v in test.values())}}


def _stream_arguments(config, s: Shapes, backend: parallel.Backend, x_dtype) -> dict:
    """`data_arguments` of a streamed run: one step's batch of each data stream and one
    evaluation batch, (chips, ...) blocks as `engine` places them (`put_sharded`);
    'bytes' counts two of each per chip (the one in use and the one prefetched)."""
    d = backend.num_devices
    local = int(config.batch_size) // d
    eval_batch = train.per_device_eval_batch(s.n_test, d, config.eval_batch_size)
    test = {"test_x": jax.ShapeDtypeStruct((d, eval_batch, *s.test_shape), x_dtype),
            "test_y": jax.ShapeDtypeStruct((d, eval_batch), np.int32),
            "test_w": jax.ShapeDtypeStruct((d, eval_batch), np.float32)}

    def batch(streams: int) -> dict:  # one step's (x, y) for `streams` data orders
        return {"train_x": backend.abstract(jax.ShapeDtypeStruct(
                    (d, streams, local, *s.shape), x_dtype), sharded=True),
                "train_y": backend.abstract(jax.ShapeDtypeStruct((d, streams, local), np.int32),
                                            sharded=True),
                "bytes": 2 * streams * local * (math.prod(s.shape) * np.dtype(x_dtype).itemsize
                                                + 4)}

    return {**{k: backend.abstract(v, sharded=True) for k, v in test.items()},
            "batch": batch, "eval_batch": eval_batch, "sharded": False, "stream": True,
            "eval_batches": -(-s.n_test // (d * eval_batch)),
            "bytes": {"train": batch(1)["bytes"], "test": 2 * _nbytes(test) // d}}


def _nbytes(tree) -> int:
    return int(sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize
                   for a in jax.tree.leaves(tree)))


class Programs:
    """Builds and compiles a config's programs for a device list, for any replica count."""

    def __init__(self, config, devices: list, shapes: Shapes):
        self.config, self.shapes = config, shapes
        self.backend = parallel.Backend(config.parallel, devices)
        self.model = models.create(config, shapes.classes, bn_axis_name=train.AXIS)
        self.data = data_arguments(config, shapes, self.backend)
        channels = shapes.shape[-1] if shapes.image else shapes.shape
        self.mean = np.full(channels, 0.5, np.float32)  # values do not change the program
        self.std = np.full(channels, 0.25, np.float32)
        self.info = engine.DataInfo(config.dataset, shapes.n_train, shapes.n_test, shapes.shape,
                                    shapes.classes, self.mean, self.std)
        self.host_augment = shapes.stream and data.train_transform(config) is not None
        self.sample = np.zeros((1, *engine.model_input_shape(config, self.info,
                                                              self.host_augment)), np.float32)
        seeds = [replicas.data_seed(config, r) for r in replicas.from_config(config)]
        self._seeds = seeds  # which data order each replica reads (its stream)
        self.key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
        self.steps_per_epoch = 0
        self.compiled: dict[tuple[str, int], Compiled] = {}
        self._said: set = set()
        self._states: dict = {}

    def streams(self, k: int) -> int:
        """Data streams (distinct data orders) among k replicas; beyond the config's
        replicas, in the proportion of its own (a capacity search)."""
        if self.config.data_order != "per_replica":
            return 1
        if k <= len(self._seeds):
            return len(set(self._seeds[:k]))
        return math.ceil(k * len(set(self._seeds)) / len(self._seeds))

    def _init_fn(self):
        return jax.vmap(lambda k: train.create_state(self.model, self.config, k, self.sample))

    def state(self, k: int):
        """The abstract state of k replicas (shapes and dtypes, no values)."""
        if k not in self._states:
            keys = jax.ShapeDtypeStruct((k, *self.key.shape), self.key.dtype)
            self._states[k] = jax.eval_shape(self._init_fn(), keys)
        return self._states[k]

    def state_bytes(self, k: int) -> int:
        """Exact bytes of k replicas' state (before any TPU layout padding)."""
        return _nbytes(self.state(k))

    def _keys(self, k: int):
        per_replica = self.config.data_order == "per_replica"
        shape = (k, *self.key.shape) if per_replica else self.key.shape
        return self.backend.abstract(jax.ShapeDtypeStruct(shape, self.key.dtype))

    def compile(self, program: str, k: int) -> Compiled:
        """Compile `program` ('init' | 'warmup' | 'level' | 'eval' | 'perturb') for k replicas."""
        if (program, k) in self.compiled:
            return self.compiled[(program, k)]
        b, d, config = self.backend, self.data, self.config
        state = b.abstract(self.state(k))
        if program == "init":  # on one device, as engine.init_states runs it
            keys = jax.ShapeDtypeStruct((k, *self.key.shape), self.key.dtype,
                                        sharding=SingleDeviceSharding(b.devices[0]))
            result = compile_program(program, k, jax.jit(self._init_fn()), (keys,))
        elif program in ("warmup", "level"):
            mapped, self.steps_per_epoch = engine.epoch_program(
                config, self.model, b, self.info, program,
                pipeline="stream" if self.shapes.stream else "device",
                host_augment=self.host_augment,
                shard_rows=d["train_x"].shape[1] if d["sharded"] else 0)
            if self.shapes.stream:
                batch, sums = d["batch"](self.streams(k)), jax.ShapeDtypeStruct((k,), np.float32)
                args = (state, b.abstract({"loss": sums, "acc": sums}), batch["train_x"],
                        batch["train_y"], self._keys(k),
                        b.abstract(jax.ShapeDtypeStruct((), np.int32)),
                        b.abstract(jax.ShapeDtypeStruct((k,), np.int32)))
            else:
                args = (state, d["train_x"], d["train_y"], self._keys(k))
            result = compile_program(program, k, mapped, args)
        elif program == "eval" and self.shapes.stream:
            fn = train.make_stream_evaluate(apply_fn=self.model.apply, mean=self.mean,
                                            std=self.std)
            result = compile_program(program, k, b.map(fn, 4, sharded=(1, 2, 3)),
                                     (state, d["test_x"], d["test_y"], d["test_w"]))
        elif program == "eval":
            fn = train.make_evaluate(apply_fn=self.model.apply, num_devices=b.num_devices,
                                     mean=self.mean, std=self.std, eval_batch=d["eval_batch"])
            result = compile_program(program, k, b.map(fn, 4),
                                     (state, d["test_x"], d["test_y"], d["test_w"]))
        elif program == "perturb":
            keys = b.abstract(jax.ShapeDtypeStruct((k, *self.key.shape), self.key.dtype))
            probs = b.abstract(jax.ShapeDtypeStruct((k,), np.float32))
            result = compile_program(program, k, train.perturb_signs, (state, keys, probs))
        else:
            raise ValueError(f"unknown program {program!r}")
        self.compiled[(program, k)] = result
        return result

    def resident(self, k: int, others: int = 0) -> dict:
        """What stays on each chip while k replicas train, before any program's own memory.

        The state of the k replicas and of `others` more (every group's state is
        placed before an epoch, `epochs.train`), as the epoch lays it out (its
        donated, aliased outputs), the training split as the epoch takes it, and
        the padded test split (its exact size: uint8 images pad by well under 1%
        on the TPU, as the training split's figure shows). {'state',
        'state_per_replica', 'train', 'test', 'total'}.
        """
        epoch = self.compile("level", k)
        state = epoch.aliased if not epoch.refused else self.state_bytes(k)
        if self.shapes.stream:  # two steps' batches (in use, prefetched), not the split,
            # as the chip lays them out (a uint8 NHWC block takes about twice its bytes)
            train_chip = 2 * (epoch.arguments - epoch.aliased) if not epoch.refused else \
                self.data["batch"](self.streams(k))["bytes"]
        else:
            train_chip = epoch.arguments - epoch.aliased if not epoch.refused else \
                self.data["bytes"]["train"]
        per_replica = state / k
        out = {"state": state + int(round(others * per_replica)), "state_per_replica": per_replica,
               "train": train_chip, "test": self.data["bytes"]["test"]}
        out["total"] = out["state"] + out["train"] + out["test"]
        return out

    def during(self, c: Compiled, resident: dict) -> int:
        """Bytes on a chip while `c` runs: everything resident plus its own memory.

        Its arguments are resident already (the state, the data); what it adds
        is its temporaries, code and the outputs it does not write into donated
        arguments. A refused program counts with the bytes its refusal states
        (its arguments included), plus the resident data it does not take.
        """
        if c.refused:
            taken = resident["test"] if c.program == "eval" else \
                resident["train"] if c.program in ("warmup", "level") else 0
            return c.required + resident["total"] - resident["state"] - taken
        if c.program == "init":  # before any state is placed: the data only
            return resident["train"] + resident["test"] + c.total
        return resident["total"] + c.total - c.arguments

    def peak(self, k: int, others: int = 0, say: Callable[[str], None] | None = None) -> dict:
        """Per-chip bytes while the level epoch and while evaluation of k replicas run.

        `others`: replicas of other groups whose state stays on the chip meanwhile.
        Returns {'epoch', 'eval', 'peak', 'binding' (the program at the peak),
        'refused', and `resident`'s figures}.
        """
        for program in ("level", "eval"):
            c = self.compile(program, k)
            if say and (program, k) not in self._said:
                self._said.add((program, k))
                say(f"compiled the {_NAMES[program]} for {k} replica(s): {c.seconds:.1f} s"
                    + (f" (refused: {c.refused})" if c.refused else ""))
        epoch, ev = self.compile("level", k), self.compile("eval", k)
        resident = self.resident(k, others)
        during_epoch, during_eval = self.during(epoch, resident), self.during(ev, resident)
        return {"epoch": during_epoch, "eval": during_eval,
                "peak": max(during_epoch, during_eval),
                "binding": "eval" if during_eval > during_epoch else "level",
                "refused": bool(epoch.refused or ev.refused),
                # a refused program's peak is what its refusal states it needs (a lower
                # bound); usable for the capacity search's line when the refusal says it
                "usable": all(not c.refused or c.required > 0 for c in (epoch, ev)), **{
                    f"resident_{key}": value for key, value in resident.items()}}


_NAMES = {"init": "initialization", "warmup": "warm-up epoch", "level": "level epoch",
          "eval": "evaluation", "perturb": "sign perturbation"}


def capacity(programs: Programs, limit: int, measured: dict[int, dict],
             say: Callable[[str], None]) -> dict:
    """The largest replica count of one program that fits `limit` bytes per chip.

    `measured`: replica count -> `Programs.peak` already known (reused, and
    filled in). Memory grows linearly in the replica count (each replica's
    state and activations), so two compiled counts give a line; the count it
    predicts is compiled to confirm it, and the count above it to show that
    it is the largest. A confirmation that disagrees refines the line through
    the nearest counts on either side (a refused count's peak is what the
    compiler says it needs), halving the interval where the line cannot narrow
    it (at most 6 rounds). Returns {'replicas', 'how', 'proven', 'points': {k: peak bytes}}.
    """
    def fits(k):
        return not measured[k]["refused"] and measured[k]["peak"] <= limit

    def measure(k):
        if k not in measured:
            measured[k] = programs.peak(k, say=say)

    measure(1)
    if not fits(1):
        return {"replicas": 0, "how": "1 replica does not fit", "proven": True,
                "points": _points(measured)}
    measure(2)
    for _ in range(6):
        lo = max(k for k in measured if fits(k))
        hi = min((k for k in measured if not fits(k)), default=None)
        if hi == lo + 1 or lo >= MAX_REPLICAS:
            break
        # The line through the largest count that fits and the nearest count above it
        # whose peak is known (a refusal states its need), else the two largest that fit.
        known = sorted(k for k in measured
                       if measured[k].get("usable", not measured[k]["refused"]))
        above = [k for k in known if k > lo]
        a, b = (lo, above[0]) if above else tuple(k for k in known if k <= lo)[-2:]
        slope = (measured[b]["peak"] - measured[a]["peak"]) / (b - a)
        guess = a + int((limit - measured[a]["peak"]) // slope) if slope > 0 else 2 * lo
        guess = min(max(guess, lo + 1), hi - 1 if hi else MAX_REPLICAS)
        if guess in measured:  # the line cannot narrow it further: halve the interval
            guess = (lo + hi) // 2 if hi else min(2 * lo, MAX_REPLICAS)
        say(f"replica capacity: the line through {a} and {b} replicas "
            f"({_gib(measured[a]['peak'])} and {_gib(measured[b]['peak'])} per chip) "
            f"predicts {guess}; compiling {guess}"
            + (f" and {guess + 1}" if guess < MAX_REPLICAS else " (the search limit)"))
        measure(guess)
        if fits(guess) and guess < MAX_REPLICAS:
            measure(guess + 1)
    best = max(k for k in measured if fits(k))
    proven = any(k == best + 1 and not fits(k) for k in measured)
    above = measured.get(best + 1, {})
    how = (f"compiled at {', '.join(map(str, sorted(measured)))} replicas (memory linear in "
           f"the count predicts the largest); {best} fits"
           + (f", {best + 1} does not ({_NAMES[above['binding']]}"
              + (", refused by the compiler)" if above["refused"] else
                 f": {_gib(above['peak'])})") if proven else
              f"; {best + 1} not compiled (search limit {MAX_REPLICAS})"))
    return {"replicas": best, "how": how, "proven": proven, "points": _points(measured)}


def _points(measured: dict) -> dict:
    return {k: int(v["peak"]) for k, v in sorted(measured.items())}


def _gib(n: float) -> str:
    return f"{n / GiB:,.2f} GiB"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _refusal(config, key: str, message: str) -> ConfigError:
    return ConfigError(key, f"{message} (compile_for={config.compile_for}; docs/TPU.md)")


def _before_compiling(config, progs: Programs, n: int, limit: int, chip_name: str) -> None:
    """Refuse, before any compile, a config whose exact state and data exceed the chip."""
    data_b = progs.data["bytes"]
    data = data_b["train"] + data_b["test"]
    per_replica = progs.state_bytes(1)
    if data + n * per_replica <= limit:
        return
    figures = (f"the data ({_gib(data_b['train'])} training + {_gib(data_b['test'])} test split, "
               f"on every chip) and the state of {n} replica(s) ({_gib(per_replica)} each) "
               f"need {_gib(data + n * per_replica)} per {chip_name} chip before any "
               f"activation; the compiler allows {_gib(limit)}")
    if data + per_replica > limit:
        d = progs.backend.num_devices
        if not config.shard_train_data and d > 1 and \
                data_b["train"] // d + data_b["test"] + per_replica <= limit:
            raise _refusal(config, "shard_train_data", f"{figures}: shard the training split "
                           f"over the {d} chips (--config.shard_train_data=True)")
        raise _refusal(config, "compile_for", f"{figures}: the data do not fit these chips "
                       "even sharded; use a topology with more chips or HBM per chip")
    fit = int((limit - data) // per_replica)
    raise _refusal(config, "num_replicas", f"{figures}: at most {fit} replicas' state fit "
                   "(fewer seeds, methods or perturbation probabilities)")


def _after_compiling(config, progs: Programs, n: int, kc: int, limit: int, chip_name: str,
                     measured: dict, say) -> ConfigError:
    """The error for a configured program that compiled (or was refused) and does not fit."""
    conf = progs.peak(kc, others=n - kc)
    figures = (f"the level epoch and evaluation of {kc} replica(s) per program, with "
               f"{n - kc} more replicas' state resident, need {_gib(conf['peak'])} per "
               f"{chip_name} chip (epoch {_gib(conf['epoch'])}, evaluation "
               f"{_gib(conf['eval'])}); the compiler allows {_gib(limit)}")
    epoch_fits = not progs.compile("level", kc).refused and conf["epoch"] <= limit
    if epoch_fits and conf["binding"] == "eval":
        return _refusal(config, "eval_batch_size", f"{figures}: evaluation of "
                        f"{progs.data['eval_batch']} examples per chip per replica does not fit; "
                        "lower --config.eval_batch_size (it is the batch of each chip)")
    cap = capacity(progs, limit, measured, say)
    s = conf["resident_state_per_replica"]
    # The largest group size k < kc whose program, with the other n - k replicas'
    # state resident, fits: each program's peak alone from the compiled counts' line.
    points = {k: v for k, v in measured.items() if not v["refused"]}
    ks = sorted(points)
    best = 0
    if len(ks) >= 2:
        a, b = ks[0], ks[1]
        slope = (points[b]["peak"] - points[a]["peak"]) / (b - a)
        for k in range(1, kc):
            alone = points[k]["peak"] if k in points else points[a]["peak"] + slope * (k - a)
            if alone + (n - k) * s <= limit and k <= cap["replicas"]:
                best = k
    if best:
        return _refusal(config, "replica_batch", f"{figures}: --config.replica_batch={best} "
                        f"fits (predicted from the compiled replica counts)")
    if cap["replicas"] >= 1 and n > 1:
        return _refusal(config, "num_replicas", f"{figures}: {cap['replicas']} replica(s) in "
                        "one program fit a chip, not the state of all of them")
    hint = " or --config.dtype=bfloat16" if config.dtype == "float32" else ""
    per_chip = int(config.batch_size) // progs.backend.num_devices
    return _refusal(config, "batch_size", f"{figures}: one replica at batch "
                    f"{config.batch_size} ({per_chip} examples per chip) does not fit; lower "
                    f"--config.batch_size{hint}")


def describe(config, layout: dict, say: Callable[[str], None]) -> dict:
    """Compile `config`'s programs for `config.compile_for`; the figures as a dict.

    `layout`: `plan.layout(config)` (replicas, groups, dataset shapes, schedule).
    `say`: prints progress lines (each compile takes seconds to minutes).
    Raises ConfigError when the run would not fit the chip's HBM.
    """
    generation, name = parse_target(config.compile_for)
    devices = topology(config.compile_for)
    if config.num_devices:
        if config.num_devices > len(devices):
            raise ConfigError("num_devices", f"{config.num_devices} requested, {name} has "
                              f"{len(devices)} chips")
        devices = devices[: config.num_devices]
    if int(config.batch_size) % len(devices):
        raise ConfigError("batch_size", f"{config.batch_size} is not divisible by the "
                          f"{len(devices)} chips of {name}")
    chip = CHIPS.get(generation)
    chip_name = chip.name if chip else devices[0].device_kind
    compiler_limit = compiler_hbm_limit(devices[0])
    limit = compiler_limit or (chip.hbm_bytes if chip else None)
    if not limit:
        raise ConfigError("compile_for", f"the HBM of a {devices[0].device_kind} chip is not "
                          f"known (neither in tpu_compile.CHIPS nor stated by the compiler)")
    d = layout["dataset"]
    shapes = Shapes(d["train"], d["test"], tuple(d["example_shape"]),
                    tuple(d["test_example_shape"]), d["classes"], d["image"], d["sizes"],
                    stream=layout["input_pipeline"] == "stream")
    groups = layout["groups"]
    n, kc = sum(groups), groups[0]
    progs = Programs(config, devices, shapes)
    _before_compiling(config, progs, n, limit, chip_name)
    say(f"compiling for {name} ({len(devices)} x {devices[0].device_kind}, compile-only "
        f"devices): each program takes seconds to minutes on a CPU")
    measured: dict[int, dict] = {}
    measured[kc] = progs.peak(kc, say=say)
    conf = progs.peak(kc, others=n - kc)
    if conf["refused"] or conf["peak"] > limit:
        raise _after_compiling(config, progs, n, kc, limit, chip_name, measured, say)
    resident = progs.resident(kc, others=n - kc)
    for program in ["init"] + (["warmup"] if int(config.warmup_epochs) else []) + (
            ["perturb"] if any(p > 0 for p in _probs(config)) else []):
        c = progs.compile(program, kc)
        say(f"compiled the {_NAMES[program]} for {kc} replica(s): {c.seconds:.1f} s")
        if c.refused or progs.during(c, resident) > limit:
            raise _refusal(config, "replica_batch" if kc > 1 else "batch_size",
                           f"the {_NAMES[program]} of {kc} replica(s) needs "
                           f"{_gib(progs.during(c, resident))} per {chip_name} chip; the "
                           f"compiler allows {_gib(limit)}")
    cap = capacity(progs, limit, measured, say)
    level, ev = progs.compile("level", kc), progs.compile("eval", kc)
    warm = progs.compiled.get(("warmup", kc), level)
    s = layout["schedule"]
    steps = progs.steps_per_epoch
    share = n / kc  # every group runs the programs; their cost scales with the group's size
    eval_batches = progs.data["eval_batches"] if shapes.stream else \
        progs.data["test_x"].shape[0] // (len(devices) * progs.data["eval_batch"])
    evals = s["levels"] * s["evaluations_per_level"] * eval_batches
    level_steps = s["levels"] * s["epochs_per_level"] * steps
    warm_steps = int(config.warmup_epochs) * steps

    def per_chip(attr):  # one chip's total of a cost_analysis figure over the campaign
        return share * (warm_steps * (getattr(warm, attr) or 0)
                        + level_steps * (getattr(level, attr) or 0)
                        + evals * (getattr(ev, attr) or 0))

    flops, traffic = per_chip("flops"), per_chip("bytes_accessed")
    projected = None
    if chip:
        compute = flops / (chip.peak_bf16 * ASSUMED_UTILIZATION)
        memory = traffic / chip.hbm_bandwidth
        projected = {"total": compute, "memory": memory, "utilization": ASSUMED_UTILIZATION,
                     "peak_bf16": chip.peak_bf16, "hbm_bandwidth": chip.hbm_bandwidth}
    return {
        "target": {"compile_for": config.compile_for, "topology": name, "chip": chip_name,
                   "device_kind": devices[0].device_kind, "chips": len(devices),
                   "hosts": len({dev.process_index for dev in devices}),
                   "libtpu": _version("libtpu"), "jax": jax.__version__},
        "hbm": {"published": chip.hbm_bytes if chip else None,
                "published_text": chip.hbm_text if chip else None,
                "source": chip.source if chip else None, "compiler": compiler_limit,
                "limit": limit},
        "memory_per_chip": {"configured": conf, "level": dataclasses.asdict(level),
                            "eval": dataclasses.asdict(ev), "one_replica": measured[1]},
        "replicas": {"total": n, "per_program": kc}, "stream": shapes.stream,
        "capacity": cap,
        "flops": {"train_step_per_chip": level.flops, "eval_batch_per_chip": ev.flops,
                  "train_step_bytes_per_chip": level.bytes_accessed,
                  "examples_per_chip": int(config.batch_size) // len(devices),
                  "eval_batch": progs.data["eval_batch"], "steps_per_epoch": steps,
                  "campaign_per_chip": flops, "campaign": flops * len(devices),
                  "campaign_bytes_per_chip": traffic},
        "projected_seconds": projected,
        "compile_seconds": round(sum(c.seconds for c in progs.compiled.values()), 1),
        "compiled": [dataclasses.asdict(c) for c in progs.compiled.values()],
    }


_STATUS = {"path": ""}


def describe_in_a_process(config, layout: dict, say: Callable[[str], None]) -> dict:
    """`describe` in a child process: a crash of the TPU compiler becomes a ConfigError.

    libtpu 0.0.42.1 crashes (SIGSEGV) compiling the training step of the
    full-width ResNets for v6e (docs/TPU.md); a crash in this process would end
    the dry run with a core dump instead of its one line. The child prints the
    progress lines; its stderr (libtpu's) is kept only to name a crash.
    """
    with tempfile.TemporaryDirectory(prefix="lrr_tpu_compile_") as tmp:
        spec, result, status = (os.path.join(tmp, n) for n in ("spec", "result", "status"))
        with open(spec, "w") as f:
            json.dump({"config": json.loads(config.to_json_best_effort()), "layout": layout}, f)
        with open(os.path.join(tmp, "stderr"), "w+") as err:
            child = subprocess.Popen([sys.executable, "-m", "lrr_jax.tpu_compile", spec, result,
                                      status], stdout=subprocess.PIPE, stderr=err, text=True)
            for line in child.stdout:
                say(line.rstrip("\n"))
            child.wait()
            err.seek(0)
            log = err.read()
        if os.path.exists(result):
            with open(result) as f:
                out = json.load(f)
            if "error" in out:
                raise ConfigError(*out["error"])
            return out
        doing = open(status).read() if os.path.exists(status) else "its programs"
        if child.returncode < 0:
            how = f"crashed (signal {signal.Signals(-child.returncode).name})"
        else:  # a Python error in the child: its last line
            last = [line for line in log.splitlines() if line.strip()][-1:] or [""]
            how = f"stopped (exit status {child.returncode}: {' '.join(last[0].split())[:300]})"
        raise ConfigError("compile_for", f"the TPU compiler (libtpu {_version('libtpu')}) {how} "
                          f"compiling {doing} for {parse_target(config.compile_for)[1]}: a "
                          "failure of the compiler, not a figure of the config (docs/TPU.md)")


def _child(spec_path: str, result_path: str, status_path: str) -> None:
    """The child of `describe_in_a_process`: describe, then write the result or the error."""
    import ml_collections

    with open(spec_path) as f:
        spec = json.load(f)
    _STATUS["path"] = status_path
    try:
        out = describe(ml_collections.ConfigDict(spec["config"]), spec["layout"],
                       lambda line: print(line, flush=True))
    except ConfigError as e:
        out = {"error": [e.key, str(e).removeprefix(f"{e.key}: ")]}
    with open(result_path, "w") as f:
        json.dump(out, f, default=float)


def _probs(config) -> list[float]:
    return replicas.parse_list(config.perturb_probs, float)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def render(result: dict) -> list[str]:
    """The lines the dry run prints after its plan for `compile_for`."""
    t, h, m = result["target"], result["hbm"], result["memory_per_chip"]
    conf, lv, ev = m["configured"], m["level"], m["eval"]
    f, cap, proj = result["flops"], result["capacity"], result["projected_seconds"]
    published = (f"{h['published_text']} published ({h['source']})" if h["published"]
                 else "no published figure in lrr_jax")
    compiler = (f"{_gib(h['compiler'])} available to a program (the compiler's own limit)"
                if h["compiler"] else "the compiler did not state its limit")
    k, others = result["replicas"]["per_program"], result["replicas"]["total"] - \
        result["replicas"]["per_program"]
    stream = result.get("stream", False)
    data_line = (f"two steps' batches {_mib(conf['resident_train'])}, two evaluation batches "
                 f"{_mib(conf['resident_test'])} (streamed: the split stays on the hosts)"
                 if stream else f"training split {_mib(conf['resident_train'])}, test split "
                 f"{_mib(conf['resident_test'])} (data: resident for the whole run)")
    lines = [
        f"compiled for: {t['topology']} = {t['chips']} x {t['chip']} ({t['device_kind']}) on "
        f"{t['hosts']} host(s) as libtpu lays it out; compile-only devices, no TPU used "
        f"(libtpu {t['libtpu']}, jax {t['jax']})",
        f"HBM per chip: {published}; {compiler}",
        "compile seconds: " + ", ".join(
            f"{_NAMES[c['program']]} x{c['replicas']} {c['seconds']:.1f}"
            for c in result["compiled"]) + f"; total {result['compile_seconds']:.0f} s",
        f"memory per chip, resident: state of {k + others} replica(s) "
        f"{_mib(conf['resident_state'])} (as the TPU lays it out), {data_line}",
        f"memory per chip, level {'step' if stream else 'epoch'} of {k} replica(s) (the TPU "
        "compiler's figures): "
        f"arguments {_mib(lv['arguments'])}, temporaries {_mib(lv['temporaries'])}, outputs "
        f"{_mib(lv['outputs'])} ({_mib(lv['aliased'])} of them into the donated state), code "
        f"{_mib(lv['code'])}: {_gib(conf['epoch'])} with the rest resident",
        f"memory per chip, evaluation ({f['eval_batch']} examples per chip per step): "
        f"arguments {_mib(ev['arguments'])}, temporaries {_mib(ev['temporaries'])}, code "
        f"{_mib(ev['code'])}: {_gib(conf['eval'])} with the rest resident",
        f"peak per chip: {_gib(conf['peak'])} of {_gib(h['limit'])} "
        f"({100 * conf['peak'] / h['limit']:.1f}%, during the "
        f"{_NAMES[conf['binding']]}): fits",
        f"replicas per program: at most {cap['replicas']} fit a chip (the largest "
        f"replica_batch with no other replica resident; 1 replica: "
        f"{_gib(m['one_replica']['peak'])}): {cap['how']}",
        f"FLOPs: {_flops(f['train_step_per_chip'])} per chip per training step "
        f"({f['examples_per_chip']} examples per chip x {k} replica(s); cost_analysis of "
        f"{'the streamed step' if stream else 'one scanned step'}), "
        f"{_flops(f['eval_batch_per_chip'])} per chip per evaluation step",
    ]
    if proj:
        lines.append(
            f"projected (an assumption, not a measurement): {_hours(proj['total'])} for the "
            f"campaign's {_flops(f['campaign'])} on {t['chips']} chips, ASSUMING "
            f"{proj['utilization']:.0%} of the {t['chip']}'s published peak "
            f"{proj['peak_bf16'] / 1e12:.0f} TFLOP/s bfloat16 per chip; compilation, "
            "collectives, pruning, checkpoints and host work not included")
        lines.append(
            f"memory traffic (cost_analysis's byte count, a model): "
            f"{_gb(f['train_step_bytes_per_chip'])} per chip per training step, "
            f"{_hours(proj['memory'])} for the campaign at the published "
            f"{proj['hbm_bandwidth'] / 1e9:.0f} GB/s of HBM" + (")" if stream else
                                                                 " (it also counts, once per "
            "step, the epoch's work outside its scan, such as the copy of the training split)"))
    else:
        lines.append(f"projected: no published peak rate for {t['chip']} in lrr_jax")
    return lines


def _flops(x: float | None) -> str:
    return "? FLOPs" if x is None else f"{x:.3g} FLOPs"


def _gb(x: float | None) -> str:
    return "? bytes" if x is None else f"{x / 1e9:.3g} GB"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    _child(*sys.argv[1:4])
