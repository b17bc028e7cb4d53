"""`python -m lrr_jax.bench` at toy sizes: it runs, measures and writes what BENCHMARKS.md reads.

The figures themselves are not asserted (timings belong in the benchmark's
output, not in tests); their presence, sanity and the correctness checks the
benchmark makes along the way are.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "lrr_jax.bench",
           "--only=throughput,vmap,vmap_runs,methods,prune,checkpoints",
           "--models=resnet18", "--dtypes=float32", "--width=0.0625", "--batch=16",
           "--steps=2", "--repeats=1", "--vmap_replicas=2", "--vmap_epochs=1",
           "--vmap_runs_levels=1", "--methods_levels=1", "--campaign_epochs=2",
           "--checkpoint_mib=2", f"--out={out}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout) == result  # printed and written: the same object

    assert result["device"]["platform"] == "cpu"
    assert result["settings"]["width"] == 0.0625 and result["settings"]["batch"] == 16
    (row,) = result["throughput"]
    assert (row["model"], row["dtype"], row["width"], row["batch"]) == (
        "resnet18", "float32", 0.0625, 16)
    for kind in ("masked", "dense"):
        assert row[kind]["images_per_second"] > 0
        assert len(row[kind]["repeat_seconds"]) == 1
    assert result["masked_over_dense"] == row["masked_over_dense"] > 0

    vmap = result["details"]["vmap"]
    # Replica r of the vmapped program trains exactly like sequential run r.
    assert vmap["first_epoch_max_rel_loss_difference"] < 1e-4
    assert vmap["speedup_bound"] > 0 and vmap["sequential"]["gflops_per_second"] > 0
    assert result["vmap_speedup"] > 0 and result["vmap_runs_speedup"] > 0
    runs = result["details"]["vmap_runs"]
    assert 0.1 < runs["vmapped_last_level_mean_test_acc"] <= 1.0
    assert (runs["levels"], runs["epochs_per_level"], runs["warmup_epochs"]) == (1, 2, 2)

    methods = result["details"]["methods"]
    assert methods["methods"] == ["imp", "wr", "lrr"] and methods["num_replicas"] == 2
    assert (methods["levels"], methods["epochs_per_level"]) == (1, 2)
    assert result["methods_one_program_speedup"] == methods["methods_one_program_speedup"] > 0
    accs = [methods[f"{v}_last_level_mean_test_acc"] for v in
            ("one_program", "one_replica_at_a_time", "one_method_at_a_time")]
    assert max(accs) - min(accs) < 0.02, accs  # the same replicas, up to summation order
    assert methods["figure_methods"] == ["imp", "wr", "lrr", "wr@lrr", "lrr@imp"]
    assert result["figure_one_program_speedup"] == methods["figure_one_program_speedup"] > 0
    assert abs(methods["figure_one_program_last_level_mean_test_acc"]
               - methods["figure_two_stages_last_level_mean_test_acc"]) < 0.02

    prune = result["details"]["prune"]
    assert 0 < result["prune_seconds"] == prune["prune_seconds"]
    assert result["met"]["prune_seconds"] == (result["prune_seconds"] < 1.0)

    (ck,) = result["details"]["checkpoints"]["sizes"]
    assert ck["state_mib"] == pytest.approx(2, abs=0.01) and ck["store_save_seconds"] > 0
    assert ck["manager_save_seconds"] > 0 and ck["manager_restore_seconds"] > 0
    # The manifest catches a flipped byte; orbax alone hands back different arrays.
    assert ck["store_flipped_byte"].startswith("refused: state/") and ck[
        "store_flipped_byte"].endswith("does not match its SHA-256")
    assert ck["manager_flipped_byte"] == "restored different arrays without error"

    rendered = subprocess.run([sys.executable, "-m", "lrr_jax.bench", f"--render={out}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    table = rendered.stdout
    assert f"| resnet18 | float32 | 0.0625 | 16 | {row['masked']['images_per_second']} |" in table
    assert f"| prune_seconds | {result['prune_seconds']} | < 1 |" in table
    assert f"one program {methods['one_program_seconds']} s" in table
    assert f"as one program {methods['figure_one_program_seconds']} s" in table
    assert f"| {ck['state_mib']} | {ck['store_save_seconds']} |" in table
