"""Tests for lrr_jax.data on tiny data: loaders, the TFDS CIFAR round trip, augmentation."""

import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import tarfile
import time

import jax
import ml_collections
import numpy as np
import pytest
import xla_env
from PIL import Image

from lrr_jax import data, errors
from lrr_jax.data import augment, cifar, paths, synthetic_cifar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**kwargs) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(kwargs)


# --- embedded vector datasets -------------------------------------------------


def test_mnist1d_shapes_cache_and_determinism(tmp_path):
    np_state, py_state = np.random.get_state(), random.getstate()
    ds = data.load(_config(dataset="mnist1d", data_dir=str(tmp_path)))
    # The reference generator seeds global RNGs; the loader must not leak that.
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state
    assert ds.train_x.shape == (4000, 40) and ds.test_x.shape == (1000, 40)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    assert ds.mean.shape == (40,) and ds.std.shape == (40,) and ds.mean.dtype == np.float32
    assert ds.num_classes == 10 and not ds.is_image and ds.name == "mnist1d"
    assert set(np.unique(ds.train_y)) == set(range(10))
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    again = data.load(_config(dataset="mnist1d", data_dir=str(tmp_path)))
    np.testing.assert_array_equal(ds.train_x, again.train_x)
    np.testing.assert_array_equal(ds.test_y, again.test_y)
    np.testing.assert_allclose(ds.mean, ds.train_x.mean(0), atol=1e-5)


def test_digits_split_and_statistics():
    ds = data.load(_config(dataset="digits"))
    assert ds.train_x.shape == (1437, 64) and ds.test_x.shape == (360, 64)
    assert ds.train_x.dtype == np.float32 and ds.test_y.dtype == np.int32
    assert ds.num_classes == 10
    # Constant (always blank) pixels get std 1, never 0.
    assert np.all(ds.std > 0) and np.any(ds.std == 1.0)
    np.testing.assert_allclose(ds.mean, ds.train_x.mean(0), rtol=1e-5)
    again = data.load(_config(dataset="digits"))
    np.testing.assert_array_equal(ds.train_x, again.train_x)
    np.testing.assert_array_equal(ds.test_y, again.test_y)


def test_limits_take_first_examples_and_keep_full_statistics():
    full = data.load(_config(dataset="digits"))
    small = data.load(_config(dataset="digits", train_limit=100, test_limit=7))
    assert small.train_x.shape == (100, 64) and small.test_y.shape == (7,)
    np.testing.assert_array_equal(small.train_x, full.train_x[:100])
    np.testing.assert_array_equal(small.mean, full.mean)
    with pytest.raises(errors.ConfigError) as e:
        data.load(_config(dataset="digits", train_limit=-1))
    assert e.value.key == "train_limit"


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(errors.ConfigError) as e:
        data.load(_config(dataset="imagenet21k"))
    assert e.value.key == "dataset"


# --- CIFAR through TFDS ArrayRecord ---------------------------------------------


def test_synthetic_archive_is_deterministic_and_official_layout(tmp_path):
    a = synthetic_cifar.write_cifar_archive(tmp_path / "a.tar.gz", "cifar10", 50, 20, seed=3)
    b = synthetic_cifar.write_cifar_archive(tmp_path / "b.tar.gz", "cifar10", 50, 20, seed=3)
    digest = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]
    with tarfile.open(a) as tar:
        sizes = {m.name: m.size for m in tar if m.isfile()}
    batches = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    assert sum(sizes[n] for n in batches) == 50 * 3073
    assert sizes["cifar-10-batches-bin/test_batch.bin"] == 20 * 3073
    c = synthetic_cifar.write_cifar_archive(tmp_path / "c.tar.gz", "cifar100", 30, 10)
    with tarfile.open(c) as tar:
        sizes = {m.name: m.size for m in tar if m.isfile()}
    assert sizes["cifar-100-binary/train.bin"] == 30 * 3074
    assert sizes["cifar-100-binary/test.bin"] == 10 * 3074


