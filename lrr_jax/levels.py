"""Iterative pruning as in the paper: train, prune, rewind, repeat, for every replica at once.

`run_levels` is the paper's loop. theta_0 and the rewind point are made once;
then for each level not yet saved: per replica, prune (by its score and
allocation) and rewind (by its method); train all pending replicas together;
check and save. Every artifact is written once and restored when present, so
the same command resumes after a crash or a preemption, and a level in
progress continues from its last mid-level save.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
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
    schema,
    studies,
    workdir,
)


@dataclasses.dataclass
class Campaign:
    """One run: the config, the compiled engine, the replicas and each method's store."""

    config: Any
    engine: Any
    reps: list  # every replicas.Replica of the run, in the order of the stacked state
    stores: dict  # method -> checkpoints.Store
    writers: dict = dataclasses.field(default_factory=dict)  # method -> TensorBoard writer
    # (method, level) -> (results rows, sign-flip rows): kept in memory, so every process
    # of a multi-process run reports what it computed or restored, never a file in flux.
    records: dict = dataclasses.field(default_factory=dict)
    provenance: Any = None  # provenance.Record: run.json, given each level's wall time


def run_levels(c: Campaign) -> dict[str, list[dict]]:
    """Every level of every replica; returns method -> results rows (`schema.RESULT_COLUMNS`)."""
    config = c.config
    init = make_init(c)
    point = warm_up(c, init) if config.warmup_epochs > 0 else init
    prev, clock = None, _Clock(len(c.reps), config.levels)
    for level in range(config.levels):
        preemption.check(f"before level {level}: finished levels are saved")
        name = checkpoints.level_name(level)
        state, pending = restore(c, name, like=init)
        if pending:
            t0 = time.time()
            start = start_level(c, level, pending, prev, init, point)
            trained, outcome = train_level(c, level, pending, start)
            if level == 0:
                trained, outcome = share(c, pending, trained, outcome)
            finish_level(c, level, pending, trained, start, prev, init, outcome)
            state = replicas.place(state, trained, pending)
            clock.done(level, time.time() - t0, c.provenance)
        write_results(c, level)
        prev = state
    return {m: collect(c, m, config.levels)[0] for m in c.stores}


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


def start_level(c: Campaign, level: int, pending, prev, init, point):
    """The stacked start of level `level` for `pending`: prune, rewind, transfer."""
    config, reps = c.config, [c.reps[i] for i in pending]
    init_p, point_p = replicas.take(init, pending), replicas.take(point, pending)
    if level == 0:
        state = point_p.replace(step=np.zeros_like(point_p.step))
        if config.mask_source:
            state = state.replace(mask=studies.source_mask(config, reps, 0, _like(c, init)))
        return state
    prev_p = replicas.take(prev, pending)
    if config.mask_source:
        new_mask = studies.source_mask(config, reps, level, _like(c, init))
    else:
        new_mask = replicas.stack([
            prune(config, r, level, replicas.one(prev_p.params, i), replicas.one(prev_p.mask, i))
            for i, r in enumerate(reps)])
    faults.hit("after_prune", level)
    options = {"reset_momentum": config.reset_momentum,
               "rewind_batch_stats": config.rewind_batch_stats,
               "optimizer_from_point": studies.optimizer_from_point(config)}
    out = []
    for i, r in enumerate(reps):
        finished, mask = replicas.one(prev_p, i), replicas.one(new_mask, i)
        targets = {"init": replicas.one(init_p, i), "point": replicas.one(point_p, i)}
        s = rewind.for_method(r.method, finished.replace(mask=mask), **targets, **options)
        invariants.check_rewind(r.method, s, level=level, prev=finished, new_mask=mask,
                                **targets, **options)
        out.append(s)
    state = replicas.stack(out)
    if config.sign_transfer:
        source = (studies.source_params(config, reps, level, _like(c, init))
                  if config.sign_source else None)
        state = studies.transfer_signs(config, reps, level, state, init_p, point_p,
                                       prev_p.params, source)
    if config.zero_pruned_weights:
        state = state.replace(params=masks.apply(state.params, state.mask))
    return state


