"""Figures of run results (matplotlib, Agg, no pyplot state): PNG plus a PDF beside it.

Every function takes already grouped series (see `series`) and their fixed
styles (see `style`), writes `out_png` and its `.pdf` twin (`plotting.save`)
and returns the PNG path, or None when it has nothing to draw. Sparsity axes
plot against -ln(density), so each pruning level at a constant rate is
equally spaced, and label ticks in sparsity %. Curves are the mean over
seeds with a ± 1 sample std band, the statistic summary.md reports (no band,
and the title says so, with one seed); the legend (below the axes) gives n,
the seeds per level; the title names the dataset, model and seeds (and a
generated or partial archive, `series.describe_setting`), each part on its
own line, wrapped at the figure's edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrr_jax.reporting import plotting, stats
from lrr_jax.reporting import series as series_lib
from lrr_jax.reporting import style as style_lib

ACCURACY_FIGSIZE = (8.0, 6.0)
SIGN_FLIPS_FIGSIZE = (12.0, 5.5)
TRANSFER_FIGSIZE = (14.0, 6.5)
PERTURBATION_FIGSIZE = (14.0, 6.5)


def _styles(series, styles):
    return styles or style_lib.styles_for(series)


def _setting(series, setting):
    return series_lib.describe_setting(series) if setting is None else setting


@plotting.styled
def accuracy_vs_sparsity(series: list[series_lib.Series], out_png: str, scale: float,
                         styles: dict[str, style_lib.Style] | None = None,
                         setting: str | None = None,
                         title: str = "Test accuracy vs sparsity") -> str | None:
    """Mean test accuracy per series vs sparsity, ± std band, dense accuracy as reference."""
    if not series:
        return None
    styles = _styles(series, styles)
    fig = plotting.new_figure(ACCURACY_FIGSIZE)
    ax = fig.subplots()
    xmax = plotting.plot_accuracy(ax, series, scale, styles)
    plotting.dense_reference(ax, series, scale)
    plotting.format_sparsity_axis(ax, xmax)
    ax.set_ylabel(plotting.acc_label(scale))
    plotting.title(fig, title, _setting(series, setting), plotting.band_note(series))
    plotting.legend_below(fig, ax, ncol=2)
    return plotting.save(fig, out_png)


@plotting.styled
def sign_flips(series: list[series_lib.Series], out_png: str,
               styles: dict[str, style_lib.Style] | None = None,
               setting: str | None = None) -> str | None:
    """Unpruned weights whose sign flipped vs sparsity: vs init (left), vs previous level (right).

    Each panel has its own y scale: flips against the previous level are
    typically an order of magnitude fewer than against theta_0.
    """
    styles = _styles(series, styles)
    fig = plotting.new_figure(SIGN_FLIPS_FIGSIZE)
    axes = fig.subplots(1, 2)
    panels = (("flips_vs_init", "vs initialization θ0 (level k vs init)"),
              ("flips_vs_prev", "vs previous level (level k vs k-1)"))
    xmax, drawn = 0.0, False
    for ax, (attr, what) in zip(axes, panels, strict=True):
        for s in series:
            x = plotting.plot_band(ax, s, styles[s.label], f"{attr}_mean", f"{attr}_std", 100.0)
            drawn = drawn or x > 0 or any(st.level == 0 and getattr(st, f"{attr}_mean")
                                          is not None for st in stats.aggregate_levels(s.rows))
            xmax = max(xmax, x)
        ax.set_title("Sign flips " + what)
        ax.set_ylabel("flipped unpruned weights (%)")
        ax.set_ylim(bottom=0)
    if not drawn:
        return None
    for ax in axes:
        plotting.format_sparsity_axis(ax, xmax)
    plotting.title(fig, "Sign flips vs sparsity", _setting(series, setting),
                   plotting.band_note(series))
    plotting.legend_below(fig, axes)
    return plotting.save(fig, out_png)


def short_layer_names(names: list[str]) -> list[str]:
    """Drops the common prefix and a trailing '/kernel': 'ResNet_0/Conv_0/kernel' -> 'Conv_0'."""
    parts = [n.split("/") for n in names]
    if parts and parts[0][-1] == "kernel" and all(p[-1] == "kernel" for p in parts):
        parts = [p[:-1] if len(p) > 1 else p for p in parts]
    common = 0
    while (len(parts) > 1 and all(len(p) > common + 1 for p in parts)
           and len({p[common] for p in parts}) == 1):
        common += 1
    return ["/".join(p[common:]) for p in parts]


def layer_flip_matrix(rows: list[dict[str, Any]], reference: str):
    """(layers, levels, matrix of mean flip fraction in %, NaN where missing)."""
    layers, levels, cells = [], set(), {}
    for row in rows:
        if row.get("reference") != reference or row.get("flip_frac") is None:
            continue
        layer, level = str(row.get("layer")), row.get("level")
        if level is None:
            continue
        if layer not in layers:
            layers.append(layer)
        levels.add(level)
        cells.setdefault((layer, level), []).append(float(row["flip_frac"]))
    levels = sorted(levels)
    matrix = np.full((len(layers), len(levels)), np.nan)
    for (layer, level), values in cells.items():
        matrix[layers.index(layer), levels.index(level)] = 100.0 * float(np.mean(values))
    return layers, levels, matrix


def layer_figsize(n_layers: int) -> tuple[float, float]:
    """Figure size of the per-layer heatmap: taller with more layers."""
    return (13.0, max(4.8, 2.2 + 0.24 * n_layers))


@plotting.styled
def sign_flips_per_layer(label: str, rows: list[dict[str, Any]], out_png: str,
                         densities: dict[int, float] | None = None,
                         setting: str = "") -> str | None:
    """Heatmaps layer x level of the sign-flip fraction, vs init and vs the previous level.

    Each panel has its own colour scale. Columns are levels, labelled with
    their sparsity when `densities` ({level: density}) gives it.
    """
    mats = {ref: layer_flip_matrix(rows, ref) for ref in ("init", "prev")}
    mats = {ref: m for ref, m in mats.items() if m[0]}
    if not mats:
        return None
    densities = densities or {}
    n_layers = max(len(m[0]) for m in mats.values())
    fig = plotting.new_figure(layer_figsize(n_layers))
    axes = np.atleast_1d(fig.subplots(1, len(mats)))
    names = {"init": "vs initialization θ0", "prev": "vs previous level"}
    font = 9 if n_layers <= 30 else 7
    for ax, (ref, (layers, levels, matrix)) in zip(axes, mats.items(), strict=True):
        vmax = float(np.nanmax(matrix)) or 1.0
        im = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax,
                       interpolation="nearest")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(short_layer_names(layers), fontsize=font)
        step = max(1, -(-len(levels) // 8))  # at most 8 labelled columns: they fit
        ax.set_xticks(range(0, len(levels), step))
        ax.set_xticklabels([f"{lv}" + (f"\n{100 * (1 - densities[lv]):.1f}%"
                                        if lv in densities else "")
                            for lv in levels[::step]], fontsize=8)
        ax.set_xlabel("pruning level k (sparsity %)" if densities else "pruning level k")
        ax.set_title(f"sign flips {names[ref]}")
        ax.grid(False)
        if len(levels) <= 8 and len(layers) <= 30:
            for (r, c), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=8,
                            color="white" if value < 0.6 * vmax else "black")
        fig.colorbar(im, ax=ax, label="flipped unpruned weights (%)", fraction=0.05)
    plotting.title(fig, f"Sign flips per layer: {label}", setting,
                   note="cells: mean over seeds")
    return plotting.save(fig, out_png)


def _level_ticks(levels, stats_by_label):
    ticks = []
    for level in levels:
        density = next((by[level].density for by in stats_by_label.values()
                        if level in by and by[level].density is not None), None)
        ticks.append(f"level {level}" + ("" if density is None
                                         else f"\n{100 * (1 - density):.1f}% sparse"))
    return ticks


def _pick(levels: list[int], k: int) -> list[int]:
    if len(levels) <= k:
        return levels
    idx = np.unique(np.linspace(0, len(levels) - 1, k).round().astype(int))
    return [levels[i] for i in idx]


@plotting.styled
def transfer(series: list[series_lib.Series], out_png: str, scale: float,
             styles: dict[str, style_lib.Style] | None = None, max_levels: int = 6,
             title: str = "Transfer runs vs plain methods",
             setting: str | None = None) -> str | None:
    """Mask/sign transfer runs next to the plain methods: curves and grouped bars per level."""
    if not any(s.is_transfer for s in series):
        return None
    chosen = [s for s in series if s.perturb_prob == 0 and not s.perturbation_run]
    styles = _styles(chosen, styles)
    fig = plotting.new_figure(TRANSFER_FIGSIZE)
    ax_c, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    xmax = plotting.plot_accuracy(ax_c, chosen, scale, styles)
    plotting.dense_reference(ax_c, chosen, scale)
    plotting.format_sparsity_axis(ax_c, xmax)
    ax_c.set_ylabel(plotting.acc_label(scale))
    ax_c.set_title("Test accuracy vs sparsity")

    by_label = {s.label: {st.level: st for st in stats.aggregate_levels(s.rows)} for s in chosen}
    levels = _pick(sorted({lv for by in by_label.values() for lv in by}), max_levels)
    width = 0.8 / max(1, len(chosen))
    lows, highs = [], []
    for i, s in enumerate(chosen):
        xs, means, stds = [], [], []
        for j, level in enumerate(levels):
            st = by_label[s.label].get(level)
            if st is None or st.test_acc_mean is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            means.append(st.test_acc_mean * scale)
            stds.append((st.test_acc_std or 0.0) * scale)
        if xs:
            ax_b.bar(xs, means, width=width * 0.95, yerr=stds, capsize=2,
                     color=styles[s.label].color, zorder=3)
            lows.append(min(m - d for m, d in zip(means, stds, strict=True)))
            highs.append(max(m + d for m, d in zip(means, stds, strict=True)))
    ax_b.set_xticks(range(len(levels)))
    ax_b.set_xticklabels(_level_ticks(levels, by_label))
    ax_b.grid(axis="x", visible=False)
    if lows:
        bottom, top = min(lows), max(highs)
        pad = max(0.5 * scale / 100.0, 0.08 * (top - bottom))
        ax_b.set_ylim(max(0.0, bottom - pad), top + pad)
    ax_b.set_ylabel(plotting.acc_label(scale) + " (axis zoomed)")
    band = plotting.has_band(chosen)
    ax_b.set_title(f"Per level: {'mean ± std over seeds' if band else 'one seed'} "
                   "(bar colours as the curves)")
    plotting.title(fig, title, _setting(chosen, setting), plotting.band_note(chosen))
    plotting.legend_below(fig, ax_c)
    return plotting.save(fig, out_png)


def recovery_text(series: list[series_lib.Series]) -> str:
    """'recovery budget: 1170 steps after the last sign flip' of the perturbed rows ('' if none)."""
    steps = stats.values([r for s in series if s.perturb_prob > 0 for r in s.rows],
                         "steps_after_last_flip")
    if not steps:
        return ""
    lo, hi = int(min(steps)), int(max(steps))
    return (f"recovery budget: {lo if lo == hi else f'{lo}-{hi}'} training steps "
            f"after the last sign flip of a level")


@plotting.styled
def perturbation(series: list[series_lib.Series], out_png: str, scale: float,
                 styles: dict[str, style_lib.Style] | None = None, max_levels: int = 4,
                 setting: str | None = None) -> str | None:
    """Sign perturbation: accuracy vs sparsity per p (left), accuracy vs p at a few levels.

    Series with the same base label (label without p) form one family; a
    perturbation run's own p = 0 replicas stand for p = 0. Only families with
    some p > 0 are drawn. Right panel: one line per level in the family's
    method hue, darker with sparsity; error bars ± 1 sample std over seeds.
    """
    families: dict[str, list[series_lib.Series]] = {}
    for s in series:
        families.setdefault(s.base_label, []).append(s)
    families = {k: sorted([s for s in v if s.perturbation_run] or v,
                          key=lambda s: s.perturb_prob) for k, v in families.items()
                if any(s.perturb_prob > 0 for s in v)}
    if not families:
        return None
    members_all = [s for v in families.values() for s in v]
    styles = _styles(members_all, styles)
    fig = plotting.new_figure(PERTURBATION_FIGSIZE)
    ax_s, ax_p = fig.subplots(1, 2)
    xmax = plotting.plot_accuracy(ax_s, members_all, scale, styles)
    plotting.dense_reference(ax_s, members_all, scale)
    plotting.format_sparsity_axis(ax_s, xmax)
    ax_s.set_ylabel(plotting.acc_label(scale))
    ax_s.set_title("Accuracy vs sparsity per flip probability p")
    plotting.ax_legend_below(ax_s)

    probs = sorted({s.perturb_prob for s in members_all})
    markers = ("o", "s", "^", "D")
    for f, (base, members) in enumerate(families.items()):
        by_p = {s.perturb_prob: {st.level: st for st in stats.aggregate_levels(s.rows)}
                for s in members}
        levels = _pick(sorted({lv for by in by_p.values() for lv in by}), max_levels)
        color = style_lib.method_color(members[0].method)
        for j, level in enumerate(levels):
            pts = [(p, by[level]) for p, by in sorted(by_p.items())
                   if level in by and by[level].test_acc_mean is not None]
            if not pts:
                continue
            # A small offset per level keeps error bars at the same p apart.
            ps = np.array([p for p, _ in pts]) + (j - (len(levels) - 1) / 2) * 0.012 * max(
                probs[-1], 1e-3)
            mean = np.array([st.test_acc_mean for _, st in pts]) * scale
            sd = np.array([st.test_acc_std or 0.0 for _, st in pts]) * scale
            density = next((st.density for _, st in pts if st.density is not None), None)
            where = f"level {level}" + ("" if density is None
                                        else f", {100 * (1 - density):.1f}% sparse")
            amount = 0.55 - 1.1 * j / max(1, len(levels) - 1)  # light (dense) to dark (sparse)
            ax_p.errorbar(ps, mean, yerr=sd, marker=markers[f % len(markers)], markersize=5,
                          lw=1.8, capsize=3, color=style_lib.shade(color, amount),
                          label=f"{base}, {where}")
    ax_p.set_xlabel("sign flip probability p")
    ax_p.set_ylabel(plotting.acc_label(scale))
    ax_p.set_title("Accuracy vs p at selected sparsities")
    plotting.ax_legend_below(ax_p)
    note = "; ".join(t for t in (plotting.band_note(members_all), recovery_text(members_all))
                     if t)
    plotting.title(fig, "Sign perturbation", _setting(members_all, setting), note=note)
    return plotting.save(fig, out_png)


LMC_FIGSIZE = (12.0, 5.2)


@plotting.styled
def lmc(items: list[tuple[str, dict[str, Any]]], out_png: str, setting: str = "") -> str | None:
    """Linear mode connectivity: test loss and accuracy along (1 - alpha) a + alpha b.

    `setting` names the data and model; each line is replica 0 of its runs
    (what `configs/lmc.py` interpolates), so no seed range is claimed.
    """
    items = [(src, it) for src, it in items if it.get("alphas")]
    if not items:
        return None
    fig = plotting.new_figure(LMC_FIGSIZE)
    ax_l, ax_a = fig.subplots(1, 2)
    scale = stats.accuracy_scale([{"test_acc": v} for _, it in items
                                  for v in it.get("test_acc") or []])
    labels = []
    for _, it in items:
        a, b = (series_lib.checkpoint_label(it.get(k, k)) for k in ("a", "b"))
        label = f"{a} → {b}"
        if isinstance(it.get("sign_flip_frac"), (int, float)):
            label += f" ({100 * it['sign_flip_frac']:.1f}% of signs differ)"
        labels.append(label)
    if len(set(labels)) < len(labels):
        labels = [f"{lab}  [{series_lib.short_path(src)}]"
                  for lab, (src, _) in zip(labels, items, strict=True)]
    # Pairs of checkpoints are no method: neutral colours, not the method hues.
    colors = ("#222222",) + style_lib.OTHER_COLORS
    for i, ((_, item), label) in enumerate(zip(items, labels, strict=True)):
        alphas, color = item["alphas"], colors[i % len(colors)]
        if item.get("test_loss"):
            ax_l.plot(alphas, item["test_loss"], marker="o", lw=1.8, color=color, label=label)
        if item.get("test_acc"):
            ax_a.plot(alphas, np.asarray(item["test_acc"], dtype=float) * scale, marker="o",
                      lw=1.8, color=color, label=label)
    for ax, what in ((ax_l, "test loss"), (ax_a, plotting.acc_label(scale))):
        ax.set_xlabel("interpolation α: (1 - α)·a + α·b")
        ax.set_ylabel(what)
        ax.set_title(what)
    plotting.title(fig, "Linear mode connectivity", setting,
                   note="one pair of checkpoints (replica 0 of each run) per line")
    plotting.legend_below(fig, (ax_l, ax_a), ncol=2)
    return plotting.save(fig, out_png)

