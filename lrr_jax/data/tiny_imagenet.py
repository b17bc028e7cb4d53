"""Tiny ImageNet (200 classes, 64x64) from the standard `tiny-imagenet-200` folder.

Layout read (as unpacked from the official zip):
    <dir>/wnids.txt                              one WordNet id per line
    <dir>/train/<wnid>/images/*.JPEG             500 per class
    <dir>/val/val_annotations.txt                '<file>\\t<wnid>\\t<bbox...>'
    <dir>/val/images/*.JPEG                      10000 images, the test split here
(`test/` has no labels and is ignored.)

The folder path has `~` and `$VAR` expanded. `load_arrays` says the split
sizes on stderr and warns when they are not 100,000 / 10,000.
`resolution(config)` is the input size the model sees (224, the authors'
upsampling, or the native 64); see `lrr_jax.data.augment`.

Class indices follow the sorted wnids, the order torchvision's `ImageFolder`
assigns, so labels match PyTorch reference code. Decoding the 110000 JPEGs
takes minutes, so the arrays are cached as `.npz` (keyed by the folder's path
and its files' names and sizes).
"""

import concurrent.futures
import hashlib
import os
import sys

import numpy as np
from PIL import Image

from lrr_jax import errors
from lrr_jax.data import embedded, paths

SIZE = 64
# Examples per split of the real dataset (train; val, the test split here).
SPLIT_SIZES = {"train": 100_000, "test": 10_000}
RESOLUTIONS = (224, 64)
# Bump when the cached array layout changes.
_CACHE_VERSION = 1


def _is_jpeg(name: str) -> bool:
    return name.lower().endswith((".jpeg", ".jpg"))


def _index(root: str) -> tuple[list[str], list[str], list[int], list[str], list[int]]:
    """Lists (wnids, train paths, train labels, val paths, val labels) in a fixed order."""
    wnids_path = os.path.join(root, "wnids.txt")
    annotations = os.path.join(root, "val", "val_annotations.txt")
    for required in (wnids_path, annotations, os.path.join(root, "train")):
        if not os.path.exists(required):
            raise errors.ConfigError(
                "tiny_imagenet_dir",
                f"{root} is not a tiny-imagenet-200 folder: {required} is missing",
            )
    with open(wnids_path) as f:
        wnids = sorted({line.strip() for line in f if line.strip()})
    label_of = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        image_dir = os.path.join(root, "train", wnid, "images")
        if not os.path.isdir(image_dir):
            raise errors.ConfigError("tiny_imagenet_dir", f"{image_dir} is missing")
        names = sorted(n for n in os.listdir(image_dir) if _is_jpeg(n))
        train_paths += [os.path.join(image_dir, n) for n in names]
        train_labels += [label_of[wnid]] * len(names)
    val_paths, val_labels = [], []
    with open(annotations) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            name, wnid = fields[0].strip(), fields[1].strip()
            if wnid not in label_of:
                raise errors.ConfigError(
                    "tiny_imagenet_dir", f"{annotations}:{line_no}: {wnid} is not in wnids.txt"
                )
            val_paths.append(os.path.join(root, "val", "images", name))
            val_labels.append(label_of[wnid])
    return wnids, train_paths, train_labels, val_paths, val_labels


