"""A campaign: one config's replicas (methods x perturbations x seeds) in one run.

`run(config, workdir)` is what `python -m lrr_jax.main` calls: validate the
config, hold the workdir's lock, check the run directories and transfer
sources, load the data, and only then write the run directories' config.json
(a refused run writes nothing) and hand the replicas to the level loop
(`levels.run_levels`); nothing is compiled before that. The experiment runs
through its entry of `experiments.EXPERIMENTS` (the level loop, the
single-neuron theory, linear mode connectivity).
"""

from __future__ import annotations

import contextlib
import os

from lrr_jax import distributed, experiments, plan, runlock, validation
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
        experiments.check(config, work_dir)  # the run's checks; the plan checks the data
        plan.dry_run(config)
        return {}
    distributed.check_shared_dir(work_dir)  # multi-process: every process sees one workdir
    # One lock per run: process 0 holds it for all processes of a multi-process run.
    with runlock.hold(work_dir) if distributed.is_primary() else contextlib.nullcontext():
        return _run(config, os.path.abspath(work_dir))


def _run(config, work_dir: str) -> dict[str, list[dict]]:
    return experiments.EXPERIMENTS[config.experiment].run(config, work_dir)