def test_cifar10_round_trip_from_archive_then_prepared(tmp_path):
    archive = synthetic_cifar.write_cifar_archive(
        tmp_path / "cifar-10-binary.tar.gz", "cifar10", 200, 100
    )
    truth = synthetic_cifar.read_cifar_archive(archive, "cifar10")
    data_dir = str(tmp_path / "tfds")
    ds = data.load(_config(dataset="cifar10", data_dir=data_dir, cifar_archive=archive,
                           normalization="data"))
    assert ds.train_x.shape == (200, 32, 32, 3) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (100, 32, 32, 3) and ds.test_y.dtype == np.int32
    assert ds.is_image and ds.num_classes == 10 and ds.name == "cifar10"
    for key in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(ds, key), truth[key])
    np.testing.assert_allclose(ds.mean, truth["train_x"].reshape(-1, 3).mean(0) / 255, rtol=1e-5)
    np.testing.assert_allclose(ds.std, truth["train_x"].reshape(-1, 3).std(0) / 255, rtol=1e-4)
    assert ds.mean.shape == (3,) and ds.std.dtype == np.float32

    # Prepared data is read without the archive, both through the decoded-array
    # cache and straight from the ArrayRecord files.
    os.remove(archive)
    again = data.load(_config(dataset="cifar10", data_dir=data_dir, train_limit=50))
    np.testing.assert_array_equal(again.train_x, truth["train_x"][:50])
    # Without `normalization`, the authors' fixed CIFAR-10 constants (data/cifar10.py).
    np.testing.assert_array_equal(again.mean, np.float32([0.4914, 0.4822, 0.4465]))
    np.testing.assert_array_equal(again.std, np.float32([0.2023, 0.1994, 0.2010]))
    np.testing.assert_array_equal(again.test_y, truth["test_y"])
    from lrr_jax.data import cifar

    direct = cifar.read(cifar.builder("cifar10", data_dir), cache_dir=None)
    np.testing.assert_array_equal(direct["train_x"], truth["train_x"])
    np.testing.assert_array_equal(direct["test_y"], truth["test_y"])

    # Same name/version/layout as TFDS's stock builder: its reader works too.
    import tensorflow_datasets as tfds

    source = tfds.data_source("cifar10", data_dir=data_dir, split="test")
    assert len(source) == 100
    example = source[0]
    index = int(example["id"].decode().rsplit("_", 1)[1])
    np.testing.assert_array_equal(example["image"], truth["test_x"][index])


def test_cifar100_prepare_cli_then_load_fine_labels(tmp_path, capsys):
    archive = synthetic_cifar.write_cifar_archive(
        tmp_path / "cifar-100-binary.tar.gz", "cifar100", 200, 100
    )
    truth = synthetic_cifar.read_cifar_archive(archive, "cifar100")
    data_dir = str(tmp_path / "tfds")
    from lrr_jax.data import prepare

    assert (
        prepare.main(["--dataset=cifar100", f"--archive={archive}", f"--data_dir={data_dir}"]) == 0
    )
    out = capsys.readouterr().out
    assert "train: 200 examples" in out and "array_record" in out
    ds = data.load(_config(dataset="cifar100", data_dir=data_dir))
    assert ds.num_classes == 100
    for key in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(ds, key), truth[key])


def test_cifar_not_prepared_fails_fast_without_network(tmp_path):
    start = time.monotonic()
    with pytest.raises(errors.ConfigError) as e:
        data.load(
            _config(dataset="cifar10", data_dir=str(tmp_path), cifar_archive="", download=False)
        )
    assert time.monotonic() - start < 5
    assert e.value.key == "dataset"
    assert "python -m lrr_jax.data.prepare --dataset=cifar10" in str(e.value)
    assert str(tmp_path) in str(e.value)


def test_cifar_bad_archive_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError) as e:
        data.load(
            _config(
                dataset="cifar10",
                data_dir=str(tmp_path),
                cifar_archive=str(tmp_path / "nope.tar.gz"),
            )
        )
    assert e.value.key == "cifar_archive"
    # A CIFAR-100 tarball given for CIFAR-10 names the missing files.
    wrong = synthetic_cifar.write_cifar_archive(tmp_path / "c100.tar.gz", "cifar100", 10, 10)
    with pytest.raises(errors.ConfigError) as e:
        data.load(_config(dataset="cifar10", data_dir=str(tmp_path / "tfds"), cifar_archive=wrong))
    assert e.value.key == "cifar_archive" and "data_batch_1.bin" in str(e.value)
    assert not (tmp_path / "tfds" / "cifar10" / "3.0.2").exists()


