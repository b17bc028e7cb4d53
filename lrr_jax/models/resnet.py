"""ResNets for CIFAR and Tiny ImageNet, following the paper's PyTorch code.

Two stems share one body of residual stages with widths 64-128-256-512
(times `width`):

- `stem='cifar'` (ResNet18 on CIFAR10, ResNet50 on CIFAR100): a 3x3 stride-1
  convolution and no max-pool, as `models/resnet18.py` of the authors' code.
- `stem='imagenet'` (ResNet50 on Tiny ImageNet): a 7x7 stride-2 convolution and
  a 3x3 stride-2 max-pool, as `models/resnet.py` of the authors' code (their
  Tiny ImageNet model, main.py:100-104; their `models/resnet_imagenet.py` is
  never imported). The network runs at the size the data gives it: 224x224 by
  default, the authors' upsampling of the 64x64 images (`tiny_imagenet_resolution`,
  done by `lrr_jax.data`: a 7x7 map before the global pool), or the native 64x64
  (a 2x2 map).

Every convolution is bias-free and every convolution and the classifier use
Kaiming normal initialization (fan_in, ReLU gain, untruncated). Projection
shortcuts (1x1 convolution + BatchNorm) appear where the shape changes. The
classifier is a bias-free Dense layer: the paper's code builds it as a bias-free
1x1 convolution on the pooled features (a masked `ConvMask`, pruned like the other
layers, with either stem), which is the same map.

Prunable weights are exactly the leaves named `kernel`; BatchNorm leaves are
`scale` and `bias` and no other leaf is called `kernel`.

Differences from PyTorch that remain: Flax updates the running variance with
the biased batch variance (PyTorch uses the unbiased one), which matters only
for very small per-device batches.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lrr_jax.models import conv

# Kaiming normal, fan_in, gain sqrt(2) (ReLU): std = sqrt(2 / fan_in), untruncated.
KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

# PyTorch BatchNorm2d defaults: momentum 0.1 (Flax's momentum is 1 - that), eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def scaled(channels: int, width: float) -> int:
    """Returns the channel count `channels` scaled by the width multiplier.

    Args:
        channels: the channel count at width 1 (the paper's network).
        width: the channel multiplier.

    Returns:
        `max(1, round(channels * width))`.
    """
    return max(1, int(round(channels * width)))


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    """A bias-free convolution with PyTorch's symmetric `kernel // 2` padding.

    Explicit padding (not 'SAME') reproduces PyTorch's output alignment for
    strided convolutions on even-sized inputs.
    """
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=KERNEL_INIT,
        dtype=dtype,
        param_dtype=jnp.float32,
        # Same math as lax.conv_general_dilated; on CPU its gradients stay fast
        # inside the epoch's lax.scan (see models/conv.py).
        conv_general_dilated=conv.conv_general_dilated,
        name=name,
    )


def _norm(train: bool, dtype: Any, axis_name: str | None, name: str) -> nn.BatchNorm:
    """A BatchNorm with PyTorch's defaults whose statistics are averaged over `axis_name`."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        scale_init=nn.initializers.ones,
        bias_init=nn.initializers.zeros,
        axis_name=axis_name,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (expansion 1).

    Attributes:
        planes: output channels.
        stride: stride of the first convolution and of the shortcut.
        dtype: compute dtype.
        bn_axis_name: data-parallel axis name for BatchNorm statistics, or None.
    """

    planes: int
    stride: int = 1
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        """Applies the block to NHWC `x`."""
        out = _conv(self.planes, 3, self.stride, self.dtype, "conv1")(x)
        out = _norm(train, self.dtype, self.bn_axis_name, "bn1")(out)
        out = nn.relu(out)
        out = _conv(self.planes, 3, 1, self.dtype, "conv2")(out)
        out = _norm(train, self.dtype, self.bn_axis_name, "bn2")(out)
        residual = x
        if self.stride != 1 or x.shape[-1] != self.planes * self.expansion:
            residual = _conv(
                self.planes * self.expansion, 1, self.stride, self.dtype, "shortcut_conv"
            )(x)
            residual = _norm(train, self.dtype, self.bn_axis_name, "shortcut_bn")(residual)
        return nn.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 convolutions with a residual connection (expansion 4).

    Attributes:
        planes: channels of the inner convolutions; the output has `4 * planes`.
        stride: stride of the 3x3 convolution and of the shortcut.
        dtype: compute dtype.
        bn_axis_name: data-parallel axis name for BatchNorm statistics, or None.
    """

    planes: int
    stride: int = 1
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        """Applies the block to NHWC `x`."""
        out = _conv(self.planes, 1, 1, self.dtype, "conv1")(x)
        out = _norm(train, self.dtype, self.bn_axis_name, "bn1")(out)
        out = nn.relu(out)
        out = _conv(self.planes, 3, self.stride, self.dtype, "conv2")(out)
        out = _norm(train, self.dtype, self.bn_axis_name, "bn2")(out)
        out = nn.relu(out)
        out = _conv(self.planes * self.expansion, 1, 1, self.dtype, "conv3")(out)
        out = _norm(train, self.dtype, self.bn_axis_name, "bn3")(out)
        residual = x
        if self.stride != 1 or x.shape[-1] != self.planes * self.expansion:
            residual = _conv(
                self.planes * self.expansion, 1, self.stride, self.dtype, "shortcut_conv"
            )(x)
            residual = _norm(train, self.dtype, self.bn_axis_name, "shortcut_bn")(residual)
        return nn.relu(out + residual)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A ResNet with four stages and a CIFAR or ImageNet stem.

    Parameter names follow the PyTorch code: `conv1`/`bn1` (stem),
    `layer{s}_{b}` (block b of stage s, both from 1 and 0), and `fc` (classifier).

    Attributes:
        block: 'basic' (BasicBlock) or 'bottleneck' (Bottleneck).
        stage_sizes: number of blocks per stage, e.g. (2, 2, 2, 2) for ResNet18.
        num_classes: classifier outputs.
        width: channel multiplier (1.0 = the paper's 64-128-256-512).
        stem: 'cifar' (3x3 stride-1 conv, no pool) or 'imagenet' (7x7 stride-2
            conv, 3x3 stride-2 max-pool).
        dtype: compute dtype; parameters and batch statistics stay float32.
        bn_axis_name: data-parallel axis name over which BatchNorm batch
            statistics are averaged (None = this device's batch only).
    """

    block: str
    stage_sizes: Sequence[int]
    num_classes: int
    width: float = 1.0
    stem: str = "cifar"
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        """Returns float32 logits (N, num_classes) for float NHWC images `x`.

        Args:
            x: float images (N, H, W, C), already normalized.
            train: use batch statistics (and update the running ones, which
                needs `mutable=['batch_stats']`) if True; running statistics if False.
        """
        block_cls = _BLOCKS[self.block]
        x = jnp.asarray(x, self.dtype)
        stem_features = scaled(64, self.width)
        if self.stem == "cifar":
            x = _conv(stem_features, 3, 1, self.dtype, "conv1")(x)
            x = _norm(train, self.dtype, self.bn_axis_name, "bn1")(x)
            x = nn.relu(x)
        elif self.stem == "imagenet":
            x = _conv(stem_features, 7, 2, self.dtype, "conv1")(x)
            x = _norm(train, self.dtype, self.bn_axis_name, "bn1")(x)
            x = nn.relu(x)
            # PyTorch MaxPool2d(3, stride=2, padding=1); Flax pads with -inf.
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            raise ValueError(f"unknown stem {self.stem!r}")
        for stage, num_blocks in enumerate(self.stage_sizes):
            planes = scaled(64 * 2**stage, self.width)
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                x = block_cls(
                    planes=planes,
                    stride=stride,
                    dtype=self.dtype,
                    bn_axis_name=self.bn_axis_name,
                    name=f"layer{stage + 1}_{index}",
                )(x, train)
        # Global average pool, accumulated in float32.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        x = nn.Dense(
            self.num_classes,
            use_bias=False,
            kernel_init=KERNEL_INIT,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="fc",
        )(x)
        return x.astype(jnp.float32)


def resnet18(num_classes: int, **kwargs) -> ResNet:
    """CIFAR ResNet18: BasicBlock stages (2, 2, 2, 2), 3x3 stride-1 stem."""
    return ResNet(block="basic", stage_sizes=(2, 2, 2, 2), num_classes=num_classes, **kwargs)


def resnet50(num_classes: int, **kwargs) -> ResNet:
    """CIFAR ResNet50: Bottleneck stages (3, 4, 6, 3), 3x3 stride-1 stem."""
    return ResNet(block="bottleneck", stage_sizes=(3, 4, 6, 3), num_classes=num_classes, **kwargs)


def resnet50_imagenet(num_classes: int, **kwargs) -> ResNet:
    """ImageNet-stem ResNet50 (7x7 stride-2 conv + max-pool), run at native resolution."""
    return ResNet(
        block="bottleneck",
        stage_sizes=(3, 4, 6, 3),
        num_classes=num_classes,
        stem="imagenet",
        **kwargs,
    )
