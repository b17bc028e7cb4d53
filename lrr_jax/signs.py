"""Parameter signs: flip counting, random sign perturbation and sign transfer.

Pure functions on pytrees. Only prunable weights (conv and dense kernels) that
are unpruned under the given mask are counted or changed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrr_jax import masks

PyTree = Any
# The shuffles that take their signs from a source (or the run's own trained weights).
SHUFFLES = ("shuffled_all_init_magnitudes", "shuffled_init_magnitudes")


def sign_flips_per_layer(a: PyTree, b: PyTree, mask: PyTree) -> dict[str, tuple[int, int]]:
    """{layer: (flipped, unpruned)}: unpruned weights whose sign differs between a and b.

    A weight counts as flipped when sign(a) != sign(b); zero has its own sign,
    so a weight that became exactly zero counts as flipped.
    """
    la, lb = masks.prunable_leaves(a), masks.prunable_leaves(b)
    lm = masks.prunable_leaves(mask, a)
    out = {}
    for name, m in lm.items():
        keep = np.asarray(m) > 0
        diff = np.sign(np.asarray(la[name])) != np.sign(np.asarray(lb[name]))
        out[name] = (int((diff & keep).sum()), int(keep.sum()))
    return out


def sign_flip_fraction(a: PyTree, b: PyTree, mask: PyTree) -> float:
    """Fraction of all unpruned prunable weights whose sign differs between a and b."""
    per_layer = sign_flips_per_layer(a, b, mask)
    flipped = sum(f for f, _ in per_layer.values())
    total = sum(n for _, n in per_layer.values())
    return flipped / max(total, 1)


def perturb(params: PyTree, mask: PyTree, rng: jax.Array, prob) -> PyTree:
    """Flip the sign of each unpruned prunable weight independently with probability `prob`.

    Jittable and vmappable (`prob` may be a traced scalar).
    """
    flags = masks.prunable_flags(params)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(rng, len(leaves))
    flat_flags = jax.tree.leaves(flags)
    flat_mask = jax.tree.leaves(mask)
    out = []
    for leaf, prunable, m, key in zip(leaves, flat_flags, flat_mask, keys):
        if prunable:
            flip = jax.random.bernoulli(key, prob, leaf.shape) & (m > 0)
            leaf = jnp.where(flip, -leaf, leaf)
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)


def _source_signs(w, w0, s, m, rng):
    """|theta_0| * sign(source): IMP with LRR's signs."""
    return np.abs(w0) * np.sign(s)


def _init_signs(w, w0, s, m, rng):
    """|w| * sign(theta_0 or the rewind point): signs forced back."""
    return np.abs(w) * np.sign(w0)


def _shuffled_all(w, w0, s, m, rng):
    """Init magnitudes of all of a layer's entries (pruned ones included) permuted over the
    layer, times sign(source): the paper code's `reset_shuffled_amplitude`."""
    magnitudes = np.abs(w0).reshape(-1)[rng.permutation(w0.size)]
    return magnitudes.reshape(w.shape) * np.sign(s)


def _shuffled_in_mask(w, w0, s, m, rng):
    """Init magnitudes permuted within the layer's unpruned entries, times sign(source)."""
    magnitudes = np.abs(w0).reshape(-1).copy()
    kept = np.flatnonzero(m.reshape(-1) > 0)
    magnitudes[kept] = magnitudes[rng.permutation(kept)]
    return magnitudes.reshape(w.shape) * np.sign(s)


# The registry: `config.sign_transfer` -> per layer fn(w, w0, sign source, mask, rng) -> new
# weights ('' = none). A config file may add one.
SIGN_TRANSFERS = {
    "": None,
    "source_signs": _source_signs,
    "own_signs": _source_signs,  # the signs come from the run's own trained weights
    "init_signs": _init_signs,
    "shuffled_all_init_magnitudes": _shuffled_all,
    "shuffled_init_magnitudes": _shuffled_in_mask,
}


def transfer(mode: str, params: PyTree, init_params: PyTree, source_params: PyTree | None,
             mask: PyTree, seed: int = 0) -> PyTree:
    """Combine magnitudes and signs for the sign studies of the paper.

    Args:
      mode: '' (unchanged), 'source_signs' (|init| * sign(source): IMP with LRR
        signs), 'own_signs' (|init| * sign(source or params): own trained signs
        with init magnitudes), 'init_signs' (|params| * sign(init): signs forced
        back to init), 'shuffled_all_init_magnitudes' (init magnitudes of all of
        a layer's entries, pruned ones included, permuted over the layer, times
        sign(source or params): the paper code's `reset_shuffled_amplitude`,
        imp-lrr-lts main.py:1313-1316), 'shuffled_init_magnitudes' (init
        magnitudes permuted within each layer's unpruned entries, times
        sign(source or params)).
      params: the weights the level would start from after rewinding.
      init_params: theta_0.
      source_params: the weights whose signs are taken (modes 'source_signs',
        'own_signs' and the two shuffles): another run's, or this run's
        trained weights before the rewind (the level loop passes those for
        'own_signs' and the shuffles without a sign source, since
        after an IMP rewind `params` carry the init signs). None: `params`.
      mask: the level's mask; only unpruned prunable weights change.
      seed: seed of the shuffle.

    Returns:
      New params (numpy); BatchNorm parameters and biases are those of `params`.
    """
    if mode == "":
        return params
    if mode not in SIGN_TRANSFERS:
        raise ValueError(f"unknown sign transfer {mode!r}; expected one of "
                         f"{tuple(SIGN_TRANSFERS)}")
    if mode == "source_signs" and source_params is None:
        raise ValueError("sign transfer 'source_signs' needs source params")
    rng = np.random.default_rng(seed)
    sign_of = source_params if source_params is not None else params
    flags = jax.tree.leaves(masks.prunable_flags(params))

    def combine(prunable, w, w0, s, m):
        w, w0, s, m = (np.asarray(x) for x in (w, w0, s, m))
        if not prunable:
            return w
        new = SIGN_TRANSFERS[mode](w, w0, s, m, rng)
        return np.where(m > 0, new, w).astype(w.dtype)

    leaves, treedef = jax.tree.flatten(params)
    out = [combine(f, w, w0, s, m) for f, w, w0, s, m in zip(
        flags, leaves, jax.tree.leaves(init_params), jax.tree.leaves(sign_of),
        jax.tree.leaves(mask))]
    return jax.tree.unflatten(treedef, out)
