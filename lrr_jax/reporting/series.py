"""Grouping results rows into labelled series, by the identity fields the rows carry.

A *series* is every row that shares its replica's identity fields
(`schema.IDENTITY`) except the seed: those rows are the seeds (replicas) of
one experiment and are aggregated level by level. Labels are built from
those fields ('IMP', 'WR + LRR mask', 'IMP + LRR mask & signs', 'LRR + random
mask (balanced)', 'LRR (p=0.3)'), never parsed from strings or directory
names. Config values (dataset, model, lr, ...) and the non-identity row
columns `epochs` and `data_order` join the grouping, as a '[...]' tag, only
when they differ between the rows found.

Standard library only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from lrr_jax import schema
from lrr_jax.reporting import discover, stats

METHOD_NAMES = {
    "imp": "IMP",
    "wr": "WR",
    "lrr": "LRR",
    "lrr_bn_rewind": "LRR+BN",
    "lrr_bn": "LRR+BN",
}
METHOD_ORDER = ("imp", "wr", "lrr", "lrr_bn_rewind", "lrr_bn")
# sign_transfer -> words in a label ('' = none: the sign source, if any, names itself).
SIGN_TRANSFER_NAMES = {
    "": "",
    "source_signs": "",
    "own_signs": "own signs",
    "init_signs": "init signs",
    "shuffled_all_init_magnitudes": "shuffled init magnitudes",
    "shuffled_init_magnitudes": "init magnitudes shuffled in the mask",
}
# Config fields that become part of a label when they differ between runs.
CONFIG_CONTEXT = (
    "dataset", "model", "width", "dtype", "warmup_epochs", "perturb_every",
    "perturb_recovery_epochs", "lr", "lr_min", "momentum", "weight_decay", "batch_size",
    "prune_fraction", "reset_momentum",
    "rewind_batch_stats", "zero_pruned_weights", "augment", "train_limit",
)
# Row columns outside the identity that do the same.
ROW_CONTEXT = ("epochs", "data_order")
CONTEXT_KEYS = CONFIG_CONTEXT + ROW_CONTEXT
_KEY_FIELDS = tuple(k for k in schema.IDENTITY if k != "seed")
# How the networks are written in figures (a model without an entry: its registry name).
MODEL_NAMES = {"resnet18": "ResNet18", "resnet50": "ResNet50",
               "resnet50_imagenet": "ResNet50 (ImageNet stem)", "mlp": "MLP",
               "lenet_300_100": "LeNet-300-100", "vgg16": "VGG-16", "vgg19": "VGG-19",
               "resnet20": "ResNet-20", "resnet56": "ResNet-56"}
# Scores that are the paper's own studies: magnitude (no label) and random masks.
_STUDIED_SCORES = ("", "magnitude", "random")


def dataset_names() -> dict[str, str]:
    """Dataset titles from the data registry (`data.DATASETS`, which imports no jax)."""
    from lrr_jax import data

    return {name: spec.title for name, spec in data.DATASETS.items()}


@dataclasses.dataclass
class Series:
    """All rows of one experiment: the seeds of one identity (and context).

    Attributes:
      label: readable, unique name, e.g. 'WR + LRR mask' or 'LRR (p=0.3)'.
      base_label: the label without the perturbation probability.
      method: the training method of the rows ('imp', 'wr', 'lrr', ...).
      perturb_prob: sign perturbation probability (0.0 when none).
      kind: the study it belongs to: 'method' (a plain IMP/WR/LRR run), 'mask'
        (another run's masks), 'sign' (a sign transfer) or 'random' (random masks).
      perturbation_run: whether its rows come from a sign perturbation run (one
        with some p > 0), including that run's p = 0 replicas.
      identity: the identity fields shared by the rows (all but the seed).
      context: dataset, model, ... of the rows (see CONTEXT_KEYS); None where unknown;
        and 'data': the split sizes when they are not the real dataset's (a generated
        or partial archive, `data_note`), else None.
      rows: the results rows.
      paths: run directories the rows come from.
    """

    label: str
    base_label: str
    method: str
    perturb_prob: float
    kind: str
    perturbation_run: bool
    identity: dict[str, Any]
    context: dict[str, Any]
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    paths: list[str] = dataclasses.field(default_factory=list)

    @property
    def is_transfer(self) -> bool:
        """Whether it uses another run's mask or signs, a sign transfer or a random mask."""
        return self.kind != "method"