# --- Tiny ImageNet ---------------------------------------------------------------


def _write_tiny_imagenet(root, wnids, train_per_class, val_labels):
    """Writes a miniature tiny-imagenet-200 folder; images are flat colours (JPEG-stable)."""
    colours = {}
    os.makedirs(root / "val" / "images")
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    for k, wnid in enumerate(wnids):
        os.makedirs(root / "train" / wnid / "images")
        for i in range(train_per_class):
            colour = (40 * k + 10, 20 * i + 30, 200 - 30 * k)
            colours[f"train/{wnid}/images/{wnid}_{i}.JPEG"] = colour
            Image.new("RGB", (64, 64), colour).save(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
            )
    lines = []
    for i, wnid in enumerate(val_labels):
        colour = (10 * i + 5, 100, 50)
        colours[f"val/images/val_{i}.JPEG"] = colour
        # A grayscale file, as a few real Tiny ImageNet images are: must become RGB.
        mode = "L" if i == 0 else "RGB"
        Image.new(mode, (64, 64), colour[0] if mode == "L" else colour).save(
            root / "val" / "images" / f"val_{i}.JPEG"
        )
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return colours


def test_tiny_imagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # wnids.txt is unsorted; labels follow sorted order
    _write_tiny_imagenet(root, wnids, 2, ["n03", "n01", "n02", "n03"])
    config = _config(
        dataset="tiny_imagenet", tiny_imagenet_dir=str(root), data_dir=str(tmp_path / "cache"),
        tiny_imagenet_resolution=64,
    )
    ds = data.load(config)
    assert ds.train_x.shape == (6, 64, 64, 3) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (4, 64, 64, 3) and ds.num_classes == 3 and ds.is_image
    np.testing.assert_array_equal(ds.train_y, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(ds.test_y, [2, 0, 1, 2])
    # Flat colours survive JPEG almost exactly; n01 (label 0) is wnids[1], k=1.
    np.testing.assert_allclose(ds.train_x[0].reshape(-1, 3).mean(0), (50, 30, 170), atol=2)
    np.testing.assert_allclose(ds.test_x[0].reshape(-1, 3).mean(0), (5, 5, 5), atol=2)
    np.testing.assert_allclose(ds.test_x[1].reshape(-1, 3).mean(0), (15, 100, 50), atol=2)
    assert len(list((tmp_path / "cache").glob("tiny_imagenet-*.npz"))) == 1
    again = data.load(config)
    np.testing.assert_array_equal(again.train_x, ds.train_x)
    with pytest.raises(errors.ConfigError) as e:
        data.load(_config(dataset="tiny_imagenet", tiny_imagenet_dir=str(tmp_path / "missing")))
    assert e.value.key == "tiny_imagenet_dir"


# --- augmentation ------------------------------------------------------------------


def _batch(dtype=np.uint8, shape=(16, 8, 8, 3)):
    return np.random.default_rng(0).integers(1, 255, size=shape).astype(dtype)


def test_normalize_uint8_and_float():
    mean, std = np.array([0.5, 0.25, 0.0], np.float32), np.array([0.5, 0.5, 2.0], np.float32)
    images = _batch()
    out = augment.normalize(images, mean, std)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out, (images / 255.0 - mean) / std, rtol=1e-5, atol=1e-6)
    vectors = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        augment.normalize(vectors, mean, std), (vectors - mean) / std, rtol=1e-6
    )


