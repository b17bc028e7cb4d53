"""Orbax checkpoints of a run: rewind points, level finals and mid-level saves.

Layout under `<run>/checkpoints/`:
  init/             theta_0 (IMP's rewind target), written once
  rewind/           the state after warm-up (WR's rewind target), written once
  level_003/        the final state of level 3 and its results, written once
  mid_003_0042/     mid-level save after epoch 42 of level 3; older ones are
                    deleted only after a newer one is committed
  mid_003_0043_0000120/  a streamed level stopped inside epoch 43 after 120
                    steps (a preemption notice), with the input's position
  .tmp/             saves in progress; whatever is here when a save starts is
                    a leftover of a killed process and is deleted

Commit protocol (`Store.save`): orbax writes one composite checkpoint
(`state` + `meta` JSON) into `.tmp/<name>`; then every file's size and SHA-256
go into `lrr_manifest.json`, every file is fsynced, and the directory is
renamed to `<name>` (atomic on POSIX) and the parent fsynced. So a name
exists if and only if its checkpoint was written completely: a process
killed at any point leaves either the previous state or the new checkpoint,
never a half-written one under a name that `exists` accepts.

Damage after the commit (a bad disk, a truncated copy, a stray edit) is caught
by the manifest: `restore` and `verify_all` recompute the hashes and raise
`ConfigError('checkpoint', ...)` naming the damaged file and the previous good
checkpoint. Orbax itself does not notice flipped bytes inside a data file; it
restores them as they are. Checkpoints written before manifests existed are
restored without this check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from lrr_jax import distributed, faults
from lrr_jax.errors import ConfigError

_MID = re.compile(r"^mid_(\d{3})_(\d{4})(?:_(\d{7}))?$")
_LEVEL = re.compile(r"^level_(\d{3})$")
_NAME = re.compile(r"^(init|rewind|level_\d{3}|mid_\d{3}_\d{4}(_\d{7})?)$")
MANIFEST = "lrr_manifest.json"
TMP = ".tmp"
_COMMITTED = "commit_success.txt"  # orbax writes it last; part of every committed save
# Paths verified by this process, with the manifest's mtime: each is hashed once.
_verified: dict[str, int] = {}


def _checkpointer():
    # Each process is its own orbax primary, with no cross-process barriers: in
    # a multi-process run only process 0 writes (`Store.save`), while every
    # process restores the same committed checkpoints from the shared workdir.
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    handler = ocp.CompositeCheckpointHandler(
        state=ocp.StandardCheckpointHandler(multiprocessing_options=options),
        meta=ocp.JsonCheckpointHandler(multiprocessing_options=options),
        composite_options=ocp.CompositeOptions(multiprocessing_options=options))
    return ocp.Checkpointer(handler, multiprocessing_options=options)


def level_name(level: int) -> str:
    return f"level_{level:03d}"


def level_of(name: str) -> int:
    """The level of a level checkpoint's name ('level_003' -> 3)."""
    return int(_LEVEL.match(name).group(1))


def mid_name(level: int, epoch: int, step: int = 0) -> str:
    """After epoch `epoch` of `level`; with `step` > 0, inside epoch `epoch` after `step` steps."""
    return f"mid_{level:03d}_{epoch:04d}" + (f"_{step:07d}" if step else "")


def mid_position(name: str) -> tuple[int, int]:
    """(epoch under way, steps done in it) of a mid-level save: after epoch e is (e + 1, 0)."""
    m = _MID.match(name)
    epoch, step = int(m.group(2)), int(m.group(3) or 0)
    return (epoch, step) if step else (epoch + 1, 0)


def mid_at(level: int, position: tuple[int, int]) -> str:
    """The name of the mid-level save of `level` at `position` (inverse of `mid_position`)."""
    epoch, step = position
    return mid_name(level, epoch, step) if step else mid_name(level, epoch - 1)


def order(name: str) -> tuple:
    """Chronological sort key: init, rewind, mid_000_*, level_000, mid_001_*, level_001, ..."""
    if name == "init":
        return (-2,)
    if name == "rewind":
        return (-1,)
    if m := _MID.match(name):
        return (int(m.group(1)), 0, *mid_position(name))
    if m := _LEVEL.match(name):
        return (int(m.group(1)), 1)
    return (10**9, name)


