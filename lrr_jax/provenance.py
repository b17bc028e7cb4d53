"""What made a run: `run.json` beside each run directory's `config.json`, one entry per invocation.

`recording(work_dir, dirs, devices)` (used by `campaign._run` once the
workdir is checked and the data placed, before training) appends an
invocation to `<run_dir>/run.json` of every method's run directory and
rewrites it when the block ends, however it ends:

    {"invocations": [{
        "started": "2026-01-02T03:04:05+00:00", "finished": ..., "status": "finished",
        "argv": [...], "cwd": ..., "workdir": ..., "host": ..., "pid": ...,
        "lrr_jax": {"version": "0.1.0", "git_commit": "<40 hex>" | null, "git_dirty": bool | null},
        "versions": {"python": ..., "jax": ..., "jaxlib": ..., "flax": ..., "optax": ...,
                     "orbax-checkpoint": ..., "numpy": ...},
        "backend": "gpu", "device_kind": "NVIDIA H200", "device_count": 1,
        "local_device_count": 1, "process_index": 0, "process_count": 1,
        "levels": [{"level": 0, "seconds": 12.3}, ...]}, ...]}

`status` is "running" while it runs (a killed run keeps that), then
"finished", "preempted (SIGTERM)", "interrupted (SIGINT)" or "error: <type>".
`levels` are the levels this invocation finished, with the wall time their
checkpoint records (`seconds`, also `wall_seconds` in results.csv). A resume
appends an invocation; earlier ones are kept. Only process 0 writes
(`workdir.write_atomic`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata

from lrr_jax import checkpoints, distributed, workdir

RUN_JSON = "run.json"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def devices_line(devices) -> str:
    """`devices: gpu, 1 x NVIDIA H200 (process 0 of 1)`: what this run computes on."""
    import jax

    kinds = sorted({d.device_kind for d in devices})
    local = sum(d.process_index == jax.process_index() for d in devices)
    here = f"{local} on this process; " if jax.process_count() > 1 else ""
    return (f"devices: {devices[0].platform}, {len(devices)} x {' + '.join(kinds)} "
            f"({here}process {jax.process_index()} of {jax.process_count()})")


def _git(args, cwd) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source() -> dict:
    """lrr_jax's version, and its git commit and dirty flag when it runs from a checkout.

    The commit is that of the repository holding this package's own files (not
    of an unrelated repository around an installed copy); None when there is
    none or git is missing.
    """
    from lrr_jax import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    out = {"version": __version__, "git_commit": None, "git_dirty": None}
    top = _git(["rev-parse", "--show-toplevel"], here)
    if not top or _git(["ls-files", "--error-unmatch", "__init__.py"], here) is None:
        return out
    out["git_commit"] = _git(["rev-parse", "HEAD"], here)
    status = _git(["status", "--porcelain", "--untracked-files=no"], top)
    out["git_dirty"] = None if status is None else bool(status)
    return out


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def invocation(work_dir: str, devices) -> dict:
    """This invocation's record (status 'running', no levels yet)."""
    import jax

    return {"started": _now(), "finished": None, "status": "running",
            "argv": list(sys.argv), "cwd": os.getcwd(), "workdir": os.path.abspath(work_dir),
            "host": socket.gethostname(), "pid": os.getpid(), "lrr_jax": source(),
            "versions": versions(), "backend": devices[0].platform,
            "device_kind": devices[0].device_kind, "device_count": len(devices),
            "local_device_count": sum(d.process_index == jax.process_index() for d in devices),
            "process_index": jax.process_index(), "process_count": jax.process_count(),
            "levels": []}


def _read(path: str) -> list:
    try:
        with open(path) as f:
            old = json.load(f)
        return list(old["invocations"])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        # Unreadable: kept aside, not silently dropped.
        if distributed.is_primary():
            os.replace(path, f"{path}.unreadable")
        return []


def status_of(error: BaseException | None) -> str:
    if error is None:
        return "finished"
    from lrr_jax import preemption

    if isinstance(error, preemption.Preempted):
        return str(error).split(")", 1)[0] + ")"  # 'preempted (SIGTERM)'
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    return f"error: {type(error).__name__}"


@contextlib.contextmanager
def recording(work_dir: str, dirs: dict, devices):
    """Record this invocation in `run.json` of each run directory in `dirs` (method -> dir)."""
    record = invocation(work_dir, devices)
    before = {m: set(checkpoints.Store(d).levels()) for m, d in dirs.items()}
    history = {m: _read(os.path.join(d, RUN_JSON)) for m, d in dirs.items()}

    def write(error=None, done=False):
        for m, d in dirs.items():
            mine = dict(record)
            if done:
                store = checkpoints.Store(d)
                new = sorted(set(store.levels()) - before[m])
                mine.update(finished=_now(), status=status_of(error), levels=[
                    {"level": lv, "seconds": store.restore_meta(checkpoints.level_name(lv))
                     .get("seconds")} for lv in new])
            workdir.write_atomic(os.path.join(d, RUN_JSON),
                                 json.dumps({"invocations": history[m] + [mine]}, indent=2)
                                 + "\n")

    write()
    try:
        yield record
    except BaseException as e:
        write(e, done=True)
        raise
    write(done=True)
