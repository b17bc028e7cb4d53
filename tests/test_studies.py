"""The paper's studies end to end on tiny mnist1d runs, from the configs users run.

Masks and signs transferred between runs, iterative random masks, the vmapped
sign perturbation study, linear mode connectivity, and the errors for a
missing or incompatible source. Every run goes through `campaign.run` (what
`python -m lrr_jax.main` calls) with a config from `configs/` plus tiny-size
overrides; checks read the run directories back (`workdir.load_level`, results.csv).
"""

from __future__ import annotations

import csv
import json
import os
import sys

import jax
import ml_collections
import numpy as np
import pytest
from trees import assert_trees_close, assert_trees_equal

from lrr_jax import (
    campaign,
    checkpoints,
    engine,
    levels,
    masks,
    pruning,
    replica_set,
    replicas,
    studies,
    validation,
    workdir,
)
from lrr_jax.errors import ConfigError
from lrr_jax.reporting import summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # `configs` is a package at the repository root

from configs import (  # noqa: E402
    cifar10_small,
    lmc,
    quickstart,
    random_masks,
    sign_perturbation,
    transfer,
)

LEVELS = 3
TINY = {"mlp_hidden": (16, 16), "train_limit": 400, "test_limit": 200, "batch_size": 100,
        "eval_batch_size": 200, "levels": LEVELS, "epochs_per_level": 2, "warmup_epochs": 1,
        "num_replicas": 1, "progress": False, "tensorboard": False,
        "checkpoint_every_epochs": 0}


def tiny(c, **overrides):
    c.update({**TINY, **overrides})
    return c


def read_rows(run_dir):
    with open(os.path.join(run_dir, "results.csv")) as f:
        return list(csv.DictReader(f))


def kernels(tree):
    return masks.prunable_leaves(tree)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("studies")


@pytest.fixture(scope="module")
def base(root):
    """IMP and LRR on tiny mnist1d: the sources of every transfer."""
    c = tiny(quickstart.get_config(), methods="imp,lrr")
    campaign.run(c, str(root / "base"))
    return {"imp": str(root / "base" / "imp"), "lrr": str(root / "base" / "lrr")}


def engine_for(config, method, run_dir):
    """A Campaign over an existing run directory, to replay its start_level."""
    validation.validate(config)
    c = replica_set.ReplicaSet(config, engine.make(config), replicas.from_config(config),
                               {method: checkpoints.Store(run_dir)})
    return c, c.engine.init_states([r.seed for r in c.reps])


def workdir_load(run_dir, level):
    return workdir.load_level(run_dir, level)


def store_of(run):
    (store,) = run.stores.values()
    return store


def start_of(run, level, prev, init, point):
    """The start of `level` for every replica of `run`, as the level loop makes it."""
    run.init, run.point = init, point
    return levels.start_level(run, levels.LevelRun(level, list(range(len(run.reps))), prev))


# ---- configs -------------------------------------------------------------------------------
def test_every_study_config_validates():
    for variant in transfer.VARIANTS:
        c = transfer.get_config(variant)
        validation.validate(c)
        assert c.methods == "" and c.method == transfer.VARIANTS[variant][0]
    assert transfer.get_config("wr_lrr_mask,cifar10_small").model == "resnet18"
    for allocation in random_masks.ALLOCATIONS:
        c = random_masks.get_config(allocation)
        validation.validate(c)
        assert c.score == "random" and c.pruning == allocation and c.methods == "imp,lrr"
    c = sign_perturbation.get_config()
    validation.validate(c)
    assert len(replicas.replica_settings(c)) == 10 and c.perturb_every == 4
    assert sign_perturbation.get_config("cifar10").perturb_every == 30  # the paper's
    c = cifar10_small.get_config()
    validation.validate(c)
    with pytest.raises(ValueError, match="unknown transfer variant"):
        transfer.get_config("wr_imp_signs")
    with pytest.raises(ConfigError, match="^lmc_a: experiment 'lmc' needs"):
        validation.validate(lmc.get_config())


def test_transfer_config_without_source_stops_before_training(tmp_path):
    c = tiny(transfer.get_config("wr_lrr_mask"))
    with pytest.raises(ConfigError) as e:
        campaign.run(c, str(tmp_path / "w"))
    assert e.value.key == "mask_source"
    assert "set --config.mask_source to the run directory of a LRR run" in str(e.value)
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


