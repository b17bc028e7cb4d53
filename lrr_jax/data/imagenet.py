"""ImageNet (ILSVRC2012) through TFDS's own `imagenet2012` builder, without TensorFlow.

Preparation: `python -m lrr_jax.data.prepare --dataset=imagenet2012
--manual_dir=DIR --data_dir=DIR` reads the official `ILSVRC2012_img_train.tar`
(one tar per class, `n01440764.tar`, ... holding `n01440764_10026.JPEG`, ...)
and `ILSVRC2012_img_val.tar` (`ILSVRC2012_val_00000001.JPEG`, ...) from the
manual folder and writes TFDS's `imagenet2012` 5.1.0 as ArrayRecord: the
same name, version, features (`image` JPEG bytes, `label`, `file_name`) and
directory as the stock builder, so `tfds.data_source('imagenet2012',
data_dir=...)` reads it too. The stock builder needs TensorFlow in three
places; `Imagenet2012` replaces them: the archives are walked with python's
`tarfile`, the validation labels are read with `open` (TFDS's own
`validation_labels.txt`, zipped with the sorted validation file names, as the
stock builder does), and the images that are not RGB or grey JPEGs (the real
set has 22 CMYK JPEGs and one PNG named `.JPEG`) are re-encoded as RGB JPEGs
with PIL where the stock builder uses TensorFlow (and only for the names on
its list; here any such image is found by its content).

The validation split is the test split, as in the paper code (imp-lrr-lts
`data/imagenet.py`: the `val` folder / `val_*.beton`).

Training reads the prepared records on the host (`lrr_jax.data.stream`): the
JPEG bytes are decoded and transformed here, per example, on host threads:

- training: torchvision's `RandomResizedCrop(size)` (scale (0.08, 1), ratio
  (3/4, 4/3), bilinear) + `RandomHorizontalFlip()` (`train_example`);
- evaluation: `Resize(round(size * 256 / 224))` (shorter side, bilinear) +
  `CenterCrop(size)` (`eval_example`): Resize(256) + CenterCrop(224) at 224;

both as the paper code's PyTorch pipeline (`data/imagenet.py`, class
`ImageNet`; its FFCV loader `FFCVImageNet` decodes a RandomResizedCrop and a
224/256 centre crop the same way), ImageNet mean/std applied on the device.
The evaluation's resize and crop are one PIL `resize(box=...)`, which
computes the crop of the full resize without the rest of it. JPEGs are
decoded at the smallest DCT scale (1/2, 1/4, 1/8: `Image.draft`) that still
leaves at least `size` pixels on each side of the region being resized, so
the resize stays a downsampling, as fast loaders (FFCV, DALI) do: the
decoder's block averaging replaces part of PIL's antialiasing filter (a few
grey levels per pixel, `tests/test_stream.py`).
"""

from __future__ import annotations

import io
import math
import os
import sys
import tarfile

import numpy as np
from PIL import Image

from lrr_jax import errors
from lrr_jax.data import paths

NAME = "imagenet2012"
NUM_CLASSES = 1000
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
# Examples per split of the real ILSVRC2012 (train, validation = lrr_jax's test).
SPLIT_SIZES = {"train": 1_281_167, "test": 50_000}
# torchvision's RandomResizedCrop defaults.
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# ImageNet mean / std on the 0..1 scale (torchvision; imp-lrr-lts data/imagenet.py).
MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _stock_builder_class():
    from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder

    return imagenet2012_dataset_builder.Builder


def _tfds_file(name: str) -> str:
    import tensorflow_datasets as tfds

    return os.fspath(tfds.core.tfds_path(f"datasets/imagenet2012/{name}"))


def validation_labels(val_names: list[str]) -> dict[str, str]:
    """name -> wnid of the validation images, as TFDS's builder assigns them.

    TFDS ships the 50,000 labels in the alphabetic order of the image names
    (`validation_labels.txt`) and zips them with the sorted names in the tar.
    """
    with open(_tfds_file("validation_labels.txt")) as f:
        labels = f.read().strip().splitlines()
    return dict(zip(sorted(val_names), labels))


