"""Checks of a config before anything is loaded, written or compiled.

`validate(config)` raises `ConfigError(key, message)` for the first bad value,
naming the key; `check_keys(config, where)` refuses a key that is not a
config key (a misspelling set inside a config file). Names are checked
against the registries of the modules that own them (`rewind.MODES`,
`data.DATASETS`, `models.MODELS`, `pruning.ALLOCATIONS`, ...), imported here;
none of those imports this module.
"""

from __future__ import annotations

import difflib
import math

from lrr_jax import config_base, replicas
from lrr_jax.errors import ConfigError


def _experiments() -> dict:
    from lrr_jax import experiments

    return experiments.EXPERIMENTS


def experiment_keys(experiment: str) -> tuple[str, ...]:
    """The keys an experiment adds to the base config (its `experiments.EXPERIMENTS` entry)."""
    entry = _experiments().get(experiment)
    return tuple(entry.keys) if entry else ()


def check_keys(config, where: str = "") -> None:
    """Refuse a key that is not a config key of the config's experiment (e.g. a misspelling
    set in a config file; on the command line ml_collections refuses it).

    Args:
      config: the loaded config.
      where: the config file, named in the message ('' for none).
    """
    experiment = config.get("experiment", "prune")
    if experiment not in _experiments():
        return  # `validate` names the experiment
    base = set(config_base.get_base_config().keys())
    known = base | set(experiment_keys(experiment))
    unknown = sorted(set(config.keys()) - known)
    if not unknown:
        return
    key, prefix = unknown[0], f"{where}: " if where else ""
    owner = next((e for e in _experiments() if key in experiment_keys(e)), None)
    if owner:
        raise ConfigError("config", f"{prefix}no such config key {key!r} for experiment "
                          f"{experiment!r} (it belongs to experiment {owner!r})")
    close = difflib.get_close_matches(key, sorted(known), n=1)
    raise ConfigError("config", f"{prefix}no such config key {key!r}"
                      + (f" (did you mean {close[0]!r}?)" if close else ""))


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


def _check_methods(config) -> None:
    """Method entries: known methods, none twice; TARGET@SOURCE with SOURCE in the run."""
    from lrr_jax import rewind

    key = "methods" if config.methods else "method"
    entries = replicas.methods_of(config)
    plain = [e for e in entries if replicas.split_entry(e)[1] is None]
    for entry in entries:
        target, source = replicas.split_entry(entry)
        _require(target in rewind.MODES, key,
                 f"unknown method {target!r}; expected one of {tuple(rewind.MODES)}, or "
                 "TARGET@SOURCE (e.g. lrr@imp: LRR on the masks of this run's IMP replicas)")
        if source is None:
            continue
        _require(source in plain, key,
                 f"{entry}: its mask source {source!r} must be a method of this run "
                 f"(--config.methods={','.join(dict.fromkeys([source, *entries]))})")
        _require(source != target, key, f"{entry} trains on its own masks: list {target}")
        _require(not config.mask_source, "mask_source",
                 f"{entry} takes its masks from this run's {source} replicas; a mask_source "
                 "run gives the masks of every replica: use one or the other")
    _require(len(set(entries)) == len(entries), "methods", "a method is listed twice")


