"""The one-call GPU check of lrr_jax; run it as `bash scripts/gpu_check.sh [--dry] [--out F]`.

Writes one JSON object (`--out`) after every part, so a check stopped by its
hard timeout still leaves what it measured; `scripts/gpu_table.py` prints the
table. Parts, in order of value (each starts only if the budget leaves it
`MIN_LEFT` seconds, else it is recorded as skipped):

1. `env`: device, versions, what the wrapper installed, torch's state.
2. `resnet18`: images/s of the compiled level epoch (`lrr_jax.bench.programs.
   EpochProgram`) of the CIFAR ResNet18 at width 1, batch 256, bfloat16 then
   float32, masked and dense timed alternately; per program the first call
   (compile + one epoch) apart from the steady epochs, and the device memory.
3. `torch`: the PyTorch reference (`lrr_jax.bench.torch_ref`: eager,
   channels-last, bfloat16 autocast, cudnn.benchmark) against the bfloat16
   masked epoch of part 2, alternately in this process.
4. `replicas_resnet18`: the same epoch with K = 2, 4 vmapped replicas in
   the run's default data order (`config.data_order`), against K = 1 (part
   2's bfloat16 masked program: one replica does the same work in either
   order), timed alternately; per-replica throughput against K = 1.
5. `replicas_mlp`: the quickstart MLP epoch (mnist1d shapes: 4000 x 40,
   batch 100) with K = 1, 4, 16 replicas: replica-epochs per second.
6. `checks`: the engine's GPU-relevant tests (pytest, hard timeout), the
   data-parallel step with pmap and shard_map on the one device
   (tests/dp_worker.py), and, at the same time in another process, a 2-level x
   2-epoch LRR campaign at width 1 through `python -m lrr_jax.main` on a
   generated CIFAR-10 archive (written and prepared in the background from the
   end of `env` on): results.csv has both levels and the training loss fell.
7. `resnet50`: as part 2 for the CIFAR-100 ResNet50, bfloat16.

`--dry`: the same code at toy sizes on the CPU (a CI test runs it).

The campaign's generated archive, TFDS folder and run live in one temporary
folder (`--tmp`, recorded as `tmp`), removed when the check ends; the wrapper
removes it too after its hard timeout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, REPO)

import gpu_table  # noqa: E402

PARTS = ("env", "resnet18", "torch", "replicas_resnet18", "replicas_mlp", "checks", "resnet50")
SETTINGS = {
    "gpu": dict(width=1.0, batch=256, steps=100, repeats=5, r50_steps=50, r50_repeats=3,
                replica_ks=(1, 2, 4), replica_repeats=3, mlp_ks=(1, 4, 16), mlp_epochs=10,
                mlp_repeats=5, campaign_train=10000, campaign_test=2000, campaign_batch=256,
                campaign_eval_batch=1000, parallel_epochs=3, budget_s=410, tests_cap_s=150,
                campaign_cap_s=200,
                tests=["tests/test_models.py", "tests/test_train.py", "tests/test_precision.py"]),
    "dry": dict(width=0.0625, batch=16, steps=2, repeats=1, r50_steps=2, r50_repeats=1,
                replica_ks=(1, 2, 4), replica_repeats=1, mlp_ks=(1, 4, 16), mlp_epochs=1,
                mlp_repeats=1, campaign_train=512, campaign_test=128, campaign_batch=32,
                campaign_eval_batch=64, parallel_epochs=2, budget_s=600, tests_cap_s=120,
                campaign_cap_s=300,
                tests=["tests/test_train.py::test_schedules",
                       "tests/test_models.py::test_width_rounding"]),
}
# Seconds that must be left for a part to start (GPU: compile-dominated guesses).
MIN_LEFT = {"gpu": {"env": 0, "resnet18": 60, "torch": 20, "replicas_resnet18": 45,
                    "replicas_mlp": 15, "checks": 90, "resnet50": 70},
            "dry": {"env": 0, "resnet18": 5, "torch": 2, "replicas_resnet18": 5,
                    "replicas_mlp": 2, "checks": 10, "resnet50": 5}}
# The 21-level CIFAR campaign (configs/cifar10.py): levels x epochs + warm-up, 50,000 images.
CAMPAIGN_IMAGES = (21 * 150 + 10) * 50_000
GIB = 2 ** 30


def log(msg: str) -> None:
    print(f"[gpu_check {time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.perf_counter()


class Check:
    """The JSON object, its budget and its parts."""

    def __init__(self, args):
        self.args, self.mode = args, "dry" if args.dry else "gpu"
        self.s = dict(SETTINGS[self.mode])
        self.budget = args.budget_s if args.budget_s is not None else self.s["budget_s"]
        self.deadline = T0 + self.budget
        self.out = os.path.abspath(args.out)
        stem = os.path.splitext(self.out)[0]
        self.logs = {"pytest": stem + ".pytest.log", "campaign": stem + ".campaign.log"}
        self.r = {"schema": "lrr_jax.gpu_check/1", "dry": args.dry,
                  "command": " ".join(["scripts/gpu_check.py", *sys.argv[1:]]),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": self.budget,
                  "settings": {k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in self.s.items()},
                  "parts": {}, "figures": {}, "targets": [], "env": {}, "throughput": [],
                  "torch": None, "replicas": {}, "tests": None, "parallel": None,
                  "campaign": None, "projection": None, "complete": False}
        self.kept = {}  # programs reused across parts
        self.stop = ""  # why no part after `env` can run (JAX found no GPU)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self) -> None:
        self.r["wall_seconds"] = round(time.perf_counter() - T0, 1)
        self.r["figures"] = figures(self.r)
        self.r["targets"] = gpu_table.evaluate(self.r["figures"])
        os.makedirs(os.path.dirname(self.out), exist_ok=True)
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.r, f, indent=1, default=str)
        os.replace(tmp, self.out)

    def run_part(self, name: str, fn) -> None:
        part = self.r["parts"][name] = {}
        if self.args.only and name not in self.args.only and name != "env":
            part.update(status="skipped", reason="not in --only")
            return
        if self.stop and name != "env":
            part.update(status="skipped", reason=self.stop)
            self.save()
            return
        need = MIN_LEFT[self.mode][name]
        if self.left() < need:
            part.update(status="skipped", reason=f"budget: {self.left():.0f} s left, "
                        f"{need} s needed to start")
            self.save()
            log(f"{name}: skipped ({part['reason']})")
            return
        part["status"] = "running"
        self.save()
        log(f"{name}: start ({self.left():.0f} s of budget left)")
        t = time.perf_counter()
        try:
            fn(self)
            part["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            part.update(status="error", reason=f"{type(e).__name__}: {e}"[:500],
                        traceback=traceback.format_exc()[-3000:])
        part["seconds"] = round(time.perf_counter() - t, 1)
        self.save()
        log(f"{name}: {part['status']} in {part['seconds']} s")


# ---- figures ------------------------------------------------------------------------------

def _throughput(r, model, dtype, kind="masked"):
    for rec in r["throughput"]:
        if rec["model"] == model and rec["dtype"] == dtype and kind in rec:
            return rec
    return None


def figures(r: dict) -> dict:
    """The flat figures the targets and the table read, from the parts' records."""
    f = {}
    for model, dtype in (("resnet18", "bfloat16"), ("resnet18", "float32"),
                         ("resnet50", "bfloat16")):
        rec = _throughput(r, model, dtype)
        if rec:
            f[f"{model}_{dtype}_images_per_second"] = rec["masked"]["images_per_second"]
            if "masked_over_dense" in rec:
                f[f"masked_over_dense_{model}_{dtype}"] = rec["masked_over_dense"]
    t = r.get("torch") or {}
    for key in ("speedup_over_torch", "torch_ratio"):
        if t.get(key) is not None:
            f[key] = t[key]
    if t.get("torch"):
        f["torch_images_per_second"] = t["torch"]["images_per_second"]
    for k_rec in (r.get("replicas", {}).get("resnet18") or {}).get("by_k", []):
        if k_rec["k"] > 1:
            f[f"resnet18_k{k_rec['k']}_per_replica_vs_k1"] = k_rec["per_replica_vs_k1"]
            f[f"resnet18_k{k_rec['k']}_speedup_vs_sequential"] = k_rec["speedup_vs_sequential"]
    for k_rec in (r.get("replicas", {}).get("mlp") or {}).get("by_k", []):
        if k_rec["k"] > 1:
            f[f"mlp_k{k_rec['k']}_speedup"] = k_rec["speedup_vs_k1"]
    programs = [p for rec in r["throughput"] for p in (rec.get("masked"), rec.get("dense")) if p]
    programs += [k for m in ("resnet18", "mlp")
                 for k in (r.get("replicas", {}).get(m) or {}).get("by_k", [])]
    if programs:
        f["max_first_call_seconds"] = max(p["first_call_seconds"] for p in programs)
        f["max_compile_seconds"] = max(p["compile_seconds"] for p in programs)
    peaks = [p["memory"]["peak_bytes_in_use"] for p in programs
             if p.get("memory") and "peak_bytes_in_use" in p["memory"]]
    if peaks:
        f["peak_memory_gib"] = round(max(peaks) / GIB, 2)
    if r.get("tests"):
        f["tests_passed"] = r["tests"]["all_passed"]
    if r.get("parallel"):
        f["parallel_agree"] = r["parallel"]["ok"]
    if r.get("campaign"):
        f["campaign_ok"] = r["campaign"]["ok"]
        if r["campaign"].get("seconds") is not None:
            f["campaign_seconds"] = r["campaign"]["seconds"]
    for key, value in (r.get("projection") or {}).items():
        f[key] = value
    return f


