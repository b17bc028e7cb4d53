"""The replicas of one run as a set: their stacked state, anchors, stores and records.

A run trains K replicas (method entries x perturbation probabilities x
seeds, `replicas.from_config`) as one stacked pytree through one program.
`ReplicaSet` keeps what the level loop carries for all of them:

- the anchors: theta_0 (`init`, IMP's target) and the rewind point (`point`,
  the end of the warm-up, WR's target), stacked host states;
- each method entry's checkpoint store and TensorBoard writer (its run
  directory, `<workdir>/<method>/`);
- the results rows of every finished level, per method entry (`records`,
  kept in memory: each process of a multi-process run reports what it
  computed or restored, never a file another process is writing);
- the fan-out: a stacked state is saved as one checkpoint per method entry
  holding that method's replicas (`save`), restored by filling in the
  methods that have it (`restore`, which only reads), and results are
  written per method (`write_results`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from lrr_jax import replicas, schema, workdir


@dataclasses.dataclass
class Restored:
    """What `ReplicaSet.restore` found: the stacked state (saved replicas filled in),
    the positions still to compute, and the finished levels' rows it read."""

    state: Any
    pending: list[int]
    records: dict  # (method, level) -> (results rows, sign-flip rows)


@dataclasses.dataclass
class ReplicaSet:
    """K replicas of a run, their anchors, stores, writers and records (module doc)."""

    config: Any
    engine: Any
    reps: list  # replicas.Replica, in the order of the stacked state
    stores: dict  # method entry -> checkpoints.Store
    writers: dict = dataclasses.field(default_factory=dict)  # method entry -> writer
    provenance: Any = None  # provenance.Record: run.json, given each level's wall time
    records: dict = dataclasses.field(default_factory=dict)  # (method, level) -> rows
    init: Any = None  # theta_0 of every replica (stacked, host arrays)
    point: Any = None  # the rewind point of every replica

    @property
    def by_method(self) -> dict[str, list[int]]:
        """method entry -> positions of its replicas."""
        return replicas.by_method(self.reps)

    def methods_at(self, positions) -> dict[str, list[int]]:
        """method entry -> its positions among `positions` (those of the methods there)."""
        wanted = set(int(i) for i in positions)
        return {m: [i for i in pos if i in wanted] for m, pos in self.by_method.items()
                if wanted & set(pos)}

    def restore(self, name: str, like) -> Restored:
        """The stacked state with every method's saved `name` filled in; reads only."""
        state, pending, found = jax.tree.map(np.array, like), [], {}
        for method, pos in self.by_method.items():
            store = self.stores[method]
            if not store.exists(name):
                pending += pos
                continue
            saved, meta = store.restore(name, replicas.take(like, pos))
            state = replicas.place(state, saved, pos)
            if "rows" in meta:  # a finished level
                from lrr_jax import checkpoints

                found[(method, checkpoints.level_of(name))] = (meta["rows"], meta["sign_flips"])
        return Restored(state, sorted(pending), found)

    def save(self, name: str, state, meta: Callable[[str, list[int]], dict],
             positions=None) -> None:
        """Save the replicas at `positions` (default all) of the stacked `state` as `name`
        in their methods' stores; `meta(method, positions)` gives each one's JSON."""
        chosen = range(len(self.reps)) if positions is None else positions
        for method, pos in self.methods_at(chosen).items():
            self.stores[method].save(name, replicas.take(state, pos), meta(method, pos))

    def delete_mids(self, positions=None, keep: str | None = None) -> None:
        """Remove the mid-level saves (other than `keep`) of the methods at `positions`."""
        chosen = range(len(self.reps)) if positions is None else positions
        for method in self.methods_at(chosen):
            self.stores[method].delete_mids(keep=keep)

    def rows(self, method: str, levels: int) -> tuple[list, list]:
        """(results rows, sign-flip rows) of `method` for levels 0 .. levels-1 found so far."""
        rows, flips = [], []
        for level in range(levels):
            level_rows, level_flips = self.records.get((method, level), ([], []))
            rows += level_rows
            flips += level_flips
        return rows, flips

    def write_results(self, level: int) -> None:
        """results.csv and sign_flips.csv of each method, levels 0 .. `level`."""
        for method, store in self.stores.items():
            rows, flips = self.rows(method, level + 1)
            run_dir = os.path.dirname(store.dir)
            workdir.write_csv(os.path.join(run_dir, "results.csv"), schema.RESULT_COLUMNS, rows)
            workdir.write_csv(os.path.join(run_dir, "sign_flips.csv"),
                              schema.SIGN_FLIP_COLUMNS, flips)

    def results(self) -> dict[str, list[dict]]:
        """method entry -> results rows of every level."""
        return {m: self.rows(m, int(self.config.levels))[0] for m in self.stores}
