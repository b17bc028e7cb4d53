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
