"""Benchmarks of the training engine: `python -m lrr_jax.bench` prints one JSON object.

The object is also written to `--out`. Every measurement records the settings
it ran with, the device kind, the load average before and after, the CPU time
this process got, every repeat and the median over repeats after warm-up (the
first call of each program compiles it and is not timed).

Parts (`--only=a,b,...`; default all):

* `throughput`: images/s of the compiled epoch (`train.make_train_epoch`:
  on-device shuffling, crop/flip, normalization, `steps` SGD steps in one
  `lax.scan`, donated state) for each model x dtype, masked and dense. Dense is
  the same epoch built with `masked=False`: the mask stays in the state but is
  not multiplied into the weights (nor into their gradients). The two are
  timed alternately in one process; `masked_over_dense` is the worst (largest)
  over model x dtype of the median of the paired time ratios.
* `vmap`: K replicas of the quickstart model (configs/quickstart.py) stacked
  in one vmapped epoch program versus K sequential calls of the same program
  built for 1 replica, the same epochs and data; `vmap_speedup` = sequential
  time / vmapped time, steady state (compilation excluded from both). Also
  recorded: the matmul GFLOP/s each reaches and `speedup_bound`, the best
  single-matmul GFLOP/s of the device over the sequential rate: no same-work
  batching can beat that ratio.
* `vmap_runs`: the same comparison as whole runs: K sequential `driver.run`s
  of the quickstart campaign for one method with `num_replicas=1` (seeds 0..K-1,
  each run building and compiling its own programs, evaluating, pruning and
  checkpointing, as K separate runs would) against one `driver.run` with
  `num_replicas=K`; `--vmap_runs_levels` levels of the quickstart's epochs.
  `vmap_runs_speedup` = sequential seconds / vmapped seconds (one repeat each).
* `prune`: `pruning.prune` (global magnitude, exact count) on random
  ResNet50/CIFAR100-size parameters (23.65M prunable weights) with a mask at
  density 0.8^4, pruned to 0.8^5; `prune_seconds` is the median.
* `quickstart`: the README quickstart command end to end in a subprocess
  (`python -m lrr_jax.main --config=configs/quickstart.py`), wall seconds.
* `torch`: the masked CIFAR ResNet18 epoch of lrr_jax (float32) against a
  plain PyTorch eager reference written here (`_torch_epoch`: same
  architecture, width, batch, masked weights, crop/flip, SGD with momentum
  and weight decay), timed alternately; `torch_ratio` = lrr_jax time /
  PyTorch time (below 1: lrr_jax is faster). Needs `pip install
  lrr_jax[torch]`; recorded as skipped otherwise.

Defaults depend on the platform of `jax.devices()[0]` (recorded under
`settings`): on CPU width 0.25, 2 steps per timed epoch, 3 repeats, so the
whole run takes minutes; on GPU/TPU width 1.0 (the paper's networks), 50
steps, 5 repeats. The batch defaults to the paper's 256 (`config_base`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np

from lrr_jax import config_base, masks, models, parallel, pruning, train

PARTS = ("throughput", "vmap", "vmap_runs", "prune", "quickstart", "torch")
# Per-platform defaults: (width, steps per timed epoch, repeats).
PLATFORM_DEFAULTS = {"cpu": (0.25, 2, 3), "gpu": (1.0, 50, 5), "tpu": (1.0, 50, 5)}
NUM_CLASSES = {"resnet18": 10, "resnet50": 100}  # CIFAR10 ResNet18, CIFAR100 ResNet50
TARGETS = {"masked_over_dense": "<= 1.03", "vmap_speedup": ">= 8",
           "prune_seconds": "< 1"}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- measuring -------------------------------------------------------------------------------

def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def _measuring(record: dict):
    """Adds load averages, wall seconds and this process's CPU share to `record`."""
    record["loadavg_before"] = _load()
    t0, c0 = time.perf_counter(), _cpu_seconds()
    yield record
    wall = time.perf_counter() - t0
    record["loadavg_after"] = _load()
    record["wall_seconds"] = round(wall, 3)
    # 1.0 = this process kept every core busy the whole time; much less under
    # contention from other jobs (or when the work cannot use all cores).
    record["process_cpu_share"] = round((_cpu_seconds() - c0) / max(wall, 1e-9)
                                        / (os.cpu_count() or 1), 3)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _median(xs):
    return float(statistics.median(xs))


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def _alternate(named: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each callable `repeats` times, alternating between them, after one warm-up each."""
    warm = {k: _timed(f) for k, f in named.items()}
    times = {k: [] for k in named}
    for _ in range(repeats):
        for k, f in named.items():
            times[k].append(_timed(f))
    return {k: times[k] for k in named} | {f"{k}_warmup": [warm[k]] for k in named}


def _round(x, digits=4):
    return None if x is None else float(f"{x:.{digits}g}")


# ---- programs --------------------------------------------------------------------------------

def _resnet_config(args, model: str, dtype: str):
    c = config_base.get_base_config()
    c.model, c.width, c.dtype, c.batch_size = model, args.width, dtype, args.batch
    c.dataset = "cifar100" if NUM_CLASSES[model] == 100 else "cifar10"
    return c


class EpochProgram:
    """A compiled lrr_jax epoch on synthetic CIFAR-shaped data, fed back its own state."""

    def __init__(self, config, backend, *, num_classes: int, steps: int, masked: bool,
                 replicas: int = 1, seed: int = 0):
        rng = np.random.default_rng(seed)
        n = steps * config.batch_size
        self.x = backend.put(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
        self.y = backend.put(rng.integers(0, num_classes, n).astype(np.int32))
        model = models.create(config, num_classes, bn_axis_name=train.AXIS)
        sample = np.zeros((1, 32, 32, 3), np.float32)
        state = train.create_replicas(model, config, list(range(replicas)), sample)
        self.state = backend.put(parallel.get(state))
        mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
        fn, self.steps = train.make_train_epoch(
            apply_fn=model.apply, config=config, phase="level", num_train=n,
            num_devices=backend.num_devices, mean=mean, std=std, image=True, masked=masked)
        self.fn = backend.map(fn, 4, donate_first=True)
        self.epoch = 0

    def __call__(self):
        self.state, metrics = self.fn(self.state, self.x, self.y, jax.random.PRNGKey(self.epoch))
        self.epoch += 1
        return self.state, metrics


# ---- parts -----------------------------------------------------------------------------------

def bench_throughput(args, backend) -> tuple[list[dict], float | None]:
    records = []
    for model in args.models:
        for dtype in args.dtypes:
            c = _resnet_config(args, model, dtype)
            rec = {"part": "throughput", "model": model, "dtype": dtype, "width": args.width,
                   "batch": args.batch, "steps_per_epoch": args.steps, "repeats": args.repeats,
                   "num_devices": backend.num_devices, "parallel": args.parallel}
            with _measuring(rec):
                progs = {kind: EpochProgram(c, backend, num_classes=NUM_CLASSES[model],
                                            steps=args.steps, masked=kind == "masked")
                         for kind in ("masked", "dense")}
                times = _alternate(progs, args.repeats)
            images = args.steps * args.batch
            for kind in ("masked", "dense"):
                med = _median(times[kind])
                rec[kind] = {"median_epoch_seconds": _round(med),
                             "step_seconds": _round(med / args.steps),
                             "images_per_second": _round(images / med),
                             "repeat_seconds": [_round(t) for t in times[kind]],
                             "warmup_seconds_incl_compile": _round(times[f"{kind}_warmup"][0])}
            ratios = [m / d for m, d in zip(times["masked"], times["dense"])]
            rec["masked_over_dense"] = _round(_median(ratios))
            records.append(rec)
            _progress(rec)
    worst = max((r["masked_over_dense"] for r in records), default=None)
    return records, worst


def _quickstart_config(args):
    spec = importlib.util.spec_from_file_location("quickstart_config", args.quickstart_config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def bench_vmap(args, backend) -> dict:
    from lrr_jax import data

    k = args.vmap_replicas
    c = _quickstart_config(args)
    c.num_replicas = k
    rec = {"part": "vmap", "model": f"mlp{tuple(c.mlp_hidden)}", "dataset": c.dataset,
           "batch": c.batch_size, "replicas": k, "epochs": args.vmap_epochs,
           "repeats": args.repeats, "num_devices": backend.num_devices}
    with _measuring(rec):
        ds = data.load(c)
        model = models.create(c, ds.num_classes, bn_axis_name=train.AXIS)
        sample = np.zeros((1, *ds.train_x.shape[1:]), np.float32)
        fn, steps = train.make_train_epoch(
            apply_fn=model.apply, config=c, phase="level", num_train=ds.train_x.shape[0],
            num_devices=backend.num_devices, mean=ds.mean, std=ds.std, image=ds.is_image)
        x, y = backend.put(ds.train_x), backend.put(ds.train_y)
        stacked = parallel.get(train.create_replicas(model, c, list(range(k)), sample))
        vmapped_fn = backend.map(fn, 4, donate_first=True)
        single_fn = backend.map(fn, 4, donate_first=True)
        holder = {"vmapped": backend.put(stacked),
                  "sequential": [backend.put(jax.tree.map(lambda a, r=r: a[r:r + 1], stacked))
                                 for r in range(k)]}
        losses = {}

        def run_vmapped():
            s, out = holder["vmapped"], []
            for e in range(args.vmap_epochs):
                s, m = vmapped_fn(s, x, y, jax.random.PRNGKey(e))
                out.append(m["loss"])
            holder["vmapped"] = s
            losses.setdefault("vmapped_first", out[0])  # the warm-up call: from the same init
            return s, out

        def run_sequential():
            out = []
            for r in range(k):
                s = holder["sequential"][r]
                for e in range(args.vmap_epochs):
                    s, m = single_fn(s, x, y, jax.random.PRNGKey(e))
                    out.append(m["loss"])
                holder["sequential"][r] = s
            losses.setdefault("sequential_first", out[::args.vmap_epochs])
            return holder["sequential"], out

        times = _alternate({"vmapped": run_vmapped, "sequential": run_sequential}, args.repeats)
        # Same work: replica r of the vmapped program follows sequential run r.
        # Compared on the first epoch from the shared initial state; later
        # epochs drift apart by float reassociation (batched vs single matmuls),
        # which SGD on this MLP amplifies about 100x per epoch.
        v = np.asarray(losses["vmapped_first"])  # (k,)
        s = np.array([np.asarray(a)[0] for a in losses["sequential_first"]])
        rec["first_epoch_max_rel_loss_difference"] = _round(float(np.max(np.abs(v - s)
                                                                         / np.abs(s))))
    rec["steps_per_epoch"] = steps
    for kind in ("vmapped", "sequential"):
        rec[kind] = {"median_seconds": _round(_median(times[kind])),
                     "repeat_seconds": [_round(t) for t in times[kind]],
                     "warmup_seconds_incl_compile": _round(times[f"{kind}_warmup"][0])}
    rec["vmap_speedup"] = _round(_median(times["sequential"]) / _median(times["vmapped"]))
    # The ceiling on any same-work speedup: the arithmetic rate one replica
    # already reaches against the best this device does on one large matmul.
    sizes = (int(np.prod(ds.train_x.shape[1:])), *c.mlp_hidden, ds.num_classes)
    flops = 6 * c.batch_size * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # fwd 2, bwd 4
    work = flops * steps * args.vmap_epochs * k
    rec["matmul_flops_per_replica_step"] = flops
    for kind in ("vmapped", "sequential"):
        rec[kind]["gflops_per_second"] = _round(work / _median(times[kind]) / 1e9)
    rec["peak_matmul_gflops_per_second"] = _round(_peak_matmul_gflops())
    rec["speedup_bound"] = _round(rec["peak_matmul_gflops_per_second"]
                                  / rec["sequential"]["gflops_per_second"])
    _progress(rec)
    return rec


def _peak_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of one jitted n x n matmul on the default device (best of `repeats`)."""
    a = jax.device_put(np.ones((n, n), np.float32))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    return 2 * n ** 3 / min(_timed(lambda: f(a)) for _ in range(repeats)) / 1e9


def bench_vmap_runs(args) -> dict:
    from lrr_jax import driver

    k = args.vmap_replicas
    c = _quickstart_config(args)
    c.methods, c.levels = "lrr", args.vmap_runs_levels
    c.progress, c.tensorboard = False, False
    rec = {"part": "vmap_runs", "model": f"mlp{tuple(c.mlp_hidden)}", "dataset": c.dataset,
           "method": c.methods, "levels": c.levels, "epochs_per_level": c.epochs_per_level,
           "warmup_epochs": c.warmup_epochs, "replicas": k}
    # driver.run prints its results table: to stderr, so stdout stays one JSON object.
    with _measuring(rec), tempfile.TemporaryDirectory() as tmp, \
            contextlib.redirect_stdout(sys.stderr):
        one = c.copy_and_resolve_references()
        one.num_replicas = k
        t = time.perf_counter()
        vmapped_rows = driver.run(one, os.path.join(tmp, "vmapped"))["lrr"]
        rec["vmapped_seconds"] = _round(time.perf_counter() - t)
        t = time.perf_counter()
        sequential_rows = []
        for r in range(k):
            single = c.copy_and_resolve_references()
            single.num_replicas, single.seed = 1, r
            sequential_rows += driver.run(single, os.path.join(tmp, f"run{r}"))["lrr"]
        rec["sequential_seconds"] = _round(time.perf_counter() - t)
    last = c.levels - 1
    for name, rows in (("vmapped", vmapped_rows), ("sequential", sequential_rows)):
        accs = [row["test_acc"] for row in rows if row["level"] == last]
        assert len(accs) == k, (name, len(accs))  # the same work: k replicas, every level
        rec[f"{name}_last_level_mean_test_acc"] = _round(float(np.mean(accs)))
    rec["vmap_runs_speedup"] = _round(rec["sequential_seconds"] / rec["vmapped_seconds"])
    _progress(rec)
    return rec


def bench_prune(args) -> dict:
    c = config_base.get_base_config()
    c.model, c.width = "resnet50", 1.0
    model = models.create(c, 100)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                               np.zeros((1, 32, 32, 3), np.float32),
                                               train=False))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes)
    flags = masks.prunable_flags(params)
    mask = jax.tree.map(lambda p, f: (rng.random(p.shape, np.float32) < 0.8 ** 4)
                        .astype(np.float32) if f else np.ones(p.shape, np.float32),
                        params, flags)
    kept, total = masks.count(mask)
    target = masks.scheduled_count(total, 0.2, 5)
    rec = {"part": "prune", "model": "resnet50 (CIFAR100, width 1)", "prunable": total,
           "unpruned_before": kept, "target": target, "allocation": "global",
           "repeats": args.repeats}
    with _measuring(rec):
        times = []
        for _ in range(args.repeats + 1):
            t = time.perf_counter()
            new = pruning.prune(params, mask, target, allocation="global")
            times.append(time.perf_counter() - t)
        assert masks.count(new)[0] == target
        flat = np.concatenate([np.abs(p).ravel() for p, f in zip(
            jax.tree.leaves(params), jax.tree.leaves(flags)) if f])
        t = time.perf_counter()
        np.sort(flat)
        rec["full_sort_seconds_for_reference"] = _round(time.perf_counter() - t)
    rec["repeat_seconds"] = [_round(t) for t in times[1:]]
    rec["first_call_seconds"] = _round(times[0])
    rec["prune_seconds"] = _round(_median(times[1:]))
    _progress(rec)
    return rec


