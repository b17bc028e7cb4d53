"""MNIST / Fashion-MNIST from generated idx files: the strict reader, its errors, TFDS paths."""

import gzip
import os
import socket
import time

import ml_collections
import numpy as np
import pytest

from lrr_jax import errors
from lrr_jax.data import cifar, mnist


def _config(**kwargs) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(kwargs)


def write_folder(folder, n_train=30, n_test=12, seed=0) -> dict[str, np.ndarray]:
    """The four official idx .gz files of random images and labels; returns the arrays."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {"train_x": rng.integers(0, 256, (n_train, 28, 28), np.uint8),
             "train_y": rng.integers(0, 10, n_train).astype(np.uint8),
             "test_x": rng.integers(0, 256, (n_test, 28, 28), np.uint8),
             "test_y": rng.integers(0, 10, n_test).astype(np.uint8)}
    for key, name in mnist.FILES.items():
        mnist.write_idx(os.path.join(folder, name), truth[key])
    return truth


def _check(arrays, truth):
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        assert x.dtype == np.uint8 and x.shape == (len(truth[f"{split}_y"]), 28, 28, 1)
        assert y.dtype == np.int32
        np.testing.assert_array_equal(x[..., 0], truth[f"{split}_x"])
        np.testing.assert_array_equal(y, truth[f"{split}_y"])


def test_idx_folder_round_trip_with_expanded_path(tmp_path, monkeypatch, capsys):
    truth = write_folder(tmp_path / "idx")
    # The official header: magic 0x00000803, then N, 28, 28 as big-endian 32-bit integers.
    with gzip.open(tmp_path / "idx" / "train-images-idx3-ubyte.gz", "rb") as f:
        assert f.read(16) == bytes.fromhex("00000803" "0000001e" "0000001c" "0000001c")
    monkeypatch.setenv("LRR_TEST_IDX", str(tmp_path))
    arrays, classes = mnist.load_arrays(_config(idx_dir="$LRR_TEST_IDX/idx"), "mnist")
    assert classes == 10
    _check(arrays, truth)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"data: mnist train 30, test 12 (from {tmp_path / 'idx'})"
    assert err[1].startswith("warning: data: mnist has 30 train / 12 test examples, not 60,000")
    # Fashion-MNIST reads the same file names.
    arrays, _ = mnist.load_arrays(_config(idx_dir=str(tmp_path / "idx")), "fashion_mnist")
    _check(arrays, truth)
    assert mnist.PAPER_STATISTICS == {"mnist": ((0.1307,), (0.3081,))}


def _rewrite(path, blob: bytes, compress=True):
    with open(path, "wb") as f:
        f.write(gzip.compress(blob) if compress else blob)


def _header(*values) -> bytes:
    return b"".join(int(v).to_bytes(4, "big") for v in values)


IMAGES, LABELS = mnist.FILES["train_x"], mnist.FILES["train_y"]


@pytest.mark.parametrize("case,expected", [
    ("no_folder", "is not a folder"),
    ("missing_files", f"lacks {LABELS}, {mnist.FILES['test_x']}"),
    ("labels_as_images", "magic number 0x00000801, not 0x00000803"),
    ("images_as_labels", "magic number 0x00000803, not 0x00000801"),
    ("not_gzip", "is not a gzip file"),
    ("corrupt_gzip", "cannot read"),
    ("truncated_header", "truncated inside its 16-byte header"),
    ("truncated_data", "truncated: 1,567 of the 23,520 data bytes"),
    ("trailing_bytes", "has 5 bytes after the 23,520"),
    ("not_28x28", "holds 32x32 images, not 28x28"),
    ("counts_disagree", "holds 30 images but the label file 29 labels"),
    ("label_out_of_range", "label 10 is outside 0..9"),
])
def test_each_bad_folder_is_one_config_error_line(tmp_path, case, expected):
    folder = tmp_path / "idx"
    truth = write_folder(folder)
    images, labels = folder / IMAGES, folder / LABELS
    image_blob = gzip.decompress(images.read_bytes())
    if case == "no_folder":
        folder = tmp_path / "nowhere"
    elif case == "missing_files":
        os.remove(labels)
        os.remove(folder / mnist.FILES["test_x"])
    elif case == "labels_as_images":
        images.write_bytes(labels.read_bytes())
    elif case == "images_as_labels":
        labels.write_bytes(images.read_bytes())
    elif case == "not_gzip":
        _rewrite(images, image_blob, compress=False)
    elif case == "corrupt_gzip":
        images.write_bytes(images.read_bytes()[:200])  # the stream ends early
    elif case == "truncated_header":
        _rewrite(images, image_blob[:10])
    elif case == "truncated_data":
        _rewrite(images, image_blob[:16 + 2 * 784 - 1])
    elif case == "trailing_bytes":
        _rewrite(images, image_blob + b"\0" * 5)
    elif case == "not_28x28":
        _rewrite(images, _header(0x803, 30, 32, 32) + bytes(30 * 32 * 32))
    elif case == "counts_disagree":
        _rewrite(labels, _header(0x801, 29) + truth["train_y"][:29].tobytes())
    elif case == "label_out_of_range":
        bad = truth["train_y"].copy()
        bad[3] = 10
        mnist.write_idx(str(labels), bad)
    with pytest.raises(errors.ConfigError) as info:
        mnist.load_arrays(_config(idx_dir=str(folder)), "mnist")
    assert info.value.key == "idx_dir"
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message


def test_no_idx_dir_and_no_download_fails_at_once_offline(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be touched without download=True")

    monkeypatch.setattr(socket, "create_connection", no_network)
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    start = time.monotonic()
    with pytest.raises(errors.ConfigError) as info:
        mnist.load_arrays(_config(data_dir=str(data_dir)), "mnist")
    assert time.monotonic() - start < 30
    assert info.value.key == "idx_dir"
    assert "--config.idx_dir=DIR" in str(info.value) and "--config.download=True" in str(
        info.value)
    assert not (data_dir / "mnist" / "3.0.1").exists()


def test_download_offline_fails_fast(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(cifar.PROBE_ENV, f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(errors.ConfigError) as info:
        mnist.load_arrays(_config(data_dir=str(tmp_path / "tfds"), download=True),
                          "fashion_mnist")
    assert time.monotonic() - start < 30
    assert info.value.key == "download" and "--config.idx_dir=DIR" in str(info.value)
    assert "fashion-mnist" in str(info.value)  # TFDS's Fashion-MNIST host


def _pairs(x, y):
    return sorted((bytes(np.asarray(a).reshape(-1)), int(b)) for a, b in zip(x, y))


def test_tfds_download_branch_prepares_then_reads_offline(tmp_path, monkeypatch):
    """download=True goes through TFDS's download manager (patched: no network) into the
    stock layout, which later runs (and TFDS's own reader) read without the files."""
    import tensorflow_datasets as tfds

    truth = write_folder(tmp_path / "idx", n_train=25, n_test=10, seed=3)
    asked = []

    def fake_download_and_extract(self, urls):
        asked.extend(sorted(urls.values()))
        return {k: str(tmp_path / "idx" / mnist.FILES[k]) for k in urls}

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        fake_download_and_extract)
    server = socket.create_server(("127.0.0.1", 0))  # the probe's host answers
    monkeypatch.setenv(cifar.PROBE_ENV, f"127.0.0.1:{server.getsockname()[1]}")
    data_dir = str(tmp_path / "tfds")
    with server:
        arrays, _ = mnist.load_arrays(_config(data_dir=data_dir, download=True), "mnist")
    assert asked == sorted(f"https://storage.googleapis.com/cvdf-datasets/mnist/{name}"
                           for name in mnist.FILES.values())
    for split in ("train", "test"):  # TFDS stores its examples shuffled: compare as sets
        assert arrays[f"{split}_x"].shape == (len(truth[f"{split}_y"]), 28, 28, 1)
        assert _pairs(arrays[f"{split}_x"], arrays[f"{split}_y"]) == _pairs(
            truth[f"{split}_x"], truth[f"{split}_y"])

    # Prepared: read again without the files and without the network (the array cache off).
    monkeypatch.delenv(cifar.PROBE_ENV)
    for name in mnist.FILES.values():
        os.remove(tmp_path / "idx" / name)
    again = mnist.read(mnist.prepare("mnist", data_dir=data_dir), cache_dir=None)
    for key in arrays:
        np.testing.assert_array_equal(again[key], arrays[key])
    source = tfds.data_source("mnist", data_dir=data_dir, split="test")
    assert len(source) == 10
    np.testing.assert_array_equal(np.asarray(source[0]["image"]), again["test_x"][0])


