"""`python -m lrr_jax.bench`: arguments, platform defaults, the parts in order, the JSON object."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax

from lrr_jax import config_base, parallel
from lrr_jax.bench import ckpt, inputs, parts, programs, render, timing

PARTS = ("throughput", "vmap", "vmap_runs", "methods", "prune", "checkpoints", "input",
         "quickstart", "torch")
# Per-platform defaults: (width, steps per timed epoch, repeats).
PLATFORM_DEFAULTS = {"cpu": (0.25, 2, 3), "gpu": (1.0, 50, 5), "tpu": (1.0, 50, 5)}
DESCRIPTION = ("Benchmarks of the training engine: `python -m lrr_jax.bench` prints one JSON "
               "object.")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lrr_jax.bench", description=DESCRIPTION)
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
    p.add_argument("--methods_levels", type=int, default=0,
                   help="levels of the quickstart campaign in the methods part "
                        "(default 0: the quickstart's own)")
    p.add_argument("--campaign_epochs", type=int, default=0,
                   help="epochs per level (and at most as many warm-up epochs) of the "
                        "quickstart campaigns of the vmap_runs and methods parts "
                        "(default 0: the quickstart's own)")
    p.add_argument("--checkpoint_mib", default="6,128",
                   help="state sizes (MiB) of the checkpoints part: the quickstart's 6 "
                        "replicas, a full-width ResNet18 (params, momentum, mask)")
    p.add_argument("--input_images", type=int, default=512,
                   help="generated 500x375 JPEGs the input part's host transforms are timed on")
    p.add_argument("--input_cifar_examples", type=int, default=2048,
                   help="examples of the generated CIFAR-10 archive of the input part's "
                        "stream vs on-device epoch")
    p.add_argument("--quickstart_config", default=programs.QUICKSTART_CONFIG)
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
    if set(args.models) - set(programs.NUM_CLASSES) or set(args.dtypes) - {"float32", "bfloat16"}:
        p.error(f"--models from {sorted(programs.NUM_CLASSES)}, --dtypes from float32,bfloat16")
    args.quickstart_overrides = args.quickstart_overrides.split()
    try:
        args.checkpoint_mib = [float(v) for v in args.checkpoint_mib.split(",") if v.strip()]
    except ValueError:
        p.error(f"--checkpoint_mib: not a list of numbers: {args.checkpoint_mib!r}")
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
    rendering = [a.split("=", 1)[1] for a in argv if a.startswith("--render=")]
    if rendering:  # no measuring: print the tables of a saved result
        with open(rendering[0]) as f:
            result = json.load(f)
        print(render.render_markdown(result), end="")
        return result
    args = parse_args(argv)
    chosen = resolve_defaults(args)
    settings = {k: getattr(args, k) for k in (
        "only", "width", "batch", "steps", "repeats", "models", "dtypes", "parallel",
        "vmap_replicas", "vmap_epochs", "vmap_runs_levels", "methods_levels", "campaign_epochs",
        "checkpoint_mib", "input_images", "input_cifar_examples", "quickstart_overrides",
        "out")}
    result = {"command": " ".join(["python -m lrr_jax.bench", *args.argv]),
              "settings": settings, "defaults_chosen": chosen, "device": device_info(),
              "targets": render.TARGETS, "loadavg_start": timing.loadavg(),
              "throughput": [], "masked_over_dense": None, "vmap_speedup": None,
              "vmap_runs_speedup": None, "methods_one_program_speedup": None,
              "figure_one_program_speedup": None,
              "prune_seconds": None, "quickstart_seconds": None,
              "input_train_images_per_second_per_core": None, "stream_over_device": None,
              "torch_ratio": None,
              "details": {}}
    t0 = time.perf_counter()
    backend = parallel.Backend(args.parallel)
    if "throughput" in args.only:
        result["throughput"], result["masked_over_dense"] = parts.bench_throughput(args, backend)
    if "vmap" in args.only:
        rec = parts.bench_vmap(args, backend)
        result["details"]["vmap"], result["vmap_speedup"] = rec, rec["vmap_speedup"]
    if "vmap_runs" in args.only:
        rec = parts.bench_vmap_runs(args)
        result["details"]["vmap_runs"], result["vmap_runs_speedup"] = rec, rec["vmap_runs_speedup"]
    if "methods" in args.only:
        rec = parts.bench_methods(args)
        result["details"]["methods"] = rec
        result["methods_one_program_speedup"] = rec["methods_one_program_speedup"]
        result["figure_one_program_speedup"] = rec["figure_one_program_speedup"]
    if "prune" in args.only:
        rec = parts.bench_prune(args)
        result["details"]["prune"], result["prune_seconds"] = rec, rec["prune_seconds"]
    if "checkpoints" in args.only:
        result["details"]["checkpoints"] = ckpt.bench_checkpoints(args)
    if "input" in args.only:
        host, pipes = inputs.bench_host(args), inputs.bench_pipelines(args)
        result["details"]["input"] = {"host": host, "pipelines": pipes}
        result["input_train_images_per_second_per_core"] = \
            host["train_images_per_second_per_core"]
        result["stream_over_device"] = pipes["stream_over_device"]
    if "quickstart" in args.only:
        rec = parts.bench_quickstart(args)
        result["details"]["quickstart"] = rec
        if rec["returncode"] == 0:
            result["quickstart_seconds"] = rec["quickstart_seconds"]
    if "torch" in args.only:
        rec = parts.bench_torch(args, backend)
        result["details"]["torch"], result["torch_ratio"] = rec, rec.get("torch_ratio")
    result["loadavg_end"] = timing.loadavg()
    result["wall_seconds"] = timing.rnd(time.perf_counter() - t0)
    result["met"] = render.met(result)
    text = json.dumps(result, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return result