def validate(config) -> None:
    """Raise ConfigError for the first bad value found; cheap, no I/O beyond file checks."""
    _require(config.experiment in _experiments(), "experiment",
             f"unknown experiment {config.experiment!r}; expected one of "
             f"{tuple(_experiments())}")
    check_keys(config)
    if config.experiment == "single_neuron":
        return
    from lrr_jax import data, models, pruning, rewind, signs  # the registries

    if config.experiment == "lmc":
        _require(bool(config.get("lmc_a")) and bool(config.get("lmc_b")), "lmc_a",
                 "experiment 'lmc' needs --config.lmc_a and --config.lmc_b as RUN_DIR:LEVEL")
    _check_methods(config)
    methods = [replicas.split_entry(m)[0] for m in replicas.methods_of(config)]
    _require(config.dataset in data.DATASETS, "dataset",
             f"unknown dataset {config.dataset!r}; expected one of {tuple(data.DATASETS)}")
    _require(config.model in models.MODELS, "model",
             f"unknown model {config.model!r}; expected one of {tuple(models.MODELS)}")
    _require(config.dtype in ("float32", "bfloat16"), "dtype",
             f"unknown dtype {config.dtype!r}; expected float32 or bfloat16")
    _require(0.0 < config.prune_fraction < 1.0, "prune_fraction",
             f"must be in (0, 1), got {config.prune_fraction}")
    _require(int(config.levels) >= 1, "levels", f"must be >= 1, got {config.levels}")
    _require(config.score in pruning.SCORES, "score",
             f"unknown score {config.score!r}; expected one of {tuple(pruning.SCORES)}")
    _require(not config.random_mask or config.score in ("magnitude", "random"), "random_mask",
             f"random_mask=True means score='random', but score is {config.score!r}: set one")
    _require(config.pruning in pruning.ALLOCATIONS, "pruning",
             f"unknown allocation {config.pruning!r}; expected one of "
             f"{tuple(pruning.ALLOCATIONS)}")
    _require(int(config.epochs_per_level) >= 1, "epochs_per_level",
             f"must be >= 1, got {config.epochs_per_level}")
    _require(int(config.warmup_epochs) >= 0, "warmup_epochs",
             f"must be >= 0, got {config.warmup_epochs}")
    # The rewind epoch: WR (and LRR's BN rewind) rewind to the end of the warm-up,
    # epoch `warmup_epochs` of the dense training, which must lie within a level
    # (paper: 10 of 150). IMP and LRR do not rewind there, so it is not checked for them.
    rewinders = [m for m in methods if rewind.MODES[m].needs_point]
    _require(not rewinders or int(config.warmup_epochs) <= int(config.epochs_per_level),
             "warmup_epochs", f"{rewinders[0] if rewinders else ''} rewinds to the end of the "
             f"{config.warmup_epochs}-epoch warm-up, beyond the {config.epochs_per_level} "
             "epochs of a level (epochs_per_level); use warmup_epochs <= epochs_per_level")
    _require(int(config.batch_size) >= 1, "batch_size", f"must be >= 1, got {config.batch_size}")
    from lrr_jax import engine, train
    from lrr_jax.data import stream

    engine.pipeline(config)
    stream.image_size(config)
    _require(config.lr_schedule in train.LR_SCHEDULES, "lr_schedule",
             f"unknown schedule {config.lr_schedule!r}; expected one of "
             f"{tuple(train.LR_SCHEDULES)}")
    _require(int(config.stream_threads) >= 0, "stream_threads",
             f"must be >= 0 (0 = one per CPU core), got {config.stream_threads}")
    _require(int(config.stream_prefetch) >= 1, "stream_prefetch",
             f"must be >= 1, got {config.stream_prefetch}")
    _require(int(config.eval_batch_size) >= 1, "eval_batch_size",
             f"must be >= 1, got {config.eval_batch_size}")
    for key in ("lr", "lr_min", "weight_decay"):
        value = float(config[key])
        _require(math.isfinite(value) and value >= 0, key, f"must be >= 0, got {value}")
    _require(float(config.lr) > 0, "lr", f"must be > 0, got {config.lr}")
    _require(0.0 <= float(config.momentum) < 1.0, "momentum",
             f"must be in [0, 1), got {config.momentum}")
    _require(int(config.num_replicas) >= 1, "num_replicas",
             f"must be >= 1, got {config.num_replicas}")
    try:
        probs = replicas.parse_list(config.perturb_probs, float)
    except ValueError:
        raise ConfigError("perturb_probs",
                          f"not a list of numbers: {config.perturb_probs!r}") from None
    _require(len(probs) >= 1 and all(0.0 <= p <= 1.0 for p in probs), "perturb_probs",
             f"each probability must be in [0, 1], got {config.perturb_probs!r}")
    _require(int(config.perturb_every) >= 1, "perturb_every",
             f"must be >= 1, got {config.perturb_every}")
    _require(1 <= int(config.perturb_recovery_epochs) <= int(config.epochs_per_level),
             "perturb_recovery_epochs", f"must be in [1, epochs_per_level = "
             f"{config.epochs_per_level}], got {config.perturb_recovery_epochs}")
    _require(config.parallel in ("pmap", "shard_map"), "parallel",
             f"unknown backend {config.parallel!r}; expected pmap or shard_map")
    _require(int(config.num_devices) >= 0, "num_devices", "must be >= 0")
    _require(isinstance(config.shard_train_data, bool), "shard_train_data",
             f"must be True or False, got {config.shard_train_data!r}")
    _require(int(config.checkpoint_every_epochs) >= 0, "checkpoint_every_epochs", "must be >= 0")
    _require(int(config.eval_every_epochs) >= 1, "eval_every_epochs", "must be >= 1")
    _require(config.sign_transfer in signs.SIGN_TRANSFERS, "sign_transfer",
             f"unknown sign transfer {config.sign_transfer!r}; expected one of "
             f"{tuple(signs.SIGN_TRANSFERS)}")
    _require(config.data_order in replicas.DATA_ORDERS, "data_order",
             f"unknown data order {config.data_order!r}; expected one of {replicas.DATA_ORDERS}")
    _require(int(config.replica_batch) >= 0, "replica_batch",
             f"must be >= 0 (0 = all replicas together), got {config.replica_batch}")
    if config.get("compile_for"):  # 'tpu:TOPOLOGY' (its module parses it), in a dry run only
        from lrr_jax import tpu_compile

        tpu_compile.parse_target(config.compile_for)
        _require(bool(config.dry_run), "compile_for", "checks a config against the TPU "
                 "compiler in a dry run: add --config.dry_run=True")
    _require(config.sign_transfer != "source_signs" or bool(config.sign_source), "sign_source",
             "sign_transfer 'source_signs' needs --config.sign_source=RUN_DIR")
    from lrr_jax import studies

    _require(config.sign_source_level in studies.SIGN_SOURCE_LEVELS, "sign_source_level",
             f"unknown source level {config.sign_source_level!r}; expected one of "
             f"{studies.SIGN_SOURCE_LEVELS}")
    _require(config.init_signs_from in studies.INIT_SIGNS_FROM, "init_signs_from",
             f"unknown init signs {config.init_signs_from!r}; expected one of "
             f"{studies.INIT_SIGNS_FROM}")
    _require(not (config.reset_momentum and studies.optimizer_from_point(config)),
             "init_signs_from", "'rewind_point' restores the rewind point's momentum, "
             "reset_momentum=True zeroes it: use one (or init_signs_from='theta0')")
    # Whether the model takes the dataset's examples is found by tracing it on one
    # (`engine.make`, before anything is compiled).