def _decode(path: str) -> np.ndarray:
    """Decodes one JPEG to uint8 (64, 64, 3); grayscale/CMYK images become RGB."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), np.uint8)
    except OSError as e:
        raise errors.ConfigError("tiny_imagenet_dir", f"cannot decode {path}: {e}") from e
    if array.shape != (SIZE, SIZE, 3):
        raise errors.ConfigError(
            "tiny_imagenet_dir",
            f"{path} is {array.shape[1]}x{array.shape[0]}, expected {SIZE}x{SIZE}",
        )
    return array


def _decode_all(files: list[str]) -> np.ndarray:
    """Decodes images in a thread pool (PIL releases the GIL while decoding)."""
    out = np.empty((len(files), SIZE, SIZE, 3), np.uint8)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, array in enumerate(pool.map(_decode, files, chunksize=64)):
            out[i] = array
    return out


def _fingerprint(root: str, files: list[str]) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}:{os.path.abspath(root)}".encode())
    for p in files:
        try:
            size = os.path.getsize(p)
        except OSError as e:
            raise errors.ConfigError("tiny_imagenet_dir", f"cannot read {p}: {e}") from e
        h.update(f"{os.path.relpath(p, root)}:{size};".encode())
    return h.hexdigest()[:16]


def resolution(config) -> int:
    """`config.tiny_imagenet_resolution` (default 224) after checking it.

    Raises:
        ConfigError: ('tiny_imagenet_resolution') for a value not in RESOLUTIONS, or 224
            with `augment` off (the upsampling of the train images is part of the augmentation).
    """
    value = config.get("tiny_imagenet_resolution", 224)
    try:
        value = int(value)
    except (TypeError, ValueError):
        value = None
    if value not in RESOLUTIONS:
        raise errors.ConfigError(
            "tiny_imagenet_resolution",
            f"must be 224 (the paper code's upsampling) or 64 (native), got "
            f"{config.get('tiny_imagenet_resolution')!r}")
    if value == 224 and not config.get("augment", True):
        raise errors.ConfigError(
            "tiny_imagenet_resolution",
            "224 upsamples the train images in the on-device augmentation "
            "(RandomResizedCrop 224 + flip), which --config.augment=False turns off; use "
            "--config.tiny_imagenet_resolution=64 without augmentation")
    return value


def load_arrays(config) -> tuple[dict[str, np.ndarray], int]:
    """Reads Tiny ImageNet, from the `.npz` cache when the folder is unchanged.

    Args:
        config: Reads `tiny_imagenet_dir` and `data_dir` (cache location).

    Returns:
        (arrays, num_classes): arrays has 'train_x', 'test_x' (uint8
        (N, 64, 64, 3)) and 'train_y', 'test_y' (int32); test is the val split.

    Raises:
        ConfigError: ('tiny_imagenet_dir') if the folder is unset, missing or malformed.
    """
    resolution(config)  # a bad value fails before minutes of decoding
    root = paths.config_path(config, "tiny_imagenet_dir")
    if not root or not os.path.isdir(root):
        raise errors.ConfigError(
            "tiny_imagenet_dir",
            f"{root!r} is not a directory; set --config.tiny_imagenet_dir to the unpacked "
            "tiny-imagenet-200 folder (http://cs231n.stanford.edu/tiny-imagenet-200.zip)",
        )
    wnids, train_paths, train_labels, val_paths, val_labels = _index(root)
    cache_path = os.path.join(
        embedded.cache_dir(config),
        f"tiny_imagenet-{_fingerprint(root, train_paths + val_paths)}.npz",
    )
    arrays = embedded.load_npz(cache_path)
    if arrays is None:
        arrays = {
            "train_x": _decode_all(train_paths),
            "train_y": np.asarray(train_labels, np.int32),
            "test_x": _decode_all(val_paths),
            "test_y": np.asarray(val_labels, np.int32),
        }
        embedded.save_npz_atomic(cache_path, arrays)
    sizes = {"train": len(arrays["train_y"]), "test": len(arrays["test_y"])}
    print(f"data: tiny_imagenet train {sizes['train']}, test {sizes['test']} (from {root})",
          file=sys.stderr, flush=True)
    if sizes != SPLIT_SIZES:
        print(f"warning: data: tiny_imagenet has {sizes['train']} train / {sizes['test']} "
              f"test examples, not Tiny ImageNet's {SPLIT_SIZES['train']:,} / "
              f"{SPLIT_SIZES['test']:,}: a partial folder? Results are not comparable with "
              "the paper's", file=sys.stderr, flush=True)
    return arrays, len(wnids)
