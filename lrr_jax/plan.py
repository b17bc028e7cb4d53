"""The plan of a run before it trains: `--config.dry_run=True`, and the CPU warning.

`describe(config)` measures what a run of `config` would cost on the devices
it would use, without the workdir and without training it:

- the replicas (method, seed, perturbation) and how they are grouped into
  programs (`replica_batch`);
- the schedule: warm-up epochs, levels x epochs, steps per epoch, steps per
  replica, evaluations;
- the memory on each device: parameters, mask, optimizer state and BatchNorm
  statistics of every replica of a group, the training and test data, and the
  temporaries XLA allocates for the compiled level epoch (its own
  `memory_analysis`, where the backend reports one);
- a projected wall time from measured steps: the level epoch of the real
  model, optimizer and batch, compiled for `MEASURED_STEPS` steps on random
  data of the dataset's shape, timed after its compilation; evaluation timed
  the same way on `eval_batch_size` examples. The projection is steps x
  seconds per step + evaluations, per replica group, compilation excluded.

The dataset is read when it is available (its real sizes); otherwise the
standard split sizes are assumed and the plan says so.

`warn_if_paper_scale_on_cpu(config)`: a full-width ResNet on a CPU backend
prints one warning with this projection before the run starts.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

from lrr_jax import data, distributed, engine, models, parallel, replicas, train
from lrr_jax.errors import ConfigError

MEASURED_STEPS = 3


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _hms(seconds: float) -> str:
    d, rest = divmod(int(round(seconds)), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d{h:02d}h{m:02d}m" if d else f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s")


def _bytes(tree) -> int:
    return int(sum(np.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(tree)))


def _stream_bytes(config, shape, num_devices: int, streams: int) -> int:
    """Input bytes a streamed run keeps on each device: the step being trained and the
    one prefetched (uint8 examples, int32 labels), and one evaluation batch."""
    example = int(np.prod(shape)) + 4
    local = int(config.batch_size) // max(num_devices, 1)
    return 2 * streams * local * example + int(config.eval_batch_size) * example


def dataset_shapes(config) -> dict:
    """The dataset's sizes and example shapes, read when prepared, else its standard sizes.

    {'train', 'test', 'example_shape', 'test_example_shape', 'classes', 'image',
    'bytes' (both splits as host arrays: what the on-device pipeline places on each
    device; 0 read from a streamed dataset, whose batches `_stream_bytes` counts),
    'sizes' (where they come from)}.
    """
    try:
        if engine.pipeline(config) == "stream":
            s = data.open_streams(config)
            return {"train": s.train.size, "test": s.test.size,
                    "example_shape": tuple(s.train.shape),
                    "test_example_shape": tuple(s.test.shape), "classes": s.num_classes,
                    "image": s.is_image, "bytes": 0, "sizes": "read from the dataset"}
        ds = data.load(config)
        return {"train": len(ds.train_y), "test": len(ds.test_y),
                "example_shape": tuple(ds.train_x.shape[1:]),
                "test_example_shape": tuple(ds.test_x.shape[1:]), "classes": ds.num_classes,
                "image": ds.is_image, "bytes": ds.train_x.nbytes + ds.test_x.nbytes,
                "sizes": "read from the dataset"}
    except ConfigError:
        real = data.real_sizes(config)  # the dataset's standard sizes, if it has them
        if real is None:
            raise
        n_train, n_test, shape, classes = real[:4]
        test_shape = real[4] if len(real) > 4 else shape  # Tiny ImageNet's resized test split
        if config.train_limit:
            n_train = min(n_train, int(config.train_limit))
        if config.test_limit:
            n_test = min(n_test, int(config.test_limit))
        nbytes = n_train * int(np.prod(shape)) + n_test * int(np.prod(test_shape))
        return {"train": n_train, "test": n_test, "example_shape": tuple(shape),
                "test_example_shape": tuple(test_shape), "classes": classes,
                "image": len(shape) == 3, "bytes": nbytes,
                "sizes": "not prepared here: the standard sizes assumed"}


def _memory(compiled) -> dict | None:
    """XLA's own accounting of a compiled program's memory, where the backend gives one."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if stats is None:
        return None
    return {"temp": int(getattr(stats, "temp_size_in_bytes", 0)),
            "arguments": int(getattr(stats, "argument_size_in_bytes", 0)),
            "outputs": int(getattr(stats, "output_size_in_bytes", 0))}