# ---- mask transfer ---------------------------------------------------------------------------
def test_wr_on_lrr_masks_uses_them_exactly(base, root):
    run_dir = str(root / "wr_lrr_mask")
    c = tiny(transfer.get_config("wr_lrr_mask"), mask_source=base["lrr"])
    campaign.run(c, run_dir)
    for level in range(LEVELS):
        ours, theirs = workdir_load(run_dir, level), workdir_load(base["lrr"], level)
        assert_trees_equal(ours["mask"], theirs["mask"])
    rows = read_rows(run_dir)
    assert {r["mask_source"] for r in rows} == {base["lrr"]}
    assert [float(r["density"]) for r in rows] == pytest.approx([1.0, 0.8, 0.64], abs=1e-3)


# ---- sign transfer ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imp_lrr_signs(base, root):
    """IMP with LRR's masks and signs (configs/transfer.py:imp_lrr_signs), run to the end."""
    run_dir = str(root / "imp_lrr_signs")
    c = tiny(transfer.get_config("imp_lrr_signs"), mask_source=base["lrr"],
             sign_source=base["lrr"])
    campaign.run(c, run_dir)
    return c, run_dir


@pytest.mark.parametrize("which", ["same", "previous"])
def test_imp_with_lrr_signs_starts_from_init_magnitudes_and_lrr_signs(base, imp_lrr_signs,
                                                                      which):
    """Level k starts at |theta_0| * sign(LRR's level-k final weights) (`same`, the paper code's
    sign_list_<lrr>_<k>), or sign(LRR's level k-1 final weights) (`previous`).

    The run is made with the default; `previous` replays its level starts.
    """
    c, run_dir = imp_lrr_signs
    assert c.sign_source_level == "same"  # the default
    c = c.copy_and_resolve_references()
    c.sign_source_level = which
    run, like = engine_for(c, "imp", run_dir)
    init, _ = store_of(run).restore("init", like)
    point, _ = store_of(run).restore("rewind", like)
    theta0 = kernels(workdir_load(run_dir, "init")["params"])
    differs = 0
    for level in range(1, LEVELS):
        prev, _ = store_of(run).restore(checkpoints.level_name(level - 1), like)
        start = jax.tree.map(lambda a: np.asarray(a)[0], start_of(run, level, prev, init, point))
        chosen = level if which == "same" else level - 1  # written out, not studies' rule
        other = level - 1 if which == "same" else level
        lrr_signs = kernels(workdir_load(base["lrr"], chosen)["params"])
        lrr_other = kernels(workdir_load(base["lrr"], other)["params"])
        lrr_mask = workdir_load(base["lrr"], level)["mask"]
        assert_trees_equal(start.mask, lrr_mask)
        assert_trees_equal(start.mask, workdir_load(run_dir, level)["mask"])
        for name, w in kernels(start.params).items():
            m = kernels(lrr_mask)[name] > 0
            np.testing.assert_array_equal(
                w[m], (np.abs(theta0[name]) * np.sign(lrr_signs[name]))[m], err_msg=name)
            differs += int(np.sum(np.sign(lrr_signs[name][m]) != np.sign(lrr_other[name][m])))
        # BatchNorm-free MLP: biases are IMP's rewound ones (theta_0).
        assert int(start.step) == 0
    assert differs > 0  # LRR's signs moved between levels somewhere: the choice is visible
    rows = read_rows(run_dir)
    assert {r["sign_source"] for r in rows} == {base["lrr"]}


@pytest.mark.parametrize("mode,method,init_signs_from", [
    ("own_signs", "imp", "rewind_point"), ("init_signs", "lrr", "rewind_point"),
    ("init_signs", "lrr", "theta0"), ("shuffled_init_magnitudes", "imp", "rewind_point"),
    ("shuffled_all_init_magnitudes", "imp", "rewind_point")])
