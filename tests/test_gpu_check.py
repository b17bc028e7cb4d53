"""`bash scripts/gpu_check.sh --dry`: the one-call GPU check rehearsed on the CPU at toy sizes.

The GPU figures themselves are not asserted here (they are figures of the
check, not timed tests); that every part runs, that each figure is derived
from the records it comes from, that the campaign goes through the real entry
point, that a part the budget cannot fit is reported and not run, and that the
table says met / NOT met / not measured correctly, are.
"""

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import gpu_table  # noqa: E402
import xla_env  # noqa: E402

STATUSES = {"met", "NOT met", "not measured"}


def _check(tmp_path, *args, timeout=1200, dry=True, env=None):
    out = tmp_path / "gpu_check.json"
    env = {**{k: v for k, v in os.environ.items() if k not in ("OUT", "XLA_FLAGS")},
           **(env or {})}
    env["JAX_PLATFORMS"] = "cpu"  # the rehearsal and the no-GPU answer, on any machine
    env["XLA_FLAGS"] = xla_env.flags()  # the session's (the script's default otherwise)
    env.setdefault("PYTHON", sys.executable)  # this interpreter, activated or not
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_check.sh"),
                           *(["--dry"] if dry else []), "--out", str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return json.loads(out.read_text()), done


def test_status_and_targets():
    assert gpu_table.status(41000.0, ">=", 40000) == "met"
    assert gpu_table.status(39999.0, ">=", 40000) == "NOT met"
    assert gpu_table.status(1.04, "<=", 1.03) == "NOT met"
    assert gpu_table.status(None, "<=", 1.03) == "not measured"
    assert gpu_table.status(math.nan, ">=", 1.5) == "not measured"
    assert gpu_table.status(False, "==", True) == "NOT met"
    rows = {r["figure"]: r for r in gpu_table.evaluate({"mlp_k16_speedup": 9.0,
                                                         "speedup_over_torch": 1.2})}
    assert rows["mlp_k16_speedup"]["status"] == "met"
    assert rows["speedup_over_torch"]["status"] == "NOT met"
    assert rows["campaign_ok"]["status"] == "not measured"
    assert len(rows) == len(gpu_table.TARGETS)


def test_finalize_marks_the_part_a_timeout_killed(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"parts": {"env": {"status": "ok"},
                                          "resnet18": {"status": "running"}}}))
    result = gpu_table.finalize(str(path), 124)
    assert result["parts"]["resnet18"]["status"] == "killed"
    assert json.loads(path.read_text())["exit_status"] == 124
    assert "resnet18 killed" in gpu_table.table(result)
    missing = gpu_table.finalize(str(tmp_path / "none.json"), 137)
    assert missing["parts"]["check"]["status"] == "no result"


def test_a_part_the_budget_cannot_fit_is_skipped_not_run(tmp_path):
    result, done = _check(tmp_path, "--budget_s=1", "--only=env,resnet18", timeout=300)
    parts = result["parts"]
    assert parts["env"]["status"] == "ok" and result["env"]["platform"] == "cpu"
    assert parts["resnet18"]["status"] == "skipped"
    assert parts["resnet18"]["reason"].startswith("budget:")
    assert parts["torch"] == {"status": "skipped", "reason": "not in --only"}
    assert result["throughput"] == [] and result["complete"]
    assert all(r["status"] == "not measured" for r in result["targets"])
    assert "ResNet18 bf16 masked, img/s" in done.stdout and "not measured" in done.stdout


