"""Every config key of lrr_jax with its default and its meaning (a comment per key).

Config files under `configs/` start from `get_base_config()` and override a
few fields. This module imports nothing of lrr_jax: what a config means for
the replicas is `replicas` (`methods_of`, `replica_settings`), its checks are
`validation`, and how a run directory's recorded config is compared on resume
is `workdir` (`NON_SEMANTIC`, `BEFORE_THE_KEY`).
"""

from __future__ import annotations

import ml_collections

# The names of experiments, methods, datasets, models, scores, allocations, sign transfers
# and schedules live in their modules' registries (experiments.EXPERIMENTS, rewind.MODES,
# data.DATASETS, models.MODELS, pruning.SCORES, pruning.ALLOCATIONS, signs.SIGN_TRANSFERS,
# train.LR_SCHEDULES); `validation` checks membership there and `--help` lists them.


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.experiment = "prune"  # the levels of the methods; the theory model; linear mode connectivity
    # The method: where each level starts (rewind.MODES: IMP, WR, LRR, LRR with BN rewind).
    # On the command line of a config file that sets `methods`, --config.method=M runs
    # just M (as --config.methods=M: in <workdir>/M).
    c.method = "lrr"
    # Comma-separated methods, trained together as replicas of one program, each
    # written to <workdir>/<method>; empty: just `method`, in <workdir> itself.
    c.methods = ""

    # Data.
    c.dataset = "cifar10"  # the data (data.DATASETS)
    c.data_dir = ""  # TFDS data dir; '' = TFDS's default (~/tensorflow_datasets)
    c.cifar_archive = ""  # an already downloaded cifar-10/100-binary.tar.gz to prepare from
    c.download = False  # let TFDS download CIFAR (off: an offline machine must not wait)
    c.tiny_imagenet_dir = ""  # the unpacked tiny-imagenet-200 folder
    c.idx_dir = ""  # mnist / fashion_mnist: a folder holding the four official idx .gz files
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
    c.model = "resnet18"  # the network (models.MODELS): the paper's and open_lth's
    c.width = 1.0  # channel multiplier (1.0 = the paper's widths)
    c.mlp_hidden = (256, 256)  # hidden widths of the MLP (model=mlp)
    c.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)

    # Pruning schedule.
    c.levels = 12  # level 0 trains dense; level k trains at density (1 - prune_fraction)^k
    c.prune_fraction = 0.2  # fraction of the remaining weights pruned after each level
    # How the kept weights are shared over layers (pruning.ALLOCATIONS): one global
    # ranking, the same fraction per layer, or the paper code's balanced / ERK shares
    # (the *_exact ones hand a capped layer's excess on, so the density is exact).
    c.pruning = "global"
    # What ranks the unpruned weights (pruning.SCORES): |w| (the paper), random, SNIP's
    # |g * w| on a training batch, SynFlow's data-free synaptic flow (one or 100 rounds).
    c.score = "magnitude"
    c.random_mask = False  # True: score='random' (the key before `score` existed)
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
    # The learning rate of the warm-up and of each level (train.LR_SCHEDULES): the paper
    # code's linear warm-up and per-epoch cosine lr -> lr_min (CIFAR), or its ImageNet
    # steps (0.1 lr for 10 epochs, lr to 40, 0.1 lr to 70, 0.01 lr after; or drops at 40, 80).
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
    # How signs and magnitudes are combined after the rewind (signs.SIGN_TRANSFERS; '' =
    # not): the source's signs, the own trained ones, the init's, or init magnitudes
    # shuffled over the layer (pruned entries included, as the paper code) or within it.
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
    # With dry_run: compile the run's programs for a TPU topology, 'tpu:TOPOLOGY' (e.g.
    # 'tpu:v5e:2x2'), on this host without a TPU (libtpu); '' = the CPU plan (docs/TPU.md).
    c.compile_for = ""
    return c
