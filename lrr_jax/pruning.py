"""Pruning as three small pure functions: score, allocation, exact top-k.

* Scores: `magnitude_scores` (|w| of unpruned weights) and `random_scores`.
  Pruned weights always score -1, so they stay pruned and never win a tie.
* Allocation: how many weights each layer keeps. `global` ranks all prunable
  weights together; `layerwise` and `uniform` keep the same fraction of every
  layer; `balanced` keeps the same number per layer where possible; `erk` uses
  the Erdos-Renyi-Kernel density (sum of dims / product of dims).
* `keep_top_k`: keep exactly k entries; ties are broken by position in the
  flattened tree (earlier wins), so the result is deterministic.

These run once per level on the host in numpy, off the training hot path. The
global threshold comes from a linear-time selection (`kth_largest`), not a full sort.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from lrr_jax import masks

PyTree = Any
ALLOCATIONS = ("global", "layerwise", "uniform", "balanced", "erk")


def magnitude_scores(params: PyTree, mask: PyTree) -> dict[str, np.ndarray]:
    """|w| for unpruned prunable weights, -1 for pruned ones, per layer."""
    weights = masks.prunable_leaves(params)
    current = masks.prunable_leaves(mask, params)
    return {name: np.where(np.asarray(current[name]) > 0,
                           np.abs(np.asarray(w, np.float32)), -1.0).astype(np.float32)
            for name, w in weights.items()}


def random_scores(params: PyTree, mask: PyTree, seed: int) -> dict[str, np.ndarray]:
    """Uniform random scores for unpruned prunable weights, -1 for pruned ones."""
    rng = np.random.default_rng(seed)
    current = masks.prunable_leaves(mask, params)
    return {name: np.where(np.asarray(m) > 0, rng.random(np.shape(m), dtype=np.float32),
                           -1.0).astype(np.float32)
            for name, m in current.items()}


def kth_largest(flat: np.ndarray, k: int):
    """The k-th largest entry of a 1-D array (1 <= k <= size), in linear time.

    Equal to `np.partition(flat, size - k)[size - k]` (NaN counts as largest),
    but for large arrays (23.6M ResNet50 scores) several times faster and
    without copying the whole array: a strided sample brackets the answer
    between two values, two comparison passes count the entries above the
    bracket and collect those inside it, and only those are partitioned. If
    the bracket misses (never for ordinary data), it falls back to
    `np.partition` of everything, so the result is always exact.
    """
    n = flat.size
    if n < (1 << 20):
        return np.partition(flat, n - k)[n - k]
    sample = flat[:: n // (1 << 16)]
    m = sample.size
    q = k * m / n  # expected rank of the answer in the sample, from the top
    margin = 4.0 * np.sqrt(m) + 16
    hi_rank = int(min(max(q - margin, 1), m))
    lo_rank = int(min(max(q + margin, 1), m))
    part = np.partition(sample, [m - lo_rank, m - hi_rank])
    lo, hi = part[m - lo_rank], part[m - hi_rank]
    inside = flat <= hi
    above = n - int(np.count_nonzero(inside))  # entries > hi, NaN included
    inside &= flat >= lo
    count = int(np.count_nonzero(inside))
    if above < k <= above + count:
        candidates = flat[inside]
        rank = k - above
        return candidates.dtype.type(np.partition(candidates, count - rank)[count - rank])
    return np.partition(flat, n - k)[n - k]


def keep_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean array keeping exactly the k highest scores; ties go to lower indices."""
    flat = scores.reshape(-1)
    n = flat.size
    if not 0 <= k <= n:
        raise ValueError(f"cannot keep {k} of {n} entries")
    keep = np.zeros(n, bool)
    if k == 0:
        return keep.reshape(scores.shape)
    if k == n:
        return np.ones(scores.shape, bool)
    threshold = kth_largest(flat, k)
    above = flat > threshold
    keep |= above
    ties = np.flatnonzero(flat == threshold)
    keep[ties[: k - int(above.sum())]] = True
    return keep.reshape(scores.shape)


