"""XLA_FLAGS for the processes the tests start.

tests/conftest.py sets the session's flags (on the CPU: LLVM at optimization
level 0 and one thread per op, see there) in XLA_FLAGS and in
LRR_JAX_TEST_XLA_FLAGS; a test that starts a process with its own device count
adds that count to them instead of replacing them.
"""

from __future__ import annotations

import os

SESSION = "LRR_JAX_TEST_XLA_FLAGS"


def flags(devices: int | None = None) -> str:
    """The session's XLA flags, with `devices` fake host devices if given."""
    parts = os.environ.get(SESSION, "").split()
    if devices is not None:
        parts.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(parts)
