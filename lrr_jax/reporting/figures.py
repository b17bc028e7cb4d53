"""PNG figures of run results (matplotlib, Agg, no pyplot state).

Every function takes already loaded series (see `runs`) and writes one PNG of
a fixed pixel size (figsize x DPI; tight layout, not a tight bounding box) and
returns its path. Sparsity axes plot against -ln(density), so each pruning
level at a constant rate is equally spaced, and label ticks in sparsity %.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import figure as mpl_figure  # noqa: E402

from lrr_jax.reporting import runs  # noqa: E402

DPI = 150
ACCURACY_FIGSIZE = (8.0, 5.5)
SIGN_FLIPS_FIGSIZE = (13.0, 5.0)
PERTURBATION_FIGSIZE = (14.0, 5.5)
TRANSFER_FIGSIZE = (15.0, 6.0)
LMC_FIGSIZE = (12.0, 4.8)
STYLE = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
METHOD_COLORS = {"imp": "tab:blue", "wr": "tab:orange", "lrr": "tab:green"}
# Sparsity ticks: the major ones first, minor ones where they fit.
_MAJOR_SPARSITY_TICKS = (0, 50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.99)
_MINOR_SPARSITY_TICKS = (10, 20, 30, 40, 60, 70)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def styled(fn: Callable) -> Callable:
    """Runs a plotting function under the module's font and grid style."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def pixel_size(figsize: tuple[float, float]) -> tuple[int, int]:
    """(width, height) in pixels of a PNG written at DPI."""
    return round(figsize[0] * DPI), round(figsize[1] * DPI)


def _save(fig: mpl_figure.Figure, out_png: str) -> str:
    fig.tight_layout()
    fig.savefig(out_png, dpi=DPI)
    return out_png


def colors_for(series: list[runs.Series]) -> dict[str, Any]:
    """One stable color per label: IMP blue, WR orange, LRR green, others from tab10/tab20."""
    palette = [c for c in matplotlib.colormaps["tab10"].colors
               if matplotlib.colors.to_hex(c) not in
               {matplotlib.colors.to_hex(v) for v in METHOD_COLORS.values()}]
    palette += list(matplotlib.colormaps["tab20"].colors[1::2])
    colors, i = {}, 0
    for s in series:
        if s.label in colors:
            continue
        if not s.is_transfer and s.perturb_prob == 0 and s.method.lower() in METHOD_COLORS \
                and METHOD_COLORS[s.method.lower()] not in colors.values():
            colors[s.label] = METHOD_COLORS[s.method.lower()]
        else:
            colors[s.label] = palette[i % len(palette)]
            i += 1
    return colors


def sparsity_x(density: float | None) -> float | None:
    """-ln(density): the plotting coordinate of a density (None when unknown)."""
    if density is None or density <= 0:
        return None
    return -math.log(density)


def format_sparsity_axis(ax, xmax: float, label: str = "sparsity (%), on a -ln(density) axis"):
    """Ticks at round sparsity percentages and the largest one, spaced to stay readable."""
    xmax = max(xmax, 0.05)
    gap = xmax / 9.0
    ticks: list[tuple[float, float]] = []

    def add(s: float):
        x = sparsity_x(1.0 - s / 100.0)
        if x <= xmax * 1.02 and all(abs(x - t) >= gap for t, _ in ticks):
            ticks.append((x, s))

    for s in _MAJOR_SPARSITY_TICKS:
        add(s)
    if all(abs(xmax - t) >= gap for t, _ in ticks):
        ticks.append((xmax, round(100.0 * (1.0 - math.exp(-xmax)), 1)))
    for s in _MINOR_SPARSITY_TICKS:
        add(s)
    ticks.sort()
    ax.set_xticks([x for x, _ in ticks])
    ax.set_xticklabels([f"{s:g}" for _, s in ticks])
    ax.set_xlim(-0.03 * xmax, xmax * 1.03)
    ax.set_xlabel(label)


def _curve(series: runs.Series, scale: float):
    """(x, mean, min, max, std) arrays over the levels with a density and an accuracy."""
    pts = [(sparsity_x(s.density), s.test_acc_mean * scale, s.test_acc_min * scale,
            s.test_acc_max * scale, s.test_acc_std * scale, s.n)
           for s in runs.aggregate_levels(series.rows)
           if s.density is not None and s.density > 0 and s.test_acc_mean is not None]
    if not pts:
        return None
    return tuple(np.asarray(col, dtype=float) for col in zip(*pts, strict=True))


