"""Figures and a markdown summary from run directories.

    python -m lrr_jax.report WORKDIR [WORKDIR ...] [--out DIR]

Finds every run (a directory with results.csv, including the per-method
directories of a multi-method workdir) under the given paths, plus any
lmc.json and theory.json, and writes into DIR (default: WORKDIR/report) the
applicable figures (PNG, and a PDF of each beside it) and `summary.md`.
Reads files only; never trains. An output folder that cannot be written
ends with one line naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile
from typing import Any

from lrr_jax.reporting import discover, stats, summary
from lrr_jax.reporting import series as series_lib


class OutputError(Exception):
    """The report cannot be written where asked (message names the path)."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "run"


def _theory_figures(paths: list[str], out_dir: str) -> dict[str, str]:
    """Calls reporting.theory_figure.plot for each theory.json, when that module exists."""
    files = discover.find_files(paths, discover.THEORY_FILE)
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
        except OSError:
            raise  # cannot write: reported by main
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
BAND_CAPTION = ("Line: mean over seeds; band: ± 1 sample std over seeds, the statistic of the "
                "tables; n in the legend = seeds per level; dashed grey line: dense (level 0) "
                "test accuracy.")
ONE_SEED_CAPTION = ("Line: one seed per level (no band); n in the legend = seeds per level; "
                    "dashed grey line: dense (level 0) test accuracy.")


def build(paths: list[str], out_dir: str) -> list[str]:
    """Writes every applicable figure and summary.md for the runs under `paths`.

    Figures (each a PNG with a PDF of the same name beside it):
    accuracy_vs_sparsity and sign_flips (the plain methods),
    sign_flips_layers_<method> (per layer, plain methods), one figure per
    transfer study next to the plain methods (transfer_masks, transfer_signs,
    random_masks), perturbation, lmc and theory, each when its runs are present.

    Returns:
      The paths written (each PNG followed by its PDF), summary.md last.
    """
    from lrr_jax.reporting import figures, plotting, style  # matplotlib only for figures

    os.makedirs(out_dir, exist_ok=True)
    found = discover.discover(paths)
    series = series_lib.make_series(found)
    scale = stats.accuracy_scale([row for s in series for row in s.rows])
    styles = style.styles_for(series)
    setting = series_lib.describe_setting(series)
    plain = series_lib.plain_series(series)
    groups = series_lib.study_groups(series)
    made: dict[str, str | None] = {}
    captions: dict[str, str] = {}
    out = lambda name: os.path.join(out_dir, name)
    caption = lambda members: BAND_CAPTION if plotting.has_band(members) else ONE_SEED_CAPTION
    if series:
        made["Test accuracy vs sparsity"] = figures.accuracy_vs_sparsity(
            plain, out("accuracy_vs_sparsity.png"), scale, styles, setting)
        captions["Test accuracy vs sparsity"] = caption(plain)
    flip_series = [s for s in plain if any(
        row.get("sign_flip_frac_vs_init") is not None
        or row.get("sign_flip_frac_vs_prev") is not None for row in s.rows)]
    if flip_series:
        made["Sign flips vs sparsity"] = figures.sign_flips(
            flip_series, out("sign_flips.png"), styles, setting)
        captions["Sign flips vs sparsity"] = (
            "Left: unpruned weights whose sign differs from θ0; right: from the previous "
            "level's final weights (own y scale). " + ("Line: mean, band: ± 1 sample std over "
                                                       "seeds." if plotting.has_band(flip_series)
                                                       else "Line: one seed per level."))
    plain_by_label = {s.label: s for s in plain}
    for label, rows in series_lib.flip_rows_by_series(found, series).items():
        if label in plain_by_label:
            s = plain_by_label[label]
            made[f"Sign flips per layer: {label}"] = figures.sign_flips_per_layer(
                label, rows, out(f"sign_flips_layers_{_slug(label)}.png"),
                series_lib.densities(s), series_lib.describe_setting([s]))
    for group, (name, title) in TRANSFER_FIGURES.items():
        if group in groups:
            made[title] = figures.transfer(groups[group], out(name), scale, styles,
                                           title=title, setting=setting)
            captions[title] = caption(groups[group]) + (
                " Bars: the same mean ± std at selected levels."
                if plotting.has_band(groups[group]) else " Bars: the same at selected levels.")
    made["Sign perturbation"] = figures.perturbation(
        groups.get("Sign perturbation", []), out("perturbation.png"), scale, styles,
        setting=setting)
    note = figures.recovery_text(groups.get("Sign perturbation", []))
    captions["Sign perturbation"] = caption(groups.get("Sign perturbation", [])) + (
        f" {note[0].upper()}{note[1:]}." if note else "")
    lmc_items = [(path, item) for path in discover.find_files(paths, discover.LMC_FILE)
                 for item in _as_list(discover.read_json(path))]
    made["Linear mode connectivity"] = figures.lmc(
        lmc_items, out("lmc.png"), series_lib.describe_setting(series, seeds=False))
    made.update(_theory_figures(paths, out_dir))
    made = {title: path for title, path in made.items() if path}
    theory_items = []
    for path in discover.find_files(paths, discover.THEORY_FILE):
        try:
            item = discover.read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(item, dict):
            theory_items.append((path, item))
    written = []
    for path in made.values():
        written.append(path)
        if os.path.isfile(plotting.pdf_path(path)):
            written.append(plotting.pdf_path(path))
    return written + [summary.write(series, made, out_dir, lmc_items, theory_items, captions)]


def _as_list(item: Any) -> list[dict[str, Any]]:
    if isinstance(item, list):
        return [i for i in item if isinstance(i, dict)]
    return [item] if isinstance(item, dict) else []


def check_writable(out_dir: str) -> None:
    """Creates `out_dir` and a probe file in it; OutputError (naming the path) when it can't."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write_probe_"):
            pass
    except OSError as e:
        raise OutputError(f"cannot write the report into {out_dir}: "
                          f"{e.strerror or type(e).__name__}") from None


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2: nothing to report or unwritable)."""
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
    if not (discover.discover(args.workdirs)
            or discover.find_files(args.workdirs, discover.LMC_FILE)
            or discover.find_files(args.workdirs, discover.THEORY_FILE)):
        print(f"error: no run found in {', '.join(args.workdirs)} (looked for a results.csv "
              f"with rows, lmc.json or theory.json up to {discover.MAX_DEPTH} folders deep)",
              file=sys.stderr)
        return 2
    first = args.workdirs[0]
    out_dir = args.out or os.path.join(first if os.path.isdir(first)
                                       else os.path.dirname(first) or ".", "report")
    try:
        check_writable(out_dir)
        written = build(args.workdirs, out_dir)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that could not be written (or read) after all
        where = str(e.filename or out_dir)
        inside = os.path.abspath(where).startswith(os.path.abspath(out_dir))
        print(f"error: cannot {'write' if inside else 'read'} {where}: "
              f"{e.strerror or type(e).__name__}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
