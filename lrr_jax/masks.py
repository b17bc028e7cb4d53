"""Masks are pytrees with exactly the structure of `params`.

A leaf is prunable when `is_prunable(path, leaf)` holds: the leaves named
`kernel` (every convolution, including the stem and 1x1 shortcuts, and the
classifier). Non-prunable leaves (BatchNorm scale/bias, biases) get an all-ones
mask, so there are no `None` leaves and `apply` is a plain tree multiply.
Everything here is a pure function on pytrees; it works on numpy and jax arrays.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

PyTree = Any


def path_name(path) -> str:
    """'/'-joined key names of a pytree path, e.g. 'ResNet_0/Conv_0/kernel'."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def is_prunable(path, leaf) -> bool:
    """Conv and dense kernels are prunable; BatchNorm parameters and biases never are."""
    return path_name(path).split("/")[-1] == "kernel" and np.ndim(leaf) >= 2


def prunable_flags(params: PyTree) -> PyTree:
    """A pytree of Python bools: which leaves of `params` are prunable."""
    return jax.tree_util.tree_map_with_path(is_prunable, params)


def ones_like(params: PyTree, dtype=np.float32) -> PyTree:
    """The dense mask: all ones, with the structure and shapes of `params`."""
    return jax.tree.map(lambda p: np.ones(np.shape(p), dtype), params)


def apply(params: PyTree, mask: PyTree) -> PyTree:
    """The effective weights w * m used in the forward pass."""
    return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, mask)


def prunable_leaves(tree: PyTree, params_like: PyTree | None = None) -> dict[str, Any]:
    """An ordered {layer name: leaf} dict of the prunable leaves of `tree`.

    `params_like` decides which leaves are prunable when `tree` is not the
    params tree itself (for example a mask whose leaves are all arrays).
    """
    reference = tree if params_like is None else params_like
    flags = jax.tree_util.tree_flatten_with_path(reference)[0]
    leaves = jax.tree.leaves(tree)
    return {path_name(path): leaf for (path, ref), leaf in zip(flags, leaves)
            if is_prunable(path, ref)}


def count(mask: PyTree) -> tuple[int, int]:
    """(unpruned, total) over the prunable leaves of a mask."""
    layers = prunable_leaves(mask)
    kept = sum(int(np.count_nonzero(np.asarray(m))) for m in layers.values())
    total = sum(int(np.size(m)) for m in layers.values())
    return kept, total


def density(mask: PyTree) -> float:
    """Fraction of prunable weights that are unpruned."""
    kept, total = count(mask)
    return kept / total


def scheduled_count(total: int, prune_fraction: float, level: int) -> int:
    """How many prunable weights stay unpruned while training level `level`.

    Level 0 is dense; after each level `prune_fraction` of the remaining weights
    go, so level k keeps round((1 - prune_fraction) ** k * total).
    """
    return int(round((1.0 - prune_fraction) ** level * total))
