"""Bench part `checkpoints`: lrr_jax's `checkpoints.Store` against orbax's `CheckpointManager`.

The same pytree (params, momentum and mask, float32, `mb` MiB in all) is
saved and restored through both, each the way a run uses it:
  - Store: orbax `Checkpointer` into `.tmp/<name>`, a size + SHA-256 manifest,
    fsync, rename (the commit); restore verifies the manifest first, as a
    resuming process does (the in-process cache of verified paths is cleared).
  - CheckpointManager: integer steps, synchronous save (its own temporary
    directory and atomic rename), and the asynchronous save (time until
    `save` returns, and until `wait_until_finished`).
Then one byte in the middle of each checkpoint's largest file is flipped and
both are restored again: whether the damage is caught, or the arrays come
back different without a word.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import orbax.checkpoint as ocp

from lrr_jax import checkpoints
from lrr_jax.bench import timing
from lrr_jax.errors import ConfigError

LEAF = 2 ** 20  # floats per leaf (4 MiB): the size of a large ResNet kernel


def make_state(mb: float, seed: int = 0) -> dict:
    """{params, opt_state, mask}: float32 leaves of up to LEAF floats, `mb` MiB in all."""
    per_part = max(1, int(mb * 2 ** 20 / 4 / 3))
    rng = np.random.default_rng(seed)
    sizes = [LEAF] * (per_part // LEAF) + ([per_part % LEAF] if per_part % LEAF else [])
    def part(kind):
        return {f"layer_{i:02d}": (rng.random(n, dtype=np.float32) > 0.5).astype(np.float32)
                if kind == "mask" else rng.standard_normal(n, dtype=np.float32)
                for i, n in enumerate(sizes)}
    return {"params": part("params"), "opt_state": part("opt_state"), "mask": part("mask")}


def _largest_file(root: str) -> str:
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    return max(files, key=os.path.getsize)


def _flip_byte(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


def _equal(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[p][k], np.asarray(b[p][k])) for p in a for k in a[p])


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for i in range(repeats):
        t0 = time.perf_counter()
        out = fn(i)
        times.append(time.perf_counter() - t0)
    return timing.rnd(statistics.median(times)), out


def _manager(root: str, asynchronous: bool):
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=asynchronous,
                                           max_to_keep=None, create=True)
    return ocp.CheckpointManager(root, options=options, item_names=("state", "meta"))


def _args(state, meta):
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))


def _restore_args(like):
    abstract = {p: {k: np.empty(v.shape, v.dtype) for k, v in d.items()} for p, d in like.items()}
    return ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              meta=ocp.args.JsonRestore())


def bench_one(mb: float, repeats: int, root: str) -> dict:
    state = make_state(mb)
    meta = {"level": 0, "results": [{"test_acc": 0.5}]}
    nbytes = sum(v.nbytes for d in state.values() for v in d.values())
    rec = {"state_mib": timing.rnd(nbytes / 2 ** 20), "leaves": sum(len(d) for d in
                                                                    state.values())}
    # lrr_jax's Store.
    store = checkpoints.Store(os.path.join(root, "store"))
    rec["store_save_seconds"], _ = _timed(
        lambda i: store.save(checkpoints.level_name(i), state, meta), repeats)

    def store_restore(i):
        checkpoints._verified.clear()  # a resuming process has verified nothing yet
        return store.restore(checkpoints.level_name(i), state)[0]
    rec["store_restore_seconds"], out = _timed(store_restore, repeats)
    assert _equal(state, out)
    # orbax's CheckpointManager, synchronous and asynchronous saves.
    mngr = _manager(os.path.join(root, "manager"), asynchronous=False)
    rec["manager_save_seconds"], _ = _timed(lambda i: mngr.save(i, args=_args(state, meta)),
                                            repeats)
    rec["manager_restore_seconds"], out = _timed(
        lambda i: mngr.restore(i, args=_restore_args(state)).state, repeats)
    assert _equal(state, out)
    amngr = _manager(os.path.join(root, "manager_async"), asynchronous=True)
    returned, finished = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        amngr.save(i, args=_args(state, meta))
        returned.append(time.perf_counter() - t0)
        amngr.wait_until_finished()
        finished.append(time.perf_counter() - t0)
    rec["manager_async_save_returns_seconds"] = timing.rnd(statistics.median(returned))
    rec["manager_async_save_finished_seconds"] = timing.rnd(statistics.median(finished))
    amngr.close()
    # One flipped byte in the largest file of each.
    name = checkpoints.level_name(0)
    _flip_byte(_largest_file(store.path(name)))
    checkpoints._verified.clear()
    try:
        store.restore(name, state)
        rec["store_flipped_byte"] = "restored without error"
    except ConfigError as e:
        what = str(e).split(" is damaged (", 1)[-1].split("); delete it", 1)[0]
        rec["store_flipped_byte"] = "refused: " + what
    _flip_byte(_largest_file(os.path.join(root, "manager", "0")))
    try:
        out = mngr.restore(0, args=_restore_args(state)).state
        rec["manager_flipped_byte"] = ("restored equal arrays" if _equal(state, out) else
                                       "restored different arrays without error")
    except Exception as e:  # noqa: BLE001 - whatever orbax raises is the finding
        rec["manager_flipped_byte"] = f"raised {type(e).__name__}"
    mngr.close()
    return rec


def bench_checkpoints(args) -> dict:
    """Save/restore seconds and flipped-byte behaviour for each size in args.checkpoint_mib."""
    rows = []
    for mb in args.checkpoint_mib:
        root = tempfile.mkdtemp(prefix="lrr_jax_ckpt_bench_")
        try:
            rows.append(bench_one(mb, args.repeats, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"repeats": args.repeats, "sizes": rows,
            "store_save_over_manager_save": [
                timing.rnd(r["store_save_seconds"] / r["manager_save_seconds"]) for r in rows]}
