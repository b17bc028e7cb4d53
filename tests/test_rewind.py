"""Each rewind mode changes exactly what the paper code does (params, BN, opt_state, step)."""

import jax
import numpy as np
import pytest
from trees import assert_trees_close, assert_trees_equal

from lrr_jax import rewind, train


def make_state(value, step=5):
    params = {"conv": {"kernel": np.full((2, 2), value, np.float32)},
              "bn": {"scale": np.full((2,), value, np.float32),
                     "bias": np.full((2,), value, np.float32)},
              "head": {"kernel": np.full((2, 3), value, np.float32),
                       "bias": np.full((3,), value, np.float32)}}
    stats = {"bn": {"mean": np.full((2,), value, np.float32),
                    "var": np.full((2,), value, np.float32)}}
    opt = ({}, {"trace": jax.tree.map(lambda p: np.full_like(p, value * 10), params)})
    mask = jax.tree.map(lambda p: np.full_like(p, 0.5 + value), params)
    return train.TrainState(step=np.int32(step), params=params, batch_stats=stats,
                            opt_state=opt, mask=mask)


TRAINED, INIT, POINT = make_state(3.0), make_state(1.0, step=0), make_state(2.0, step=0)


def check(out, *, params, stats, opt):
    assert int(out.step) == 0  # the schedule restarts in every mode
    assert_trees_equal(out.mask, TRAINED.mask)  # the mask is the driver's, never rewound
    assert_trees_equal(out.params, params.params)
    assert_trees_equal(out.batch_stats, stats.batch_stats)
    assert_trees_equal(out.opt_state, opt.opt_state)


def test_imp_rewinds_to_init_keeps_running_stats():
    out = rewind.for_method("imp", TRAINED, init=INIT, point=POINT)
    check(out, params=INIT, stats=TRAINED, opt=INIT)


def test_wr_rewinds_to_the_point():
    out = rewind.for_method("wr", TRAINED, init=INIT, point=POINT)
    check(out, params=POINT, stats=TRAINED, opt=POINT)


def test_rewind_batch_stats_switch():
    out = rewind.for_method("wr", TRAINED, init=INIT, point=POINT, rewind_batch_stats=True)
    check(out, params=POINT, stats=POINT, opt=POINT)


def test_lrr_keeps_everything_but_the_schedule():
    out = rewind.for_method("lrr", TRAINED, init=INIT, point=POINT)
    check(out, params=TRAINED, stats=TRAINED, opt=TRAINED)


def test_lrr_reset_momentum():
    out = rewind.for_method("lrr", TRAINED, init=INIT, point=POINT, reset_momentum=True)
    assert_trees_equal(out.opt_state, jax.tree.map(np.zeros_like, TRAINED.opt_state))
    assert_trees_equal(out.params, TRAINED.params)


def test_lrr_bn_rewind_resets_only_bn():
    out = rewind.for_method("lrr_bn_rewind", TRAINED, init=INIT, point=POINT)
    assert int(out.step) == 0
    np.testing.assert_array_equal(out.params["bn"]["scale"], POINT.params["bn"]["scale"])
    np.testing.assert_array_equal(out.params["bn"]["bias"], POINT.params["bn"]["bias"])
    np.testing.assert_array_equal(out.params["conv"]["kernel"], TRAINED.params["conv"]["kernel"])
    np.testing.assert_array_equal(out.params["head"]["bias"], TRAINED.params["head"]["bias"])
    assert_trees_equal(out.batch_stats, POINT.batch_stats)
    assert_trees_equal(out.opt_state, POINT.opt_state)


def test_unknown_method():
    with pytest.raises(ValueError):
        rewind.for_method("snip", TRAINED, init=INIT, point=POINT)


# ---- the comparison helper itself (tests/trees.py) ------------------------------------------
def test_tree_helpers_reject_truncated_and_changed_trees():
    opt = TRAINED.opt_state
    assert_trees_equal(opt, jax.tree.map(np.copy, opt))
    truncated = (opt[0], {"trace": {"conv": opt[1]["trace"]["conv"]}})  # lost the other layers
    for other in (truncated, (), ({}, {}), opt[:1]):
        with pytest.raises(AssertionError, match="structure"):
            assert_trees_equal(opt, other)
        with pytest.raises(AssertionError, match="structure"):
            assert_trees_close(opt, other)
    changed = jax.tree.map(np.copy, opt)
    changed[1]["trace"]["head"]["bias"][1] += 1e-3
    with pytest.raises(AssertionError, match="head"):
        assert_trees_equal(opt, changed)
    assert_trees_close(opt, changed, rtol=1e-3)
    with pytest.raises(AssertionError, match="head"):
        assert_trees_close(opt, changed, rtol=1e-6)
    with pytest.raises(AssertionError, match="float64"):  # dtype counts for exact equality
        assert_trees_equal(TRAINED.params, jax.tree.map(lambda x: x.astype(np.float64),
                                                        TRAINED.params))
    with pytest.raises(AssertionError, match="shape"):
        assert_trees_equal({"a": np.zeros(2)}, {"a": np.zeros((1, 2))})
    with pytest.raises(AssertionError, match="structure"):  # same leaves, other keys
        assert_trees_equal({"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0})
