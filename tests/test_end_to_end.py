"""End to end through the entry point users call: `python -m lrr_jax.main`."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lrr_jax
from lrr_jax.data import synthetic_cifar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.levels=3", "--config.epochs_per_level=2", "--config.warmup_epochs=1",
        "--config.progress=False"]


def main(workdir, *overrides, config="configs/quickstart.py"):
    cmd = [sys.executable, "-m", "lrr_jax.main", f"--config={config}", f"--workdir={workdir}",
           *overrides]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def three_methods(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quick")
    out = main(workdir, *TINY)
    return workdir, out


def test_three_methods_results(three_methods):
    workdir, out = three_methods
    assert "imp (%)" in out.stdout and "lrr (%)" in out.stdout  # the side-by-side table
    level0 = {}
    for method in ("imp", "wr", "lrr"):
        rows = read_rows(workdir / method / "results.csv")
        assert len(rows) == 3 * 2  # 3 levels x 2 seeds (replicas)
        for row in rows:
            level = int(row["level"])
            assert float(row["density"]) == pytest.approx(0.8 ** level, abs=1e-5)
            assert 0.0 <= float(row["test_acc"]) <= 1.0
            assert float(row["best_epoch_test_acc"]) >= float(row["test_acc"])
            assert row["method"] == method
            assert row["sign_flip_frac_vs_prev"] == "" if level == 0 else \
                0.0 <= float(row["sign_flip_frac_vs_prev"]) <= 1.0
        level0[method] = [r["test_acc"] for r in rows if r["level"] == "0"]
        assert (workdir / method / "config.json").exists()
        assert os.listdir(workdir / method / "tb")
    # Level 0 (warm-up + dense training) is the same program for every method.
    assert level0["imp"] == level0["wr"] == level0["lrr"]


def test_one_method_rerun_keeps_the_summary_of_all_methods(tmp_path, three_methods):
    """Running one method of the quickstart again in its workdir (finished: nothing trains)
    reports it beside the methods an earlier run of the same config wrote there."""
    import shutil

    workdir = tmp_path / "quick"
    shutil.copytree(three_methods[0], workdir)
    before = (workdir / "summary.txt").read_text()
    assert all(f"{m} (%)" in before.splitlines()[0] for m in ("imp", "wr", "lrr"))
    out = main(workdir, *TINY, "--config.method=lrr")
    assert (workdir / "summary.txt").read_text() == before
    assert before.strip() in out.stdout
    # A method directory of another config is not reported beside this run.
    out = main(tmp_path / "other", *TINY, "--config.methods=imp,wr", "--config.lr=0.05")
    shutil.rmtree(workdir / "wr")
    shutil.copytree(tmp_path / "other" / "wr", workdir / "wr")
    main(workdir, *TINY, "--config.method=lrr")
    header = (workdir / "summary.txt").read_text().splitlines()[0]
    assert "imp (%)" in header and "lrr (%)" in header and "wr (%)" not in header


def test_load_level(three_methods):
    workdir, _ = three_methods
    init = lrr_jax.load_level(str(workdir / "imp"), "init")
    final = lrr_jax.load_level(str(workdir / "imp"), 2)
    kernels = [k for k in final["mask"] if "kernel" in final["mask"][k]]
    kept = sum(final["mask"][k]["kernel"].sum() for k in kernels)
    total = sum(final["mask"][k]["kernel"].size for k in kernels)
    assert kept == round(0.64 * total)
    assert final["params"]["dense1"]["kernel"].shape == init["params"]["dense1"]["kernel"].shape
    # Biases are never pruned.
    assert np.all(final["mask"]["dense1"]["bias"] == 1)
    # Replica 1 is another seed.
    other = lrr_jax.load_level(str(workdir / "imp"), "init", replica=1)
    assert not np.array_equal(other["params"]["fc"]["kernel"], init["params"]["fc"]["kernel"])
    with pytest.raises(lrr_jax.errors.ConfigError):
        lrr_jax.load_level(str(workdir / "imp"), 7)


def test_resume_after_level_one_gives_identical_results(tmp_path, three_methods):
    workdir, _ = three_methods
    # Stop after levels 0 and 1, then run the same command with all 3 levels.
    # The same 6 replicas in one program: a run of fewer replicas is another program,
    # equal only up to float summation order.
    main(tmp_path, *TINY, "--config.levels=2")
    main(tmp_path, *TINY)
    for method in ("imp", "wr", "lrr"):
        with open(tmp_path / method / "results.csv") as f, \
                open(workdir / method / "results.csv") as g:
            assert f.read() == g.read(), method
    with open(tmp_path / "lrr" / "run.json") as f:  # a resume appends a session
        sessions = json.load(f)["sessions"]
    assert [sorted(s["levels"]) for s in sessions] == [["0", "1"], ["2"]]


def test_cifar10_through_tfds_builder(tmp_path):
    archive = synthetic_cifar.write_cifar_archive(str(tmp_path / "cifar-10-binary.tar.gz"),
                                                  "cifar10", 256, 128, seed=0)
    workdir = tmp_path / "run"
    main(workdir, "--config.method=wr", f"--config.cifar_archive={archive}",
         f"--config.data_dir={tmp_path / 'tfds'}", "--config.width=0.0625",
         "--config.levels=2", "--config.epochs_per_level=1", "--config.warmup_epochs=1",
         "--config.batch_size=64", "--config.eval_batch_size=64", "--config.progress=False",
         config="configs/cifar10.py")
    rows = read_rows(workdir / "results.csv")
    assert [r["level"] for r in rows] == ["0", "1"]
    assert float(rows[1]["density"]) == pytest.approx(0.8, abs=1e-5)
    assert (tmp_path / "tfds" / "cifar10").is_dir()  # prepared by the project's builder
    # run.json records the generated archive's sizes; the report names it by them.
    with open(workdir / "run.json") as f:
        assert json.load(f)["sessions"][-1]["data"] == {
            "dataset": "cifar10", "train": 256, "test": 128, "standard_sizes": False}
    from lrr_jax import report

    report.build([str(workdir)], str(tmp_path / "report"))
    assert ("Setting: CIFAR-10 format, synthetic or partial data (256 train / 128 test), "
            "ResNet18 (width x0.0625), seed 0.") in (tmp_path / "report" / "summary.md").read_text()


@pytest.mark.parametrize("sizes,limits,standard", [
    ((50000, 10000), (0, 0), True), ((256, 10000), (256, 0), True),
    ((1280, 500), (0, 0), False), ((256, 500), (256, 0), False), ((200, 100), (0, 0), False)])
def test_data_record_says_whether_the_split_sizes_are_the_real_ones(sizes, limits, standard):
    from types import SimpleNamespace

    from lrr_jax import config_base, provenance

    c = config_base.get_base_config()
    c.train_limit, c.test_limit = limits
    dataset = SimpleNamespace(num_train=sizes[0], num_test=sizes[1])  # an engine's DataInfo
    assert provenance.data_record(c, dataset) == {
        "dataset": "cifar10", "train": sizes[0], "test": sizes[1], "standard_sizes": standard}
    c.dataset = "mnist1d"  # no real sizes known: no verdict
    assert provenance.data_record(c, dataset)["standard_sizes"] is None


def test_run_json_records_provenance_and_level_times(three_methods):
    import jax

    workdir, out = three_methods
    assert "devices: " in out.stdout and " (cpu backend), 1 process(es)" in out.stdout
    assert "campaign: level 2/2 done, 6 replicas, elapsed " in out.stdout
    assert "devices: " not in out.stderr and "campaign: " not in out.stderr  # stderr: errors
    with open(os.path.join(workdir, "lrr", "run.json")) as f:
        sessions = json.load(f)["sessions"]
    first = sessions[0]
    assert first["packages"]["jax"] == jax.__version__ and first["lrr_jax"]
    assert first["backend"] == "cpu" and first["device_count"] >= 1
    assert first["process_count"] == 1 and first["host"] and first["argv"]
    assert first["git"] is None or len(first["git"]["commit"]) == 40
    trained = [s for s in sessions if s["levels"]]
    assert trained and all(t > 0 for t in trained[0]["levels"].values())
    assert sorted(int(k) for s in sessions for k in s["levels"]) == list(range(3))
