"""Every config key of lrr_jax with its default, and validation of a config.

Config files under `configs/` start from `get_base_config()` and override a
few fields. `validate` checks a config before any data is loaded or anything
is compiled and raises `ConfigError` naming the key at fault.
"""

from __future__ import annotations

import difflib
import math

import ml_collections

from lrr_jax.errors import ConfigError

# The names of methods, datasets, models, allocations and sign transfers live in
# their modules' registries (rewind.MODES, data.DATASETS, models.MODELS,
# pruning.ALLOCATIONS, signs.SIGN_TRANSFERS); `validate` checks membership there.
EXPERIMENTS = ("prune", "single_neuron", "lmc")
# Fields that do not change what a run computes: they may differ on resume.
NON_SEMANTIC = ("progress", "checkpoint_every_epochs", "overwrite", "data_dir", "cifar_archive",
                "download", "tiny_imagenet_dir", "verbosity", "parallel", "num_devices",
                "input_pipeline", "stream_threads", "stream_prefetch",
                "tensorboard", "methods", "replica_batch", "dry_run",
                "levels")  # more levels extend a finished run; the finished ones stay valid
# A run made before a key existed computed what this value gives, where that is not the
# key's default; other missing keys read as their defaults (`workdir.check_workdir`).
BEFORE_THE_KEY = {"data_order": "shared", "sign_source_level": "previous",
                  "init_signs_from": "theta0"}


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.experiment = "prune"  # 'prune' (IMP/WR/LRR levels), 'single_neuron' (theory), 'lmc'
    # imp | wr | lrr | lrr_bn_rewind. On the command line of a config file that sets
    # `methods`, --config.method=M runs just M (as --config.methods=M: in <workdir>/M).
    c.method = "lrr"
    # Comma-separated methods, trained together as replicas of one program, each
    # written to <workdir>/<method>; empty: just `method`, in <workdir> itself.
    c.methods = ""

    # Data.
    c.dataset = "cifar10"  # mnist1d | digits | cifar10 | cifar100 | tiny_imagenet | imagenet2012
    c.data_dir = ""  # TFDS data dir; '' = TFDS's default (~/tensorflow_datasets)
    c.cifar_archive = ""  # an already downloaded cifar-10/100-binary.tar.gz to prepare from
    c.download = False  # let TFDS download CIFAR (off: an offline machine must not wait)
    c.tiny_imagenet_dir = ""  # the unpacked tiny-imagenet-200 folder
    c.train_limit = 0  # use only the first N training examples (0 = all)
    c.test_limit = 0  # use only the first N test examples (0 = all)
    c.augment = True  # random crop (zero padding) + horizontal flip, images only
    c.augment_pad = 4  # padding (pixels) of the random crop
    # 'paper': the authors' fixed mean/std (CIFAR-10, CIFAR-100; ImageNet's for Tiny
    # ImageNet); 'data': per-channel statistics of the train split.
    c.normalization = "paper"
    # Tiny ImageNet: 224 = the authors' RandomResizedCrop 224 + flip / Resize 256 +
    # CenterCrop 224 (on device); 64 = native size with a pad-8 crop + flip.
    c.tiny_imagenet_resolution = 224
    # imagenet2012: the crop the model sees: RandomResizedCrop(image_size) + flip (train),
    # Resize(image_size * 256 / 224) + CenterCrop(image_size) (test), on the host.
    c.image_size = 224
    # 'device': the training set is placed on every device and each batch is gathered
    # there; 'stream': the prepared records are read on the host (each process its
    # devices' share of every batch) and fed to the compiled step (imagenet2012 only streams).
    c.input_pipeline = "device"
    c.stream_threads = 0  # host threads decoding a stream's examples (0 = one per CPU core)
    c.stream_prefetch = 4  # steps a stream reads ahead of the one being trained

    # Model.
    c.model = "resnet18"  # mlp | resnet18 | resnet50 | resnet50_imagenet
    c.width = 1.0  # channel multiplier (1.0 = the paper's widths)
    c.mlp_hidden = (256, 256)  # hidden widths of the MLP (model=mlp)
    c.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)

    # Pruning schedule.
    c.levels = 12  # level 0 trains dense; level k trains at density (1 - prune_fraction)^k
    c.prune_fraction = 0.2  # fraction of the remaining weights pruned after each level
    # Allocation over layers: global | layerwise | uniform | balanced | erk (the paper code's
    # random balanced / ERK shares) | balanced_exact | erk_exact (the same shares, the
    # excess of capped layers handed on so the density is exact); README: Random masks.
    c.pruning = "global"
    c.random_mask = False  # score weights randomly instead of by magnitude
    c.zero_pruned_weights = False  # also set the raw pruned values to 0 (paper code keeps them)

    # Training, per level (paper: SGD 0.9, lr 0.1 cosine to 0.01 per epoch, batch 256).
    c.epochs_per_level = 150  # epochs trained at every level (the paper: 150)
    # Linear warm-up lr*(e+1)/warmup_epochs before level 0 (all methods); WR rewinds to its end
    # (its rewind epoch), so for WR / lrr_bn_rewind it must be <= epochs_per_level.
    c.warmup_epochs = 10
    c.batch_size = 256  # global training batch (split over the devices)
    c.eval_batch_size = 1000  # batch of the test-set evaluation
    c.lr = 0.1  # peak learning rate of every level's cosine schedule
    c.lr_min = 0.01  # learning rate at the end of a level (cosine to it, per epoch)
    # cosine: linear warm-up, then cosine lr -> lr_min per level (paper code, CIFAR);
    # imagenet_step_warmup: warm-up at 0.1 lr, then per level 0.1 lr for 10 epochs, lr to
    # epoch 40, 0.1 lr to 70, 0.01 lr after (paper code's ImageNet); imagenet_step: drops at 40, 80.
    c.lr_schedule = "cosine"
    c.momentum = 0.9  # SGD momentum
    c.weight_decay = 1e-4  # L2 weight decay (added to the gradient, as torch SGD)
    c.reset_momentum = False  # LRR: zero the momentum at each level (paper code keeps it)
    c.rewind_batch_stats = False  # IMP/WR: also rewind BN running stats (paper code keeps them)

    # Replicas: methods x perturb_probs x num_replicas seeds, stacked and vmapped
    # through one compiled program (lrr_jax/replicas.py).
    c.num_replicas = 1  # seeds per method and perturbation probability: seed, seed+1, ...
    c.seed = 0  # seed of replica 0 (theta_0, data order, masks); replica i uses seed + i
    # per_replica: each seed its own batches and augmentation (as separate runs; IMP,
    # WR and LRR of a seed share warm-up and level 0); shared: all replicas see the
    # batches of `seed` (one batch per step, cheaper; error bands come out narrower).
    c.data_order = "per_replica"
    # Replicas trained together: 0 = all in one program; k = groups of k, one after
    # another with the same program (for devices where K vmapped replicas are slow).
    c.replica_batch = 0
    # Sign perturbation: every `perturb_every` epochs of a level, flip each unpruned
    # weight's sign with probability p. Comma-separated list: one replica group per p.
    c.perturb_probs = "0"
    c.perturb_every = 30  # perturb before epochs e with e % perturb_every == perturb_every - 1
    # ... and e <= epochs_per_level - perturb_recovery_epochs: the epochs a level trains
    # after its last flip (1: the paper code's, whose last flip is before the final epoch).
    c.perturb_recovery_epochs = 1

    # Transfers from another run directory (a workdir of a single method).
    c.mask_source = ""  # train level k with the source's level-k mask
    c.sign_source = ""  # run directory whose weights give level k its signs (sign_source_level)
    # Which source weights give level k its signs: 'same' = the source's level-k final
    # weights (the paper code's sign_list_<run>_<k>); 'previous' = its level k-1 final
    # weights (those its level k starts from).
    c.sign_source_level = "same"
    # '' | source_signs | own_signs | init_signs | shuffled_all_init_magnitudes (|theta_0|
    # permuted over all of a layer's entries, pruned ones included, as the paper code) |
    # shuffled_init_magnitudes (permuted within the layer's unpruned entries).
    c.sign_transfer = ""
    # init_signs: 'rewind_point' = the signs and the optimizer state (momentum) of the
    # rewind point (the end of the warm-up; theta_0 without one), as the paper code;
    # 'theta0' = sign(theta_0), the momentum kept.
    c.init_signs_from = "rewind_point"
    # A source run of other seeds combines one init's magnitudes with another's signs
    # or masks: refused unless this is set.
    c.allow_source_seed_mismatch = False

    # Execution.
    c.parallel = "pmap"  # pmap | shard_map
    c.num_devices = 0  # 0 = all local devices
    # Each device keeps only its shard of the training set (1/num_devices) and
    # each process loads only its devices' shards; the data order then depends
    # on the device count. False: every device holds all of it.
    c.shard_train_data = False
    c.eval_every_epochs = 1  # the last epoch of a level is always evaluated
    c.checkpoint_every_epochs = 10  # mid-level saves; 0 = only level ends
    c.progress = True  # tqdm progress bars
    c.tensorboard = True  # write TensorBoard scalars to <run>/tb
    # Allow a workdir holding a run of a different config: that run's checkpoints, results
    # and TensorBoard files are deleted first (never resumed as this config's).
    c.overwrite = False
    # Print the plan (replicas, schedule, memory per device, a projected time from a few
    # measured steps) and exit without training or writing anything.
    c.dry_run = False
    return c