def _plot_accuracy(ax, series: list[runs.Series], scale: float, colors: dict[str, Any]) -> float:
    xmax = 0.0
    for i, s in enumerate(series):
        curve = _curve(s, scale)
        if curve is None:
            continue
        x, mean, lo, hi, _, n = curve
        ax.plot(x, mean, marker=MARKERS[i % len(MARKERS)], markersize=5, lw=2,
                color=colors[s.label], label=s.label)
        if (n > 1).any():
            ax.fill_between(x, lo, hi, color=colors[s.label], alpha=0.12, lw=0)
        xmax = max(xmax, float(x.max()))
    return xmax


def _acc_label(scale: float) -> str:
    return "test accuracy (%)" if scale == 100.0 else "test accuracy"


@styled
def accuracy_vs_sparsity(series: list[runs.Series], out_png: str, scale: float,
                         colors: dict[str, Any] | None = None,
                         title: str = "Test accuracy vs sparsity") -> str:
    """Mean test accuracy over replicas per label, shaded min-max band."""
    colors = colors or colors_for(series)
    fig = mpl_figure.Figure(figsize=ACCURACY_FIGSIZE)
    ax = fig.subplots()
    xmax = _plot_accuracy(ax, series, scale, colors)
    format_sparsity_axis(ax, xmax)
    ax.set_ylabel(_acc_label(scale))
    ax.set_title(title + " (line: mean, band: min-max over replicas)", fontsize=12)
    ax.legend(loc="lower left", framealpha=0.85)
    return _save(fig, out_png)


@styled
def sign_flips(series: list[runs.Series], out_png: str,
               colors: dict[str, Any] | None = None) -> str:
    """Fraction of unpruned weights whose sign flipped, vs init and vs the previous level."""
    colors = colors or colors_for(series)
    fig = mpl_figure.Figure(figsize=SIGN_FLIPS_FIGSIZE)
    axes = fig.subplots(1, 2)
    refs = (("sign_flips_vs_init", "flips_vs_init_mean", "vs initialization (level k vs init)"),
            ("sign_flips_vs_prev", "flips_vs_prev_mean", "vs previous level (k vs k-1)"))
    max_level = 0
    for ax, (_, attr, title) in zip(axes, refs, strict=True):
        for i, s in enumerate(series):
            pts = [(st.level, 100.0 * getattr(st, attr)) for st in runs.aggregate_levels(s.rows)
                   if getattr(st, attr) is not None]
            if not pts:
                continue
            levels, values = zip(*pts, strict=True)
            max_level = max(max_level, max(levels))
            ax.plot(levels, values, marker=MARKERS[i % len(MARKERS)], markersize=5, lw=2,
                    color=colors[s.label], label=s.label)
        ax.set_title("Sign flips " + title)
        ax.set_xlabel("pruning level k")
        ax.set_ylabel("flipped unpruned weights (%)")
        ax.set_ylim(bottom=0)
    for ax in axes:
        ax.set_xlim(-0.3, max_level + 0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    axes[0].legend(handles, labels, loc="best", framealpha=0.85)
    return _save(fig, out_png)


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
    return (13.0, max(4.5, 1.8 + 0.24 * n_layers))


@styled
def sign_flips_per_layer(label: str, rows: list[dict[str, Any]], out_png: str) -> str | None:
    """Heatmaps layer x level of the sign-flip fraction (vs init, vs previous level)."""
    mats = {ref: layer_flip_matrix(rows, ref) for ref in ("init", "prev")}
    mats = {ref: m for ref, m in mats.items() if m[0]}
    if not mats:
        return None
    n_layers = max(len(m[0]) for m in mats.values())
    fig = mpl_figure.Figure(figsize=layer_figsize(n_layers), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(mats)))
    vmax = max(float(np.nanmax(m[2])) for m in mats.values()) or 1.0
    names = {"init": "vs initialization", "prev": "vs previous level"}
    font = 9 if n_layers <= 30 else 7
    for ax, (ref, (layers, levels, matrix)) in zip(axes, mats.items(), strict=True):
        im = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax,
                       interpolation="nearest")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(short_layer_names(layers), fontsize=font)
        step = max(1, len(levels) // 12)
        ax.set_xticks(range(0, len(levels), step))
        ax.set_xticklabels([str(v) for v in levels[::step]])
        ax.set_xlabel("pruning level k")
        ax.set_title(f"{label}: sign flips {names[ref]}")
        ax.grid(False)
        if len(levels) <= 8 and len(layers) <= 30:
            for (r, c), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=9,
                            color="white" if value < 0.6 * vmax else "black")
    fig.colorbar(im, ax=list(axes), label="flipped unpruned weights (%)", fraction=0.04)
    fig.savefig(out_png, dpi=DPI)
    return out_png