def test_idx_from_pkl_script_rebuilds_bytes_exactly(tmp_path):
    import pickle
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
    import mnist_idx_from_pkl as script

    rng = np.random.default_rng(1)
    sizes = {"train": 5, "validation": 3, "test": 4}
    parts = [(rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n))
             for n in sizes.values()]
    # The classic pickle stores byte / 256 as float32 (N, 784).
    pkl = tmp_path / "mnist.pkl.gz"
    with gzip.open(pkl, "wb") as f:
        pickle.dump(tuple((x.reshape(len(x), -1).astype(np.float32) / 256, y) for x, y in parts),
                    f)
    script.rebuild(str(pkl), str(tmp_path / "idx"), sizes)
    back = mnist.load_idx_dir(str(tmp_path / "idx"))
    np.testing.assert_array_equal(back["train_x"][..., 0],
                                  np.concatenate([parts[0][0], parts[1][0]]))
    np.testing.assert_array_equal(back["train_y"], np.concatenate([parts[0][1], parts[1][1]]))
    np.testing.assert_array_equal(back["test_x"][..., 0], parts[2][0])
    np.testing.assert_array_equal(back["test_y"], parts[2][1])
    # byte / 255 (another scaling) is refused, not silently rounded.
    with gzip.open(pkl, "wb") as f:
        pickle.dump(tuple((x.reshape(len(x), -1).astype(np.float32) / 255, y) for x, y in parts),
                    f)
    with pytest.raises(SystemExit, match="not multiples of 1/256"):
        script.rebuild(str(pkl), str(tmp_path / "idx2"), sizes)


