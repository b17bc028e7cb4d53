"""The shape of the package: no import cycle, small loop functions, and each epoch hook alone.

The hooks (`epochs.HOOKS`) are exercised here one at a time on a `Loop` of a
real phase (a tiny MLP run's replica set), without the epoch loop around them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import sys

import numpy as np
import pytest

from lrr_jax import (
    checkpoints,
    engine,
    epochs,
    levels,
    preemption,
    replica_set,
    replicas,
    studies,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "lrr_jax")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import quickstart  # noqa: E402


def _import_graph() -> dict[str, set[str]]:
    """module -> the lrr_jax modules it imports, at module level or inside a function."""
    modules = {}
    for d, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), REPO)[:-3].replace(os.sep, ".")
                modules[rel.removesuffix(".__init__")] = os.path.join(d, f)

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lrr_jax"):
                names = [f"{node.module}.{a.name}" for a in node.names]
            deps |= {resolve(n) for n in names if n.startswith("lrr_jax")}
        graph[module] = deps - {module, ""}
    return graph


def _cycle(graph) -> list[str] | None:
    state, path = {}, []

    def visit(v):
        state[v] = "open"
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = _import_graph()
    assert "lrr_jax.config_base" in graph and "lrr_jax.validation" in graph
    assert graph["lrr_jax.config_base"] == set()  # defaults only: imports no lrr_jax module
    assert _cycle(graph) is None, _cycle(graph)
    # The check sees cycles (a function-level import closing one counts).
    assert _cycle({**graph, "lrr_jax.replicas": {"lrr_jax.validation"}})


LOOP_MODULES = (levels, epochs, replica_set)


def test_loop_functions_take_at_most_five_parameters():
    for module in LOOP_MODULES:
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__:
                continue
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            assert len(params) <= 5, f"{module.__name__}.{name} takes {len(params)}"
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            for name, fn in inspect.getmembers(cls, inspect.isfunction):
                if dataclasses.is_dataclass(cls) and name == "__init__":
                    continue  # a record's generated constructor: one field per parameter
                if fn.__qualname__.startswith(cls_name + "."):
                    n = len(inspect.signature(fn).parameters) - 1  # self
                    assert n <= 5, f"{module.__name__}.{cls_name}.{name} takes {n}"


TINY = {"mlp_hidden": (8,), "train_limit": 200, "test_limit": 100, "batch_size": 100,
        "eval_batch_size": 100, "levels": 2, "epochs_per_level": 4, "warmup_epochs": 1,
        "progress": False, "tensorboard": False, "checkpoint_every_epochs": 2,
        "num_replicas": 2, "methods": "imp,lrr"}


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """A Loop of level 1 of a tiny 2-method run, on the devices, before any hook ran."""
    c = quickstart.get_config()
    c.update(TINY)
    e = engine.make(c)
    reps = replicas.from_config(c)
    root = tmp_path_factory.mktemp("hooks")
    stores = {m: checkpoints.Store(str(root / m)) for m in ("imp", "lrr")}
    rs = replica_set.ReplicaSet(c, e, reps, stores)
    rs.init = rs.point = e.init_states([r.seed for r in reps])

    def make(**changes):
        p = epochs.Phase(rs, "level", 1, 4, [0, 1, 2, 3])
        groups = replicas.groups(len(reps), 0)
        lp = epochs.Loop(p, groups, [e.put(replicas.take(rs.init, g)) for g in groups],
                         np.full(4, -np.inf))
        for k, v in changes.items():
            setattr(lp, k, v)
        return lp

    return make


def _metrics(loss):
    return {"loss": np.asarray(loss, np.float32), "acc": np.full(4, 0.5, np.float32)}


def test_divergence_check_names_the_replicas_and_the_steps(loop):
    lp = loop(epoch=2, train_metrics=_metrics([1.0, np.nan, 2.0, np.inf]))
    with pytest.raises(epochs.TrainingDiverged, match=r"epoch 2.*imp replica 1.*lrr replica 1"):
        epochs.DivergenceCheck().after_epoch(lp)
    epochs.DivergenceCheck().after_epoch(loop(train_metrics=_metrics([1.0, 2.0, 3.0, 4.0])))
    # A replica that is not being saved (computed alongside on a resume) is not checked.
    lp = loop(train_metrics=_metrics([1.0, np.nan, 2.0, 3.0]))
    lp.p = epochs.Phase(lp.p.rs, "level", 1, 4, [2, 3])
    epochs.DivergenceCheck().after_epoch(lp)


def test_evaluation_on_its_epochs_and_the_last_keeps_the_best(loop):
    lp = loop(epoch=0)
    lp.p.rs.config.eval_every_epochs = 2
    try:
        epochs.Evaluation().after_epoch(lp)  # epoch 0 of 4: not due
        assert lp.last_eval is None and np.all(lp.best == -np.inf)
        lp.epoch = 1
        epochs.Evaluation().after_epoch(lp)  # epoch 1: due
        assert lp.last_eval["acc"].shape == (4,) and np.all(lp.best == lp.last_eval["acc"])
        lp.best = np.full(4, 2.0)  # a better earlier epoch is kept
        lp.epoch = 3
        epochs.Evaluation().after_epoch(lp)  # the last epoch: always
        assert np.all(lp.best == 2.0)
    finally:
        lp.p.rs.config.eval_every_epochs = 1


def test_sign_perturbation_flips_only_before_the_papers_epochs(loop):
    lp = loop(epoch=0)
    lp.p.rs.reps = [replicas.Replica(r.method, r.seed, 0.5, r.index) for r in lp.p.reps]
    lp.p.rs.config.perturb_every = 2
    try:
        before = np.asarray(lp.states[0].params["dense1"]["kernel"])
        epochs.SignPerturbation().before_group(lp, 0)  # epoch 0: not before a flip epoch
        assert np.array_equal(np.asarray(lp.states[0].params["dense1"]["kernel"]), before)
        lp.epoch = 1
        assert studies.perturbs_before(lp.p.config, 1)
        epochs.SignPerturbation().before_group(lp, 0)
        after = np.asarray(lp.states[0].params["dense1"]["kernel"])
        flipped = np.mean(np.sign(after) != np.sign(before))
        assert 0.4 < flipped < 0.6 and np.allclose(np.abs(after), np.abs(before))
    finally:
        lp.p.rs.config.perturb_every = 30
        lp.p.rs.reps = replicas.from_config(lp.p.config)


def test_periodic_save_and_the_preemption_notice(loop, monkeypatch):
    lp = loop(epoch=0, train_metrics=_metrics([1.0, 2.0, 3.0, 4.0]))
    epochs.PreemptionNotice().after_epoch(lp)
    epochs.PeriodicSave().after_epoch(lp)  # epoch 0, every 2: no save
    assert not lp.stopping and lp.saved is None
    lp.epoch = 1
    epochs.PeriodicSave().after_epoch(lp)  # after epoch 1: the periodic save
    assert lp.saved == checkpoints.mid_name(1, 1)
    for m in ("imp", "lrr"):
        meta = lp.p.rs.stores[m].restore_meta(lp.saved)
        assert meta["epoch"] == 1 and len(meta["best"]) == 2
    monkeypatch.setattr(preemption, "_requested", True)
    lp.epoch = 2
    epochs.PreemptionNotice().after_epoch(lp)
    epochs.PeriodicSave().after_epoch(lp)  # a notice forces a save off the period
    assert lp.stopping and lp.saved == checkpoints.mid_name(1, 2)
    assert lp.p.rs.stores["imp"].mid_positions(1) == [(3, 0)]  # the older one went
    lp.epoch = 3  # the last epoch: the caller saves the level, no mid save, no stop
    epochs.PreemptionNotice().after_epoch(lp)
    epochs.PeriodicSave().after_epoch(lp)
    assert not lp.stopping and lp.saved is None


def test_train_scalars_go_to_each_saved_replicas_method(loop):
    written = []

    class Writer:
        def __init__(self, method):
            self.method = method

        def add_scalar(self, tag, value, step):
            written.append((self.method, tag, value, step))

    lp = loop(epoch=1, train_metrics=_metrics([1.0, 2.0, 3.0, 4.0]))
    lp.p.rs.writers = {"imp": Writer("imp"), "lrr": Writer("lrr")}
    try:
        epochs.TrainScalars().after_epoch(lp)
    finally:
        lp.p.rs.writers = {}
    x = TINY["warmup_epochs"] + 1 * TINY["epochs_per_level"] + 1
    assert ("imp", "level/train_loss/seed_1", 2.0, x) in written
    assert ("lrr", "level/train_loss/seed_0", 3.0, x) in written
    assert len(written) == 8  # loss and accuracy of 4 replicas


def test_config_files_set_only_what_differs_from_what_they_start_from(monkeypatch):
    """Every `c.KEY = value` in a config file of one setting changes the value (the base
    config's default, or the config file it starts from): the file says what is
    particular to it. (The files that take an argument, `transfer.py:VARIANT,BASE` and
    its kind, set the same keys for every variant, some to what they were.)"""
    import glob
    import importlib

    import ml_collections

    from lrr_jax import config_base

    same = []

    class Recording(ml_collections.ConfigDict):
        def __setattr__(self, key, value):
            if not key.startswith("_") and key in self and self[key] == value:
                same.append((where, key, value))
            super().__setattr__(key, value)

    real = config_base.get_base_config
    monkeypatch.setattr(config_base, "get_base_config",
                        lambda: Recording(real().to_dict()))
    files = sorted(glob.glob(os.path.join(REPO, "configs", "[a-z]*.py")))
    fixed = [os.path.basename(p)[:-3] for p in files if "def get_config():" in open(p).read()]
    assert {"quickstart", "cifar10", "cifar100", "imagenet", "mnist_lenet"} <= set(fixed)
    for name in fixed:
        where = name
        importlib.import_module(f"configs.{name}").get_config()
    assert same == []
    # The check sees a redundant line.
    where = "probe"
    c = config_base.get_base_config()
    c.levels = c.levels
    assert same == [("probe", "levels", c.levels)]