def test_sign_transfer_variants_at_level_start(base, mode, method, init_signs_from):
    """Replays level_start on the base runs' checkpoints with each variant switched on."""
    c = tiny(quickstart.get_config(), methods="", method=method, sign_transfer=mode,
             init_signs_from=init_signs_from)
    run, like = engine_for(c, method, base[method])
    init, _ = store_of(run).restore("init", like)
    point, _ = store_of(run).restore("rewind", like)
    prev, _ = store_of(run).restore(checkpoints.level_name(1), like)
    # Flip a random half of the trained signs, and of the rewind point's, so trained, rewind
    # point and initial signs surely differ (a few tiny steps hardly move them); magnitude
    # pruning does not see signs.
    rng = np.random.default_rng(0)

    def flip_half(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, w: w * rng.choice([-1.0, 1.0], size=w.shape).astype(w.dtype)
            if masks.is_prunable(path, w[0]) else w, params)

    prev = prev.replace(params=flip_half(prev.params))
    point = point.replace(params=flip_half(point.params))
    start = jax.tree.map(lambda a: np.asarray(a)[0], start_of(run, 2, prev, init, point))
    one = lambda tree: jax.tree.map(lambda a: np.asarray(a)[0], tree)  # noqa: E731
    theta0 = kernels(one(init.params))
    warm = kernels(one(point.params))
    trained = kernels(one(prev.params))
    mask = kernels(start.mask)
    for name, w in kernels(start.params).items():
        m = mask[name] > 0
        if mode == "own_signs":  # IMP: |theta_0| with its own level-1 trained signs
            expected = np.abs(theta0[name]) * np.sign(trained[name])
            np.testing.assert_array_equal(w[m], expected[m])
        elif mode == "init_signs":  # LRR: kept magnitudes, signs forced back
            signs_of = warm if init_signs_from == "rewind_point" else theta0
            expected = np.abs(trained[name]) * np.sign(signs_of[name])
            np.testing.assert_array_equal(w[m], expected[m])
            assert np.any(np.sign(warm[name][m]) != np.sign(theta0[name][m]))  # not a no-op
        elif mode == "shuffled_init_magnitudes":  # the unpruned |theta_0|, permuted
            np.testing.assert_array_equal(np.sign(w[m]), np.sign(trained[name][m]))
            np.testing.assert_array_equal(np.sort(np.abs(w[m])),
                                          np.sort(np.abs(theta0[name][m])))
            assert not np.array_equal(np.abs(w[m]), np.abs(theta0[name][m]))
        else:  # drawn from all of the layer's |theta_0| (the paper code), own trained signs
            np.testing.assert_array_equal(np.sign(w[m]), np.sign(trained[name][m]))
            assert np.isin(np.abs(w[m]), np.abs(theta0[name])).all()
            assert not np.array_equal(np.sort(np.abs(w[m])), np.sort(np.abs(theta0[name][m])))
            np.testing.assert_array_equal(w[~m], theta0[name][~m])  # pruned: IMP's rewind
    if mode == "init_signs":
        # The paper code reloads the rewind point's optimizer (its momentum); 'theta0' keeps
        # LRR's own. Either way the optimizer state is one of two that differ.
        kept, rewound = one(prev.opt_state), one(point.opt_state)
        assert_trees_equal(start.opt_state,
                           rewound if init_signs_from == "rewind_point" else kept)
        with pytest.raises(AssertionError):
            assert_trees_equal(kept, rewound)
    if mode == "own_signs":  # not a no-op: the trained signs differ from theta_0's somewhere
        assert any(np.any(np.sign(trained[n][mask[n] > 0]) != np.sign(theta0[n][mask[n] > 0]))
                   for n in mask)


def test_init_signs_options_are_validated():
    c = tiny(transfer.get_config("lrr_init_signs"))
    assert c.init_signs_from == "rewind_point"  # the paper code's
    validation.validate(c)
    for key, value in (("init_signs_from", "theta_0"), ("sign_source_level", "next")):
        bad = c.copy_and_resolve_references()
        bad[key] = value
        with pytest.raises(ConfigError, match=f"^{key}: unknown "):
            validation.validate(bad)
    bad = c.copy_and_resolve_references()
    bad.reset_momentum = True
    with pytest.raises(ConfigError, match="^init_signs_from: 'rewind_point' restores"):
        validation.validate(bad)
    bad.init_signs_from = "theta0"
    validation.validate(bad)


