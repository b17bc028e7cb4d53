"""The parts of `python -m lrr_jax.bench`: each measures, returns a record, prints a summary line.

What each part measures is in the package docstring (`lrr_jax/bench/__init__.py`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from lrr_jax import config_base, engine, masks, models, parallel, pruning, replicas, train
from lrr_jax.bench import programs, timing, torch_ref

rnd = timing.rnd


def bench_throughput(args, backend) -> tuple[list[dict], float | None]:
    records = []
    for model in args.models:
        for dtype in args.dtypes:
            c = programs.resnet_config(model, dtype, width=args.width, batch=args.batch)
            rec = {"part": "throughput", "model": model, "dtype": dtype, "width": args.width,
                   "batch": args.batch, "steps_per_epoch": args.steps, "repeats": args.repeats,
                   "num_devices": backend.num_devices, "parallel": args.parallel}
            with timing.measuring(rec):
                progs = {kind: programs.EpochProgram(c, backend,
                                                   num_classes=programs.NUM_CLASSES[model],
                                                   steps=args.steps, masked=kind == "masked")
                         for kind in ("masked", "dense")}
                times = timing.alternate(progs, args.repeats)
            images = args.steps * args.batch
            for kind in ("masked", "dense"):
                med = timing.median(times[kind])
                rec[kind] = {"median_epoch_seconds": rnd(med),
                             "step_seconds": rnd(med / args.steps),
                             "images_per_second": rnd(images / med),
                             "repeat_seconds": [rnd(t) for t in times[kind]],
                             "warmup_seconds_incl_compile": rnd(times[f"{kind}_warmup"][0])}
            ratios = [m / d for m, d in zip(times["masked"], times["dense"])]
            rec["masked_over_dense"] = rnd(timing.median(ratios))
            records.append(rec)
            timing.progress(rec)
    worst = max((r["masked_over_dense"] for r in records), default=None)
    return records, worst


def bench_vmap(args, backend) -> dict:
    from lrr_jax import data

    k = args.vmap_replicas
    c = programs.quickstart_config(args.quickstart_config)
    c.num_replicas = k
    rec = {"part": "vmap", "model": f"mlp{tuple(c.mlp_hidden)}", "dataset": c.dataset,
           "batch": c.batch_size, "replicas": k, "epochs": args.vmap_epochs,
           "repeats": args.repeats, "num_devices": backend.num_devices}
    with timing.measuring(rec):
        ds = data.load(c)
        model = models.create(c, ds.num_classes, bn_axis_name=train.AXIS)
        sample = np.zeros((1, *ds.train_x.shape[1:]), np.float32)
        c.data_order = "shared"  # one batch per step for all replicas
        info = engine.DataInfo(c.dataset, ds.train_x.shape[0], ds.test_x.shape[0],
                               tuple(ds.train_x.shape[1:]), ds.num_classes, ds.mean, ds.std)
        vmapped_fn, steps = engine.epoch_program(c, model, backend, info, "level")
        single_fn, _ = engine.epoch_program(c, model, backend, info, "level")
        x, y = backend.put(ds.train_x), backend.put(ds.train_y)
        stacked = parallel.get(train.create_replicas(model, c, list(range(k)), sample))
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

        times = timing.alternate({"vmapped": run_vmapped, "sequential": run_sequential},
                                 args.repeats)
        # Same work: replica r of the vmapped program follows sequential run r.
        # Compared on the first epoch from the shared initial state; later
        # epochs drift apart by float reassociation (batched vs single matmuls),
        # which SGD on this MLP amplifies about 100x per epoch.
        v = np.asarray(losses["vmapped_first"])  # (k,)
        s = np.array([np.asarray(a)[0] for a in losses["sequential_first"]])
        rec["first_epoch_max_rel_loss_difference"] = rnd(float(np.max(np.abs(v - s)
                                                                      / np.abs(s))))
    rec["steps_per_epoch"] = steps
    for kind in ("vmapped", "sequential"):
        rec[kind] = {"median_seconds": rnd(timing.median(times[kind])),
                     "repeat_seconds": [rnd(t) for t in times[kind]],
                     "warmup_seconds_incl_compile": rnd(times[f"{kind}_warmup"][0])}
    rec["vmap_speedup"] = rnd(timing.median(times["sequential"])
                              / timing.median(times["vmapped"]))
    # The ceiling on any same-work speedup: the arithmetic rate one replica
    # already reaches against the best this device does on one large matmul.
    sizes = (int(np.prod(ds.train_x.shape[1:])), *c.mlp_hidden, ds.num_classes)
    flops = 6 * c.batch_size * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # fwd 2, bwd 4
    work = flops * steps * args.vmap_epochs * k
    rec["matmul_flops_per_replica_step"] = flops
    for kind in ("vmapped", "sequential"):
        rec[kind]["gflops_per_second"] = rnd(work / timing.median(times[kind]) / 1e9)
    rec["peak_matmul_gflops_per_second"] = rnd(programs.peak_matmul_gflops())
    rec["speedup_bound"] = rnd(rec["peak_matmul_gflops_per_second"]
                               / rec["sequential"]["gflops_per_second"])
    timing.progress(rec)
    return rec


def _quickstart(args):
    """The quickstart's config, with `--campaign_epochs` if given."""
    c = programs.quickstart_config(args.quickstart_config)
    if args.campaign_epochs:
        c.epochs_per_level = args.campaign_epochs
        c.warmup_epochs = min(c.warmup_epochs, args.campaign_epochs)
    return c


