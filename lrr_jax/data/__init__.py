"""Datasets as host numpy arrays: `load(config) -> Dataset`.

Every dataset comes back in one shape so the trainer never branches on where
it came from: uint8 NHWC images (CIFAR-10/100, Tiny ImageNet) or float32
(N, D) vectors (MNIST-1D, digits), int32 labels, and float32 normalization
statistics. Normalization and augmentation happen on device
(`lrr_jax.data.augment`).

Normalization (`config.normalization`): 'paper' (default) uses the authors'
fixed constants for the image datasets (`PAPER_STATISTICS`: their CIFAR-10,
CIFAR-100 and ImageNet mean/std); 'data' computes per-channel statistics on
the full training split. The vector datasets always use their data's.

Tiny ImageNet at `config.tiny_imagenet_resolution` 224 (default, the
authors' pipeline): the train split stays 64x64 and is upsampled per example
on device by `augment.random_resized_crop_flip`; the test split is
`augment.resize_center_crop`'d (Resize 256 + CenterCrop 224) here, once, so
`test_x` is (N, 224, 224, 3). 64 keeps both at 64x64 (pad-8 crop + flip).

CIFAR and Tiny ImageNet say their split sizes and source on stderr (one line)
and warn when the sizes are not the real dataset's.

Loaders are imported lazily so that, e.g., an MNIST-1D run never imports
tensorflow_datasets.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from lrr_jax import errors

NORMALIZATIONS = ("paper", "data")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One dataset of the registry `DATASETS`.

    Attributes:
        load: config -> (arrays {'train_x', 'train_y', 'test_x', 'test_y'}, classes),
            host numpy arrays as `Dataset` holds them; None for a dataset that
            only streams (`stream`).
        title: its name in figures and tables ('CIFAR-10').
        sizes: config -> (train, test, example shape, classes) of the real dataset,
            what the plan assumes when it is not prepared here and what tells a
            partial or generated copy; None when there is no standard.
        statistics: the authors' fixed (mean, std) per channel on the 0..1 scale
            (`normalization='paper'`); None: the train split's own.
        augment: config -> the per-example train transform (key, image) -> image
            applied on the device with `config.augment`, or None (no augmentation
            is defined: vectors, digits).
        stream: config -> `stream.Streams` reading its records on the host; None:
            the stream reads the host arrays of `load`.
    """

    load: Callable | None
    title: str
    sizes: Callable | None = None
    statistics: tuple | None = None
    augment: Callable | None = None
    stream: Callable | None = None


def _load_embedded(config, name):
    from lrr_jax.data import embedded

    return (embedded.load_mnist1d if name == "mnist1d" else embedded.load_digits)(config), 10


def _load_cifar(config, name):
    from lrr_jax.data import cifar

    return cifar.load_arrays(config, name), cifar.NUM_CLASSES[name]


def _load_tiny_imagenet(config, name):
    from lrr_jax.data import tiny_imagenet

    arrays, classes = tiny_imagenet.load_arrays(config)
    if tiny_imagenet.resolution(config) == 224:  # the test split resized once (Resize 256)
        from lrr_jax.data import augment

        arrays = {**arrays, "test_x": augment.resize_center_crop_host(arrays["test_x"])}
    return arrays, classes


def _load_mnist(config, name):
    from lrr_jax.data import mnist

    return mnist.load_arrays(config, name)


def _crop_flip(config):
    from lrr_jax.data import augment

    return augment.crop_flip(int(config.get("augment_pad", 4)))


def _tiny_imagenet_augment(config):
    from lrr_jax.data import augment, tiny_imagenet

    return (augment.random_resized_crop_flip if tiny_imagenet.resolution(config) == 224
            else _crop_flip(config))


def _tiny_imagenet_sizes(config):
    from lrr_jax.data import tiny_imagenet

    side = tiny_imagenet.resolution(config)  # the test split the model sees
    return 100_000, 10_000, (64, 64, 3), 200, (side, side, 3)


def _stream_cifar(config, name):
    from lrr_jax.data import stream

    return stream.cifar_streams(config, name)