def _timed(fn, *args, budget_s: float):
    """(last output, best seconds) of an already compiled call, repeated up to 3 times
    while the calls so far took less than `budget_s`."""
    best, out, spent = float("inf"), None, 0.0
    for _ in range(3):
        t = time.perf_counter()
        out = fn(*args)
        jax.block_until_ready(out)
        seconds = time.perf_counter() - t
        best, spent = min(best, seconds), spent + seconds
        if spent >= budget_s:
            break
        if isinstance(out, tuple) and len(out) == 2 and hasattr(out[0], "params"):
            args = (out[0], *args[1:])  # an epoch: feed its (donated) state back
    return out, best


def device_memory() -> int | None:
    """Bytes a program may use on device 0: its memory limit (GPU, TPU), or this host's
    physical memory for a CPU device; None where neither is known."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every platform reports it
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if jax.devices()[0].platform == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def measure(config, group: int, shape: tuple, classes: int, *, steps: int = MEASURED_STEPS,
            budget_s: float = 15.0) -> dict:
    """Seconds per step of the level epoch for `group` replicas, and per eval example.

    Measured through the jit + shard_map mapping (what `pmap` runs as in this
    JAX), compiled ahead of time so that XLA's memory accounting comes with it.
    """
    backend = parallel.Backend("shard_map", engine.devices(config))
    image = len(shape) == 3
    rng = np.random.default_rng(0)
    n = steps * int(config.batch_size)
    if image:
        x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        mean, std = np.full(shape[-1], 0.5, np.float32), np.full(shape[-1], 0.25, np.float32)
    else:
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        mean, std = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    model = models.create(config, classes, bn_axis_name=train.AXIS)
    sample = np.zeros((1, *shape), np.float32)
    state = parallel.get(train.create_replicas(model, config, [int(config.seed) + r for r in
                                                               range(group)], sample))
    per_replica = config.data_order == "per_replica"
    info = engine.DataInfo(config.dataset, n, n, tuple(shape), classes, mean, std)
    program, steps = engine.epoch_program(config, model, backend, info, "level")
    xs, ys = backend.put(x), backend.put(y)
    key = jax.random.PRNGKey(0)
    keys = backend.put(jax.random.split(key, group) if per_replica else key)
    placed = backend.put(state)
    t = time.perf_counter()
    epoch = program.lower(placed, xs, ys, keys).compile()
    compile_seconds = time.perf_counter() - t
    memory = _memory(epoch)
    need, have = (memory or {}).get("temp", 0) + (memory or {}).get("arguments", 0), \
        device_memory()
    if have and need > 0.9 * have:  # running it would fail (or swap): say so instead
        return {"compile_seconds": compile_seconds, "step_seconds": None,
                "eval_seconds_per_examples": None, "memory": memory,
                "state_bytes": _bytes(state), "devices": backend.num_devices,
                "not_timed": f"the level epoch needs {_mib(need)} per device (XLA's count) "
                             f"and this device has {_mib(have)}"}
    (placed, _), seconds = _timed(epoch, placed, xs, ys, keys, budget_s=budget_s)
    # Evaluation on at most a training batch per device (its time per example).
    eval_n = min(int(config.eval_batch_size), int(config.batch_size)) * backend.num_devices
    ex, ey = np.resize(x, (eval_n, *shape)), np.resize(y, eval_n)
    ex, ey, ew, eval_batch = train.pad_for_eval(ex, ey, backend.num_devices,
                                                eval_n // backend.num_devices)
    evaluate = backend.map(train.make_evaluate(apply_fn=model.apply,
                                               num_devices=backend.num_devices, mean=mean,
                                               std=std, eval_batch=eval_batch), 4)
    args = [backend.put(a) for a in (ex, ey, ew)]
    jax.block_until_ready(evaluate(placed, *args))  # compiles
    _, eval_seconds = _timed(evaluate, placed, *args, budget_s=budget_s)
    return {"compile_seconds": compile_seconds, "step_seconds": seconds / steps,
            "eval_seconds_per_examples": eval_seconds / len(ey), "memory": _memory(epoch),
            "state_bytes": _bytes(state), "devices": backend.num_devices}


def layout(config) -> dict:
    """What a run of `config` is, before measuring anything: replicas, groups, input
    pipeline, dataset shapes and schedule (the plan's first part, also what
    `tpu_compile` compiles for)."""
    reps = replicas.from_config(config)
    groups = replicas.groups(len(reps), config.replica_batch)
    d = dataset_shapes(config)
    engine.check_batch_size(config, d["train"])  # as the run refuses it, before compiling
    batch = int(config.batch_size)
    steps_per_epoch = d["train"] // batch
    epochs = int(config.warmup_epochs) + int(config.levels) * int(config.epochs_per_level)
    evals_per_level = len([e for e in range(int(config.epochs_per_level))
                           if (e + 1) % int(config.eval_every_epochs) == 0
                           or e == int(config.epochs_per_level) - 1])
    return {
        "replicas": [r.name for r in reps], "groups": [len(g) for g in groups],
        "input_pipeline": engine.pipeline(config),
        "dataset": {"name": config.dataset, "train": d["train"], "test": d["test"],
                    "example_shape": list(d["example_shape"]),
                    "test_example_shape": list(d["test_example_shape"]),
                    "classes": d["classes"], "image": d["image"], "bytes": d["bytes"],
                    "sizes": d["sizes"]},
        "schedule": {"warmup_epochs": int(config.warmup_epochs), "levels": int(config.levels),
                     "epochs_per_level": int(config.epochs_per_level), "batch": batch,
                     "steps_per_epoch": steps_per_epoch,
                     "steps_per_replica": epochs * steps_per_epoch,
                     "evaluations_per_level": evals_per_level},
    }


def describe(config, *, steps: int = MEASURED_STEPS, budget_s: float = 15.0) -> dict:
    """The plan of `config` as a dict (see the module docstring).

    `steps`: the level epoch is compiled for this many steps and timed (up to 3
    calls, fewer once they took `budget_s`).
    """
    lay = layout(config)
    d, s, groups = lay["dataset"], lay["schedule"], lay["groups"]
    n_train, n_test, shape = d["train"], d["test"], tuple(d["example_shape"])
    data_bytes, steps_per_epoch = d["bytes"], s["steps_per_epoch"]
    epochs = s["warmup_epochs"] + s["levels"] * s["epochs_per_level"]
    evals_per_level = s["evaluations_per_level"]
    m = measure(config, groups[0], shape, d["classes"], steps=steps, budget_s=budget_s)
    timed = m["step_seconds"] is not None
    train_seconds = epochs * steps_per_epoch * m["step_seconds"] * len(groups) if timed else None
    eval_seconds = (int(config.levels) * evals_per_level * n_test
                    * m["eval_seconds_per_examples"] * len(groups)) if timed else None
    if lay["input_pipeline"] == "stream":  # batches, not the dataset, on the devices
        reps = replicas.from_config(config)[:groups[0]]
        streams = len({replicas.data_seed(config, r) for r in reps})
        data_bytes = _stream_bytes(config, shape, m["devices"], streams)
    elif config.shard_train_data:  # each device holds 1/N of the training split
        train_bytes = data_bytes * n_train // max(n_train + n_test, 1)
        data_bytes -= train_bytes - train_bytes // m["devices"]
    return {
        **lay,
        "devices": _device_line(config),
        "memory_bytes_per_device": {
            "state_per_group": m["state_bytes"], "data": data_bytes,
            "compiled_epoch_temporaries": (m["memory"] or {}).get("temp")},
        "measured": {"steps": steps, "replicas": groups[0],
                     "compile_seconds": round(m["compile_seconds"], 2),
                     "step_seconds": round(m["step_seconds"], 5) if timed else None,
                     "eval_seconds_per_1000_examples": round(
                         1000 * m["eval_seconds_per_examples"], 4) if timed else None,
                     "not_timed": m.get("not_timed")},
        "projected_seconds": {"train": round(train_seconds, 1), "eval": round(eval_seconds, 1),
                              "total": round(train_seconds + eval_seconds, 1)} if timed else None,
    }


def _device_line(config) -> str:
    devices = engine.devices(config)
    return (f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform} backend), "
            f"{jax.process_count()} process(es)")


def _header(config, plan: dict) -> list[str]:
    """The plan's first lines: the resolved config, replicas, data and schedule."""
    s, d = plan["schedule"], plan["dataset"]
    resolved = {k: config[k] for k in sorted(config.keys())}
    return [
        "plan (dry run: nothing is trained and nothing is written)",
        "config: " + json.dumps(resolved, sort_keys=True, default=str),
        f"replicas: {len(plan['replicas'])} in {len(plan['groups'])} program run(s) of "
        f"{plan['groups'][0]} (replica_batch={config.replica_batch}): "
        + "; ".join(plan["replicas"]),
        f"data: {d['name']} {d['train']} train / {d['test']} test, examples "
        f"{tuple(d['example_shape'])}, {d['classes']} classes ({d['sizes']})",
        f"schedule: {s['warmup_epochs']} warm-up epoch(s) + {s['levels']} levels x "
        f"{s['epochs_per_level']} epochs, {s['steps_per_epoch']} steps per epoch at batch "
        f"{s['batch']}: {s['steps_per_replica']:,} steps per replica; "
        f"{s['evaluations_per_level']} evaluation(s) per level",
    ]


