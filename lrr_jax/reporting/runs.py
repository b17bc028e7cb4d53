"""Finding run directories, reading their files and grouping rows into labelled series.

A run directory is any directory holding a `results.csv` (see the "Run
directory" section of docs/DESIGN.md). A multi-method workdir
(`<workdir>/<method>/results.csv`) contributes one run per method directory.
Rows are grouped into *series*: all rows that share a label (method, mask and
sign sources, sign transfer, random mask, perturbation probability, plus any
context field such as the dataset that differs between the runs found) are
replicas of one experiment and are aggregated level by level.

Standard library only, so that `summary` (which the training driver imports)
stays free of plotting and array dependencies.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import statistics
from typing import Any

RESULTS_FILE = "results.csv"
SIGN_FLIPS_FILE = "sign_flips.csv"
CONFIG_FILE = "config.json"
LMC_FILE = "lmc.json"
THEORY_FILE = "theory.json"

INT_COLUMNS = ("level", "replica", "seed", "epochs", "n_unpruned")
FLOAT_COLUMNS = (
    "perturb_prob", "density", "test_acc", "best_test_acc", "test_loss", "train_loss",
    "train_acc", "sign_flip_frac_vs_init", "sign_flip_frac_vs_prev", "wall_seconds",
    "flip_frac",
)
# Directories never searched for runs: checkpoints hold thousands of files.
SKIP_DIRS = ("checkpoints", "tb", "report", "__pycache__")
MAX_DEPTH = 3

METHOD_NAMES = {
    "imp": "IMP",
    "wr": "WR",
    "lrr": "LRR",
    "lrr_bn": "LRR + BN rewind",
    "lrr_bn_rewind": "LRR + BN rewind",
    "random": "Random",
}
METHOD_ORDER = ("imp", "wr", "lrr", "lrr_bn", "lrr_bn_rewind")
_NONE_VALUES = ("", "none", "null", "own", "self", "false", "0", "no")
# Config fields that become part of a label when they differ between runs.
CONTEXT_KEYS = (
    "dataset", "model", "width", "dtype", "pruning", "epochs",
    "warmup_epochs", "perturb_every", "lr", "lr_min", "momentum", "weight_decay", "batch_size",
    "prune_fraction", "reset_momentum", "rewind_batch_stats", "zero_pruned_weights",
)


@dataclasses.dataclass
class Run:
    """One run directory.

    Attributes:
      path: the directory holding results.csv.
      config: parsed config.json of the directory (or of its parent for a
        per-method directory without one); {} when there is none.
      rows: typed results.csv rows (empty cells are None).
      sign_flips: typed sign_flips.csv rows; [] when the file is absent.
    """

    path: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    sign_flips: list[dict[str, Any]]


@dataclasses.dataclass
class Series:
    """All rows that share one label, from one or more runs.

    Attributes:
      label: readable, unique name, e.g. 'WR + LRR mask' or 'LRR (p=0.3)'.
      base_label: the label without the perturbation probability.
      method: the training method of the rows ('imp', 'wr', 'lrr', ...).
      perturb_prob: sign perturbation probability (0.0 when none).
      is_transfer: whether the series uses another run's mask or signs, a sign
        transfer variant or a random mask.
      rows: the results rows.
      paths: run directories the rows come from.
      kind: the study it belongs to: 'method' (a plain IMP/WR/LRR run), 'mask'
        (another run's masks), 'sign' (a sign transfer) or 'random' (random masks).
      perturbation_run: whether its rows come from a sign perturbation run (one
        with some p > 0), including that run's p = 0 replicas.
    """

    label: str
    base_label: str
    method: str
    perturb_prob: float
    is_transfer: bool
    rows: list[dict[str, Any]]
    paths: list[str]
    kind: str = "method"
    perturbation_run: bool = False


@dataclasses.dataclass
class LevelStats:
    """Replica statistics of one pruning level of a series.

    `*_mean` fields are None when no replica reported a value. `test_acc_std`
    is the sample standard deviation (0.0 for a single replica).
    """

    level: int
    density: float | None
    n: int
    test_acc_mean: float | None
    test_acc_std: float | None
    test_acc_min: float | None
    test_acc_max: float | None
    best_test_acc_mean: float | None
    flips_vs_init_mean: float | None
    flips_vs_prev_mean: float | None

    @property
    def sparsity(self) -> float | None:
        """1 - density, or None when the density is unknown."""
        return None if self.density is None else 1.0 - self.density


def parse_value(column: str, text: str | None) -> Any:
    """Converts one CSV cell: known int/float columns typed, empty strings -> None.

    Unknown columns become int or float when they parse as one, else stay str.
    """
    if text is None:
        return None
    text = text.strip()
    if text == "":
        return None
    if column in INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            return int(float(text))
    if column in FLOAT_COLUMNS:
        return float(text)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: str) -> list[dict[str, Any]]:
    """Reads a CSV file with a header into typed row dicts."""
    with open(path, newline="") as f:
        return [{k: parse_value(k, v) for k, v in row.items() if k is not None}
                for row in csv.DictReader(f)]


def read_json(path: str) -> Any:
    """Parses a JSON file."""
    with open(path) as f:
        return json.load(f)


def config_get(config: dict[str, Any], key: str, default: Any = None) -> Any:
    """Looks a key up in a (possibly nested) config dict, top level first."""
    if key in config:
        return config[key]
    for value in config.values():
        if isinstance(value, dict):
            found = config_get(value, key, None)
            if found is not None:
                return found
    return default


def _walk(root: str, depth: int = 0):
    """Yields root and its subdirectories up to MAX_DEPTH, skipping SKIP_DIRS."""
    yield root
    if depth >= MAX_DEPTH:
        return
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if (entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
                and entry.name not in SKIP_DIRS):
            yield from _walk(entry.path, depth + 1)


def find_dirs(paths: list[str], filename: str) -> list[str]:
    """Directories under `paths` (depth <= MAX_DEPTH) that hold `filename`, deduplicated."""
    found, seen = [], set()
    for path in paths:
        if not os.path.isdir(path):
            continue
        for directory in _walk(path):
            real = os.path.realpath(directory)
            if real not in seen and os.path.isfile(os.path.join(directory, filename)):
                seen.add(real)
                found.append(directory)
    return found


def find_files(paths: list[str], filename: str) -> list[str]:
    """Paths of every `filename` under `paths`; a path may also name the file itself."""
    files = [p for p in paths if os.path.isfile(p) and os.path.basename(p) == filename]
    return files + [os.path.join(d, filename) for d in find_dirs(paths, filename)]


def _load_config(directory: str) -> dict[str, Any]:
    """config.json of the directory, else of its parent (multi-method layout), else {}."""
    for candidate in (directory, os.path.dirname(os.path.abspath(directory))):
        path = os.path.join(candidate, CONFIG_FILE)
        if os.path.isfile(path):
            try:
                config = read_json(path)
            except (OSError, ValueError):
                return {}
            return config if isinstance(config, dict) else {}
    return {}


def load_run(directory: str) -> Run:
    """Reads results.csv, sign_flips.csv and config.json of one run directory."""
    flips_path = os.path.join(directory, SIGN_FLIPS_FILE)
    return Run(
        path=directory,
        config=_load_config(directory),
        rows=read_csv(os.path.join(directory, RESULTS_FILE)),
        sign_flips=read_csv(flips_path) if os.path.isfile(flips_path) else [],
    )


def _row_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in ("method", "level", "replica", "seed", "perturb_prob",
                                      "mask_source", "sign_source"))


def discover(paths: list[str]) -> list[Run]:
    """All runs under `paths`.

    When a workdir holds a results.csv and so do its method subdirectories, the
    workdir's rows that a subdirectory also holds are dropped, so no row is
    counted twice.
    """
    runs = [load_run(d) for d in find_dirs(paths, RESULTS_FILE)]
    real = [os.path.realpath(r.path) for r in runs]
    for i, run in enumerate(runs):
        inner = [r for j, r in enumerate(runs)
                 if j != i and real[j].startswith(real[i] + os.sep)]
        if inner:
            keys = {_row_key(row) for r in inner for row in r.rows}
            run.rows = [row for row in run.rows if _row_key(row) not in keys]
    return [r for r in runs if r.rows]


def is_none(value: Any) -> bool:
    """Whether a config/CSV value means 'not set' ('', 'none', 'own', False, 0, None)."""
    if value is None or value is False:
        return True
    if isinstance(value, (int, float)):
        return value == 0
    return str(value).strip().lower() in _NONE_VALUES


def method_name(method: Any) -> str:
    """'lrr' -> 'LRR'; unknown names are kept."""
    if method is None:
        return "?"
    return METHOD_NAMES.get(str(method).lower(), str(method))


def _method_of_dir(directory: str) -> str | None:
    """The method a run directory trained, from its config.json or results.csv."""
    try:
        config = _load_config(directory)
        methods = _parse_list(config_get(config, "methods"))
        if len(methods) <= 1 and config_get(config, "method"):
            return str(methods[0] if methods else config_get(config, "method"))
        results = os.path.join(directory, RESULTS_FILE)
        if os.path.isfile(results):
            with open(results, newline="") as f:
                row = next(csv.DictReader(f), None)
            if row and row.get("method"):
                return row["method"]
    except (OSError, ValueError):
        pass
    return None


def _parse_list(value: Any) -> list:
    """'a,b' or ['a', 'b'] -> ['a', 'b']; None -> []."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def source_name(source: Any) -> str:
    """Readable name of a mask/sign source.

    A source is a run directory (or a method name): the method that directory
    trained when it can still be read ('LRR'), else the directory's last name.
    """
    text = str(source).rstrip("/\\")
    if os.path.isdir(text):
        method = _method_of_dir(text)
        if method:
            return method_name(method)
    parts = [p for p in text.replace("\\", "/").split("/")
             if p and p not in ("checkpoints", "masks", "signs", RESULTS_FILE)]
    name = parts[-1] if parts else text
    return METHOD_NAMES.get(name.lower(), name)


def checkpoint_label(ref: Any) -> str:
    """'RUN_DIR:LEVEL' (an lmc.json endpoint) -> 'LRR level 6'; other text unchanged."""
    text = str(ref)
    run_dir, sep, level = text.rpartition(":")
    if not sep or not run_dir:
        return text
    where = f"level {level}" if level.isdigit() else level
    return f"{source_name(run_dir)} {where}"


def _row_field(row: dict[str, Any], config: dict[str, Any], key: str) -> Any:
    value = row.get(key)
    return config_get(config, key) if value is None else value


def _sign_transfer(row: dict[str, Any], config: dict[str, Any]) -> Any:
    """The config's sign_transfer, unless it belongs to another method of a multi-method run."""
    transfer = config_get(config, "sign_transfer")
    if len(_parse_list(config_get(config, "methods"))) > 1 and is_none(row.get("sign_source")):
        return None
    return transfer


def describe(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The label-defining fields of one results row (row columns win over config)."""
    method = _row_field(row, config, "method")
    if method is None:
        methods = _parse_list(config_get(config, "methods"))
        method = methods[0] if len(methods) == 1 else None
    p = _row_field(row, config, "perturb_prob")
    try:
        study = any(float(v) > 0 for v in _parse_list(config_get(config, "perturb_probs")))
    except (TypeError, ValueError):
        study = False
    fields = {
        "method": None if method is None else str(method),
        "mask_source": _row_field(row, config, "mask_source"),
        "sign_source": _row_field(row, config, "sign_source"),
        "sign_transfer": _sign_transfer(row, config),
        "random_mask": config_get(config, "random_mask"),
        "perturb_prob": float(p) if isinstance(p, (int, float)) and p > 0 else 0.0,
        # A sign perturbation run: its p = 0 replicas are labelled 'p=0', kept apart
        # from plain runs (they are often the same seeds: pooling would count them twice).
        "perturbation_run": study or (isinstance(p, (int, float)) and p > 0),
    }
    # The driver writes pruning = 'random_<allocation>' for random masks.
    pruning = _row_field(row, config, "pruning")
    if isinstance(pruning, str) and pruning.startswith("random"):
        fields["random_mask"] = pruning[len("random"):].strip("_") or True
    elif fields["random_mask"] is True and isinstance(pruning, str) and pruning:
        fields["random_mask"] = pruning  # random scores under this allocation
    if not is_none(fields["random_mask"]):
        pruning = None  # the label names the random mask's allocation already
    for key in CONTEXT_KEYS:
        if key == "pruning":
            value = pruning
        elif key == "epochs":
            value = row.get("epochs")
            value = config_get(config, "epochs_per_level") if value is None else value
        elif key == "perturb_every" and not fields["perturbation_run"]:
            value = None  # unused without perturbation
        else:
            value = _row_field(row, config, key)
        fields["ctx:" + key] = tuple(value) if isinstance(value, list) else value
    return fields


def label_of(fields: dict[str, Any], context_keys: tuple[str, ...] = (),
             with_p: bool = True) -> str:
    """Readable label, e.g. 'IMP + LRR signs', 'WR + LRR mask', 'LRR (p=0.3) [cifar100]'."""
    method = fields.get("method")
    label = method_name(method)
    mask_source, sign_source = fields.get("mask_source"), fields.get("sign_source")
    if not is_none(mask_source) and str(mask_source).lower() != str(method).lower():
        label += f" + {source_name(mask_source)} mask"
    random_mask = fields.get("random_mask")
    if not is_none(random_mask):
        kind = "" if random_mask is True else f" ({random_mask})"
        label += f" + random mask{kind}"
    if not is_none(sign_source) and str(sign_source).lower() != str(method).lower():
        label += f" + {source_name(sign_source)} signs"
    transfer = fields.get("sign_transfer")
    if not is_none(transfer) and transfer is not True and transfer != "source_signs":
        label += f" ({str(transfer).replace('_', ' ')})"
    if with_p and (fields.get("perturb_prob", 0.0) > 0 or fields.get("perturbation_run")):
        label += f" (p={fields.get('perturb_prob', 0.0):g})"
    extras = []
    for key in context_keys:
        value = fields.get("ctx:" + key)
        if value is None:
            continue
        extras.append(str(value) if key in ("dataset", "model") else f"{key}={value}")
    if extras:
        label += " [" + ", ".join(extras) + "]"
    return label


def _is_transfer(fields: dict[str, Any]) -> bool:
    method = str(fields.get("method")).lower()
    sources = [fields.get("mask_source"), fields.get("sign_source")]
    if any(not is_none(s) and str(s).lower() != method for s in sources):
        return True
    return not is_none(fields.get("sign_transfer")) or not is_none(fields.get("random_mask"))


def _kind(fields: dict[str, Any]) -> str:
    """'random', 'sign', 'mask' or 'method' (see Series.kind)."""
    method = str(fields.get("method")).lower()
    if not is_none(fields.get("random_mask")):
        return "random"
    sign_source = fields.get("sign_source")
    if not is_none(fields.get("sign_transfer")) or (
            not is_none(sign_source) and str(sign_source).lower() != method):
        return "sign"
    mask_source = fields.get("mask_source")
    if not is_none(mask_source) and str(mask_source).lower() != method:
        return "mask"
    return "method"


def _method_rank(method: str | None) -> tuple:
    m = (method or "").lower()
    return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m)


def make_series(runs: list[Run]) -> list[Series]:
    """Groups the rows of all runs by label; rows sharing a label are replicas.

    Context fields (dataset, model, epochs, ...) appear in labels only when they
    differ between the rows found. Order: methods IMP, WR, LRR first, plain
    runs before transfers, then by perturbation probability and label.
    """
    described = [(run, row, describe(row, run.config)) for run in runs for row in run.rows]
    context_keys = tuple(
        key for key in CONTEXT_KEYS
        if len({repr(f["ctx:" + key]) for _, _, f in described
                if f["ctx:" + key] is not None}) > 1)
    groups: dict[str, Series] = {}
    for run, row, fields in described:
        label = label_of(fields, context_keys)
        if label not in groups:
            groups[label] = Series(
                label=label, base_label=label_of(fields, context_keys, with_p=False),
                method=fields["method"] or "?", perturb_prob=fields["perturb_prob"],
                is_transfer=_is_transfer(fields), rows=[], paths=[], kind=_kind(fields),
                perturbation_run=bool(fields["perturbation_run"]))
        series = groups[label]
        series.rows.append(row)
        if run.path not in series.paths:
            series.paths.append(run.path)
    return sorted(groups.values(), key=lambda s: (
        _method_rank(s.method), s.is_transfer, s.perturbation_run, s.base_label,
        s.perturb_prob))


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


def label_for_replica(runs: list[Run], series: list[Series]) -> dict[tuple, str]:
    """{(run path, method, replica): series label}, to label sign_flips.csv rows."""
    by_row = {id(row): s.label for s in series for row in s.rows}
    out = {}
    for run in runs:
        for row in run.rows:
            if id(row) in by_row:
                out[(run.path, row.get("method"), row.get("replica"))] = by_row[id(row)]
    return out


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    out = []
    for row in rows:
        value = row.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)) and not math.isnan(value):
            out.append(float(value))
    return out


def aggregate_levels(rows: list[dict[str, Any]]) -> list[LevelStats]:
    """Per-level replica statistics of result rows (dicts with level, density, test_acc, ...).

    Values may be numbers or numeric strings; missing keys and empty cells are
    skipped.
    """
    by_level: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        level = row.get("level")
        if level is None or level == "":
            continue
        by_level.setdefault(int(float(level)), []).append(row)
    stats = []
    for level in sorted(by_level):
        group = by_level[level]
        acc = _values(group, "test_acc")
        stats.append(LevelStats(
            level=level,
            density=_mean(_values(group, "density")),
            n=len(group),
            test_acc_mean=_mean(acc),
            test_acc_std=(statistics.stdev(acc) if len(acc) > 1 else 0.0) if acc else None,
            test_acc_min=min(acc) if acc else None,
            test_acc_max=max(acc) if acc else None,
            best_test_acc_mean=_mean(_values(group, "best_test_acc")),
            flips_vs_init_mean=_mean(_values(group, "sign_flip_frac_vs_init")),
            flips_vs_prev_mean=_mean(_values(group, "sign_flip_frac_vs_prev")),
        ))
    return stats


def accuracy_scale(rows: list[dict[str, Any]]) -> float:
    """100.0 when accuracies are fractions (all <= 1), so they print as percent; else 1.0."""
    values = _values(rows, "test_acc") + _values(rows, "best_test_acc")
    return 100.0 if values and max(values) <= 1.0 + 1e-9 else 1.0
