"""CIFAR-100, ResNet50 (CIFAR variant, bottleneck blocks).

    python -m lrr_jax.main --config=configs/cifar100.py --workdir=$HOME/runs/c100_lrr \
        --config.method=lrr --config.cifar_archive=$HOME/cifar-100-binary.tar.gz

As configs/cifar10.py, with weight decay 1e-3: the value in the paper code's
CIFAR-100 config (`configs/large/resnet18-cifar100-str-1.yaml`), whose
CIFAR-10 twin uses 1e-4. ~23.5M prunable weights. Expected (paper): LRR >= WR
>= IMP, as on CIFAR-10. Needs a GPU/TPU.
"""

from configs import cifar10


def get_config():
    c = cifar10.get_config()
    c.dataset = "cifar100"
    c.model = "resnet50"
    c.weight_decay = 1e-3
    return c
