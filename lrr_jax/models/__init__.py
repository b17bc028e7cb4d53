"""Flax Linen models: `create(config, num_classes)` builds the one named by `config.model`.

Config keys read (all through `config.get`):
    model: 'mlp' | 'resnet18' | 'resnet50' | 'resnet50_imagenet'.
    width: channel multiplier for the ResNets (default 1.0 = the paper's
        networks); channels = max(1, round(c * width)). The MLP ignores it.
    mlp_hidden: hidden layer sizes of the MLP (default (256, 256)).
    dtype: compute dtype, 'float32' (default) or 'bfloat16'. Parameters and
        BatchNorm statistics are always float32 and logits are returned as float32.

Prunable weights are exactly the parameter leaves named `kernel`.
"""

import jax.numpy as jnp

from lrr_jax import errors
from lrr_jax.models import mlp, resnet

MODELS = ("mlp", "resnet18", "resnet50", "resnet50_imagenet")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Number of prunable (`kernel`) weights at width 1, keyed by (model, num_classes).
# ResNet18/CIFAR10 matches the paper's 11,164,352 exactly. ResNet50/CIFAR100
# (the paper says ~23.65M) and the ImageNet-stem ResNet50 with 200 classes are
# this implementation's counts; with 1000 classes the ImageNet-stem count is
# 25,502,912 = torchvision's ResNet50 (25,557,032 parameters) less its
# BatchNorm parameters and classifier bias. tests/test_models.py checks every entry.
PAPER_PRUNABLE_COUNTS = {
    ("resnet18", 10): 11_164_352,
    ("resnet50", 100): 23_652_032,
    ("resnet50_imagenet", 200): 23_864_512,
}


def create(config, num_classes: int, bn_axis_name: str | None = None):
    """Builds the model named by `config.model`.

    Args:
        config: a ConfigDict (or anything with `.get(key, default)`).
        num_classes: number of classifier outputs.
        bn_axis_name: data-parallel axis name over which BatchNorm batch
            statistics are averaged (pmap / shard_map), or None.

    Returns:
        An unbound `flax.linen.Module` called as `model(x, train=...)`.

    Raises:
        errors.ConfigError: unknown `model` or `dtype`, or a bad `width` or `mlp_hidden`.
    """
    name = config.get("model", None)
    dtype_name = config.get("dtype", "float32")
    if dtype_name not in _DTYPES:
        raise errors.ConfigError(
            "dtype", f"unknown compute dtype {dtype_name!r}; choose one of {sorted(_DTYPES)}"
        )
    dtype = _DTYPES[dtype_name]
    if name == "mlp":
        hidden = config.get("mlp_hidden", (256, 256))
        try:
            hidden = tuple(int(h) for h in hidden)
        except (TypeError, ValueError) as error:
            raise errors.ConfigError(
                "mlp_hidden", f"must be a sequence of positive ints, got {hidden!r}"
            ) from error
        if any(h <= 0 for h in hidden):
            raise errors.ConfigError("mlp_hidden", f"sizes must be positive, got {hidden!r}")
        return mlp.MLP(
            hidden=hidden, num_classes=num_classes, dtype=dtype, bn_axis_name=bn_axis_name
        )
    builders = {
        "resnet18": resnet.resnet18,
        "resnet50": resnet.resnet50,
        "resnet50_imagenet": resnet.resnet50_imagenet,
    }
    if name not in builders:
        raise errors.ConfigError("model", f"unknown model {name!r}; choose one of {MODELS}")
    width = config.get("width", 1.0)
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise errors.ConfigError("width", f"must be a positive number, got {width!r}")
    return builders[name](num_classes, width=float(width), dtype=dtype, bn_axis_name=bn_axis_name)