def projection(r: dict) -> dict:
    """Training hours of one method's 21-level campaign at the measured masked img/s."""
    out = {}
    for name, model, dtype in (("cifar10", "resnet18", "bfloat16"),
                               ("cifar10", "resnet18", "float32"),
                               ("cifar100", "resnet50", "bfloat16")):
        rec = _throughput(r, model, dtype)
        if rec and rec["masked"]["images_per_second"]:
            hours = CAMPAIGN_IMAGES / rec["masked"]["images_per_second"] / 3600
            out[f"projected_{name}_hours_{dtype}"] = round(hours, 2)
    return out


# ---- timing programs ----------------------------------------------------------------------

def _timed_programs(named: dict, repeats: int, images: dict) -> dict:
    """Alternate timing; per program the first call, steady epoch, compile estimate, memory."""
    from lrr_jax.bench import programs, timing

    times = timing.alternate(named, repeats)
    memory = programs.memory_stats()
    out = {}
    for k in named:
        steady = timing.median(times[k])
        first = times[f"{k}_warmup"][0]
        out[k] = {"first_call_seconds": timing.rnd(first),
                  "steady_epoch_seconds": timing.rnd(steady),
                  "compile_seconds": timing.rnd(max(first - steady, 0.0)),
                  "repeat_seconds": [timing.rnd(t) for t in times[k]],
                  "images_per_second": timing.rnd(images[k] / steady),
                  "memory": memory}
    out["_times"] = times
    return out


