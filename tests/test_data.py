"""Tests for lrr_jax.data on tiny data: loaders, the TFDS CIFAR round trip, augmentation."""

import hashlib
import os
import random
import tarfile
import time

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from lrr_jax import data, errors
from lrr_jax.data import augment, synthetic_cifar


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
    ds = data.load(_config(dataset="cifar10", data_dir=data_dir, cifar_archive=archive))
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
        dataset="tiny_imagenet", tiny_imagenet_dir=str(root), data_dir=str(tmp_path / "cache")
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
    ds = data.load(_config(dataset="cifar10", data_dir=str(tmp_path / "tfds"), download=True))
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    np.testing.assert_array_equal(ds.test_x, synthetic_cifar.read_cifar_archive(archive)["test_x"])