def _blank(value: Any) -> bool:
    return value is None or value == ""


def method_name(method: Any) -> str:
    """'lrr' -> 'LRR'; unknown names are kept."""
    if _blank(method):
        return "?"
    return METHOD_NAMES.get(str(method).lower(), str(method))


def short_path(path: str) -> str:
    """The last two components of a path: '/runs/c10/lrr' -> 'c10/lrr'."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) or str(path)


@functools.lru_cache(maxsize=256)
def _methods_in(directory: str) -> tuple:
    """The `method` fields of a run directory's results rows ((): unreadable)."""
    try:
        rows = schema.read_csv(os.path.join(directory, discover.RESULTS_FILE))
    except (OSError, ValueError):
        return ()
    return tuple(sorted({str(r["method"]) for r in rows if not _blank(r.get("method"))}))


def source_name(source: Any) -> str:
    """Readable name of a mask/sign source run directory.

    The method its results rows name ('LRR') when the directory can be read
    and trained one method, else the last two components of the path as given.
    """
    text = str(source).rstrip("/\\")
    methods = _methods_in(os.path.realpath(text)) if os.path.isdir(text) else ()
    return method_name(methods[0]) if len(methods) == 1 else short_path(text)


def checkpoint_label(ref: Any) -> str:
    """'RUN_DIR:LEVEL' (an lmc.json endpoint) -> 'LRR level 6'; other text unchanged."""
    text = str(ref)
    run_dir, sep, level = text.rpartition(":")
    if not sep or not run_dir:
        return text
    where = f"level {level}" if level.isdigit() else level
    return f"{source_name(run_dir)} {where}"


def _prob(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def kind_of(identity: dict[str, Any]) -> str:
    """'random', 'sign', 'mask' or 'method' (see Series.kind) from identity fields."""
    if identity.get("score") == "random":
        return "random"
    if not _blank(identity.get("sign_transfer")) or not _blank(identity.get("sign_source")):
        return "sign"
    if not _blank(identity.get("mask_source")):
        return "mask"
    return "method"


def label_of(identity: dict[str, Any], context: dict[str, Any] | None = None,
             perturbation_run: bool = False, with_p: bool = True,
             show_pruning: bool = False) -> str:
    """Readable label of identity fields, e.g. 'IMP + LRR mask & signs', 'LRR (p=0.3) [cifar100]'.

    Args:
      identity: identity fields (schema.IDENTITY, the seed is ignored).
      context: context fields to tag the label with (only those that differ
        between the series of a report).
      perturbation_run: whether to name p even when it is 0.
      with_p: False leaves the perturbation probability out (base label).
      show_pruning: name the allocation of magnitude pruning too (when runs differ in it).
    """
    label = method_name(identity.get("method"))
    mask, sign = identity.get("mask_source"), identity.get("sign_source")
    same = (not _blank(mask) and not _blank(sign)
            and os.path.realpath(str(mask)) == os.path.realpath(str(sign)))
    if same:
        label += f" + {source_name(mask)} mask & signs"
    else:
        if not _blank(mask):
            label += f" + {source_name(mask)} mask"
        if not _blank(sign):
            label += f" + {source_name(sign)} signs"
    pruning = identity.get("pruning")
    if identity.get("score") == "random":
        label += " + random mask" + ("" if _blank(pruning) else f" ({pruning})")
    elif not _blank(identity.get("score")) and identity.get("score") not in _STUDIED_SCORES:
        label += f" + {identity['score']} scores"
    transfer = identity.get("sign_transfer")
    if not _blank(transfer):
        words = SIGN_TRANSFER_NAMES.get(str(transfer), str(transfer).replace("_", " "))
        if words:
            label += f" ({words})"
    p = _prob(identity.get("perturb_prob"))
    if with_p and (p > 0 or perturbation_run):
        label += f" (p={p:g})"
    extras = []
    if show_pruning and identity.get("score") != "random" and not _blank(pruning):
        extras.append(str(pruning))
    for key, value in (context or {}).items():
        if value is None:
            continue
        extras.append(str(value) if key in ("dataset", "model", "data_order")
                      else f"{key}={value}")
    if extras:
        label += " [" + ", ".join(extras) + "]"
    return label


def _context(row: dict[str, Any], config: dict[str, Any], perturbation_run: bool) -> dict:
    ctx = {}
    for key in CONFIG_CONTEXT:
        value = discover.config_get(config, key)
        if key in ("perturb_every", "perturb_recovery_epochs") and not perturbation_run:
            value = None  # unused without perturbation
        ctx[key] = tuple(value) if isinstance(value, list) else value
    ctx["epochs"] = row.get("epochs")
    if ctx["epochs"] is None:
        ctx["epochs"] = discover.config_get(config, "epochs_per_level")
    ctx["data_order"] = row.get("data_order")
    return ctx


def data_note(data: dict[str, Any]) -> str | None:
    """'1,280 train / 500 test' when a run's data record says its split sizes are not the
    real dataset's (`provenance.data_record`), else None (real sizes, or no record)."""
    if data.get("standard_sizes") is not False:
        return None
    sizes = [f"{data[k]:,} {k}" for k in ("train", "test") if isinstance(data.get(k), int)]
    return " / ".join(sizes) or "sizes unknown"


def _method_rank(method: str | None) -> tuple:
    m = (method or "").lower()
    return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m)


