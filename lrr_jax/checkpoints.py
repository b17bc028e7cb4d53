"""Orbax checkpoints of a run: rewind points, level finals and mid-level saves.

Layout under `<run>/checkpoints/`:
  init/             theta_0 (IMP's rewind target), written once
  rewind/           the state after warm-up (WR's rewind target), written once
  level_003/        the final state of level 3 and its results, written once
  mid_003_0042/     mid-level save after epoch 42 of level 3; older ones are
                    deleted only after a newer one is committed

Each checkpoint is one orbax composite (`state` + `meta` JSON) written to a
temporary directory and renamed when complete, so a crash mid-write leaves no
directory that `exists` accepts: a save is committed once it holds
`commit_success.txt` (orbax writes it last).
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from lrr_jax.errors import ConfigError

_MID = re.compile(r"^mid_(\d{3})_(\d{4})$")
_LEVEL = re.compile(r"^level_(\d{3})$")


def _checkpointer():
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def level_name(level: int) -> str:
    return f"level_{level:03d}"


def mid_name(level: int, epoch: int) -> str:
    return f"mid_{level:03d}_{epoch:04d}"


class Store:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: str):
        self.dir = os.path.join(os.path.abspath(run_dir), "checkpoints")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def exists(self, name: str) -> bool:
        """True when `name` was written completely."""
        return os.path.isfile(os.path.join(self.path(name), "commit_success.txt"))

    def save(self, name: str, state: Any, meta: dict) -> None:
        """Write `state` (a pytree) and `meta` (JSON) atomically under `name`."""
        os.makedirs(self.dir, exist_ok=True)
        target = self.path(name)
        if os.path.exists(target) and not self.exists(name):
            shutil.rmtree(target)  # a leftover from a crash mid-write
        state = jax.tree.map(np.asarray, jax.device_get(state))
        _checkpointer().save(target, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, name: str, like: Any) -> tuple[Any, dict]:
        """(state, meta) of a committed checkpoint; `like` gives structure, shapes and dtypes."""
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)
                                if not isinstance(a, jax.ShapeDtypeStruct) else a, like)
        try:
            out = _checkpointer().restore(self.path(name), args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for unreadable files
            hint = self.previous(name)
            more = f"; the previous good checkpoint is {hint}" if hint else ""
            raise ConfigError("checkpoint", f"cannot restore {self.path(name)} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}){more}. "
                              "Delete the damaged directory to resume from there.") from None
        state = jax.tree.map(np.asarray, out.state)
        return state, dict(out.meta)

    def restore_meta(self, name: str) -> dict:
        """Only the JSON meta of a committed checkpoint."""
        out = _checkpointer().restore(self.path(name), args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))
        return dict(out.meta)

    def names(self) -> list[str]:
        if not os.path.isdir(self.dir):
            return []
        return sorted(n for n in os.listdir(self.dir) if self.exists(n))

    def levels(self) -> list[int]:
        """Levels whose final state is committed."""
        return [int(m.group(1)) for n in self.names() if (m := _LEVEL.match(n))]

    def latest_mid(self, level: int) -> tuple[str, int] | None:
        """(name, epoch) of the newest committed mid-level save of `level`."""
        found = [(n, int(m.group(2))) for n in self.names()
                 if (m := _MID.match(n)) and int(m.group(1)) == level]
        return max(found, key=lambda t: t[1]) if found else None

    def delete_mids(self, keep: str | None = None) -> None:
        """Remove mid-level saves other than `keep` (after a newer save is committed)."""
        if not os.path.isdir(self.dir):
            return
        for n in os.listdir(self.dir):
            if _MID.match(n) and n != keep:
                shutil.rmtree(self.path(n), ignore_errors=True)

    def previous(self, name: str) -> str | None:
        """The committed checkpoint written before `name`, to suggest after a failure."""
        order = [n for n in self.names() if n != name]
        if name in ("init",):
            return None
        candidates = [n for n in order if n < name or n in ("init", "rewind")]
        return self.path(candidates[-1]) if candidates else None
