"""Figures: PNG + PDF, the band is summary.md's statistic, fixed colours, legends off the curves."""

from __future__ import annotations

import colorsys
import math
import os

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from report_fixtures import make_fake_runs, theory_result

from lrr_jax import report
from lrr_jax.reporting import discover, figures, plotting, series, stats, style, theory_figure


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    paths = make_fake_runs(tmp_path_factory.mktemp("runs"))
    found = discover.discover([paths["root"]])
    return found, series.make_series(found), paths["root"]


@pytest.fixture
def captured(monkeypatch):
    """{png name: matplotlib Figure} of every figure saved while the test runs."""
    figs = {}
    save = plotting.save

    def keep(fig, out_png, **kwargs):
        figs[os.path.basename(out_png)] = fig
        return save(fig, out_png, **kwargs)

    monkeypatch.setattr(plotting, "save", keep)
    return figs


def _drawn(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _hue(color):
    r, g, b = matplotlib.colors.to_rgb(color)
    return colorsys.rgb_to_hls(r, g, b)[0]


def test_one_fixed_colour_per_method(runs):
    _, made, _ = runs
    full = style.styles_for(made)
    assert full["IMP"].color == "#1f77b4" and full["WR"].color == "#ff7f0e"
    assert full["LRR"].color == "#2ca02c"
    assert style.method_color("lrr_bn_rewind") == "#9467bd"
    # The same style whatever else is in the figure.
    for subset in (made[:1], made[3:6], made[::-1], made[-3:]):
        for label, st in style.styles_for(subset).items():
            assert st == full[label], label
    # Variants keep their method's hue, in another shade, line style and marker.
    for variant, method in (("WR + LRR mask", "WR"), ("IMP + LRR mask & signs", "IMP"),
                            ("LRR + random mask (balanced)", "LRR"), ("LRR (p=0.3)", "LRR")):
        assert _hue(full[variant].color) == pytest.approx(_hue(full[method].color), abs=0.02)
        assert full[variant] != full[method]
    assert len(set(full.values())) == len(full)  # every series of a report recognisable


def test_accuracy_band_is_the_summary_statistic(runs, captured, tmp_path):
    _, made, _ = runs
    plain = series.plain_series(made)
    scale = stats.accuracy_scale([r for s in made for r in s.rows])
    figures.accuracy_vs_sparsity(plain, str(tmp_path / "acc.png"), scale,
                                 style.styles_for(made), series.describe_setting(plain))
    fig = captured["acc.png"]
    ax = fig.axes[0]
    lrr = next(s for s in plain if s.label == "LRR")
    level3 = stats.aggregate_levels(lrr.rows)[3]
    x3 = -math.log(level3.density)
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "LRR (n=2)")
    assert line.get_xdata()[3] == pytest.approx(x3)
    assert line.get_ydata()[3] == pytest.approx(100 * level3.test_acc_mean)
    assert line.get_color() == "#2ca02c"
    band = [c for c in ax.collections
            if matplotlib.colors.to_hex(c.get_facecolor()[0]) == "#2ca02c"]
    assert len(band) == 1
    verts = band[0].get_paths()[0].vertices
    at_x3 = verts[np.isclose(verts[:, 0], x3)][:, 1]
    sd = 100 * level3.test_acc_std  # sample std over the 2 seeds: 0.71 points
    assert sorted(set(np.round(at_x3, 6))) == pytest.approx(
        [100 * level3.test_acc_mean - sd, 100 * level3.test_acc_mean + sd])
    dense = [ln for ln in ax.get_lines() if ln.get_label().startswith("dense (level 0")]
    level0 = [r["test_acc"] for s in plain for r in s.rows if r["level"] == 0]
    assert len(dense) == 1 and dense[0].get_ydata()[0] == pytest.approx(
        100 * np.mean(level0))
    title = fig.get_suptitle()
    for part in ("CIFAR-10", "ResNet18", "seeds 0, 1", "± 1 sample std over seeds"):
        assert part in title
    assert os.path.getsize(tmp_path / "acc.pdf") > 1000


