"""CIFAR-10, ResNet18 (CIFAR variant): the paper's main setting.

    python -m lrr_jax.main --config=configs/cifar10.py --workdir=$HOME/runs/c10_lrr \
        --config.method=lrr --config.cifar_archive=$HOME/cifar-10-binary.tar.gz

Paper recipe: 20% global magnitude pruning per level, SGD momentum 0.9, lr 0.1
cosine (per epoch) to 0.01, 150 epochs per level, batch 256, weight decay
1e-4, 10 linear warm-up epochs before level 0 (WR rewinds to their end),
random crop (pad 4) + flip: the base config's defaults (lrr_jax/config_base.py), so
this file sets only the levels. 11,164,352 prunable weights. Expected (paper):
dense ~94-95%; LRR >= WR >= IMP at every sparsity, the gap growing past ~90%
sparsity (level 11). 21 levels reach ~99% sparsity. Needs a GPU/TPU.
"""

from lrr_jax import config_base


def get_config():
    c = config_base.get_base_config()
    c.levels = 21  # density 0.8**20 = 1.2% at the last level
    return c