def test_random_crop_flip_shape_identity_flip_and_determinism():
    images = _batch()
    rng = jax.random.key(0)
    crop = jax.jit(augment.random_crop_flip, static_argnames=("pad", "flip"))
    out = np.asarray(crop(rng, images))
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out, np.asarray(crop(rng, images)))
    assert not np.array_equal(out, np.asarray(crop(jax.random.key(1), images)))
    np.testing.assert_array_equal(np.asarray(crop(rng, images, pad=0, flip=False)), images)
    # pad=0: every image is either itself or its mirror, and both happen.
    flipped = np.asarray(crop(rng, images, pad=0))
    same = [np.array_equal(f, i) for f, i in zip(flipped, images, strict=True)]
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and any(same) and any(mirrored)
    # pad=2, no flip: every output is some 8x8 window of the zero-padded image,
    # and windows really move.
    shifted = np.asarray(crop(rng, images, pad=2, flip=False))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = []
    for s, p in zip(shifted, padded, strict=True):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(s, p[dy : dy + 8, dx : dx + 8])
        ]
        assert hits
        offsets.append(hits[0])
    assert len(set(offsets)) > 1
    floats = _batch(np.float32)
    assert np.asarray(crop(rng, floats)).dtype == np.float32


def test_cifar_download_branch_uses_tfds_download_manager(tmp_path, monkeypatch):
    """download=True goes through TFDS's download manager (patched here: no network)."""
    import tensorflow_datasets as tfds

    archive = synthetic_cifar.write_cifar_archive(tmp_path / "c10.tar.gz", "cifar10", 20, 10)
    urls = []

    def fake_download(self, url):
        urls.append(url)
        return archive

    monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
    # The reachability probe goes to a local listening socket instead of the real host.
    server = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv(cifar.PROBE_ENV, f"127.0.0.1:{server.getsockname()[1]}")
    with server:
        ds = data.load(_config(dataset="cifar10", data_dir=str(tmp_path / "tfds"),
                               download=True))
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    np.testing.assert_array_equal(ds.test_x, synthetic_cifar.read_cifar_archive(archive)["test_x"])


# --- normalization ---------------------------------------------------------------------


