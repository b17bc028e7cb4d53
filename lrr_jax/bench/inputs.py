"""Bench part `input`: the host side of the streaming pipeline, and the stream against the
on-device pipeline.

- `host`: ImageNet's training transform (decode + RandomResizedCrop(224) +
  flip, `data.imagenet.train_example`) and evaluation transform on
  generated 500x375 JPEGs of ~100 KB (the size of an average ILSVRC2012
  training image), timed on one thread (images/s per core) and through the
  stream's reader with one thread per core (`data.stream.EpochReader`, grain).
- `pipelines`: one epoch of a narrow ResNet18 on a generated CIFAR-10
  archive, through the on-device pipeline and through the stream (records
  read and decoded on the host, crop/flip on the device: the same batches),
  timed alternately in one process; `stream_over_device` is the ratio of
  their images/s (median over repeats).
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np

from lrr_jax.bench import timing

rnd = timing.rnd


def _jpegs(count: int, size=(500, 375), target_kb: float = 100.0, seed: int = 0) -> list[bytes]:
    """`count` generated photographs-like JPEGs of `size`, quality chosen for ~target_kb."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        w, h = size
        base = rng.integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC), np.int16)
        img = np.clip(img + rng.integers(-24, 25, img.shape), 0, 255).astype(np.uint8)
        best = None
        for quality in (95, 90, 85, 80, 75, 70, 60, 50):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=quality)
            best = buf.getvalue()
            if len(best) <= target_kb * 1024:
                break
        out.append(best)
    return out


def bench_host(args) -> dict:
    """Images/s per core of ImageNet's host transforms, and with the stream's threads."""
    from lrr_jax import config_base
    from lrr_jax.data import imagenet, stream

    count = int(args.input_images)
    images = _jpegs(count)
    rec = {"part": "input_host", "images": count, "image_size": 224,
           "jpeg_kb_mean": rnd(np.mean([len(b) for b in images]) / 1024),
           "jpeg_pixels": "500x375", "host_cpus": os.cpu_count(), "repeats": args.repeats}
    with timing.measuring(rec):
        for name, fn in (("train", lambda i, b: imagenet.train_example(
                b, np.random.default_rng(i), 224)),
                ("eval", lambda i, b: imagenet.eval_example(b, 224))):
            times = []
            for _ in range(args.repeats + 1):  # the first pass warms the caches
                t = time.perf_counter()
                for i, b in enumerate(images):
                    fn(i, b)
                times.append(time.perf_counter() - t)
            med = timing.median(times[1:])
            rec[f"{name}_images_per_second_one_thread"] = rnd(count / med)
        # The reader: one thread per core, a (steps, 1 device, 1 stream, batch) plan.
        source = stream.Source(count, (224, 224, 3), np.uint8,
                               lambda i, rng: (imagenet.train_example(images[i], rng, 224), 0),
                               random=True)
        batch = 32
        c = config_base.get_base_config()
        c.batch_size, c.stream_threads = batch, 0
        plan = np.arange(count - count % batch).reshape(-1, 1, 1, batch)
        times = []
        for _ in range(args.repeats + 1):
            t = time.perf_counter()
            for _ in stream.EpochReader(c, source, plan, [0], 0, 0, [0]):
                pass
            times.append(time.perf_counter() - t)
        med = timing.median(times[1:])
        rec["train_images_per_second_reader_all_cores"] = rnd(plan.size / med)
        rec["reader_threads"] = os.cpu_count()
    rec["train_images_per_second_per_core"] = rnd(
        rec["train_images_per_second_reader_all_cores"] / max(os.cpu_count() or 1, 1))
    timing.progress(rec)
    return rec


def bench_pipelines(args) -> dict:
    """One epoch on-device vs streamed, alternating, on a generated CIFAR-10 archive."""
    import jax

    from lrr_jax import config_base, engine, replicas
    from lrr_jax.data import synthetic_cifar

    n = int(args.input_cifar_examples)
    rec = {"part": "input_pipelines", "model": "resnet18", "width": args.width,
           "batch": args.batch, "examples": n, "repeats": args.repeats,
           "dataset": "generated CIFAR-10 archive (official binary layout)"}
    with tempfile.TemporaryDirectory() as tmp, timing.measuring(rec):
        archive = os.path.join(tmp, "c10.tar.gz")
        synthetic_cifar.write_cifar_archive(archive, num_train=n, num_test=100)
        engines, states = {}, {}
        for pipeline in ("device", "stream"):
            c = config_base.get_base_config()
            c.dataset, c.model, c.width, c.batch_size = "cifar10", "resnet18", args.width, \
                args.batch
            c.data_dir, c.cifar_archive, c.input_pipeline = tmp, archive, pipeline
            engines[pipeline] = engine.make(c)
            reps = replicas.from_config(c)
            states[pipeline] = engines[pipeline].put(engines[pipeline].init_states([0]))
        times = {"device": [], "stream": []}
        for r in range(args.repeats + 1):  # repeat 0 compiles: not timed
            for pipeline in ("device", "stream"):
                e = engines[pipeline]
                t = time.perf_counter()
                states[pipeline], m, _ = e.train_epoch("level", states[pipeline], reps, 0, r)
                jax.block_until_ready(states[pipeline])
                if r:
                    times[pipeline].append(time.perf_counter() - t)
        images = engines["device"].steps_per_epoch * args.batch
        for pipeline in ("device", "stream"):
            med = timing.median(times[pipeline])
            rec[pipeline] = {"median_epoch_seconds": rnd(med),
                             "images_per_second": rnd(images / med),
                             "repeat_seconds": [rnd(t) for t in times[pipeline]]}
        ratios = [d / s for d, s in zip(times["device"], times["stream"])]
        rec["stream_over_device"] = rnd(timing.median(ratios))
    timing.progress(rec)
    return rec