def render(config, plan: dict) -> str:
    """The plan as the lines `--config.dry_run=True` prints."""
    mem, meas = plan["memory_bytes_per_device"], plan["measured"]
    temp = mem["compiled_epoch_temporaries"]
    total = mem["state_per_group"] + mem["data"] + (temp or 0)
    lines = [
        *_header(config, plan),
        f"devices: {plan['devices']}",
        f"memory per device: replica state (params, mask, optimizer, BN statistics) "
        f"{_mib(mem['state_per_group'])} for {plan['groups'][0]} replica(s), "
        + (f"streamed input (2 steps' batches + an eval batch) {_mib(mem['data'])}"
           if plan["input_pipeline"] == "stream" else f"data {_mib(mem['data'])}")
        + ", compiled epoch temporaries "
        f"{_mib(temp) if temp is not None else 'not reported by this backend'}: about "
        f"{_mib(total)}",
    ]
    if plan["projected_seconds"] is None:
        lines += [f"measured: the level epoch of {meas['replicas']} replica(s) compiled in "
                  f"{meas['compile_seconds']} s, not run: {meas['not_timed']}",
                  "projected: none (no step could be timed on this device; on the run's "
                  "devices the batch is split over them: run the dry run there, or "
                  "--config.compile_for=tpu:TOPOLOGY)"]
        return "\n".join(lines)
    lines += [
        f"measured: the level epoch of {meas['replicas']} replica(s) compiled for "
        f"{meas['steps']} steps: {meas['compile_seconds']} s to compile, then "
        f"{meas['step_seconds']} s per step (best call); evaluation "
        f"{meas['eval_seconds_per_1000_examples']} s per 1000 examples",
        f"projected: {_hms(plan['projected_seconds']['total'])} "
        f"(training {_hms(plan['projected_seconds']['train'])}, evaluation "
        f"{_hms(plan['projected_seconds']['eval'])}; compilation, pruning and checkpoints "
        f"not included)",
    ]
    return "\n".join(lines)


