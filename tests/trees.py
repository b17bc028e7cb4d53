"""Pytree comparisons for tests: structure first, then every leaf.

`zip(jax.tree.leaves(a), jax.tree.leaves(b))` stops at the shorter tree, so a
truncated or empty tree (an opt_state that lost its momentum, say) compares
equal to anything. These helpers compare the tree structure (container
types, keys, number of leaves, None placement) before the leaves, and name
the first leaf that differs.
"""

from __future__ import annotations

import jax
import numpy as np


def _paths_and_leaves(tree):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path) or "<root>", leaf) for path, leaf in leaves], treedef


def _check_structure(a, b):
    la, ta = _paths_and_leaves(a)
    lb, tb = _paths_and_leaves(b)
    if ta != tb:
        raise AssertionError(f"tree structures differ:\n  {ta}\n  {tb}")
    return la, lb


def assert_trees_equal(a, b) -> None:
    """`a` and `b` have the same structure and every leaf is exactly equal (shape, dtype, value).

    NaNs compare equal to NaNs in the same place.
    """
    la, lb = _check_structure(a, b)
    for (path, x), (_, y) in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype:
            raise AssertionError(
                f"leaf {path}: shape/dtype {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
        if not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            raise AssertionError(f"leaf {path} differs: {x!r} vs {y!r}")


def assert_trees_close(a, b, *, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """`a` and `b` have the same structure and leaf shapes, and every leaf is allclose."""
    la, lb = _check_structure(a, b)
    for (path, x), (_, y) in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            raise AssertionError(f"leaf {path}: shape {x.shape} vs {y.shape}")
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"leaf {path}")