def _throughput_pair(check: Check, model: str, dtype: str, steps: int, repeats: int,
                     keep: bool) -> None:
    from lrr_jax import parallel
    from lrr_jax.bench import programs, timing

    s = check.s
    c = programs.resnet_config(model, dtype, width=s["width"], batch=s["batch"])
    backend = parallel.Backend(c.parallel)
    progs = {kind: programs.EpochProgram(c, backend, num_classes=programs.NUM_CLASSES[model],
                                         steps=steps, masked=kind == "masked")
             for kind in ("masked", "dense")}
    images = {k: p.images_per_epoch for k, p in progs.items()}
    res = _timed_programs(progs, repeats, images)
    times = res.pop("_times")
    ratios = [m / d for m, d in zip(times["masked"], times["dense"])]
    rec = {"model": model, "dtype": dtype, "width": s["width"], "batch": s["batch"],
           "steps_per_epoch": steps, "repeats": repeats, "parallel": c.parallel,
           "num_devices": backend.num_devices, **res,
           "masked_over_dense": timing.rnd(timing.median(ratios))}
    check.r["throughput"].append(rec)
    check.r["projection"] = projection(check.r)
    if keep:
        check.kept[(model, dtype)] = progs["masked"]
    check.save()
    log(f"{model} {dtype}: masked {rec['masked']['images_per_second']} img/s, dense "
        f"{rec['dense']['images_per_second']} img/s, first call "
        f"{rec['masked']['first_call_seconds']} s")


