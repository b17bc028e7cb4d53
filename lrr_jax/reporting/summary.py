"""Markdown summaries of runs: per-series tables and a side-by-side accuracy table.

Standard library only: the training driver imports this module to print
`side_by_side_table(by_replica_setting(results))` at the end of a run.
Accuracies are the mean ± sample std over seeds at each level (`stats`), the
same statistic the figures' bands show.
"""

from __future__ import annotations

import os
from typing import Any

from lrr_jax import schema
from lrr_jax.reporting import series as series_lib
from lrr_jax.reporting import stats

BEST_NOTE = ("best-epoch test acc = the best test accuracy over the evaluated epochs within "
             "a level (column `best_epoch_test_acc`); the paper code's best_acc1 is the same, "
             "of its last level only")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_acc(st: stats.LevelStats, scale: float) -> str:
    """'93.12 ± 0.40' (mean ± sample std over replicas), or '93.12' for one replica."""
    if st.test_acc_mean is None:
        return "-"
    text = f"{st.test_acc_mean * scale:.2f}"
    if st.n > 1 and st.test_acc_std is not None:
        text += f" ± {st.test_acc_std * scale:.2f}"
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


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def recovery_note(rows: list[dict[str, Any]]) -> str:
    """One line on `steps_after_last_flip` (the recovery budget) per level; '' without it."""
    parts = []
    for st in stats.aggregate_levels(rows):
        if st.steps_after_last_flip is not None:
            parts.append(f"level {st.level}: {_span(*st.steps_after_last_flip)}")
    if not parts:
        return ""
    return ("Recovery budget of the perturbed replicas (training steps after the last sign "
            "flip): " + ", ".join(parts) + ".")


def side_by_side_table(rows_by_label: dict[str, list[dict[str, Any]]]) -> str:
    """Test accuracy per level, one column per label (mean ± std over replicas).

    Args:
      rows_by_label: {label: result rows}; each row a dict with at least
        `level`, `density` and `test_acc` (numbers or numeric strings).
        Several rows with the same level are replicas.

    Returns:
      A markdown table (also readable as plain text) with columns level,
      sparsity % and one per label; accuracies print in percent when they are
      fractions. When rows carry `steps_after_last_flip` (sign perturbation), a
      line after the table gives that recovery budget per level.
    """
    all_rows = [row for rows in rows_by_label.values() for row in rows]
    scale = stats.accuracy_scale(all_rows)
    by_label = {label: {s.level: s for s in stats.aggregate_levels(rows)}
                for label, rows in rows_by_label.items()}
    levels = sorted({level for by_level in by_label.values() for level in by_level})
    labels = list(rows_by_label)
    body = []
    for level in levels:
        present = [by_label[label][level] for label in labels if level in by_label[label]]
        sparsity = next((s.sparsity for s in present if s.sparsity is not None), None)
        cells = [str(level), _fmt(None if sparsity is None else 100.0 * sparsity)]
        for label in labels:
            s = by_label[label].get(level)
            cells.append("-" if s is None else format_acc(s, scale))
        body.append(cells)
    unit = " (%)" if scale == 100.0 else ""
    table = markdown_table(["level", "sparsity %"] + [f"{label}{unit}" for label in labels],
                           body)
    note = recovery_note(all_rows)
    return table + (f"\n\n{note}" if note else "")


_SETTING_FIELDS = tuple(k for k in schema.IDENTITY if k != "seed")


def _setting(row: dict[str, Any]) -> tuple:
    out = []
    for key in _SETTING_FIELDS:
        value = row.get(key)
        if key == "perturb_prob":
            try:
                value = float(value or 0.0)
            except (TypeError, ValueError):
                value = 0.0
        out.append("" if value is None else value)
    return tuple(out)


def by_replica_setting(rows_by_method: dict[str, list[dict[str, Any]]]
                       ) -> dict[str, list[dict[str, Any]]]:
    """Splits each method's rows by replica setting: identity fields other than the seed.

    {'lrr': rows} -> {'lrr p=0': ..., 'lrr p=0.1': ...} when the rows carry
    more than one `perturb_prob` (a sign perturbation run: one column per
    setting, its seeds pooled); other identity fields that differ name
    themselves ('lrr sign_transfer=init_signs'). Unchanged when the rows are
    one setting without perturbation.
    """
    p_index = _SETTING_FIELDS.index("perturb_prob")
    out: dict[str, list[dict[str, Any]]] = {}
    for method, rows in rows_by_method.items():
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(_setting(row), []).append(row)
        if len(groups) <= 1 and not any(key[p_index] for key in groups):
            out[method] = rows
            continue
        varying = [i for i in range(len(_SETTING_FIELDS))
                   if len({key[i] for key in groups}) > 1] or [p_index]
        for key in sorted(groups, key=lambda k: (k[p_index], tuple(map(str, k)))):
            parts = [f"p={key[i]:g}" if i == p_index else f"{_SETTING_FIELDS[i]}={key[i]}"
                     for i in varying]
            out[f"{method} " + " ".join(parts)] = groups[key]
    return out


