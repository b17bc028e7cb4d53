"""Multi-process (multi-host) start-up: `jax.distributed.initialize` from flags or environment.

One process per host (TPU VM worker, GPU node), all running the same command.
After `initialize`, `jax.devices()` lists every process's devices,
`parallel.Backend` maps over all of them (the data axis is global), every
process loads the whole dataset and takes its devices' slices of each global
batch, and only process 0 writes: checkpoints (through orbax, each process
configured as its own primary so no cross-process barrier is involved),
results.csv, TensorBoard (see `levels`, `checkpoints`). Every process restores
the same committed checkpoints when it resumes, so `--workdir` must be one
directory that every host sees (NFS/Filestore, or a gcsfuse mount of a
bucket); `check_shared_dir` verifies that at start.

How a process learns its place, first match wins:

1. arguments / absl flags `--coordinator_address=HOST:PORT --num_processes=N
   --process_id=I` (main.py defines them with `define_flags`);
2. environment `LRR_COORDINATOR_ADDRESS` (or JAX's own
   `JAX_COORDINATOR_ADDRESS`), `LRR_NUM_PROCESSES`, `LRR_PROCESS_ID`;
3. `--distributed` / `LRR_DISTRIBUTED=1` alone: `jax.distributed.initialize()`
   with no arguments, which detects Cloud TPU pod slices, SLURM, Open MPI and
   Kubernetes by itself.

Nothing given: a single process, and `initialize` does nothing. On CPU the
cross-process collectives use gloo (`jax_cpu_collectives_implementation`),
set here before the backend starts; GPUs and TPUs ignore that option.
"""

from __future__ import annotations

import os

import jax

_ENV = {"coordinator_address": ("LRR_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
        "num_processes": ("LRR_NUM_PROCESSES",),
        "process_id": ("LRR_PROCESS_ID",)}


def _from_env(name: str):
    for var in _ENV[name]:
        value = os.environ.get(var, "")
        if value:
            return value
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool | None = None,
               local_device_ids=None) -> bool:
    """Start the JAX distributed runtime when asked to; returns True if it was started.

    Must run before anything touches a JAX device (jax.devices(), any
    computation). Arguments left None come from the environment (module doc).

    Raises:
        ConfigError: an explicit address without both num_processes and process_id.
    """
    coordinator_address = coordinator_address or _from_env("coordinator_address")
    if num_processes is None and _from_env("num_processes") is not None:
        num_processes = int(_from_env("num_processes"))
    if process_id is None and _from_env("process_id") is not None:
        process_id = int(_from_env("process_id"))
    if auto is None:
        auto = os.environ.get("LRR_DISTRIBUTED", "").lower() in ("1", "true", "yes", "auto")
    if jax.distributed.is_initialized():
        return True
    explicit = coordinator_address is not None or num_processes is not None
    if not explicit and not auto:
        return False
    if explicit and (coordinator_address is None or num_processes is None
                     or process_id is None):
        from lrr_jax.errors import ConfigError

        raise ConfigError("coordinator_address", "a multi-process run needs all of "
                          "coordinator_address, num_processes and process_id (got "
                          f"{coordinator_address!r}, {num_processes!r}, {process_id!r})")
    # Only the CPU client reads this; it must be set before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=int(num_processes),
                                   process_id=int(process_id),
                                   local_device_ids=local_device_ids)
    else:
        jax.distributed.initialize()  # Cloud TPU / SLURM / Open MPI / Kubernetes detection
    return True


def define_flags() -> None:
    """absl flags for `initialize_from_flags` (called once by lrr_jax.main)."""
    from absl import flags

    flags.DEFINE_bool("distributed", False, "Start jax.distributed with cluster "
                      "auto-detection (Cloud TPU pod slices, SLURM, Open MPI).")
    flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 for a "
                        "multi-process run (also LRR_COORDINATOR_ADDRESS).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (LRR_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1 "
                         "(LRR_PROCESS_ID).")


def initialize_from_flags() -> bool:
    """`initialize` with the values of the flags from `define_flags`."""
    from absl import flags

    f = flags.FLAGS
    return initialize(f.coordinator_address, f.num_processes, f.process_id,
                      auto=True if f.distributed else None)


def is_primary() -> bool:
    """Whether this process writes the run's files: process 0 (always, with one process)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process got here (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """True if `flag` is True at any process (every process must call this)."""
    if jax.process_count() == 1:
        return bool(flag)
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(bool(flag)))).any())


def check_shared_dir(path: str) -> None:
    """Raise ConfigError unless every process sees the same directory `path`.

    Process 0 writes a file named by a token it broadcasts; every process must
    find it. Checkpoints are written by process 0 and read by all (resume), so
    a per-host local disk would let the processes take different branches.
    """
    if jax.process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    from lrr_jax.errors import ConfigError

    os.makedirs(path, exist_ok=True)
    token = np.frombuffer(os.urandom(8), np.uint32) if is_primary() else np.zeros(2, np.uint32)
    token = np.asarray(multihost_utils.broadcast_one_to_all(token))
    marker = os.path.join(path, f".shared-check-{token[0]:08x}{token[1]:08x}")
    if is_primary():
        with open(marker, "w") as f:
            f.write("lrr_jax multi-process workdir check\n")
    barrier("lrr_jax shared dir written")
    seen = np.asarray(multihost_utils.process_allgather(np.int32(os.path.exists(marker))))
    barrier("lrr_jax shared dir checked")
    if is_primary():
        os.remove(marker)
    if not seen.all():
        missing = [int(i) for i in np.flatnonzero(seen == 0)]
        raise ConfigError("workdir", f"{path} is not shared: processes {missing} do not see "
                          "files process 0 writes there; put --workdir on a file system every "
                          "host mounts (NFS/Filestore, a gcsfuse bucket)")

