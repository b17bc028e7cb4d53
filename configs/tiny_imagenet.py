"""Tiny ImageNet (200 classes, 64x64), ResNet50 with the ImageNet stem.

    python -m lrr_jax.main --config=configs/tiny_imagenet.py --workdir=$HOME/runs/tin_lrr \\
        --config.tiny_imagenet_dir=$HOME/data/tiny-imagenet-200

Reads the standard `tiny-imagenet-200` folder (train/<wnid>/images, val/ with
val_annotations.txt as the test split); not in the TFDS catalog.

As the paper code (imp-lrr-lts `data/cifar10.py`, class `TinyImagenet`), the
64x64 images are upsampled to 224x224: training uses RandomResizedCrop(224)
(scale 0.08-1, ratio 3/4-4/3, bilinear) + horizontal flip, per example on
the device inside the compiled epoch; the test split is Resize(256) +
CenterCrop(224), done once when the data is loaded; ImageNet mean/std.
That is ~13x the compute of the native resolution (ResNet50 forward 7.9
GFLOPs per image at 224 vs 0.60 at 64; training ~24 vs ~1.8 GFLOPs per
image, 2.4 vs 0.18 PFLOP per 100,000-image epoch) and ~10x the activation
memory (about 127 vs 13 MB per image in float32, so ~32 vs ~3.2 GiB for a
batch of 256). `--config.tiny_imagenet_resolution=64` trains at the native
64x64 instead (random crop with 8-pixel zero padding + flip; the 7x7/2 stem
and max-pool reduce it to 16x16). The classifier is pruned as in the paper code, whose
Tiny ImageNet model is `models/resnet.py`'s ResNet50 (main.py:100-104) with a masked
1x1-convolution classifier (`builder.conv1x1`, models/resnet.py:114). Needs a GPU/TPU.
"""

from configs import cifar10


def get_config():
    c = cifar10.get_config()
    c.dataset = "tiny_imagenet"
    c.model = "resnet50_imagenet"
    c.augment_pad = 8  # used at 64 only: random crop 64 with padding 8 (CIFAR's 4 at 32)
    return c