@styled
def perturbation(series: list[runs.Series], out_png: str, scale: float,
                 max_densities: int = 4) -> str | None:
    """Sign perturbation: accuracy vs sparsity per p, and accuracy vs p at a few levels.

    Series with the same base label (label without p) and different
    perturbation probabilities form one family; p = 0 is the unperturbed run.
    Only families with some p > 0 are drawn.
    """
    families: dict[str, list[runs.Series]] = {}
    for s in series:
        families.setdefault(s.base_label, []).append(s)
    # A perturbation run's own p = 0 replicas, when there are some, stand for p = 0.
    families = {k: sorted([s for s in v if s.perturbation_run] or v,
                          key=lambda s: s.perturb_prob) for k, v in families.items()
                if any(s.perturb_prob > 0 for s in v)}
    if not families:
        return None
    probs = sorted({s.perturb_prob for v in families.values() for s in v})
    cmap = matplotlib.colormaps["viridis"]
    p_color = {p: cmap(0.85 * i / max(1, len(probs) - 1)) for i, p in enumerate(probs)}
    styles = ("-", "--", ":", "-.")
    fig = mpl_figure.Figure(figsize=PERTURBATION_FIGSIZE)
    ax_s, ax_p = fig.subplots(1, 2)
    xmax = 0.0
    for f, (base, members) in enumerate(families.items()):
        for s in members:
            curve = _curve(s, scale)
            if curve is None:
                continue
            x, mean = curve[0], curve[1]
            ax_s.plot(x, mean, ls=styles[f % len(styles)], marker=MARKERS[f % len(MARKERS)],
                      markersize=4, lw=2, color=p_color[s.perturb_prob],
                      label=f"{base}, p={s.perturb_prob:g}")
            xmax = max(xmax, float(x.max()))
    format_sparsity_axis(ax_s, xmax)
    ax_s.set_ylabel(_acc_label(scale))
    ax_s.set_title("Accuracy vs sparsity per flip probability p (mean)")
    ax_s.legend(loc="lower left", framealpha=0.85, fontsize=9)

    level_cmap = matplotlib.colormaps["plasma"]
    for f, (base, members) in enumerate(families.items()):
        by_p = {s.perturb_prob: {st.level: st for st in runs.aggregate_levels(s.rows)}
                for s in members}
        levels = sorted({lv for stats in by_p.values() for lv in stats})
        if len(levels) > max_densities:
            idx = np.unique(np.linspace(0, len(levels) - 1, max_densities).round().astype(int))
            levels = [levels[i] for i in idx]
        for j, level in enumerate(levels):
            pts = [(p, stats[level]) for p, stats in sorted(by_p.items())
                   if level in stats and stats[level].test_acc_mean is not None]
            if not pts:
                continue
            # A small offset per level keeps error bars at the same p apart.
            ps = np.array([p for p, _ in pts]) + (j - (len(levels) - 1) / 2) * 0.006 * max(
                probs[-1], 1e-3)
            mean = np.array([st.test_acc_mean for _, st in pts]) * scale
            std = np.array([st.test_acc_std or 0.0 for _, st in pts]) * scale
            density = next((st.density for _, st in pts if st.density is not None), None)
            where = f"level {level}" + ("" if density is None
                                        else f", {100 * (1 - density):.1f}% sparse")
            color = level_cmap(0.85 * j / max(1, len(levels) - 1))
            ax_p.errorbar(ps, mean, yerr=std, ls=styles[f % len(styles)],
                          marker=MARKERS[f % len(MARKERS)], markersize=5, lw=2, capsize=3,
                          color=color, label=f"{base}, {where}")
    ax_p.set_xlabel("sign flip probability p")
    ax_p.set_ylabel(_acc_label(scale))
    ax_p.set_title("Accuracy vs p at selected sparsities (± std)")
    ax_p.legend(loc="best", framealpha=0.85, fontsize=9)
    return _save(fig, out_png)


