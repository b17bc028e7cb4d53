"""`lrr_jax.load_results`: the rows of finished runs for your own analysis.

    import lrr_jax
    df = lrr_jax.load_results(["/runs/c10", "/runs/c10_wr_lrr_mask"])
    df.groupby(["label", "level"]).test_acc.agg(["mean", "std"])

The same discovery and grouping as `python -m lrr_jax.report`; pandas is
optional (a list of dicts without it). Standard library only otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from lrr_jax import schema
from lrr_jax.reporting import discover
from lrr_jax.reporting import series as series_lib

KINDS = ("results", "sign_flips")
EXTRA_COLUMNS = ("run_dir", "label", "sparsity", "dataset", "model")
_TEXT_IDENTITY = tuple(c.name for c in schema.RESULT_COLUMNS if c.identity and c.type is str)


def _paths(run_dirs) -> list[str]:
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    paths = [os.fspath(p) for p in run_dirs]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"no such path: {', '.join(missing)}")
    return paths


def _rows(runs: list[discover.Run], kind: str) -> list[dict[str, Any]]:
    series = series_lib.make_series(runs)
    of_row = {id(row): s for s in series for row in s.rows}
    out = []
    for run in runs:
        run_dir = os.path.abspath(run.path)
        extra = {"run_dir": run_dir,
                 "dataset": discover.config_get(run.config, "dataset"),
                 "model": discover.config_get(run.config, "model")}
        if kind == "results":
            for row in run.rows:
                density = row.get("density")
                out.append({**row, **extra, "label": of_row[id(row)].label,
                            "sparsity": None if density is None else 1.0 - density})
            continue
        by_replica = {}
        for row in run.rows:
            by_replica[(schema.identity(row), row.get("replica"), row.get("level"))] = row
            by_replica.setdefault((schema.identity(row), row.get("replica"), None), row)
        for flip in run.sign_flips:
            key = (schema.identity(flip), flip.get("replica"))
            result = by_replica.get(key + (flip.get("level"),))
            owner = by_replica.get(key + (None,))
            density = None if result is None else result.get("density")
            out.append({**flip, **extra,
                        "label": None if owner is None else of_row[id(owner)].label,
                        "sparsity": None if density is None else 1.0 - density})
    for row in out:
        for key in _TEXT_IDENTITY:  # '' rather than None: pandas' groupby drops None keys
            if row.get(key) is None:
                row[key] = ""
    return out


def _columns(kind: str, rows: list[dict[str, Any]]) -> list[str]:
    base = schema.names(schema.RESULT_COLUMNS if kind == "results" else schema.SIGN_FLIP_COLUMNS)
    cols = base + [c for c in EXTRA_COLUMNS if c not in base]
    seen = set(cols)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                cols.append(key)
    return cols


def load_results(run_dirs, kind: str = "results", as_frame: bool | None = None):
    """Rows of results.csv (or sign_flips.csv) of every run under `run_dirs`.

    Args:
      run_dirs: a path or a list of paths: run directories (holding
        results.csv) or workdirs holding them; the method subdirectories of a
        multi-method workdir are found (up to `discover.MAX_DEPTH` folders deep).
      kind: 'results': one row per (run, replica, level) of results.csv;
        'sign_flips': one row per (run, replica, level, layer, reference) of
        sign_flips.csv.
      as_frame: True: a pandas DataFrame (ImportError without pandas); False:
        a list of dicts; None (default): a DataFrame when pandas can be
        imported, else a list of dicts.

    Returns:
      The rows with the columns of `lrr_jax.schema` (so the identity fields
      method, seed, perturb_prob, pruning, score, mask_source, sign_source,
      sign_transfer; text fields '' when unset or absent in an older file),
      followed by `run_dir` (absolute path of the run directory), `label`
      (the series label the report uses, e.g. 'WR + LRR mask', 'LRR (p=0.3)'),
      `sparsity` (1 - density; for sign flips that of the replica's results
      row at the level), `dataset` and `model` (from the run's config.json,
      None without one), then any other column a file has. Numbers are typed;
      empty cells are None (NaN in a DataFrame).

    Raises:
      FileNotFoundError: a path does not exist, or none holds a results.csv with rows.
      ValueError: `kind` is not 'results' or 'sign_flips'.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    paths = _paths(run_dirs)
    runs = discover.discover(paths)
    if not runs:
        raise FileNotFoundError(f"no results.csv with rows under {', '.join(paths)} (looked "
                                f"{discover.MAX_DEPTH} folders deep)")
    rows = _rows(runs, kind)
    columns = _columns(kind, rows)
    if as_frame is False:
        return [{c: row.get(c) for c in columns} for row in rows]
    try:
        import pandas
    except ImportError:
        if as_frame:
            raise ImportError("load_results(as_frame=True) needs pandas "
                              "(pip install pandas, or lrr_jax[analysis])") from None
        return [{c: row.get(c) for c in columns} for row in rows]
    return pandas.DataFrame.from_records([{c: row.get(c) for c in columns} for row in rows],
                                         columns=columns)
