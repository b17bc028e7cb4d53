"""Figure of the single-hidden-neuron experiment, drawn from `theory.json` only.

Left: the d = 1 success map over initial values (w0, a0) with the boundaries
of the predicted success region w0 > 0 and (a0 > 0 or |a0| < w0). Right: the
IMP and LRR success rates of the d > 1 experiment (with the dense-training
and mask-correct rates), per init mode, with counts and the paper's 1/4 and
1/2 for reference. Written as a PNG and a vector PDF beside it (same name,
`.pdf`), with the method colours of every other figure (`style`).
"""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from lrr_jax.reporting import plotting, style  # noqa: E402


def _load(theory):
    if isinstance(theory, dict):
        return theory
    with open(theory) as f:
        return json.load(f)


def _map_panel(ax, r: dict) -> None:
    """d = 1 success map with the |a0| < w0 boundary."""
    grid = r["d1"]["grid"]
    w0, a0 = np.asarray(grid["w0"]), np.asarray(grid["a0"])
    ok = np.asarray(grid["success"], dtype=float)  # [i_a, j_w]
    dw, da = (w0[1] - w0[0]) / 2, (a0[1] - a0[0]) / 2
    ax.imshow(ok, origin="lower", extent=(w0[0] - dw, w0[-1] + dw, a0[0] - da, a0[-1] + da),
              cmap=ListedColormap(["#e8a0a0", "#f2d04b"]), vmin=0, vmax=1, aspect="equal",
              interpolation="nearest")
    lim = max(abs(w0[-1]), abs(a0[-1]))
    t = np.linspace(0, lim, 2)
    ax.plot(t, -t, "k--", lw=1.5, label="|a0| = w0 (a0 < 0)")
    ax.axvline(0, color="k", lw=1.5, label="w0 = 0")
    ax.axhline(0, color="0.4", lw=0.8, ls=":")
    quads = r["d1"]["quadrants"]
    pos = {"w0>0,a0>0": (0.5, 0.5), "w0>0,a0<0": (0.75, -0.3),
           "w0<0,a0>0": (-0.5, 0.5), "w0<0,a0<0": (-0.5, -0.5)}
    for name, (fx, fy) in pos.items():
        ax.text(fx * lim, fy * lim, f"{quads[name]['success_rate']:.2f}", ha="center",
                va="center", fontsize=11, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color="#f2d04b", label="success"), Patch(color="#e8a0a0", label="failure")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2,
              fontsize=8, frameon=False)
    ax.set_xlabel("w(0)")
    ax.set_ylabel("a(0)")
    ax.set_title(f"d = 1: success map (boxes: success fraction per quadrant over\n"
                 f"{r['d1']['num_inits']} random inits; max drift of a²-w² "
                 f"{r['d1']['max_conservation_drift']:.3g})", fontsize=9)


def _bar_panel(ax, r: dict) -> None:
    """IMP vs LRR success rates for d > 1, per init mode."""
    groups = [r] + ([r["other_init"]] if "other_init" in r else [])
    names = [r["init"]] + ([r["other_init"]["init"]] if "other_init" in r else [])
    imp, lrr = style.method_color("imp"), style.method_color("lrr")
    bars = (("imp", "IMP (rewind to init)", imp), ("lrr", "LRR (keep trained)", lrr),
            ("mask_correct", "mask correct", "#8c8c8c"))
    n = r["num_inits"]
    width = 0.26
    x = np.arange(len(groups))
    for k, (key, label, color) in enumerate(bars):
        rates = [g[f"{key}_rate" if key == "mask_correct" else f"{key}_success_rate"]
                 for g in groups]
        counts = [g[f"{key}_count" if key == "mask_correct" else f"{key}_success_count"]
                  for g in groups]
        rects = ax.bar(x + (k - 1) * width, rates, width, label=label, color=color)
        for rect, c in zip(rects, counts, strict=True):
            ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height() + 0.01, f"{c}",
                    ha="center", va="bottom", fontsize=7)
    ax.axhline(0.25, color=imp, ls=":", lw=1, label="paper: IMP 1/4")
    ax.axhline(0.5, color=lrr, ls=":", lw=1, label="paper: LRR 1/2")
    ax.set_xticks(x, [f"init: {m}" for m in names])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(f"success rate (count of {n} inits above bars)")
    ax.set_title(f"d = {r['d']}: pruning to 1 weight, teacher relu(x_1)\n"
                 f"GD lr {r['lr']}, {r['steps']} steps, n = {r['n_inputs']} inputs", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3,
              frameon=False)


def plot(theory, out_png: str) -> str:
    """Draws the two-panel single-neuron figure.

    Args:
        theory: path to a `theory.json` written by `lrr_jax.theory.run`, or its dict.
        out_png: where to write the PNG; the PDF goes beside it (`.pdf`).

    Returns:
        `out_png`.
    """
    r = _load(theory)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 6.0), layout="constrained")
    try:
        with matplotlib.rc_context({"pdf.fonttype": 42}):
            _map_panel(ax1, r)
            _bar_panel(ax2, r)
            fig.suptitle("Single hidden neuron f(x) = a relu(w·x) trained by gradient descent",
                         fontsize=11)
            plotting.save(fig, out_png, dpi=120)
    finally:
        plt.close(fig)
    return out_png
