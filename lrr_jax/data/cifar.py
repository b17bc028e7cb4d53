"""CIFAR-10/100 through TFDS ArrayRecord, without TensorFlow.

TFDS's stock CIFAR builders parse the tarball with `tf.io.gfile` and encode
PNGs with `tf.image`, and `tfds.load` builds a `tf.data` pipeline: all of that
needs TensorFlow. Reading prepared ArrayRecord files through
`builder.as_data_source` does not. So the builders here subclass TFDS's own
`Cifar10`/`Cifar100` (same name, version, features and split layout, hence
the same `<data_dir>/cifar10/3.0.2/` directory that `tfds.data_source('cifar10',
data_dir=...)` reads) and only replace the two TensorFlow-dependent steps:
the tarball is read with python's `tarfile` and images are PNG-encoded with PIL.

Where the data comes from, in order (`load_arrays`):
1. already prepared in `config.data_dir` -> read it;
2. `config.cifar_archive` names a local `cifar-10-binary.tar.gz` /
   `cifar-100-binary.tar.gz` -> prepare from it offline, then read;
3. `config.download` -> let TFDS's download manager fetch the official tarball
   (checksum-verified against TFDS's registered checksums), after a plain
   socket connect to the download host has answered within a few seconds:
   offline, TFDS would retry for minutes and print chained tracebacks, so an
   unreachable host is one `ConfigError('download', ...)` instead
   (`probe_download_host`; `LRR_JAX_DOWNLOAD_PROBE=host:port` overrides the
   host probed, for tests);
4. otherwise raise `ConfigError('dataset', ...)` at once, never touching the
   network.

Paths (`data_dir`, `cifar_archive`) have `~` and `$VAR` expanded (`paths`).
`SPLIT_SIZES` are the real datasets' split sizes; `size_warning` says when a
prepared split (a partial or generated archive) differs from them.

Decoding 60000 PNGs through TFDS takes ~25 s, so the decoded arrays are cached
as an `.npz` keyed by the prepared files' names, sizes and mtimes.
"""

import io
import os
import socket
import sys
import tarfile
import threading
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import cifar as tfds_cifar

from lrr_jax import errors
from lrr_jax.data import embedded, paths

_IMAGE_BYTES = 3 * 32 * 32
# Examples decoded per `__getitems__` call: bounds the list of decoded dicts
# held at once while keeping ArrayRecord's batched reads.
_READ_CHUNK = 5000
# Bump when the cached array layout changes.
_CACHE_VERSION = 1

