"""A campaign: one config's replicas (methods x perturbations x seeds) in one run.

`run(config, workdir)` is what `python -m lrr_jax.main` calls: validate the
config, hold the workdir's lock, check the run directories and transfer
sources, load the data, and only then write the run directories' config.json
(a refused run writes nothing) and hand the replicas to the level loop
(`levels.run_levels`); nothing is compiled before that. The other experiments
(single-neuron theory, linear mode connectivity) are dispatched from here too.
"""

from __future__ import annotations

import contextlib
import os
import sys

import jax

from lrr_jax import (
    checkpoints,
    distributed,
    engine,
    levels,
    plan,
    provenance,
    replica_set,
    replicas,
    runlock,
    validation,
    workdir,
)
from lrr_jax.data import paths
from lrr_jax.errors import ConfigError

# Run-directory keys with `~` / `$VAR` expanded before anything reads them (and as
# expanded in config.json); "path:level" references keep their level suffix.
PATH_KEYS = ("mask_source", "sign_source", "lmc_a", "lmc_b")


def run(config, work_dir: str) -> dict[str, list[dict]]:
    """Run every replica of `config` under `work_dir`; returns method -> result rows.

    The config is validated first; then `<work_dir>/.lock` is held for the
    whole run, so a second process on the same workdir is refused (`runlock`).
    """
    work_dir = paths.expand(work_dir)  # `--workdir=~/runs`: the shell leaves `~` after `=`
    for key in PATH_KEYS:  # the same for the path-valued keys (data paths expand at load)
        if config.get(key) and paths.expand(config[key]) != config[key]:
            config[key] = paths.expand(config[key])
    validation.validate(config)
    if config.get("dry_run"):  # the checks and the plan: no lock, nothing trained or written
        if config.experiment != "prune":
            raise ConfigError("dry_run", f"plans the level loop (experiment 'prune'), not "
                              f"experiment {config.experiment!r}")
        check(config, work_dir)  # the run's checks; the plan checks the data
        plan.dry_run(config)
        return {}
    distributed.check_shared_dir(work_dir)  # multi-process: every process sees one workdir
    # One lock per run: process 0 holds it for all processes of a multi-process run.
    with runlock.hold(work_dir) if distributed.is_primary() else contextlib.nullcontext():
        return _run(config, os.path.abspath(work_dir))


def check(config, work_dir: str) -> tuple[list, dict[str, bool]]:
    """The checks of a run before its data loads, which its dry run makes too; reads only.

    The devices (`engine.devices`), the run directories (another config, a
    damaged checkpoint) and the transfer sources (`workdir.check`). Returns the
    devices and `workdir.check`'s answer.
    """
    devices = engine.devices(config)  # a config that does not fit: refused before any write
    return devices, workdir.check(config, work_dir)


def _run(config, work_dir: str) -> dict[str, list[dict]]:
    if config.experiment == "single_neuron":
        from lrr_jax import theory
        return theory.run(config, work_dir)
    if config.experiment == "lmc":
        from lrr_jax import connectivity
        return connectivity.run(config, work_dir)
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
