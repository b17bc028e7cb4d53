"""Pruning as three small pure functions: score, allocation, exact top-k.

* Scores (SCORES): `magnitude_scores` (|w| of unpruned weights) and
  `random_scores` (fresh uniform draws each level, within the current mask,
  as the authors' `|mask * randn|`). Pruned weights always score -1, so they
  stay pruned and never win a tie.
* Allocation (ALLOCATIONS): how many weights each layer keeps,
  `planned_counts`. `global` ranks all prunable weights together;
  `layerwise` and `uniform` keep the same fraction of every layer;
  `balanced` and `erk` are the authors' rules (`prune_random_balanced`,
  `prune_random_erk` in imp-lrr-lts `main.py`): a layer smaller than its
  share stays dense and its excess is lost, so the density falls below the
  target at low sparsity; `balanced_exact` and `erk_exact` hand the excess
  to the other layers and keep exactly the target.
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
# Allocation names (config key `pruning`) and score names; config_base validates against them.
ALLOCATIONS = ("global", "layerwise", "uniform", "balanced", "erk", "balanced_exact",
               "erk_exact")
SCORES = ("magnitude", "random")


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

    Layers that hit their cap hand their excess to the rest (as 'erk_exact'
    and 'balanced_exact' need); remainders go by largest fraction, then by order.
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


def _paper_balanced(target: int, sizes: list[int]) -> list[int]:
    """The authors' balanced counts (`prune_random_balanced`): X = d*N/L per layer, no handing on.

    With d*N = `target` and L layers, layer l keeps
    size_l - int((1 - min(X / size_l, 1)) * size_l): the pruned count is
    truncated (so the kept one rounds up), and a layer smaller than X stays
    dense without giving its excess to the others. Python floats (float64),
    as in their code.
    """
    x = float(target) / len(sizes)
    return [n - int((1 - min(x / n, 1.0)) * n) for n in sizes]


def erk_dims(shape) -> int:
    """Sum of a kernel's dimensions as the authors' ERK sees it.

    Every prunable layer in their code is a `ConvMask` (an `nn.Conv2d`): the
    classifier of their CIFAR ResNets and MLPs is a 1x1 convolution, weight
    (out, in, 1, 1). A 2-D (dense) kernel therefore counts as (in, out, 1, 1):
    its dimension sum is in + out + 2. The order of the dimensions does not
    matter (Flax HWIO and PyTorch OIHW have the same sum).
    """
    return int(sum(shape)) + (2 if len(shape) == 2 else 0)


def _paper_erk(target: int, shapes: list[tuple[int, ...]]) -> list[int]:
    """The authors' ERK counts (`prune_random_erk`), in float32 as their torch code computes them.

    s_l = (sum of dims) / size_l; C = d*N / sum_l(s_l * size_l);
    layer density clamp(C * s_l, 0, 1); pruned count int((1 - density) * size_l),
    kept = size_l - pruned. Their tensors are float32 (the default dtype), so
    every step here is rounded to float32 in the same order: s_l, the products
    s_l * size_l and their running sum, C = reciprocal(sum) * float32(d*N)
    (torch's `scalar / tensor` is `tensor.reciprocal() * scalar`), C * s_l,
    clamp, 1 - density, times size_l, then truncation toward zero. This
    matters by one weight in a few large layers at some levels (ResNet18 at
    0.8^6: layer4 convs keep 325,010 in float32, 325,011 in float64). Capped
    layers' excess is lost, as in their code.
    """
    f32 = np.float32
    sizes = [int(np.prod(s)) for s in shapes]
    s = [f32(f32(erk_dims(shape)) / f32(n)) for shape, n in zip(shapes, sizes)]
    kept_weighted = f32(0)
    for s_l, n in zip(s, sizes):
        kept_weighted = f32(kept_weighted + f32(s_l * f32(n)))
    c = f32(f32(f32(1) / kept_weighted) * f32(float(target)))
    counts = []
    for s_l, n in zip(s, sizes):
        density = f32(min(max(f32(c * s_l), f32(0)), f32(1)))
        counts.append(n - int(f32(f32(f32(1) - density) * f32(n))))
    return counts


def planned_counts(mask: PyTree, target: int, allocation: str,
                   params_like: PyTree | None = None) -> dict[str, int] | None:
    """How many weights each prunable layer keeps when `mask` is pruned to `target`.

    This is the single source of the per-layer counts: `prune` keeps exactly
    these (top-k of the scores within each layer), and the level loop's
    density invariant checks them (through `planned_total`).

    Args:
      mask: the current mask (pytree of 0/1 leaves); only its prunable leaves count.
      target: the level's scheduled count round(d * N) (N prunable weights,
        d the level's density), e.g. `masks.scheduled_count(...)`.
      allocation: one of ALLOCATIONS.
      params_like: decides which leaves are prunable, when `mask` alone cannot.

    Returns:
      {layer name: kept count}, or None for 'global' (one ranking over all
      layers decides the split; the total is exactly `target`).

    Rules:
      * 'layerwise', 'uniform': density target/N in every layer, integer
        counts summing exactly to `target`.
      * 'balanced_exact', 'erk_exact': the balanced / standard ERK
        (Evci et al.: density proportional to (sum of dims) / size) shares,
        a layer that hits its unpruned count hands its excess to the others,
        so the total is exactly `target`.
      * 'balanced', 'erk': the authors' rules (`_paper_balanced`,
        `_paper_erk`), sized from the layers' full sizes and `target` alone;
        the excess of capped layers is lost, so the total is below `target`
        at low sparsity (ResNet18/CIFAR10 at d = 0.8: density 0.3685
        balanced, 0.5692 ERK). A layer never keeps more than it has unpruned
        (their kthvalue threshold then falls on the pruned zeros), so each
        count is min(rule, unpruned); along the 0.8^k schedule that minimum
        never binds, the rule's counts only shrink.

    Raises:
      ValueError: unknown allocation, or `target` outside [0, unpruned] ([0, N] for
        'balanced' and 'erk', whose previous level may keep fewer than `target`).
    """
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; expected one of {ALLOCATIONS}")
    layers = masks.prunable_leaves(mask, params_like)
    names = list(layers)
    caps = np.array([int(np.count_nonzero(np.asarray(m))) for m in layers.values()], np.int64)
    shapes = [tuple(int(d) for d in np.shape(m)) for m in layers.values()]
    sizes = [int(np.prod(s)) for s in shapes]
    # The authors' rules size layers from d*N and the full sizes, whatever the previous
    # level kept (which is below d*N while layers are capped); the others keep exactly
    # `target` of the unpruned weights.
    paper = allocation in ("balanced", "erk")
    limit = sum(sizes) if paper else int(caps.sum())
    if not 0 <= target <= limit:
        raise ValueError(f"cannot keep {target} weights: only {limit} "
                         f"{'prunable' if paper else 'unpruned'}")
    if allocation == "global":
        return None
    if paper:
        rule = _paper_balanced if allocation == "balanced" else _paper_erk
        planned = rule(target, sizes if allocation == "balanced" else shapes)
        counts = np.minimum(np.array(planned, np.int64), caps)
    else:
        if allocation in ("layerwise", "uniform"):
            weights = np.array(sizes, np.float64)
        elif allocation == "balanced_exact":
            weights = np.ones(len(names))
        else:  # erk_exact: density ~ sum(dims) / size, so count ~ sum(dims)
            weights = np.array([sum(s) for s in shapes], np.float64)
        counts = _water_fill(target, caps, weights)
    return dict(zip(names, (int(c) for c in counts)))


def planned_total(mask: PyTree, target: int, allocation: str,
                  params_like: PyTree | None = None) -> int:
    """Total prunable weights `prune(params, mask, target, allocation=...)` keeps.

    `target` for 'global' and the exact allocations; the sum of the authors'
    per-layer counts for 'balanced' and 'erk' (below `target` while some
    layer is capped). The level loop's density invariant compares the mask's
    count with this.
    """
    counts = planned_counts(mask, target, allocation, params_like)
    return target if counts is None else sum(counts.values())


def prune(params: PyTree, mask: PyTree, target: int, *, allocation: str = "global",
          score: str = "magnitude", seed: int = 0) -> PyTree:
    """The next mask: keep `planned_counts(mask, target, allocation)` of the unpruned weights.

    That is exactly `target` prunable weights for 'global' and the exact
    allocations, and the authors' per-layer counts for 'balanced' and 'erk'
    (`planned_total` gives the total).

    Args:
      params: the trained (raw) parameters; pruned entries are ignored.
      mask: the current mask; the new mask is a subset of it.
      target: the level's scheduled number of prunable weights, round(d * N).
      allocation: one of ALLOCATIONS.
      score: one of SCORES: 'magnitude' (|w|) or 'random'.
      seed: seed of the random scores.

    Returns:
      A mask pytree (float32 0/1 numpy arrays) with the structure of `params`.
    """
    if score == "magnitude":
        scores = magnitude_scores(params, mask)
    elif score == "random":
        scores = random_scores(params, mask, seed)
    else:
        raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
    sizes = {n: s.size for n, s in scores.items()}
    counts = planned_counts(mask, target, allocation, params)
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
