"""Reports from hand-written run directories: discovery, labels, summary.md, CLI errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import pytest
import unprivileged
from report_fixtures import (
    BASE_ACC,
    LEVELS,
    STEPS_AFTER_LAST_FLIP,
    acc,
    make_fake_runs,
    result_rows,
    write_run,
)

from lrr_jax import report, schema
from lrr_jax.reporting import discover, series, stats, summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED_LABELS = [
    "IMP", "IMP + LRR mask & signs", "IMP + random mask (balanced)", "WR", "WR + LRR mask",
    "LRR", "LRR + random mask (balanced)", "LRR (p=0)", "LRR (p=0.1)", "LRR (p=0.3)"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = make_fake_runs(root)
    out = os.path.join(str(root), "out")
    rc = report.main([paths["root"], "--out", out])
    return paths, out, rc


def test_read_typed_rows(tmp_path):
    run = discover.load_run(make_fake_runs(tmp_path)["lrr"])
    row = run.rows[0]
    assert row["level"] == 0 and isinstance(row["level"], int)
    assert isinstance(row["density"], float) and row["test_acc"] == pytest.approx(0.92)
    assert row["sign_flip_frac_vs_prev"] is None and row["mask_source"] is None
    assert row["method"] == "lrr" and row["epochs"] == 2 and row["score"] == "magnitude"
    assert run.sign_flips and run.sign_flips[0]["seed"] in (0, 1)
    assert run.config["dataset"] == "cifar10"  # the parent's config.json


def test_old_files_alias_and_flip_identity(tmp_path):
    """An older results.csv (best_test_acc, no identity in sign_flips.csv) reads the same."""
    d = tmp_path / "old"
    d.mkdir()
    (d / "results.csv").write_text("method,level,replica,seed,perturb_prob,density,test_acc,"
                                   "best_test_acc\nimp,1,0,7,0,0.8,0.9,0.91\n")
    (d / "sign_flips.csv").write_text("method,level,replica,layer,reference,flip_frac,"
                                      "n_unpruned\nimp,1,0,Dense_0/kernel,init,0.1,100\n")
    run = discover.load_run(str(d))
    assert run.rows[0]["best_epoch_test_acc"] == pytest.approx(0.91)
    assert run.sign_flips[0]["seed"] == 7  # from the results row of replica 0
    s = series.make_series([run])
    assert [x.label for x in s] == ["IMP"]
    assert stats.aggregate_levels(s[0].rows)[0].best_epoch_test_acc_mean == pytest.approx(0.91)


def test_discover_multi_method_and_labels(tmp_path):
    paths = make_fake_runs(tmp_path)
    found = discover.discover([paths["root"]])
    assert sorted(os.path.relpath(r.path, paths["root"]) for r in found) == sorted(
        ["multi/imp", "multi/wr", "multi/lrr", "perturb", "wr_lrr_mask", "imp_lrr_signs",
         "random/imp", "random/lrr"])
    made = series.make_series(found)
    assert [s.label for s in made] == EXPECTED_LABELS
    by_label = {s.label: s for s in made}
    # The p=0 replicas of the perturbation run are a series of their own.
    assert [st.n for st in stats.aggregate_levels(by_label["LRR"].rows)] == [2] * LEVELS
    assert by_label["LRR (p=0)"].perturbation_run and not by_label["LRR"].perturbation_run
    assert {s.label: s.kind for s in made if s.kind != "method"} == {
        "IMP + LRR mask & signs": "sign", "IMP + random mask (balanced)": "random",
        "WR + LRR mask": "mask", "LRR + random mask (balanced)": "random"}
    groups = series.study_groups(made)
    assert list(groups) == ["Methods", "Mask transfer", "Sign transfer", "Random masks",
                            "Sign perturbation"]
    assert [s.label for s in groups["Mask transfer"]] == ["IMP", "WR", "LRR", "WR + LRR mask"]
    flips = series.flip_rows_by_series(found, made)
    assert set(flips) == {"IMP", "IMP + LRR mask & signs", "IMP + random mask (balanced)",
                          "WR", "WR + LRR mask", "LRR", "LRR + random mask (balanced)",
                          "LRR (p=0)", "LRR (p=0.1)", "LRR (p=0.3)"}
    assert {r["perturb_prob"] for r in flips["LRR (p=0.3)"]} == {0.3}


def _run(path, config, **fields):
    row = {"level": 0, "replica": 0, "density": 1.0, "test_acc": 0.9, "seed": 0,
           "perturb_prob": 0.0, "pruning": "global", "score": "magnitude", **fields}
    return discover.Run(path=path, config=config, rows=[row], sign_flips=[])


def test_labels_come_from_row_fields_not_strings(tmp_path):
    # A source directory named 'lrr' whose rows say WR: the rows name it.
    src = tmp_path / "lrr"
    write_run(str(src), result_rows("wr", 0.9), flips=False)
    found = [
        # An old-style allocation string is an allocation, not a random mask.
        _run("a", {"method": "lrr", "random_mask": True}, method="lrr",
             pruning="random_balanced"),
        # The config's method is context only: the row's method wins.
        _run("b", {"method": "lrr"}, method="imp", mask_source=str(src)),
        _run("c", {}, method="lrr", score="random", pruning="erk"),
        _run("d", {}, method="lrr", sign_transfer="init_signs", perturb_prob=0.3),
        _run("e", {}, method="imp", mask_source="/gone/c10/lrr"),
    ]
    labels = [s.label for s in series.make_series(found)]
    # Allocations differ between these runs, so magnitude-pruned labels name theirs.
    assert labels == ["IMP + WR mask [global]", "IMP + c10/lrr mask [global]",
                      "LRR [random_balanced]", "LRR + random mask (erk)",
                      "LRR (init signs) (p=0.3) [global]"]


def test_context_tags_when_runs_differ():
    found = [_run("a", {"dataset": "cifar10", "lr": 0.1}, method="lrr"),
             _run("b", {"dataset": "cifar100", "lr": 0.1}, method="lrr"),
             _run("c", {"dataset": "cifar100", "lr": 0.05}, method="imp"),
             _run("d", {"dataset": "cifar100"}, method="imp", seed=1)]  # lr unknown: apart
    made = series.make_series(found)
    assert [s.label for s in made] == [
        "IMP [cifar100, lr=0.05]", "IMP [cifar100]", "LRR [cifar10, lr=0.1]",
        "LRR [cifar100, lr=0.1]"]
    same = [_run("a", {"dataset": "cifar10"}, method="lrr"),
            _run("b", {"dataset": "cifar10"}, method="lrr", seed=1)]
    made = series.make_series(same)
    assert [s.label for s in made] == ["LRR"] and series.n_text(made[0]) == "n=2"
    assert series.describe_setting(made) == "CIFAR-10, seeds 0, 1"


def test_parent_results_do_not_double_count(tmp_path):
    multi = make_fake_runs(tmp_path)["multi"]
    write_run(multi, [row for m in BASE_ACC for row in result_rows(m, BASE_ACC[m])])
    made = series.make_series(discover.discover([multi]))
    assert [s.label for s in made] == ["IMP", "WR", "LRR"]
    assert all(len(s.rows) == 2 * LEVELS for s in made)


def test_report_writes_png_and_pdf(built):
    _, out, rc = built
    assert rc == 0
    for stem in ("accuracy_vs_sparsity", "sign_flips", "perturbation", "transfer_masks",
                 "transfer_signs", "random_masks", "lmc", "sign_flips_layers_lrr",
                 "sign_flips_layers_imp", "sign_flips_layers_wr"):
        png, pdf = os.path.join(out, stem + ".png"), os.path.join(out, stem + ".pdf")
        assert os.path.getsize(png) > 5000, stem
        with open(pdf, "rb") as f:
            assert f.read(5) == b"%PDF-", stem
    # Transfer variants and perturbation runs get no per-layer figure of their own.
    assert not [n for n in os.listdir(out) if n.startswith("sign_flips_layers_lrr_")]


def test_summary_numbers(built):
    _, out, _ = built
    text = open(os.path.join(out, "summary.md")).read()
    # IMP at level 3: seeds 0.885 and 0.895 -> 89.00 ± 0.71 (sample std 0.01 / sqrt(2)).
    assert "89.00 ± 0.71" in text
    assert "91.00 ± 0.71" in text and "### LRR (p=0)" in text
    for title in ("### Mask transfer", "### Sign transfer", "### Random masks",
                  "### Sign perturbation"):
        assert title in text
    assert "48.80" in text  # sparsity of level 3: 1 - 0.8^3
    assert "Setting: CIFAR-10, ResNet18, seeds 0, 1." in text
    assert "mean ± sample std over seeds" in text and "best_acc1" in text
    assert "best-epoch test acc % (mean)" in text
    for name in ("accuracy_vs_sparsity", "transfer_masks", "perturbation", "lmc"):
        assert f"]({name}.png)" in text and f"]({name}.pdf)" in text
    for label in EXPECTED_LABELS:
        assert f"### {label}\n" in text
    # The recovery budget beside the perturbation results.
    assert "steps after last flip" in text
    assert f"Recovery budget of the perturbed replicas (training steps after the last sign " \
           f"flip): level 0: {STEPS_AFTER_LAST_FLIP}" in text
    assert "Loss barrier" in text and "0.3000" in text


def test_side_by_side_table_one_column_per_method():
    rows_by_label = {m.upper(): [{"level": lv, "density": 0.8 ** lv, "test_acc": acc(b, lv, r)}
                                 for lv in range(3) for r in range(2)]
                     for m, b in BASE_ACC.items()}
    lines = summary.side_by_side_table(rows_by_label).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["level", "sparsity %", "IMP (%)", "WR (%)", "LRR (%)"]
    assert len(lines) == 2 + 3
    assert lines[2 + 1].rstrip(" |").endswith("92.00 ± 0.71")  # LRR at level 1: 0.915, 0.925
    assert "20.00" in lines[2 + 1]
    one = summary.side_by_side_table({"LRR": [{"level": "0", "density": "1.0",
                                               "test_acc": "0.9"}]})
    assert "90.00" in one and "±" not in one


def test_loop_table_with_new_columns(tmp_path):
    """As the training loop calls it: {method: rows of the new schema}, printed per level."""
    paths = make_fake_runs(tmp_path)
    rows = schema.read_csv(os.path.join(paths["perturb"], "results.csv"))
    plain = schema.read_csv(os.path.join(paths["lrr"], "results.csv"))
    split = summary.by_replica_setting({"lrr": rows, "imp": plain})
    assert list(split) == ["lrr p=0", "lrr p=0.1", "lrr p=0.3", "imp"]
    assert split["imp"] is plain
    assert {r["seed"] for r in split["lrr p=0.1"]} == {0, 1} and len(split["lrr p=0.1"]) == 8
    text = summary.side_by_side_table(split)
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")][2:] == [
        "lrr p=0 (%)", "lrr p=0.1 (%)", "lrr p=0.3 (%)", "imp (%)"]
    assert len([line for line in lines if line.startswith("| ")]) == 1 + LEVELS
    # Level 3, p=0.3: 0.92 - 0.015 - 0.018 + {0, 0.01} -> 89.20 ± 0.71.
    assert "89.20 ± 0.71" in lines[2 + 3]
    assert lines[-1] == ("Recovery budget of the perturbed replicas (training steps after the "
                         "last sign flip): " + ", ".join(
                             f"level {lv}: {STEPS_AFTER_LAST_FLIP}" for lv in range(LEVELS))
                         + ".")
    # Other identity fields that differ within a method name themselves.
    mixed = plain + [dict(r, sign_transfer="init_signs") for r in plain]
    assert list(summary.by_replica_setting({"lrr": mixed})) == [
        "lrr sign_transfer=", "lrr sign_transfer=init_signs"]


def test_theory_figure_called_when_present(tmp_path, monkeypatch):
    with open(tmp_path / "theory.json", "w") as f:
        json.dump({"success": 0.5}, f)
    calls = []

    def plot(source, out_png):
        calls.append(source)
        open(out_png, "wb").write(b"png")

    fake = types.ModuleType("lrr_jax.reporting.theory_figure")
    fake.plot = plot
    monkeypatch.setitem(sys.modules, "lrr_jax.reporting.theory_figure", fake)
    assert report.main([str(tmp_path)]) == 0
    assert calls == [str(tmp_path / "theory.json")]
    assert os.path.isfile(tmp_path / "report" / "theory.png")
    assert "theory.png" in open(tmp_path / "report" / "summary.md").read()


def test_theory_module_missing_is_skipped(tmp_path, monkeypatch, capsys):
    lrr = make_fake_runs(tmp_path)["lrr"]
    (tmp_path / "theory").mkdir()
    with open(tmp_path / "theory" / "theory.json", "w") as f:
        json.dump({}, f)
    monkeypatch.setitem(sys.modules, "lrr_jax.reporting.theory_figure", None)
    assert report.main([lrr, str(tmp_path / "theory")]) == 0
    assert "skipped theory figure" in capsys.readouterr().err
    assert os.path.isfile(os.path.join(lrr, "report", "accuracy_vs_sparsity.png"))
    assert not os.path.exists(os.path.join(lrr, "report", "theory.png"))


def test_no_run_is_an_error(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert report.main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run found") and "\n" not in err
    write_run(str(tmp_path / "empty" / "sub"), [], flips=False)  # header only
    assert report.main([str(tmp_path / "empty")]) == 2
    assert report.main([str(tmp_path / "missing")]) == 2
    assert not os.path.exists(tmp_path / "empty" / "report")


def _cli(*args, prefix=()):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([*prefix, sys.executable, "-m", "lrr_jax.report", *args], cwd=REPO,
                          env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_one_line_error(proc, path):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: cannot write the report into ") and path in err, err


def test_unwritable_output_is_one_line_exit_2(tmp_path):
    """Through the entry point. A path under a regular file cannot be created, even by root."""
    lrr = make_fake_runs(tmp_path)["lrr"]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = str(blocker / "out")
    _assert_one_line_error(_cli(lrr, "--out", out), out)
    # A writable folder, but a figure's path is taken by a directory: one line too.
    taken = tmp_path / "taken"
    (taken / "accuracy_vs_sparsity.png").mkdir(parents=True)
    proc = _cli(lrr, "--out", str(taken))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: cannot write {taken / 'accuracy_vs_sparsity.png'}: Is a directory")


def test_read_only_folder_is_one_line_exit_2(tmp_path):
    """A folder without write permission, as root too (see tests/unprivileged.py)."""
    lrr = make_fake_runs(tmp_path)["lrr"]
    if unprivileged.prefix() is None:
        pytest.skip("cannot drop root's override of file permissions here")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for out in (locked, locked / "sub"):
            _assert_one_line_error(_cli(lrr, "--out", str(out), prefix=unprivileged.prefix()),
                                   str(out))
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


def test_read_only_mount_is_one_line_exit_2(tmp_path):
    """A read-only bind mount (EROFS), where this machine allows one (root in a user namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    lrr = make_fake_runs(tmp_path)["lrr"]
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            f"mount --bind -o ro {ro} {ro} && ! touch {ro}/x 2>/dev/null"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no read-only bind mount here: {probe.stderr.strip()[:200]}")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = str(ro / "report")
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$1" -m '
         'lrr_jax.report "$2" --out "$3"', str(ro), sys.executable, lrr, out],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    _assert_one_line_error(proc, out)
    assert "Read-only file system" in proc.stderr
