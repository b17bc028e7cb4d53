"""Synthetic CIFAR tarballs in the official binary layout, for tests and offline demos.

`write_cifar_archive` writes a `.tar.gz` that is byte-for-byte laid out like
`cifar-10-binary.tar.gz` / `cifar-100-binary.tar.gz` from
https://www.cs.toronto.edu/~kriz/cifar.html, so it exercises exactly the code
path a real download takes (`lrr_jax.data.cifar` builder -> ArrayRecord ->
`data.load`). The images are generated, not real: every class is an oriented
sinusoidal grating in a class colour, and each image jitters colour,
orientation, frequency, phase and contrast and adds pixel noise. A small
network learns it well above chance; a fixed fraction of images is rendered
from a random other class's pattern so accuracy cannot reach 100%.
"""

import gzip
import io
import os
import tarfile
import tempfile

import numpy as np

_SIZE = 32
_IMAGE_BYTES = 3 * _SIZE * _SIZE

CIFAR10_LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# Fraction of images drawn from a random class's pattern while keeping their
# label: an irreducible error floor, so "learnable" never means "trivial".
_CONFUSED_FRACTION = 0.1
# Images are generated in chunks so a CIFAR-sized archive never needs
# 50000 float images in memory at once.
_CHUNK = 5000


def _class_params(rng: np.random.Generator, num_classes: int) -> dict:
    """Draws one colour, orientation and spatial frequency per class."""
    return {
        "colour": rng.uniform(0.15, 0.85, size=(num_classes, 3)),
        "angle": rng.uniform(0.0, np.pi, size=num_classes),
        # Cycles per image width; kept low so the pattern is smooth at 32x32.
        "freq": rng.uniform(1.0, 5.0, size=num_classes),
    }


def _render(rng: np.random.Generator, params: dict, labels: np.ndarray) -> np.ndarray:
    """Renders images for `labels` as uint8 (N, 3, 32, 32), the binary file's CHW order."""
    num_classes = params["colour"].shape[0]
    out = np.empty((len(labels), 3, _SIZE, _SIZE), np.uint8)
    coords = (np.arange(_SIZE, dtype=np.float64) + 0.5) / _SIZE
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    for start in range(0, len(labels), _CHUNK):
        y = labels[start : start + _CHUNK]
        n = len(y)
        confused = rng.random(n) < _CONFUSED_FRACTION
        source = np.where(confused, rng.integers(0, num_classes, n), y)
        colour = params["colour"][source] + rng.normal(0.0, 0.12, size=(n, 3))
        angle = params["angle"][source] + rng.normal(0.0, 0.15, size=n)
        freq = params["freq"][source] * np.exp(rng.normal(0.0, 0.1, size=n))
        phase = rng.uniform(0.0, 2 * np.pi, size=n)
        contrast = rng.uniform(0.2, 0.5, size=n)
        proj = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
        wave = np.sin(2 * np.pi * freq[:, None, None] * proj + phase[:, None, None])
        img = colour[:, :, None, None] * (1.0 + contrast[:, None, None, None] * wave[:, None])
        img += rng.normal(0.0, 0.08, size=img.shape)
        out[start : start + n] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out