def _water_fill(target: int, caps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Integer per-layer counts summing to `target`, proportional to `weights`, capped by `caps`.

    Layers that hit their cap hand their excess to the rest (as ERK and
    balanced allocation need); remainders go by largest fraction, then by order.
    """
    counts = np.zeros(len(caps), np.int64)
    free = np.ones(len(caps), bool)
    remaining = target
    while remaining > 0 and free.any():
        share = weights * free
        ideal = remaining * share / share.sum()
        saturated = free & (counts + ideal >= caps)
        if saturated.any():
            remaining -= int((caps - counts)[saturated].sum())
            counts[saturated] = caps[saturated]
            free &= ~saturated
            continue
        base = np.floor(ideal).astype(np.int64)
        counts += base
        left = remaining - int(base.sum())
        order = np.argsort(-(ideal - base), kind="stable")
        for i in order[:left]:
            counts[i] += 1
        remaining = 0
    if remaining > 0:
        raise ValueError(f"cannot keep {target} weights: only {int(caps.sum())} unpruned")
    return counts


def layer_counts(allocation: str, target: int, scores: dict[str, np.ndarray],
                 total_sizes: dict[str, int]) -> dict[str, int] | None:
    """Per-layer keep counts for `allocation`, or None for global ranking.

    Args:
      allocation: one of ALLOCATIONS.
      target: total number of weights to keep.
      scores: per-layer scores (-1 marks already pruned weights).
      total_sizes: per-layer number of weights, pruned or not.
    """
    if allocation == "global":
        return None
    names = list(scores)
    caps = np.array([int((scores[n] >= 0).sum()) for n in names], np.int64)
    sizes = np.array([total_sizes[n] for n in names], np.float64)
    if allocation in ("layerwise", "uniform"):
        weights = sizes
    elif allocation == "balanced":
        weights = np.ones(len(names))
    elif allocation == "erk":
        weights = np.array([sum(scores[n].shape) / scores[n].size for n in names]) * sizes
    else:
        raise ValueError(f"unknown allocation {allocation!r}; expected one of {ALLOCATIONS}")
    return dict(zip(names, _water_fill(target, caps, weights).tolist()))


def prune(params: PyTree, mask: PyTree, target: int, *, allocation: str = "global",
          score: str = "magnitude", seed: int = 0) -> PyTree:
    """The next mask: keep exactly `target` prunable weights of those unpruned in `mask`.

    Args:
      params: the trained (raw) parameters; pruned entries are ignored.
      mask: the current mask; the new mask is a subset of it.
      target: number of prunable weights to keep in total.
      allocation: one of ALLOCATIONS.
      score: 'magnitude' (|w|) or 'random'.
      seed: seed of the random scores.

    Returns:
      A mask pytree (float32 0/1 numpy arrays) with the structure of `params`.
    """
    if score == "magnitude":
        scores = magnitude_scores(params, mask)
    elif score == "random":
        scores = random_scores(params, mask, seed)
    else:
        raise ValueError(f"unknown score {score!r}")
    sizes = {n: s.size for n, s in scores.items()}
    counts = layer_counts(allocation, target, scores, sizes)
    if counts is None:
        names = list(scores)
        flat = np.concatenate([scores[n].reshape(-1) for n in names])
        keep_flat = keep_top_k(flat, target)
        offsets = np.cumsum([0] + [sizes[n] for n in names])
        keep = {n: keep_flat[offsets[i]:offsets[i + 1]].reshape(scores[n].shape)
                for i, n in enumerate(names)}
    else:
        keep = {n: keep_top_k(scores[n], counts[n]) for n in scores}
    if any(((k) & (scores[n] < 0)).any() for n, k in keep.items()):
        raise ValueError(f"cannot keep {target} weights: fewer are unpruned")

    def new_leaf(path, leaf, old):
        name = masks.path_name(path)
        if name in keep:
            return keep[name].astype(np.float32)
        return np.asarray(old, np.float32)

    return jax.tree_util.tree_map_with_path(new_leaf, params, mask)
