"""Timing helpers of the benchmarks: wall clock around blocked JAX calls, load and CPU share.

Every measurement of `lrr_jax.bench` (and of `scripts/gpu_check.py`) goes
through `timed` (the call and `jax.block_until_ready` on its result) and
`alternate` (one untimed first call each, which compiles, then the repeats
interleaved, so slow drifts of the machine hit every candidate alike).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import jax


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def measuring(record: dict):
    """Adds load averages, wall seconds and this process's CPU share to `record`."""
    record["loadavg_before"] = loadavg()
    t0, c0 = time.perf_counter(), cpu_seconds()
    yield record
    wall = time.perf_counter() - t0
    record["loadavg_after"] = loadavg()
    record["wall_seconds"] = round(wall, 3)
    # 1.0 = this process kept every core busy the whole time; much less under
    # contention from other jobs (or when the work cannot use all cores).
    record["process_cpu_share"] = round((cpu_seconds() - c0) / max(wall, 1e-9)
                                        / (os.cpu_count() or 1), 3)


def median(xs) -> float:
    return float(statistics.median(xs))


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call of `fn`, until its result is ready on the device."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def alternate(named: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each callable `repeats` times, alternating between them, after one warm-up each.

    Returns `{name: [repeat seconds]}` and `{name + '_warmup': [first call seconds]}`
    (the first call compiles its program: it is never part of the repeats).
    """
    warm = {k: timed(f) for k, f in named.items()}
    times = {k: [] for k in named}
    for _ in range(repeats):
        for k, f in named.items():
            times[k].append(timed(f))
    return {k: times[k] for k in named} | {f"{k}_warmup": [warm[k]] for k in named}


def rnd(x, digits: int = 4):
    """`x` to `digits` significant digits (None stays None)."""
    return None if x is None else float(f"{x:.{digits}g}")


def progress(rec: dict) -> None:
    """One line of a finished record's scalars on stderr (stdout is kept for the JSON)."""
    brief = {k: v for k, v in rec.items() if not isinstance(v, dict | list) or k in (
        "loadavg_before",)}
    print(json.dumps(brief), file=sys.stderr, flush=True)
