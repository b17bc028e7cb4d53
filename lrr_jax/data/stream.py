"""The streaming input pipeline (`config.input_pipeline='stream'`): records read on the host.

The on-device pipeline (`'device'`) places the whole training set on every
device and gathers each batch inside the compiled epoch. That cannot hold
ImageNet. The stream reads the prepared records on the host instead and
feeds the compiled step one global batch at a time:

- Order: epoch e of level l is the permutation `jax.random.permutation(key,
  n)` with the same key as the on-device pipeline (`replicas.epoch_key` of
  the data seed), cut to `steps * batch` examples; global batch s holds
  positions `s * batch ... (s + 1) * batch - 1`, device d of D its slice
  `d * batch / D ...`. So every example is read at most once per epoch, the
  order is fixed by the seed, and a record index is read by exactly one
  process: each process reads only its own devices' slices (`plan`).
- Replicas: `data_order='per_replica'` gives one stream per distinct data
  seed in the group (IMP, WR and LRR of one seed share theirs), `'shared'`
  one stream for all; each step carries (streams, local batch) examples per
  device and the program picks each replica's stream.
- Host work: reading and decoding the record, and, for ImageNet, its
  RandomResizedCrop + flip (or the evaluation resize and crop), on a pool of
  host threads (grain's `MapDataset` with `ReadOptions(num_threads)`; PIL
  releases the GIL while it decodes and resizes). The per-example randomness
  of the host transform is seeded by (data seed, level, epoch, position), so
  it does not depend on the threads, the processes or a resume. Fixed-size
  augmentation of the other datasets (CIFAR's crop + flip, Tiny ImageNet's
  upsampling crop) stays in the compiled step, exactly as on-device.
- Placement: each process puts its devices' blocks of the global batch on
  those devices (`parallel.Backend.put_sharded`, a global array sharded on the
  data axis); `Prefetch` keeps the next steps' batches on the devices while
  the current step runs.
- Position: the reader's position (grain's iterator state: the next step) is
  saved with every mid-level checkpoint; a resumed run restores it and reads
  the same batches as an uninterrupted one.

Sources (`data.open_streams`): CIFAR and ImageNet from their prepared ArrayRecord
files (TFDS `as_data_source`, images left as encoded bytes and decoded
here); CIFAR's records are read in the tarball's order (the order
`data.load` gives), so the stream and the on-device pipeline train on the
same batches. The embedded vector datasets and Tiny ImageNet (not in TFDS)
stream from their host arrays.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from lrr_jax import errors


@dataclasses.dataclass(frozen=True)
class Source:
    """Random access to one split: `read(index, rng) -> (x, label)`.

    `rng` is the example's numpy Generator for a host-side random transform
    (ImageNet training), None where the transform is deterministic.
    """

    size: int
    shape: tuple
    dtype: Any
    read: Callable[[int, np.random.Generator | None], tuple[np.ndarray, int]]
    random: bool = False  # whether `read` uses its rng


@dataclasses.dataclass(frozen=True)
class Streams:
    """What the streaming engine needs of a dataset."""

    name: str
    train: Source
    test: Source
    num_classes: int
    mean: np.ndarray | None  # filled in by `data.open_streams` (the normalization)
    std: np.ndarray | None
    host_augment: bool  # the training transform ran on the host (ImageNet)
    where: str  # for the `data:` line

    @property
    def is_image(self) -> bool:
        return len(self.train.shape) == 3


def array_source(x: np.ndarray, y: np.ndarray) -> Source:
    return Source(len(y), tuple(x.shape[1:]), x.dtype, lambda i, rng: (x[i], int(y[i])))


def _limit(config, key: str, n: int) -> int:
    limit = int(config.get(key, 0) or 0)
    if limit < 0:
        raise errors.ConfigError(key, f"must be >= 0 (0 = all), got {limit}")
    return min(n, limit) if limit else n


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


def _record_source(source, order: np.ndarray, shape, read_fn, random: bool) -> Source:
    """A Source over TFDS records, example i being record `order[i]`."""

    def read(i, rng):
        example = source[int(order[i])]
        return read_fn(example["image"], rng), int(example["label"])

    return Source(len(order), tuple(shape), np.uint8, read, random)


def cifar_streams(config, name: str) -> Streams:
    """CIFAR's prepared records, read in the tarball's order (as `data.load` gives it)."""
    import tensorflow_datasets as tfds

    from lrr_jax.data import cifar, embedded, paths

    b = cifar.prepare(name, paths.config_path(config, "data_dir") or None,
                      paths.config_path(config, "cifar_archive") or None,
                      bool(config.get("download", False)))
    orders = cifar.record_order(b, embedded.cache_dir(config))
    splits = {}
    for split in ("train", "test"):
        src = b.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
        order = orders[split][:_limit(config, f"{split}_limit", len(orders[split]))]
        splits[split] = _record_source(src, order, (32, 32, 3), lambda d, rng: _png(d), False)
    return Streams(name, splits["train"], splits["test"], cifar.NUM_CLASSES[name], None, None,
                   False, b.data_dir)


def imagenet_streams(config) -> Streams:
    """ImageNet's prepared records, cropped on the host (`data.imagenet`)."""
    import tensorflow_datasets as tfds

    from lrr_jax.data import imagenet

    b = imagenet.prepared(config)
    imagenet.describe(b)
    size = image_size(config)
    augment = bool(config.get("augment", True))
    splits = {}
    for split, tfds_split in (("train", "train"), ("test", "validation")):
        src = b.as_data_source(tfds_split, decoders={"image": tfds.decode.SkipDecoding()})
        order = np.arange(_limit(config, f"{split}_limit", len(src)))
        if split == "train" and augment:
            fn, random = (lambda d, rng: imagenet.train_example(d, rng, size)), True
        else:
            fn, random = (lambda d, rng: imagenet.eval_example(d, size)), False
        splits[split] = _record_source(src, order, (size, size, 3), fn, random)
    return Streams("imagenet2012", splits["train"], splits["test"], imagenet.NUM_CLASSES,
                   None, None, True, b.data_dir)