def series_table(s: series_lib.Series, scale: float) -> str:
    """Per-level table of one series: density, sparsity, accuracies, sign flips, budgets."""
    levels = stats.aggregate_levels(s.rows)
    with_steps = any(st.steps_after_last_flip is not None for st in levels)
    with_wall = any(st.wall_seconds_mean is not None for st in levels)
    body = []
    for st in levels:
        best = None if st.best_epoch_test_acc_mean is None else st.best_epoch_test_acc_mean * scale
        init = None if st.flips_vs_init_mean is None else 100.0 * st.flips_vs_init_mean
        prev = None if st.flips_vs_prev_mean is None else 100.0 * st.flips_vs_prev_mean
        cells = [str(st.level), _fmt(st.density, 4),
                 _fmt(None if st.sparsity is None else 100.0 * st.sparsity),
                 format_acc(st, scale), str(st.n), _fmt(best), _fmt(init), _fmt(prev)]
        if with_steps:
            cells.append("-" if st.steps_after_last_flip is None
                         else _span(*st.steps_after_last_flip))
        if with_wall:
            cells.append(_fmt(st.wall_seconds_mean, 1))
        body.append(cells)
    unit = " %" if scale == 100.0 else ""
    header = ["level", "density", "sparsity %", f"test acc{unit} (mean ± std)", "n",
              f"best-epoch test acc{unit} (mean)", "sign flips vs init %",
              "sign flips vs prev %"]
    if with_steps:
        header.append("steps after last flip")
    if with_wall:
        header.append("wall s (level)")
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


def _runs_lines(series: list[series_lib.Series]) -> list[str]:
    lines = []
    for s in series:
        paths = ", ".join(f"`{p}`" for p in s.paths)
        seeds = stats.format_seeds(stats.seeds_of(s.rows)) or "seeds unknown"
        fields = ", ".join(f"{k}={v}" for k, v in s.identity.items() if v not in (None, ""))
        lines.append(f"- **{s.label}** ({series_lib.n_text(s)}; {seeds}): {len(s.rows)} rows "
                     f"from {paths}; identity: {fields}")
    return lines


def render(series: list[series_lib.Series], figures: dict[str, str], out_dir: str,
           lmc_items: list[tuple[str, dict[str, Any]]] = (),
           theory_items: list[tuple[str, dict[str, Any]]] = (),
           captions: dict[str, str] | None = None) -> str:
    """The markdown text of summary.md.

    Args:
      series: labelled series to tabulate.
      figures: {title: png path}; embedded by path relative to out_dir, with a
        link to the PDF beside the PNG when there is one.
      out_dir: where summary.md goes.
      lmc_items: (source path, lmc.json dict) pairs.
      theory_items: (source path, theory.json dict) pairs.
      captions: {title: caption} under the figures.
    """
    captions = captions or {}
    scale = stats.accuracy_scale([row for s in series for row in s.rows])
    unit = "%" if scale == 100.0 else "as reported"
    lines = ["# lrr_jax report", ""]
    if series:
        setting = series_lib.describe_setting(series)
        if setting:
            lines += [f"Setting: {setting}.", ""]
        lines += [f"Test accuracy in {unit}: {stats.STATISTIC} (n = seeds at that level); the "
                  "figures' bands show the same statistic. Sparsity = 1 - density. "
                  f"{BEST_NOTE[0].upper()}{BEST_NOTE[1:]}.", "", "## Runs", ""]
        lines += _runs_lines(series)
        groups = series_lib.study_groups(series)
        lines += ["", "## Test accuracy per level, side by side", ""]
        if len(groups) <= 1:
            lines += [side_by_side_table({s.label: s.rows for s in series}), ""]
        else:
            lines += ["One table per study; each repeats the plain methods for reference.", ""]
            for title, members in groups.items():
                lines += [f"### {title}", "",
                          side_by_side_table({s.label: s.rows for s in members}), ""]
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures.items():
            rel = os.path.relpath(path, out_dir)
            lines += [f"### {title}", "", f"![{title}]({rel})", ""]
            pdf = os.path.splitext(path)[0] + ".pdf"
            extra = [captions[title]] if captions.get(title) else []
            if os.path.isfile(pdf):
                rel_pdf = os.path.relpath(pdf, out_dir)
                extra.append(f"Vector version: [{rel_pdf}]({rel_pdf}).")
            if extra:
                lines += [" ".join(extra), ""]
    if series:
        lines += ["## Per run", ""]
        for s in series:
            lines += [f"### {s.label}", "", series_table(s, scale), ""]
            note = recovery_note(s.rows)
            if note:
                lines += [note, ""]
    for source, item in lmc_items:
        a, b = item.get("a", "a"), item.get("b", "b")
        barrier = loss_barrier(item)
        lines += [f"## Linear mode connectivity: {a} ↔ {b}", "", f"From `{source}`.", ""]
        if barrier is not None:
            lines += [f"Loss barrier (max excess over the linear interpolation of the "
                      f"endpoint losses): {barrier:.4f}", ""]
        acc_scale = stats.accuracy_scale([{"test_acc": v} for v in item.get("test_acc") or []])
        drop = accuracy_barrier(item)
        if drop is not None:
            lines += [f"Accuracy barrier (max shortfall below the linear interpolation of the "
                      f"endpoint accuracies): {drop * acc_scale:.2f}"
                      f"{' points' if acc_scale == 100.0 else ''}", ""]
        if isinstance(item.get("sign_flip_frac"), (int, float)):
            lines += [f"Weights unpruned in both whose signs differ: "
                      f"{100 * item['sign_flip_frac']:.2f}%", ""]
        if isinstance(item.get("barrier_loss"), (int, float)):
            lines += [f"Loss barrier as lmc.json reports it (max loss - max endpoint loss): "
                      f"{item['barrier_loss']:.4f}", ""]
        lines += [lmc_table(item, acc_scale), ""]
    for source, item in theory_items:
        lines += theory_lines(source, item)
    return "\n".join(lines).rstrip() + "\n"


def write(series: list[series_lib.Series], figures: dict[str, str], out_dir: str,
          lmc_items: list[tuple[str, dict[str, Any]]] = (),
          theory_items: list[tuple[str, dict[str, Any]]] = (),
          captions: dict[str, str] | None = None) -> str:
    """Writes `out_dir/summary.md` and returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as f:
        f.write(render(series, figures, out_dir, lmc_items, theory_items, captions))
    return path