def to_rgb_jpeg(data: bytes) -> bytes:
    """`data` unchanged if it is an RGB or greyscale JPEG, else re-encoded as an RGB JPEG.

    The real training set holds 22 CMYK JPEGs and one PNG named `.JPEG`
    (TFDS lists them by name and converts them with TensorFlow). Quality 100,
    as `tfds.core.utils.jpeg_cmyk_to_rgb` encodes.
    """
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            return data
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=100)
        return out.getvalue()


def _tar_files(fileobj):
    """(name, bytes) of every regular file of a tar stream, in archive order."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if member.isfile():
                yield os.path.basename(member.name), tar.extractfile(member).read()


def _builder_class():
    stock = _stock_builder_class()

    class Imagenet2012(stock, skip_registration=True):
        """TFDS `imagenet2012` 5.1.0, prepared from the manual tars without TensorFlow."""

        name = NAME  # the stock builder's name -> its directory

        def _split_generators(self, dl_manager):
            manual = os.fspath(dl_manager.manual_dir)
            found = {split: os.path.join(manual, tar)
                     for split, tar in (("train", TRAIN_TAR), ("validation", VAL_TAR))
                     if os.path.isfile(os.path.join(manual, tar))}
            return {split: self._generate(split, path) for split, path in found.items()}

        def _generate(self, split, path):
            if split == "validation":
                with tarfile.open(path, "r:*") as tar:
                    names = [os.path.basename(m.name) for m in tar if m.isfile()]
                labels = validation_labels(names)
                with open(path, "rb") as f:
                    for name, data in _tar_files(f):
                        yield name, {"file_name": name, "image": to_rgb_jpeg(data),
                                     "label": labels[name]}
                return
            with open(path, "rb") as f:  # one tar per class: n01440764.tar, ...
                for class_tar, blob in _tar_files(f):
                    label = class_tar[:-len(".tar")]
                    for name, data in _tar_files(io.BytesIO(blob)):
                        yield name, {"file_name": name, "image": to_rgb_jpeg(data),
                                     "label": label}

    return Imagenet2012


def builder(data_dir: str | None = None, manual_dir: str | None = None):
    """The TensorFlow-free `imagenet2012` builder over `data_dir` ('' = TFDS's default)."""
    import tensorflow_datasets as tfds

    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    b = _builder_class()(data_dir=data_dir or None)
    b._lrr_download_config = config  # noqa: SLF001 - read by `prepare`
    return b


def _not_prepared(data_dir: str) -> str:
    return (f"imagenet2012 is not prepared in {data_dir}; run `python -m lrr_jax.data.prepare "
            f"--dataset=imagenet2012 --manual_dir=DIR_WITH_{TRAIN_TAR}_AND_{VAL_TAR} "
            f"--data_dir={data_dir}` (ImageNet has no download: register at image-net.org)")


def prepare(data_dir: str | None, manual_dir: str | None):
    """Prepares imagenet2012 as ArrayRecord in `data_dir` from the tars in `manual_dir`.

    Returns the prepared builder (at once when it already is).

    Raises:
        ConfigError: ('manual_dir') a folder without the two official tars;
            ('dataset') not prepared and no manual folder given.
    """
    import tensorflow_datasets as tfds

    data_dir, manual_dir = paths.expand(data_dir) or None, paths.expand(manual_dir) or None
    b = builder(data_dir)
    if b.is_prepared():
        return b
    if not manual_dir:
        raise errors.ConfigError("dataset", _not_prepared(b.data_dir_root))
    missing = [t for t in (TRAIN_TAR, VAL_TAR) if not os.path.isfile(os.path.join(manual_dir, t))]
    if missing:
        raise errors.ConfigError("manual_dir", f"{manual_dir} lacks {' and '.join(missing)} "
                                 "(the official ILSVRC2012 tars, as downloaded)")
    b.download_and_prepare(file_format="array_record", download_config=tfds.download.
                           DownloadConfig(manual_dir=manual_dir, try_download_gcs=False))
    return b


def prepared(config):
    """The prepared builder for `config.data_dir`; ConfigError('dataset') when it is not."""
    b = builder(paths.config_path(config, "data_dir") or None)
    if not b.is_prepared():
        raise errors.ConfigError("dataset", _not_prepared(b.data_dir_root))
    return b


def split_sizes(b) -> dict[str, int]:
    """{'train': n, 'test': n} of a prepared builder (the validation split is the test)."""
    return {"train": int(b.info.splits["train"].num_examples),
            "test": int(b.info.splits["validation"].num_examples)}


def describe(b) -> None:
    """The `data:` line on stderr, and a warning when the sizes are not ILSVRC2012's."""
    sizes = split_sizes(b)
    print(f"data: imagenet2012 train {sizes['train']}, test (validation) {sizes['test']} "
          f"(from {b.data_dir})", file=sys.stderr, flush=True)
    if sizes != SPLIT_SIZES:
        print(f"warning: data: imagenet2012 has {sizes['train']} train / {sizes['test']} "
              f"validation examples, not ILSVRC2012's {SPLIT_SIZES['train']:,} / "
              f"{SPLIT_SIZES['test']:,}: a partial or generated set? Results are not "
              "comparable with the paper's", file=sys.stderr, flush=True)


def eval_resize(size: int) -> int:
    """The shorter side before the centre crop: 256 at 224 (torchvision's ImageNet ratio)."""
    return int(round(size * 256 / 224))


def _decode(data: bytes, need: tuple[float, float]) -> tuple[Image.Image, float, float]:
    """The image decoded at the smallest DCT scale keeping `need` (w, h) source pixels.

    Returns the RGB image and its scale factors (decoded / full size) along x and y.
    """
    image = Image.open(io.BytesIO(data))
    full_w, full_h = image.size
    k = 1
    while k < 8 and need[0] >= 2 * k and need[1] >= 2 * k and min(full_w, full_h) >= 2 * k:
        k *= 2
    if k > 1 and image.format == "JPEG":
        # PIL picks the largest DCT scale s in {2, 4, 8} with size // s >= the request.
        image.draft(image.mode, (full_w // k, full_h // k))
    # A DCT-scaled decode maps source pixel u to u / s (its last pixel may be partial).
    s = 2 ** round(math.log2(full_w / image.size[0]))
    return image.convert("RGB"), 1.0 / s, 1.0 / s


def rrc_params(rng: np.random.Generator, width: int, height: int,
               scale=RRC_SCALE, ratio=RRC_RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w): torchvision's `RandomResizedCrop.get_params`, with numpy's draws.

    Ten tries of an area fraction U(scale) and a log-uniform aspect ratio; the
    first crop that fits, at a uniform position; else the centre crop of the
    whole image with the aspect ratio clamped into `ratio`.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def image_size_of(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, without decoding."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def train_example(data: bytes, rng: np.random.Generator, size: int) -> np.ndarray:
    """RandomResizedCrop(size) + RandomHorizontalFlip of one JPEG: uint8 (size, size, 3)."""
    width, height = image_size_of(data)
    top, left, h, w = rrc_params(rng, width, height)
    flip = rng.random() < 0.5
    image, sx, sy = _decode(data, (w / size, h / size))
    # torchvision crops, then resizes (the filter sees only the crop). At a reduced DCT
    # scale the crop's edges fall between decoded pixels: crop to the pixels it touches,
    # resize the exact region within them.
    x0, y0, x1, y1 = left * sx, top * sy, (left + w) * sx, (top + h) * sy
    cx, cy = math.floor(x0), math.floor(y0)
    crop = image.crop((cx, cy, math.ceil(x1), math.ceil(y1)))
    out = crop.resize((size, size), Image.BILINEAR, box=(x0 - cx, y0 - cy, x1 - cx, y1 - cy))
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(out, np.uint8)


def eval_example(data: bytes, size: int) -> np.ndarray:
    """Resize(round(size * 256 / 224)) + CenterCrop(size) of one JPEG: uint8 (size, size, 3).

    As torchvision: the shorter side becomes `r`, the longer `int(r * long /
    short)`; the crop's top-left is `round((resized - size) / 2)`.
    """
    width, height = image_size_of(data)
    r = eval_resize(size)
    if width <= height:
        new_w, new_h = r, int(r * height / width)
    else:
        new_w, new_h = int(r * width / height), r
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    fx, fy = width / new_w, height / new_h  # source pixels per resized pixel
    image, sx, sy = _decode(data, (fx, fy))
    box = (left * fx * sx, top * fy * sy, (left + size) * fx * sx, (top + size) * fy * sy)
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=box), np.uint8)
