"""Sign-flip counting, sign perturbation and sign transfer on tiny trees."""

import jax
import numpy as np
import pytest

from lrr_jax import signs


def tree(k, b=None):
    return {"l": {"kernel": np.array(k, np.float32)},
            "bn": {"scale": np.array([1.0, -1.0] if b is None else b, np.float32)}}


def test_sign_flip_fraction_hand_computed():
    a = tree([[1.0, -2.0], [3.0, 4.0]])
    b = tree([[-1.0, -2.0], [-3.0, 4.0]], b=[-1.0, 1.0])  # BN flips are not counted
    mask = tree([[1, 1], [0, 1]], b=[1, 1])
    # Unpruned: (0,0) flipped, (0,1) same, (1,1) same; (1,0) flipped but pruned.
    assert signs.sign_flips_per_layer(a, b, mask) == {"l/kernel": (1, 3)}
    assert signs.sign_flip_fraction(a, b, mask) == pytest.approx(1 / 3)


def test_perturb_flips_only_unpruned_kernels():
    w = np.ones((200, 50), np.float32)
    params = {"l": {"kernel": w}, "bn": {"scale": np.ones(4, np.float32)}}
    mask = {"l": {"kernel": (np.arange(w.size).reshape(w.shape) % 2).astype(np.float32)},
            "bn": {"scale": np.ones(4, np.float32)}}
    out = jax.jit(signs.perturb)(params, mask, jax.random.PRNGKey(0), 0.3)
    k = np.asarray(out["l"]["kernel"])
    assert np.all(k[mask["l"]["kernel"] == 0] == 1)  # pruned entries untouched
    frac = np.mean(k[mask["l"]["kernel"] == 1] < 0)
    assert 0.27 < frac < 0.33
    np.testing.assert_array_equal(out["bn"]["scale"], np.ones(4))
    same = signs.perturb(params, mask, jax.random.PRNGKey(0), 0.0)
    np.testing.assert_array_equal(same["l"]["kernel"], w)


def test_transfers():
    w = tree([[0.5, -0.5], [2.0, -2.0]], b=[7.0, 7.0])
    w0 = tree([[-1.0, 3.0], [-4.0, 5.0]])
    src = tree([[1.0, 1.0], [-1.0, -1.0]])
    mask = tree([[1, 1], [1, 0]], b=[1, 1])
    out = signs.transfer("source_signs", w, w0, src, mask)
    np.testing.assert_array_equal(out["l"]["kernel"], [[1.0, 3.0], [-4.0, -2.0]])
    np.testing.assert_array_equal(out["bn"]["scale"], [7.0, 7.0])  # BN untouched
    out = signs.transfer("own_signs", w, w0, None, mask)
    np.testing.assert_array_equal(out["l"]["kernel"], [[1.0, -3.0], [4.0, -2.0]])
    out = signs.transfer("init_signs", w, w0, None, mask)
    np.testing.assert_array_equal(out["l"]["kernel"], [[-0.5, 0.5], [-2.0, -2.0]])
    out = signs.transfer("shuffled_init_magnitudes", w, w0, src, mask, seed=3)
    k = out["l"]["kernel"]
    assert sorted(np.abs(k[mask["l"]["kernel"] > 0])) == [1.0, 3.0, 4.0]
    np.testing.assert_array_equal(np.sign(k[0]), [1, 1])
    assert k[1, 1] == -2.0  # pruned: unchanged
    with pytest.raises(ValueError):
        signs.transfer("source_signs", w, w0, None, mask)


def test_shuffled_init_magnitudes_over_all_entries_or_within_the_mask():
    """'shuffled_all_init_magnitudes' (the paper code's iterative reset_shuffled_amplitude,
    imp-lrr-lts main.py:1313-1316) permutes |theta_0| over all of a layer's entries, pruned
    ones included; 'shuffled_init_magnitudes' within its unpruned entries (old runs' value)."""
    n = 400
    keep = np.zeros(n, bool)
    keep[::10] = True  # 40 unpruned entries, whose init magnitudes are 10; the others' 1
    w0 = tree(np.where(keep, 10.0, -1.0).reshape(20, 20))
    w = tree(np.full((20, 20), 0.5))
    src = tree(np.where(np.arange(n) % 2, 1.0, -1.0).reshape(20, 20))
    mask = tree(keep.reshape(20, 20).astype(np.float32), b=[1, 1])
    m = mask["l"]["kernel"] > 0
    inside = signs.transfer("shuffled_init_magnitudes", w, w0, src, mask, seed=3)["l"]["kernel"]
    np.testing.assert_array_equal(np.abs(inside[m]), 10.0)  # the mask's own magnitudes
    drawn = []
    for seed in (3, 4):
        out = signs.transfer("shuffled_all_init_magnitudes", w, w0, src, mask, seed=seed)
        k = out["l"]["kernel"]
        np.testing.assert_array_equal(np.sign(k[m]), np.sign(src["l"]["kernel"][m]))
        np.testing.assert_array_equal(k[~m], 0.5)  # pruned: unchanged
        # 40 draws without replacement from 40 tens and 360 ones: ~4 tens expected.
        assert set(np.abs(k[m]).tolist()) == {1.0, 10.0} and np.sum(np.abs(k[m]) == 10) < 15
        np.testing.assert_array_equal(out["bn"]["scale"], [1.0, -1.0])
        drawn.append(np.abs(k[m]))
    assert not np.array_equal(*drawn)  # the seed keys the permutation


def test_a_run_of_the_within_mask_shuffle_resumes_as_what_it_computed(tmp_path):
    """A run made when 'imp_lrr_signs_shuffled' shuffled within the mask recorded
    sign_transfer='shuffled_init_magnitudes', which keeps that meaning: it resumes with
    the _in_mask variant, and the variant's new default is refused there, naming the key."""
    import os
    import sys

    from lrr_jax import workdir
    from lrr_jax.errors import ConfigError

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from configs import transfer

    old = transfer.get_config("imp_lrr_signs_shuffled_in_mask")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(old.to_json())
    assert workdir.check_workdir(transfer.get_config("imp_lrr_signs_shuffled_in_mask"),
                                 str(run_dir)) is False
    with pytest.raises(ConfigError, match=r"sign_transfer \('shuffled_init_magnitudes' -> "
                       r"'shuffled_all_init_magnitudes'\)"):
        workdir.check_workdir(transfer.get_config("imp_lrr_signs_shuffled"), str(run_dir))


def test_perturb_flips_each_layer_independently():
    """Two layers of one shape get independent flips (one key per layer): a key reused for
    every layer would flip the same entries in both."""
    w = np.ones((50, 40), np.float32)
    params = {"a": {"kernel": w}, "b": {"kernel": w.copy()}, "c": {"kernel": w[:10].copy()}}
    mask = jax.tree.map(np.ones_like, params)
    out = jax.jit(signs.perturb)(params, mask, jax.random.PRNGKey(0), 0.5)
    fa, fb, fc = (np.asarray(out[k]["kernel"]) < 0 for k in "abc")
    assert 0.45 < fa.mean() < 0.55 and 0.45 < fb.mean() < 0.55
    assert 0.45 < np.mean(fa == fb) < 0.55  # 2,000 entries: identical flips would give 1.0
    assert 0.4 < np.mean(fa[:10] == fc) < 0.6
