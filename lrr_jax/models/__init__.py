"""Flax Linen models: `create(config, num_classes)` builds the one named by `config.model`.

`MODELS` is the registry: model name -> builder `fn(config, num_classes,
bn_axis_name) -> flax.linen.Module`. Adding a model is one function and one line
(`MODELS['my_net'] = my_builder`, also from a config file); `compute_dtype(config)`
and `width(config)` read and check the common keys for it.

Config keys read (all through `config.get`):
    model: a key of `MODELS`: 'mlp', 'resnet18', 'resnet50', 'resnet50_imagenet'
        (the paper's networks), 'lenet_300_100', 'vgg16', 'vgg19', 'resnet20',
        'resnet56' (open_lth's lottery-ticket networks).
    width: channel multiplier (default 1.0 = the published networks);
        channels = max(1, round(c * width)); LeNet's hidden units scale likewise.
        The MLP ignores it.
    mlp_hidden: hidden layer sizes of the MLP (default (256, 256)).
    dtype: compute dtype, 'float32' (default) or 'bfloat16'. Parameters and
        BatchNorm statistics are always float32 and logits are returned as float32.

Prunable weights are exactly the parameter leaves named `kernel`.
"""

from collections.abc import Callable

import jax.numpy as jnp

from lrr_jax import errors
from lrr_jax.models import cifar_resnet, lenet, mlp, resnet, vgg

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Number of prunable (`kernel`) weights at width 1, keyed by (model, num_classes).
# ResNet18/CIFAR10 matches the paper's 11,164,352 exactly. ResNet50/CIFAR100
# (the paper says ~23.65M) and the ImageNet-stem ResNet50 with 200 classes are
# this implementation's counts; with 1000 classes the ImageNet-stem count is
# 25,502,912 = torchvision's ResNet50 (25,557,032 parameters) less its
# BatchNorm parameters and classifier bias. The open_lth networks: LeNet-300-100
# 784*300 + 300*100 + 100*10 (Frankle & Carbin 2019: 266K weights); VGG-16/19 and
# ResNet-20 are open_lth's prunable tensors, whose totals with biases and BatchNorm
# are open_lth's tested parameter counts (14,728,266, 20,040,522, 272,474);
# ResNet-20/56 match He et al.'s 0.27M / 0.85M. tests/test_models.py checks every entry.
PAPER_PRUNABLE_COUNTS = {
    ("resnet18", 10): 11_164_352,
    ("resnet50", 100): 23_652_032,
    ("resnet50_imagenet", 200): 23_864_512,
    ("lenet_300_100", 10): 266_200,
    ("vgg16", 10): 14_715_584,
    ("vgg19", 10): 20_024_000,
    ("resnet20", 10): 270_896,
    ("resnet56", 10): 851_504,
}


def compute_dtype(config):
    """The compute dtype named by `config.dtype` ('float32' by default).

    Raises:
        errors.ConfigError: ('dtype') for another name.
    """
    name = config.get("dtype", "float32")
    if name not in _DTYPES:
        raise errors.ConfigError(
            "dtype", f"unknown compute dtype {name!r}; choose one of {sorted(_DTYPES)}"
        )
    return _DTYPES[name]


def width(config) -> float:
    """`config.width` (default 1.0) as a float.

    Raises:
        errors.ConfigError: ('width') unless it is a positive number.
    """
    value = config.get("width", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise errors.ConfigError("width", f"must be a positive number, got {value!r}")
    return float(value)


def scaled_builder(module_fn: Callable) -> Callable:
    """A registry builder for `module_fn(num_classes, *, width, dtype, bn_axis_name)`.

    Args:
        module_fn: e.g. `resnet.resnet18` or `vgg.vgg16`.

    Returns:
        `build(config, num_classes, bn_axis_name)`, reading `width` and `dtype` from config.
    """

    def build(config, num_classes: int, bn_axis_name: str | None):
        return module_fn(num_classes, width=width(config), dtype=compute_dtype(config),
                         bn_axis_name=bn_axis_name)

    build.__name__ = build.__qualname__ = f"build_{module_fn.__name__}"
    build.__doc__ = module_fn.__doc__
    return build


def build_mlp(config, num_classes: int, bn_axis_name: str | None):
    """The MLP with `config.mlp_hidden` hidden sizes (`width` is not read)."""
    hidden = config.get("mlp_hidden", (256, 256))
    try:
        hidden = tuple(int(h) for h in hidden)
    except (TypeError, ValueError) as error:
        raise errors.ConfigError(
            "mlp_hidden", f"must be a sequence of positive ints, got {hidden!r}"
        ) from error
    if any(h <= 0 for h in hidden):
        raise errors.ConfigError("mlp_hidden", f"sizes must be positive, got {hidden!r}")
    return mlp.MLP(hidden=hidden, num_classes=num_classes, dtype=compute_dtype(config),
                   bn_axis_name=bn_axis_name)


# The registry: model name -> builder(config, num_classes, bn_axis_name) -> flax Module.
MODELS = {
    "mlp": build_mlp,
    "resnet18": scaled_builder(resnet.resnet18),
    "resnet50": scaled_builder(resnet.resnet50),
    "resnet50_imagenet": scaled_builder(resnet.resnet50_imagenet),
    "lenet_300_100": scaled_builder(lenet.lenet_300_100),
    "vgg16": scaled_builder(vgg.vgg16),
    "vgg19": scaled_builder(vgg.vgg19),
    "resnet20": scaled_builder(cifar_resnet.resnet20),
    "resnet56": scaled_builder(cifar_resnet.resnet56),
}


def create(config, num_classes: int, bn_axis_name: str | None = None):
    """Builds the model named by `config.model` with its `MODELS` builder.

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
    compute_dtype(config)  # a bad dtype is reported first, whatever the model
    name = config.get("model", None)
    if name not in MODELS:
        raise errors.ConfigError("model", f"unknown model {name!r}; choose one of "
                                 f"{tuple(MODELS)}")
    return MODELS[name](config, num_classes, bn_axis_name)