def part_resnet18(check: Check) -> None:
    for dtype in ("bfloat16", "float32"):
        if check.left() < MIN_LEFT[check.mode]["resnet18"] / 2:
            check.r["parts"]["resnet18"]["reason"] = f"budget: {dtype} not run"
            return
        _throughput_pair(check, "resnet18", dtype, check.s["steps"], check.s["repeats"],
                         keep=dtype == "bfloat16")


def part_resnet50(check: Check) -> None:
    _throughput_pair(check, "resnet50", "bfloat16", check.s["r50_steps"],
                     check.s["r50_repeats"], keep=False)


def _kept_or_new(check: Check, model="resnet18", dtype="bfloat16"):
    from lrr_jax import parallel
    from lrr_jax.bench import programs

    if (model, dtype) not in check.kept:
        s = check.s
        c = programs.resnet_config(model, dtype, width=s["width"], batch=s["batch"])
        check.kept[(model, dtype)] = programs.EpochProgram(
            c, parallel.Backend(c.parallel), num_classes=programs.NUM_CLASSES[model],
            steps=s["steps"], masked=True)
    return check.kept[(model, dtype)]


def part_torch(check: Check) -> None:
    from lrr_jax.bench import timing, torch_ref

    s = check.s
    st = torch_ref.status()
    rec = check.r["torch"] = {"status": st, "model": "resnet18", "dtype": "bfloat16",
                              "width": s["width"], "batch": s["batch"], "steps_per_epoch":
                              s["steps"], "repeats": s["repeats"]}
    if not st["available"]:
        check.r["parts"]["torch"]["reason"] = f"not measured: {st['reason']}"
        return
    if check.mode == "gpu" and not st["cuda"]:  # width 1 on the host CPU: minutes per epoch
        check.r["parts"]["torch"]["reason"] = "not measured: torch imports but sees no CUDA"
        return
    jax_epoch = _kept_or_new(check)
    torch_epoch, info = torch_ref.torch_epoch(s["width"], s["batch"], s["steps"], 10,
                                              channels_last=True, bf16=True)
    rec["torch_info"] = info
    images = s["steps"] * s["batch"]
    res = _timed_programs({"lrr_jax": jax_epoch, "torch": torch_epoch}, s["repeats"],
                          {"lrr_jax": images, "torch": images})
    times = res.pop("_times")
    rec.update(res)
    ratio = timing.median(times["lrr_jax"]) / timing.median(times["torch"])
    rec["torch_ratio"] = timing.rnd(ratio)  # as lrr_jax.bench: lrr_jax time / PyTorch time
    rec["speedup_over_torch"] = timing.rnd(1 / ratio)
    del torch_epoch
    try:
        import torch
        if torch.cuda.is_available():
            rec["torch_max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def _replicas(check: Check, name: str, build, ks, repeats: int, epochs_per_call: int,
              images_per_epoch: int, data_order: str) -> None:
    """Time K-replica programs alternately; per K the per-replica rate against K = 1."""
    progs = {k: build(k) for k in ks}

    def call(p):
        def run():
            out = None
            for _ in range(epochs_per_call):
                out = p()
            return out
        return run

    named = {f"k{k}": call(p) for k, p in progs.items()}
    res = _timed_programs(named, repeats, {f"k{k}": k * images_per_epoch * epochs_per_call
                                           for k in ks})
    res.pop("_times")
    t1 = res["k1"]["steady_epoch_seconds"]
    by_k = []
    for k in ks:
        rec = res[f"k{k}"] | {"k": k}
        t = rec["steady_epoch_seconds"]
        rec["replica_epochs_per_second"] = round(k * epochs_per_call / t, 4)
        # Each replica's images/s against one replica alone (t1 / tK), and the
        # K-replica program against K sequential one-replica epochs (K t1 / tK).
        rec["per_replica_vs_k1"] = round(t1 / t, 4)
        rec["speedup_vs_sequential"] = round(k * t1 / t, 4)
        rec["speedup_vs_k1"] = rec["speedup_vs_sequential"]
        by_k.append(rec)
    check.r["replicas"][name] = {"data_order": data_order, "epochs_per_timed_call":
                                 epochs_per_call, "repeats": repeats, "by_k": by_k}


