"""Masks and pruning on tiny literal trees with hand-computed answers, plus invariants."""

import numpy as np
import pytest

from lrr_jax import masks, pruning


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


@pytest.mark.parametrize("allocation", pruning.ALLOCATIONS)
@pytest.mark.parametrize("score", ["magnitude", "random"])
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
        assert masks.count(new)[0] == target  # exact density 0.8^k
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
    assert abs(masks.density(mask) - 0.8 ** 11) < 1e-3


def test_balanced_same_count_per_layer_where_possible():
    rng = np.random.default_rng(1)
    params = random_tree(rng)  # layer sizes 288, 80, 320
    new = pruning.prune(params, masks.ones_like(params), 150, allocation="balanced",
                        score="random")
    counts = [int(new[k]["kernel"].sum()) for k in ("a", "b", "c")]
    assert counts == [50, 50, 50]
    new = pruning.prune(params, masks.ones_like(params), 600, allocation="balanced",
                        score="random")
    counts = [int(new[k]["kernel"].sum()) for k in ("a", "b", "c")]
    assert counts[1] == 80 and sum(counts) == 600 and abs(counts[0] - counts[2]) <= 1


def test_erk_gives_small_layers_higher_density():
    rng = np.random.default_rng(2)
    params = random_tree(rng)
    new = pruning.prune(params, masks.ones_like(params), 200, allocation="erk", score="random")
    dens = {k: new[k]["kernel"].mean() for k in ("a", "b", "c")}
    assert masks.count(new)[0] == 200
    assert dens["b"] > dens["a"]  # (8+10)/80 > (3+3+4+8)/288


def test_scheduled_count():
    assert masks.scheduled_count(11_164_352, 0.2, 0) == 11_164_352
    assert masks.scheduled_count(1000, 0.2, 1) == 800
    assert masks.scheduled_count(1000, 0.2, 11) == round(0.8 ** 11 * 1000)
