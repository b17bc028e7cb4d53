"""A generated ImageNet in the official ILSVRC2012 tar layout, for tests, demos and the bench.

`write_imagenet_tars(manual_dir)` writes `ILSVRC2012_img_train.tar` (one
`<wnid>.tar` per class holding `<wnid>_<n>.JPEG` files) and
`ILSVRC2012_img_val.tar` (`ILSVRC2012_val_<8 digits>.JPEG`), as image-net.org
ships them, so `python -m lrr_jax.data.prepare --dataset=imagenet2012
--manual_dir=...` exercises the real preparation path. TFDS labels the
validation images by zipping their sorted names with its own list of the
50,000 real labels, so the classes here are the wnids of the first
`num_val` real validation labels: every validation image's label is a class
of the training set.

The images are drawn, not photographs: each class is an oriented grating in
a class colour (as `synthetic_cifar`), at varied sizes and aspect ratios.
Like the real set, a few are not plain RGB JPEGs: one greyscale JPEG in each
split, one CMYK JPEG and one PNG stored under a `.JPEG` name in the training
set.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile

import numpy as np
from PIL import Image

from lrr_jax.data import imagenet


def _image(rng: np.random.Generator, colour, angle: float, freq: float, size) -> Image.Image:
    width, height = size
    yy, xx = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width,
                         indexing="ij")
    proj = np.cos(angle) * xx + np.sin(angle) * yy
    wave = np.sin(2 * np.pi * freq * proj + rng.uniform(0, 2 * np.pi))
    img = np.asarray(colour)[None, None, :] * (1.0 + 0.4 * wave[..., None])
    img = img + rng.normal(0.0, 0.06, size=img.shape)
    return Image.fromarray(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))


def _encode(image: Image.Image, kind: str, quality: int) -> bytes:
    out = io.BytesIO()
    if kind == "grey":
        image.convert("L").save(out, format="JPEG", quality=quality)
    elif kind == "cmyk":
        image.convert("CMYK").save(out, format="JPEG", quality=quality)
    elif kind == "png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644
    tar.addfile(info, io.BytesIO(payload))


def _write_tar(path: str, members) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".tar")
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w",
                                                  format=tarfile.GNU_FORMAT) as tar:
        for name, payload in members:
            _add(tar, name, payload)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def classes_for(num_val: int) -> list[str]:
    """The wnids that label the first `num_val` validation images, in first-seen order."""
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, num_val + 1)]
    labels = imagenet.validation_labels(names)
    return list(dict.fromkeys(labels[n] for n in sorted(names)))


def write_imagenet_tars(manual_dir: str | os.PathLike, *, num_val: int = 12,
                        train_per_class: int = 8, sizes=((60, 500), (50, 400)),
                        fixed_size: tuple[int, int] | None = None, quality: int = 90,
                        seed: int = 0) -> dict:
    """Writes the two official tars into `manual_dir`; returns what was written.

    Args:
        manual_dir: Folder for `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar`.
        num_val: Validation images (their labels decide the classes: `classes_for`).
        train_per_class: Training images per class.
        sizes: ((min, max) width, (min, max) height) of the random image sizes.
        fixed_size: (width, height) of every image instead (the bench: 500x375).
        quality: JPEG quality.
        seed: Seed of the class patterns, sizes and noise.

    Returns:
        {'classes': wnids, 'train': n, 'validation': n, 'special': {file name: kind}}.
    """
    manual_dir = os.fspath(manual_dir)
    os.makedirs(manual_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = classes_for(num_val)
    style = {c: (rng.uniform(0.15, 0.85, 3), rng.uniform(0, np.pi), rng.uniform(1.5, 6.0))
             for c in classes}

    def draw(wnid):
        size = fixed_size or (int(rng.integers(*sizes[0], endpoint=True)),
                              int(rng.integers(*sizes[1], endpoint=True)))
        colour, angle, freq = style[wnid]
        return _image(rng, colour + rng.normal(0, 0.05, 3), angle + rng.normal(0, 0.1),
                      freq, size)

    special = {}
    kinds = ["grey", "cmyk", "png"]  # the first class's first images
    class_tars = []
    for ci, wnid in enumerate(classes):
        members = []
        for i in range(train_per_class):
            name = f"{wnid}_{i + 1}.JPEG"
            kind = kinds[i] if ci == 0 and i < len(kinds) and not fixed_size else "rgb"
            if kind != "rgb":
                special[name] = kind
            members.append((name, _encode(draw(wnid), kind, quality)))
        blob = io.BytesIO()
        with tarfile.open(fileobj=blob, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, payload in members:
                _add(tar, name, payload)
        class_tars.append((f"{wnid}.tar", blob.getvalue()))
    _write_tar(os.path.join(manual_dir, imagenet.TRAIN_TAR), class_tars)

    val_names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, num_val + 1)]
    labels = imagenet.validation_labels(val_names)
    val = []
    for i, name in enumerate(val_names):
        kind = "grey" if i == 0 and not fixed_size else "rgb"
        if kind != "rgb":
            special[name] = kind
        val.append((name, _encode(draw(labels[name]), kind, quality)))
    _write_tar(os.path.join(manual_dir, imagenet.VAL_TAR), val)
    return {"classes": classes, "train": len(classes) * train_per_class,
            "validation": num_val, "special": special}
