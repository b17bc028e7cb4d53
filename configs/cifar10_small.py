"""A narrow CIFAR-10 ResNet18 that trains on a CPU: the small-scale image setting.

    python -c "from lrr_jax.data import synthetic_cifar as s; s.write_cifar_archive(\
        '/tmp/synthetic-cifar-10-binary.tar.gz', num_train=1280, num_test=500)"
    python -m lrr_jax.main --config=configs/cifar10_small.py --workdir=/tmp/c10s \
        --config.cifar_archive=/tmp/synthetic-cifar-10-binary.tar.gz \
        --config.data_dir=/tmp/synthetic_tfds

The paper's CIFAR-10 ResNet18 (3x3 stem, no max-pool, bias-free convs,
classifier pruned) at width 1/16 (channels 4-8-16-32, 44k prunable weights),
with the paper's optimizer and per-level cosine schedule, but (by default)
6 levels of 3 epochs, 1 warm-up epoch and batch 64 on whatever CIFAR-format
archive is given: about 18 s per epoch of 1,280 images for 3 replicas on a
2-core CPU. scripts/reproduce_small.sh runs 8 levels of 10 epochs (where the
dense net plateaus) with 3 seeds.
`lrr_jax.data.synthetic_cifar` writes one offline (generated gratings,
not real photos; 10% of labels are confusable), which is what
scripts/reproduce_small.sh uses; a real `cifar-10-binary.tar.gz` works the
same way. Prepare a synthetic archive into its own --config.data_dir: TFDS
caches a prepared dataset by name, so preparing it into the default
~/tensorflow_datasets would stand in for the real CIFAR-10 later.

Expected on the 1,280/500 synthetic archive: README.md ("Reproducing the paper") has the
measured table (at 8 levels x 10 epochs IMP, WR and LRR end within ~1 point of
each other up to 79% sparsity, near the net's ~89% plateau).
"""

from lrr_jax import config_base


def get_config():
    c = config_base.get_base_config()
    c.methods = "imp,wr,lrr"  # as scripts/reproduce_small.sh runs it
    c.width = 0.0625  # channels 4-8-16-32: 44k prunable weights
    c.levels = 6  # density 0.8**5 = 0.33 at the last level
    c.epochs_per_level = 3
    c.warmup_epochs = 1  # WR rewinds to the end of this epoch
    c.batch_size = 64
    c.eval_batch_size = 500
    c.checkpoint_every_epochs = 0  # levels take a minute: save only their ends
    return c
