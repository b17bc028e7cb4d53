"""Small vector datasets that need no download: MNIST-1D and scikit-learn's digits.

Both are generated or shipped locally, so tests and smoke runs work offline.
Also holds the `.npz` cache helpers the other loaders share.
"""

import hashlib
import json
import os
import random
import tempfile
import zipfile

import numpy as np

# Deterministic split of the 1797 digits: 1437 train / 360 test (80/20).
_DIGITS_TRAIN = 1437
_DIGITS_SPLIT_SEED = 0
# Bump when the cached mnist1d array layout changes.
_MNIST1D_CACHE_VERSION = 1


def cache_dir(config) -> str:
    """Directory for generated/decoded array caches: `config.data_dir` or ~/.cache/lrr_jax.

    `~` and environment variables in `data_dir` are expanded (`paths.expand`).
    """
    from lrr_jax.data import paths

    return paths.config_path(config, "data_dir") or os.path.join(
        os.path.expanduser("~"), ".cache", "lrr_jax")


def load_npz(path: str) -> dict[str, np.ndarray] | None:
    """Loads every array of an `.npz` cache, or None if it is absent or unreadable.

    An unreadable cache (e.g. from a different numpy) is treated as a miss and
    rebuilt rather than failing the run.
    """
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes an uncompressed `.npz` via a temp file + rename.

    Concurrent runs or a crash mid-write can then never leave a truncated
    cache that a later run would trust.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def fingerprint(version_dir: str, version: int) -> str:
    """Hashes a prepared TFDS folder's file names, sizes and mtimes (and the reader's cache
    `version`): it changes when the data is prepared again."""
    h = hashlib.sha256(f"v{version}:{os.path.abspath(version_dir)}".encode())
    for entry in sorted(os.scandir(version_dir), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def read_prepared(b, cache_dir: str | None, version: int, read_split, no_random_access):
    """A prepared TFDS builder's train and test splits as arrays, via an `.npz` cache.

    `read_split(source, split) -> (x, y)` decodes one split's random-access data
    source; `no_random_access(error)` is the ConfigError for data prepared in a
    format without random access (tfrecord). The cache is named by `fingerprint`.
    """
    cache_path = None
    if cache_dir:
        cache_path = os.path.join(cache_dir, f"{b.name}-{fingerprint(b.data_dir, version)}.npz")
        cached = load_npz(cache_path)
        if cached is not None:
            return cached
    try:
        sources = {split: b.as_data_source(split) for split in ("train", "test")}
    except NotImplementedError as e:
        raise no_random_access(e) from e
    arrays = {}
    for split, source in sources.items():
        arrays[f"{split}_x"], arrays[f"{split}_y"] = read_split(source, split)
    if cache_path:
        save_npz_atomic(cache_path, arrays)
    return arrays


def _mnist1d_generate() -> dict[str, np.ndarray]:
    """Runs the reference MNIST-1D generator (4000 train / 1000 test, 40 features)."""
    from mnist1d import data as mnist1d_data

    # make_dataset seeds python's and numpy's global RNGs; restore them so
    # loading data has no side effect on the caller's randomness.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "train_x": np.asarray(d["x"], np.float32),
        "train_y": np.asarray(d["y"], np.int32),
        "test_x": np.asarray(d["x_test"], np.float32),
        "test_y": np.asarray(d["y_test"], np.int32),
    }


def load_mnist1d(config) -> dict[str, np.ndarray]:
    """MNIST-1D with the package's default arguments, cached as `.npz`.

    Args:
        config: Reads `data_dir` (cache location).

    Returns:
        Dict with float32 'train_x' (4000, 40), 'test_x' (1000, 40) and int32 labels.
    """
    from mnist1d import data as mnist1d_data

    # The cache key covers the generator's arguments so a package update that
    # changes them cannot serve stale data.
    args = mnist1d_data.get_dataset_args(as_dict=True)
    key = json.dumps({"v": _MNIST1D_CACHE_VERSION, "args": args}, sort_keys=True, default=str)
    path = os.path.join(
        cache_dir(config), f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    )
    arrays = load_npz(path)
    if arrays is None:
        arrays = _mnist1d_generate()
        save_npz_atomic(path, arrays)
    return arrays


def load_digits(config) -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits as 64-d vectors, split 1437/360 with a fixed permutation.

    Args:
        config: Unused; kept for a uniform loader signature.

    Returns:
        Dict with float32 'train_x' (1437, 64), 'test_x' (360, 64) (pixel
        values 0..16) and int32 labels.
    """
    del config
    from sklearn import datasets as sk_datasets

    digits = sk_datasets.load_digits()
    x = np.asarray(digits.data, np.float32)
    y = np.asarray(digits.target, np.int32)
    perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(y))
    train, test = perm[:_DIGITS_TRAIN], perm[_DIGITS_TRAIN:]
    return {"train_x": x[train], "train_y": y[train], "test_x": x[test], "test_y": y[test]}