def test_paper_normalization_constants_and_data_option(tmp_path):
    archive = synthetic_cifar.write_cifar_archive(tmp_path / "c100.tar.gz", "cifar100", 40, 20)
    c = dict(dataset="cifar100", data_dir=str(tmp_path / "tfds"), cifar_archive=archive)
    paper = data.load(_config(**c))
    np.testing.assert_array_equal(paper.mean, np.float32([0.507, 0.487, 0.441]))
    np.testing.assert_array_equal(paper.std, np.float32([0.267, 0.256, 0.276]))
    assert paper.mean.dtype == np.float32 and paper.mean.shape == (3,)
    assert np.array_equal(data.load(_config(**c, normalization="paper")).mean, paper.mean)
    measured = data.load(_config(**c, normalization="data"))
    pixels = paper.train_x.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(measured.mean, pixels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(measured.std, pixels.std(0), rtol=1e-4)
    assert not np.allclose(measured.mean, paper.mean, atol=1e-3)  # the option changes something
    with pytest.raises(errors.ConfigError) as e:
        data.load(_config(**c, normalization="imagenet"))
    assert e.value.key == "normalization"
    # Vector datasets always use their data's statistics.
    digits = data.load(_config(dataset="digits", normalization="paper"))
    np.testing.assert_allclose(digits.mean, digits.train_x.mean(0), rtol=1e-5)


# --- ~ and $VAR in paths -----------------------------------------------------------------


def test_readme_prepare_command_with_tilde_runs_literally(tmp_path):
    with open(os.path.join(REPO, "docs", "DIFFERENCES.md")) as f:  # its "Datasets" part
        readme = f.read()
    match = re.search(r"`(python -m lrr_jax\.data\.prepare --dataset=cifar10 "
                      r"--archive=~/cifar-10-binary\.tar\.gz --data_dir=~/tfds)`", readme)
    assert match, "docs/DIFFERENCES.md lost its prepare command"
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    synthetic_cifar.write_cifar_archive(home / "cifar-10-binary.tar.gz", "cifar10", 30, 10)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=REPO,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    # Through a shell, as a user types it: bash leaves `~` after `=` unexpanded.
    out = subprocess.run(["bash", "-c", match.group(1)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (home / "tfds" / "cifar10" / "3.0.2").is_dir()
    assert not (cwd / "~").exists() and os.listdir(cwd) == []
    assert "train: 30 examples" in out.stdout
    assert "not cifar10's 50,000 / 10,000" in out.stderr  # a generated archive is flagged


def test_config_paths_expand_tilde_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LRR_TEST_DATA", str(tmp_path / "datasets"))
    synthetic_cifar.write_cifar_archive(tmp_path / "c10.tar.gz", "cifar10", 20, 10)
    ds = data.load(_config(dataset="cifar10", data_dir="$LRR_TEST_DATA/tfds",
                           cifar_archive="~/c10.tar.gz"))
    assert ds.train_x.shape == (20, 32, 32, 3)
    assert (tmp_path / "datasets" / "tfds" / "cifar10" / "3.0.2").is_dir()
    assert not any("~" in p or "$" in p for p in os.listdir(tmp_path))
    root = tmp_path / "tiny-imagenet-200"
    _write_tiny_imagenet(root, ["n01"], 1, ["n01"])
    tiny = data.load(_config(dataset="tiny_imagenet", tiny_imagenet_dir="~/tiny-imagenet-200",
                             data_dir="~/cache", tiny_imagenet_resolution=64))
    assert tiny.train_x.shape == (1, 64, 64, 3)
    assert len(list((tmp_path / "cache").glob("tiny_imagenet-*.npz"))) == 1
    assert paths.expand("") == "" and paths.expand("~/x") == str(tmp_path / "x")


# --- download probe -------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_fails_fast_with_one_line(tmp_path):
    """`--config.download=True` without network: one ConfigError line within seconds."""
    empty = tmp_path / "tfds"
    empty.mkdir()
    port = _closed_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", **{cifar.PROBE_ENV: f"127.0.0.1:{port}"})
    env["XLA_FLAGS"] = xla_env.flags()
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", "--config=configs/quickstart.py",
         "--config.methods=lrr", "--config.num_replicas=1", "--config.progress=False",
         "--config.tensorboard=False", "--config.dataset=cifar10", "--config.model=resnet18",
         f"--config.data_dir={empty}", "--config.download=True", f"--workdir={tmp_path / 'w'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    seconds = time.monotonic() - start
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: download: cannot reach 127.0.0.1:{port} within 3 s")
    assert "--config.cifar_archive" in lines[0]
    assert seconds < 60  # imports only; TFDS's own retries took ~200 s
    assert not (empty / "cifar10" / "3.0.2").exists()


def test_download_probe_gives_up_on_a_hanging_host(monkeypatch):
    def hang(*args, **kwargs):  # a resolver or SYN that never answers in time
        time.sleep(5)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setenv(cifar.PROBE_ENV, "example.invalid:443")
    start = time.monotonic()
    with pytest.raises(errors.ConfigError) as e:
        cifar.probe_download_host("https://www.cs.toronto.edu/x.tar.gz", timeout=0.5)
    assert time.monotonic() - start < 3
    assert e.value.key == "download" and "example.invalid:443" in str(e.value)
    monkeypatch.delenv(cifar.PROBE_ENV)
    assert cifar._probe_target("https://www.cs.toronto.edu/~kriz/c.tar.gz") == (
        "www.cs.toronto.edu", 443)


# --- split sizes --------------------------------------------------------------------------


def test_load_says_split_sizes_and_warns_when_not_cifar(tmp_path, capsys):
    archive = synthetic_cifar.write_cifar_archive(tmp_path / "c10.tar.gz", "cifar10", 30, 10)
    data_dir = str(tmp_path / "tfds")
    data.load(_config(dataset="cifar10", data_dir=data_dir, cifar_archive=archive))
    # (TFDS's own progress bars, while preparing, are on stderr too.)
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith(("data:", "warning: data:"))]
    assert err[0] == (f"data: cifar10 train 30, test 10 (from "
                      f"{os.path.join(data_dir, 'cifar10', '3.0.2')})")
    assert err[1].startswith("warning: data: cifar10 has 30 train / 10 test examples, not "
                             "cifar10's 50,000 / 10,000")
    assert len(err) == 2
    # With train_limit the line says how many of the split are used (the first N).
    data.load(_config(dataset="cifar10", data_dir=data_dir, train_limit=20, test_limit=10))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("data:")]
    assert err == [f"data: cifar10 train 20 of 30 (train_limit), test 10 (from "
                   f"{os.path.join(data_dir, 'cifar10', '3.0.2')})"]
    assert cifar.size_warning("cifar100", {"train": 50_000, "test": 10_000}) is None
    assert cifar.size_warning("cifar100", {"train": 50_000, "test": 9_999})
    root = tmp_path / "tiny-imagenet-200"
    _write_tiny_imagenet(root, ["n01"], 2, ["n01"])
    data.load(_config(dataset="tiny_imagenet", tiny_imagenet_dir=str(root),
                      data_dir=str(tmp_path / "cache"), tiny_imagenet_resolution=64))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0] == f"data: tiny_imagenet train 2, test 1 (from {root})"
    assert "not Tiny ImageNet's 100,000 / 10,000" in err[1]