def parse_list(value, cast=str) -> list:
    """'a,b' or ('a', 'b') -> [cast(a), cast(b)]."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    return [cast(v) for v in items]


def methods_of(config) -> list[str]:
    return parse_list(config.methods) if config.methods else [config.method]


def experiment_keys(experiment: str) -> tuple[str, ...]:
    """The keys an experiment adds to the base config (`theory.DEFAULTS`, `connectivity.KEYS`)."""
    if experiment == "single_neuron":
        from lrr_jax import theory
        return tuple(theory.DEFAULTS)
    if experiment == "lmc":
        from lrr_jax import connectivity
        return connectivity.KEYS
    return ()


def check_keys(config, where: str = "") -> None:
    """Refuse a key that is not a config key of the config's experiment (e.g. a misspelling
    set in a config file; on the command line ml_collections refuses it).

    Args:
      config: the loaded config.
      where: the config file, named in the message ('' for none).
    """
    experiment = config.get("experiment", "prune")
    if experiment not in EXPERIMENTS:
        return  # `validate` names the experiment
    base = set(get_base_config().keys())
    known = base | set(experiment_keys(experiment))
    unknown = sorted(set(config.keys()) - known)
    if not unknown:
        return
    key, prefix = unknown[0], f"{where}: " if where else ""
    owner = next((e for e in EXPERIMENTS if key in experiment_keys(e)), None)
    if owner:
        raise ConfigError("config", f"{prefix}no such config key {key!r} for experiment "
                          f"{experiment!r} (it belongs to experiment {owner!r})")
    close = difflib.get_close_matches(key, sorted(known), n=1)
    raise ConfigError("config", f"{prefix}no such config key {key!r}"
                      + (f" (did you mean {close[0]!r}?)" if close else ""))


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


def validate(config) -> None:
    """Raise ConfigError for the first bad value found; cheap, no I/O beyond file checks."""
    _require(config.experiment in EXPERIMENTS, "experiment",
             f"unknown experiment {config.experiment!r}; expected one of {EXPERIMENTS}")
    check_keys(config)
    if config.experiment == "single_neuron":
        return
    from lrr_jax import data, models, pruning, replicas, rewind, signs  # the registries

    if config.experiment == "lmc":
        _require(bool(config.get("lmc_a")) and bool(config.get("lmc_b")), "lmc_a",
                 "experiment 'lmc' needs --config.lmc_a and --config.lmc_b as RUN_DIR:LEVEL")
    _require(config.method in rewind.METHODS, "method",
             f"unknown method {config.method!r}; expected one of {rewind.METHODS}")
    methods = methods_of(config)
    for m in methods:
        _require(m in rewind.METHODS, "methods" if config.methods else "method",
                 f"unknown method {m!r}; expected one of {rewind.METHODS}")
    _require(len(set(methods)) == len(methods), "methods", "a method is listed twice")
    _require(config.dataset in data.DATASETS, "dataset",
             f"unknown dataset {config.dataset!r}; expected one of {data.DATASETS}")
    _require(config.model in models.MODELS, "model",
             f"unknown model {config.model!r}; expected one of {models.MODELS}")
    _require(config.dtype in ("float32", "bfloat16"), "dtype",
             f"unknown dtype {config.dtype!r}; expected float32 or bfloat16")
    _require(0.0 < config.prune_fraction < 1.0, "prune_fraction",
             f"must be in (0, 1), got {config.prune_fraction}")
    _require(int(config.levels) >= 1, "levels", f"must be >= 1, got {config.levels}")
    _require(config.pruning in pruning.ALLOCATIONS, "pruning",
             f"unknown allocation {config.pruning!r}; expected one of {pruning.ALLOCATIONS}")
    _require(int(config.epochs_per_level) >= 1, "epochs_per_level",
             f"must be >= 1, got {config.epochs_per_level}")
    _require(int(config.warmup_epochs) >= 0, "warmup_epochs",
             f"must be >= 0, got {config.warmup_epochs}")
    # The rewind epoch: WR (and LRR's BN rewind) rewind to the end of the warm-up,
    # epoch `warmup_epochs` of the dense training, which must lie within a level
    # (paper: 10 of 150). IMP and LRR do not rewind there, so it is not checked for them.
    rewinders = [m for m in methods if m in rewind.NEEDS_POINT]
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
        probs = parse_list(config.perturb_probs, float)
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
             f"{signs.SIGN_TRANSFERS}")
    _require(config.data_order in replicas.DATA_ORDERS, "data_order",
             f"unknown data order {config.data_order!r}; expected one of {replicas.DATA_ORDERS}")
    _require(int(config.replica_batch) >= 0, "replica_batch",
             f"must be >= 0 (0 = all replicas together), got {config.replica_batch}")
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
    _require(config.model != "mlp" or config.dataset in ("mnist1d", "digits"), "model",
             f"model 'mlp' takes vector data (mnist1d, digits), not {config.dataset!r}")
    _require(config.model == "mlp" or config.dataset not in ("mnist1d", "digits"), "model",
             f"dataset {config.dataset!r} is vector data: use model 'mlp'")


def replica_settings(config) -> list[tuple[int, float]]:
    """(seed, perturb_prob) of each replica: every probability times num_replicas seeds."""
    probs = parse_list(config.perturb_probs, float)
    return [(int(config.seed) + s, p) for p in probs for s in range(int(config.num_replicas))]
