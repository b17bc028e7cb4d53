"""Finding run directories and reading their files.

A run directory is any directory holding a `results.csv` (see the "Run
directory" section of docs/DESIGN.md). A multi-method workdir
(`<workdir>/<method>/results.csv`) contributes one run per method directory.
Rows are read with `lrr_jax.schema.read_csv`, so they carry typed identity
fields (`schema.IDENTITY`); grouping them is `series`' job.

Standard library only, so that `summary` (which the training driver imports)
stays free of plotting and array dependencies.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from lrr_jax import schema

RESULTS_FILE = "results.csv"
SIGN_FLIPS_FILE = "sign_flips.csv"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
LMC_FILE = "lmc.json"
THEORY_FILE = "theory.json"
# Directories never searched for runs: checkpoints hold thousands of files.
SKIP_DIRS = ("checkpoints", "tb", "report", "__pycache__")
MAX_DEPTH = 3


@dataclasses.dataclass
class Run:
    """One run directory.

    Attributes:
      path: the directory holding results.csv.
      config: parsed config.json of the directory (or of its parent for a
        per-method directory without one); {} when there is none. Used only as
        context (dataset, model, ...), never to name a replica.
      rows: typed results.csv rows (empty cells are None).
      sign_flips: typed sign_flips.csv rows; [] when the file is absent.
      data: the data record of the newest session of its run.json that has one
        (`provenance.data_record`: split sizes, `standard_sizes`); {} without.
    """

    path: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    sign_flips: list[dict[str, Any]]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


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


def load_config(directory: str) -> dict[str, Any]:
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


def _fill_flip_identity(rows: list[dict[str, Any]], flips: list[dict[str, Any]]) -> None:
    """Gives sign_flips rows of older files (no identity columns) their replica's identity.

    The identity comes from the results row of the same replica; fields the
    sign_flips row carries itself are kept.
    """
    by_replica = {}
    for row in rows:
        by_replica.setdefault(row.get("replica"), row)
    for flip in flips:
        source = by_replica.get(flip.get("replica"), {})
        for key in schema.IDENTITY:
            if flip.get(key) is None and source.get(key) is not None:
                flip[key] = source[key]


def load_data_record(directory: str) -> dict[str, Any]:
    """The data record of run.json's newest session that has one ({} without)."""
    try:
        sessions = read_json(os.path.join(directory, RUN_FILE)).get("sessions", [])
    except (OSError, ValueError, AttributeError):
        return {}
    records = [s["data"] for s in sessions if isinstance(s, dict) and isinstance(s.get("data"),
                                                                                 dict)]
    return records[-1] if records else {}


def load_run(directory: str) -> Run:
    """Reads results.csv, sign_flips.csv, config.json and run.json of one run directory."""
    rows = schema.read_csv(os.path.join(directory, RESULTS_FILE))
    flips_path = os.path.join(directory, SIGN_FLIPS_FILE)
    flips = schema.read_csv(flips_path) if os.path.isfile(flips_path) else []
    _fill_flip_identity(rows, flips)
    return Run(path=directory, config=load_config(directory), rows=rows, sign_flips=flips,
               data=load_data_record(directory))


def row_key(row: dict[str, Any]) -> tuple:
    """What makes a results row unique: its replica's identity, replica index and level."""
    return schema.identity(row) + (row.get("replica"), row.get("level"))


def discover(paths: list[str]) -> list[Run]:
    """All runs under `paths` that hold at least one results row.

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
            keys = {row_key(row) for r in inner for row in r.rows}
            run.rows = [row for row in run.rows if row_key(row) not in keys]
            flip_keys = {row_key(row) for r in inner for row in r.sign_flips}
            run.sign_flips = [row for row in run.sign_flips if row_key(row) not in flip_keys]
    return [r for r in runs if r.rows]