def dry_run(config) -> dict:
    """Print the plan (process 0) and return it.

    With `config.compile_for` ('tpu:TOPOLOGY') the programs are compiled for that
    TPU topology instead of measured here (`lrr_jax.tpu_compile`); a config that
    does not fit its chips raises ConfigError.
    """
    if config.get("compile_for"):
        return _dry_run_for(config)
    plan = describe(config)
    if distributed.is_primary():
        print(render(config, plan), flush=True)
    return plan


def _dry_run_for(config) -> dict:
    from lrr_jax import tpu_compile

    tpu_compile.start_jax_quietly()  # stderr stays for the one-line error
    plan = layout(config)

    def say(line: str) -> None:
        if distributed.is_primary():
            print(line, flush=True)

    for line in _header(config, plan):
        say(line)
    plan["compiled_for"] = tpu_compile.describe_in_a_process(config, plan, say)
    for line in tpu_compile.render(plan["compiled_for"]):
        say(line)
    return plan


# Prunable weights from which a network takes hours per level on a CPU (ResNet18 at
# width 0.5 has 2.8M; ResNet-20 0.27M, ResNet-56 0.85M train in minutes).
PAPER_SCALE_WEIGHTS = 2_000_000


def is_paper_scale(config) -> bool:
    """A network of `PAPER_SCALE_WEIGHTS` or more prunable weights at this width (its
    known count at width 1, `models.PAPER_PRUNABLE_COUNTS`, times width squared)."""
    counts = [n for (name, _), n in models.PAPER_PRUNABLE_COUNTS.items() if name == config.model]
    return bool(counts) and min(counts) * float(config.width) ** 2 >= PAPER_SCALE_WEIGHTS


def warn_if_paper_scale_on_cpu(config) -> None:
    """One warning with the projected time when a paper-scale config starts on a CPU.

    The projection comes from one measured step (a full-width ResNet step takes
    seconds to a minute on a CPU), so the warning costs about a minute before a
    run that would take months.
    """
    if jax.devices()[0].platform != "cpu" or not is_paper_scale(config) or config.dry_run:
        return
    plan = describe(config, steps=1, budget_s=0.0)
    if plan["projected_seconds"] is None:
        if distributed.is_primary():
            print(f"warning: {config.model} at width {config.width} on a CPU: "
                  f"{plan['measured']['not_timed']}. This config is meant for a GPU or TPU.",
                  file=sys.stderr, flush=True)
        return
    if distributed.is_primary():
        print(f"warning: {config.model} at width {config.width} with {config.levels} levels x "
              f"{config.epochs_per_level} epochs on a CPU: projected "
              f"{_hms(plan['projected_seconds']['total'])} from a measured step "
              f"({plan['measured']['step_seconds']} s). This config is meant for a GPU or TPU "
              f"(README: Scale); --config.dry_run=True prints the whole plan.",
              file=sys.stderr, flush=True)
