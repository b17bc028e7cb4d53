"""The GPU check's targets and its table: `python scripts/gpu_table.py RESULT.json [--rc N]`.

Needs no JAX: `scripts/gpu_check.sh` prints the table with it after the check,
also when the check was killed by its hard timeout (`--rc`: the check's exit
status; a part still marked 'running' is then marked 'killed' in the file).

A target is 'met', 'NOT met' or 'not measured' (its figure is missing: the
part was skipped for lack of budget, failed, or could not run there).
"""

from __future__ import annotations

import json
import math
import os
import sys

# (figure key, what it is, comparison, threshold). Figures, never timed tests.
TARGETS = (
    ("resnet18_bfloat16_images_per_second", "ResNet18 bf16 masked, img/s", ">=", 40000),
    ("speedup_over_torch", "lrr_jax speed / PyTorch (bf16, channels-last)", ">=", 1.5),
    ("masked_over_dense_resnet18_float32", "masked/dense epoch time, ResNet18 f32", "<=", 1.03),
    ("masked_over_dense_resnet18_bfloat16", "masked/dense epoch time, ResNet18 bf16", "<=", 1.03),
    ("masked_over_dense_resnet50_bfloat16", "masked/dense epoch time, ResNet50 bf16", "<=", 1.03),
    ("resnet18_k4_per_replica_vs_k1", "ResNet18 K=4: per-replica img/s / K=1's", ">=", 0.8),
    ("mlp_k16_speedup", "MLP K=16: replica-epochs/s / K=1's", ">=", 8),
    ("tests_passed", "engine tests on the device (all passed)", "==", True),
    ("parallel_agree", "pmap = shard_map step on 1 device, and it trains", "==", True),
    ("campaign_ok", "LRR 2x2 via lrr_jax.main: results.csv, loss fell", "==", True),
)
# Figures shown without a target.
FIGURES = (
    ("resnet18_float32_images_per_second", "ResNet18 f32 masked, img/s"),
    ("resnet50_bfloat16_images_per_second", "ResNet50 bf16 masked, img/s (CIFAR-100)"),
    ("torch_images_per_second", "PyTorch reference ResNet18 bf16, img/s"),
    ("torch_ratio", "torch_ratio (lrr_jax time / PyTorch time)"),
    ("resnet18_k2_per_replica_vs_k1", "ResNet18 K=2: per-replica img/s / K=1's"),
    ("resnet18_k4_speedup_vs_sequential", "ResNet18 K=4: vmapped vs 4 sequential (>1: vmap pays)"),
    ("mlp_k4_speedup", "MLP K=4: replica-epochs/s / K=1's"),
    ("max_first_call_seconds", "slowest first epoch call (compile + 1 epoch), s"),
    ("max_compile_seconds", "largest compile estimate (first call - steady epoch), s"),
    ("peak_memory_gib", "peak device memory of the check process, GiB"),
    ("campaign_seconds", "the 2x2 LRR campaign through lrr_jax.main, s"),
    ("projected_cifar10_hours_bfloat16", "21-level CIFAR-10 campaign, bf16, h per method"),
    ("projected_cifar10_hours_float32", "21-level CIFAR-10 campaign, f32, h per method"),
    ("projected_cifar100_hours_bfloat16", "21-level CIFAR-100 ResNet50, bf16, h per method"),
)


def status(value, op: str, threshold) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    ok = {">=": lambda: value >= threshold, "<=": lambda: value <= threshold,
          "==": lambda: value == threshold}[op]()
    return "met" if ok else "NOT met"


def evaluate(figures: dict) -> list[dict]:
    """One row per target: the figure, the target, and whether it is met."""
    return [{"figure": key, "label": label, "value": figures.get(key),
             "target": f"{op} {threshold}", "status": status(figures.get(key), op, threshold)}
            for key, label, op, threshold in TARGETS]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def table(result: dict) -> str:
    """The plain-text table: every target beside its figure, then the other figures and parts."""
    figures = result.get("figures", {})
    rows = [(r["label"], _fmt(r["value"]), r["target"], r["status"])
            for r in evaluate(figures)]
    rows += [(label, _fmt(figures.get(key)), "", "" if key in figures else "not measured")
             for key, label in FIGURES]
    w = [max(len(r[i]) for r in rows + [("figure", "value", "target", "status")])
         for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w[i]) if i != 1 else c.rjust(w[i])  # noqa: E731
                               for i, c in enumerate(r)).rstrip()
    env, s = result.get("env", {}), result.get("settings", {})
    head = (f"lrr_jax GPU check{' (--dry: CPU, toy sizes)' if result.get('dry') else ''}: "
            f"{env.get('device_kind', '?')} ({env.get('platform', '?')}), "
            f"jax {env.get('jax', '?')}, ResNets at width {s.get('width', '?')}, batch "
            f"{s.get('batch', '?')}; {_fmt(result.get('wall_seconds'))} s")
    out = [head, line(("figure", "value", "target", "status")), line(tuple("-" * n for n in w))]
    out += [line(r) for r in rows]
    parts = result.get("parts", {})
    out.append("parts: " + ", ".join(
        f"{name} {p.get('status')}" + (f" ({p['seconds']} s)" if "seconds" in p else "")
        for name, p in parts.items()))
    for name, p in parts.items():
        if p.get("status") not in ("ok",) and p.get("reason"):
            out.append(f"  {name}: {p['reason']}")
    return "\n".join(out)


def finalize(path: str, rc: int) -> dict:
    """Mark a part left 'running' by a killed check; returns the result (or a stub)."""
    if not os.path.exists(path):
        return {"parts": {"check": {"status": "no result", "reason": f"{path} not written "
                                    f"(exit status {rc})"}}}
    with open(path) as f:
        result = json.load(f)
    if rc != 0:
        for p in result.get("parts", {}).values():
            if p.get("status") == "running":
                p["status"], p["reason"] = "killed", f"the check ended with exit status {rc}"
        result["exit_status"] = rc
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, path)
    return result


def main(argv: list[str]) -> int:
    path = argv[0]
    rc = int(argv[argv.index("--rc") + 1]) if "--rc" in argv else 0
    print(table(finalize(path, rc)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