ARCHIVE_NAMES = {"cifar10": "cifar-10-binary.tar.gz", "cifar100": "cifar-100-binary.tar.gz"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# Examples per split of the real datasets (both CIFARs: 50,000 train, 10,000 test).
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
# Environment variable 'host:port' replacing the download host that is probed.
PROBE_ENV = "LRR_JAX_DOWNLOAD_PROBE"
# Seconds the probe waits for a TCP connection (DNS lookup included).
PROBE_TIMEOUT_S = 3.0


def _encode_png(image: np.ndarray) -> bytes:
    """PNG-encodes an HWC uint8 image with PIL (TFDS would use tf.image.encode_png)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


def read_archive_members(path: str, prefix: str, names: list[str]) -> dict[str, bytes]:
    """Reads the named files under `prefix` from a CIFAR binary tarball.

    The archive is streamed once front to back: seeking backwards in a gzip
    stream would mean decompressing it again.

    Args:
        path: Path of the `.tar.gz`.
        prefix: Folder inside the archive, e.g. 'cifar-10-batches-bin/'.
        names: File names under `prefix` that must all be present.

    Returns:
        Dict from file name to its bytes.

    Raises:
        ConfigError: ('cifar_archive') if the file is not a readable tarball or
            lacks one of `names` (e.g. the python or matlab CIFAR version).
    """
    blobs = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.startswith(prefix):
                    name = member.name[len(prefix) :]
                    if name in names:
                        blobs[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise errors.ConfigError("cifar_archive", f"cannot read {path} as a tarball: {e}") from e
    missing = [prefix + n for n in names if n not in blobs]
    if missing:
        raise errors.ConfigError(
            "cifar_archive",
            f"{path} lacks {', '.join(missing)}; expected the official *binary* CIFAR "
            "tarball (cifar-10-binary.tar.gz or cifar-100-binary.tar.gz), "
            "not the python or matlab version",
        )
    return blobs


class _BinaryTarballMixin:
    """Replaces the TensorFlow-dependent steps of TFDS's CIFAR builders.

    Examples, keys and ids are generated exactly as the stock builder does
    (key = index in file order, id = 'train_00042'), so the prepared data has
    the same content and shuffled order as a TFDS-with-TensorFlow preparation.
    """

    def __init__(self, *, archive: str | None = None, **kwargs):
        """Creates the builder.

        Args:
            archive: Local official binary tarball to prepare from; None means
                download it with TFDS's download manager.
            **kwargs: Passed to `tfds.core.DatasetBuilder` (e.g. data_dir).
        """
        self._archive = archive
        super().__init__(**kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def _checksums_path(cls):
        # TFDS looks for checksums next to the builder's module; point it at
        # the registered ones for the stock dataset so downloads are verified.
        return tfds.core.utils.tfds_path() / "url_checksums" / f"{cls.name}.txt"

    def _split_generators(self, dl_manager):
        """Reads the tarball (local or downloaded) and returns both splits' generators."""
        info = self._cifar_info
        path = self._archive if self._archive else os.fspath(dl_manager.download(info.url))
        names = list(info.train_files) + list(info.test_files) + list(info.label_files)
        blobs = read_archive_members(path, info.prefix, names)
        for label_key, label_file in zip(info.label_keys, info.label_files, strict=True):
            label_names = [n for n in blobs[label_file].decode().split("\n") if n]
            self.info.features[label_key].names = label_names
        return {
            "train": self._generate_examples("train_", [blobs[f] for f in info.train_files]),
            "test": self._generate_examples("test_", [blobs[f] for f in info.test_files]),
        }

    def _generate_examples(self, split_prefix, blobs):
        """Yields (index, example) from the binary records of one split.

        Args:
            split_prefix: 'train_' or 'test_', the stock builder's id prefix.
            blobs: Contents of the split's .bin files, in order.

        Yields:
            (key, example) with 'id', 'image' (PNG bytes) and the label key(s).
        """
        label_keys = self._cifar_info.label_keys
        num_labels = len(label_keys)
        index = 0
        for blob in blobs:
            if len(blob) % (num_labels + _IMAGE_BYTES):
                raise errors.ConfigError(
                    "cifar_archive",
                    f"a {self.name} .bin file has {len(blob)} bytes, not a multiple of "
                    f"{num_labels + _IMAGE_BYTES}",
                )
            records = np.frombuffer(blob, np.uint8).reshape(-1, num_labels + _IMAGE_BYTES)
            for record in records:
                example = {
                    key: int(v) for key, v in zip(label_keys, record[:num_labels], strict=True)
                }
                example["id"] = f"{split_prefix}{index:05d}"
                image = record[num_labels:].reshape(3, 32, 32).transpose(1, 2, 0)
                example["image"] = _encode_png(np.ascontiguousarray(image))
                yield index, example
                index += 1


class Cifar10(_BinaryTarballMixin, tfds_cifar.Cifar10, skip_registration=True):
    """TFDS `cifar10` 3.0.2, prepared from the binary tarball without TensorFlow."""

    # Same name as the stock builder -> same directory; skip_registration
    # avoids clashing with it in TFDS's registry.
    name = "cifar10"


class Cifar100(_BinaryTarballMixin, tfds_cifar.Cifar100, skip_registration=True):
    """TFDS `cifar100` 3.0.2, prepared from the binary tarball without TensorFlow."""

    name = "cifar100"


_BUILDERS = {"cifar10": Cifar10, "cifar100": Cifar100}


def builder(kind: str, data_dir: str | None = None, archive: str | None = None):
    """Returns the TensorFlow-free builder for 'cifar10' or 'cifar100'.

    Args:
        kind: 'cifar10' or 'cifar100'.
        data_dir: TFDS data dir; None or '' means TFDS's default.
        archive: Local binary tarball used if the builder has to prepare.
    """
    return _BUILDERS[kind](data_dir=data_dir or None, archive=archive or None)


def _probe_target(url: str) -> tuple[str, int]:
    """(host, port) to probe before downloading `url`: $LRR_JAX_DOWNLOAD_PROBE or the URL's."""
    override = os.environ.get(PROBE_ENV, "").strip()
    if override:
        host, _, port = override.rpartition(":")
        return host.strip("[]"), int(port)
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def probe_download_host(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fails fast when the host serving `url` cannot be reached.

    One TCP connect (DNS lookup included) in a daemon thread, waited for at
    most `timeout` seconds, so a hanging resolver cannot stall either.

    Raises:
        ConfigError: ('download') naming the host and how to prepare offline.
    """
    host, port = _probe_target(url)
    outcome: list = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except Exception as e:  # noqa: BLE001 - any failure means: not reachable
            outcome.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if outcome and outcome[0] is None:
        return
    reason = f"{type(outcome[0]).__name__}: {outcome[0]}" if outcome else "no answer"
    raise errors.ConfigError(
        "download",
        f"cannot reach {host}:{port} within {timeout:g} s ({reason}), so {url} cannot be "
        "downloaded from this machine; copy the tarball here and pass "
        "--config.cifar_archive=/path/to/it (or run python -m lrr_jax.data.prepare "
        "--archive=...)",
    )


def prepare(
    kind: str, data_dir: str | None = None, archive: str | None = None, download: bool = False
):
    """Prepares CIFAR as ArrayRecord in `data_dir` unless it is already there.

    Args:
        kind: 'cifar10' or 'cifar100'.
        data_dir: TFDS data dir; None or '' means TFDS's default. `~` and
            environment variables are expanded.
        archive: Local official binary tarball (expanded likewise); takes
            precedence over `download`.
        download: Whether TFDS may download the tarball when `archive` is not
            given (after `probe_download_host` answered).

    Returns:
        The prepared builder.

    Raises:
        ConfigError: ('cifar_archive') for a missing or malformed archive;
            ('dataset') when there is neither an archive nor permission to
            download; ('download') when the download host cannot be reached.
    """
    data_dir, archive = paths.expand(data_dir) or None, paths.expand(archive) or None
    b = builder(kind, data_dir, archive)
    if b.is_prepared():
        return b
    if archive and not os.path.isfile(archive):
        raise errors.ConfigError("cifar_archive", f"{archive} does not exist or is not a file")
    if not archive and not download:
        raise errors.ConfigError("dataset", _not_prepared_message(kind, b.data_dir_root))
    if not archive:
        probe_download_host(b._cifar_info.url)
    b.download_and_prepare(
        file_format="array_record",
        # GCS lookups are off by default in TFDS 4.9.10; pinned off so an
        # offline machine never waits on them.
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    return b


def split_sizes(b) -> dict[str, int]:
    """{'train': n, 'test': n} of a prepared builder, from its metadata (no decoding)."""
    return {split: int(b.info.splits[split].num_examples) for split in ("train", "test")}


def size_warning(kind: str, sizes: dict[str, int]) -> str | None:
    """A one-line warning when the split sizes are not the real dataset's, else None."""
    if all(sizes.get(k) == n for k, n in SPLIT_SIZES.items()):
        return None
    return (
        f"warning: data: {kind} has {sizes.get('train')} train / {sizes.get('test')} test "
        f"examples, not {kind}'s {SPLIT_SIZES['train']:,} / {SPLIT_SIZES['test']:,}: a "
        "partial or generated archive? Results are not comparable with the paper's"
    )


def _not_prepared_message(kind: str, data_dir: str) -> str:
    return (
        f"{kind} is not prepared in {data_dir}; run `python -m lrr_jax.data.prepare "
        f"--dataset={kind} --archive=/path/{ARCHIVE_NAMES[kind]} --data_dir={data_dir}` "
        "or set --config.cifar_archive=... or --config.download=True"
    )


def _read_split(source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decodes one split into arrays in the original file order.

    TFDS shuffles examples when writing, so each example is placed at the
    index encoded in its id ('train_00042' -> 42), restoring the tarball's
    order; `train_limit` then means "the first N images of the tarball".
    """
    n = len(source)
    images = np.empty((n, 32, 32, 3), np.uint8)
    labels = np.empty((n,), np.int32)
    seen = np.zeros((n,), bool)
    for start in range(0, n, _READ_CHUNK):
        for example in source.__getitems__(list(range(start, min(n, start + _READ_CHUNK)))):
            ident = example["id"]
            ident = ident.decode() if isinstance(ident, bytes) else str(ident)
            index = int(ident.rsplit("_", 1)[1])
            if not 0 <= index < n or seen[index]:
                raise ValueError(f"{split}: unexpected example id {ident!r} among {n} examples")
            seen[index] = True
            images[index] = example["image"]
            labels[index] = example["label"]
    return images, labels


def read(b, cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """Reads a prepared builder's splits into numpy, via an `.npz` cache.

    Args:
        b: A prepared builder from `builder`/`prepare`.
        cache_dir: Where to keep the decoded arrays; None disables the cache.

    Returns:
        Dict with 'train_x', 'test_x' (uint8 (N,32,32,3)) and 'train_y',
        'test_y' (int32; the fine label for CIFAR-100), in tarball order.

    Raises:
        ConfigError: ('dataset') if the data was prepared in a format without
            random access (e.g. tfrecord by TFDS with TensorFlow).
    """
    def no_random_access(e):
        return errors.ConfigError(
            "dataset",
            f"{b.name} in {b.data_dir} is stored as {b.info.file_format.value}, which has no "
            "random access without TensorFlow; prepare it into another --config.data_dir "
            "(it is written as array_record)")

    return embedded.read_prepared(b, cache_dir, _CACHE_VERSION, _read_split, no_random_access)


def record_order(b, cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """{'train', 'test'}: the record index of each example in tarball order.

    TFDS shuffles the examples when it writes them; the streaming pipeline
    reads record `order[i]` as example i, so it sees the examples in the
    order `read` gives (and the on-device pipeline trains on). Only the ids
    are decoded; the result is cached beside the arrays' cache.
    """
    import tensorflow_datasets as tfds

    stamp = embedded.fingerprint(b.data_dir, _CACHE_VERSION)
    path = os.path.join(cache_dir, f"{b.name}-order-{stamp}.npz") if cache_dir else None
    cached = embedded.load_npz(path) if path else None
    if cached is not None:
        return cached
    out = {}
    for split in ("train", "test"):
        source = b.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
        n = len(source)
        order = np.full(n, -1, np.int64)
        for start in range(0, n, _READ_CHUNK):
            keys = list(range(start, min(n, start + _READ_CHUNK)))
            for record, example in zip(keys, source.__getitems__(keys)):
                ident = example["id"]
                ident = ident.decode() if isinstance(ident, bytes) else str(ident)
                index = int(ident.rsplit("_", 1)[1])
                if not 0 <= index < n or order[index] >= 0:
                    raise ValueError(f"{split}: unexpected example id {ident!r} among {n}")
                order[index] = record
        out[split] = order
    if path:
        embedded.save_npz_atomic(path, out)
    return out


def load_arrays(config, kind: str) -> dict[str, np.ndarray]:
    """Returns CIFAR arrays, preparing the dataset first if allowed (see module doc).

    Prints one line on stderr with the split sizes and where they come from,
    and a warning line when they are not CIFAR's 50,000 / 10,000.

    Args:
        config: Reads `data_dir`, `cifar_archive`, `download`.
        kind: 'cifar10' or 'cifar100'.
    """
    b = prepare(
        kind,
        data_dir=paths.config_path(config, "data_dir") or None,
        archive=paths.config_path(config, "cifar_archive") or None,
        download=bool(config.get("download", False)),
    )
    sizes = split_sizes(b)
    print(f"data: {kind} " + ", ".join(  # 'train 256 of 500 (train_limit)': the first 256
        f"{k} {n}" if not 0 < (limit := int(config.get(f"{k}_limit", 0) or 0)) < n
        else f"{k} {limit} of {n} ({k}_limit)" for k, n in sizes.items())
        + f" (from {b.data_dir})", file=sys.stderr, flush=True)
    warning = size_warning(kind, sizes)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return read(b, cache_dir=embedded.cache_dir(config))