def test_sign_flips_against_sparsity_on_own_axes(runs, captured, tmp_path):
    _, made, _ = runs
    plain = series.plain_series(made)
    figures.sign_flips(plain, str(tmp_path / "flips.png"), style.styles_for(made))
    ax_init, ax_prev = captured["flips.png"].axes
    assert not ax_init.get_shared_y_axes().joined(ax_init, ax_prev)
    lrr = next(s for s in plain if s.label == "LRR")
    levels = stats.aggregate_levels(lrr.rows)
    init = next(ln for ln in ax_init.get_lines() if ln.get_label() == "LRR (n=2)")
    prev = next(ln for ln in ax_prev.get_lines() if ln.get_label() == "LRR (n=2)")
    assert init.get_xdata() == pytest.approx([-math.log(st.density) for st in levels])
    assert init.get_ydata() == pytest.approx([100 * st.flips_vs_init_mean for st in levels])
    assert prev.get_xdata() == pytest.approx([-math.log(st.density) for st in levels[1:]])
    assert prev.get_ydata() == pytest.approx([100 * st.flips_vs_prev_mean for st in levels[1:]])
    assert "sparsity" in ax_init.get_xlabel() and "sparsity" in ax_prev.get_xlabel()
    assert ax_init.get_ylim() != ax_prev.get_ylim()


def test_every_legend_is_outside_the_axes(runs, captured, tmp_path):
    report.build([runs[2]], str(tmp_path / "out"))
    assert {"accuracy_vs_sparsity.png", "sign_flips.png", "transfer_masks.png",
            "transfer_signs.png", "random_masks.png", "perturbation.png",
            "lmc.png"} <= set(captured)
    for name, fig in captured.items():
        renderer = _drawn(fig)
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        if name.startswith("sign_flips_layers_"):
            assert not legends  # heatmaps: colour bars, no legend
            continue
        assert legends, name
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), (name, ax.get_title())
        texts = [t.get_text() for lg in legends for t in lg.get_texts()]
        if name != "lmc.png":
            assert any("(n=2)" in t for t in texts), name