def bench_quickstart(args) -> dict:
    rec = {"part": "quickstart", "config": os.path.relpath(args.quickstart_config),
           "overrides": args.quickstart_overrides}
    with tempfile.TemporaryDirectory() as workdir, _measuring(rec):
        cmd = [sys.executable, "-m", "lrr_jax.main", f"--config={args.quickstart_config}",
               f"--workdir={workdir}", "--config.progress=False", *args.quickstart_overrides]
        rec["command"] = " ".join(["python", *cmd[1:3], f"--config={rec['config']}",
                                   "--workdir=TMP", *cmd[5:]])
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        rec["quickstart_seconds"] = _round(time.perf_counter() - t)
        rec["returncode"] = out.returncode
        if out.returncode:
            rec["stderr_tail"] = out.stderr[-2000:]
        else:
            rec["summary"] = out.stdout.strip().splitlines()[-6:]
    _progress(rec)
    return rec


def _torch_epoch(width: float, batch: int, steps: int, num_classes: int, seed: int = 0):
    """A plain PyTorch (eager, CPU or CUDA) masked CIFAR ResNet18 epoch of `steps` steps.

    The same network as `lrr_jax.models.resnet.resnet18` (3x3 stem, no pool,
    BasicBlocks 2-2-2-2, bias-free convolutions and classifier), masked
    weights (w * m in the forward pass, like lrr_jax), random crop (zero
    padding 4) and flip per image, normalization, cross entropy, SGD with
    momentum 0.9 and coupled weight decay 1e-4. Returns a callable that runs
    one epoch and returns the last loss.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    class MaskedConv(nn.Conv2d):
        def __init__(self, cin, cout, k, stride):
            super().__init__(cin, cout, k, stride, k // 2, bias=False)
            nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
            self.register_buffer("mask", torch.ones_like(self.weight))

        def forward(self, x):
            return F.conv2d(x, self.weight * self.mask, None, self.stride, self.padding)

    class Block(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1, self.bn1 = MaskedConv(cin, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = MaskedConv(planes, planes, 3, 1), nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != planes:
                self.shortcut = nn.Sequential(MaskedConv(cin, planes, 1, stride),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    def ch(c):
        return max(1, int(round(c * width)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = MaskedConv(3, ch(64), 3, 1), nn.BatchNorm2d(ch(64))
            layers, cin = [], ch(64)
            for stage in range(4):
                for index in range(2):
                    stride = 2 if stage > 0 and index == 0 else 1
                    layers.append(Block(cin, ch(64 * 2 ** stage), stride))
                    cin = ch(64 * 2 ** stage)
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, num_classes, bias=False)
            self.register_buffer("fc_mask", torch.ones_like(self.fc.weight))

        def forward(self, x):
            x = self.layers(F.relu(self.bn1(self.conv1(x))))
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return F.linear(x, self.fc.weight * self.fc_mask)

    net = ResNet18().to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = steps * batch
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
    labels = torch.randint(0, num_classes, (n,), generator=gen).to(device)
    mean = torch.full((1, 3, 1, 1), 0.5, device=device)
    std = torch.full((1, 3, 1, 1), 0.25, device=device)
    pad = 4
    rows = torch.arange(32, device=device)

    def crop_flip(x):
        b = x.shape[0]
        padded = F.pad(x, (pad, pad, pad, pad))
        off = torch.randint(0, 2 * pad + 1, (b, 2), device=device)
        flip = torch.rand(b, device=device) < 0.5
        cols = rows[None, :].expand(b, 32)
        cols = torch.where(flip[:, None], 31 - cols, cols)
        iy = (off[:, :1] + rows[None, :])[:, None, :, None]  # (b, 1, 32, 1)
        ix = (off[:, 1:] + cols)[:, None, None, :]  # (b, 1, 1, 32)
        bi = torch.arange(b, device=device)[:, None, None, None]
        ci = torch.arange(3, device=device)[None, :, None, None]
        return padded[bi, ci, iy, ix]

    def epoch():
        perm = torch.randperm(n, device=device)
        loss = None
        for s in range(steps):
            ids = perm[s * batch:(s + 1) * batch]
            x = (crop_flip(images[ids]).float() / 255.0 - mean) / std
            loss = F.cross_entropy(net(x), labels[ids])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    info = {"torch": torch.__version__, "device": device, "threads": torch.get_num_threads()}
    return epoch, info


def bench_torch(args, backend) -> dict:
    rec = {"part": "torch", "model": "resnet18", "dtype": "float32", "masked": True,
           "width": args.width, "batch": args.batch, "steps_per_epoch": args.steps,
           "repeats": args.repeats}
    try:
        import torch  # noqa: F401
    except ImportError:
        rec["skipped"] = "torch is not installed (pip install 'lrr_jax[torch]')"
        return rec
    with _measuring(rec):
        c = _resnet_config(args, "resnet18", "float32")
        jax_epoch = EpochProgram(c, backend, num_classes=10, steps=args.steps, masked=True)
        torch_epoch, info = _torch_epoch(args.width, args.batch, args.steps, 10)
        rec["torch_info"] = info
        times = _alternate({"lrr_jax": jax_epoch, "torch": torch_epoch}, args.repeats)
    for kind in ("lrr_jax", "torch"):
        med = _median(times[kind])
        rec[kind] = {"median_epoch_seconds": _round(med), "step_seconds": _round(med / args.steps),
                     "images_per_second": _round(args.steps * args.batch / med),
                     "repeat_seconds": [_round(t) for t in times[kind]],
                     "warmup_seconds": _round(times[f"{kind}_warmup"][0])}
    rec["torch_ratio"] = _round(_median(times["lrr_jax"]) / _median(times["torch"]))
    _progress(rec)
    return rec


# ---- rendering -------------------------------------------------------------------------------

def render_markdown(result: dict) -> str:
    """Markdown tables of a bench JSON object (`python -m lrr_jax.bench --render=FILE`)."""
    dev = result["device"]
    lines = [f"Device: {dev['device_kind']} ({dev['platform']}, {dev['num_devices']} device(s), "
             f"{dev['host_cpus']} host CPUs), jax {dev['jax']}. Command: `{result['command']}`. "
             f"Load average at start {result['loadavg_start']}, at end {result['loadavg_end']}; "
             f"{result['wall_seconds']} s in all.", ""]
    if result["throughput"]:
        lines += ["| model | dtype | width | batch | masked img/s | dense img/s | "
                  "masked step s | masked/dense | compile+first epoch s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["throughput"]:
            m, d = r["masked"], r["dense"]
            lines.append(f"| {r['model']} | {r['dtype']} | {r['width']} | {r['batch']} | "
                         f"{m['images_per_second']} | {d['images_per_second']} | "
                         f"{m['step_seconds']} | {r['masked_over_dense']} | "
                         f"{m['warmup_seconds_incl_compile']} |")
        lines.append("")
    headline = [("masked_over_dense (worst)", result.get("masked_over_dense"),
                 TARGETS["masked_over_dense"]),
                ("vmap_speedup", result.get("vmap_speedup"), TARGETS["vmap_speedup"]),
                ("vmap_runs_speedup", result.get("vmap_runs_speedup"), ""),
                ("prune_seconds", result.get("prune_seconds"), TARGETS["prune_seconds"]),
                ("quickstart_seconds", result.get("quickstart_seconds"), ""),
                ("torch_ratio (lrr_jax / PyTorch time)", result.get("torch_ratio"), "")]
    lines += ["| measure | value | target |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in headline
              if value is not None]
    details = result.get("details", {})
    if "vmap" in details:
        v = details["vmap"]
        lines += ["", f"vmap: {v['replicas']} replicas of {v['model']} on {v['dataset']}, "
                  f"batch {v['batch']}, {v['epochs']} epochs of {v['steps_per_epoch']} steps: "
                  f"vmapped {v['vmapped']['median_seconds']} s "
                  f"({v['vmapped']['gflops_per_second']} GFLOP/s), sequential "
                  f"{v['sequential']['median_seconds']} s "
                  f"({v['sequential']['gflops_per_second']} GFLOP/s); one 2048x2048 "
                  f"matmul: {v['peak_matmul_gflops_per_second']} GFLOP/s, so no same-work "
                  f"batching can exceed {v['speedup_bound']}x. First-epoch max relative "
                  f"loss difference, replica vs its sequential run: "
                  f"{v['first_epoch_max_rel_loss_difference']}."]
    if "vmap_runs" in details:
        v = details["vmap_runs"]
        lines += ["", f"vmap_runs: {v['replicas']} sequential `driver.run`s ({v['method']}, "
                  f"{v['levels']} levels x {v['epochs_per_level']} epochs + "
                  f"{v['warmup_epochs']} warm-up) {v['sequential_seconds']} s vs one run with "
                  f"{v['replicas']} replicas {v['vmapped_seconds']} s; mean last-level test "
                  f"accuracy {v['sequential_last_level_mean_test_acc']} vs "
                  f"{v['vmapped_last_level_mean_test_acc']}."]
    if "torch" in details and "torch" in details["torch"]:
        t = details["torch"]
        lines += ["", f"torch: {t['model']} width {t['width']} batch {t['batch']}, "
                  f"{t['torch_info']['torch']} on {t['torch_info']['device']} "
                  f"({t['torch_info']['threads']} threads): PyTorch "
                  f"{t['torch']['images_per_second']} img/s, lrr_jax "
                  f"{t['lrr_jax']['images_per_second']} img/s."]
    return "\n".join(lines) + "\n"


# ---- command line ----------------------------------------------------------------------------

def _progress(rec: dict) -> None:
    brief = {k: v for k, v in rec.items() if not isinstance(v, dict | list) or k in (
        "loadavg_before",)}
    print(json.dumps(brief), file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lrr_jax.bench", description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of {','.join(PARTS)}")
    p.add_argument("--width", type=float, default=None,
                   help="ResNet channel multiplier (default: 0.25 on CPU, 1.0 on GPU/TPU)")
    p.add_argument("--batch", type=int, default=None,
                   help="global batch size (default: the paper's, config_base.batch_size)")
    p.add_argument("--steps", type=int, default=None,
                   help="SGD steps per timed epoch (default: 2 on CPU, 50 on GPU/TPU)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after warm-up (default: 3 on CPU, 5 on GPU/TPU)")
    p.add_argument("--models", default="resnet18,resnet50")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--parallel", default=None, choices=parallel.BACKENDS,
                   help="data-parallel backend (default: config_base's)")
    p.add_argument("--vmap_replicas", type=int, default=16)
    p.add_argument("--vmap_epochs", type=int, default=2)
    p.add_argument("--vmap_runs_levels", type=int, default=3,
                   help="levels of the quickstart campaign in the vmap_runs part")
    p.add_argument("--quickstart_config", default=os.path.join(REPO_ROOT, "configs",
                                                               "quickstart.py"))
    p.add_argument("--quickstart_overrides", default="",
                   help="extra flags for the quickstart run, space-separated "
                        "(e.g. '--config.levels=2'); default: none, the README command")
    p.add_argument("--out", default="bench.json", help="where to write the JSON object")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print a saved result as markdown tables instead of measuring")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}; choose from {PARTS}")
    args.models = [s.strip() for s in args.models.split(",") if s.strip()]
    args.dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    if set(args.models) - set(NUM_CLASSES) or set(args.dtypes) - {"float32", "bfloat16"}:
        p.error(f"--models from {sorted(NUM_CLASSES)}, --dtypes from float32,bfloat16")
    args.quickstart_overrides = args.quickstart_overrides.split()
    return args


def resolve_defaults(args) -> dict:
    """Fill platform-dependent defaults in place; return what was chosen and why."""
    platform = jax.devices()[0].platform
    width, steps, repeats = PLATFORM_DEFAULTS.get(platform, PLATFORM_DEFAULTS["gpu"])
    chosen = {}
    for name, default in (("width", width), ("steps", steps), ("repeats", repeats),
                          ("batch", config_base.get_base_config().batch_size),
                          ("parallel", config_base.get_base_config().parallel)):
        if getattr(args, name) is None:
            setattr(args, name, default)
            chosen[name] = f"default for platform {platform!r}"
    return chosen


def device_info() -> dict:
    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind,
            "num_devices": jax.device_count(), "process_count": jax.process_count(),
            "jax": jax.__version__, "host_cpus": os.cpu_count()}


def run(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    render = [a.split("=", 1)[1] for a in argv if a.startswith("--render=")]
    if render:  # no measuring: print the tables of a saved result
        with open(render[0]) as f:
            result = json.load(f)
        print(render_markdown(result), end="")
        return result
    args = parse_args(argv)
    chosen = resolve_defaults(args)
    settings = {k: getattr(args, k) for k in (
        "only", "width", "batch", "steps", "repeats", "models", "dtypes", "parallel",
        "vmap_replicas", "vmap_epochs", "vmap_runs_levels", "quickstart_overrides", "out")}
    result = {"command": " ".join(["python -m lrr_jax.bench", *args.argv]),
              "settings": settings, "defaults_chosen": chosen, "device": device_info(),
              "targets": TARGETS, "loadavg_start": _load(),
              "throughput": [], "masked_over_dense": None, "vmap_speedup": None,
              "vmap_runs_speedup": None, "prune_seconds": None, "quickstart_seconds": None,
              "torch_ratio": None,
              "details": {}}
    t0 = time.perf_counter()
    backend = parallel.Backend(args.parallel)
    if "throughput" in args.only:
        result["throughput"], result["masked_over_dense"] = bench_throughput(args, backend)
    if "vmap" in args.only:
        rec = bench_vmap(args, backend)
        result["details"]["vmap"], result["vmap_speedup"] = rec, rec["vmap_speedup"]
    if "vmap_runs" in args.only:
        rec = bench_vmap_runs(args)
        result["details"]["vmap_runs"], result["vmap_runs_speedup"] = rec, rec["vmap_runs_speedup"]
    if "prune" in args.only:
        rec = bench_prune(args)
        result["details"]["prune"], result["prune_seconds"] = rec, rec["prune_seconds"]
    if "quickstart" in args.only:
        rec = bench_quickstart(args)
        result["details"]["quickstart"] = rec
        if rec["returncode"] == 0:
            result["quickstart_seconds"] = rec["quickstart_seconds"]
    if "torch" in args.only:
        rec = bench_torch(args, backend)
        result["details"]["torch"], result["torch_ratio"] = rec, rec.get("torch_ratio")
    result["loadavg_end"] = _load()
    result["wall_seconds"] = _round(time.perf_counter() - t0)
    result["met"] = {
        "masked_over_dense": None if result["masked_over_dense"] is None
        else result["masked_over_dense"] <= 1.03,
        "vmap_speedup": None if result["vmap_speedup"] is None else result["vmap_speedup"] >= 8,
        "prune_seconds": None if result["prune_seconds"] is None
        else result["prune_seconds"] < 1.0}
    text = json.dumps(result, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    run()
