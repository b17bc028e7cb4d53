"""The test session shares one persistent XLA compilation cache.

Many tests compile the same small programs (the quickstart's MLP epoch, a
narrow ResNet's) in this process and in the `python -m lrr_jax.main`
subprocesses they start; with the cache each distinct program is compiled
once per session and loaded afterwards. The cache starts empty in a fresh
temporary folder, so a session never reads another session's programs, and
it is removed at the end. Set LRR_JAX_TEST_CACHE=0 to compile every time.

The tests run on the CPU. libtpu (the test extra installs it for
tests/test_tpu_compile.py, which compiles for TPU topologies without a TPU)
makes every JAX process probe for a TPU first (~0.8 s and five lines of
warnings, in this process and in each `python -m lrr_jax.main` a test starts):
JAX_PLATFORMS=cpu skips the probe unless JAX_PLATFORMS is set or a CUDA plugin
is installed (the GPU check runs some tests on its GPU).

On the CPU the session's programs are compiled with LLVM at optimization level
0 (`--xla_backend_optimization_level=0`) and run their convolutions and matmuls
on one thread each (`--xla_cpu_multi_thread_eigen=false`), in XLA_FLAGS here
and in every process a test starts (tests/xla_env.py adds a device count to
them). The tests' programs are tiny and compile-bound: level 0 cuts about a
third of a narrow ResNet test's time, and one thread per op keeps the workers
below from each spreading its ops over every core (~10% on the 1-vs-8-device
and precision tests, measured at one worker per core). Both change the machine
code, not the program (XLA's HLO passes run as before), and every comparison
in the suite is between programs compiled alike or within a stated tolerance.
LRR_JAX_TEST_XLA_OPT=1 keeps XLA's defaults; the GPU check and the benchmarks
always use them.

`python -m pytest -q -n auto` (the README's test command; pytest-xdist is in
the test extra) runs the suite in worker processes, two per core, at most 4 and
at most one per `GIB_PER_WORKER` of available memory (`auto_workers`), a test
file at a time per worker (module fixtures are built once), the files that take
longest first (`LONGEST_FIRST`, measured with `--durations`; it only orders the
work), so that no long file starts last and runs alone. Two per core, because
the tests wait: for the processes they start to import and load, for
checkpoints to reach the disk, for another process at a barrier. On 2 cores,
beside a low-priority job that took the idle CPU, `/usr/bin/time` put the suite
at 163% of the CPU with 2 workers (833 s), 172% with 3 (708 s) and 188% with 4
(662 s). `-n N` chooses N. Without `-n` the suite runs in this process, in the
same order.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile

import pytest
import xla_env

# The test files that take longest (`--durations` at `-n 2` on 2 cores), longest first;
# the rest follow in their usual order.
LONGEST_FIRST = ("test_gpu_check.py", "test_multihost.py", "test_stream.py",
                 "test_reliability.py", "test_tpu_compile.py", "test_rewind_resnet.py",
                 "test_parallel.py", "test_bench.py", "test_precision.py",
                 "test_end_to_end.py", "test_errors.py", "test_lockstep.py")

if os.environ.get("LRR_JAX_TEST_CACHE", "1") != "0" and \
        "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="lrr_jax_tests_xla_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    # Read by JAX at import, here and in every subprocess (which inherits the environment).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

if "JAX_PLATFORMS" not in os.environ and not any(
        importlib.util.find_spec(p) for p in ("jax_cuda12_plugin", "jax_cuda13_plugin")):
    os.environ["JAX_PLATFORMS"] = "cpu"

if os.environ.get("JAX_PLATFORMS") == "cpu" and os.environ.get("LRR_JAX_TEST_XLA_OPT") != "1":
    os.environ[xla_env.SESSION] = \
        "--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false"
    if xla_env.flags() not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                            xla_env.flags()]).strip()


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


# A worker, the processes its tests start (up to three `lrr_jax.main` or JAX workers at
# once) and their compilations: 3 workers took 5.5 GiB at their peak, 4 took 6.7 GiB
# (MemAvailable's lowest point during `bash .ci/run` on 2 cores).
GIB_PER_WORKER = 2.5


def _available_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kib / 2 ** 20
    except (OSError, StopIteration, ValueError):  # not Linux: no memory bound
        return float("inf")


def auto_workers(cores: int, available_gib: float) -> int:
    """`-n auto`'s worker count: two per core, at most 4, one per GIB_PER_WORKER available."""
    return max(1, min(2 * cores, 4, int(available_gib // GIB_PER_WORKER)))


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: unknown without it
def pytest_xdist_auto_num_workers(config):
    return auto_workers(len(os.sched_getaffinity(0)), _available_gib())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "load":  # a --dist the command line chose
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # keep the order above, not the most tests first
    return LoadFileScheduling(config, log)
