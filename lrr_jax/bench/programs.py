"""The JAX side of the benchmarks: compiled lrr_jax epochs on synthetic data, and the campaign.

`EpochProgram` is the program a level trains with (`train.make_train_epoch`:
on-device shuffling, crop/flip, normalization and `steps` SGD steps in one
`lax.scan`, donated state), mapped by a `parallel.Backend`, fed back its own
state at every call. `run_campaign` is the only call into the level loop (`lrr_jax.campaign`).
"""

from __future__ import annotations

import importlib.util
import inspect
import os

import jax
import numpy as np

from lrr_jax import config_base, engine, models, parallel, train
from lrr_jax.bench import timing

NUM_CLASSES = {"resnet18": 10, "resnet50": 100}  # CIFAR10 ResNet18, CIFAR100 ResNet50
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART_CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart.py")


def resnet_config(model: str, dtype: str, *, width: float, batch: int):
    """The base config with a CIFAR ResNet of `width` at compute `dtype`, global batch `batch`."""
    c = config_base.get_base_config()
    c.model, c.width, c.dtype, c.batch_size = model, width, dtype, batch
    c.dataset = "cifar100" if NUM_CLASSES[model] == 100 else "cifar10"
    return c


def quickstart_config(path: str = QUICKSTART_CONFIG):
    """`get_config()` of a config file (by default configs/quickstart.py)."""
    spec = importlib.util.spec_from_file_location("quickstart_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


class EpochProgram:
    """A compiled lrr_jax epoch on synthetic data, fed back its own state at every call.

    `example_shape` (H, W, C) gives uint8 images with crop/flip (CIFAR's by
    default); (D,) gives float32 feature vectors (e.g. mnist1d's (40,)).
    `replicas` models (seeds 0..K-1) are stacked and `jax.vmap`ped through
    each step, as `config.num_replicas` does in a run. `data_order`: 'shared'
    (every replica trains on the same batches) or 'per_replica' (each its own
    permutation and crops; where `train.make_train_epoch` has `per_replica`,
    see `data_orders()`).
    """

    def __init__(self, config, backend, *, num_classes: int, steps: int, masked: bool,
                 replicas: int = 1, seed: int = 0, example_shape: tuple = (32, 32, 3),
                 data_order: str = "shared"):
        if data_order not in data_orders():
            raise ValueError(f"data_order {data_order!r} not in {data_orders()}")
        rng = np.random.default_rng(seed)
        n = steps * config.batch_size
        image = len(example_shape) == 3
        if image:
            x = rng.integers(0, 256, (n, *example_shape), dtype=np.uint8)
            mean = np.full(example_shape[-1], 0.5, np.float32)
            std = np.full(example_shape[-1], 0.25, np.float32)
        else:
            x = rng.standard_normal((n, *example_shape)).astype(np.float32)
            mean = np.zeros(example_shape, np.float32)
            std = np.ones(example_shape, np.float32)
        self.x = backend.put(x)
        self.y = backend.put(rng.integers(0, num_classes, n).astype(np.int32))
        model = models.create(config, num_classes, bn_axis_name=train.AXIS)
        sample = np.zeros((1, *example_shape), np.float32)
        state = train.create_replicas(model, config, list(range(replicas)), sample)
        self.state = backend.put(parallel.get(state))
        c = config.copy_and_resolve_references()
        c.data_order = data_order
        info = engine.DataInfo("synthetic", n, n, tuple(example_shape), num_classes, mean, std)
        self.fn, self.steps = engine.epoch_program(c, model, backend, info, "level",
                                                   masked=masked)
        self.replicas, self.data_order = replicas, data_order
        self.images_per_epoch = n
        self.epoch = 0

    def __call__(self):
        key = jax.random.PRNGKey(self.epoch)
        if self.data_order == "per_replica":
            key = jax.random.split(key, self.replicas)
        self.state, metrics = self.fn(self.state, self.x, self.y, key)
        self.epoch += 1
        return self.state, metrics


def data_orders() -> tuple[str, ...]:
    """The replica data orders this version of `train.make_train_epoch` builds."""
    params = inspect.signature(train.make_train_epoch).parameters
    return ("shared", "per_replica") if "per_replica" in params else ("shared",)


def default_data_order() -> str:
    """The data order a run uses by default (`config.data_order`, else 'shared')."""
    order = config_base.get_base_config().get("data_order", "shared")
    return order if order in data_orders() else "shared"


def run_campaign(config, workdir: str) -> dict[str, list[dict]]:
    """Run the campaign of `config` (every method) under `workdir`: method -> results rows.

    Each row is a results.csv row as a dict (at least `level` and `test_acc`).
    This is the benchmarks' one entry into the level loop (`lrr_jax.campaign.run`,
    what `python -m lrr_jax.main` calls).
    """
    from lrr_jax import campaign

    return campaign.run(config, workdir)


def peak_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of one jitted n x n matmul on the default device (best of `repeats`)."""
    a = jax.device_put(np.ones((n, n), np.float32))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    return 2 * n ** 3 / min(timing.timed(lambda: f(a)) for _ in range(repeats)) / 1e9


def memory_stats() -> dict | None:
    """`bytes_in_use`, `peak_bytes_in_use` (since the process started) and `bytes_limit` of
    device 0, where the platform reports them (GPU, TPU); None elsewhere (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - a platform without the query
        return None
    if not stats:
        return None
    return {k: int(stats[k]) for k in ("bytes_in_use", "peak_bytes_in_use", "bytes_limit")
            if k in stats}
