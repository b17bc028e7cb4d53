"""Masks and pruning on tiny literal trees with hand-computed answers, plus invariants."""

import numpy as np
import pytest

from lrr_jax import masks, pruning

# The scores computed from the parameters alone (no model, no data): every allocation test
# runs with each. SNIP and SynFlow need a model; their tests are at the end of this file.
PARAMETER_SCORES = ("magnitude", "random")


def tiny_params():
    return {
        "conv": {"kernel": np.array([[0.5, -3.0], [2.0, -0.1]], np.float32)},
        "bn": {"scale": np.array([0.01, 5.0], np.float32),
               "bias": np.array([0.0, 1.0], np.float32)},
        "dense": {"kernel": np.array([[1.0, -0.2, 4.0]], np.float32),
                  "bias": np.array([9.0, 9.0, 9.0], np.float32)},
    }


def test_prunable_leaves_are_kernels_only():
    flags = masks.prunable_flags(tiny_params())
    assert flags["conv"]["kernel"] and flags["dense"]["kernel"]
    assert not flags["bn"]["scale"] and not flags["bn"]["bias"] and not flags["dense"]["bias"]


def test_global_magnitude_hand_computed():
    params = tiny_params()
    mask = masks.ones_like(params)
    # Kernels' |w|: conv 0.5 3 2 0.1, dense 1 0.2 4. Keep 3 -> 4, 3, 2.
    new = pruning.prune(params, mask, 3)
    np.testing.assert_array_equal(new["conv"]["kernel"], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(new["dense"]["kernel"], [[0, 0, 1]])
    # BatchNorm and biases never pruned, even with tiny values.
    np.testing.assert_array_equal(new["bn"]["scale"], [1, 1])
    np.testing.assert_array_equal(new["dense"]["bias"], [1, 1, 1])
    assert masks.count(new) == (3, 7)


def test_layerwise_keeps_fraction_per_layer():
    params = tiny_params()
    new = pruning.prune(params, masks.ones_like(params), 4, allocation="layerwise")
    # 4 of 7: conv (4 weights) keeps 2 (3, 2), dense (3 weights) keeps 2 (4, 1).
    np.testing.assert_array_equal(new["conv"]["kernel"], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(new["dense"]["kernel"], [[1, 0, 1]])


def test_pruned_weights_stay_pruned_even_if_large():
    params = tiny_params()
    mask = masks.ones_like(params)
    mask["dense"]["kernel"] = np.array([[1, 1, 0]], np.float32)  # 4.0 is already pruned
    new = pruning.prune(params, mask, 2)
    np.testing.assert_array_equal(new["dense"]["kernel"], [[0, 0, 0]])
    np.testing.assert_array_equal(new["conv"]["kernel"], [[0, 1], [1, 0]])


def test_ties_broken_by_position():
    scores = np.array([1.0, 2.0, 2.0, 2.0, 0.5])
    np.testing.assert_array_equal(pruning.keep_top_k(scores, 2), [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pruning.keep_top_k(scores, 0), [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(pruning.keep_top_k(scores, 5), [1, 1, 1, 1, 1])


def test_cannot_keep_more_than_unpruned():
    params = tiny_params()
    mask = pruning.prune(params, masks.ones_like(params), 3)
    with pytest.raises(ValueError):
        pruning.prune(params, mask, 5)


def random_tree(rng):
    return {"a": {"kernel": rng.normal(size=(3, 3, 4, 8)).astype(np.float32)},
            "b": {"kernel": rng.normal(size=(8, 10)).astype(np.float32),
                  "bias": rng.normal(size=(10,)).astype(np.float32)},
            "c": {"kernel": rng.normal(size=(64, 5)).astype(np.float32)}}


EXACT = ("global", "layerwise", "uniform", "balanced_exact", "erk_exact")


@pytest.mark.parametrize("allocation", pruning.ALLOCATIONS)
@pytest.mark.parametrize("score", PARAMETER_SCORES)
def test_iterative_invariants(allocation, score):
    rng = np.random.default_rng(0)
    params = random_tree(rng)
    mask = masks.ones_like(params)
    total = masks.count(mask)[1]
    for level in range(1, 12):
        # Weights move between levels, as in training.
        params = {k: {n: v + 0.1 * rng.normal(size=v.shape).astype(np.float32)
                      for n, v in d.items()} for k, d in params.items()}
        target = masks.scheduled_count(total, 0.2, level)
        new = pruning.prune(params, mask, target, allocation=allocation, score=score, seed=level)
        kept = masks.count(new)[0]
        assert kept == pruning.planned_total(mask, target, allocation)
        if allocation in EXACT:
            assert kept == target  # exact density 0.8^k
        else:
            assert kept <= target + 3  # the authors' rules: at most one extra per layer
        planned = pruning.planned_counts(mask, target, allocation)
        if planned is not None:  # each layer keeps exactly the planned count
            assert {f"{k}/kernel": int(new[k]["kernel"].sum()) for k in params} == planned
        for key in params:
            if "kernel" in params[key]:
                old_m, new_m = mask[key]["kernel"], new[key]["kernel"]
                assert np.all(new_m <= old_m)  # masks only shrink
        if score == "magnitude" and allocation == "global":
            w = np.concatenate([np.abs(params[k]["kernel"]).ravel() for k in params])
            old = np.concatenate([mask[k]["kernel"].ravel() for k in params])
            m = np.concatenate([new[k]["kernel"].ravel() for k in params])
            pruned_now = (old > 0) & (m == 0)
            if pruned_now.any():
                assert w[m > 0].min() >= w[pruned_now].max()  # kept |w| >= pruned |w|
        np.testing.assert_array_equal(new["b"]["bias"], np.ones(10))
        mask = new
    if allocation in EXACT:
        assert abs(masks.density(mask) - 0.8 ** 11) < 1e-3


def counts_of(mask):
    return [int(mask[k]["kernel"].sum()) for k in ("a", "b", "c")]


# The toy tree's layers: a (3, 3, 4, 8) 288 weights, b (8, 10) 80, c (64, 5) 320; N = 688, L = 3.
# Kept counts below are worked out by hand from the authors' formulas (see each test).


@pytest.mark.parametrize("score", PARAMETER_SCORES)
def test_paper_balanced_hand_computed(score):
    params = random_tree(np.random.default_rng(1))
    ones = masks.ones_like(params)
    # target 400: X = 400 / 3 = 133.33. a: pruned int((1 - 133.33/288) * 288) = int(154.67)
    # = 154, keeps 134; b: 133.33 > 80, stays dense (80), its excess is NOT handed on;
    # c: pruned int((1 - 133.33/320) * 320) = int(186.67) = 186, keeps 134. Total 348 < 400.
    new = pruning.prune(params, ones, 400, allocation="balanced", score=score, seed=3)
    assert counts_of(new) == [134, 80, 134]
    assert pruning.planned_total(ones, 400, "balanced") == 348
    # target 150: X = 50 in every layer (no layer capped): 288 - int(238.0) = 50,
    # 80 - int(30.0) = 50, 320 - int(270.0) = 50.
    new = pruning.prune(params, ones, 150, allocation="balanced", score=score, seed=3)
    assert counts_of(new) == [50, 50, 50]
    # target 100: X = 33.33: a 288 - int(254.67) = 34, b 80 - int(46.67) = 34,
    # c 320 - int(286.67) = 34 (the pruned count is truncated: each layer keeps ceil(X)).
    assert counts_of(pruning.prune(params, ones, 100, allocation="balanced")) == [34, 34, 34]


@pytest.mark.parametrize("score", PARAMETER_SCORES)
def test_paper_erk_hand_computed(score):
    params = random_tree(np.random.default_rng(2))
    ones = masks.ones_like(params)
    # Dimension sums as the authors' ERK sees them: a 3+3+4+8 = 18; b and c are dense kernels,
    # 1x1 convolutions in their code: b 8+10+1+1 = 20, c 64+5+1+1 = 71. Sum 109.
    # target 400: C = 400 / 109 = 3.6697. a: density 3.6697 * 18/288 = 0.22936, pruned
    # int(0.77064 * 288) = int(221.94) = 221, keeps 67; b: 3.6697 * 20/80 = 0.91743, pruned
    # int(0.08257 * 80) = int(6.61) = 6, keeps 74; c: 3.6697 * 71/320 = 0.81422, pruned
    # int(0.18578 * 320) = int(59.45) = 59, keeps 261. Total 402 (truncation rounds kept up).
    new = pruning.prune(params, ones, 400, allocation="erk", score=score, seed=4)
    assert counts_of(new) == [67, 74, 261]
    # target 600: C = 5.5046. a: 0.34404, pruned int(0.65596 * 288) = int(188.92) = 188, keeps 100;
    # b: 1.376 -> clamped to 1, dense; c: 1.2213 -> 1, dense. Total 500: the excess is lost.
    new = pruning.prune(params, ones, 600, allocation="erk", score=score, seed=4)
    assert counts_of(new) == [100, 80, 320]
    assert pruning.planned_total(ones, 600, "erk") == 500


def test_paper_rules_never_exceed_the_unpruned():
    # A layer already sparser than the rule asks keeps what it has (the authors' kthvalue
    # threshold then lands on the pruned zeros), and the others are sized as usual.
    params = random_tree(np.random.default_rng(5))
    mask = masks.ones_like(params)
    mask["b"]["kernel"][:, 2:] = 0  # b keeps 16 of 80
    assert pruning.planned_counts(mask, 400, "balanced") == {
        "a/kernel": 134, "b/kernel": 16, "c/kernel": 134}
    new = pruning.prune(params, mask, 400, allocation="erk", score="random")
    assert counts_of(new) == [67, 16, 261]
    assert np.all(new["b"]["kernel"] <= mask["b"]["kernel"])


def test_exact_balanced_hands_the_excess_on():
    rng = np.random.default_rng(1)
    params = random_tree(rng)  # layer sizes 288, 80, 320
    new = pruning.prune(params, masks.ones_like(params), 150, allocation="balanced_exact",
                        score="random")
    assert counts_of(new) == [50, 50, 50]
    # 600: b is capped at 80; the other 520 split evenly between a and c: 260, 260.
    new = pruning.prune(params, masks.ones_like(params), 600, allocation="balanced_exact",
                        score="random")
    assert counts_of(new) == [260, 80, 260]


def test_exact_erk_hands_the_excess_on():
    rng = np.random.default_rng(2)
    params = random_tree(rng)
    # Standard ERK shares ~ sum of dims: a 18, b 18, c 69 (105). 210 = 2 * 105: 36, 36, 138.
    new = pruning.prune(params, masks.ones_like(params), 210, allocation="erk_exact",
                        score="random")
    assert counts_of(new) == [36, 36, 138]
    # 470: 470 * 18/105 = 80.57 for b exceeds its 80; the remaining 390 go 18 : 69 to a and c:
    # 80.69 and 309.31, floors 80 + 309, the one left over to the larger remainder (a): 81, 309.
    new = pruning.prune(params, masks.ones_like(params), 470, allocation="erk_exact",
                        score="random")
    assert counts_of(new) == [81, 80, 309]
    dens = {k: new[k]["kernel"].mean() for k in ("a", "b", "c")}
    assert dens["b"] > dens["a"]  # (8+10)/80 > (3+3+4+8)/288


def test_global_has_no_per_layer_plan():
    params = random_tree(np.random.default_rng(3))
    ones = masks.ones_like(params)
    assert pruning.planned_counts(ones, 300, "global") is None
    assert pruning.planned_total(ones, 300, "global") == 300
    with pytest.raises(ValueError, match="unknown allocation"):
        pruning.planned_counts(ones, 300, "erk_ish")
    with pytest.raises(ValueError, match="unknown score"):
        pruning.prune(params, ones, 300, score="grasp")


# The authors' CIFAR ResNet18 (models/resnet18.py) in their module order, PyTorch shapes
# (out, in, kh, kw); the classifier is a 1x1 convolution there (builder.conv1x1).
RESNET18_TORCH = (
    [(64, 3, 3, 3)] + [(64, 64, 3, 3)] * 4
    + [(128, 64, 3, 3), (128, 128, 3, 3), (128, 64, 1, 1)] + [(128, 128, 3, 3)] * 2
    + [(256, 128, 3, 3), (256, 256, 3, 3), (256, 128, 1, 1)] + [(256, 256, 3, 3)] * 2
    + [(512, 256, 3, 3), (512, 512, 3, 3), (512, 256, 1, 1)] + [(512, 512, 3, 3)] * 2
    + [(10, 512, 1, 1)])


def resnet18_mask():
    """A mask with the literal shapes above in Flax layout (HWIO; the classifier (in, out))."""
    def flax_shape(s):
        return (s[1], s[0]) if s[2:] == (1, 1) and s[:2] == (10, 512) else (s[2], s[3], s[1], s[0])
    return {f"l{i:02d}": {"kernel": np.ones(flax_shape(s), np.float32)}
            for i, s in enumerate(RESNET18_TORCH)}


def test_resnet18_shapes_are_the_models():
    import jax
    import jax.numpy as jnp
    import ml_collections

    from lrr_jax import models
    model = models.create(ml_collections.ConfigDict({"model": "resnet18"}), 10)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                                  jnp.zeros((1, 32, 32, 3)), train=False))
    real = sorted(tuple(x.shape) for x in masks.prunable_leaves(variables["params"]).values())
    ours = sorted(tuple(x["kernel"].shape) for x in resnet18_mask().values())
    assert real == ours


def test_resnet18_paper_densities_at_0_8():
    mask = resnet18_mask()
    sizes = [int(np.prod(s)) for s in RESNET18_TORCH]
    n_total, n_layers = sum(sizes), len(sizes)
    assert n_total == 11_164_352
    target = masks.scheduled_count(n_total, 0.2, 1)  # round(0.8 * N) = 8,931,482 = d * N
    # Balanced (Python floats, as their code): X = d*N/L; keep n - int((1 - min(X/n, 1)) * n).
    x = target / n_layers
    balanced = [n - int((1 - min(x / n, 1.0)) * n) for n in sizes]
    # ERK: C = d*N / sum over layers of (sum of dims); keep n - int((1 - clamp(C*dims/n)) * n).
    c = target / sum(sum(s) for s in RESNET18_TORCH)
    erk = [n - int((1 - min(max(c * sum(s) / n, 0.0), 1.0)) * n)
           for s, n in zip(RESNET18_TORCH, sizes)]
    names = [f"l{i:02d}/kernel" for i in range(n_layers)]
    assert pruning.planned_counts(mask, target, "balanced") == dict(zip(names, balanced))
    assert pruning.planned_counts(mask, target, "erk") == dict(zip(names, erk))
    # The nominal 0.8 density measures 0.369 (balanced) and 0.569 (ERK).
    assert round(pruning.planned_total(mask, target, "balanced") / n_total, 4) == 0.3685
    assert round(pruning.planned_total(mask, target, "erk") / n_total, 4) == 0.5692
    # Balanced: X = 8,931,482 / 21 = 425,308.67. Every layer smaller than that (stem, layer1,
    # layer2, layer3's first conv and shortcut, layer4's shortcut, classifier) stays dense;
    # the 3x3 convs of 256 and 512 channels keep 425,309 (the pruned count is truncated).
    assert balanced[:10] == sizes[:10] and balanced[-1] == 5_120
    assert balanced[-2] == 2_359_296 - int((1 - x / 2_359_296) * 2_359_296) == 425_309


def test_resnet18_erk_counts_in_float32():
    # The authors' ERK runs on float32 torch tensors. At d = 0.8^6 (target 2,926,668) the
    # layer4 3x3 convs (512*512*9 = 2,359,296 weights, dims 1030) get density
    # C * 1030 / 2359296 with C = 2926668 / 9275 = 315.5437...; in float64 the pruned count
    # (1 - 0.1377572086) * 2359296 = 2034285.97 truncates to 2034285 (keep 325,011), but
    # in float32 1 - density = 0.8622428 and the product rounds to 2034286.0: keep 325,010.
    mask = resnet18_mask()
    target = masks.scheduled_count(11_164_352, 0.2, 6)
    assert target == 2_926_668
    counts = pruning.planned_counts(mask, target, "erk")
    big = [i for i, s in enumerate(RESNET18_TORCH) if s == (512, 512, 3, 3)]
    assert [counts[f"l{i:02d}/kernel"] for i in big] == [325_010] * 3


def test_scheduled_count():
    assert masks.scheduled_count(11_164_352, 0.2, 0) == 11_164_352
    assert masks.scheduled_count(1000, 0.2, 1) == 800
    assert masks.scheduled_count(1000, 0.2, 11) == round(0.8 ** 11 * 1000)


@pytest.mark.parametrize("allocation", ["balanced", "erk"])
def test_paper_rules_along_the_schedule_after_capped_levels(allocation):
    """Level k is sized from d_k * N and the full layer sizes (the authors' rule), although
    level k-1 kept fewer than d_k * N: the quickstart MLP's 0.8-level keeps 33,690 of 78,336
    (balanced), below level 2's 0.64 * N = 50,135. Counts hand-computed per level."""
    shapes = [(40, 256), (256, 256), (256, 10)]  # the quickstart MLP's kernels
    params = {f"l{i}": {"kernel": np.random.default_rng(i).standard_normal(s).astype(np.float32)}
              for i, s in enumerate(shapes)}
    sizes = [a * b for a, b in shapes]
    n = sum(sizes)
    mask = masks.ones_like(params)
    for level in range(1, 8):
        target = masks.scheduled_count(n, 0.2, level)
        if allocation == "balanced":
            x = target / 3
            want = [m - int((1 - min(x / m, 1.0)) * m) for m in sizes]
        else:  # ERK, a 2-D kernel counted as (out, in, 1, 1)
            dims = [a + b + 2 for a, b in shapes]
            c = target / sum(dims)
            want = [m - int((1 - min(max(c * d / m, 0.0), 1.0)) * m)
                    for d, m in zip(dims, sizes)]
        new = pruning.prune(params, mask, target, allocation=allocation, score="random",
                            seed=level)
        got = [int(np.asarray(new[f"l{i}"]["kernel"]).sum()) for i in range(3)]
        assert got == want, (level, got, want)
        for i in range(3):  # nested: nothing pruned comes back
            old, now = np.asarray(mask[f"l{i}"]["kernel"]), np.asarray(new[f"l{i}"]["kernel"])
            assert np.all(now <= old)
        assert pruning.planned_total(mask, target, allocation) == sum(want)
        mask = new
    if allocation == "balanced":
        assert masks.scheduled_count(n, 0.2, 2) == 50_135 > 33_690 == sum(
            m - int((1 - min(masks.scheduled_count(n, 0.2, 1) / 3 / m, 1.0)) * m)
            for m in sizes)


# --- scores with a context: SNIP and SynFlow -------------------------------------------------


def _tiny_model():
    """Dense(4 -> 3) -> BatchNorm -> ReLU -> Dense(3 -> 2), with hand-chosen parameters."""
    import flax.linen as nn

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Dense(3, name="d1")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             name="bn")(x)
            return nn.Dense(2, name="d2")(nn.relu(x))

    params = {
        "d1": {"kernel": np.array([[0.5, -1.0, 0.3], [2.0, 0.1, -0.4], [-0.7, 0.8, 1.5],
                                   [0.2, -0.3, 0.6]], np.float32),
               "bias": np.array([0.1, -0.2, 0.3], np.float32)},
        "bn": {"scale": np.array([1.5, -0.5, 0.8], np.float32),
               "bias": np.array([0.2, 0.4, -0.1], np.float32)},
        "d2": {"kernel": np.array([[1.0, -2.0], [0.5, 0.25], [-1.5, 0.75]], np.float32),
               "bias": np.array([0.05, -0.05], np.float32)},
    }
    stats = {"bn": {"mean": np.array([0.3, -0.6, 0.2], np.float32),
                    "var": np.array([0.5, 2.0, 1.2], np.float32)}}
    mask = masks.ones_like(params)
    mask["d1"]["kernel"][1, 2] = 0  # already pruned
    mask["d2"]["kernel"][2, 0] = 0
    return Tiny(), params, stats, mask


def _bn_eval(z, scale, bias, stats):
    return (z - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * scale + bias


def test_snip_matches_hand_computed_gradient():
    model, params, stats, mask = _tiny_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1])
    ctx = pruning.ScoreContext(params=params, mask=mask, batch_stats=stats,
                               apply_fn=model.apply, batch=lambda: (x, y))
    got = pruning.snip_scores(ctx)

    # By hand: forward with the masked weights, BatchNorm on its running statistics
    # (eval mode, as the authors' model after `validate`), mean cross-entropy.
    x64 = x.astype(np.float64)
    w1 = params["d1"]["kernel"] * mask["d1"]["kernel"]
    w2 = params["d2"]["kernel"] * mask["d2"]["kernel"]
    z1 = x64 @ w1 + params["d1"]["bias"]
    inv = params["bn"]["scale"] / np.sqrt(stats["bn"]["var"] + 1e-5)
    a = _bn_eval(z1, params["bn"]["scale"], params["bn"]["bias"], stats["bn"])
    h = np.maximum(a, 0)
    z2 = h @ w2 + params["d2"]["bias"]
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz2 = (p - np.eye(2)[y]) / len(y)
    g2 = h.T @ dz2  # dL/d(w2 * m2)
    dz1 = (dz2 @ w2.T) * (a > 0) * inv
    g1 = x64.T @ dz1  # dL/d(w1 * m1)
    # |g * w| on unpruned weights (w the raw weight), -1 on pruned ones.
    want1 = np.where(mask["d1"]["kernel"] > 0, np.abs(g1 * params["d1"]["kernel"]), -1)
    want2 = np.where(mask["d2"]["kernel"] > 0, np.abs(g2 * params["d2"]["kernel"]), -1)
    assert set(got) == {"d1/kernel", "d2/kernel"}
    np.testing.assert_allclose(got["d1/kernel"], want1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["d2/kernel"], want2, rtol=1e-5, atol=1e-7)
    assert got["d1/kernel"][1, 2] == -1 and got["d2/kernel"][2, 0] == -1


def test_synflow_matches_hand_computed_flow_and_loads_no_data():
    model, params, stats, mask = _tiny_model()

    def no_data():
        raise AssertionError("SynFlow is data-free: batch() must not be called")

    ctx = pruning.ScoreContext(params=params, mask=mask, batch_stats=stats,
                               apply_fn=model.apply, batch=no_data, input_shape=(4,))
    got = pruning.synflow_scores(ctx)

    # By hand: every parameter and running statistic made positive (the authors'
    # `linearize`), pruned kernel entries zero, one all-ones input, BatchNorm in eval mode,
    # R = sum of the logits; score |dR/d(|w| m)| * |w| on unpruned weights.
    a1 = np.abs(params["d1"]["kernel"]) * mask["d1"]["kernel"]
    a2 = np.abs(params["d2"]["kernel"]) * mask["d2"]["kernel"]
    positive_stats = {k: np.abs(v) for k, v in stats["bn"].items()}
    z1 = np.ones(4) @ a1 + np.abs(params["d1"]["bias"])
    bn = _bn_eval(z1, np.abs(params["bn"]["scale"]), np.abs(params["bn"]["bias"]),
                  positive_stats)
    h = np.maximum(bn, 0)
    assert (bn > 0).all()  # the hand formula below assumes every unit is active
    slope = np.abs(params["bn"]["scale"]) / np.sqrt(positive_stats["var"] + 1e-5)
    upstream = a2.sum(1)  # dR/dh_i = sum_j |w2_ij| m_ij
    g1 = np.outer(np.ones(4), upstream * slope)  # dR/dA1_ki = x_k * dR/dh_i * slope_i
    g2 = np.outer(h, np.ones(2))  # dR/dA2_ij = h_i
    want1 = np.where(mask["d1"]["kernel"] > 0, g1 * np.abs(params["d1"]["kernel"]), -1)
    want2 = np.where(mask["d2"]["kernel"] > 0, g2 * np.abs(params["d2"]["kernel"]), -1)
    np.testing.assert_allclose(got["d1/kernel"], want1, rtol=1e-5)
    np.testing.assert_allclose(got["d2/kernel"], want2, rtol=1e-5)

    # Without input_shape, one example's shape comes from a batch (as the authors do).
    ctx = pruning.ScoreContext(params=params, mask=mask, batch_stats=stats,
                               apply_fn=model.apply,
                               batch=lambda: (np.zeros((7, 4), np.float32), np.zeros(7)))
    np.testing.assert_allclose(pruning.synflow_scores(ctx)["d1/kernel"], want1, rtol=1e-5)


@pytest.mark.parametrize("allocation", ["global", "layerwise"])
def test_synflow_rounds_are_repeated_single_rounds(allocation):
    # Three rounds from c0 to T = single-round SynFlow pruning to round(c0 * (T / c0)^(1/3)),
    # then to round(c0 * (T / c0)^(2/3)), then to T, each on the mask of the one before
    # (Tanaka et al.'s exponential schedule; per layer for a per-layer allocation).
    import functools

    params, context = _lenet_context()
    mask = masks.ones_like(params)
    c0 = masks.count(mask)[0]
    target = masks.scheduled_count(c0, 0.5, 5)  # density 1/32
    three = functools.partial(pruning.synflow_scores, rounds=3)
    got = pruning.prune(params, mask, target, allocation=allocation, score=three,
                        context=context)
    final = pruning.planned_counts(mask, target, allocation, params)
    step = mask
    for r in (1, 2):
        if final is None:
            k = int(round(c0 * (target / c0) ** (r / 3)))
            step = pruning.prune(params, step, k, score="synflow", context=context)
        else:  # each layer on its own schedule: a per-layer plan, global ranking within it
            sizes = {n: int(np.size(m)) for n, m in masks.prunable_leaves(mask).items()}
            plan = {n: int(round(sizes[n] * (final[n] / sizes[n]) ** (r / 3))) for n in sizes}
            step = pruning.prune(params, step, sum(plan.values()), score=lambda ctx, plan=plan: {
                n: np.where(pruning.keep_top_k(s, plan[n]), s, -1)
                for n, s in pruning.synflow_scores(ctx).items()}, context=context)
    want = pruning.prune(params, step, target, allocation=allocation, score="synflow",
                         context=context)
    for name in ("dense1", "dense2", "fc"):
        np.testing.assert_array_equal(got[name]["kernel"], want[name]["kernel"])
    assert masks.count(got)[0] == target
    one_round = pruning.prune(params, mask, target, allocation=allocation, score="synflow",
                              context=context)
    assert any((one_round[n]["kernel"] != got[n]["kernel"]).any()
               for n in ("dense1", "dense2", "fc"))  # the rounds matter here


def _lenet_context(width=0.05, seed=0):
    import jax
    import ml_collections

    from lrr_jax import models

    model = models.create(ml_collections.ConfigDict({"model": "lenet_300_100",
                                                     "width": width}), 10)
    x = np.random.default_rng(seed).normal(size=(16, 28, 28, 1)).astype(np.float32)
    y = np.arange(16) % 10
    variables = model.init(jax.random.PRNGKey(seed), x[:1], train=False)
    params = jax.tree.map(np.asarray, variables["params"])
    return params, pruning.ScoreContext(apply_fn=model.apply, input_shape=(28, 28, 1),
                                        batch=lambda: (x, y))


@pytest.mark.parametrize("allocation", ["global", "layerwise", "erk", "balanced_exact"])
@pytest.mark.parametrize("score", ["snip", "synflow", "synflow_iterative"])
def test_context_scores_keep_exactly_the_planned_count(allocation, score):
    params, context = _lenet_context()
    mask = masks.ones_like(params)
    total = masks.count(mask)[1]
    for level in range(1, 4):
        target = masks.scheduled_count(total, 0.5, level)
        new = pruning.prune(params, mask, target, allocation=allocation, score=score,
                            seed=level, context=context)
        assert masks.count(new)[0] == pruning.planned_total(mask, target, allocation)
        planned = pruning.planned_counts(mask, target, allocation, params)
        if planned is not None:
            assert {k: int(v.sum()) for k, v in masks.prunable_leaves(new).items()} == planned
        else:
            assert masks.count(new)[0] == target
        for old, now in zip(masks.prunable_leaves(mask).values(),
                            masks.prunable_leaves(new).values()):
            assert np.all(now <= old)  # nested
        for name in ("dense1", "dense2", "fc"):  # biases never pruned
            np.testing.assert_array_equal(new[name]["bias"], 1)
        mask = new


def test_context_scores_differ_from_magnitude_on_a_small_mlp():
    params, context = _lenet_context(width=0.2)
    mask = masks.ones_like(params)
    target = masks.scheduled_count(masks.count(mask)[1], 0.2, 3)
    ref = masks.prunable_leaves(pruning.prune(params, mask, target))
    for score in ("snip", "synflow", "synflow_iterative"):
        new = masks.prunable_leaves(pruning.prune(params, mask, target, score=score,
                                                  context=context))
        differ = sum(int((new[k] != ref[k]).sum()) for k in ref)
        assert differ > 0.05 * target, score
    # SynFlow's layer-collapse avoidance: it keeps relatively more of the small output layer.
    syn = masks.prunable_leaves(pruning.prune(params, mask, target, score="synflow_iterative",
                                              context=context))
    assert syn["fc/kernel"].mean() >= ref["fc/kernel"].mean()


def test_scores_registry_and_context_errors():
    assert set(pruning.SCORES) >= {"magnitude", "random", "snip", "synflow"}
    params = tiny_params()
    ones = masks.ones_like(params)
    with pytest.raises(ValueError, match="needs the model"):
        pruning.prune(params, ones, 3, score="snip")
    with pytest.raises(ValueError, match="needs the model"):
        pruning.prune(params, ones, 3, score="synflow")

    # A new score is one function of the context: here the negative magnitude (signed, any
    # real number), registered by one line; pruned weights stay pruned.
    def smallest(ctx):
        return {name: -np.abs(w) for name, w in masks.prunable_leaves(ctx.params).items()}

    pruning.SCORES["smallest"] = smallest
    try:
        mask = ones.copy()
        mask["dense"] = {"kernel": np.array([[1, 0, 1]], np.float32),
                         "bias": np.ones(3, np.float32)}
        new = pruning.prune(params, mask, 3, score="smallest")
        # Unpruned |w|: conv 0.5 3 2 0.1, dense 1 (0.2 pruned) 4: the three smallest.
        np.testing.assert_array_equal(new["conv"]["kernel"], [[1, 0], [0, 1]])
        np.testing.assert_array_equal(new["dense"]["kernel"], [[1, 0, 0]])
    finally:
        del pruning.SCORES["smallest"]
    with pytest.raises(ValueError, match="NaN"):
        pruning.prune(params, ones, 3, score=lambda ctx: {
            n: np.full(np.shape(w), np.nan) for n, w in masks.prunable_leaves(ctx.params).items()})