@styled
def transfer(series: list[runs.Series], out_png: str, scale: float,
             colors: dict[str, Any] | None = None, max_levels: int = 6,
             title: str = "Transfer runs vs plain methods") -> str | None:
    """Mask/sign transfer runs next to the plain methods: curves and grouped bars per level."""
    if not any(s.is_transfer for s in series):
        return None
    chosen = [s for s in series if s.perturb_prob == 0 and not s.perturbation_run]
    colors = colors or colors_for(chosen)
    fig = mpl_figure.Figure(figsize=TRANSFER_FIGSIZE)
    ax_c, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    xmax = _plot_accuracy(ax_c, chosen, scale, colors)
    format_sparsity_axis(ax_c, xmax)
    ax_c.set_ylabel(_acc_label(scale))
    ax_c.set_title(title)
    ax_c.legend(loc="lower left", framealpha=0.85, fontsize=9)

    stats = {s.label: {st.level: st for st in runs.aggregate_levels(s.rows)} for s in chosen}
    levels = sorted({lv for by_level in stats.values() for lv in by_level})
    if len(levels) > max_levels:
        idx = np.unique(np.linspace(0, len(levels) - 1, max_levels).round().astype(int))
        levels = [levels[i] for i in idx]
    width = 0.8 / max(1, len(chosen))
    lows = []
    for i, s in enumerate(chosen):
        xs, means, stds = [], [], []
        for j, level in enumerate(levels):
            st = stats[s.label].get(level)
            if st is None or st.test_acc_mean is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            means.append(st.test_acc_mean * scale)
            stds.append((st.test_acc_std or 0.0) * scale)
        if xs:
            ax_b.bar(xs, means, width=width * 0.95, yerr=stds, capsize=2,
                     color=colors[s.label], label=s.label, zorder=3)
            lows.append(min(m - d for m, d in zip(means, stds, strict=True)))
    ticks = []
    for level in levels:
        density = next((stats[lab][level].density for lab in stats
                        if level in stats[lab] and stats[lab][level].density is not None), None)
        ticks.append(f"level {level}" + ("" if density is None
                                         else f"\n{100 * (1 - density):.1f}% sparse"))
    ax_b.set_xticks(range(len(levels)))
    ax_b.set_xticklabels(ticks)
    ax_b.grid(axis="x", visible=False)
    if lows:
        top = max(st.test_acc_max * scale for by_level in stats.values()
                  for st in by_level.values() if st.test_acc_max is not None)
        bottom = min(lows)
        pad = max(0.5, 0.1 * (top - bottom))
        # Headroom above the bars for the legend.
        rows = math.ceil(len(chosen) / 3)
        ax_b.set_ylim(max(0.0, bottom - pad), top + pad + (0.12 * rows) * (top - bottom + pad))
    ax_b.set_ylabel(_acc_label(scale) + " (axis zoomed)")
    ax_b.set_title("Accuracy per level (mean ± std over replicas)")
    ax_b.legend(loc="upper center", ncol=min(3, len(chosen)), framealpha=0.9, fontsize=9)
    return _save(fig, out_png)


@styled
def lmc(items: list[tuple[str, dict[str, Any]]], out_png: str) -> str | None:
    """Linear mode connectivity: test loss and accuracy along (1 - alpha) a + alpha b."""
    items = [(src, it) for src, it in items if it.get("alphas")]
    if not items:
        return None
    fig = mpl_figure.Figure(figsize=LMC_FIGSIZE, layout="constrained")
    ax_l, ax_a = fig.subplots(1, 2)
    scale = runs.accuracy_scale([{"test_acc": v} for _, it in items
                                 for v in it.get("test_acc") or []])
    labels = []
    for _, it in items:
        a, b = (runs.checkpoint_label(it.get(k, k)) for k in ("a", "b"))
        label = f"{a} → {b}"
        if isinstance(it.get("sign_flip_frac"), (int, float)):
            label += f" ({100 * it['sign_flip_frac']:.1f}% of signs differ)"
        labels.append(label)
    if len(set(labels)) < len(labels):
        labels = [f"{lab}  [{os.path.basename(os.path.dirname(os.path.abspath(src)))}]"
                  for lab, (src, _) in zip(labels, items, strict=True)]
    for i, ((_, item), label) in enumerate(zip(items, labels, strict=True)):
        alphas = item["alphas"]
        color = matplotlib.colormaps["tab10"](i % 10)
        if item.get("test_loss"):
            ax_l.plot(alphas, item["test_loss"], marker="o", lw=2, color=color, label=label)
        if item.get("test_acc"):
            ax_a.plot(alphas, np.asarray(item["test_acc"], dtype=float) * scale, marker="o",
                      lw=2, color=color, label=label)
    for ax, what in ((ax_l, "test loss"), (ax_a, _acc_label(scale))):
        ax.set_xlabel("interpolation α: (1 - α)·a + α·b")
        ax.set_ylabel(what)
        ax.set_title(f"Linear mode connectivity: {what}")
    handles, names = ax_l.get_legend_handles_labels()
    if not handles:
        handles, names = ax_a.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(2, len(names)),
               framealpha=0.9)
    fig.savefig(out_png, dpi=DPI)
    return out_png