# --- Tiny ImageNet at 224 -------------------------------------------------------------------


def _pil_crop_resize(image, top, left, h, w, size=224):
    return np.asarray(Image.fromarray(image).crop((left, top, left + w, top + h))
                      .resize((size, size), Image.BILINEAR))


def test_resize_center_crop_is_torchvision_resize_256_center_crop_224():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = np.asarray(augment.resize_center_crop(images))
    assert out.shape == (3, 224, 224, 3) and out.dtype == np.uint8
    for o, im in zip(out, images, strict=True):
        # PIL (torchvision's Resize on PIL images): 64 -> 256, then the centre 224 (offset 16).
        ref = np.asarray(Image.fromarray(im).resize((256, 256), Image.BILINEAR))[16:240, 16:240]
        np.testing.assert_array_equal(o, ref)
    # A non-square image: shorter side to 256, the longer int(256 * 80 / 48) = 426.
    wide = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(wide).resize((426, 256), Image.BILINEAR))[16:240, 101:325]
    assert np.abs(augment.resize_center_crop(wide).astype(int) - ref.astype(int)).max() <= 1
    floats = np.asarray(augment.resize_center_crop(images.astype(np.float32)))
    assert floats.dtype == np.float32 and np.abs(floats - out).max() <= 1.0


def test_random_resized_crop_params_follow_torchvision():
    keys = jax.random.split(jax.random.key(0), 2000)
    top, left, h, w = (np.asarray(v) for v in jax.vmap(
        lambda k: augment.random_resized_crop_params(k, 64, 64))(keys))
    assert np.all((h >= 1) & (w >= 1) & (top >= 0) & (left >= 0))
    assert np.all((top + h <= 64) & (left + w <= 64))
    area = h * w / 64 ** 2
    # scale (0.08, 1): up to the rounding of h and w (one pixel each).
    assert area.min() >= 0.08 * (1 - 2 / np.sqrt(0.08 * 64 ** 2)) and area.max() <= 1
    assert area.min() < 0.12 and area.max() > 0.9
    aspect = w / h
    assert aspect.min() < 0.85 and aspect.max() > 1.2  # ratio (3/4, 4/3) both ways
    assert len(set(top.tolist())) > 30 and len(set(left.tolist())) > 30
    # No draw fits (area above the image's): the central crop with the ratio clamped.
    big = augment.random_resized_crop_params(keys[0], 64, 64, scale=(2.0, 3.0))
    assert [int(v) for v in big] == [0, 0, 64, 64]
    wide = augment.random_resized_crop_params(keys[0], 40, 100, scale=(2.0, 3.0))
    assert [int(v) for v in wide] == [0, 23, 40, 53]  # w = round(40 * 4/3), left (100-53)//2


def test_random_resized_crop_flip_matches_pil():
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    crop = jax.jit(augment.random_resized_crop_flip, static_argnames=("size", "flip"))
    flips = []
    for seed in range(6):
        key = jax.random.key(seed)
        params = [int(v) for v in augment.random_resized_crop_params(
            jax.random.split(key)[0], 64, 64)]
        ref = _pil_crop_resize(image, *params)
        plain = np.asarray(crop(key, image, flip=False))
        assert plain.shape == (224, 224, 3) and plain.dtype == np.uint8
        diff = np.abs(plain.astype(int) - ref.astype(int))
        # PIL's 22-bit fixed-point filter coefficients move a few pixels by one level.
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (seed, params)
        out = np.asarray(crop(key, image))

        def near(a, b):  # equal but for float32 rounding of a few half-way pixels
            d = np.abs(a.astype(int) - b.astype(int))
            return d.max() <= 1 and (d > 0).mean() < 0.01

        mirrored = near(out, plain[:, ::-1])
        assert near(out, plain) != mirrored  # either kept or mirrored (the image is not symmetric)
        flips.append(mirrored)
    assert any(flips) and not all(flips)


