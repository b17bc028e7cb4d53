"""Pruning as three small pure functions: score, allocation, exact top-k.

* Scores (SCORES, a dict name -> `fn(ctx) -> {layer name: scores}`): each gets
  one `ScoreContext` (params, mask, BatchNorm statistics, the model's apply
  function, a seed/key, a batch of training data on demand, and the step's
  planned counts) and returns a score per prunable weight; the highest are
  kept. Pruned weights score -1 (and `prune` ranks them below everything), so
  they stay pruned and never win a tie. Registered:
  - 'magnitude': |w| of unpruned weights;
  - 'random': fresh uniform draws each level, within the current mask, as the
    authors' `|mask * randn|`;
  - 'snip': |g * w| on one training batch (`snip_scores`, the authors' `prune_snip`);
  - 'synflow': |dR/dtheta * theta| of the all-positive network on an all-ones
    input, data-free (`synflow_scores`, the authors' `prune_synflow`: one round
    per pruning step); 'synflow_iterative' prunes in `SYNFLOW_ROUNDS` rounds on
    an exponential schedule within each step (Tanaka et al. 2020).
  A new score is one function of the context and one line `SCORES[name] = fn`.
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

These run once per level on the host, off the training hot path, on one
replica's (unstacked) parameters. The global threshold comes from a
linear-time selection (`kth_largest`), not a full sort.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrr_jax import masks

PyTree = Any
# Rounds of 'synflow_iterative' within one pruning step: Tanaka et al. (2020) prune
# in 100 iterations on the exponential schedule of `prune_loop` (ganguli-lab/Synaptic-Flow).
SYNFLOW_ROUNDS = 100


@dataclasses.dataclass(frozen=True)
class ScoreContext:
    """Everything a score may use, for one replica at one pruning step.

    `prune` fills `params`, `mask`, `seed`, `target`, `counts` and `allocation`;
    the caller supplies the model parts (`apply_fn`, `batch_stats`,
    `input_shape`, `batch`) when the score needs them. Data-free scores never
    call `batch`, so no data is loaded for them.

    Attributes:
        params: raw parameters of one replica (host or device arrays, not stacked);
            the forward pass uses `masks.apply(params, mask)`.
        mask: the current mask (0/1 leaves, the structure of `params`).
        batch_stats: the BatchNorm running statistics ({} or None without BatchNorm).
        apply_fn: the Flax model's `apply`, called as
            `apply_fn({'params': ..., 'batch_stats': ...}, x, train=..., mutable=...)`.
        seed: an integer seed for random scores (`key` is its PRNG key).
        batch: returns one batch `(x, y)` of training data on demand: `x` as the model
            takes it (float, normalized), `y` int labels.
        input_shape: one example's shape as the model takes it, e.g. (32, 32, 3); for
            data-free scores (SynFlow). None: taken from `batch()` (as the authors do).
        target: the number of prunable weights this step keeps (set by `prune`).
        counts: {layer name: kept count} of this step, or None for 'global' (set by `prune`).
        allocation: the step's allocation rule (set by `prune`).
    """

    params: PyTree = None
    mask: PyTree = None
    batch_stats: PyTree = None
    apply_fn: Callable | None = None
    seed: int = 0
    batch: Callable[[], tuple[Any, Any]] | None = None
    input_shape: tuple[int, ...] | None = None
    target: int | None = None
    counts: dict[str, int] | None = None
    allocation: str = "global"

    @property
    def key(self) -> jax.Array:
        """`jax.random.PRNGKey(seed)`."""
        return jax.random.PRNGKey(int(self.seed))

    def variables(self, params: PyTree, batch_stats: PyTree | None = None) -> dict:
        """Flax variables {'params': params, 'batch_stats': ...} (no empty statistics)."""
        stats = self.batch_stats if batch_stats is None else batch_stats
        return {"params": params, "batch_stats": stats} if stats else {"params": params}

    def example_shape(self) -> tuple[int, ...]:
        """`input_shape`, or the shape of one example of `batch()` when it is not set."""
        if self.input_shape is not None:
            return tuple(int(d) for d in self.input_shape)
        if self.batch is None:
            raise ValueError("the score needs the model's input shape: set "
                             "ScoreContext.input_shape (or batch)")
        return tuple(np.shape(self.batch()[0])[1:])


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
        raise ValueError(f"unknown allocation {allocation!r}; expected one of "
                         f"{tuple(ALLOCATIONS)}")
    layers = masks.prunable_leaves(mask, params_like)
    caps = np.array([int(np.count_nonzero(np.asarray(m))) for m in layers.values()], np.int64)
    shapes = [tuple(int(d) for d in np.shape(m)) for m in layers.values()]
    counts = ALLOCATIONS[allocation](target, caps, shapes)
    return None if counts is None else dict(zip(layers, (int(c) for c in counts)))


def _exact(target: int, caps: np.ndarray) -> None:
    if not 0 <= target <= int(caps.sum()):
        raise ValueError(f"cannot keep {target} weights: only {int(caps.sum())} unpruned")


def allocate_global(target, caps, shapes):
    """One ranking over all layers decides the split (None: no per-layer counts)."""
    _exact(target, caps)
    return None


def _water_filled(weights_of):
    def allocate(target, caps, shapes):
        _exact(target, caps)
        return _water_fill(target, caps, np.asarray(weights_of(shapes), np.float64))
    return allocate


def _authors(rule, of_shapes: bool):
    """The authors' rules size layers from d*N and the full sizes, whatever the previous
    level kept (below d*N while layers are capped); a layer never keeps more than it has
    unpruned."""
    def allocate(target, caps, shapes):
        sizes = [int(np.prod(s)) for s in shapes]
        if not 0 <= target <= sum(sizes):
            raise ValueError(f"cannot keep {target} weights: only {sum(sizes)} prunable")
        return np.minimum(np.array(rule(target, shapes if of_shapes else sizes), np.int64),
                          caps)
    return allocate


# The registry: allocation (config key `pruning`) -> fn(target, unpruned per layer,
# layer shapes) -> kept count per layer (None: 'global'). A config file may add one.
ALLOCATIONS = {
    "global": allocate_global,
    "layerwise": _water_filled(lambda shapes: [np.prod(s) for s in shapes]),
    "uniform": _water_filled(lambda shapes: [np.prod(s) for s in shapes]),
    "balanced": _authors(lambda t, sizes: _paper_balanced(t, sizes), of_shapes=False),
    "erk": _authors(lambda t, shapes: _paper_erk(t, shapes), of_shapes=True),
    "balanced_exact": _water_filled(lambda shapes: [1.0] * len(shapes)),
    # density ~ sum(dims) / size, so count ~ sum(dims)
    "erk_exact": _water_filled(lambda shapes: [sum(s) for s in shapes]),
}


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


def score_magnitude(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """'magnitude': `magnitude_scores(ctx.params, ctx.mask)`, |w| of the unpruned weights."""
    return magnitude_scores(ctx.params, ctx.mask)


def score_random(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """'random': `random_scores(ctx.params, ctx.mask, ctx.seed)`, uniform draws."""
    return random_scores(ctx.params, ctx.mask, ctx.seed)


def _require_model(ctx: ScoreContext, score: str) -> None:
    if ctx.apply_fn is None:
        raise ValueError(f"score {score!r} needs the model: pass prune(..., context="
                         "ScoreContext(apply_fn=model.apply, batch_stats=..., ...))")


def _masked_scores(grads: PyTree, weights: PyTree, mask: PyTree) -> dict[str, np.ndarray]:
    """|grad * weight| per prunable layer, -1 where `mask` is 0 (host float32)."""
    g = masks.prunable_leaves(grads, weights)
    w = masks.prunable_leaves(weights)
    m = masks.prunable_leaves(mask, weights)
    out = {}
    for name in w:
        product = np.asarray(g[name], np.float32) * np.asarray(w[name], np.float32)
        out[name] = np.where(np.asarray(m[name]) > 0, np.abs(product), -1.0).astype(np.float32)
    return out


def snip_scores(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """'snip': |dL/dw * w| on one training batch (Lee et al. 2019), as the authors compute it.

    imp-lrr-lts `main.py`, `prune_snip`: after a level's training (the model is
    in eval mode, `validate` ran last), zero the gradients, take the first
    batch of the (shuffled, augmented) training loader, back-propagate the
    mean cross-entropy, and score every `ConvMask` weight by
    `|weight.grad * weight * mask|`. Their forward uses `mask * weight`, so
    `weight.grad` is the gradient g with respect to the masked weight times the
    mask: the score is |g * w| on unpruned weights and 0 on pruned ones. Here:
    g = d mean-CE / d(w * m) of `ctx.batch()` at the masked weights, BatchNorm
    with its running statistics (their eval mode), the raw (unmasked) w, and -1
    on pruned weights.
    Unlike their `kthvalue` threshold (which prunes every score <= it, ties
    included), `prune` keeps exactly the planned count.

    Args:
        ctx: needs `apply_fn` and `batch`; uses `batch_stats` when the model has BatchNorm.

    Returns:
        {layer name: float32 scores}, -1 for pruned weights.
    """
    _require_model(ctx, "snip")
    if ctx.batch is None:
        raise ValueError("score 'snip' needs training data: set ScoreContext.batch")
    x, y = ctx.batch()
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.int32)

    def loss(effective):
        logits = ctx.apply_fn(ctx.variables(effective), x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.jit(jax.grad(loss))(masks.apply(ctx.params, ctx.mask))
    scores = _masked_scores(grads, ctx.params, ctx.mask)
    if any(np.isnan(v).any() for v in scores.values()):
        raise ValueError("score 'snip': the loss gradient has NaNs")
    return scores


def synflow_gradients(ctx: ScoreContext) -> Callable[[PyTree], PyTree]:
    """The SynFlow gradient as a compiled function of the mask.

    The network is made all-positive: every parameter (kernels, biases,
    BatchNorm scale and bias) and every BatchNorm running statistic is replaced
    by its absolute value, as the authors' `linearize` does to the whole
    `state_dict`; pruned kernel entries are zero (the forward pass uses
    |w| * m). R = sum of the logits for one all-ones input of the model's input
    shape, BatchNorm in eval mode (running statistics, the authors' and Tanaka
    et al.'s `model.eval()`).

    Returns:
        `grad(mask) -> dR/d(|w| * m)`, a pytree like `ctx.params`.
    """
    positive = jax.tree.map(lambda v: jnp.abs(jnp.asarray(v, jnp.float32)), ctx.params)
    stats = jax.tree.map(lambda v: jnp.abs(jnp.asarray(v)), ctx.batch_stats or {})
    ones = jnp.ones((1, *ctx.example_shape()), jnp.float32)

    def flow(mask):
        def total(effective):
            return jnp.sum(ctx.apply_fn(ctx.variables(effective, stats), ones, train=False))

        return jax.grad(total)(masks.apply(positive, mask))

    return jax.jit(flow)


def synflow_scores(ctx: ScoreContext, *, rounds: int = 1) -> dict[str, np.ndarray]:
    """'synflow': data-free |dR/dtheta * theta| of the all-positive network (Tanaka et al. 2020).

    As the authors' imp-lrr-lts `main.py`, `prune_synflow`, which follows
    Tanaka et al.'s SynFlow pruner: `linearize` (every `state_dict` entry to its
    absolute value), an all-ones input of one example's shape (taken from a
    training batch there; `ctx.input_shape` here, so no data is loaded), the
    model in eval mode (their `validate` ran last), `sum(model(input)).backward()`,
    score `|mask * weight.grad * weight|` = |dR/d(|w| m)| * |w| on unpruned
    weights; then the signs are restored (`nonlinearize`). float32, as theirs
    (`model.double()` is commented out there): the output grows exponentially
    with depth, and ResNet-56 overflows at initialization (a ValueError here;
    inf/NaN scores in float32 PyTorch); ResNet-20, VGG-16/19 stay finite.

    Differences: their `prune_synflow` does not zero the gradients before the
    backward pass (only after it), so their scores also hold the last training
    step's gradient times |w|; that is left out here. Their threshold prunes every
    score <= the k-th value (ties included); here the planned count is kept exactly.

    Rounds: the authors score once per pruning step (one call per level, the
    level loop's 0.8^k schedule being the iteration). With `rounds` R > 1 the
    step is itself iterated as Tanaka et al.'s `prune_loop`: from the c0
    unpruned weights to the target T, round r (1..R-1) recomputes the scores on
    the current mask and keeps round(c0 * (T / c0)^(r / R)) (their exponential
    schedule; per layer for a per-layer allocation, never below the layer's
    final count); the scores of round R are returned, with -1 on every weight
    pruned so far, so `prune` keeps exactly the planned count from them.

    Args:
        ctx: needs `apply_fn` and `input_shape` (or `batch`); `target` and `counts`
            (set by `prune`) when `rounds` > 1.
        rounds: pruning rounds within this step (1 = the authors').

    Returns:
        {layer name: float32 scores}, -1 for pruned weights.

    Raises:
        ValueError: missing context, or non-finite scores (float32 overflow).
    """
    _require_model(ctx, "synflow")
    rounds = int(rounds)
    if rounds < 1:
        raise ValueError(f"synflow needs rounds >= 1, got {rounds}")
    if rounds > 1 and ctx.target is None:
        raise ValueError("synflow with several rounds needs the step's target: call it "
                         "through prune()")
    grad = synflow_gradients(ctx)
    mask = jax.tree.map(lambda m: np.asarray(m, np.float32), ctx.mask)
    positive = jax.tree.map(lambda v: np.abs(np.asarray(v, np.float32)), ctx.params)
    start = {n: int(np.count_nonzero(m)) for n, m in masks.prunable_leaves(mask, positive).items()}
    for r in range(1, rounds + 1):
        scores = _masked_scores(grad(mask), positive, mask)
        if not all(np.isfinite(v).all() for v in scores.values()):
            raise ValueError("score 'synflow': non-finite scores: the all-positive network's "
                             "output overflows float32 (it grows with depth: ResNet-56 at "
                             "initialization does; ResNet-20 and VGG-19 reach ~1e23)")
        if r == rounds:
            return scores
        keep = _round_keep(scores, start, ctx, r / rounds)
        mask = _with_layers(mask, ctx.params, keep)
    raise AssertionError("unreachable")


def synflow_iterative_scores(ctx: ScoreContext) -> dict[str, np.ndarray]:
    """'synflow_iterative': `synflow_scores` in `SYNFLOW_ROUNDS` rounds within each step."""
    return synflow_scores(ctx, rounds=SYNFLOW_ROUNDS)


def _round_keep(scores: dict[str, np.ndarray], start: dict[str, int], ctx: ScoreContext,
                fraction: float) -> dict[str, np.ndarray]:
    """Which weights survive an intermediate round of a pruning step.

    c0 * (T / c0)^fraction of them, c0 the unpruned count at the start of the
    step and T its planned count (over all layers for 'global', per layer
    otherwise), never fewer than T.
    """

    def count(unpruned: int, final: int) -> int:
        if unpruned == 0:
            return 0
        return min(unpruned, max(final, int(round(unpruned * (final / unpruned) ** fraction))))

    if ctx.counts is None:
        names = list(scores)
        flat = np.concatenate([scores[n].reshape(-1) for n in names])
        keep_flat = keep_top_k(flat, count(sum(start.values()), int(ctx.target)))
        offsets = np.cumsum([0] + [scores[n].size for n in names])
        return {n: keep_flat[offsets[i]:offsets[i + 1]].reshape(scores[n].shape)
                for i, n in enumerate(names)}
    return {n: keep_top_k(s, count(start[n], int(ctx.counts[n]))) for n, s in scores.items()}


def _with_layers(mask: PyTree, params_like: PyTree, layers: dict[str, np.ndarray]) -> PyTree:
    """`mask` with its prunable leaves replaced by `layers` (float32 0/1)."""

    def leaf(path, old, _):
        name = masks.path_name(path)
        return layers[name].astype(np.float32) if name in layers else old

    return jax.tree_util.tree_map_with_path(leaf, mask, params_like)


# The registry: score name (config key `score`) -> fn(ScoreContext) -> {layer: scores}.
SCORES = {
    "magnitude": score_magnitude,
    "random": score_random,
    "snip": snip_scores,
    "synflow": synflow_scores,
    "synflow_iterative": synflow_iterative_scores,
}


def _checked_scores(raw: dict, mask: PyTree, params: PyTree, score: str) -> dict[str, np.ndarray]:
    """A score function's output as float32 arrays, pruned weights at -inf (ranked last).

    Raises:
        ValueError: a missing or misshapen layer, or NaN on an unpruned weight.
    """
    current = masks.prunable_leaves(mask, params)
    out = {}
    for name, m in current.items():
        if name not in raw:
            raise ValueError(f"score {score!r} returned no scores for layer {name!r}")
        s = np.asarray(raw[name], np.float32)
        if s.shape != np.shape(m):
            raise ValueError(f"score {score!r}: layer {name!r} has shape {s.shape}, "
                             f"expected {np.shape(m)}")
        unpruned = np.asarray(m) > 0
        if np.isnan(s).any() and np.isnan(s[unpruned]).any():
            raise ValueError(f"score {score!r}: NaN scores in layer {name!r}")
        out[name] = np.where(unpruned, s, np.float32(-np.inf))
    return out


def prune(params: PyTree, mask: PyTree, target: int, *, allocation: str = "global",
          score: str | Callable = "magnitude", seed: int = 0,
          context: ScoreContext | None = None) -> PyTree:
    """The next mask: keep `planned_counts(mask, target, allocation)` of the unpruned weights.

    That is exactly `target` prunable weights for 'global' and the exact
    allocations, and the authors' per-layer counts for 'balanced' and 'erk'
    (`planned_total` gives the total), whatever the score.

    Args:
      params: the trained (raw) parameters of one replica; pruned entries are ignored.
      mask: the current mask; the new mask is a subset of it.
      target: the level's scheduled number of prunable weights, round(d * N).
      allocation: one of ALLOCATIONS.
      score: a key of SCORES ('magnitude', 'random', 'snip', 'synflow', ...) or a
        function of a `ScoreContext`.
      seed: seed of the random scores (`ScoreContext.seed`).
      context: the model parts a score needs (`apply_fn`, `batch_stats`,
        `input_shape`, `batch`); `params`, `mask`, `seed`, `target`, `counts` and
        `allocation` are filled in from this call. None: a context without a model,
        enough for 'magnitude' and 'random'.

    Returns:
      A mask pytree (float32 0/1 numpy arrays) with the structure of `params`.
    """
    if callable(score):
        fn, name = score, getattr(score, "__name__", "custom")
    elif score in SCORES:
        fn, name = SCORES[score], score
    else:
        raise ValueError(f"unknown score {score!r}; expected one of {tuple(SCORES)}")
    counts = planned_counts(mask, target, allocation, params)
    ctx = dataclasses.replace(context if context is not None else ScoreContext(),
                              params=params, mask=mask, seed=seed, target=target,
                              counts=counts, allocation=allocation)
    scores = _checked_scores(fn(ctx), mask, params, name)
    sizes = {n: s.size for n, s in scores.items()}
    if counts is None:
        names = list(scores)
        flat = np.concatenate([scores[n].reshape(-1) for n in names])
        keep_flat = keep_top_k(flat, target)
        offsets = np.cumsum([0] + [sizes[n] for n in names])
        keep = {n: keep_flat[offsets[i]:offsets[i + 1]].reshape(scores[n].shape)
                for i, n in enumerate(names)}
    else:
        keep = {n: keep_top_k(scores[n], counts[n]) for n in scores}
    if any((k & (scores[n] == -np.inf)).any() for n, k in keep.items()):
        raise ValueError(f"cannot keep {target} weights: fewer are unpruned")

    def new_leaf(path, leaf, old):
        name = masks.path_name(path)
        if name in keep:
            return keep[name].astype(np.float32)
        return np.asarray(old, np.float32)

    return jax.tree_util.tree_map_with_path(new_leaf, params, mask)