def part_replicas_resnet18(check: Check) -> None:
    from lrr_jax import parallel
    from lrr_jax.bench import programs

    s = check.s
    order = programs.default_data_order()
    c = programs.resnet_config("resnet18", "bfloat16", width=s["width"], batch=s["batch"])
    backend = parallel.Backend(c.parallel)

    def build(k):
        if k == 1:  # one replica: the same work in either data order
            return _kept_or_new(check)
        return programs.EpochProgram(c, backend, num_classes=10, steps=s["steps"], masked=True,
                                     replicas=k, data_order=order)

    _replicas(check, "resnet18", build, s["replica_ks"], s["replica_repeats"], 1,
              s["steps"] * s["batch"], order)
    check.kept.clear()  # the bfloat16 program is not needed any more


def part_replicas_mlp(check: Check) -> None:
    from lrr_jax import parallel
    from lrr_jax.bench import programs

    s = check.s
    order = programs.default_data_order()
    c = programs.quickstart_config()  # mlp (256, 256), batch 100
    backend = parallel.Backend(c.parallel)
    steps = 4000 // c.batch_size  # mnist1d: 4000 training examples of 40 features

    def build(k):
        return programs.EpochProgram(c, backend, num_classes=10, steps=steps, masked=True,
                                     replicas=k, example_shape=(40,), data_order=order)

    _replicas(check, "mlp", build, s["mlp_ks"], s["mlp_repeats"], s["mlp_epochs"],
              steps * c.batch_size, order)
    check.r["replicas"]["mlp"]["model"] = f"mlp{tuple(c.mlp_hidden)} batch {c.batch_size}"


# ---- checks: tests, the parallel step, the campaign ---------------------------------------