# ---- random masks ----------------------------------------------------------------------------
@pytest.mark.parametrize("allocation", ["balanced", "erk"])
def test_random_masks_follow_the_allocation_rule(root, allocation):
    """Through the level loop: each level's per-layer counts are the rule's plan.

    The rule itself (the authors' balanced and ERK sizes, hand-computed) is
    tested in tests/test_pruning.py; here the loop must apply it level by level.
    """
    workdir = str(root / f"random_{allocation}")
    # Hidden (256, 16): the 0.8-level keeps 7,892 of 14,496 weights (balanced), fewer than
    # level 2's 0.64 * N = 9,277, which level 2 must still size from d * N.
    c = tiny(random_masks.get_config(allocation), methods="lrr", mlp_hidden=(256, 16))
    campaign.run(c, workdir)
    run_dir = os.path.join(workdir, "lrr")
    previous = None
    for level in range(LEVELS):
        full = workdir_load(run_dir, level)["mask"]
        mask = kernels(full)
        kept = {n: int(m.sum()) for n, m in mask.items()}
        total = sum(m.size for m in mask.values())
        if previous is None:
            assert sum(kept.values()) == total
        else:
            assert all(np.all(mask[n] <= kernels(previous)[n]) for n in mask)  # only shrinks
            target = masks.scheduled_count(total, 0.2, level)
            assert kept == pruning.planned_counts(previous, target, allocation)
        previous = full
    rows = read_rows(run_dir)
    assert {(r["pruning"], r["score"]) for r in rows} == {(allocation, "random")}