def prune(config, replica, level: int, params, mask):
    """The replica's mask for `level` from its finished level's weights and mask."""
    total = masks.count(mask)[1]
    target = masks.scheduled_count(total, config.prune_fraction, level)
    return pruning.prune(params, mask, target, allocation=config.pruning,
                         score="random" if config.random_mask else "magnitude",
                         seed=replica.seed * 1000 + level)


def planned_count(config, level: int, dense_mask, prev_mask) -> int | None:
    """Unpruned weights the replica's pruning rule planned for `level` (None: a mask source).

    Each rule's own count (`pruning.planned_total`): the scheduled count for
    exact rules, less for the authors' balanced and ERK (capped layers).
    """
    if config.mask_source:
        return None
    target = masks.scheduled_count(masks.count(dense_mask)[1], config.prune_fraction, level)
    return target if prev_mask is None else pruning.planned_total(prev_mask, target,
                                                                   config.pruning)


def train_level(c: Campaign, level: int, pending, start):
    """Train `pending` through level `level`, continuing from a mid-level save if any."""
    reps = [c.reps[i] for i in pending]
    phase = epochs.Phase(c.config, c.engine, reps, c.stores, c.writers, "level", level,
                         int(c.config.epochs_per_level))
    position = common_mid(c, reps, level)
    if position is None:
        return epochs.train(phase, start)
    name = checkpoints.mid_at(level, position)
    parts, metas = [], []
    for method, pos in replicas.by_method(reps).items():
        s, meta = c.stores[method].restore(name, replicas.take(start, pos))
        parts.append(s)
        metas.append(meta)
        where = (f"after epoch {position[0] - 1}" if not position[1] else
                 f"in epoch {position[0]} after step {position[1]}")
        print(f"{method}: level {level} resumes {where} from {c.stores[method].path(name)}",
              file=sys.stderr, flush=True)
    partial = metas[0].get("partial")
    if partial and partial["replicas"] != [r.name for r in reps]:
        # Saved by another set of pending replicas (a run killed between two methods'
        # level saves): its replica groups do not apply; the level starts again.
        print(f"level {level}: {name} was saved by other replica groups; the level restarts",
              file=sys.stderr, flush=True)
        return epochs.train(phase, start)
    last = [m["last_eval"] for m in metas]
    return epochs.train(phase, replicas.concat(parts), start_epoch=position[0],
                        best=np.concatenate([m["best"] for m in metas]),
                        last_eval=None if None in last else
                        {k: np.concatenate([np.asarray(x[k]) for x in last]) for k in last[0]},
                        partial=partial)


def common_mid(c: Campaign, reps, level: int) -> tuple[int, int] | None:
    """The position of the newest mid-level save of `level` that every pending method has."""
    per_method = [set(c.stores[m].mid_positions(level)) for m in replicas.by_method(reps)]
    both = set.intersection(*per_method) if per_method else set()
    return max(both) if both else None


def finish_level(c: Campaign, level, pending, trained, start, prev, init, outcome) -> None:
    """End-of-level invariants, then each method's level checkpoint with its rows."""
    config, reps = c.config, [c.reps[i] for i in pending]
    prev_mask = None if prev is None else replicas.take(prev.mask, pending)
    expected = [planned_count(config, level, replicas.one(init.mask, p),
                              None if prev_mask is None else replicas.one(prev_mask, i))
                for i, p in enumerate(pending)]
    invariants.check_level(level, [r.name for r in reps], trained, start, prev_mask, expected)
    invariants.check_pruned_inert(level, "level", trained, c.engine.evaluate)
    rows, flips = records.level_rows(config, reps, level, trained, replicas.take(init, pending),
                                     None if prev is None else replicas.take(prev, pending),
                                     outcome)
    for method, pos in replicas.by_method(reps).items():
        mine = ([rows[i] for i in pos], [f for f in flips if f["method"] == method])
        c.stores[method].save(checkpoints.level_name(level), replicas.take(trained, pos), {
            "rows": mine[0], "sign_flips": mine[1], "seconds": outcome["seconds"]})
        c.stores[method].delete_mids()
        c.records[(method, level)] = mine