def test_train_transform_per_config_and_per_example_keys():
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    key, positions = jax.random.key(3), np.array([7, 0, 3, 9, 4])
    c10 = data.train_transform(_config(dataset="cifar10", augment_pad=4))
    out = np.asarray(augment.per_example(key, positions, small, c10))
    # The CIFAR path is the crop/flip the trainer always used, keyed by epoch position.
    for o, p, im in zip(out, positions, small, strict=True):
        k = jax.random.fold_in(key, p)
        np.testing.assert_array_equal(o, augment.random_crop_flip(k, im[None], pad=4)[0])
    # The same example at the same position gets the same crop in any batch order.
    order = np.array([3, 1, 4, 0, 2])
    again = np.asarray(augment.per_example(key, positions[order], small[order], c10))
    np.testing.assert_array_equal(again, out[order])
    tiny = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    t224 = data.train_transform(_config(dataset="tiny_imagenet"))  # the default: 224
    assert augment.per_example(key, positions[:2], tiny, t224).shape == (2, 224, 224, 3)
    t64 = data.train_transform(_config(dataset="tiny_imagenet", augment_pad=8,
                                          tiny_imagenet_resolution=64))
    assert augment.per_example(key, positions[:2], tiny, t64).shape == (2, 64, 64, 3)


def test_tiny_imagenet_224_default_and_errors(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    _write_tiny_imagenet(root, ["n02", "n01"], 2, ["n01", "n02", "n01"])
    base = dict(dataset="tiny_imagenet", tiny_imagenet_dir=str(root),
                data_dir=str(tmp_path / "cache"))
    native = data.load(_config(**base, tiny_imagenet_resolution=64))
    ds = data.load(_config(**base))
    assert ds.train_x.shape == (4, 64, 64, 3)  # upsampled per example in the train step
    assert ds.test_x.shape == (3, 224, 224, 3) and ds.test_x.dtype == np.uint8
    np.testing.assert_array_equal(ds.test_x, augment.resize_center_crop(native.test_x))
    np.testing.assert_array_equal(ds.test_y, native.test_y)
    np.testing.assert_array_equal(ds.mean, np.float32([0.485, 0.456, 0.406]))  # ImageNet's
    np.testing.assert_array_equal(ds.std, np.float32([0.229, 0.224, 0.225]))
    assert data.load(_config(**base, test_limit=2)).test_x.shape == (2, 224, 224, 3)
    for bad in ({"tiny_imagenet_resolution": 128}, {"augment": False}):
        with pytest.raises(errors.ConfigError) as e:
            data.load(_config(**base, **bad))
        assert e.value.key == "tiny_imagenet_resolution"


def test_train_epoch_feeds_224_images_for_tiny_imagenet():
    """train.make_train_epoch's augmentation line applies the config's transform."""
    import flax.linen as nn

    from lrr_jax import config_base, parallel, train

    seen = []

    class Probe(nn.Module):
        """Global-average-pooled linear classifier that records its input shapes."""

        @nn.compact
        def __call__(self, x, train=False):
            seen.append(x.shape[1:])
            return nn.Dense(2)(x.mean(axis=(1, 2)))

    c = config_base.get_base_config()
    c.dataset, c.batch_size = "tiny_imagenet", 4  # tiny_imagenet_resolution: 224 by default
    model = Probe()
    x = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    y = np.zeros(8, np.int32)
    state = train.create_replicas(model, c, [0], x[:1].astype(np.float32))
    fn, steps = train.make_train_epoch(apply_fn=model.apply, config=c, phase="level",
                                       num_train=8, num_devices=1, mean=np.zeros(3),
                                       std=np.ones(3), image=True)
    backend = parallel.Backend("pmap", jax.local_devices()[:1])
    epoch = backend.map(fn, 4, donate_first=True)
    seen.clear()
    epoch(backend.put(state), backend.put(x), backend.put(y), jax.random.PRNGKey(0))
    assert seen and all(s == (224, 224, 3) for s in seen)
