"""He et al.'s (2016) CIFAR ResNets (ResNet-20, ResNet-56), as open_lth builds them.

open_lth (facebookresearch/open_lth, `models/cifar_resnet.py`, `cifar_resnet_N`):
a 3x3 stride-1 convolution to 16 channels + BatchNorm + ReLU, then three stages
of n basic blocks with 16, 32 and 64 channels (N = 6n + 2: n = 3 for ResNet-20,
9 for ResNet-56), the first block of stages 2 and 3 striding by 2, a global
average pool and a Linear(64, num_classes). A block is conv3x3-BN-ReLU-conv3x3-BN
plus the shortcut, then ReLU; where the shape changes the shortcut is a 1x1
stride-2 convolution + BatchNorm (open_lth's projection; He et al.'s CIFAR
networks used parameter-free zero-padding shortcuts, "option A").
The blocks are `resnet.BasicBlock`, the same block as the paper's ResNet18, so
parameter names are `conv1`/`bn1` (stem), `layer{s}_{b}` (block b of stage s,
from 1 and 0; inside: `conv1`, `bn1`, `conv2`, `bn2`, `shortcut_conv`,
`shortcut_bn`) and `fc`.

Prunable weights at width 1 with 10 classes: 270,896 (ResNet-20) and 851,504
(ResNet-56); He et al. report 0.27M and 0.85M parameters. open_lth's test counts
272,474 parameters for ResNet-20 (`models/test/test_cifar_resnet.py`): these
kernels plus two BatchNorm parameters for each of its 784 channels and the 10
classifier biases.

As open_lth: bias-free convolutions, Kaiming-normal kernels (fan_in, ReLU gain),
a classifier with a bias that keeps PyTorch's default initialization
(`layers.dense`). Unlike open_lth, BatchNorm starts at scale 1 (lrr_jax's model
contract; open_lth's default `batchnorm_init='uniform'` draws it from U(0, 1)).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lrr_jax.models import layers, resnet

STAGE_CHANNELS = (16, 32, 64)


class CifarResNet(nn.Module):
    """Stem, three stages of `blocks_per_stage` basic blocks, global average pool, Dense.

    Attributes:
        blocks_per_stage: n, the basic blocks in each stage (depth 6n + 2).
        num_classes: classifier outputs.
        width: channel multiplier; channels = max(1, round(c * width)).
        dtype: compute dtype; parameters and batch statistics stay float32.
        bn_axis_name: data-parallel axis name over which BatchNorm batch statistics
            are averaged (None = this device's batch only).
    """

    blocks_per_stage: int
    num_classes: int
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        """Returns float32 logits (N, num_classes) for float NHWC images `x` (normalized).

        Args:
            x: float images (N, H, W, C), already normalized.
            train: use batch statistics (and update the running ones, which needs
                `mutable=['batch_stats']`) if True; running statistics if False.
        """
        x = jnp.asarray(x, self.dtype)
        x = resnet._conv(resnet.scaled(STAGE_CHANNELS[0], self.width), 3, 1, self.dtype,
                         "conv1")(x)
        x = resnet._norm(train, self.dtype, self.bn_axis_name, "bn1")(x)
        x = nn.relu(x)
        for stage, channels in enumerate(STAGE_CHANNELS):
            for index in range(self.blocks_per_stage):
                x = resnet.BasicBlock(
                    planes=resnet.scaled(channels, self.width),
                    stride=2 if stage > 0 and index == 0 else 1,
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"layer{stage + 1}_{index}",
                )(x, train)
        # Global average pool, accumulated in float32.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        x = layers.dense(self.num_classes, x.shape[-1], self.dtype, "fc")(x)
        return x.astype(jnp.float32)


def resnet20(num_classes: int, **kwargs) -> CifarResNet:
    """ResNet-20 (open_lth `cifar_resnet_20`): 3 basic blocks per stage."""
    return CifarResNet(blocks_per_stage=3, num_classes=num_classes, **kwargs)


def resnet56(num_classes: int, **kwargs) -> CifarResNet:
    """ResNet-56 (open_lth `cifar_resnet_56`): 9 basic blocks per stage."""
    return CifarResNet(blocks_per_stage=9, num_classes=num_classes, **kwargs)