def _records(labels: list[np.ndarray], images: np.ndarray) -> bytes:
    """Packs label bytes followed by the 3072 CHW image bytes, one record per image."""
    cols = [lab.astype(np.uint8)[:, None] for lab in labels]
    cols.append(images.reshape(len(images), _IMAGE_BYTES))
    return np.concatenate(cols, axis=1).tobytes()


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """Labels with class counts differing by at most one, in random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.uint8)


def _add(tar: tarfile.TarFile, name: str, payload: bytes | None) -> None:
    """Adds a file (or a directory when payload is None) with fixed metadata.

    Fixed mtime/owner keep the archive byte-for-byte deterministic.
    """
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if payload is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.mode = 0o644
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def _members(kind: str, num_train: int, num_test: int, seed: int) -> list[tuple[str, bytes | None]]:
    """Returns the archive's (name, payload) entries in the official order."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        params = _class_params(rng, 10)
        train_y = _balanced_labels(rng, num_train, 10)
        test_y = _balanced_labels(rng, num_test, 10)
        train_x = _render(rng, params, train_y)
        test_x = _render(rng, params, test_y)
        prefix = "cifar-10-batches-bin/"
        members = [(prefix, None)]
        meta = "".join(f"{name}\n" for name in CIFAR10_LABEL_NAMES) + "\n"
        members.append((prefix + "batches.meta.txt", meta.encode()))
        # The official training set is five equal batch files.
        bounds = np.linspace(0, num_train, 6).astype(int)
        for i in range(5):
            lo, hi = bounds[i], bounds[i + 1]
            payload = _records([train_y[lo:hi]], train_x[lo:hi])
            members.append((f"{prefix}data_batch_{i + 1}.bin", payload))
        members.append((prefix + "test_batch.bin", _records([test_y], test_x)))
        return members
    if kind == "cifar100":
        params = _class_params(rng, 100)
        train_y = _balanced_labels(rng, num_train, 100)
        test_y = _balanced_labels(rng, num_test, 100)
        train_x = _render(rng, params, train_y)
        test_x = _render(rng, params, test_y)
        prefix = "cifar-100-binary/"
        coarse_names = "".join(f"superclass_{i:02d}\n" for i in range(20))
        fine_names = "".join(f"class_{i:03d}\n" for i in range(100))
        # Records are (coarse, fine, image); five fine classes per superclass.
        return [
            (prefix, None),
            (prefix + "coarse_label_names.txt", coarse_names.encode()),
            (prefix + "fine_label_names.txt", fine_names.encode()),
            (prefix + "train.bin", _records([train_y // 5, train_y], train_x)),
            (prefix + "test.bin", _records([test_y // 5, test_y], test_x)),
        ]
    raise ValueError(f"kind must be 'cifar10' or 'cifar100', got {kind!r}")


def write_cifar_archive(
    path: str | os.PathLike,
    kind: str = "cifar10",
    num_train: int = 50000,
    num_test: int = 10000,
    seed: int = 0,
) -> str:
    """Writes a synthetic CIFAR tarball in the official binary layout.

    The file is written to a temporary name and renamed, so a reader never
    sees a half-written archive; the same arguments give identical bytes.

    Args:
        path: Destination `.tar.gz` file.
        kind: 'cifar10' (`cifar-10-batches-bin/data_batch_{1..5}.bin`,
            `test_batch.bin`, `batches.meta.txt`) or 'cifar100'
            (`cifar-100-binary/train.bin`, `test.bin`, label-name files).
        num_train: Number of training images.
        num_test: Number of test images.
        seed: Seed for class patterns, labels and per-image noise.

    Returns:
        `path` as a string.
    """
    path = os.fspath(path)
    members = _members(kind, num_train, num_test, seed)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as raw:
            # gzip's header embeds a timestamp and file name unless pinned.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    for name, payload in members:
                        _add(tar, name, payload)
        # mkstemp creates 0600 files; give the archive ordinary permissions.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_cifar_archive(path: str | os.PathLike, kind: str = "cifar10") -> dict[str, np.ndarray]:
    """Reads a binary CIFAR tarball straight into arrays, independent of TFDS.

    Used by tests as the ground truth that the TFDS round trip must reproduce.

    Args:
        path: A `cifar-10-binary.tar.gz` or `cifar-100-binary.tar.gz` (real or synthetic).
        kind: 'cifar10' or 'cifar100'.

    Returns:
        Dict with 'train_x', 'test_x' (uint8 NHWC) and 'train_y', 'test_y'
        (int32; the fine label for CIFAR-100), in file order.
    """
    if kind == "cifar10":
        prefix = "cifar-10-batches-bin/"
        files = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
        num_labels = 1
    elif kind == "cifar100":
        prefix = "cifar-100-binary/"
        files = {"train": ["train.bin"], "test": ["test.bin"]}
        num_labels = 2
    else:
        raise ValueError(f"kind must be 'cifar10' or 'cifar100', got {kind!r}")
    blobs = {}
    with tarfile.open(os.fspath(path), "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.startswith(prefix):
                blobs[member.name[len(prefix) :]] = tar.extractfile(member).read()
    out = {}
    for split, names in files.items():
        rec = np.concatenate(
            [
                np.frombuffer(blobs[n], np.uint8).reshape(-1, num_labels + _IMAGE_BYTES)
                for n in names
            ]
        )
        out[f"{split}_y"] = rec[:, num_labels - 1].astype(np.int32)
        out[f"{split}_x"] = rec[:, num_labels:].reshape(-1, 3, _SIZE, _SIZE).transpose(0, 2, 3, 1)
    return out
