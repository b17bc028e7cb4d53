"""Figures and a markdown summary from run directories.

    python -m lrr_jax.report WORKDIR [WORKDIR ...] [--out DIR]

Finds every run (a directory with results.csv, including the per-method
directories of a multi-method workdir) under the given paths, plus any
lmc.json and theory.json, and writes into DIR (default: WORKDIR/report) the
applicable PNG figures and `summary.md`. Reads files only; never trains.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Any

from lrr_jax.reporting import runs, summary


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "run"


def _layer_flip_rows(found: list[runs.Run], series: list[runs.Series]) -> dict[str, list]:
    """sign_flips.csv rows of all runs grouped by the label of their replica's series."""
    labels = runs.label_for_replica(found, series)
    order = {s.label: i for i, s in enumerate(series)}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in found:
        for row in run.sign_flips:
            label = labels.get((run.path, row.get("method"), row.get("replica")),
                               runs.method_name(row.get("method")))
            grouped.setdefault(label, []).append(row)
    return dict(sorted(grouped.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _theory_figures(paths: list[str], out_dir: str) -> dict[str, str]:
    """Calls reporting.theory_figure.plot for each theory.json, when that module exists."""
    files = runs.find_files(paths, runs.THEORY_FILE)
    if not files:
        return {}
    try:
        theory_figure = importlib.import_module("lrr_jax.reporting.theory_figure")
    except ImportError as e:
        print(f"skipped theory figure: lrr_jax.reporting.theory_figure unavailable ({e})",
              file=sys.stderr)
        return {}
    made = {}
    for i, path in enumerate(files):
        name = "theory.png" if len(files) == 1 else f"theory_{i}.png"
        out_png = os.path.join(out_dir, name)
        try:
            theory_figure.plot(path, out_png)
        except Exception as e:  # a broken theory file must not stop the other figures
            print(f"skipped theory figure for {path}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if os.path.isfile(out_png):
            title = "Single hidden neuron theory" + ("" if len(files) == 1 else f" ({path})")
            made[title] = out_png
    return made


TRANSFER_FIGURES = {  # study group -> (figure file, figure title)
    "Mask transfer": ("transfer_masks.png", "Masks: transferred vs own"),
    "Sign transfer": ("transfer_signs.png", "Signs: transferred, reset or shuffled"),
    "Random masks": ("random_masks.png", "Random masks vs magnitude masks"),
}


def build(paths: list[str], out_dir: str) -> list[str]:
    """Writes every applicable figure and summary.md for the runs under `paths`.

    Figures: accuracy_vs_sparsity.png and sign_flips.png (the plain methods),
    sign_flips_layers_<method>.png (per layer, plain methods), one figure per
    transfer study next to the plain methods (transfer_masks.png,
    transfer_signs.png, random_masks.png), perturbation.png, lmc.png and
    theory.png, each when its runs are present.

    Returns:
      The paths written, summary.md last.
    """
    from lrr_jax.reporting import figures  # matplotlib only when figures are made

    os.makedirs(out_dir, exist_ok=True)
    found = runs.discover(paths)
    series = runs.make_series(found)
    scale = runs.accuracy_scale([row for s in series for row in s.rows])
    colors = figures.colors_for(series)
    plain = runs.plain_series(series)
    groups = runs.study_groups(series)
    made: dict[str, str | None] = {}
    out = lambda name: os.path.join(out_dir, name)
    if series:
        made["Test accuracy vs sparsity"] = figures.accuracy_vs_sparsity(
            plain, out("accuracy_vs_sparsity.png"), scale, colors)
    flip_series = [s for s in plain if any(
        row.get("sign_flip_frac_vs_init") is not None
        or row.get("sign_flip_frac_vs_prev") is not None for row in s.rows)]
    if flip_series:
        made["Sign flips per level"] = figures.sign_flips(
            flip_series, out("sign_flips.png"), colors)
    plain_labels = {s.label for s in plain}
    for label, rows in _layer_flip_rows(found, series).items():
        if label in plain_labels:
            made[f"Sign flips per layer: {label}"] = figures.sign_flips_per_layer(
                label, rows, out(f"sign_flips_layers_{_slug(label)}.png"))
    for group, (name, title) in TRANSFER_FIGURES.items():
        if group in groups:
            made[title] = figures.transfer(groups[group], out(name), scale, colors, title=title)
    made["Sign perturbation"] = figures.perturbation(
        groups.get("Sign perturbation", []), out("perturbation.png"), scale)
    lmc_items = [(path, item) for path in runs.find_files(paths, runs.LMC_FILE)
                 for item in _as_list(runs.read_json(path))]
    made["Linear mode connectivity"] = figures.lmc(lmc_items, out("lmc.png"))
    made.update(_theory_figures(paths, out_dir))
    made = {title: path for title, path in made.items() if path}
    theory_items = []
    for path in runs.find_files(paths, runs.THEORY_FILE):
        try:
            item = runs.read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(item, dict):
            theory_items.append((path, item))
    return list(made.values()) + [summary.write(series, made, out_dir, lmc_items,
                                                theory_items)]


def _as_list(item: Any) -> list[dict[str, Any]]:
    if isinstance(item, list):
        return [i for i in item if isinstance(i, dict)]
    return [item] if isinstance(item, dict) else []


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2: nothing to report)."""
    parser = argparse.ArgumentParser(
        prog="python -m lrr_jax.report",
        description="Figures and summary.md from lrr_jax run directories.")
    parser.add_argument("workdirs", nargs="+", help="run directories or folders holding runs")
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/report)")
    args = parser.parse_args(argv)
    missing = [p for p in args.workdirs if not os.path.exists(p)]
    if missing:
        print(f"error: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not (runs.discover(args.workdirs)
            or runs.find_files(args.workdirs, runs.LMC_FILE)
            or runs.find_files(args.workdirs, runs.THEORY_FILE)):
        print(f"error: no run found in {', '.join(args.workdirs)} (looked for a results.csv "
              f"with rows, lmc.json or theory.json up to {runs.MAX_DEPTH} folders deep)",
              file=sys.stderr)
        return 2
    first = args.workdirs[0]
    out_dir = args.out or os.path.join(first if os.path.isdir(first)
                                       else os.path.dirname(first) or ".", "report")
    for path in build(args.workdirs, out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
