"""`--config.dry_run=True` (the plan before a run) and the paper-scale-on-CPU warning."""

import json
import os
import subprocess
import sys

import pytest

from lrr_jax import campaign, plan
from lrr_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import cifar10, cifar10_small, quickstart, single_neuron  # noqa: E402

# 2 methods x 3 seeds, 400 examples at batch 100: 4 steps per epoch, (1 + 3 x 2) epochs.
SMALL = {"methods": "imp,lrr", "num_replicas": 3, "mlp_hidden": (16, 16), "train_limit": 400,
         "test_limit": 200, "batch_size": 100, "eval_batch_size": 200, "levels": 3,
         "epochs_per_level": 2, "warmup_epochs": 1, "progress": False, "tensorboard": False}


def small(**overrides):
    c = quickstart.get_config()
    c.update({**SMALL, **overrides})
    return c


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    keep = tmp_path / "existing"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    flags = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for k, v in SMALL.items()]
    for workdir in (tmp_path / "new", keep):
        out = subprocess.run(
            [sys.executable, "-m", "lrr_jax.main", "--config=configs/quickstart.py", *flags,
             "--config.dry_run=True", f"--workdir={workdir}"], cwd=REPO, capture_output=True,
            text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stderr == ""
    assert not (tmp_path / "new").exists()  # nothing written, not even the lock
    assert sorted(os.listdir(keep)) == ["notes.txt"]
    lines = out.stdout.splitlines()
    assert lines[0] == "plan (dry run: nothing is trained and nothing is written)"
    config = json.loads(lines[1].removeprefix("config: "))
    assert config["levels"] == 3 and config["methods"] == "imp,lrr" and config["dry_run"]
    assert lines[2].startswith("replicas: 6 in 1 program run(s) of 6 (replica_batch=0): "
                               "imp replica 0 (seed 0, p=0); imp replica 1 (seed 1, p=0)")
    assert lines[3] == ("data: mnist1d 400 train / 200 test, examples (40,), 10 classes "
                        "(read from the dataset)")
    assert lines[4] == ("schedule: 1 warm-up epoch(s) + 3 levels x 2 epochs, 4 steps per epoch "
                        "at batch 100: 28 steps per replica; 2 evaluation(s) per level")
    assert lines[5] == "devices: 1 x cpu (cpu backend), 1 process(es)"
    assert lines[6].startswith("memory per device: replica state")
    assert lines[8].startswith("projected: ")


def test_plan_counts_memory_steps_and_groups():
    c = small(replica_batch=4)
    p = plan.describe(c, steps=2, budget_s=0.0)
    assert p["groups"] == [4, 2]  # 6 replicas in groups of 4
    # MLP 40-16-16-10: kernels and biases; params, mask and SGD momentum are each that size,
    # plus the int32 step, for each of the 4 replicas of a group.
    n = 40 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert p["memory_bytes_per_device"]["state_per_group"] == 4 * (3 * n * 4 + 4)
    assert p["memory_bytes_per_device"]["data"] == (400 + 200) * 40 * 4  # float32 vectors
    s = p["schedule"]
    assert (s["steps_per_epoch"], s["steps_per_replica"]) == (4, 28)
    m = p["measured"]
    assert m["steps"] == 2 and m["replicas"] == 4 and m["step_seconds"] > 0
    # Training: every step of every group, at the measured seconds per step.
    assert p["projected_seconds"]["train"] == pytest.approx(28 * 2 * m["step_seconds"], rel=0.01,
                                                            abs=0.1)


def test_dry_run_of_another_experiment_is_a_config_error(tmp_path):
    c = single_neuron.get_config()
    c.dry_run = True
    with pytest.raises(ConfigError) as e:
        campaign.run(c, str(tmp_path / "w"))
    assert e.value.key == "dry_run" and not (tmp_path / "w").exists()


def test_paper_scale_on_a_cpu_warns_with_the_projection(monkeypatch, capsys):
    assert plan.is_paper_scale(cifar10.get_config())
    assert not plan.is_paper_scale(cifar10_small.get_config())
    assert not plan.is_paper_scale(quickstart.get_config())
    asked = []

    def fake(config, **kwargs):
        asked.append(kwargs)
        return {"projected_seconds": {"total": 3 * 86400 + 7200}, "measured": {"step_seconds": 4.5}}

    monkeypatch.setattr(plan, "describe", fake)
    plan.warn_if_paper_scale_on_cpu(cifar10_small.get_config())
    assert capsys.readouterr().err == "" and not asked
    plan.warn_if_paper_scale_on_cpu(cifar10.get_config())
    err = capsys.readouterr().err.splitlines()
    assert asked == [{"steps": 1, "budget_s": 0.0}]
    assert len(err) == 1 and err[0].startswith(
        "warning: resnet18 at width 1.0 with 21 levels x 150 epochs on a CPU: projected 3d02h00m "
        "from a measured step (4.5 s).")