def bench_vmap_runs(args) -> dict:
    k = args.vmap_replicas
    c = _quickstart(args)
    c.methods, c.levels = "lrr", args.vmap_runs_levels
    c.progress, c.tensorboard = False, False
    rec = {"part": "vmap_runs", "model": f"mlp{tuple(c.mlp_hidden)}", "dataset": c.dataset,
           "method": c.methods, "levels": c.levels, "epochs_per_level": c.epochs_per_level,
           "warmup_epochs": c.warmup_epochs, "replicas": k}
    # The campaign prints its results table: to stderr, so stdout stays one JSON object.
    with timing.measuring(rec), tempfile.TemporaryDirectory() as tmp, \
            contextlib.redirect_stdout(sys.stderr):
        one = c.copy_and_resolve_references()
        one.num_replicas = k
        t = time.perf_counter()
        vmapped_rows = programs.run_campaign(one, os.path.join(tmp, "vmapped"))["lrr"]
        rec["vmapped_seconds"] = rnd(time.perf_counter() - t)
        t = time.perf_counter()
        sequential_rows = []
        for r in range(k):
            single = c.copy_and_resolve_references()
            single.num_replicas, single.seed = 1, r
            sequential_rows += programs.run_campaign(single, os.path.join(tmp, f"run{r}"))["lrr"]
        rec["sequential_seconds"] = rnd(time.perf_counter() - t)
    last = c.levels - 1
    for name, rows in (("vmapped", vmapped_rows), ("sequential", sequential_rows)):
        accs = [float(row["test_acc"]) for row in rows if int(row["level"]) == last]
        assert len(accs) == k, (name, len(accs))  # the same work: k replicas, every level
        rec[f"{name}_last_level_mean_test_acc"] = rnd(float(np.mean(accs)))
    rec["vmap_runs_speedup"] = rnd(rec["sequential_seconds"] / rec["vmapped_seconds"])
    timing.progress(rec)
    return rec


def bench_methods(args) -> dict:
    """The quickstart's methods x seeds as one program, one replica at a time, one method at a time.

    Three ways to run the same replicas (every method of the quickstart x its
    seeds), each a whole campaign (`programs.run_campaign`) that builds and
    compiles its own programs, in this order: one program for all replicas
    (`replica_batch=0`, the default); the same replicas one after another
    through the same compiled program (`replica_batch=1`); and one campaign per
    method (each method's seeds vmapped together: how runs were made before
    methods became replicas). With `data_order=per_replica` all three are the
    same computation up to float summation order; their last-level accuracies
    are recorded as a check.
    """
    c = _quickstart(args)
    if args.methods_levels:
        c.levels = args.methods_levels
    c.progress, c.tensorboard = False, False
    methods = replicas.methods_of(c)
    rec = {"part": "methods", "model": f"mlp{tuple(c.mlp_hidden)}", "dataset": c.dataset,
           "methods": list(methods), "num_replicas": c.num_replicas, "levels": c.levels,
           "epochs_per_level": c.epochs_per_level, "warmup_epochs": c.warmup_epochs,
           "data_order": c.data_order}
    variants = {"one_program": [(",".join(methods), 0)],
                "one_replica_at_a_time": [(",".join(methods), 1)],
                "one_method_at_a_time": [(m, 0) for m in methods]}
    with timing.measuring(rec), tempfile.TemporaryDirectory() as tmp, \
            contextlib.redirect_stdout(sys.stderr):  # stdout stays one JSON object
        for name, runs in variants.items():
            t = time.perf_counter()
            rows = {}
            for i, (ms, group) in enumerate(runs):
                one = c.copy_and_resolve_references()
                one.methods, one.replica_batch = ms, group
                rows.update(programs.run_campaign(one, os.path.join(tmp, f"{name}{i}")))
            rec[f"{name}_seconds"] = rnd(time.perf_counter() - t)
            last = [float(r["test_acc"]) for m in methods for r in rows[m]
                    if int(r["level"]) == c.levels - 1]
            assert len(last) == len(methods) * c.num_replicas, (name, len(last))  # same work
            rec[f"{name}_last_level_mean_test_acc"] = rnd(float(np.mean(last)))
    rec["methods_one_program_speedup"] = rnd(rec["one_method_at_a_time_seconds"]
                                             / rec["one_program_seconds"])
    rec["replicas_one_program_speedup"] = rnd(rec["one_replica_at_a_time_seconds"]
                                              / rec["one_program_seconds"])
    rec.update(_lockstep_figure(c))
    timing.progress(rec)
    return rec


