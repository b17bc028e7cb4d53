"""Data parallelism: the one module that knows how per-device code is mapped.

Per-device functions (see `train.py`) use the collective axis `train.AXIS`.
A `Backend` maps them over the devices with either `jax.pmap`
(`config.parallel = 'pmap'`) or `jax.jit` + `jax.shard_map`
(`config.parallel = 'shard_map'`). In both, the train state and the dataset
are replicated: every device holds them whole and takes its slice of each
batch, so the same step runs on 1 or N devices and gives the same result up
to floating-point reassociation.

Multi-process (`lrr_jax.distributed`, e.g. a TPU pod slice or several GPU
hosts): the default device list is the global `jax.devices()`, so
`lax.axis_index` / `pmean` span every process and `num_devices` is the global
count. (A pmap over `jax.local_devices()` in a multi-process run would give
each process its own axis of local size: processes would train separately.)
Every process runs the same program on the same (replicated) inputs, and the
outputs are fully replicated, so each process can read them.

Both backends donate the state argument when asked (`donate_first`): its
buffers are reused for the new state, so a level holds one copy of
params/momentum/mask, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lrr_jax import train

BACKENDS = ("pmap", "shard_map")


class Backend:
    """Maps per-device functions over `devices` and places data for them."""

    def __init__(self, kind: str, devices=None):
        if kind not in BACKENDS:
            raise ValueError(f"unknown parallel backend {kind!r}; expected one of {BACKENDS}")
        self.kind = kind
        self.devices = list(devices) if devices is not None else jax.devices()
        self.num_devices = len(self.devices)  # global: the data axis spans all processes
        self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
        if not self.local_devices:
            raise ValueError("none of the given devices belongs to this process")
        self._mesh = Mesh(np.array(self.devices), (train.AXIS,))
        self._replicated = NamedSharding(self._mesh, P())

    def put(self, tree: Any) -> Any:
        """Place a host pytree where the mapped functions read it (replicated).

        Both backends return their outputs with this sharding, so feeding an
        output back in (the next epoch) hits the compilation cache.
        """
        return jax.device_put(tree, self._replicated)

    def map(self, fn: Callable, num_args: int, donate_first: bool = False) -> Callable:
        """Map a per-device function of `num_args` replicated arguments.

        Its outputs must be identical on every device (reduced over the data
        axis); they come back as ordinary, unmapped arrays.
        """
        if self.kind == "pmap":
            # pmap needs one mapped argument: a per-device index that fn ignores.
            # Its leading axis is this process's device count; `devices` is the
            # global list, the same on every process, as pmap requires.
            # jax >= 0.8 runs pmap as jit(shard_map), so an unmapped
            # (in_axes=None) argument can be donated too.
            mapped = jax.pmap(lambda _, *args: fn(*args), axis_name=train.AXIS,
                              in_axes=(0,) + (None,) * num_args, out_axes=None,
                              devices=self.devices,
                              donate_argnums=(1,) if donate_first else ())
            index = np.arange(len(self.local_devices))
            return lambda *args: mapped(index, *args)
        mapped = jax.shard_map(fn, mesh=self._mesh, in_specs=(P(),) * num_args, out_specs=P())
        return jax.jit(mapped, donate_argnums=(0,) if donate_first else ())


def get(tree: Any) -> Any:
    """Host numpy copy of a pytree."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
