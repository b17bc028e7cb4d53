"""What every figure shares: style, PNG + PDF output, the sparsity axis, bands and legends.

Every figure is written twice: a PNG of a fixed pixel size (figsize x DPI,
constrained layout, no tight bounding box) and a vector PDF beside it
(same name, `.pdf`). Curves show the mean over seeds with a band of ± one
sample standard deviation: the statistic of summary.md's tables
(`stats.STATISTIC`). Legends go below the axes, never over the curves.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import figure as mpl_figure  # noqa: E402

from lrr_jax.reporting import series as series_lib  # noqa: E402
from lrr_jax.reporting import stats  # noqa: E402
from lrr_jax.reporting import style as style_lib  # noqa: E402

DPI = 150
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text for journals and editors
    "ps.fonttype": 42,
}
BAND_TEXT = "line: mean, band: ± 1 sample std over seeds (as in summary.md)"
ONE_SEED_TEXT = "line: one seed per level (no band)"
DENSE_COLOR = "#555555"
BAND_ALPHA = 0.13
# Sparsity ticks: the major ones first, minor ones where they fit.
_MAJOR_SPARSITY_TICKS = (0, 50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.99)
_MINOR_SPARSITY_TICKS = (10, 20, 30, 40, 60, 70)


def styled(fn: Callable) -> Callable:
    """Runs a plotting function under the module's font and grid style."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def new_figure(figsize: tuple[float, float]) -> mpl_figure.Figure:
    return mpl_figure.Figure(figsize=figsize, layout="constrained")


def pixel_size(figsize: tuple[float, float]) -> tuple[int, int]:
    """(width, height) in pixels of a PNG written at DPI."""
    return round(figsize[0] * DPI), round(figsize[1] * DPI)


def pdf_path(out_png: str) -> str:
    """The vector twin of a PNG path: same name, .pdf."""
    return os.path.splitext(out_png)[0] + ".pdf"


def save(fig: mpl_figure.Figure, out_png: str, dpi: int = DPI) -> str:
    """Writes the PNG (at `dpi`) and its PDF twin; returns the PNG path.

    No creation date in the PDF: the same runs give the same bytes, so a
    re-drawn docs/figures shows in git only where a figure changed.
    """
    fig.savefig(out_png, dpi=dpi)
    fig.savefig(pdf_path(out_png), metadata={"CreationDate": None})
    return out_png


def title(fig: mpl_figure.Figure, text: str, setting: str, note: str = "") -> None:
    """Figure title, the setting (dataset, model, seeds) and a note (what the band shows).

    Each on its own line, wrapped at the figure's edges (matplotlib wraps at draw
    time, and constrained layout makes room for the wrapped lines).
    """
    fig.suptitle("\n".join(t for t in (text, setting, note) if t), fontsize=11, wrap=True)


def has_band(series: list[series_lib.Series]) -> bool:
    """Whether a curve of `series` has a band: `plot_band` draws one over several seeds only."""
    return any(st.n > 1 for s in series for st in stats.aggregate_levels(s.rows))


def band_note(series: list[series_lib.Series]) -> str:
    """What the lines (and bands) of `series` show, for the figure title."""
    return BAND_TEXT if has_band(series) else ONE_SEED_TEXT


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


def acc_label(scale: float) -> str:
    return "test accuracy (%)" if scale == 100.0 else "test accuracy"


def legend_label(s: series_lib.Series) -> str:
    return f"{s.label} ({series_lib.n_text(s)})"


def curve(s: series_lib.Series, mean_attr: str, std_attr: str, scale: float):
    """(x, mean, std, n) arrays over the levels with a density and a value of mean_attr."""
    pts = [(sparsity_x(st.density), getattr(st, mean_attr) * scale,
            (getattr(st, std_attr) or 0.0) * scale, st.n)
           for st in stats.aggregate_levels(s.rows)
           if st.density is not None and st.density > 0 and getattr(st, mean_attr) is not None]
    if not pts:
        return None
    return tuple(np.asarray(col, dtype=float) for col in zip(*pts, strict=True))


def plot_band(ax, s: series_lib.Series, style: style_lib.Style, mean_attr: str,
              std_attr: str, scale: float, label: str | None = None) -> float:
    """Mean line with markers and a ± std band; returns the largest x drawn (0 when none)."""
    c = curve(s, mean_attr, std_attr, scale)
    if c is None:
        return 0.0
    x, mean, sd, n = c
    ax.plot(x, mean, markersize=5, lw=1.8, label=label or legend_label(s), **style.kwargs())
    if (n > 1).any():
        ax.fill_between(x, mean - sd, mean + sd, color=style.color, alpha=BAND_ALPHA, lw=0)
    return float(x.max())


def plot_accuracy(ax, series: list[series_lib.Series], scale: float,
                  styles: dict[str, style_lib.Style]) -> float:
    xmax = 0.0
    for s in series:
        xmax = max(xmax, plot_band(ax, s, styles[s.label], "test_acc_mean", "test_acc_std",
                                   scale))
    return xmax


def dense_reference(ax, series: list[series_lib.Series], scale: float) -> None:
    """Horizontal line(s) at the dense (level 0) mean test accuracy.

    One line per (dataset, model) among the plain series (else the unperturbed,
    p = 0, series; all series only when there is neither), pooling their
    level-0 rows; the label says so when the pooled series' own level-0 means
    differ (they coincide when the methods share their seeds: level 0 trains
    the same dense network). A perturbed series is never the reference: its
    level 0 is the perturbed dense network.
    """
    plain = ([s for s in series if s.kind == "method" and not s.perturbation_run]
             or [s for s in series if not s.perturb_prob] or series)
    by_setting: dict[tuple, list[series_lib.Series]] = {}
    for s in plain:
        by_setting.setdefault((s.context.get("dataset"), s.context.get("model")), []).append(s)
    styles = ("--", ":", "-.")
    for i, ((dataset, model), members) in enumerate(by_setting.items()):
        own = [stats.mean(stats.values([r for r in s.rows if r.get("level") == 0], "test_acc"))
               for s in members]
        own = [v for v in own if v is not None]
        if not own:
            continue
        rows = [r for s in members for r in s.rows if r.get("level") == 0]
        value = stats.mean(stats.values(rows, "test_acc")) * scale
        where = "" if len(by_setting) == 1 else f" [{dataset}, {model}]"
        pooled = "" if max(own) - min(own) <= 1e-9 else f", mean of {len(own)} series"
        ax.axhline(value, color=DENSE_COLOR, lw=1.0, ls=styles[i % len(styles)], zorder=1,
                   label=f"dense (level 0{pooled}){where}: {value:.2f}")


def legend_below(fig: mpl_figure.Figure, axes, ncol: int = 3) -> None:
    """One legend below all axes, from every labelled artist (deduplicated)."""
    handles, labels = [], []
    for ax in np.atleast_1d(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center",
                   ncol=max(1, min(ncol, len(labels))), frameon=False)


def ax_legend_below(ax, ncol: int = 2) -> None:
    """A legend below one axis (outside it), for panels whose entries differ."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=max(1, min(ncol, len(labels))), frameon=False)