def _replica_key(path: str, row: dict[str, Any]) -> tuple:
    return (os.path.realpath(path), schema.identity(row), row.get("replica"))


def make_series(runs: list[discover.Run]) -> list[Series]:
    """Groups the rows of all runs by identity (all but the seed); rows of a group are seeds.

    A run whose rows have some perturb_prob > 0 is a perturbation run: its
    p = 0 replicas form a series of their own, 'LRR (p=0)' (they are often
    the same seeds as a plain run: pooling would count them twice). Context
    fields (dataset, model, epochs, ...) split series, and appear in labels,
    only when they differ between the rows found. Order: methods IMP, WR, LRR
    first, plain runs, then transfers, then perturbation runs by p, then label.
    """
    described = []
    for run in runs:
        perturbed = any(_prob(row.get("perturb_prob")) > 0 for row in run.rows)
        for row in run.rows:
            described.append((run, row, perturbed, {**_context(row, run.config, perturbed),
                                                     "data": data_note(run.data)}))
    differing = tuple(k for k in CONTEXT_KEYS
                      if len({repr(c[k]) for *_, c in described if c[k] is not None}) > 1)
    magnitude_allocations = {row.get("pruning") for _, row, *_ in described
                             if row.get("score") != "random"}
    show_pruning = len(magnitude_allocations - {None, ""}) > 1
    groups: dict[tuple, Series] = {}
    for run, row, perturbed, ctx in described:
        identity = {k: row.get(k) for k in _KEY_FIELDS}
        tag = {k: ctx[k] for k in differing}
        key = (schema.identity({**identity, "seed": None}), perturbed,
               tuple(repr(v) for v in tag.values()))
        if key not in groups:
            groups[key] = Series(
                label=label_of(identity, tag, perturbed, show_pruning=show_pruning),
                base_label=label_of(identity, tag, perturbed, with_p=False,
                                    show_pruning=show_pruning),
                method=str(identity.get("method") or "?"),
                perturb_prob=_prob(identity.get("perturb_prob")), kind=kind_of(identity),
                perturbation_run=perturbed, identity=identity,
                context={k: ctx[k] for k in (*CONTEXT_KEYS, "data")})
        series = groups[key]
        series.rows.append(row)
        if run.path not in series.paths:
            series.paths.append(run.path)
    out = sorted(groups.values(), key=lambda s: (
        _method_rank(s.method), s.perturbation_run, s.is_transfer, s.base_label,
        s.perturb_prob))
    _disambiguate(out)
    return out


def _disambiguate(series: list[Series]) -> None:
    """Labels shared by different series (e.g. two mask sources of one method) get their path."""
    counts: dict[str, int] = {}
    for s in series:
        counts[s.label] = counts.get(s.label, 0) + 1
    for s in series:
        if counts[s.label] > 1:
            where = short_path(s.paths[0])
            s.label += f" <{where}>"
            s.base_label += f" <{where}>"


