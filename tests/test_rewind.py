"""Each rewind mode changes exactly what PAPER.md says (params, batch_stats, opt_state, step)."""

import jax
import numpy as np
import pytest

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


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def check(out, *, params, stats, opt):
    assert int(out.step) == 0  # the schedule restarts in every mode
    assert same(out.mask, TRAINED.mask)  # the mask is the driver's, never rewound
    assert same(out.params, params.params)
    assert same(out.batch_stats, stats.batch_stats)
    assert same(out.opt_state, opt.opt_state)


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
    assert all(np.all(x == 0) for x in jax.tree.leaves(out.opt_state))
    assert same(out.params, TRAINED.params)


def test_lrr_bn_rewind_resets_only_bn():
    out = rewind.for_method("lrr_bn_rewind", TRAINED, init=INIT, point=POINT)
    assert int(out.step) == 0
    np.testing.assert_array_equal(out.params["bn"]["scale"], POINT.params["bn"]["scale"])
    np.testing.assert_array_equal(out.params["bn"]["bias"], POINT.params["bn"]["bias"])
    np.testing.assert_array_equal(out.params["conv"]["kernel"], TRAINED.params["conv"]["kernel"])
    np.testing.assert_array_equal(out.params["head"]["bias"], TRAINED.params["head"]["bias"])
    assert same(out.batch_stats, POINT.batch_stats)
    assert same(out.opt_state, POINT.opt_state)


def test_unknown_method():
    with pytest.raises(ValueError):
        rewind.for_method("snip", TRAINED, init=INIT, point=POINT)