def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit status, or None after killing the process group at `timeout`."""
    try:
        return proc.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        _kill(proc)
        return None


def _popen(cmd, log_path, env=None) -> subprocess.Popen:
    # In this process's group: the wrapper's `timeout` ends the whole group, children too.
    with open(log_path, "w") as f:
        return subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)


def start_campaign_data(check: Check) -> None:
    """Write the synthetic CIFAR-10 archive and prepare it for TFDS, in the background (CPU)."""
    tmp = check.args.tmp or tempfile.mkdtemp(prefix="lrr_gpu_check_")
    os.makedirs(tmp, exist_ok=True)
    check.r["tmp"] = tmp  # removed when the check ends (main; the wrapper after a timeout)
    archive = os.path.join(tmp, "cifar-10-binary.tar.gz")
    data_dir = os.path.join(tmp, "tfds")
    check.campaign_dirs = {"tmp": tmp, "archive": archive, "data_dir": data_dir}
    code = ("import sys; from lrr_jax.data import synthetic_cifar, prepare; "
            f"synthetic_cifar.write_cifar_archive({archive!r}, 'cifar10', "
            f"{check.s['campaign_train']}, {check.s['campaign_test']}); "
            f"sys.exit(prepare.main(['--dataset=cifar10', '--archive={archive}', "
            f"'--data_dir={data_dir}']))")
    env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    check.data_log = os.path.join(tmp, "prepare.log")
    check.data_proc = _popen([sys.executable, "-c", code], check.data_log, env=env)
    check.data_started = time.perf_counter()


def _campaign_command(check: Check) -> list[str]:
    d, s = check.campaign_dirs, check.s
    return [sys.executable, "-m", "lrr_jax.main", "--config=configs/cifar10.py",
            f"--workdir={os.path.join(d['tmp'], 'run')}", f"--config.cifar_archive={d['archive']}",
            f"--config.data_dir={d['data_dir']}", "--config.levels=2",
            "--config.epochs_per_level=2", "--config.warmup_epochs=0",
            f"--config.width={s['width']}", f"--config.batch_size={s['campaign_batch']}",
            f"--config.eval_batch_size={s['campaign_eval_batch']}", "--config.progress=False",
            "--config.checkpoint_every_epochs=0"]


def _campaign_result(check: Check, rc, seconds: float) -> dict:
    run_dir = os.path.join(check.campaign_dirs["tmp"], "run")
    rec = {"command": " ".join(["python", *_campaign_command(check)[1:]]), "exit_status": rc,
           "seconds": round(seconds, 1), "train_images": check.s["campaign_train"],
           "test_images": check.s["campaign_test"], "log": check.logs["campaign"],
           "ok": False}
    path = os.path.join(run_dir, "results.csv")
    rec["results_csv"] = os.path.exists(path)
    if rec["results_csv"]:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        rec["rows"] = rows
        levels = sorted({int(row["level"]) for row in rows})
        losses = [float(row["train_loss"]) for row in sorted(rows, key=lambda r: int(r["level"]))]
        chance = math.log(10)
        rec["levels"] = levels
        rec["train_loss_by_level"] = losses
        # Fell: below the chance-level loss of 10 classes (where training starts)
        # at every level, and lower at the last level than at the first.
        rec["loss_fell"] = bool(losses) and all(x < chance for x in losses) and \
            losses[-1] < losses[0]
        rec["ok"] = rc == 0 and levels == [0, 1] and rec["loss_fell"]
    if rc != 0:
        with open(check.logs["campaign"]) as f:
            rec["log_tail"] = f.read()[-2000:]
    return rec


def _parse_pytest(text: str) -> dict:
    outcomes = {}
    for m in re.finditer(r"^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, re.M):
        outcomes[m.group(1)] = m.group(2)
    counts = {}
    for v in outcomes.values():
        counts[v.lower()] = counts.get(v.lower(), 0) + 1
    summary = re.findall(r"^=+ (.* in [\d.]+s.*) =+$", text, re.M)
    return {"outcomes": outcomes, "counts": counts, "summary": summary[-1] if summary else None}


def part_checks(check: Check) -> None:
    s = check.s
    # The campaign: wait for its data, then run it in its own process.
    t_wait = time.perf_counter()
    rc = _wait(check.data_proc, min(60, check.left() - 30))
    data_rec = {"exit_status": rc, "waited_seconds": round(time.perf_counter() - t_wait, 1),
                "seconds_since_start": round(time.perf_counter() - check.data_started, 1)}
    if rc != 0:
        with open(check.data_log) as f:
            data_rec["log_tail"] = f.read()[-2000:]
    log(f"campaign data: exit status {rc}")
    t_campaign = time.perf_counter()
    campaign = _popen(_campaign_command(check), check.logs["campaign"])
    # The tests, meanwhile.
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *s["tests"]]
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    timeout = min(s["tests_cap_s"], check.left() - 20)
    t = time.perf_counter()
    rc_tests = _wait(_popen(cmd, check.logs["pytest"], env=env), timeout)
    with open(check.logs["pytest"]) as f:
        text = f.read()
    tests = _parse_pytest(text)
    bad = {k: v for k, v in tests["outcomes"].items() if v in ("FAILED", "ERROR")}
    check.r["tests"] = {"command": " ".join(["python", *cmd[1:]]), "exit_status": rc_tests,
                        "timed_out": rc_tests is None, "timeout_s": round(timeout),
                        "seconds": round(time.perf_counter() - t, 1), "log": check.logs["pytest"],
                        "counts": tests["counts"], "summary": tests["summary"],
                        "not_passed": bad,
                        "all_passed": rc_tests == 0 and not bad and bool(tests["outcomes"])}
    if rc_tests not in (0, None):
        check.r["tests"]["log_tail"] = text[-3000:]
    check.save()
    log(f"tests: {tests['counts']} exit status {rc_tests}")
    # The data-parallel step with both backends on the one device (tests/dp_worker.py).
    try:
        check.r["parallel"] = parallel_check(s["parallel_epochs"])
    except Exception as e:  # noqa: BLE001
        check.r["parallel"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
    check.save()
    rc_campaign = _wait(campaign, min(s["campaign_cap_s"] - (time.perf_counter() - t_campaign),
                                      check.left() - 5))
    check.r["campaign"] = _campaign_result(check, rc_campaign,
                                           time.perf_counter() - t_campaign) | {"data": data_rec}
    log(f"campaign: ok={check.r['campaign']['ok']} exit status {rc_campaign}")


def parallel_check(epochs: int) -> dict:
    import numpy as np

    sys.path.insert(0, os.path.join(REPO, "tests"))
    import dp_worker

    runs = {kind: np.asarray(dp_worker.trajectory(kind, 1, epochs=epochs))
            for kind in ("pmap", "shard_map")}
    a, b = runs["pmap"], runs["shard_map"]
    diff = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))
    trains = bool(a[-2:].mean() < a[:2].mean())  # 2 replicas per epoch
    return {"epochs": epochs, "losses": {k: v.tolist() for k, v in runs.items()},
            "max_rel_difference": diff, "tolerance": 1e-3, "trains": trains,
            "ok": diff < 1e-3 and trains}


def part_env(check: Check) -> None:
    import importlib.metadata as md

    import jax

    from lrr_jax.bench import programs, torch_ref

    d = jax.devices()[0]
    env = {"platform": d.platform, "device_kind": d.device_kind,
           "num_devices": jax.device_count(), "python": platform.python_version(),
           "host_cpus": os.cpu_count(), "jax": jax.__version__,
           "memory_stats": programs.memory_stats(),
           "data_orders": list(programs.data_orders()),
           "default_data_order": programs.default_data_order(),
           "install": os.environ.get("GPU_CHECK_INSTALL", ""),
           "environment": {k: os.environ.get(k) for k in (
               "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_FLAGS", "PYTHONPATH")}}
    versions = {}
    for name in ("jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections",
                 "tensorflow-datasets", "array-record", "tensorboardX", "mnist1d", "protobuf",
                 "pytest", "torch"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    env["versions"] = versions
    env["torch"] = torch_ref.status()
    try:
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = None
    check.r["env"] = env
    if check.mode == "gpu" and d.platform != "gpu":
        # Width-1 ResNets on a CPU would only run into the hard timeout.
        check.stop = f"JAX found no GPU (platform {d.platform!r}); nothing measured"
        raise RuntimeError(check.stop)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry", action="store_true", help="CPU rehearsal at toy sizes")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--budget_s", type=float, default=None,
                   help="seconds for all parts (default 410 on the GPU, 600 with --dry)")
    p.add_argument("--only", default="", help=f"comma-separated parts of {','.join(PARTS)}")
    p.add_argument("--tmp", default=None, help="folder for the campaign's generated data and "
                   "run (default: a new temporary folder); removed when the check ends")
    args = p.parse_args(argv)
    args.only = [x for x in args.only.split(",") if x]
    if set(args.only) - set(PARTS):
        p.error(f"unknown parts {sorted(set(args.only) - set(PARTS))}; of {PARTS}")
    return args


def main(argv=None) -> int:
    check = Check(parse_args(argv))
    check.save()
    wants_checks = not check.args.only or "checks" in check.args.only
    check.data_proc = None
    try:
        for name in PARTS:
            check.run_part(name, globals()[f"part_{name}"])
            if name == "env" and wants_checks and not check.stop:
                start_campaign_data(check)  # CPU work, while the GPU parts run
    finally:
        if check.data_proc is not None and check.data_proc.poll() is None:
            _kill(check.data_proc)
        if check.r.get("tmp"):  # what the JSON needs from it is in the JSON
            shutil.rmtree(check.r["tmp"], ignore_errors=True)
    check.r["complete"] = True
    check.r["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    check.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
