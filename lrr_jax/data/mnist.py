"""MNIST and Fashion-MNIST: from the four official idx `.gz` files, or through TFDS.

Where the data comes from, in order (`load_arrays(config, name)`):
1. `config.idx_dir` names a folder holding the four official files
   (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
   `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`; Fashion-MNIST
   uses the same names) -> read them, offline, validating the idx format
   strictly (`parse_idx`);
2. TFDS's `mnist` / `fashion_mnist` (3.0.1) is prepared in `config.data_dir`
   as ArrayRecord -> read it;
3. `config.download` -> after the download host answered a plain TCP connect
   (`cifar.probe_download_host`), TFDS's download manager fetches the four
   files (verified against TFDS's registered checksums) and a TensorFlow-free
   builder (same name, version and layout as TFDS's own) prepares them;
4. otherwise `ConfigError('idx_dir', ...)` at once, never touching the network.

Every problem with the files is one `ConfigError('idx_dir', ...)` line saying
what is wrong and how to fix it: a missing folder or file, a file that is not
gzip, a bad magic number (0x00000803 for images, 0x00000801 for labels), images
that are not 28x28, truncated data or trailing bytes, image and label counts
that disagree, a label outside 0..9. Paths have `~` and `$VAR` expanded.

Arrays: `train_x`, `test_x` uint8 (N, 28, 28, 1); `train_y`, `test_y` int32. From
the idx files they are in file order. TFDS stores its examples shuffled and
MNIST has no example id to restore the order, so from TFDS they come in TFDS's
(fixed) stored order; `train_limit` then picks another subset.

`PAPER_STATISTICS['mnist']` = ((0.1307,), (0.3081,)): the MNIST mean/std that
open_lth (`datasets/mnist.py`) and the authors' imp-lrr-lts (`data/cifar10.py`,
`MNIST`) normalize with. Neither normalizes Fashion-MNIST, so it has no entry
(use the data's statistics).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import sys
import urllib.parse
import zlib

import numpy as np

from lrr_jax import errors
from lrr_jax.data import embedded, paths

NAMES = ("mnist", "fashion_mnist")
NUM_CLASSES = 10
IMAGE_SIZE = 28
# The four official files, by the array each becomes.
FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
# idx magic numbers: 0x0000 0x08 (unsigned byte) then the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# Examples per split of the real datasets (both: 60,000 train, 10,000 test).
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
PAPER_STATISTICS = {"mnist": ((0.1307,), (0.3081,))}
# Bump when the cached array layout changes.
_CACHE_VERSION = 1
_GZIP_MAGIC = b"\x1f\x8b"


def _fail(message: str) -> errors.ConfigError:
    return errors.ConfigError("idx_dir", message)


def parse_idx(blob: bytes, magic: int, where: str) -> np.ndarray:
    """Decodes one uncompressed idx file (ubyte data), checking its header strictly.

    Args:
        blob: the file's bytes after gunzip.
        magic: `IMAGES_MAGIC` (3 dimensions, each image 28x28) or `LABELS_MAGIC` (1).
        where: the file's path, for the messages.

    Returns:
        uint8 array with the header's dimensions.

    Raises:
        ConfigError: ('idx_dir') a wrong magic number or image size, or a body
            shorter or longer than the header announces.
    """
    kind = "image (idx3-ubyte)" if magic == IMAGES_MAGIC else "label (idx1-ubyte)"
    fix = "replace it with the official file"
    if len(blob) < 4:
        raise _fail(f"{where} is truncated: {len(blob)} bytes, not even an idx header; {fix}")
    found = int.from_bytes(blob[:4], "big")
    if found != magic:
        raise _fail(f"{where} has magic number 0x{found:08x}, not 0x{magic:08x} of an idx {kind} "
                    f"file: a wrong or damaged file? {fix}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise _fail(f"{where} is truncated inside its {header}-byte header; {fix}")
    dims = tuple(int.from_bytes(blob[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if magic == IMAGES_MAGIC and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise _fail(f"{where} holds {dims[1]}x{dims[2]} images, not 28x28; {fix}")
    size = int(np.prod(dims))
    body = len(blob) - header
    if body < size:
        raise _fail(f"{where} is truncated: {body:,} of the {size:,} data bytes its header "
                    f"announces ({dims[0]:,} {'images' if ndim == 3 else 'labels'}); {fix}")
    if body > size:
        raise _fail(f"{where} has {body - size:,} bytes after the {size:,} its header "
                    f"announces; {fix}")
    return np.frombuffer(blob, np.uint8, count=size, offset=header).reshape(dims)


def read_idx(path: str, magic: int) -> np.ndarray:
    """Reads an idx file, gzip-compressed (`.gz`, as published) or not (TFDS extracts them).

    Raises:
        ConfigError: ('idx_dir') an unreadable or corrupt gzip stream, or a bad idx file.
    """
    try:
        with open(path, "rb") as f:
            blob = f.read()
        if blob[:2] == _GZIP_MAGIC:
            blob = gzip.decompress(blob)
        elif path.endswith(".gz"):
            raise _fail(f"{path} is not a gzip file; expected the official .gz file")
    except (OSError, EOFError, zlib.error) as e:
        raise _fail(f"cannot read {path}: {type(e).__name__}: {e}; replace it with the official "
                    "file") from e
    return parse_idx(blob, magic, path)


def write_idx(path: str, array: np.ndarray) -> str:
    """Writes uint8 `array` as an idx file, gzip-compressed if `path` ends in `.gz`.

    (N, 28, 28) images get magic 0x00000803, (N,) labels 0x00000801: the official
    layout (big-endian 32-bit header, then the bytes). Used by the tests and by
    `scripts/mnist_idx_from_pkl.py`.

    Returns:
        `path`.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"expected uint8 (N,) labels or (N, H, W) images, got {array.dtype} "
                         f"{array.shape}")
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *array.shape))
    blob = header + np.ascontiguousarray(array).tobytes()
    with open(path, "wb") as f:
        # mtime=0: the same arrays give the same bytes.
        f.write(gzip.compress(blob, mtime=0) if str(path).endswith(".gz") else blob)
    return path