def test_per_layer_heatmap_columns_name_sparsity(runs, captured, tmp_path):
    found, made, _ = runs
    lrr = next(s for s in made if s.label == "LRR")
    rows = series.flip_rows_by_series(found, made)["LRR"]
    figures.sign_flips_per_layer("LRR", rows, str(tmp_path / "layers.png"),
                                 series.densities(lrr))
    ax = captured["layers.png"].axes[0]
    _drawn(captured["layers.png"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1\n20.0%", "2\n36.0%", "3\n48.8%"]
    assert os.path.isfile(tmp_path / "layers.pdf")


def test_theory_figure_png_and_pdf(tmp_path):
    out = theory_figure.plot(theory_result(), str(tmp_path / "theory.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "theory.pdf", "rb") as f:
        assert f.read(5) == b"%PDF-"


def test_perturbation_reference_line_is_the_unperturbed_dense_accuracy(tmp_path, captured):
    """The dashed dense line of the perturbation figure: p = 0's level 0, not a pool over p."""
    from report_fixtures import CONFIG, result_rows, write_run

    rows = result_rows("lrr", 0.92, replicas=[(s, p) for p in (0.0, 0.3) for s in (0, 1)])
    for r in rows:
        if r["level"] == 0 and r["perturb_prob"] > 0:
            r["test_acc"] = 0.5  # a perturbed dense network is far below the plain one
    run = tmp_path / "perturb"
    write_run(str(run), rows, {**CONFIG, "method": "lrr", "perturb_probs": "0,0.3"})
    report.build([str(run)], str(tmp_path / "out"))
    fig = captured["perturbation.png"]
    lines = [ln for ax in fig.axes for ln in ax.get_lines()
             if ln.get_label().startswith("dense (level 0")]
    assert lines
    plain = np.mean([r["test_acc"] for r in rows if r["level"] == 0 and r["perturb_prob"] == 0])
    for ln in lines:
        assert np.allclose(ln.get_ydata(), 100 * plain), ln.get_label()
        assert "mean of" not in ln.get_label()


def test_lmc_title_names_the_setting(runs, captured, tmp_path):
    report.build([runs[2]], str(tmp_path / "out"))
    title = captured["lmc.png"]._suptitle.get_text()
    assert "CIFAR-10, ResNet18" in title and "replica 0" in title
    assert "seeds" not in title  # the lines are replica 0 of each run, not a seed range


def test_pdfs_are_reproducible(runs, tmp_path):
    """The same runs drawn twice: byte-identical PDFs (no creation date), so re-drawn
    figures change in git only where they changed."""
    a, b = tmp_path / "a", tmp_path / "b"
    report.build([runs[2]], str(a))
    report.build([runs[2]], str(b))
    pdfs = sorted(p.name for p in a.glob("*.pdf"))
    assert pdfs
    for name in pdfs:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def small_scale_runs(root, seeds=(0, 1, 2), standard_sizes=False):
    """Runs like those of docs/figures/cifar10_small: IMP, WR and LRR of a width-1/16
    ResNet18 and LRR on IMP's masks, on a generated 1,280 / 500 archive (run.json says so)."""
    import json

    from report_fixtures import BASE_ACC, CONFIG, result_rows, write_run

    config = {**CONFIG, "width": 0.0625}
    data = {"dataset": "cifar10", "train": 50000 if standard_sizes else 1280,
            "test": 10000 if standard_sizes else 500, "standard_sizes": standard_sizes}
    replicas = [(s, 0.0) for s in seeds]
    runs = {m: (os.path.join(root, "base", m), result_rows(m, base, replicas=replicas))
            for m, base in BASE_ACC.items()}
    imp_dir = runs["imp"][0]
    runs["lrr_imp_mask"] = (os.path.join(root, "lrr_imp_mask"),
                            result_rows("lrr", 0.915, replicas=replicas, mask_source=imp_dir))
    for directory, rows in runs.values():
        write_run(directory, rows, {**config, "method": rows[0]["method"]})
        with open(os.path.join(directory, "run.json"), "w") as f:
            json.dump({"sessions": [{"argv": ["old session without a data record"]},
                                    {"data": data}]}, f)
    return str(root)


def _outside(fig) -> list:
    """Text drawn outside the figure: each title, label, legend entry and annotation by its
    window extent, tick labels (and everything else drawn) by the figure's tight bbox."""
    renderer = _drawn(fig)
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks()
             for t in (tick.label1, tick.label2)}
    w, h = fig.bbox.width, fig.bbox.height
    bad = []
    for t in fig.findobj(matplotlib.text.Text):
        if id(t) in ticks or not t.get_visible() or not t.get_text().strip():
            continue
        b = t.get_window_extent(renderer)
        if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > w + 0.5 or b.y1 > h + 0.5:
            bad.append((t.get_text(), tuple(round(v) for v in b.extents)))
    tight = fig.get_tightbbox(renderer)  # inches, every artist drawn
    fw, fh = fig.get_size_inches()
    if tight.x0 < -0.01 or tight.y0 < -0.01 or tight.x1 > fw + 0.01 or tight.y1 > fh + 0.01:
        bad.append(("tight bbox", tuple(round(v, 2) for v in tight.extents)))
    return bad


def test_no_text_outside_the_figure(runs, captured, tmp_path):
    """Every figure of a report, of the small-scale setting (its long subtitle) and of every
    kind of run (transfers, random masks, perturbation, LMC), keeps its text inside."""
    for name, root in (("small", small_scale_runs(tmp_path / "small")), ("all", runs[2])):
        captured.clear()
        report.build([root], str(tmp_path / f"out_{name}"))
        assert "accuracy_vs_sparsity.png" in captured
        for png, fig in captured.items():
            assert _outside(fig) == [], (name, png)
    theory_figure.plot(theory_result(), str(tmp_path / "theory.png"))
    assert _outside(captured["theory.png"]) == []


def test_one_seed_announces_no_band(captured, tmp_path):
    root = small_scale_runs(tmp_path / "one", seeds=(0,))
    report.build([root], str(tmp_path / "out"))
    for png in ("accuracy_vs_sparsity.png", "sign_flips.png", "transfer_masks.png"):
        title = captured[png].get_suptitle()
        assert "±" not in title and "line: one seed per level (no band)" in title, png
        assert not [c for ax in captured[png].axes for c in ax.collections
                    if type(c).__name__ == "FillBetweenPolyCollection"], png
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "band: ±" not in summary and "Line: one seed per level (no band)" in summary


@pytest.mark.parametrize("standard", [False, True])
def test_generated_archive_is_named_by_its_split_sizes(captured, tmp_path, standard):
    root = small_scale_runs(tmp_path / "runs", standard_sizes=standard)
    report.build([root], str(tmp_path / "out"))
    summary = (tmp_path / "out" / "summary.md").read_text()
    note = "CIFAR-10 format, synthetic or partial data (1,280 train / 500 test), ResNet18"
    for png in ("accuracy_vs_sparsity.png", "sign_flips.png", "transfer_masks.png"):
        title = captured[png].get_suptitle()
        assert (note in title) is not standard and ("CIFAR-10, ResNet18" in title) is standard
    assert (f"Setting: {note}" in summary) is not standard
