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

    def put_sharded(self, local_blocks: np.ndarray) -> jax.Array:
        """Place per-device blocks along the data axis: a (num_devices, ...) global array.

        `local_blocks` holds this process's blocks, one per local device in the
        order of `self.devices`: shape (len(local_devices), ...). Each device
        stores only its own block; pass the result to a `map`ped function as a
        `sharded` argument, which then sees its block without the leading axis.
        """
        local_blocks = np.asarray(local_blocks)
        if local_blocks.shape[0] != len(self.local_devices):
            raise ValueError(f"{local_blocks.shape[0]} blocks for "
                             f"{len(self.local_devices)} local devices")
        sharding = NamedSharding(self._mesh, P(train.AXIS))
        shape = (self.num_devices, *local_blocks.shape[1:])
        arrays = [jax.device_put(block[None], d) for block, d in zip(local_blocks,
                                                                      self.local_devices)]
        return jax.make_array_from_single_device_arrays(shape, sharding, arrays)

    def abstract(self, tree: Any, sharded: bool = False) -> Any:
        """Shapes of a pytree placed as `put` (or `put_sharded`) would place it, without data.

        Each leaf (an array or a `jax.ShapeDtypeStruct`) becomes a
        `jax.ShapeDtypeStruct` with this backend's sharding, so a `map`ped
        function can be lowered and compiled (`.lower(...).compile()`) for
        devices that hold no data: the compile-only devices of a TPU topology
        (`lrr_jax.tpu_compile`). `sharded=True`: leaves of shape (num_devices, ...)
        split along the data axis, as `put_sharded` places them.
        """
        if sharded and self.kind == "pmap":
            # pmap lowers its mapped arguments as this process's blocks: (local devices, ...)
            # (one block per device on a multi-host topology, not the global array).
            n = len(self.local_devices)
            return jax.tree.map(lambda a: jax.ShapeDtypeStruct((n, *np.shape(a)[1:]), a.dtype),
                                tree)
        sharding = NamedSharding(self._mesh, P(train.AXIS)) if sharded else self._replicated
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype,
                                                           sharding=sharding), tree)

    def map(self, fn: Callable, num_args: int, donate_first: bool = False,
            sharded: tuple[int, ...] = ()) -> Callable:
        """Map a per-device function of `num_args` arguments.

        Arguments are replicated (`put`), except the positions in `sharded`,
        which are (num_devices, ...) arrays from `put_sharded`: each device's fn
        gets its own block. Outputs must be identical on every device (reduced
        over the data axis); they come back as ordinary, unmapped arrays. The
        result also has `.lower(*args)` (arrays or `abstract` shapes), as a
        jitted function has, for ahead-of-time compilation.
        """
        if self.kind == "pmap":
            # pmap needs one mapped argument: a per-device index that fn ignores.
            # Its leading axis is this process's device count; `devices` is the
            # global list, the same on every process, as pmap requires.
            # jax >= 0.8 runs pmap as jit(shard_map), so an unmapped
            # (in_axes=None) argument can be donated too.
            mapped = jax.pmap(lambda _, *args: fn(*args), axis_name=train.AXIS,
                              in_axes=(0,) + tuple(0 if i in sharded else None
                                                   for i in range(num_args)),
                              out_axes=None, devices=self.devices,
                              donate_argnums=(1,) if donate_first else ())
            return _Pmapped(mapped, np.arange(len(self.local_devices)))

        def blocks(*args):
            return fn(*(a[0] if i in sharded else a for i, a in enumerate(args)))

        specs = tuple(P(train.AXIS) if i in sharded else P() for i in range(num_args))
        mapped = jax.shard_map(blocks, mesh=self._mesh, in_specs=specs, out_specs=P())
        return jax.jit(mapped, donate_argnums=(0,) if donate_first else ())


class _Pmapped:
    """A pmapped function called without its per-device index argument; lowerable."""

    def __init__(self, mapped: Callable, index: np.ndarray):
        self._mapped, self._index = mapped, index

    def __call__(self, *args):
        return self._mapped(self._index, *args)

    def lower(self, *args):
        """The pmapped program lowered for `args` (arrays or `jax.ShapeDtypeStruct`s)."""
        return self._mapped.lower(self._index, *args)


def get(tree: Any) -> Any:
    """Host numpy copy of a pytree."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