def _files(root: str) -> list[str]:
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return sorted(out)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for d, _, names in os.walk(root, topdown=False):
        for n in names:
            _fsync(os.path.join(d, n))
        _fsync(d, directory=True)


class Store:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: str):
        self.dir = os.path.join(os.path.abspath(run_dir), "checkpoints")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def exists(self, name: str) -> bool:
        """True when `name` was written completely (committed)."""
        return os.path.isfile(os.path.join(self.path(name), _COMMITTED))

    def _clear_leftovers(self) -> None:
        """Remove what killed saves left behind (the run lock makes this process the writer)."""
        shutil.rmtree(os.path.join(self.dir, TMP), ignore_errors=True)
        for n in os.listdir(self.dir):
            if ".orbax-checkpoint-tmp" in n:  # orbax's own temporary directories
                shutil.rmtree(self.path(n), ignore_errors=True)

    def save(self, name: str, state: Any, meta: dict) -> None:
        """Write `state` (a pytree) and `meta` (JSON) atomically under `name`.

        A committed checkpoint of the same name is replaced. Committing a
        level's final state deletes that level's (and earlier) mid-level saves.
        Only process 0 of a multi-process run writes (all hold the same state).
        """
        if not distributed.is_primary():
            return
        os.makedirs(self.dir, exist_ok=True)
        self._clear_leftovers()
        target = self.path(name)
        if os.path.exists(target) and not self.exists(name):
            shutil.rmtree(target)  # a leftover of the layout without .tmp
        tmp = os.path.join(self.dir, TMP, name)
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        state = jax.tree.map(np.asarray, jax.device_get(state))
        _checkpointer().save(tmp, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        faults.hit("during_save", name)
        files = {f: [os.path.getsize(os.path.join(tmp, f)), _sha256(os.path.join(tmp, f))]
                 for f in _files(tmp)}
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump({"name": name, "files": files}, f, indent=1)
        _fsync_tree(tmp)
        old = None
        if os.path.exists(target):
            old = os.path.join(self.dir, TMP, f"{name}.replaced")
            os.rename(target, old)
        os.rename(tmp, target)  # the commit
        _fsync(self.dir, directory=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        _verified[target] = os.stat(os.path.join(target, MANIFEST)).st_mtime_ns
        faults.hit("after_save", name)
        if m := _LEVEL.match(name):
            for n, _ in self._mids():
                if int(_MID.match(n).group(1)) <= int(m.group(1)):
                    self._remove(n)

    def _remove(self, name: str) -> None:
        """Delete a checkpoint atomically: renamed into .tmp first, then removed from there.

        A process killed while deleting leaves nothing half-deleted under `name`.
        """
        tmp = os.path.join(self.dir, TMP)
        os.makedirs(tmp, exist_ok=True)
        trash = os.path.join(tmp, f"{name}.deleted")
        shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(self.path(name), trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _damaged(self, name: str, what: str) -> ConfigError:
        hint = self.previous(name)
        path = self.path(name)
        then = (f"it is recomputed from the previous good checkpoint {hint}" if hint
                else "it is recomputed from the config's seed")
        return ConfigError("checkpoint", f"{path} is damaged ({what}); delete it "
                           f"(rm -r {path}) and run the same command again: {then}")

    def verify(self, name: str) -> None:
        """Check every file of a committed checkpoint against its manifest.

        Raises:
          ConfigError('checkpoint'): a file is missing, has another size or
            another SHA-256, naming it and the previous good checkpoint.
        """
        root = self.path(name)
        manifest = os.path.join(root, MANIFEST)
        if not os.path.exists(manifest):
            return  # written before manifests existed
        mtime = os.stat(manifest).st_mtime_ns
        if _verified.get(root) == mtime:
            return
        try:
            with open(manifest) as f:
                files = json.load(f)["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise self._damaged(name, f"unreadable {MANIFEST}: {e}") from None
        for rel, (size, digest) in files.items():
            p = os.path.join(root, rel)
            if not os.path.isfile(p):
                raise self._damaged(name, f"{rel} is missing")
            if os.path.getsize(p) != size:
                raise self._damaged(name, f"{rel} has {os.path.getsize(p)} bytes, "
                                    f"{size} were written")
            if _sha256(p) != digest:
                raise self._damaged(name, f"{rel} does not match its SHA-256")
        _verified[root] = mtime

    def verify_all(self) -> None:
        """Verify every committed checkpoint a resume can read, oldest first.

        Of the mid-level saves only the newest of each unfinished level is read
        again (`latest_mid`); the others are skipped.
        """
        finished = set(self.levels())
        newest = {}
        for n, position in self._mids():
            level = int(_MID.match(n).group(1))
            if level not in finished and position >= newest.get(level, (None, (-1, 0)))[1]:
                newest[level] = (n, position)
        read = {n for n, _ in newest.values()}
        for name in sorted(self.names(), key=order):
            if _MID.match(name) and name not in read:
                continue
            self.verify(name)

    def restore(self, name: str, like: Any) -> tuple[Any, dict]:
        """(state, meta) of a committed checkpoint; `like` gives structure, shapes and dtypes."""
        self.verify(name)
        # numpy targets: orbax reads host arrays with no device placement and no
        # cross-process collectives, so processes may restore independently.
        abstract = jax.tree.map(lambda a: np.empty(np.shape(a), np.dtype(a.dtype)), like)
        try:
            out = _checkpointer().restore(self.path(name), args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for unreadable files
            raise self._damaged(name, f"{type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]}") from None
        state = jax.tree.map(np.asarray, out.state)
        return state, dict(out.meta)

    def restore_untyped(self, name: str) -> tuple[dict, dict]:
        """(state, meta) without a target: the state as a nested dict of arrays (analysis)."""
        self.verify(name)  # a damaged checkpoint raises ConfigError instead of wrong arrays
        out = _checkpointer().restore(self.path(name), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        state = out.state
        if not isinstance(state, dict):
            state = dataclasses.asdict(state) if dataclasses.is_dataclass(state) else dict(state)
        return state, dict(out.meta)

    def restore_meta(self, name: str) -> dict:
        """Only the JSON meta of a committed checkpoint."""
        self.verify(name)
        out = _checkpointer().restore(self.path(name), args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))
        return dict(out.meta)

    def names(self) -> list[str]:
        """Committed checkpoints, sorted by name."""
        if not os.path.isdir(self.dir):
            return []
        return sorted(n for n in os.listdir(self.dir) if _NAME.match(n) and self.exists(n))

    def levels(self) -> list[int]:
        """Levels whose final state is committed."""
        return [int(m.group(1)) for n in self.names() if (m := _LEVEL.match(n))]

    def _mids(self) -> list[tuple[str, tuple[int, int]]]:
        return [(n, mid_position(n)) for n in self.names() if _MID.match(n)]

    def mid_positions(self, level: int) -> list[tuple[int, int]]:
        """Positions (`mid_position`) of the committed mid-level saves of `level`, oldest first."""
        return sorted(p for n, p in self._mids() if int(_MID.match(n).group(1)) == level)

    def delete_mids(self, keep: str | None = None) -> None:
        """Remove mid-level saves other than `keep` (after a newer save is committed)."""
        if not distributed.is_primary() or not os.path.isdir(self.dir):
            return
        for n in os.listdir(self.dir):
            if _MID.match(n) and n != keep:
                self._remove(n)

    def previous(self, name: str) -> str | None:
        """The committed checkpoint written before `name`, to suggest after a failure."""
        earlier = [n for n in self.names() if order(n) < order(name)]
        return self.path(max(earlier, key=order)) if earlier else None


def clear_run(run_dir: str) -> list[str]:
    """Delete a run's outputs (checkpoints, results, TensorBoard, config); returns what went.

    For `overwrite=True` on a workdir that holds a run of another config: its
    checkpoints must not be resumed as if this config had written them.
    Only process 0 of a multi-process run deletes.
    """
    if not distributed.is_primary():
        return []
    gone = []
    for n in ("checkpoints", "tb", "results.csv", "sign_flips.csv", "config.json", "run.json"):
        p = os.path.join(run_dir, n)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
        else:
            continue
        gone.append(n)
    return gone