def plain_series(series: list[Series]) -> list[Series]:
    """The plain method runs (no transfer, random mask or perturbation), else every p = 0 one."""
    plain = [s for s in series if s.kind == "method" and not s.perturbation_run]
    return plain or [s for s in series if s.perturb_prob == 0] or list(series)


def study_groups(series: list[Series]) -> dict[str, list[Series]]:
    """{study title: series to show together}: each transfer kind next to the plain methods.

    Keys (present only when the study has runs): 'Methods', 'Mask transfer',
    'Sign transfer', 'Random masks', 'Sign perturbation'.
    """
    plain = [s for s in series if s.kind == "method" and not s.perturbation_run]
    groups = {"Methods": plain} if plain else {}
    for kind, title in (("mask", "Mask transfer"), ("sign", "Sign transfer"),
                        ("random", "Random masks")):
        members = [s for s in series if s.kind == kind and not s.perturbation_run]
        if members:
            groups[title] = plain + members
    perturbed = [s for s in series if s.perturbation_run]
    if perturbed:
        groups["Sign perturbation"] = perturbed
    return groups


def series_of_replica(runs: list[discover.Run], series: list[Series]) -> dict[tuple, Series]:
    """{(run dir, identity, replica): series} of every results row."""
    by_row = {id(row): s for s in series for row in s.rows}
    out = {}
    for run in runs:
        for row in run.rows:
            if id(row) in by_row:
                out[_replica_key(run.path, row)] = by_row[id(row)]
    return out


def flip_rows_by_series(runs: list[discover.Run], series: list[Series]
                        ) -> dict[str, list[dict[str, Any]]]:
    """sign_flips.csv rows grouped by the label of their replica's series, in series order."""
    of_replica = series_of_replica(runs, series)
    grouped: dict[str, list[dict[str, Any]]] = {s.label: [] for s in series}
    for run in runs:
        for row in run.sign_flips:
            s = of_replica.get(_replica_key(run.path, row))
            if s is not None:
                grouped[s.label].append(row)
    return {label: rows for label, rows in grouped.items() if rows}


def densities(series: Series) -> dict[int, float]:
    """{level: mean density} of a series' rows."""
    return {st.level: st.density for st in stats.aggregate_levels(series.rows)
            if st.density is not None}


def n_text(series: Series) -> str:
    """'n=2' (seeds per level), 'n=1-2' when levels differ, 'n=4 (2 seeds)' for repeated seeds."""
    levels = stats.aggregate_levels(series.rows)
    ns = sorted({st.n for st in levels}) or [0]
    text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"
    seeds = max((len(st.seeds) for st in levels), default=0)
    if seeds and seeds < ns[-1]:
        text += f" ({seeds} seed{'s' if seeds > 1 else ''})"
    return text


def _context_name(values: set, names: dict[str, str]) -> str:
    return " / ".join(sorted(names.get(str(v), str(v)) for v in values))


def describe_setting(series: list[Series], seeds: bool = True) -> str:
    """'CIFAR-10, ResNet18, seeds 0, 1' for a figure's caption (parts that are unknown left out).

    Data whose split sizes are not the real dataset's (a generated archive) reads
    'CIFAR-10 format, synthetic or partial data (1,280 train / 500 test)'.
    """
    parts = []
    datasets = {s.context.get("dataset") for s in series} - {None, ""}
    if datasets:
        text = _context_name(datasets, dataset_names())
        notes = sorted({s.context.get("data") for s in series} - {None})
        if notes:  # the split sizes tell: not the real dataset
            text += f" format, synthetic or partial data ({'; '.join(notes)})"
        parts.append(text)
    models = {s.context.get("model") for s in series} - {None, ""}
    if models:
        text = _context_name(models, MODEL_NAMES)
        widths = {s.context.get("width") for s in series} - {None, 1}
        if len(widths) == 1:
            text += f" (width x{next(iter(widths)):g})"
        parts.append(text)
    text = stats.format_seeds([seed for s in series for seed in stats.seeds_of(s.rows)])
    if seeds and text:
        parts.append(text)
    return ", ".join(parts)
