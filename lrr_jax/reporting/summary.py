"""Markdown summaries of runs: per-series tables and a side-by-side accuracy table.

Standard library only: the training driver imports this module to print
`side_by_side_table` at the end of a run.
"""

from __future__ import annotations

import os
from typing import Any

from lrr_jax.reporting import runs


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_acc(stats: runs.LevelStats, scale: float) -> str:
    """'93.12 ± 0.40' (mean ± sample std over replicas), or '93.12' for one replica."""
    if stats.test_acc_mean is None:
        return "-"
    text = f"{stats.test_acc_mean * scale:.2f}"
    if stats.n > 1 and stats.test_acc_std is not None:
        text += f" ± {stats.test_acc_std * scale:.2f}"
    return text


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A pipe table padded so that it also reads as plain text.

    Args:
      header: column titles.
      rows: cells as strings.
      align: one 'l' or 'r' per column (default: first column left, others right).
    """
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows] + [3]) for i, h in enumerate(header)]

    def line(cells):
        padded = [c.ljust(w) if a == "l" else c.rjust(w)
                  for c, w, a in zip(cells, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                          for w, a in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def side_by_side_table(rows_by_label: dict[str, list[dict[str, Any]]]) -> str:
    """Test accuracy per level, one column per label (mean ± std over replicas).

    Args:
      rows_by_label: {label: result rows}; each row a dict with at least
        `level`, `density` and `test_acc` (numbers or numeric strings).
        Several rows with the same level are replicas.

    Returns:
      A markdown table (also readable as plain text) with columns level,
      sparsity % and one per label; accuracies print in percent when they are
      fractions.
    """
    all_rows = [row for rows in rows_by_label.values() for row in rows]
    scale = runs.accuracy_scale(all_rows)
    stats = {label: {s.level: s for s in runs.aggregate_levels(rows)}
             for label, rows in rows_by_label.items()}
    levels = sorted({level for by_level in stats.values() for level in by_level})
    labels = list(rows_by_label)
    body = []
    for level in levels:
        present = [stats[label][level] for label in labels if level in stats[label]]
        sparsity = next((s.sparsity for s in present if s.sparsity is not None), None)
        cells = [str(level), _fmt(None if sparsity is None else 100.0 * sparsity)]
        for label in labels:
            s = stats[label].get(level)
            cells.append("-" if s is None else format_acc(s, scale))
        body.append(cells)
    unit = " (%)" if scale == 100.0 else ""
    return markdown_table(["level", "sparsity %"] + [f"{label}{unit}" for label in labels], body)


def by_replica_setting(rows_by_method: dict[str, list[dict[str, Any]]]
                       ) -> dict[str, list[dict[str, Any]]]:
    """Splits each method's rows by perturbation probability when a run has several.

    {'lrr': rows} -> {'lrr p=0': ..., 'lrr p=0.1': ...} when the rows carry
    more than one `perturb_prob` (a sign perturbation run: one column per
    replica setting, its seeds pooled); unchanged otherwise.
    """
    def prob(row):
        try:
            return float(row.get("perturb_prob") or 0.0)
        except (TypeError, ValueError):
            return 0.0

    out: dict[str, list[dict[str, Any]]] = {}
    for method, rows in rows_by_method.items():
        probs = sorted({prob(row) for row in rows})
        if len(probs) <= 1 and not any(probs):
            out[method] = rows
            continue
        for p in probs:
            out[f"{method} p={p:g}"] = [row for row in rows if prob(row) == p]
    return out


def series_table(series: runs.Series, scale: float) -> str:
    """Per-level table of one series: density, sparsity, accuracies and sign flips."""
    body = []
    for s in runs.aggregate_levels(series.rows):
        best = None if s.best_test_acc_mean is None else s.best_test_acc_mean * scale
        init = None if s.flips_vs_init_mean is None else 100.0 * s.flips_vs_init_mean
        prev = None if s.flips_vs_prev_mean is None else 100.0 * s.flips_vs_prev_mean
        body.append([
            str(s.level), _fmt(s.density, 4),
            _fmt(None if s.sparsity is None else 100.0 * s.sparsity),
            format_acc(s, scale), str(s.n), _fmt(best), _fmt(init), _fmt(prev),
        ])
    unit = " %" if scale == 100.0 else ""
    header = ["level", "density", "sparsity %", f"test acc{unit} (mean ± std)", "n",
              f"best test acc{unit}", "sign flips vs init %", "sign flips vs prev %"]
    return markdown_table(header, body)


def lmc_table(item: dict[str, Any], scale: float) -> str:
    """Loss and accuracy along the interpolation path of one lmc.json entry."""
    body = []
    losses, accs = item.get("test_loss") or [], item.get("test_acc") or []
    for i, alpha in enumerate(item.get("alphas") or []):
        loss = losses[i] if i < len(losses) else None
        acc = accs[i] if i < len(accs) else None
        body.append([f"{alpha:g}", _fmt(loss, 4), _fmt(None if acc is None else acc * scale)])
    return markdown_table(["alpha", "test loss", "test acc %" if scale == 100.0 else "test acc"],
                          body)


def loss_barrier(item: dict[str, Any]) -> float | None:
    """max over alpha of loss(alpha) - ((1 - alpha) loss(0) + alpha loss(1))."""
    alphas, losses = item.get("alphas") or [], item.get("test_loss") or []
    if len(alphas) < 2 or len(losses) != len(alphas):
        return None
    a0, a1, l0, l1 = alphas[0], alphas[-1], losses[0], losses[-1]
    span = (a1 - a0) or 1.0
    return max(loss - (l0 + (a - a0) / span * (l1 - l0))
               for a, loss in zip(alphas, losses, strict=True))


def theory_lines(source: str, item: dict[str, Any]) -> list[str]:
    """Success rates of one theory.json (single hidden neuron, Section 2 of the paper)."""
    def rate(d, key):
        value = d.get(key)
        return "-" if not isinstance(value, (int, float)) else f"{value:.3f}"

    body = []
    for d in (item, item.get("other_init")):
        if isinstance(d, dict) and "imp_success_rate" in d:
            body.append([str(d.get("init", "?")), rate(d, "imp_success_rate"),
                         rate(d, "lrr_success_rate"), rate(d, "dense_success_rate"),
                         rate(d, "mask_correct_rate")])
    if not body:
        return []
    lines = [f"## Single hidden neuron: d = {item.get('d', '?')}, "
             f"{item.get('num_inits', '?')} initializations", "", f"From `{source}`.", "",
             markdown_table(["a(0) init", "IMP success", "LRR success", "dense success",
                             "IMP mask correct"], body, align="lrrrr"), ""]
    d1 = item.get("d1")
    if isinstance(d1, dict) and isinstance(d1.get("quadrants"), dict):
        quads = [[q, str(v.get("count", "-")), rate(v, "success_rate")]
                 for q, v in d1["quadrants"].items() if isinstance(v, dict)]
        lines += ["d = 1, success per initial quadrant:", "",
                  markdown_table(["quadrant", "count", "success"], quads, align="lrr"), ""]
    return lines


def accuracy_barrier(item: dict[str, Any]) -> float | None:
    """max over alpha of the linear interpolation of the endpoint accuracies - acc(alpha)."""
    alphas, accs = item.get("alphas") or [], item.get("test_acc") or []
    if len(alphas) < 2 or len(accs) != len(alphas):
        return None
    a0, a1, c0, c1 = alphas[0], alphas[-1], accs[0], accs[-1]
    span = (a1 - a0) or 1.0
    return max(c0 + (a - a0) / span * (c1 - c0) - acc
               for a, acc in zip(alphas, accs, strict=True))


def render(series: list[runs.Series], figures: dict[str, str], out_dir: str,
           lmc_items: list[tuple[str, dict[str, Any]]] = (),
           theory_items: list[tuple[str, dict[str, Any]]] = ()) -> str:
    """The markdown text of summary.md.

    Args:
      series: labelled series to tabulate.
      figures: {title: png path}; embedded by path relative to out_dir.
      out_dir: where summary.md goes.
      lmc_items: (source path, lmc.json dict) pairs.
    """
    scale = runs.accuracy_scale([row for s in series for row in s.rows])
    unit = "%" if scale == 100.0 else "as reported"
    lines = ["# lrr_jax report", ""]
    if series:
        lines += ["Test accuracy in " + unit + ": mean ± sample std over replicas "
                  "(n = replicas at that level). Sparsity = 1 - density.", "",
                  "## Runs", ""]
        for s in series:
            paths = ", ".join(f"`{p}`" for p in s.paths)
            lines.append(f"- **{s.label}**: {len(s.rows)} rows from {paths}")
        groups = runs.study_groups(series)
        if len(groups) <= 1:
            lines += ["", "## Test accuracy per level, side by side", "",
                      side_by_side_table({s.label: s.rows for s in series}), ""]
        else:
            lines += ["", "## Test accuracy per level, side by side", "",
                      "One table per study; each repeats the plain methods for reference.", ""]
            for title, members in groups.items():
                lines += [f"### {title}", "",
                          side_by_side_table({s.label: s.rows for s in members}), ""]
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures.items():
            rel = os.path.relpath(path, out_dir)
            lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    if series:
        lines += ["## Per run", ""]
        for s in series:
            lines += [f"### {s.label}", "", series_table(s, scale), ""]
    for source, item in lmc_items:
        a, b = item.get("a", "a"), item.get("b", "b")
        barrier = loss_barrier(item)
        lines += [f"## Linear mode connectivity: {a} ↔ {b}", "", f"From `{source}`.", ""]
        if barrier is not None:
            lines += [f"Loss barrier (max excess over the linear interpolation of the "
                      f"endpoint losses): {barrier:.4f}", ""]
        drop = accuracy_barrier(item)
        if drop is not None:
            acc_scale = runs.accuracy_scale([{"test_acc": v} for v in item.get("test_acc")])
            lines += [f"Accuracy barrier (max shortfall below the linear interpolation of the "
                      f"endpoint accuracies): {drop * acc_scale:.2f}"
                      f"{' points' if acc_scale == 100.0 else ''}", ""]
        if isinstance(item.get("sign_flip_frac"), (int, float)):
            lines += [f"Weights unpruned in both whose signs differ: "
                      f"{100 * item['sign_flip_frac']:.2f}%", ""]
        if isinstance(item.get("barrier_loss"), (int, float)):
            lines += [f"Loss barrier as lmc.json reports it (max loss - max endpoint loss): "
                      f"{item['barrier_loss']:.4f}", ""]
        lines += [lmc_table(item, runs.accuracy_scale(
            [{"test_acc": v} for v in item.get("test_acc") or []])), ""]
    for source, item in theory_items:
        lines += theory_lines(source, item)
    return "\n".join(lines).rstrip() + "\n"


def write(series: list[runs.Series], figures: dict[str, str], out_dir: str,
          lmc_items: list[tuple[str, dict[str, Any]]] = (),
          theory_items: list[tuple[str, dict[str, Any]]] = ()) -> str:
    """Writes `out_dir/summary.md` and returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as f:
        f.write(render(series, figures, out_dir, lmc_items, theory_items))
    return path
