"""The one schema of `results.csv` and `sign_flips.csv`: typed columns, written and read here.

Training writes rows through `to_csv`; `lrr_jax.reporting` reads them through
`read_csv`. One row per (replica, level). A replica is named by its identity
fields (`IDENTITY`): reports group on those, never on parsed strings or
directory names. Standard library only, so reporting stays free of JAX.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class Column:
    """One CSV column: its name, Python type, whether it names the replica, and what it is."""

    name: str
    type: type
    identity: bool
    doc: str


def _c(name, type_, doc, identity=False):
    return Column(name, type_, identity, doc)


# What a replica is: the fields that tell two replicas apart (besides `replica`).
_IDENTITY = (
    _c("method", str, "imp | wr | lrr | lrr_bn_rewind", True),
    _c("seed", int, "the replica's seed: its initialization and (per_replica) data order", True),
    _c("perturb_prob", float, "sign-perturbation probability (0 = none)", True),
    _c("pruning", str, "allocation: global | layerwise | uniform | balanced | erk | ...", True),
    _c("score", str, "magnitude | random", True),
    _c("mask_source", str, "run the masks came from ('' = own pruning)", True),
    _c("sign_source", str, "run the signs came from ('' = own)", True),
    _c("sign_transfer", str, "'' | source_signs | own_signs | init_signs | "
       "shuffled_all_init_magnitudes | shuffled_init_magnitudes", True),
)

RESULT_COLUMNS: tuple[Column, ...] = (
    _c("level", int, "pruning level (0 = dense)"),
    _c("replica", int, "index of the replica in its run"),
    *_IDENTITY,
    _c("data_order", str, "per_replica | shared: whose seed keys the batches"),
    _c("density", float, "unpruned / prunable weights while the level trained"),
    _c("test_acc", float, "test accuracy after the level's last epoch"),
    _c("best_epoch_test_acc", float,
       "best test accuracy over the evaluated epochs of this level (the paper code's "
       "best_acc1 is this, of its last level only)"),
    _c("test_loss", float, "test loss after the level's last epoch"),
    _c("train_loss", float, "mean training loss of the last epoch"),
    _c("train_acc", float, "mean training accuracy of the last epoch"),
    _c("sign_flip_frac_vs_init", float, "fraction of unpruned weights whose sign differs "
       "from theta_0"),
    _c("sign_flip_frac_vs_prev", float, "... from the previous level's final weights"),
    _c("epochs", int, "epochs of the level"),
    _c("steps_after_last_flip", int, "training steps between the last sign perturbation and "
       "the level's end (the recovery budget); empty without perturbation"),
)

SIGN_FLIP_COLUMNS: tuple[Column, ...] = (
    _c("level", int, "pruning level"),
    _c("replica", int, "index of the replica in its run"),
    *_IDENTITY,
    _c("layer", str, "prunable leaf, e.g. Conv_0/kernel"),
    _c("reference", str, "init | prev: compared with theta_0 or the previous level"),
    _c("flip_frac", float, "fraction of the layer's unpruned weights whose sign differs"),
    _c("n_unpruned", int, "unpruned weights in the layer"),
)

IDENTITY: tuple[str, ...] = tuple(c.name for c in _IDENTITY)
# Older files: column names that were renamed since.
ALIASES = {"best_test_acc": "best_epoch_test_acc"}
_BY_NAME = {c.name: c for c in RESULT_COLUMNS + SIGN_FLIP_COLUMNS}


def names(columns) -> list[str]:
    return [c.name for c in columns]


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "" if not math.isfinite(value) and math.isnan(value) else f"{value:.6g}"
    return str(value)


def to_csv(columns, rows) -> str:
    """CSV text of `rows` (dicts) with exactly `columns`; a row missing a column is an error."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names(columns))
    for row in rows:
        missing = [c.name for c in columns if c.name not in row]
        if missing:
            raise KeyError(f"row lacks columns {missing}")
        writer.writerow([_format(row[c.name]) for c in columns])
    return buf.getvalue()


def parse_value(name: str, text: str | None) -> Any:
    """A cell as its column's type; '' -> None; an unknown column stays text."""
    if text is None or text == "":
        return None
    column = _BY_NAME.get(ALIASES.get(name, name))
    if column is None or column.type is str:
        return text
    try:
        if column.type is int:
            return int(float(text))
        return float(text)
    except ValueError:
        return text


def parse_row(raw: dict[str, str]) -> dict[str, Any]:
    """A csv.DictReader row as typed values, with renamed columns under their new names."""
    return {ALIASES.get(k, k): parse_value(k, v) for k, v in raw.items() if k is not None}


def read_csv(path: str) -> list[dict[str, Any]]:
    """Typed rows of a results.csv or sign_flips.csv (of any version of lrr_jax)."""
    with open(path, newline="") as f:
        return [parse_row(r) for r in csv.DictReader(f)]


def identity(row: dict[str, Any]) -> tuple:
    """The replica's identity fields of a row, in `IDENTITY` order ('' for missing text)."""
    return tuple(row.get(k) if row.get(k) is not None else "" for k in IDENTITY)
