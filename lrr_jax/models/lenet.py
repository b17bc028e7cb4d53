"""LeNet-300-100: Frankle & Carbin's (2019) fully connected network for MNIST.

As open_lth builds `mnist_lenet_300_100` (facebookresearch/open_lth,
`models/mnist_lenet.py`): the 28x28 image is flattened to 784 inputs, then
Linear(784, 300) + ReLU, Linear(300, 100) + ReLU, Linear(100, 10). Every layer
has a bias; the weights are Kaiming normal (fan_in, ReLU gain, open_lth's
default `model_init='kaiming_normal'`, the output layer included) and the biases
keep PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (`layers.dense`). No
BatchNorm, so the model has no 'batch_stats' collection.

Prunable weights are the three kernels: 784*300 + 300*100 + 100*10 = 266,200
(F&C 2019, Figure 2: 266K). open_lth's own test counts 266,610 parameters with
the 410 biases (`models/test/test_mnist_lenet.py`).

`width` scales the hidden layers (300 and 100 units, each max(1, round(n * width)));
the input and output sizes do not change. Any input shape is flattened, so the
same network runs on Fashion-MNIST or other 28x28x1 images.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lrr_jax.models import layers, resnet

HIDDEN = (300, 100)


class LeNet(nn.Module):
    """Dense + ReLU for each hidden size, then a Dense classifier, on flattened images.

    Parameter names: `dense1`, `dense2` (hidden layers) and `fc` (classifier).

    Attributes:
        num_classes: classifier outputs.
        hidden: hidden layer sizes at width 1.
        width: multiplier of the hidden sizes.
        dtype: compute dtype; parameters stay float32 and logits are float32.
        bn_axis_name: accepted for the uniform model interface; unused (no BatchNorm).
    """

    num_classes: int
    hidden: tuple[int, ...] = HIDDEN
    width: float = 1.0
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        """Returns float32 logits (N, num_classes).

        Args:
            x: float images (N, 28, 28, 1), already normalized; any trailing shape is flattened.
            train: unused (the network behaves the same in training and evaluation).
        """
        del train
        x = jnp.asarray(x, self.dtype).reshape((x.shape[0], -1))
        for index, size in enumerate(self.hidden):
            features = resnet.scaled(size, self.width)
            x = layers.dense(features, x.shape[-1], self.dtype, f"dense{index + 1}")(x)
            x = nn.relu(x)
        x = layers.dense(self.num_classes, x.shape[-1], self.dtype, "fc")(x)
        return x.astype(jnp.float32)


def lenet_300_100(num_classes: int, **kwargs) -> LeNet:
    """LeNet-300-100 (open_lth `mnist_lenet_300_100`)."""
    return LeNet(num_classes=num_classes, hidden=HIDDEN, **kwargs)
