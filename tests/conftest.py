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
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile

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
