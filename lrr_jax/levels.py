"""Iterative pruning as in the paper: train, prune, rewind, repeat, for every replica at once.

`run_levels` is the paper's loop over a `replica_set.ReplicaSet`: theta_0 and
the rewind point once; then for each level not yet saved, prune (each
replica by its score and allocation; a `TARGET@SOURCE` replica takes its
source replica's mask), rewind (each by its method), train, and commit
(check, save, record). Every artifact is written once and restored when
present, so the same command resumes after a crash or a preemption, and a
level in progress continues from its last mid-level save.

A level, the warm-up and theta_0 are always computed for every replica of
the run, also when some methods had already saved theirs (a run killed
between two methods' saves): the compiled program, and so every replica's
floating-point result, is then the same as in an uninterrupted run, and only
the replicas still pending are saved (`epochs.Phase.saving`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import numpy as np

from lrr_jax import (
    checkpoints,
    distributed,
    epochs,
    faults,
    invariants,
    masks,
    preemption,
    pruning,
    records,
    replicas,
    rewind,
    studies,
    workdir,
)


@dataclasses.dataclass
class LevelRun:
    """One level being computed: which replicas are pending, where they come from, and,
    as it goes, where they start, what they became and what was measured."""

    level: int
    pending: list[int]
    prev: Any  # every replica's final state of the previous level (None at level 0)
    start: Any = None
    trained: Any = None
    outcome: dict | None = None


def run_levels(rs) -> dict[str, list[dict]]:
    """Every level of every replica of `rs`; returns method -> results rows."""
    rs.init = make_init(rs)
    rs.point = warm_up(rs) if rs.config.warmup_epochs > 0 else rs.init
    prev, clock = None, _Clock(len(rs.reps), rs.config.levels)
    for level in range(rs.config.levels):
        preemption.check(f"before level {level}: finished levels are saved")
        found = rs.restore(checkpoints.level_name(level), like=rs.init)
        rs.records.update(found.records)
        state = found.state
        if found.pending:
            t0, run = time.time(), LevelRun(level, found.pending, prev)
            run.start = start_level(rs, run)
            run.trained, run.outcome = train_level(rs, run)
            commit(rs, run)
            state = replicas.place(state, replicas.take(run.trained, run.pending), run.pending)
            clock.done(level, time.time() - t0, rs.provenance)
        rs.write_results(level)
        prev = state
    return rs.results()


class _Clock:
    """The campaign progress line after each trained level, and its time in run.json."""

    def __init__(self, num_replicas: int, num_levels: int):
        self.start, self.k, self.n, self.times = time.time(), num_replicas, num_levels, []

    def done(self, level: int, seconds: float, record) -> None:
        self.times.append(seconds)
        if record is not None:
            record.level_done(level, seconds)
        if not distributed.is_primary():
            return
        eta = (self.n - 1 - level) * sum(self.times) / len(self.times)
        print(f"campaign: level {level}/{self.n - 1} done, {self.k} replicas, elapsed "
              f"{_hms(time.time() - self.start)}, ETA {_hms(eta)}", flush=True)


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def _one_method(rs):
    """theta_0 of one method's replicas: the shapes of a source run's checkpoints."""
    return replicas.take(rs.init, next(iter(rs.by_method.values())))


def new_masks(rs, run: LevelRun):
    """Every replica's mask for `run.level`: pruned from its own previous level, taken
    from the mask source run (`config.mask_source`), or, for TARGET@SOURCE, the mask its
    SOURCE replica of the same seed and p has just been given."""
    config, reps = rs.config, rs.reps
    if config.mask_source:
        return studies.source_mask(config, reps, run.level, _one_method(rs))
    if run.level == 0:
        return rs.point.mask
    own = [prune(rs, run, i) if r.mask_from is None else None for i, r in enumerate(reps)]
    source = replicas.mask_sources(reps)
    return replicas.stack([own[source[i]] for i in range(len(reps))])


def start_level(rs, run: LevelRun):
    """Every replica's start of `run.level`: prune, rewind, transfer (level 0: the rewind
    point, its step restarted)."""
    config = rs.config
    mask = new_masks(rs, run)
    if run.level == 0:
        return rs.point.replace(step=np.zeros_like(rs.point.step), mask=mask)
    faults.hit("after_prune", run.level)
    options = {"reset_momentum": config.reset_momentum,
               "rewind_batch_stats": config.rewind_batch_stats,
               "optimizer_from_point": studies.optimizer_from_point(config)}
    out = []
    for i, r in enumerate(rs.reps):
        finished, m = replicas.one(run.prev, i), replicas.one(mask, i)
        targets = {"init": replicas.one(rs.init, i), "point": replicas.one(rs.point, i)}
        s = rewind.for_method(r.rewind, finished.replace(mask=m), **targets, **options)
        invariants.check_rewind(r.rewind, s, level=run.level, prev=finished, new_mask=m,
                                **targets, **options)
        out.append(s)
    state = replicas.stack(out)
    if config.sign_transfer:
        source = (studies.source_params(config, rs.reps, run.level, _one_method(rs))
                  if config.sign_source else None)
        state = studies.transfer_signs(config, rs.reps, run.level, state, studies.SignInputs(
            rs.init, rs.point, run.prev.params, source))
    if config.zero_pruned_weights:
        state = state.replace(params=masks.apply(state.params, state.mask))
    return state


def prune(rs, run: LevelRun, i: int):
    """Replica i's mask for `run.level`, by the run's score and allocation, from its
    finished previous level (a score that needs the model or a training batch gets them
    through its `pruning.ScoreContext`)."""
    config, prev = rs.config, run.prev
    params, mask = replicas.one(prev.params, i), replicas.one(prev.mask, i)
    target = masks.scheduled_count(masks.count(mask)[1], config.prune_fraction, run.level)
    seed = rs.reps[i].seed * 1000 + run.level
    context = pruning.ScoreContext(
        batch_stats=replicas.one(prev.batch_stats, i), apply_fn=rs.engine.model.apply,
        input_shape=rs.engine.input_shape, batch=lambda: rs.engine.score_batch(seed))
    return pruning.prune(params, mask, target, allocation=config.pruning,
                         score=records.score_of(config), seed=seed, context=context)


def planned_count(config, replica, level: int, dense_mask, prev_mask) -> int | None:
    """Unpruned weights the replica's pruning rule planned for `level` (None: its mask
    comes from a source).

    Each rule's own count (`pruning.planned_total`): the scheduled count for
    exact rules, less for the authors' balanced and ERK (capped layers).
    """
    if config.mask_source or replica.mask_from is not None:
        return None
    target = masks.scheduled_count(masks.count(dense_mask)[1], config.prune_fraction, level)
    return target if prev_mask is None else pruning.planned_total(prev_mask, target,
                                                                   config.pruning)


def train_level(rs, run: LevelRun):
    """Train every replica through `run.level`, from the newest mid-level save that every
    pending method has, if any (the other replicas run alongside from their start)."""
    config = rs.config
    phase = epochs.Phase(rs, "level", run.level, int(config.epochs_per_level), run.pending)
    state, resume = run.start, None
    position = common_mid(rs, run)
    if position is not None:
        state, resume = restore_mid(rs, run, position)
    trained, outcome = epochs.train(phase, state, resume)
    if run.level == 0:
        trained, outcome = share(rs, trained, outcome)
    return trained, outcome


def common_mid(rs, run: LevelRun) -> tuple[int, int] | None:
    """The position of the newest mid-level save of the level that every pending method has."""
    per_method = [set(rs.stores[m].mid_positions(run.level))
                  for m in rs.methods_at(run.pending)]
    both = set.intersection(*per_method) if per_method else set()
    return max(both) if both else None


def restore_mid(rs, run: LevelRun, position) -> tuple[Any, epochs.Resume | None]:
    """(every replica's state at the mid-level save at `position`, where to resume).

    The pending replicas come from the save; the others (finished before) run
    alongside from their start. A save made inside an epoch by another set of
    pending replicas (a run killed between two methods' level saves) does not
    fit this one's groups: the level then starts again.
    """
    name = checkpoints.mid_at(run.level, position)
    found = rs.restore(name, like=run.start)
    metas = {m: rs.stores[m].restore_meta(name) for m in rs.methods_at(run.pending)}
    where = (f"after epoch {position[0] - 1}" if not position[1] else
             f"in epoch {position[0]} after step {position[1]}")
    for m in metas:
        print(f"{m}: level {run.level} resumes {where} from {rs.stores[m].path(name)}",
              file=sys.stderr, flush=True)
    partial = next(iter(metas.values())).get("partial")
    if partial and partial["replicas"] != [r.name for r in rs.reps]:
        print(f"level {run.level}: {name} was saved by other replica groups; the level "
              "restarts", file=sys.stderr, flush=True)
        return run.start, None
    k = len(rs.reps)
    best, last = np.full(k, -np.inf), None
    for m, meta in metas.items():
        pos = rs.by_method[m]
        best[pos] = meta["best"]
        if meta["last_eval"] is not None:
            last = last or {key: np.zeros(k, np.float32) for key in meta["last_eval"]}
            for key, values in meta["last_eval"].items():
                last[key][pos] = values
    return found.state, epochs.Resume(position[0], best, last, partial)


def commit(rs, run: LevelRun) -> None:
    """End-of-level invariants, then each pending method's level checkpoint and rows."""
    config, pending = rs.config, run.pending
    reps = [rs.reps[i] for i in pending]
    trained, start = replicas.take(run.trained, pending), replicas.take(run.start, pending)
    prev_mask = None if run.prev is None else replicas.take(run.prev.mask, pending)
    expected = [planned_count(config, rs.reps[p], run.level, replicas.one(rs.init.mask, p),
                              None if prev_mask is None else replicas.one(prev_mask, i))
                for i, p in enumerate(pending)]
    invariants.check_level(run.level, [r.name for r in reps], trained, start, prev_mask,
                           expected)
    invariants.check_pruned_inert(run.level, "level", trained, rs.engine.evaluate)
    for method, mine in records.level_rows(rs, run).items():
        pos = [i for i in rs.by_method[method] if i in pending]
        rs.stores[method].save(checkpoints.level_name(run.level),
                               replicas.take(run.trained, pos),
                               {"rows": mine[0], "sign_flips": mine[1],
                                "seconds": run.outcome["seconds"]})
        rs.stores[method].delete_mids()
        rs.records[(method, run.level)] = mine


def make_init(rs):
    """theta_0 of every replica: restored where saved, else made from its seed and saved."""
    fresh = rs.engine.init_states([r.seed for r in rs.reps])
    found = rs.restore("init", like=fresh)

    def meta(method, pos):
        return {"method": method,
                "config": json.loads(workdir.method_config(rs.config, method).to_json())}

    rs.save("init", fresh, meta, positions=found.pending)
    return replicas.place(found.state, replicas.take(fresh, found.pending), found.pending)


def warm_up(rs):
    """The rewind point (end of the warm-up, WR's target): trained once, then restored."""
    found = rs.restore("rewind", like=rs.init)
    if not found.pending:
        return found.state
    phase = epochs.Phase(rs, "warmup", -1, int(rs.config.warmup_epochs), found.pending)
    trained, _ = epochs.train(phase, rs.init)
    trained, _ = share(rs, trained)
    rs.save("rewind", trained, lambda method, pos: {"method": method}, positions=found.pending)
    return replicas.place(found.state, replicas.take(trained, found.pending), found.pending)


def share(rs, trained, outcome=None):
    """One seed's warm-up or level 0, copied from its first replica to its other methods'.

    The methods differ only between levels, so these copies computed the same
    thing, but at other positions of the vmapped program, i.e. to float
    summation order only (`replicas.twins`); keeping one makes IMP, WR and LRR
    of a seed a bitwise-paired comparison.
    """
    idx = replicas.twins(rs.reps)
    if outcome is not None:  # its per-replica measurements follow the states
        outcome = {**outcome, **{k: None if outcome[k] is None else replicas.take(outcome[k], idx)
                                 for k in ("best", "last_eval", "train_metrics")}}
    return replicas.take(trained, idx), outcome