def _stream_imagenet(config, name):
    from lrr_jax.data import stream

    return stream.imagenet_streams(config)


def _imagenet_sizes(config):
    size = int(config.get("image_size", 224))
    return 1_281_167, 50_000, (size, size, 3), 1000


# The authors' fixed per-channel (mean, std) on the 0..1 scale (imp-lrr-lts
# data/cifar10.py: CIFAR10, CIFAR100, TinyImagenet's ImageNet constants; open_lth's
# MNIST constants).
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# The registry: `config.dataset` -> its Spec. A config file may add an entry.
DATASETS = {
    "mnist1d": Spec(_load_embedded, "MNIST-1D"),
    "digits": Spec(_load_embedded, "digits"),
    "cifar10": Spec(_load_cifar, "CIFAR-10", lambda c: (50_000, 10_000, (32, 32, 3), 10),
                    ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)), _crop_flip,
                    _stream_cifar),
    "cifar100": Spec(_load_cifar, "CIFAR-100", lambda c: (50_000, 10_000, (32, 32, 3), 100),
                     ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)), _crop_flip,
                     _stream_cifar),
    "tiny_imagenet": Spec(_load_tiny_imagenet, "Tiny ImageNet", _tiny_imagenet_sizes,
                          _IMAGENET_STATS, _tiny_imagenet_augment),
    "imagenet2012": Spec(None, "ImageNet", _imagenet_sizes, _IMAGENET_STATS, None,
                         _stream_imagenet),
    # LeNet's lottery-ticket data: no augmentation (open_lth), its fixed statistics.
    "mnist": Spec(_load_mnist, "MNIST", lambda c: (60_000, 10_000, (28, 28, 1), 10),
                  ((0.1307,), (0.3081,))),
    "fashion_mnist": Spec(_load_mnist, "Fashion-MNIST",
                          lambda c: (60_000, 10_000, (28, 28, 1), 10)),
}


def spec(name: str) -> Spec:
    """The registry entry of `name`; ConfigError('dataset') when there is none."""
    if name not in DATASETS:
        raise errors.ConfigError("dataset", f"unknown dataset {name!r}; expected one of "
                                 f"{tuple(DATASETS)}")
    return DATASETS[name]


def real_sizes(config):
    """(train, test, example shape, classes[, test example shape]) of `config.dataset`'s real
    dataset, or None where it has no standard size."""
    s = spec(config.dataset)
    return None if s.sizes is None else s.sizes(config)


def train_transform(config):
    """The dataset's per-example train augmentation, or None (none defined)."""
    s = spec(config.get("dataset", ""))
    return None if s.augment is None else s.augment(config)


# Stds below this (constant features, e.g. the digits' always-blank border
# pixels) are replaced by 1 so normalization never divides by ~0.
_MIN_STD = 1e-6


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of host arrays plus normalization statistics.

    Attributes:
        train_x: uint8 (N, H, W, C) images or float32 (N, D) vectors.
        train_y: int32 (N,) labels.
        test_x: Like `train_x`.
        test_y: Like `train_y`.
        num_classes: Number of classes.
        mean: float32 per-channel (images, 0..1 scale) or per-feature mean of the train split.
        std: float32 standard deviation, same shape as `mean`.
        name: The `config.dataset` value.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    name: str

    @property
    def is_image(self) -> bool:
        """True for NHWC image data, False for (N, D) vectors."""
        return self.train_x.ndim == 4