def image_size(config) -> int:
    """`config.image_size` (ImageNet's crop) after checking it."""
    size = config.get("image_size", 224)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise errors.ConfigError("image_size", f"must be an int >= 8, got {size!r}")
    return size


def plan(orders: list[np.ndarray], batch: int, num_devices: int, mine: list[int]) -> np.ndarray:
    """This process's record indices of an epoch: (steps, len(mine), streams, batch / D).

    `orders` holds each stream's epoch permutation; global batch s is
    `order[s * batch:(s + 1) * batch]`, device d of D takes its d-th slice,
    and `mine` lists this process's devices (positions in the global list).
    The last partial batch is dropped.
    """
    local = batch // num_devices
    steps = len(orders[0]) // batch
    cut = [np.asarray(o)[: steps * batch].reshape(steps, num_devices, local) for o in orders]
    return np.stack(cut, axis=2)[:, mine]


class _ReadStep:
    """grain map: step s -> {'x': (devices, streams, local, ...), 'y': ...} of this process."""

    def __init__(self, source: Source, indices: np.ndarray, seeds, level: int, epoch: int,
                 batch: int, mine: list[int]):
        self.source, self.indices, self.seeds = source, indices, [int(s) for s in seeds]
        self.level, self.epoch, self.batch, self.mine = level, epoch, batch, mine

    def __call__(self, step: int):
        idx = self.indices[step]  # (devices, streams, local)
        nd, ns, local = idx.shape
        x = np.empty((nd, ns, local, *self.source.shape), self.source.dtype)
        y = np.empty((nd, ns, local), np.int32)
        for a in range(nd):
            for s in range(ns):
                for j in range(local):
                    rng = None
                    if self.source.random:  # seeded by the example's place, not the reader
                        pos = step * self.batch + self.mine[a] * local + j
                        rng = np.random.default_rng(
                            (self.seeds[s], self.level + 1, self.epoch, pos))
                    x[a, s, j], y[a, s, j] = self.source.read(int(idx[a, s, j]), rng)
        return {"x": x, "y": y}


def _threads(config) -> int:
    n = int(config.get("stream_threads", 0) or 0)
    return n if n > 0 else max(1, os.cpu_count() or 1)


class EpochReader:
    """The host batches of one epoch for this process, read ahead on threads (grain).

    Iterating yields ({'x': (devices, streams, local, ...), 'y': (devices,
    streams, local)}, position after it) per step: the position (grain's
    iterator state, JSON) travels with its batch, so what is saved after a
    step is that step's position, however far the threads have read ahead;
    `start=` restores one.
    """

    def __init__(self, config, source: Source, indices: np.ndarray, seeds, level: int,
                 epoch: int, mine: list[int], start: dict | None = None):
        import grain

        self.steps = len(indices)
        read = _ReadStep(source, indices, seeds, level, epoch, int(config.batch_size), mine)
        options = grain.ReadOptions(num_threads=_threads(config),
                                    prefetch_buffer_size=max(1, int(config.get(
                                        "stream_prefetch", 4) or 4)))
        dataset = grain.MapDataset.range(self.steps).map(read)
        self._it = iter(dataset.to_iter_dataset(options))
        if start:
            self._it.set_state(start)

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._it)
        return batch, dict(self._it.get_state())


def eval_batches(source: Source, num_devices: int, eval_batch: int, mine: list[int]):
    """The test split in order, padded with weight 0, as this process's blocks.

    Yields (x (devices, eval_batch, ...), y, w) per global batch of
    `num_devices * eval_batch` examples.
    """
    chunk = num_devices * eval_batch
    for start in range(0, source.size, chunk):
        x = np.zeros((len(mine), eval_batch, *source.shape), source.dtype)
        y = np.zeros((len(mine), eval_batch), np.int32)
        w = np.zeros((len(mine), eval_batch), np.float32)
        for a, d in enumerate(mine):
            for j in range(eval_batch):
                i = start + d * eval_batch + j
                if i < source.size:
                    x[a, j], y[a, j] = source.read(i, None)
                    w[a, j] = 1.0
        yield x, y, w


class Prefetch:
    """Iterates `batches`, keeping `depth` of them placed on the devices ahead of use."""

    def __init__(self, batches, put, depth: int = 2):
        self._batches, self._put, self._depth = iter(batches), put, max(1, depth)
        self._queue: collections.deque = collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        while len(self._queue) < self._depth:
            try:
                self._queue.append(self._put(next(self._batches)))
            except StopIteration:
                break
        if not self._queue:
            raise StopIteration
        return self._queue.popleft()
