"""The classifier layer of the open_lth models (LeNet, CIFAR VGG, CIFAR ResNet-20/56).

open_lth (facebookresearch/open_lth, `models/mnist_lenet.py`, `models/cifar_vgg.py`,
`models/cifar_resnet.py`) ends every network with a PyTorch `nn.Linear`, bias
included, and initializes it with `models/initializers.py: kaiming_normal`, which
re-initializes only the weight (`torch.nn.init.kaiming_normal_`: fan_in, ReLU
gain, untruncated). The bias keeps PyTorch's default initialization,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)). `dense` builds that layer in Flax: kernel
`resnet.KERNEL_INIT`, bias `torch_bias_init(fan_in)`. The bias is never pruned
(only leaves named `kernel` are).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrr_jax.models import resnet


def torch_bias_init(fan_in: int):
    """PyTorch's default `nn.Linear` / `nn.Conv2d` bias initializer for `fan_in` inputs.

    Args:
        fan_in: inputs per output unit (in_features of a Linear layer).

    Returns:
        A Flax initializer `init(key, shape, dtype)` drawing U(-b, b), b = 1 / sqrt(fan_in)
        (zeros when fan_in is 0, as PyTorch).
    """
    bound = 1.0 / float(fan_in) ** 0.5 if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def dense(features: int, fan_in: int, dtype: Any, name: str) -> nn.Dense:
    """open_lth's `nn.Linear(fan_in, features)`: Kaiming-normal kernel, PyTorch-default bias.

    Args:
        features: output units.
        fan_in: input units (the bias bound depends on it; Flax's initializer does not see it).
        dtype: compute dtype; parameters are float32.
        name: the module name (its kernel is prunable).
    """
    return nn.Dense(
        features,
        use_bias=True,
        kernel_init=resnet.KERNEL_INIT,
        bias_init=torch_bias_init(fan_in),
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )
