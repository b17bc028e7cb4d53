"""Reports from hand-written run directories: discovery, figures, summary.md, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import struct
import sys
import types

import pytest

from lrr_jax import report
from lrr_jax.reporting import figures, runs, summary

COLUMNS = ("method, level, replica, seed, perturb_prob, density, test_acc, best_test_acc, "
           "test_loss, train_loss, train_acc, sign_flip_frac_vs_init, sign_flip_frac_vs_prev, "
           "mask_source, sign_source, pruning, epochs, wall_seconds").split(", ")
FLIP_COLUMNS = ("method", "level", "replica", "layer", "reference", "flip_frac", "n_unpruned")
LAYERS = ("params/Conv_0/kernel", "params/layer1_0/Conv_0/kernel",
          "params/layer1_0/Conv_1/kernel", "params/Dense_0/kernel")
BASE_ACC = {"imp": 0.90, "wr": 0.91, "lrr": 0.92}
LEVELS = 4


def acc(base: float, level: int, replica: int, p: float = 0.0) -> float:
    return round(base - 0.005 * level + 0.01 * replica - 0.02 * p * level, 6)


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def result_rows(method, base, replicas=((0, 0.0), (1, 0.0)), flips=None, **extra):
    """LEVELS levels x replicas ((replica, perturb_prob) pairs) of results rows."""
    rows = []
    flips = flips or {"lrr": 0.3, "wr": 0.1, "imp": 0.02}[method]
    for level in range(LEVELS):
        for replica, p in replicas:
            a = acc(base, level, replica % 2, p)
            rows.append(dict(
                method=method, level=level, replica=replica, seed=replica % 2, perturb_prob=p,
                density=0.8 ** level, test_acc=a, best_test_acc=a + 0.002,
                test_loss=0.3 + 0.01 * level, train_loss=0.01, train_acc=0.999,
                sign_flip_frac_vs_init=0.0 if level == 0 else flips + 0.01 * level,
                sign_flip_frac_vs_prev="" if level == 0 else flips / level,
                pruning="global", epochs=2, wall_seconds=1.5, **extra))
    return rows


def flip_rows(method, replicas=(0, 1)):
    rows = []
    for level in range(1, LEVELS):
        for replica in replicas:
            for i, layer in enumerate(LAYERS):
                for ref in ("init", "prev"):
                    frac = 0.05 * (i + 1) * (level if ref == "init" else 1) / LEVELS
                    rows.append(dict(method=method, level=level, replica=replica, layer=layer,
                                     reference=ref, flip_frac=frac, n_unpruned=1000 // level))
    return rows


def make_fake_runs(root) -> dict[str, str]:
    """A multi-method workdir (imp, wr, lrr), a perturbation run and two transfer runs."""
    root = str(root)
    multi = os.path.join(root, "multi")
    os.makedirs(multi)
    with open(os.path.join(multi, "config.json"), "w") as f:
        json.dump({"method": "lrr", "methods": "imp,wr,lrr", "dataset": "cifar10",
                   "model": "resnet18", "sign_transfer": "", "random_mask": False}, f)
    for method, base in BASE_ACC.items():
        d = os.path.join(multi, method)
        os.makedirs(os.path.join(d, "checkpoints"))
        write_csv(os.path.join(d, "results.csv"), COLUMNS, result_rows(method, base))
        write_csv(os.path.join(d, "sign_flips.csv"), FLIP_COLUMNS, flip_rows(method))
    lmc = {"alphas": [i / 10 for i in range(11)],
           "test_loss": [0.3 + 1.2 * (i / 10) * (1 - i / 10) for i in range(11)],
           "test_acc": [0.92 - 0.4 * (i / 10) * (1 - i / 10) for i in range(11)],
           "a": "LRR level 3", "b": "IMP level 3"}
    with open(os.path.join(multi, "lmc.json"), "w") as f:
        json.dump(lmc, f)

    perturb = os.path.join(root, "perturb")
    os.makedirs(perturb)
    with open(os.path.join(perturb, "config.json"), "w") as f:
        json.dump({"method": "lrr", "methods": "", "perturb_probs": "0,0.1,0.3",
                   "dataset": "cifar10", "model": "resnet18"}, f)
    replicas = [(i, p) for i, p in enumerate((0.0, 0.0, 0.1, 0.1, 0.3, 0.3))]
    write_csv(os.path.join(perturb, "results.csv"), COLUMNS,
              result_rows("lrr", 0.92, replicas=replicas))

    lrr_dir = os.path.join(multi, "lrr")
    for name, method, base, flips, extra in (
            ("wr_lrr_mask", "wr", 0.917, 0.15, {"mask_source": lrr_dir}),
            ("imp_lrr_signs", "imp", 0.912, 0.05, {"sign_source": lrr_dir})):
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"method": method, "dataset": "cifar10", "model": "resnet18",
                       "sign_transfer": "source_signs" if "sign_source" in extra else "",
                       **extra}, f)
        write_csv(os.path.join(d, "results.csv"), COLUMNS,
                  result_rows(method, base, flips=flips, **extra))
    return {"root": root, "multi": multi, "perturb": perturb}


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = make_fake_runs(root)
    out = os.path.join(str(root), "out")
    rc = report.main([paths["root"], "--out", out])
    return paths, out, rc


def test_read_typed_rows(tmp_path):
    d = make_fake_runs(tmp_path)["multi"]
    rows = runs.read_csv(os.path.join(d, "lrr", "results.csv"))
    assert rows[0]["level"] == 0 and isinstance(rows[0]["level"], int)
    assert isinstance(rows[0]["density"], float) and rows[0]["test_acc"] == pytest.approx(0.92)
    assert rows[0]["sign_flip_frac_vs_prev"] is None and rows[0]["mask_source"] is None
    assert rows[0]["method"] == "lrr" and rows[0]["epochs"] == 2


def test_discover_multi_method_and_labels(tmp_path):
    paths = make_fake_runs(tmp_path)
    found = runs.discover([paths["root"]])
    assert sorted(os.path.relpath(r.path, paths["root"]) for r in found) == sorted(
        ["multi/imp", "multi/wr", "multi/lrr", "perturb", "wr_lrr_mask", "imp_lrr_signs"])
    labels = [s.label for s in runs.make_series(found)]
    assert labels == ["IMP", "IMP + LRR signs", "WR", "WR + LRR mask", "LRR", "LRR (p=0)",
                      "LRR (p=0.1)", "LRR (p=0.3)"]
    # The p=0 replicas of the perturbation run are a series of their own (often the same
    # seeds as the plain run: pooling them would count those runs twice).
    series = {s.label: s for s in runs.make_series(found)}
    assert [st.n for st in runs.aggregate_levels(series["LRR"].rows)] == [2] * LEVELS
    assert series["LRR (p=0)"].perturbation_run and not series["LRR"].perturbation_run
    assert {s.label: s.kind for s in series.values() if s.kind != "method"} == {
        "IMP + LRR signs": "sign", "WR + LRR mask": "mask"}
    groups = runs.study_groups(list(series.values()))
    assert list(groups) == ["Methods", "Mask transfer", "Sign transfer", "Sign perturbation"]
    assert [s.label for s in groups["Mask transfer"]] == ["IMP", "WR", "LRR", "WR + LRR mask"]


def test_labels_random_masks_and_context():
    def run(path, config, **row):
        row = {"level": 0, "replica": 0, "density": 1.0, "test_acc": 0.9, **row}
        return runs.Run(path=path, config=config, rows=[row], sign_flips=[])

    found = [
        run("a", {"method": "lrr", "dataset": "cifar10"}, method="lrr", pruning="global"),
        run("b", {"method": "lrr", "dataset": "cifar10", "random_mask": True},
            method="lrr", pruning="random_balanced"),
        run("c", {"method": "imp", "dataset": "cifar100"}, method="imp", pruning="global"),
        run("d", {"method": "lrr", "dataset": "cifar10", "sign_transfer": "init_signs"},
            method="lrr", pruning="global", perturb_prob=0.3),
    ]
    labels = [s.label for s in runs.make_series(found)]
    assert labels == ["IMP [cifar100]", "LRR [cifar10]", "LRR + random mask (balanced) [cifar10]",
                      "LRR (init signs) (p=0.3) [cifar10]"]
    assert runs.label_of({"method": "wr", "mask_source": "/runs/c10_lrr/"}) == "WR + c10_lrr mask"


def test_parent_results_do_not_double_count(tmp_path):
    multi = make_fake_runs(tmp_path)["multi"]
    combined = [row for m in BASE_ACC for row in result_rows(m, BASE_ACC[m])]
    write_csv(os.path.join(multi, "results.csv"), COLUMNS, combined)
    series = runs.make_series(runs.discover([multi]))
    assert [s.label for s in series] == ["IMP", "WR", "LRR"]
    assert all(len(s.rows) == 2 * LEVELS for s in series)


def test_report_writes_figures(built):
    _, out, rc = built
    assert rc == 0
    expected = {
        "accuracy_vs_sparsity.png": figures.ACCURACY_FIGSIZE,
        "sign_flips.png": figures.SIGN_FLIPS_FIGSIZE,
        "perturbation.png": figures.PERTURBATION_FIGSIZE,
        "transfer_masks.png": figures.TRANSFER_FIGSIZE,
        "transfer_signs.png": figures.TRANSFER_FIGSIZE,
        "lmc.png": figures.LMC_FIGSIZE,
        "sign_flips_layers_lrr.png": figures.layer_figsize(len(LAYERS)),
        "sign_flips_layers_imp.png": figures.layer_figsize(len(LAYERS)),
        "sign_flips_layers_wr.png": figures.layer_figsize(len(LAYERS)),
    }
    for name, figsize in expected.items():
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 5000, name
        assert png_size(path) == figures.pixel_size(figsize), name


def test_summary_numbers(built):
    _, out, _ = built
    text = open(os.path.join(out, "summary.md")).read()
    # IMP at level 3: replicas 0.885 and 0.895 -> 89.00 ± 0.71 (sample std 0.01 / sqrt(2)).
    assert "89.00 ± 0.71" in text
    # LRR at level 3: 0.905 and 0.915; the perturbation run's p=0 replicas are apart.
    assert "91.00 ± 0.71" in text and "### LRR (p=0)" in text
    assert "### Mask transfer" in text and "### Sign perturbation" in text
    # Sparsity of level 3: 1 - 0.8^3 = 48.80 %.
    assert "48.80" in text
    for name in ("accuracy_vs_sparsity.png", "transfer_masks.png", "perturbation.png",
                 "lmc.png"):
        assert f"]({name})" in text
    for label in ("WR + LRR mask", "IMP + LRR signs", "LRR (p=0.3)"):
        assert f"### {label}" in text
    assert "Loss barrier" in text and "0.3000" in text


def test_side_by_side_table_one_column_per_method():
    rows_by_label = {m.upper(): [{"level": lv, "density": 0.8 ** lv, "test_acc": acc(b, lv, r)}
                                 for lv in range(3) for r in range(2)]
                     for m, b in BASE_ACC.items()}
    table = summary.side_by_side_table(rows_by_label)
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["level", "sparsity %", "IMP (%)", "WR (%)", "LRR (%)"]
    assert len(lines) == 2 + 3
    assert all(len(line.strip("|").split("|")) == 5 for line in lines)
    assert lines[2 + 1].rstrip(" |").endswith("92.00 ± 0.71")  # LRR at level 1: 0.915, 0.925
    assert "20.00" in lines[2 + 1]
    # Strings (as a CSV reader gives them) and single replicas work too.
    one = summary.side_by_side_table({"LRR": [{"level": "0", "density": "1.0",
                                               "test_acc": "0.9"}]})
    assert "90.00" in one and "±" not in one


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
    lrr = os.path.join(make_fake_runs(tmp_path)["multi"], "lrr")
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
    write_csv(tmp_path / "empty" / "sub" / "results.csv", COLUMNS, [])  # header only
    assert report.main([str(tmp_path / "empty")]) == 2
    assert report.main([str(tmp_path / "missing")]) == 2
    assert not os.path.exists(tmp_path / "empty" / "report")


def test_theory_success_rates_in_summary(tmp_path, monkeypatch):
    theory = {"d": 10, "num_inits": 100, "init": "balanced", "imp_success_rate": 0.254,
              "lrr_success_rate": 0.505, "dense_success_rate": 0.505, "mask_correct_rate": 1.0,
              "other_init": {"init": "independent", "imp_success_rate": 0.3,
                             "lrr_success_rate": 0.77},
              "d1": {"quadrants": {"w0>0,a0>0": {"count": 25, "success_rate": 1.0}}}}
    with open(tmp_path / "theory.json", "w") as f:
        json.dump(theory, f)
    monkeypatch.setitem(sys.modules, "lrr_jax.reporting.theory_figure", None)
    assert report.main([str(tmp_path)]) == 0
    text = open(tmp_path / "report" / "summary.md").read()
    assert "## Single hidden neuron: d = 10, 100 initializations" in text
    assert "| balanced    |       0.254 |       0.505 |" in text
    assert "| independent |       0.300 |       0.770 |             - |" in text
    assert "| w0>0,a0>0 |    25 |   1.000 |" in text
