"""The experiments a config runs (`config.experiment`), the registry `EXPERIMENTS`.

- 'prune': the paper's levels of IMP / WR / LRR and their studies, every
  replica of the config in one program (`run_prune`: the checks, the data,
  the run directories, `levels.run_levels`, the summary table);
- 'single_neuron': the one-hidden-neuron model of Section 2 (`theory.run`);
- 'lmc': linear mode connectivity between two checkpoints (`connectivity.run`).

An entry names its run function and the config keys it adds to the base
config (which `validation.check_keys` accepts for it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable

import jax

from lrr_jax import (
    checkpoints,
    connectivity,
    distributed,
    engine,
    levels,
    plan,
    provenance,
    replica_set,
    replicas,
    theory,
    workdir,
)


@dataclasses.dataclass(frozen=True)
class Experiment:
    run: Callable  # (config, absolute workdir) -> results
    keys: tuple = ()  # config keys it adds to the base config


def check(config, work_dir: str) -> tuple[list, dict[str, bool]]:
    """The checks of a run before its data loads, which its dry run makes too; reads only.

    The devices (`engine.devices`), the run directories (another config, a
    damaged checkpoint) and the transfer sources (`workdir.check`). Returns the
    devices and `workdir.check`'s answer.
    """
    devices = engine.devices(config)  # a config that does not fit: refused before any write
    return devices, workdir.check(config, work_dir)


def run_prune(config, work_dir: str) -> dict[str, list[dict]]:
    """The level loop over every replica of `config`; returns method -> result rows."""
    devices, stale = check(config, work_dir)
    # The data loads (its errors too) before anything is written: a refused run writes nothing.
    made = engine.make(config)
    dirs = workdir.prepare(config, work_dir, stale)  # nothing compiled yet
    if distributed.is_primary():
        print(f"devices: {len(devices)} x {devices[0].device_kind} ({devices[0].platform} "
              f"backend), {jax.process_count()} process(es)", flush=True)
    c = replica_set.ReplicaSet(config, made, replicas.from_config(config),
                               {m: checkpoints.Store(d) for m, d in dirs.items()},
                               provenance=provenance.Record(
                                   list(dirs.values()), devices,
                                   provenance.data_record(config, made.info)))
    plan.warn_if_paper_scale_on_cpu(config)  # after the data loaded: errors come first
    if config.tensorboard and distributed.is_primary():
        from tensorboardX import SummaryWriter
        c.writers = {m: SummaryWriter(os.path.join(d, "tb")) for m, d in dirs.items()}
    try:
        results = levels.run_levels(c)
    finally:
        for w in c.writers.values():
            w.flush()
    _note_extra_levels(c)
    from lrr_jax.reporting import summary
    # The table covers the workdir's other methods of this config too (a one-method rerun).
    table = summary.side_by_side_table(summary.by_replica_setting(
        workdir.with_other_methods(config, work_dir, results)))
    if distributed.is_primary():  # every process has the same results; one prints them
        print(table)
    workdir.write_atomic(os.path.join(work_dir, "summary.txt"), table + "\n")
    return results


def _note_extra_levels(c: replica_set.ReplicaSet) -> None:
    """Say so when a workdir holds more finished levels than this run reports."""
    for store in c.stores.values():
        extra = [lv for lv in store.levels() if lv >= int(c.config.levels)]
        if extra and distributed.is_primary():
            print(f"note: {os.path.dirname(store.dir)} holds {max(extra) + 1} finished levels; "
                  f"results.csv reports levels 0..{c.config.levels - 1} (run with "
                  f"--config.levels={max(extra) + 1} to report all; the checkpoints are kept)",
                  file=sys.stderr, flush=True)


# The registry: `config.experiment` -> Experiment.
EXPERIMENTS = {
    "prune": Experiment(run_prune),
    "single_neuron": Experiment(theory.run, tuple(theory.DEFAULTS)),
    "lmc": Experiment(connectivity.run, connectivity.KEYS),
}