FIGURE = ("imp", "wr", "lrr", "wr@lrr", "lrr@imp")  # the mask-transfer figure's methods


def _lockstep_figure(c) -> dict:
    """The paper's mask-transfer figure (IMP, WR, LRR, WR on LRR's masks, LRR on IMP's)
    as one program (`--config.methods=imp,wr,lrr,wr@lrr,lrr@imp`) against its two stages
    run one after another: imp,wr,lrr, then WR and LRR each with `mask_source` = the
    first stage's LRR and IMP runs. Compilation included in both."""
    out = {"figure_methods": list(FIGURE)}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        one = c.copy_and_resolve_references()
        one.methods = ",".join(FIGURE)
        t = time.perf_counter()
        lockstep = programs.run_campaign(one, os.path.join(tmp, "one"))
        out["figure_one_program_seconds"] = rnd(time.perf_counter() - t)
        t = time.perf_counter()
        first = c.copy_and_resolve_references()
        first.methods = "imp,wr,lrr"
        staged = dict(programs.run_campaign(first, os.path.join(tmp, "stage1")))
        for target, source in (("wr", "lrr"), ("lrr", "imp")):
            second = c.copy_and_resolve_references()
            second.methods, second.method = "", target
            second.mask_source = os.path.join(tmp, "stage1", source)
            staged[f"{target}@{source}"] = programs.run_campaign(
                second, os.path.join(tmp, f"stage2_{target}"))[target]
        out["figure_two_stages_seconds"] = rnd(time.perf_counter() - t)
    for name, rows in (("one_program", lockstep), ("two_stages", staged)):
        last = [float(r["test_acc"]) for m in FIGURE for r in rows[m]
                if int(r["level"]) == c.levels - 1]
        assert len(last) == len(FIGURE) * c.num_replicas, (name, len(last))  # same work
        out[f"figure_{name}_last_level_mean_test_acc"] = rnd(float(np.mean(last)))
    out["figure_one_program_speedup"] = rnd(out["figure_two_stages_seconds"]
                                            / out["figure_one_program_seconds"])
    return out


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
    with timing.measuring(rec):
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
        rec["full_sort_seconds_for_reference"] = rnd(time.perf_counter() - t)
    rec["repeat_seconds"] = [rnd(t) for t in times[1:]]
    rec["first_call_seconds"] = rnd(times[0])
    rec["prune_seconds"] = rnd(timing.median(times[1:]))
    timing.progress(rec)
    return rec


def bench_quickstart(args) -> dict:
    rec = {"part": "quickstart", "config": os.path.relpath(args.quickstart_config),
           "overrides": args.quickstart_overrides}
    with tempfile.TemporaryDirectory() as workdir, timing.measuring(rec):
        cmd = [sys.executable, "-m", "lrr_jax.main", f"--config={args.quickstart_config}",
               f"--workdir={workdir}", "--config.progress=False", *args.quickstart_overrides]
        rec["command"] = " ".join(["python", *cmd[1:3], f"--config={rec['config']}",
                                   "--workdir=TMP", *cmd[5:]])
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=programs.REPO_ROOT)
        rec["quickstart_seconds"] = rnd(time.perf_counter() - t)
        rec["returncode"] = out.returncode
        if out.returncode:
            rec["stderr_tail"] = out.stderr[-2000:]
        else:
            rec["summary"] = out.stdout.strip().splitlines()[-6:]
    timing.progress(rec)
    return rec


def bench_torch(args, backend) -> dict:
    rec = {"part": "torch", "model": "resnet18", "dtype": "float32", "masked": True,
           "width": args.width, "batch": args.batch, "steps_per_epoch": args.steps,
           "repeats": args.repeats}
    try:
        import torch  # noqa: F401
    except ImportError:
        rec["skipped"] = "torch is not installed (pip install 'lrr_jax[torch]')"
        return rec
    with timing.measuring(rec):
        c = programs.resnet_config("resnet18", "float32", width=args.width, batch=args.batch)
        jax_epoch = programs.EpochProgram(c, backend, num_classes=10, steps=args.steps,
                                        masked=True)
        torch_epoch, info = torch_ref.torch_epoch(args.width, args.batch, args.steps, 10)
        rec["torch_info"] = info
        times = timing.alternate({"lrr_jax": jax_epoch, "torch": torch_epoch}, args.repeats)
    for kind in ("lrr_jax", "torch"):
        med = timing.median(times[kind])
        rec[kind] = {"median_epoch_seconds": rnd(med), "step_seconds": rnd(med / args.steps),
                     "images_per_second": rnd(args.steps * args.batch / med),
                     "repeat_seconds": [rnd(t) for t in times[kind]],
                     "warmup_seconds": rnd(times[f"{kind}_warmup"][0])}
    rec["torch_ratio"] = rnd(timing.median(times["lrr_jax"]) / timing.median(times["torch"]))
    timing.progress(rec)
    return rec
