"""Per-level statistics over replicas: the numbers every table and figure shows.

The statistic is the same everywhere: mean and sample standard deviation
over the replicas (seeds) at a level. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

STATISTIC = "mean ± sample std over seeds"


@dataclasses.dataclass
class LevelStats:
    """Replica statistics of one pruning level of a series.

    `*_mean` fields are None when no replica reported a value; `*_std` are
    sample standard deviations (0.0 for a single replica).

    Attributes:
      level: the pruning level (0 = dense).
      density: mean density of the rows.
      n: rows (replicas) at this level.
      seeds: the distinct seeds of those rows, sorted.
      best_epoch_test_acc_mean: mean of `best_epoch_test_acc`, the best over
        the epochs within this level (the paper code's best_acc1 is this for its
        last level only).
      steps_after_last_flip: (min, max) over replicas of the training steps
        after the last sign perturbation; None without perturbation.
      wall_seconds_mean: mean wall time of the level.
    """

    level: int
    density: float | None
    n: int
    seeds: tuple = ()
    test_acc_mean: float | None = None
    test_acc_std: float | None = None
    test_acc_min: float | None = None
    test_acc_max: float | None = None
    best_epoch_test_acc_mean: float | None = None
    flips_vs_init_mean: float | None = None
    flips_vs_init_std: float | None = None
    flips_vs_prev_mean: float | None = None
    flips_vs_prev_std: float | None = None
    steps_after_last_flip: tuple[int, int] | None = None
    wall_seconds_mean: float | None = None

    @property
    def sparsity(self) -> float | None:
        """1 - density, or None when the density is unknown."""
        return None if self.density is None else 1.0 - self.density


def values(rows: list[dict[str, Any]], key: str) -> list[float]:
    """The finite numeric values of `key` in `rows` (numeric strings parse; others skip)."""
    out = []
    for row in rows:
        value = row.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            out.append(float(value))
    return out


def mean(vals: list[float]) -> float | None:
    return statistics.fmean(vals) if vals else None


def std(vals: list[float]) -> float | None:
    """Sample standard deviation; 0.0 for one value, None for none."""
    if not vals:
        return None
    return statistics.stdev(vals) if len(vals) > 1 else 0.0


def _level(row: dict[str, Any]) -> int | None:
    level = row.get("level")
    if level is None or level == "":
        return None
    try:
        return int(float(level))
    except (TypeError, ValueError):
        return None


def by_level(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Rows grouped by their level, in level order (rows without a level dropped)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        level = _level(row)
        if level is not None:
            out.setdefault(level, []).append(row)
    return dict(sorted(out.items()))


def aggregate_levels(rows: list[dict[str, Any]]) -> list[LevelStats]:
    """Per-level replica statistics of result rows (dicts with level, density, test_acc, ...).

    Values may be numbers or numeric strings; missing keys and empty cells are
    skipped.
    """
    out = []
    for level, group in by_level(rows).items():
        acc = values(group, "test_acc")
        init = values(group, "sign_flip_frac_vs_init")
        prev = values(group, "sign_flip_frac_vs_prev")
        steps = values(group, "steps_after_last_flip")
        out.append(LevelStats(
            level=level,
            density=mean(values(group, "density")),
            n=len(group),
            seeds=tuple(seeds_of(group)),
            test_acc_mean=mean(acc), test_acc_std=std(acc),
            test_acc_min=min(acc) if acc else None, test_acc_max=max(acc) if acc else None,
            best_epoch_test_acc_mean=mean(values(group, "best_epoch_test_acc")),
            flips_vs_init_mean=mean(init), flips_vs_init_std=std(init),
            flips_vs_prev_mean=mean(prev), flips_vs_prev_std=std(prev),
            steps_after_last_flip=(int(min(steps)), int(max(steps))) if steps else None,
            wall_seconds_mean=mean(values(group, "wall_seconds")),
        ))
    return out


def accuracy_scale(rows: list[dict[str, Any]]) -> float:
    """100.0 when accuracies are fractions (all <= 1), so they print as percent; else 1.0."""
    vals = values(rows, "test_acc") + values(rows, "best_epoch_test_acc")
    return 100.0 if vals and max(vals) <= 1.0 + 1e-9 else 1.0


def _seed_key(seed):
    return (isinstance(seed, str), seed)


def seeds_of(rows: list[dict[str, Any]]) -> list:
    """The distinct seeds of `rows`, sorted."""
    return sorted({row["seed"] for row in rows if row.get("seed") is not None}, key=_seed_key)


def format_seeds(seeds: list) -> str:
    """[0, 1, 2, 5] -> 'seeds 0-2, 5'; [3] -> 'seed 3'; [] -> ''."""
    seeds = sorted(set(seeds), key=_seed_key)
    if not seeds:
        return ""
    runs: list[list] = []
    for seed in seeds:
        if runs and isinstance(seed, int) and isinstance(runs[-1][-1], int) \
                and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    parts = [str(r[0]) if len(r) == 1 else f"{r[0]}, {r[1]}" if len(r) == 2
             else f"{r[0]}-{r[-1]}" for r in runs]
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(parts)
