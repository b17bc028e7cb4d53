"""One process per workdir: `<workdir>/.lock`, held with `fcntl.flock` for the whole run.

The kernel releases a flock when its file is closed, including when the
process dies (SIGKILL, OOM, a lost VM), so a killed run never leaves a stale
lock behind: running the same command again just takes it. The file stays in
place between runs (deleting it would race with a process opening it) and
holds the pid, host and start time of the last holder, for the message a
second process gets. flock works on local disks and on NFSv4 (Linux emulates
it with POSIX locks there); on file systems without locks, do not start two
runs on the same workdir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

from lrr_jax.errors import ConfigError

LOCK_NAME = ".lock"


def _describe(path: str) -> str:
    try:
        with open(path) as f:
            info = json.load(f)
        return (f"pid {info['pid']} on host {info['host']} (started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['time']))})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold(workdir: str):
    """Hold the lock of `workdir` (created if needed) while the block runs.

    Raises:
      ConfigError('workdir'): another live process holds it.
    """
    workdir = os.path.abspath(workdir)
    existed = os.path.isdir(workdir)
    path = os.path.join(workdir, LOCK_NAME)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # a file, a path through a file, read-only, no permission
        what = ("is a file, not a directory" if os.path.isfile(workdir) else
                f"cannot be used as the workdir ({e.strerror})")
        raise ConfigError("workdir", f"{workdir} {what}; pass a directory this user can "
                          "write") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError("workdir", f"{workdir} is in use by {_describe(path)} (lock file "
                          f"{path}); wait for that run to end or use another --workdir") from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
                "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    except ConfigError:
        # A run refused before it wrote anything leaves no workdir holding only the lock.
        if not existed and os.listdir(workdir) == [LOCK_NAME]:
            os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(workdir)
        raise
    finally:
        os.close(fd)  # releases the lock
