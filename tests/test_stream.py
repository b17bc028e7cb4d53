"""The streaming input pipeline: ImageNet in the official layout, prepared and trained end to
end, resumed after SIGKILL and SIGTERM inside a streamed level, and the stream against the
on-device pipeline on CIFAR."""

import dataclasses
import io
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from lrr_jax import checkpoints, config_base, engine, replicas, validation
from lrr_jax.data import imagenet, stream, synthetic_cifar, synthetic_imagenet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_VAL, PER_CLASS = 12, 6


def _run(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """A generated ILSVRC2012 in the official tars, prepared by the documented command."""
    root = tmp_path_factory.mktemp("imagenet")
    info = synthetic_imagenet.write_imagenet_tars(root / "manual", num_val=NUM_VAL,
                                                  train_per_class=PER_CLASS)
    done = _run("-m", "lrr_jax.data.prepare", "--dataset=imagenet2012",
                f"--manual_dir={root / 'manual'}", f"--data_dir={root / 'tfds'}")
    assert done.returncode == 0, done.stderr
    assert "imagenet2012 5.1.0 is prepared" in done.stdout
    return {"data_dir": str(root / "tfds"), "info": info}


def test_prepared_imagenet_keeps_tfds_layout_labels_and_converts_odd_images(imagenet_dir):
    import tensorflow_datasets as tfds

    info = imagenet_dir["info"]
    b = imagenet.builder(imagenet_dir["data_dir"])
    assert b.is_prepared() and b.name == "imagenet2012" and str(b.version) == "5.1.0"
    assert imagenet.split_sizes(b) == {"train": len(info["classes"]) * PER_CLASS,
                                       "test": NUM_VAL}
    wnids = open(imagenet._tfds_file("labels.txt")).read().split()
    # Also readable the way TFDS documents (no lrr_jax code involved).
    plain = tfds.data_source("imagenet2012", data_dir=imagenet_dir["data_dir"],
                             split="validation",
                             decoders={"image": tfds.decode.SkipDecoding()})
    assert len(plain) == NUM_VAL
    modes = {}
    for split in ("train", "validation"):
        src = b.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
        for i in range(len(src)):
            ex = src[i]
            name = ex["file_name"].decode()
            with Image.open(io.BytesIO(ex["image"])) as im:
                assert im.format == "JPEG", name
                modes[name] = im.mode
            label = wnids[ex["label"]]
            assert label in info["classes"]
            if split == "train":
                assert name.startswith(label + "_")
    # The CMYK JPEG and the PNG named .JPEG became RGB JPEGs; the grey ones stay grey.
    for name, kind in info["special"].items():
        assert modes[name] == ("L" if kind == "grey" else "RGB"), (name, kind)
    assert sorted(set(modes.values())) == ["L", "RGB"]


def _png(array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def _photo(w, h, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def test_eval_transform_is_resize_then_centre_crop():
    for w, h in ((500, 375), (300, 420), (230, 230)):
        image = _photo(w, h)
        for size in (224, 64):
            out = imagenet.eval_example(_png(image), size)  # PNG: decoded in full
            r = imagenet.eval_resize(size)
            nw, nh = (r, int(r * h / w)) if w <= h else (int(r * w / h), r)
            top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
            ref = Image.fromarray(image).resize((nw, nh), Image.BILINEAR).crop(
                (left, top, left + size, top + size))
            assert out.shape == (size, size, 3)
            diff = np.abs(out.astype(int) - np.asarray(ref, int))
            assert diff.max() <= 1, (w, h, size, diff.max())  # the box resize == resize + crop
    # A JPEG decoded at a reduced DCT scale stays close to the full decode's result.
    image = _photo(500, 375, seed=3)
    jpeg = io.BytesIO()
    Image.fromarray(image).save(jpeg, format="JPEG", quality=95)
    full = Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB")
    for size in (64, 96):
        r = imagenet.eval_resize(size)
        nw, nh = int(r * 500 / 375), r
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        ref = np.asarray(full.resize((nw, nh), Image.BILINEAR).crop(
            (left, top, left + size, top + size)), int)
        out = imagenet.eval_example(jpeg.getvalue(), size).astype(int)
        assert np.abs(out - ref).mean() < 3.0, size


def test_train_transform_is_random_resized_crop_and_flip():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(400):
        top, left, h, w = imagenet.rrc_params(rng, 500, 375)
        assert 0 <= top <= 375 - h and 0 <= left <= 500 - w
        areas.append(h * w / (500 * 375))
        ratios.append(w / h)
    assert 0.07 < min(areas) and max(areas) <= 1.0 and np.mean(areas) > 0.4
    assert 0.7 < min(ratios) and max(ratios) < 1.4
    # A too-wide image: the fallback is the centre crop with the ratio clamped to 4/3.
    assert imagenet.rrc_params(np.random.default_rng(0), 1000, 10) == (0, 493, 10, 13)
    # One example: the crop and flip of its draws, resized as PIL resizes the crop.
    image = _photo(320, 240, seed=1)
    for seed in range(6):
        out = imagenet.train_example(_png(image), np.random.default_rng(seed), 64)
        draws = np.random.default_rng(seed)
        top, left, h, w = imagenet.rrc_params(draws, 320, 240)
        ref = Image.fromarray(image).crop((left, top, left + w, top + h)).resize(
            (64, 64), Image.BILINEAR)
        if draws.random() < 0.5:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
        assert np.abs(out.astype(int) - np.asarray(ref, int)).max() <= 1, seed
        again = imagenet.train_example(_png(image), np.random.default_rng(seed), 64)
        assert np.array_equal(out, again)


IMAGENET_RUN = ["-m", "lrr_jax.main", "--config=configs/imagenet.py", "--config.image_size=64",
                "--config.width=0.0625", "--config.levels=2", "--config.epochs_per_level=1",
                "--config.warmup_epochs=0", "--config.batch_size=16", "--config.eval_batch_size=16",
                "--config.progress=False", "--config.tensorboard=False"]


@pytest.mark.slow
def test_imagenet_imp_wr_lrr_end_to_end_through_main(imagenet_dir, tmp_path):
    done = _run(*IMAGENET_RUN, f"--workdir={tmp_path}", f"--config.data_dir="
                f"{imagenet_dir['data_dir']}", "--config.methods=imp,wr,lrr")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data: imagenet2012 train 72, test (validation) 12" in done.stderr
    for method in ("imp", "wr", "lrr"):
        lines = open(tmp_path / method / "results.csv").read().splitlines()
        assert len(lines) == 3 and lines[1].startswith("0,0,") and lines[2].startswith("1,0,")
        rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
        assert [float(r["density"]) for r in rows] == pytest.approx([1.0, 0.8], abs=1e-5)
        assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)
    assert "lrr (%)" in done.stdout  # the table at the end


# A small ResNet on ImageNet-layout data: the resume tests run it five times.
RESUME_RUN = [*IMAGENET_RUN[:3], "--config.image_size=32", "--config.model=resnet18",
              "--config.width=0.0625", "--config.levels=2", "--config.epochs_per_level=2",
              "--config.warmup_epochs=1", "--config.batch_size=8", "--config.eval_batch_size=12",
              "--config.checkpoint_every_epochs=1", "--config.progress=False",
              "--config.tensorboard=False", "--config.methods=wr,lrr"]


@pytest.mark.slow
def test_streamed_level_killed_or_preempted_inside_an_epoch_resumes_to_the_same_results(
        imagenet_dir, tmp_path):
    data = f"--config.data_dir={imagenet_dir['data_dir']}"
    whole = _run(*RESUME_RUN, data, f"--workdir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    # One run, cut twice. SIGTERM (a preemption notice) in epoch 0 of level 1 after 3 of
    # its 9 steps: saved there, with the reader's position, and exit 143.
    cut = tmp_path / "cut"
    term = {"LRR_JAX_FAULT": "in_step:1:0:3@term"}
    stopped = _run(*RESUME_RUN, data, f"--workdir={cut}", env=term)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "epoch 0 after step 3 of 9" in stopped.stderr
    store = checkpoints.Store(cut / "lrr")
    assert checkpoints.mid_name(1, 0, 3) in store.names()
    meta = store.restore_meta(checkpoints.mid_name(1, 0, 3))
    assert meta["partial"]["groups"][0]["step"] == 3
    assert meta["partial"]["groups"][0]["reader"] == {"next_index": 3}
    # The relaunch resumes there; SIGKILL in epoch 1 of level 1 after 4 steps: the next
    # resume reads the save after epoch 0 and replays epoch 1's batches (same order,
    # same host crops).
    kill = {"LRR_JAX_FAULT": "in_step:1:1:4"}
    killed = _run(*RESUME_RUN, data, f"--workdir={cut}", env=kill)
    assert "lrr: level 1 resumes in epoch 0 after step 3" in killed.stderr
    assert killed.returncode == -9, killed.stderr[-3000:]
    again = _run(*RESUME_RUN, data, f"--workdir={cut}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "lrr: level 1 resumes after epoch 0" in again.stderr
    for method in ("wr", "lrr"):
        got = open(cut / method / "results.csv").read()
        assert got == open(tmp_path / "whole" / method / "results.csv").read(), method


def test_plan_reads_every_example_once_each_process_its_devices_share():
    n, batch, devices = 103, 16, 8
    orders = [np.random.default_rng(s).permutation(n) for s in range(2)]
    full = stream.plan(orders, batch, devices, list(range(devices)))
    steps = n // batch
    assert full.shape == (steps, devices, 2, batch // devices)
    for s in range(2):  # stream s: its permutation, cut to whole batches, in order
        flat = full[:, :, s].reshape(-1)
        assert np.array_equal(flat, orders[s][: steps * batch])
        assert len(set(flat.tolist())) == steps * batch
    halves = [stream.plan(orders, batch, devices, list(range(4 * p, 4 * p + 4)))
              for p in range(2)]
    for s in range(2):
        a, b = (set(h[:, :, s].reshape(-1).tolist()) for h in halves)
        assert not a & b and a | b == set(full[:, :, s].reshape(-1).tolist())


def _cifar_config(tmp, pipeline):
    c = config_base.get_base_config()
    c.dataset, c.model, c.width = "cifar10", "resnet18", 0.0625
    c.data_dir, c.cifar_archive = str(tmp / "tfds"), str(tmp / "c10.tar.gz")
    c.batch_size, c.eval_batch_size, c.num_replicas = 32, 100, 2
    c.input_pipeline = pipeline
    return c


@pytest.mark.slow
def test_streamed_cifar_reads_each_example_once_and_trains_as_on_device(tmp_path):
    synthetic_cifar.write_cifar_archive(tmp_path / "c10.tar.gz", num_train=256, num_test=100)
    e = engine.make(_cifar_config(tmp_path, "stream"))
    assert e.streaming and e.info.num_train == 256 and e.info.example_shape == (32, 32, 3)
    seen = []
    read = e.streams.train.read
    e.streams = dataclasses.replace(e.streams, train=dataclasses.replace(
        e.streams.train, read=lambda i, rng: (seen.append(i), read(i, rng))[1]))
    reps = replicas.from_config(e.config)
    init = e.init_states([r.seed for r in reps])
    streamed, metrics, partial = e.train_epoch("level", e.put(init), reps, 0, 0)
    assert partial is None and np.all(np.isfinite(metrics["loss"]))
    # Two seeds, two streams: each reads every example once (256 = 8 whole batches).
    assert len(seen) == 2 * 256 and sorted(seen) == sorted(list(range(256)) * 2)
    again, metrics_again, _ = e.train_epoch("level", e.put(init), reps, 0, 0)
    for a, b in zip(jax.tree.leaves(streamed), jax.tree.leaves(again)):  # deterministic
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The on-device pipeline draws the same batches and crops (the tarball's order):
    # the same training, up to float summation order.
    d = engine.make(_cifar_config(tmp_path, "device"))
    on_device, m_device, _ = d.train_epoch("level", d.put(init), reps, 0, 0)
    np.testing.assert_allclose(np.asarray(metrics["loss"]), np.asarray(m_device["loss"]),
                               rtol=1e-4)
    for a, b in zip(jax.tree.leaves(streamed.params), jax.tree.leaves(on_device.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
    s_eval, d_eval = e.evaluate(streamed), d.evaluate(on_device)
    np.testing.assert_allclose(s_eval["loss"], d_eval["loss"], rtol=1e-3)
    # Another epoch is another order: the stream is keyed by the epoch as on-device.
    seen.clear()
    e.train_epoch("level", e.put(init), reps, 0, 1)
    assert sorted(seen) == sorted(list(range(256)) * 2)


def test_imagenet_needs_the_stream_and_a_prepared_dataset(tmp_path):
    done = _run("-m", "lrr_jax.main", "--config=configs/imagenet.py",
                f"--workdir={tmp_path / 'w'}", "--config.input_pipeline=device")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: input_pipeline: imagenet2012 does not fit on a device: use "
        "--config.input_pipeline=stream"]
    done = _run("-m", "lrr_jax.main", "--config=configs/imagenet.py",
                f"--workdir={tmp_path / 'w'}", f"--config.data_dir={tmp_path / 'none'}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "imagenet2012 is not prepared" in lines[0], lines
    assert "--manual_dir" in lines[0]
    assert not os.path.exists(tmp_path / "w" / "lrr" / "checkpoints")


def test_imagenet_config_is_the_paper_codes_recipe():
    import importlib

    c = importlib.import_module("configs.imagenet").get_config()
    assert (c.model, c.dataset, c.input_pipeline, c.image_size) == (
        "resnet50_imagenet", "imagenet2012", "stream", 224)
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay) == (256, 0.1, 0.9, 1e-4)
    assert (c.epochs_per_level, c.warmup_epochs, c.lr_schedule) == (90, 10, "imagenet_step_warmup")
    from lrr_jax import train

    lr = train.lr_schedule(c, "level", 1)
    assert [round(float(lr(e)), 6) for e in (0, 9, 10, 39, 40, 69, 70, 89)] == [
        0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert float(train.lr_schedule(c, "warmup", 1)(0)) == pytest.approx(0.01)
    validation.validate(c)
