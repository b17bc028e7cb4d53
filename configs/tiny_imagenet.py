"""Tiny ImageNet (200 classes, 64x64), ResNet50 with the ImageNet stem.

    python -m lrr_jax.main --config=configs/tiny_imagenet.py --workdir=$HOME/runs/tin_lrr \
        --config.tiny_imagenet_dir=$HOME/data/tiny-imagenet-200

Reads the standard `tiny-imagenet-200` folder (train/<wnid>/images, val/ with
val_annotations.txt as the test split); not in the TFDS catalog. The paper
code upsamples to 224x224; lrr_jax runs at the native 64x64 (the 7x7/2 stem and
max-pool reduce it to 16x16). Needs a GPU/TPU.
"""

from configs import cifar10


def get_config():
    c = cifar10.get_config()
    c.dataset = "tiny_imagenet"
    c.model = "resnet50_imagenet"
    c.weight_decay = 1e-4
    c.augment_pad = 8  # random crop 64 with padding 8 (scaled from CIFAR's 4 at 32)
    return c
