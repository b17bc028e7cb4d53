"""The campaign of replicas: methods, seeds and perturbations trained together in one program.

Checked on tiny mnist1d MLP runs through `campaign.run` (what `python -m
lrr_jax.main` calls):
* a 3-method run is one compiled program (one trace of the warm-up and of the
  level epoch for all 6 replicas);
* `replica_batch` is a performance knob: one epoch of K replicas in one program
  equals K one-replica programs to float tolerance, and whole campaigns with
  replica_batch 1 and 0 agree within a stated bound;
* `data_order='per_replica'`: replica r of a K-replica run computes what the
  1-replica run of its seed computes (end-of-warm-up weights to float
  tolerance), and IMP/WR/LRR of one seed share warm-up and level 0 exactly;
* `data_order='shared'` with one method's replicas per program reproduces
  the results.csv that lrr_jax wrote before the redesign
  (tests/data/shared_order_v0), with the pre-optax schedule formulas; with the
  optax schedules (which round 6 of 20 cosine learning rates differently in
  the last bit) the first level agrees to float tolerance.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrr_jax import campaign, engine, replicas, schema, train, workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import quickstart  # noqa: E402

TINY = {"mlp_hidden": (16, 16), "train_limit": 400, "test_limit": 200, "batch_size": 100,
        "eval_batch_size": 200, "levels": 3, "epochs_per_level": 2, "warmup_epochs": 1,
        "progress": False, "tensorboard": False, "checkpoint_every_epochs": 0}
# The config of tests/data/shared_order_v0 (see its README.md).
SHARED_V0 = {**TINY, "methods": "imp,wr,lrr", "num_replicas": 2, "perturb_probs": "0,0.3",
             "perturb_every": 1}


def tiny(**overrides):
    c = quickstart.get_config()
    c.update({**TINY, **overrides})
    return c


def _capture_engines(monkeypatch):
    made = []
    real = engine.make

    def make(config):
        made.append(real(config))
        return made[-1]

    monkeypatch.setattr(engine, "make", make)
    return made


def test_three_methods_are_one_program(tmp_path, monkeypatch):
    made = _capture_engines(monkeypatch)
    results = campaign.run(tiny(methods="imp,wr,lrr", num_replicas=2), str(tmp_path))
    (e,) = made
    assert dict(e.traces) == {"warmup": 1, "level": 1}  # 6 replicas, one trace each
    assert sorted(results) == ["imp", "lrr", "wr"]
    for method, rows in results.items():
        assert [(r["level"], r["replica"], r["seed"]) for r in rows] == [
            (lv, i, i) for lv in range(3) for i in range(2)]
        assert {r["method"] for r in rows} == {method}
    # Paired comparison: one seed's warm-up and level 0 are the same for every method.
    level0 = {m: [(r["test_acc"], r["train_loss"]) for r in rows if r["level"] == 0]
              for m, rows in results.items()}
    assert level0["imp"] == level0["wr"] == level0["lrr"]
    for m in ("imp", "wr"):
        a = workdir.load_level(str(tmp_path / m), "rewind")["params"]
        b = workdir.load_level(str(tmp_path / "lrr"), "rewind")["params"]
        assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                         strict=True))
    # The methods still differ after level 0 (the rewinds act per replica).
    assert [r["test_acc"] for r in results["imp"] if r["level"] == 2] != \
        [r["test_acc"] for r in results["lrr"] if r["level"] == 2]


@pytest.mark.parametrize("order", ["per_replica", "shared"])
def test_one_epoch_grouped_equals_together(order):
    """One warm-up epoch of 4 replicas in one program == 4 one-replica programs."""
    c = tiny(num_replicas=4, data_order=order)
    e = engine.make(c)
    reps = replicas.from_config(c)
    init = e.init_states([r.seed for r in reps])

    together, m_all, _ = e.train_epoch("warmup", e.put(init), reps, -1, 0)
    for i, r in enumerate(reps):
        one = jax.tree.map(lambda a, i=i: a[i:i + 1], init)
        alone, m_one, _ = e.train_epoch("warmup", e.put(one), [r], -1, 0)
        np.testing.assert_allclose(np.asarray(m_one["loss"]), np.asarray(m_all["loss"])[i:i + 1],
                                   rtol=1e-5)
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(together.params)):
            np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[i], rtol=1e-4,
                                       atol=1e-6)
    if order == "per_replica":  # each replica its own batches: the losses differ
        assert len(set(np.asarray(m_all["loss"]).round(6).tolist())) == 4


def test_replica_batch_does_not_change_results(tmp_path):
    """Whole campaigns with replica_batch 1 and 0: the same rows within float drift.

    Bound: every accuracy within 0.02 (4 of 200 test examples) and the mean over
    levels and seeds within 0.005 (measured: identical on this CPU).
    """
    base = {"methods": "imp,lrr", "num_replicas": 2}
    a = campaign.run(tiny(**base, replica_batch=0), str(tmp_path / "together"))
    b = campaign.run(tiny(**base, replica_batch=1), str(tmp_path / "one_by_one"))
    for method in a:
        ra, rb = a[method], b[method]
        assert [(r["level"], r["seed"]) for r in ra] == [(r["level"], r["seed"]) for r in rb]
        # The first level (warm-up + dense) to float tolerance.
        for x, y in zip(ra[:2], rb[:2]):
            assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)
        diffs = [abs(x["test_acc"] - y["test_acc"]) for x, y in zip(ra, rb)]
        assert max(diffs) <= 0.02
        assert abs(statistics.mean(r["test_acc"] for r in ra)
                   - statistics.mean(r["test_acc"] for r in rb)) <= 0.005


def test_per_replica_replica_is_the_run_of_its_seed(tmp_path):
    """Replica 1 (seed 1) of a 2-replica run: the warm-up of the 1-replica run of seed 1."""
    settings = {"method": "wr", "methods": "", "levels": 1, "epochs_per_level": 2,
                "warmup_epochs": 2}
    campaign.run(tiny(**settings, num_replicas=2), str(tmp_path / "two"))
    campaign.run(tiny(**settings, num_replicas=1, seed=1), str(tmp_path / "seed1"))
    theirs = workdir.load_level(str(tmp_path / "seed1"), "rewind")["params"]
    ours = workdir.load_level(str(tmp_path / "two"), "rewind", replica=1)["params"]
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # ... and not what replica 0 (seed 0) computed: the check can fail.
    other = workdir.load_level(str(tmp_path / "two"), "rewind", replica=0)["params"]
    assert not np.allclose(jax.tree.leaves(other)[0], jax.tree.leaves(theirs)[0])


def _pre_optax_schedule(config, phase, steps_per_epoch):
    """The schedule formulas lrr_jax used before the optax schedules (commit 6266625)."""
    lr, lr_min = config.lr, config.lr_min
    if phase == "warmup":
        epochs = max(config.warmup_epochs, 1)
        return lambda step: lr * (step // steps_per_epoch + 1) / epochs
    epochs = config.epochs_per_level
    return lambda step: lr_min + 0.5 * (1 + jnp.cos(jnp.pi * (step // steps_per_epoch)
                                                     / epochs)) * (lr - lr_min)


def _numbers(row):
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def _golden(method):
    path = os.path.join(REPO, "tests", "data", "shared_order_v0", f"{method}.csv")
    with open(path) as f:
        return [_numbers(schema.parse_row(r)) for r in csv.DictReader(f)]


COMPARED = ("level", "replica", "seed", "perturb_prob", "density", "test_acc",
            "best_epoch_test_acc", "test_loss", "train_loss", "train_acc",
            "sign_flip_frac_vs_init", "sign_flip_frac_vs_prev")


@pytest.mark.slow
def test_shared_order_reproduces_the_results_before_the_redesign(tmp_path, monkeypatch):
    # One method's 4 replicas per program, as before; the schedule formulas as before.
    with monkeypatch.context() as m:
        m.setattr(train, "lr_schedule", _pre_optax_schedule)
        old = campaign.run(tiny(**SHARED_V0, data_order="shared", replica_batch=4),
                           str(tmp_path / "old_schedule"))
    new = campaign.run(tiny(**SHARED_V0, data_order="shared", replica_batch=4),
                       str(tmp_path / "optax"))
    for method in ("imp", "wr", "lrr"):
        golden = _golden(method)
        assert len(old[method]) == len(golden) == 12
        for ours, theirs in zip(old[method], golden):
            for k in COMPARED:  # 6 significant digits, as written (bit for bit here)
                a, b = ours[k], theirs[k]
                if a is None or b is None:
                    assert a is None and b is None, (method, ours["level"], k)
                    continue
                assert a == pytest.approx(b, rel=2e-5, abs=1e-6), (method, ours["level"], k)
        # optax schedules: the dense level to float tolerance.
        for ours, theirs in zip(new[method][:4], golden[:4]):
            assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-3)
            assert ours["test_acc"] == pytest.approx(theirs["test_acc"], abs=0.02)