# ---- sign perturbation -----------------------------------------------------------------------
def test_perturbation_replicas_share_one_program(base, root):
    workdir = str(root / "perturb")
    c = tiny(sign_perturbation.get_config(), methods="lrr", levels=2, perturb_every=1,
             num_replicas=2)
    results = campaign.run(c, workdir)
    rows = results["lrr"]
    settings = [(r["seed"], r["perturb_prob"]) for r in rows if r["level"] == 1]
    assert settings == [(s, p) for p in (0.0, 0.1, 0.2, 0.3, 0.5) for s in (0, 1)]
    # Replica 0 (seed 0, p = 0) is the unperturbed single run of seed 0.
    plain = read_rows(base["lrr"])
    for level in range(2):
        ours = next(r for r in rows if r["level"] == level and r["replica"] == 0)
        theirs = next(r for r in plain if int(r["level"]) == level)
        assert ours["test_acc"] == pytest.approx(float(theirs["test_acc"]), abs=1e-6)
        assert ours["train_loss"] == pytest.approx(float(theirs["train_loss"]), rel=1e-4)
        for a, b in zip(
                jax.tree.leaves(workdir_load(os.path.join(workdir, "lrr"), level)["params"]),
                jax.tree.leaves(workdir_load(base["lrr"], level)["params"]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Flips grow with p (vs init, level 1), and p > 0 changes the weights.
    flips = {r["perturb_prob"]: r["sign_flip_frac_vs_init"] for r in rows
             if r["level"] == 1 and r["seed"] == 0}
    assert flips[0.5] > flips[0.1] > flips[0.0]
    # One table, one column per replica setting.
    table = open(os.path.join(workdir, "summary.txt")).read().splitlines()[0]
    assert [c.strip() for c in table.strip("|").split("|")][2:] == [
        f"lrr p={p} (%)" for p in ("0", "0.1", "0.2", "0.3", "0.5")]


def test_perturb_recovery_epochs_stops_the_flips_before_the_levels_end(root, monkeypatch):
    """perturb_recovery_epochs=3 over 6 epochs, perturb_every=1: flips before epochs 0..3
    only, so 3 epochs (12 steps of 4) train after the last; the default restricts nothing."""
    calls = []
    real = studies.perturb

    def recording(config, reps, state, level, epoch, put):
        calls.append((level, epoch))
        return real(config, reps, state, level, epoch, put)

    monkeypatch.setattr(studies, "perturb", recording)
    c = tiny(sign_perturbation.get_config(), methods="lrr", levels=2, epochs_per_level=6,
             perturb_every=1, perturb_probs="0.1", perturb_recovery_epochs=3)
    rows = campaign.run(c, str(root / "perturb_recovery"))["lrr"]
    assert calls == [(lv, e) for lv in (0, 1) for e in range(4)]
    assert [r["steps_after_last_flip"] for r in rows] == [3 * 4] * 2
    # The schedule alone: the paper code's 150 epochs, and the default over 6 epochs.
    paper = ml_collections.ConfigDict({"perturb_every": 30, "epochs_per_level": 150,
                                       "perturb_recovery_epochs": 1})
    assert [e for e in range(150) if studies.perturbs_before(paper, e)] == [29, 59, 89, 119,
                                                                           149]
    paper.perturb_recovery_epochs = 5  # the last flip leaves 5 epochs: 149 goes
    assert [e for e in range(150) if studies.perturbs_before(paper, e)] == [29, 59, 89, 119]
    assert studies.steps_after_last_flip(paper, 196) == 31 * 196
    for bad in (0, 151):
        c = tiny(sign_perturbation.get_config(), perturb_recovery_epochs=bad,
                 epochs_per_level=150)
        with pytest.raises(ConfigError, match="^perturb_recovery_epochs: must be in"):
            validation.validate(c)


def test_perturb_every_3_flips_only_before_epochs_2_and_5_unpruned_weights_only(
        root, monkeypatch):
    """perturb_every=3 over 6 epochs: flips before epochs 2 and 5 of each level (paper
    code: epoch % 30 == 29), each unpruned kernel entry with probability p, pruned
    entries and biases never.

    The learning rate is 1e-30, so training leaves the weights as they are and
    every change of sign between a level's start and its end is a perturbation.
    """
    calls = []
    real = studies.perturb

    def recording(config, reps, state, level, epoch, put):
        host = jax.tree.map(lambda a: np.array(a)[0], (state.params, state.mask))
        out = real(config, reps, state, level, epoch, put)  # donates `state`
        calls.append((level, epoch, host[0], jax.tree.map(lambda a: np.array(a)[0], out.params),
                      host[1]))
        return out

    monkeypatch.setattr(studies, "perturb", recording)
    p = 0.3
    c = tiny(sign_perturbation.get_config(), methods="lrr", levels=2, epochs_per_level=6,
             perturb_every=3, perturb_probs=str(p), warmup_epochs=0, lr=1e-30, lr_min=1e-30,
             mlp_hidden=(64, 64))
    run_dir = str(root / "perturb_every_3")
    rows = campaign.run(c, run_dir)["lrr"]
    assert [(level, epoch) for level, epoch, *_ in calls] == [(0, 2), (0, 5), (1, 2), (1, 5)]
    assert [r["steps_after_last_flip"] for r in rows] == [1 * 4] * 2  # 400 / 100: 4 steps

    def one(tree):
        return jax.tree.map(np.asarray, tree)

    lrr = os.path.join(run_dir, "lrr")
    starts = [one(workdir_load(lrr, "init")["params"]), one(workdir_load(lrr, 0)["params"])]
    ends = [one(workdir_load(lrr, 0)["params"]), one(workdir_load(lrr, 1)["params"])]
    for level in range(2):
        (_, _, b2, a2, m2), (_, _, b5, a5, m5) = calls[2 * level:2 * level + 2]
        # Nothing else changes the weights (lr 1e-30 moves them by ~1e-30) or their signs:
        # start -> flip -> flip -> end.
        for x, y in ((b2, starts[level]), (b5, a2), (a5, ends[level])):
            assert_trees_close(x, y, rtol=1e-6, atol=1e-20)
            for n in kernels(x):
                np.testing.assert_array_equal(np.sign(kernels(x)[n]), np.sign(kernels(y)[n]))
        for before, after, mask in ((b2, a2, m2), (b5, a5, m5)):
            kb, ka, km = kernels(before), kernels(after), kernels(mask)
            assert_trees_equal(jax.tree.map(np.abs, ka), jax.tree.map(np.abs, kb))
            flipped = {n: np.sign(ka[n]) != np.sign(kb[n]) for n in kb}
            assert not any(np.any(f[km[n] == 0]) for n, f in flipped.items())  # pruned: never
            kept = sum(int(np.sum(km[n] > 0)) for n in kb)
            frac = sum(int(np.sum(f)) for f in flipped.values()) / kept
            assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / kept), (level, frac, kept)
            for path_b, path_a in zip(jax.tree_util.tree_flatten_with_path(before)[0],
                                      jax.tree_util.tree_flatten_with_path(after)[0]):
                if "bias" in jax.tree_util.keystr(path_b[0]):
                    np.testing.assert_array_equal(path_a[1], path_b[1])  # biases never flip
        if level == 1:  # the pruned entries exist at level 1
            assert sum(int(np.sum(v == 0)) for v in kernels(m2).values()) > 0


def test_by_replica_setting_keeps_plain_runs():
    rows = [{"level": 0, "density": 1.0, "test_acc": 0.5, "perturb_prob": 0.0}]
    assert summary.by_replica_setting({"imp": rows}) == {"imp": rows}
    mixed = rows + [{"level": 0, "density": 1.0, "test_acc": 0.4, "perturb_prob": "0.3"}]
    split = summary.by_replica_setting({"lrr": mixed})
    assert list(split) == ["lrr p=0", "lrr p=0.3"] and split["lrr p=0.3"][0]["test_acc"] == 0.4


# ---- linear mode connectivity ---------------------------------------------------------------
def test_lmc_endpoints_are_the_runs_accuracies(base, root):
    c = lmc.get_config()
    c.update({k: v for k, v in TINY.items() if k in ("mlp_hidden", "train_limit", "test_limit",
                                                     "eval_batch_size", "progress")})
    c.lmc_a, c.lmc_b = f"{base['lrr']}:2", f"{base['imp']}:1"
    out = campaign.run(c, str(root / "lmc"))
    saved = json.load(open(root / "lmc" / "lmc.json"))
    assert saved["alphas"] == pytest.approx([i / 10 for i in range(11)])
    acc = {(m, int(r["level"])): float(r["test_acc"]) for m in ("lrr", "imp")
           for r in read_rows(base[m])}
    assert out["test_acc"][0] == pytest.approx(acc[("lrr", 2)], abs=1e-6)  # alpha 0: a
    assert out["test_acc"][-1] == pytest.approx(acc[("imp", 1)], abs=1e-6)  # alpha 1: b
    assert 0.0 <= saved["sign_flip_frac"] <= 1.0 and saved["sign_flips_per_layer"]
    # A checkpoint of the same run against itself: no flips, flat path.
    c.lmc_b = c.lmc_a
    same = campaign.run(c, str(root / "lmc_same"))
    assert same["sign_flip_frac"] == 0.0
    np.testing.assert_allclose(same["test_acc"], same["test_acc"][0], atol=1e-6)


def test_lmc_refuses_another_model(base, tmp_path):
    c = lmc.get_config()
    c.update(mlp_hidden=(32, 32), progress=False)
    c.lmc_a, c.lmc_b = f"{base['lrr']}:1", f"{base['imp']}:1"
    with pytest.raises(ConfigError, match="^lmc_a: .* was run with mlp_hidden=\\[16, 16\\]"):
        campaign.run(c, str(tmp_path / "lmc"))
    c.update(mlp_hidden=(16, 16))
    c.lmc_b = f"{base['imp']}:7"
    with pytest.raises(ConfigError, match="^lmc_b: .* has no committed checkpoint 'level_007'"):
        campaign.run(c, str(tmp_path / "lmc"))


# ---- missing or incompatible sources: ConfigError before training -------------------------
@pytest.mark.parametrize("case", ["missing", "parent", "fewer_levels", "other_model",
                                  "replicas", "sign_source_unused"])
def test_bad_source_stops_before_training(base, tmp_path, case):
    variant, overrides = "wr_lrr_mask", {"mask_source": base["lrr"]}
    expected = None
    if case == "missing":
        overrides["mask_source"] = str(tmp_path / "nowhere")
        expected = "is not a run directory (no config.json)"
    elif case == "parent":
        overrides["mask_source"] = os.path.dirname(base["lrr"])
        expected = f"it holds the runs of imp, lrr: name one, e.g. {base['lrr']}"
    elif case == "fewer_levels":
        overrides["levels"] = LEVELS + 1
        expected = f"has {LEVELS} finished levels, this run needs {LEVELS + 1}"
    elif case == "other_model":
        overrides["mlp_hidden"] = (32, 16)
        expected = "was run with mlp_hidden=[16, 16]"
    elif case == "replicas":
        overrides["num_replicas"] = 2
        expected = "has a different number of replicas"
    else:
        variant = "imp_own_signs"
        overrides = {"sign_source": base["lrr"]}
        expected = "sign_transfer 'own_signs' does not use a sign source"
    c = tiny(transfer.get_config(variant), **overrides)
    workdir = tmp_path / "w"
    with pytest.raises(ConfigError) as e:
        campaign.run(c, str(workdir))
    assert expected in str(e.value)
    assert e.value.key in ("mask_source", "sign_source")
    assert not os.path.exists(workdir / "checkpoints")
    assert not os.path.exists(workdir / "config.json")
