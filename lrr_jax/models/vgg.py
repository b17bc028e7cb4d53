"""VGG-16 and VGG-19 for CIFAR, as open_lth builds `cifar_vgg_16` / `cifar_vgg_19`.

open_lth (facebookresearch/open_lth, `models/cifar_vgg.py`): a plan of 3x3
convolutions (padding 1), each followed by BatchNorm and ReLU, with 2x2
stride-2 max-pools ('M') between the stages:

    vgg16: 64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512
    vgg19: 64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512

then a 2x2 average pool (32x32 inputs reach it as 2x2 maps, so it is a global
average), flatten, and one Linear(512, num_classes). There are no hidden fully
connected layers (unlike ImageNet VGG). Parameter names: `conv{i}` / `bn{i}`
for the i-th convolution (from 1) and `fc`.

Prunable weights (kernels) at width 1 with 10 classes: 14,715,584 (vgg16) and
20,024,000 (vgg19), open_lth's prunable tensors exactly (every conv and linear
weight). open_lth's tests count 14,728,266 and 20,040,522 parameters
(`models/test/test_cifar_vgg.py`): the same kernels plus one conv bias and two
BatchNorm parameters per channel and the 10 classifier biases.

Where this differs from open_lth, and why:
- The convolutions have no bias (open_lth's `nn.Conv2d` keeps PyTorch's default
  bias). Each is followed by BatchNorm, which subtracts the batch mean, so in
  training such a bias has no effect on the output and no gradient; lrr_jax's
  model contract (docs/DESIGN.md) is bias-free convolutions. Prunable counts
  are unchanged (open_lth never prunes biases).
- BatchNorm starts at scale 1, bias 0 (the contract; PyTorch's default).
  open_lth's default `batchnorm_init='uniform'` draws the scale from U(0, 1).
- The final pool averages over whatever spatial size is left (global average
  pool): the same as open_lth's `AvgPool2d(2)` for 32x32 inputs, and defined
  for other sizes.
The classifier has a bias with PyTorch's default initialization, as open_lth
(`layers.dense`); kernels are Kaiming normal (fan_in, ReLU gain), open_lth's
default `model_init='kaiming_normal'`.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lrr_jax.models import layers, resnet

PLANS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512),
}


class VGG(nn.Module):
    """conv3x3-BN-ReLU blocks and 2x2 max-pools following `plan`, global average pool, Dense.

    Attributes:
        plan: channel counts at width 1 and 'M' for a max-pool, e.g. `PLANS['vgg16']`.
        num_classes: classifier outputs.
        width: channel multiplier; channels = max(1, round(c * width)).
        dtype: compute dtype; parameters and batch statistics stay float32.
        bn_axis_name: data-parallel axis name over which BatchNorm batch statistics
            are averaged (None = this device's batch only).
    """

    plan: Sequence[int | str]
    num_classes: int
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        """Returns float32 logits (N, num_classes) for float NHWC images `x` (normalized)."""
        x = jnp.asarray(x, self.dtype)
        index = 0
        for spec in self.plan:
            if spec == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            index += 1
            x = resnet._conv(resnet.scaled(int(spec), self.width), 3, 1, self.dtype,
                             f"conv{index}")(x)
            x = resnet._norm(train, self.dtype, self.bn_axis_name, f"bn{index}")(x)
            x = nn.relu(x)
        # Global average pool, accumulated in float32.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        x = layers.dense(self.num_classes, x.shape[-1], self.dtype, "fc")(x)
        return x.astype(jnp.float32)


def vgg16(num_classes: int, **kwargs) -> VGG:
    """CIFAR VGG-16 (open_lth `cifar_vgg_16`): 13 convolutions, 1 linear layer."""
    return VGG(plan=PLANS["vgg16"], num_classes=num_classes, **kwargs)


def vgg19(num_classes: int, **kwargs) -> VGG:
    """CIFAR VGG-19 (open_lth `cifar_vgg_19`): 16 convolutions, 1 linear layer."""
    return VGG(plan=PLANS["vgg19"], num_classes=num_classes, **kwargs)