def _split(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 28, 28, 1), int32 (N,)) after checking the two files agree."""
    if len(images) != len(labels):
        raise _fail(f"{where}: the image file holds {len(images):,} images but the label file "
                    f"{len(labels):,} labels; the two files must be of the same split and "
                    "dataset")
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise _fail(f"{where}: label {int(labels.max())} is outside 0..{NUM_CLASSES - 1}; "
                    "is it a label file of another dataset?")
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1), labels.astype(np.int32)


def load_idx_dir(folder: str) -> dict[str, np.ndarray]:
    """The four official idx `.gz` files in `folder` as arrays (see the module doc).

    Raises:
        ConfigError: ('idx_dir') for any problem with the folder or its files.
    """
    if not os.path.isdir(folder):
        raise _fail(f"{folder} is not a folder; pass --config.idx_dir=DIR, DIR holding "
                    f"{', '.join(FILES.values())}")
    missing = [name for name in FILES.values() if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise _fail(f"{folder} lacks {', '.join(missing)}; it must hold the four official "
                    f"files {', '.join(FILES.values())}")
    arrays = {}
    for split in ("train", "test"):
        images = read_idx(os.path.join(folder, FILES[f"{split}_x"]), IMAGES_MAGIC)
        labels = read_idx(os.path.join(folder, FILES[f"{split}_y"]), LABELS_MAGIC)
        where = f"{folder} ({FILES[f'{split}_x']}, {FILES[f'{split}_y']})"
        arrays[f"{split}_x"], arrays[f"{split}_y"] = _split(images, labels, where)
    return arrays


# --- TFDS -------------------------------------------------------------------------------------


@functools.cache
def _builder_classes() -> dict:
    """TensorFlow-free subclasses of TFDS's MNIST builders (TFDS imported on first use).

    TFDS's own `_generate_examples` reads the files with `tf.io.gfile` and its
    image feature PNG-encodes arrays with TensorFlow; these read the idx files
    with `read_idx` and encode with PIL. Name, version, features and examples'
    keys are TFDS's, so the prepared files are the stock `<data_dir>/mnist/3.0.1/`.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    class _IdxMixin:
        def __init__(self, *, source_dir: str | None = None, **kwargs):
            """Creates the builder; `source_dir`: a local idx folder to prepare from."""
            self._source_dir = source_dir
            super().__init__(**kwargs)

        @tfds.core.utils.classproperty
        @classmethod
        def _checksums_path(cls):
            # The registered checksums of the stock dataset, so downloads are verified.
            return tfds.core.utils.tfds_path() / "url_checksums" / f"{cls.name}.txt"

        def _split_generators(self, dl_manager):
            if self._source_dir:
                files = {k: os.path.join(self._source_dir, v) for k, v in FILES.items()}
            else:
                urls = {k: urllib.parse.urljoin(self.URL, v) for k, v in FILES.items()}
                files = {k: os.fspath(v) for k, v in dl_manager.download_and_extract(urls).items()}
            return {split: self._generate_examples(files[f"{split}_x"], files[f"{split}_y"])
                    for split in ("train", "test")}

        def _generate_examples(self, images_path, labels_path):
            from PIL import Image

            images, labels = _split(read_idx(images_path, IMAGES_MAGIC),
                                    read_idx(labels_path, LABELS_MAGIC), images_path)
            for index, (image, label) in enumerate(zip(images, labels)):
                buffer = io.BytesIO()
                Image.fromarray(image[:, :, 0]).save(buffer, format="png")
                yield index, {"image": buffer.getvalue(), "label": int(label)}

    class Mnist(_IdxMixin, tfds_mnist.MNIST, skip_registration=True):
        """TFDS `mnist` 3.0.1, prepared without TensorFlow."""

        name = "mnist"

    class FashionMnist(_IdxMixin, tfds_mnist.FashionMNIST, skip_registration=True):
        """TFDS `fashion_mnist` 3.0.1, prepared without TensorFlow."""

        name = "fashion_mnist"

    return {"mnist": Mnist, "fashion_mnist": FashionMnist}


