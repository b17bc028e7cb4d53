"""A fully connected ReLU network for vector data (mnist1d, digits).

Hidden Dense layers with biases and ReLU, then a Dense classifier with a bias;
no BatchNorm, so the model has no 'batch_stats' collection. Kernels use the same
Kaiming normal initialization as the ResNets; biases start at zero. The
prunable weights are the leaves named `kernel`; biases are never pruned.

The paper's own fully connected nets (`models/fc.py`) are bias-free 1x1
convolutions; the biases here are this project's choice.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lrr_jax.models import resnet


class MLP(nn.Module):
    """Dense(h) + ReLU for each h in `hidden`, then Dense(num_classes).

    Attributes:
        hidden: hidden layer sizes, e.g. (256, 256).
        num_classes: classifier outputs.
        dtype: compute dtype; parameters stay float32.
        bn_axis_name: accepted for a uniform model interface; unused (no BatchNorm).
    """

    hidden: Sequence[int]
    num_classes: int
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        """Returns float32 logits (N, num_classes).

        Args:
            x: float features (N, D); any trailing shape is flattened.
            train: unused (the model behaves the same in training and evaluation).
        """
        del train
        x = jnp.asarray(x, self.dtype).reshape((x.shape[0], -1))
        for index, features in enumerate(self.hidden):
            x = nn.Dense(
                features,
                kernel_init=resnet.KERNEL_INIT,
                bias_init=nn.initializers.zeros,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                name=f"dense{index + 1}",
            )(x)
            x = nn.relu(x)
        x = nn.Dense(
            self.num_classes,
            kernel_init=resnet.KERNEL_INIT,
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="fc",
        )(x)
        return x.astype(jnp.float32)