def _statistics(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (images, on the 0..1 scale) or per-feature mean and std."""
    if train_x.dtype == np.uint8:
        # Exact mean/std from one 256-bin histogram per channel: a single
        # integer pass, several times faster than float64 passes over
        # 50000x32x32x3 pixels. Channel c's values are offset into bins
        # [256c, 256c+256); chunks bound the intp temporaries bincount makes.
        channels = train_x.shape[-1]
        offsets = (np.arange(channels) * 256).astype(np.uint16)
        counts = np.zeros(256 * channels, np.int64)
        for start in range(0, len(train_x), 2048):
            chunk = train_x[start : start + 2048].reshape(-1, channels) + offsets
            counts += np.bincount(chunk.ravel(), minlength=256 * channels)
        counts = counts.reshape(channels, 256).astype(np.float64)
        values = np.arange(256, dtype=np.float64) / 255.0
        total = counts.sum(axis=1)
        mean = counts @ values / total
        std = np.sqrt((counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total)
    else:
        axes = tuple(range(train_x.ndim - 1))
        # float64 accumulation: float32 sums over many examples lose digits.
        mean = train_x.mean(axis=axes, dtype=np.float64)
        std = train_x.std(axis=axes, dtype=np.float64)
    std = np.where(std > _MIN_STD, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _limit(config, key: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keeps the first `config[key]` examples (0 = all)."""
    n = int(config.get(key, 0) or 0)
    if n < 0:
        raise errors.ConfigError(key, f"must be >= 0 (0 = all), got {n}")
    if n == 0:
        return x, y
    return x[:n], y[:n]


def load(config) -> Dataset:
    """Loads `config.dataset` as host numpy arrays.

    Args:
        config: ml_collections ConfigDict (or anything with `.get`). Reads
            `dataset`, `normalization` and, depending on the dataset,
            `data_dir`, `cifar_archive`, `download`, `tiny_imagenet_dir`,
            `tiny_imagenet_resolution`, `augment`, `train_limit`, `test_limit`.
            Paths have `~` and `$VAR` expanded.

    Returns:
        A `Dataset`; with normalization 'data', `mean`/`std` come from the
        full train split, before the limits are applied.

    Raises:
        ConfigError: For an unknown dataset or normalization, or a dataset
            that is not available and cannot be prepared offline (the message
            says how to prepare it).
    """
    name = config.get("dataset", "")
    normalization = config.get("normalization", "paper")
    if normalization not in NORMALIZATIONS:
        raise errors.ConfigError(
            "normalization", f"unknown normalization {normalization!r}; expected one of "
            f"{NORMALIZATIONS}")
    entry = spec(name)
    if entry.load is None:
        raise errors.ConfigError("input_pipeline", f"{name} is read as a stream of records "
                                 "(it does not fit on a device): use --config.input_pipeline="
                                 "stream")
    arrays, num_classes = entry.load(config, name)
    if normalization == "paper" and entry.statistics is not None:
        mean, std = (np.asarray(v, np.float32) for v in entry.statistics)
    else:
        mean, std = _statistics(arrays["train_x"])
    train_x, train_y = _limit(config, "train_limit", arrays["train_x"], arrays["train_y"])
    test_x, test_y = _limit(config, "test_limit", arrays["test_x"], arrays["test_y"])
    return Dataset(
        train_x=train_x,
        train_y=train_y.astype(np.int32),
        test_x=test_x,
        test_y=test_y.astype(np.int32),
        num_classes=num_classes,
        mean=mean,
        std=std,
        name=name,
    )


def open_streams(config):
    """The train and test sources of `config.dataset` for the streaming pipeline
    (`lrr_jax.data.stream`): its records read on the host (`Spec.stream`), else its
    host arrays; with the normalization statistics `load` would give.

    Raises:
        ConfigError: as `load` (a dataset that is not prepared, bad paths).
    """
    from lrr_jax.data import stream

    name = config.get("dataset", "")
    entry = spec(name)
    if entry.stream is None:
        ds = load(config)
        return stream.Streams(name, stream.array_source(ds.train_x, ds.train_y),
                              stream.array_source(ds.test_x, ds.test_y), ds.num_classes,
                              ds.mean, ds.std, False, "host arrays")
    s = entry.stream(config, name)
    if config.get("normalization", "paper") == "paper" and entry.statistics is not None:
        mean, std = (np.asarray(v, np.float32) for v in entry.statistics)
    elif entry.load is None:
        raise errors.ConfigError("normalization", f"{name} is streamed: 'data' statistics "
                                 "would decode the whole training set; use 'paper'")
    else:
        ds = load(config)  # the host arrays' statistics, as the on-device pipeline computes
        mean, std = ds.mean, ds.std
    return dataclasses.replace(s, mean=mean, std=std)