def builder(name: str, data_dir: str | None = None, source_dir: str | None = None):
    """The TensorFlow-free TFDS builder of 'mnist' or 'fashion_mnist'."""
    return _builder_classes()[name](data_dir=data_dir or None, source_dir=source_dir or None)


def prepare(name: str, data_dir: str | None = None, download: bool = False,
            source_dir: str | None = None):
    """Prepares `name` as TFDS ArrayRecord in `data_dir` unless it is already there.

    Args:
        name: 'mnist' or 'fashion_mnist'.
        data_dir: TFDS data dir; None or '' means TFDS's default (`~`, `$VAR` expanded).
        download: whether TFDS may download the files (after the host answered a probe).
        source_dir: a local folder of the four idx files to prepare from instead.

    Returns:
        The prepared builder.

    Raises:
        ConfigError: ('idx_dir') not prepared and neither a source nor `download`;
            ('download') the download host does not answer.
    """
    from tensorflow_datasets import download as tfds_download

    from lrr_jax.data import cifar

    b = builder(name, paths.expand(data_dir) or None, paths.expand(source_dir) or None)
    if b.is_prepared():
        return b
    if not source_dir and not download:
        raise _fail(f"{name} is not prepared in {b.data_dir_root}; put the four official files "
                    f"({', '.join(FILES.values())}) in a folder and pass --config.idx_dir=DIR, "
                    "or pass --config.download=True to let TFDS download them")
    if not source_dir:
        url = urllib.parse.urljoin(b.URL, FILES["train_x"])
        try:
            cifar.probe_download_host(url)
        except errors.ConfigError as e:
            raise errors.ConfigError(
                "download", f"cannot reach the host of {url} within {cifar.PROBE_TIMEOUT_S:g} s, "
                f"so {name} cannot be downloaded from this machine; copy the four idx .gz files "
                "into a folder and pass --config.idx_dir=DIR") from e
    b.download_and_prepare(file_format="array_record",
                           download_config=tfds_download.DownloadConfig(try_download_gcs=False))
    return b


def read(b, cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """A prepared builder's splits as arrays (TFDS's stored order), via an `.npz` cache.

    Raises:
        ConfigError: ('idx_dir') data prepared without random access (tfrecord).
    """
    def no_random_access(e):
        return _fail(f"{b.name} in {b.data_dir} is stored as {b.info.file_format.value}, which "
                     "has no random access without TensorFlow; pass --config.idx_dir=DIR with "
                     "the idx files instead")

    def read_split(source, split):
        n = len(source)
        images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
        labels = np.empty((n,), np.int32)
        for start in range(0, n, 10_000):
            chunk = source.__getitems__(list(range(start, min(n, start + 10_000))))
            for i, example in enumerate(chunk, start):
                images[i] = np.asarray(example["image"]).reshape(IMAGE_SIZE, IMAGE_SIZE, 1)
                labels[i] = example["label"]
        return images, labels

    return embedded.read_prepared(b, cache_dir, _CACHE_VERSION, read_split, no_random_access)


def size_warning(name: str, sizes: dict[str, int]) -> str | None:
    """A one-line warning when the split sizes are not the real dataset's, else None."""
    if all(sizes.get(k) == n for k, n in SPLIT_SIZES.items()):
        return None
    return (f"warning: data: {name} has {sizes.get('train')} train / {sizes.get('test')} test "
            f"examples, not {SPLIT_SIZES['train']:,} / {SPLIT_SIZES['test']:,}: partial or "
            "generated files? Results are not comparable with published ones")


def load_arrays(config, name: str) -> tuple[dict[str, np.ndarray], int]:
    """MNIST or Fashion-MNIST as arrays, from `config.idx_dir` or TFDS (see the module doc).

    Prints one line on stderr with the split sizes and their source, and a
    warning line when they are not 60,000 / 10,000.

    Args:
        config: reads `idx_dir`, `data_dir`, `download` (through `.get`).
        name: 'mnist' or 'fashion_mnist'.

    Returns:
        ({'train_x', 'train_y', 'test_x', 'test_y'}, 10).

    Raises:
        ConfigError: ('idx_dir') bad or missing files, or no data and no download;
            ('download') the download host does not answer.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")
    folder = paths.config_path(config, "idx_dir")
    if folder:
        arrays, source = load_idx_dir(folder), folder
    else:
        b = prepare(name, data_dir=paths.config_path(config, "data_dir") or None,
                    download=bool(config.get("download", False)))
        arrays, source = read(b, cache_dir=embedded.cache_dir(config)), b.data_dir
    sizes = {split: len(arrays[f"{split}_y"]) for split in ("train", "test")}
    print(f"data: {name} train {sizes['train']}, test {sizes['test']} (from {source})",
          file=sys.stderr, flush=True)
    warning = size_warning(name, sizes)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return arrays, NUM_CLASSES