def make_init(c: Campaign):
    """theta_0 of every replica: restored where saved, else made from its seed and saved."""
    fresh = c.engine.init_states([r.seed for r in c.reps])
    state, pending = restore(c, "init", like=fresh)
    for method, pos in replicas.by_method([c.reps[i] for i in pending]).items():
        c.stores[method].save("init", replicas.take(fresh, [pending[i] for i in pos]), {
            "method": method,
            "config": json.loads(workdir.method_config(c.config, method).to_json())})
    return replicas.place(state, replicas.take(fresh, pending), pending)


def warm_up(c: Campaign, init):
    """The rewind point (end of the warm-up, WR's target): trained once, then restored."""
    state, pending = restore(c, "rewind", like=init)
    if pending:
        reps = [c.reps[i] for i in pending]
        phase = epochs.Phase(c.config, c.engine, reps, c.stores, c.writers, "warmup", -1,
                             int(c.config.warmup_epochs))
        trained, _ = epochs.train(phase, replicas.take(init, pending))
        trained, _ = share(c, pending, trained)
        for method, pos in replicas.by_method(reps).items():
            c.stores[method].save("rewind", replicas.take(trained, pos), {"method": method})
        state = replicas.place(state, trained, pending)
    return state


def share(c: Campaign, pending, trained, outcome=None):
    """One seed's warm-up or level 0, copied from its first replica to its other methods'.

    The methods differ only between levels, so these copies computed the same
    thing, but at other positions of the vmapped program, i.e. to float
    summation order only (`replicas.twins`); keeping one makes IMP, WR and LRR
    of a seed a bitwise-paired comparison. (A run killed between two methods'
    saves of the warm-up or of level 0 retrains the missing one alone: equal to
    float order only.)
    """
    idx = replicas.twins([c.reps[i] for i in pending])
    if outcome is not None:  # its per-replica measurements follow the states
        outcome = {**outcome, **{k: None if outcome[k] is None else replicas.take(outcome[k], idx)
                                 for k in ("best", "last_eval", "train_metrics")}}
    return replicas.take(trained, idx), outcome


def restore(c: Campaign, name: str, like):
    """(stacked state with every method's saved `name` filled in, positions still pending)."""
    state, pending = jax.tree.map(np.array, like), []
    for method, pos in replicas.by_method(c.reps).items():
        store = c.stores[method]
        if store.exists(name):
            saved, meta = store.restore(name, replicas.take(like, pos))
            state = replicas.place(state, saved, pos)
            if "rows" in meta:  # a finished level
                c.records[(method, checkpoints.level_of(name))] = (meta["rows"],
                                                                   meta["sign_flips"])
        else:
            pending += pos
    return state, sorted(pending)


def write_results(c: Campaign, level: int) -> None:
    """results.csv and sign_flips.csv of each method, from its level checkpoints up to `level`."""
    for method, store in c.stores.items():
        rows, flips = collect(c, method, level + 1)
        run_dir = os.path.dirname(store.dir)
        workdir.write_csv(os.path.join(run_dir, "results.csv"), schema.RESULT_COLUMNS, rows)
        workdir.write_csv(os.path.join(run_dir, "sign_flips.csv"), schema.SIGN_FLIP_COLUMNS,
                          flips)


def collect(c: Campaign, method: str, levels: int) -> tuple[list, list]:
    rows, flips = [], []
    for level in range(levels):
        level_rows, level_flips = c.records.get((method, level), ([], []))
        rows += level_rows
        flips += level_flips
    return rows, flips


def _like(c: Campaign, init):
    """A one-method stacked state (shapes of a source run's checkpoints)."""
    first = next(iter(replicas.by_method(c.reps).values()))
    return replicas.take(init, first)