def test_mnist_lenet_config_is_open_lths_recipe(tmp_path):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from configs import mnist_lenet
    from lrr_jax import config_base, models, replicas, validation

    base, config = config_base.get_base_config(), mnist_lenet.get_config()
    assert set(config) == set(base)  # no key of its own (idx_dir comes from the base)
    changed = {k for k in config if config[k] != base[k]}
    assert changed == {"methods", "dataset", "model", "levels", "epochs_per_level",
                       "warmup_epochs", "batch_size", "lr_min", "momentum", "weight_decay"}
    # open_lth's mnist_lenet_300_100 recipe: SGD 0.1 constant, batch 128, 40 epochs, no
    # momentum or weight decay, 20% global pruning; IMP, WR and LRR together.
    assert (config.lr, config.lr_min, config.batch_size, config.epochs_per_level) == (
        0.1, 0.1, 128, 40)
    assert (config.momentum, config.weight_decay, config.prune_fraction, config.pruning) == (
        0.0, 0.0, 0.2, "global")
    assert replicas.methods_of(config) == ["imp", "wr", "lrr"]
    validation.validate(config)
    model = models.create(config, mnist.NUM_CLASSES)
    truth = write_folder(tmp_path / "idx", n_train=4, n_test=2)
    config.idx_dir = str(tmp_path / "idx")
    arrays, classes = mnist.load_arrays(config, config.dataset)
    _check(arrays, truth)
    import jax

    variables = model.init(jax.random.PRNGKey(0), arrays["train_x"][:1].astype("float32"),
                           train=False)
    assert sum(v.size for k, v in jax.tree_util.tree_flatten_with_path(variables)[0]
               if k[-1].key == "kernel") == 266_200


def _digit_images(n, seed):
    """Learnable 28x28 'digits': class c lights the c-th horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 2 * c + 4:2 * c + 7, 4:24] = 220
    return x, y


def test_lenet_campaign_runs_offline_from_an_idx_folder(tmp_path):
    """configs/mnist_lenet.py through the entry point on generated idx files: IMP, WR and
    LRR, two short levels, learning the bands."""
    import subprocess
    import sys

    from lrr_jax import schema

    folder = tmp_path / "idx"
    os.makedirs(folder)
    train_x, train_y = _digit_images(600, 0)
    test_x, test_y = _digit_images(200, 1)
    for key, array in (("train_x", train_x), ("train_y", train_y), ("test_x", test_x),
                       ("test_y", test_y)):
        mnist.write_idx(os.path.join(folder, mnist.FILES[key]), array)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", "--config=configs/mnist_lenet.py",
         f"--workdir={tmp_path / 'w'}", f"--config.idx_dir={folder}", "--config.levels=2",
         "--config.epochs_per_level=2", "--config.batch_size=60", "--config.progress=False",
         "--config.tensorboard=False"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"data: mnist train 600, test 200 (from {folder})" in done.stderr
    for method in ("imp", "wr", "lrr"):
        rows = schema.read_csv(str(tmp_path / "w" / method / "results.csv"))
        assert [r["level"] for r in rows] == [0, 1]
        assert rows[1]["density"] == pytest.approx(0.8, abs=1e-3)
        assert rows[0]["test_acc"] > 0.5  # ten bands, learned: far above chance (0.1)
