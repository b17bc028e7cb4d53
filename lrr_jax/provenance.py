"""`run.json` beside each run directory's `config.json`: what made the run, and when.

One entry per session (each start or resume of the same command): the lrr_jax
version and git commit (with a dirty flag) when the package lives in a git
checkout, the versions of jax, jaxlib, flax, optax and orbax, the backend,
device kind and count, process count, host, start time and command line, and
the wall time of every level that session trained, and the data it trained on
(`data_record`: split sizes, and whether they are the real dataset's, which the
report uses to name a generated or partial archive). Earlier sessions are kept.
The file is informational: it is written atomically, never read by training,
and a damaged one is replaced, so it cannot stop a resume or change results.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time

import jax

from lrr_jax import __version__, workdir

NAME = "run.json"
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def _git() -> dict | None:
    """The commit of the checkout lrr_jax is imported from (None outside git)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", here, "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def session(devices) -> dict:
    """This process's provenance entry (no level times yet)."""
    return {
        "lrr_jax": __version__, "git": _git(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "python": sys.version.split()[0],
        "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
        "device_count": len(devices), "process_count": jax.process_count(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv,
        "levels": {},  # level -> wall seconds of training it in this session
    }


def data_record(config, info) -> dict:
    """{'dataset', 'train', 'test', 'standard_sizes'}: the examples a run uses.

    `standard_sizes` says whether they are the real dataset's split sizes (after
    `train_limit` / `test_limit`; what `data.cifar.size_warning` warns about on
    stderr): False for a generated or partial archive, None for a dataset without
    known real sizes (mnist1d, digits). `train` is None where this process kept
    only its devices' shards (`shard_train_data`); the test split then decides.
    `info` is the engine's `DataInfo`.
    """
    from lrr_jax import data  # its registry: the real split sizes

    train = None if config.shard_train_data else int(info.num_train)
    test = int(info.num_test)
    real = data.real_sizes(config) if config.dataset in data.DATASETS else None
    standard = None
    if real:
        expected = [min(n, int(limit)) if int(limit) else n
                    for n, limit in ((real[0], config.train_limit), (real[1], config.test_limit))]
        standard = test == expected[1] and train in (None, expected[0])
    return {"dataset": config.dataset, "train": train, "test": test,
            "standard_sizes": standard}


class Record:
    """The run.json of a campaign's run directories: start a session, add level times."""

    def __init__(self, run_dirs, devices, data: dict | None = None):
        self.paths = [os.path.join(d, NAME) for d in run_dirs]
        self.entry = session(devices)
        if data is not None:
            self.entry["data"] = data  # `data_record`
        self.history = {p: _read(p) for p in self.paths}
        self._write()

    def level_done(self, level: int, seconds: float) -> None:
        self.entry["levels"][str(level)] = round(float(seconds), 3)
        self._write()

    def _write(self) -> None:
        for p in self.paths:
            text = json.dumps({"sessions": [*self.history[p], self.entry]}, indent=2)
            workdir.write_atomic(p, text + "\n")


def _read(path: str) -> list:
    """The earlier sessions of a run.json ([] when absent or unreadable)."""
    try:
        with open(path) as f:
            sessions = json.load(f).get("sessions", [])
        return sessions if isinstance(sessions, list) else []
    except (OSError, ValueError, AttributeError):
        return []