def test_the_campaign_folder_is_removed_at_the_end(tmp_path):
    """The generated archive, its TFDS folder and the campaign's run live in a temporary
    folder (reported as `tmp`) that the check removes when it ends, --dry included."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result, _ = _check(tmp_path, "--budget_s=1", "--only=env,checks", timeout=300,
                       env={"TMPDIR": str(tmp)})
    assert result["parts"]["checks"]["status"] == "skipped"  # the data was started, not used
    assert os.path.dirname(result["tmp"]) == str(tmp)
    assert not os.path.exists(result["tmp"]) and os.listdir(tmp) == []


def test_without_gpu_the_real_check_stops_after_env(tmp_path):
    result, done = _check(tmp_path, dry=False, timeout=300)
    parts = result["parts"]
    assert parts["env"]["status"] == "error" and "JAX found no GPU" in parts["env"]["reason"]
    assert {p["status"] for name, p in parts.items() if name != "env"} == {"skipped"}
    assert result["settings"]["width"] == 1.0 and result["throughput"] == []
    assert result["complete"] and "JAX found no GPU" in done.stdout


@pytest.mark.slow
def test_dry_run_measures_every_part(tmp_path):
    result, done = _check(tmp_path)
    assert result["dry"] and result["complete"] and result["env"]["platform"] == "cpu"
    assert [name for name, p in result["parts"].items() if p["status"] != "ok"] == []
    f = result["figures"]

    # Throughput, compile and steady state per program.
    seen = {(r["model"], r["dtype"]) for r in result["throughput"]}
    assert seen == {("resnet18", "bfloat16"), ("resnet18", "float32"), ("resnet50", "bfloat16")}
    for rec in result["throughput"]:
        assert rec["width"] == 0.0625 and rec["batch"] == 16
        for kind in ("masked", "dense"):
            p = rec[kind]
            assert p["images_per_second"] > 0 and len(p["repeat_seconds"]) == 1
            assert p["first_call_seconds"] >= p["steady_epoch_seconds"] > 0
            assert p["memory"] is None  # the CPU reports no device memory
        key = f"{rec['model']}_{rec['dtype']}"
        assert f[f"{key}_images_per_second"] == rec["masked"]["images_per_second"]
        assert f[f"masked_over_dense_{key}"] == rec["masked_over_dense"] > 0
    assert "peak_memory_gib" not in f
    assert f["max_first_call_seconds"] >= f["max_compile_seconds"] > 0

    # Replicas: per-replica rate and speedup follow from the epoch times.
    for model, ks in (("resnet18", [1, 2, 4]), ("mlp", [1, 4, 16])):
        by_k = result["replicas"][model]["by_k"]
        assert [r["k"] for r in by_k] == ks
        t1 = by_k[0]["steady_epoch_seconds"]
        for r in by_k:
            assert r["per_replica_vs_k1"] == pytest.approx(t1 / r["steady_epoch_seconds"],
                                                           rel=1e-3)
            assert r["speedup_vs_sequential"] == pytest.approx(r["k"] * r["per_replica_vs_k1"],
                                                               rel=1e-3)
    assert f["resnet18_k4_per_replica_vs_k1"] == result["replicas"]["resnet18"]["by_k"][2][
        "per_replica_vs_k1"]
    assert f["mlp_k16_speedup"] == result["replicas"]["mlp"]["by_k"][2]["speedup_vs_k1"]

    # PyTorch: measured where torch imports, else reported as not measured.
    torch = result["torch"]
    if torch["status"]["available"]:
        assert f["speedup_over_torch"] == pytest.approx(1 / f["torch_ratio"], rel=1e-3)
        assert torch["torch_info"]["channels_last"] and torch["torch_info"]["autocast_bfloat16"]
    else:
        assert "speedup_over_torch" not in f
        assert result["parts"]["torch"]["reason"].startswith("not measured: ")

    # The checks: tests, the parallel step, the campaign through lrr_jax.main.
    tests = result["tests"]
    assert tests["counts"] == {"passed": 2} and tests["all_passed"] and f["tests_passed"]
    par = result["parallel"]
    assert par["ok"] and par["max_rel_difference"] < 1e-3 and len(par["losses"]["pmap"]) == 4
    camp = result["campaign"]
    assert camp["ok"] and f["campaign_ok"] and camp["levels"] == [0, 1]
    assert "lrr_jax.main --config=configs/cifar10.py" in camp["command"]
    assert [float(r["density"]) for r in camp["rows"]] == pytest.approx([1.0, 0.8], abs=1e-4)
    assert camp["train_loss_by_level"][-1] < camp["train_loss_by_level"][0] < math.log(10)
    assert os.path.exists(tmp_path / "gpu_check.pytest.log")

    # Projection from the measured rate; the targets and the printed table.
    hours = (21 * 150 + 10) * 50_000 / f["resnet18_bfloat16_images_per_second"] / 3600
    assert f["projected_cifar10_hours_bfloat16"] == pytest.approx(hours, rel=1e-2)
    assert result["targets"] == gpu_table.evaluate(f)
    assert {r["status"] for r in result["targets"]} <= STATUSES
    assert gpu_table.table(result) in done.stdout
    for row in result["targets"]:
        line = next(x for x in done.stdout.splitlines() if x.startswith(row["label"]))
        assert line.rstrip().endswith(row["status"]) and row["target"] in line
