"""The plan of a run before it runs (`--config.dry_run=True`), and the CPU warning of a long run.

`run(config, work_dir)` prints, without training and without writing
anything (not even the workdir): the config keys that differ from the base
config, the replicas (method, seed, p), levels x epochs x steps, the devices,
the memory of params, optimizer state and mask per replica and on each
device (with the data placed there), what the workdir holds (finished
levels, what is left) and a projected wall time. The projection is
measured: the data is loaded and placed as the run does it
(`engine.make`), theta_0 made, the level program compiled and run for one
epoch, then timed over `EPOCHS_TIMED` more epochs (`Engine.train_epoch` on
the real data), the evaluation compiled and timed once; the median epoch
and evaluation are scaled to the epochs, evaluations and replica groups
still to run, plus the compile times. Masked weights are computed densely,
so every level costs what level 0 costs. Not included: checkpoint writes,
pruning and rewinding on the host (seconds per level for the paper's
ResNets), the data loading (shown on its own).

It runs the checks the run runs (config values, a workdir of another
config, damaged checkpoints, transfer sources) and stops on the same
one-line errors; a workdir in use by another process is only noted.

`watch(campaign)` (a real run on a CPU) warns when the model is the paper's
full-width ResNet, and after the first epochs when the measured epochs
project the run to more than `SLOW_SECONDS`; `run` warns the same way from
its measurement.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time

from lrr_jax import (
    checkpoints,
    config_base,
    distributed,
    engine,
    epochs,
    parallel,
    provenance,
    replicas,
    runlock,
    studies,
    workdir,
)

EPOCHS_TIMED = 2  # after the first (compiling) epoch; 1 when that one took over a minute
SLOW_SECONDS = 3600.0  # a CPU run projected beyond this is warned about


# ---- formatting -------------------------------------------------------------------------------
def nbytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def duration(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def ranges(levels) -> str:
    """[0, 1, 2, 5] -> '0..2, 5'."""
    out, levels = [], sorted(levels)
    i = 0
    while i < len(levels):
        j = i
        while j + 1 < len(levels) and levels[j + 1] == levels[j] + 1:
            j += 1
        out.append(str(levels[i]) if i == j else f"{levels[i]}..{levels[j]}")
        i = j + 1
    return ", ".join(out)


def _print(*lines) -> None:
    if distributed.is_primary():
        for line in lines:
            print(line, flush=True)


def _warn(line: str) -> None:
    if distributed.is_primary():
        print(f"warning: {line}", file=sys.stderr, flush=True)


# ---- the parts of the plan --------------------------------------------------------------------
def config_lines(config) -> list[str]:
    """The keys whose value differs from `config_base.get_base_config()`."""
    base = json.loads(config_base.get_base_config().to_json())
    mine = json.loads(config.to_json())
    out = []
    for key in mine:
        if key not in base:
            out.append(f"  {key} = {config[key]!r} (not in the base config)")
        elif mine[key] != base[key]:
            out.append(f"  {key} = {config[key]!r} (base: {config_base.get_base_config()[key]!r})")
    return out or ["  (the base config's values)"]


def paper_scale(config) -> bool:
    """The paper's full-width ResNets (hours per level even on one GPU)."""
    return str(config.model).startswith("resnet") and float(config.width) >= 1.0


def workdir_lines(config, work_dir: str) -> tuple[list[str], list[int], bool]:
    """What the workdir holds, with the run's own checks (raise ConfigError as it would).

    Returns (lines, levels still to train, whether the warm-up is still to run).
    Reads only; creates nothing.
    """
    dirs = workdir.run_dirs(config, work_dir)
    lines, todo, warm = [], set(), False
    if not os.path.isdir(work_dir):
        lines.append(f"workdir: {work_dir} (does not exist yet; a run creates it)")
    else:
        holder = runlock.holder(work_dir)
        lines.append(f"workdir: {work_dir}" + (f" (in use by {holder}: a run now would be "
                                               "refused)" if holder else ""))
    for m, d in dirs.items():
        stale = os.path.isdir(d) and workdir.check_workdir(workdir.method_config(config, m), d)
        store = checkpoints.Store(d)
        if stale:
            lines.append(f"  {m}: {d} holds a run of another config: overwrite=True deletes it "
                         "and starts afresh")
            done = []
        else:
            if os.path.isdir(store.dir):
                store.verify_all()  # a damaged checkpoint: the run's one-line error
            done = store.levels() if os.path.isdir(store.dir) else []
        left = [lv for lv in range(int(config.levels)) if lv not in done]
        todo.update(left)
        warm = warm or (int(config.warmup_epochs) > 0 and bool(left) and
                        (stale or not store.exists("rewind")))
        if not done:
            what = f"new run in {d}"
        else:
            what = f"levels {ranges(done)} finished"
        mid = None if stale or not left else store.latest_mid(left[0])
        rest = (f"to run: level{'s' if len(left) > 1 else ''} {ranges(left)}" if left
                else "nothing to train (results.csv is rebuilt)")
        if mid:
            rest += f" (level {left[0]} resumes after epoch {mid[1]})"
        lines.append(f"  {m}: {what}; {rest}")
    workdir.check_sources(config, list(dirs))
    return lines, sorted(todo), warm


def memory_lines(eng, init, count: int) -> list[str]:
    """Bytes of a replica's state and of what each device holds during training."""
    import jax

    def size(tree):
        return sum(a.nbytes for a in jax.tree.leaves(tree)) / count

    parts = {"params": size(init.params), "optimizer state": size(init.opt_state),
             "mask": size(init.mask), "batch stats": size(init.batch_stats)}
    per = sum(parts.values())
    data = sum(a.addressable_shards[0].data.nbytes for a in jax.tree.leaves(eng.placed))
    n = eng.backend.num_devices
    return [
        "memory: " + ", ".join(f"{k} {nbytes(v)}" for k, v in parts.items())
        + f" per replica ({nbytes(per)})",
        f"memory on each of the {n} device{'s' if n > 1 else ''}: {count} replica"
        f"{'s' if count > 1 else ''} {nbytes(per * count)} + data {nbytes(data)} = "
        f"{nbytes(per * count + data)} (total {nbytes((per * count + data) * n)}; state and data"
        " are replicated on every device" + (", the training set sharded)" if
                                              eng.config.shard_train_data else ")")
        + "; activations and gradients come on top"]


def _peak_memory(eng) -> str | None:
    stats = [d.memory_stats() for d in eng.backend.local_devices]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    return nbytes(max(peaks)) if peaks and None not in peaks else None


def measure(config, eng, reps, init) -> dict:
    """Seconds of the level program (first call and steady epochs) and of an evaluation."""
    import jax

    groups = replicas.groups(len(reps), config.replica_batch)
    g = groups[0]
    state = eng.put(studies.take(init, g))
    group = [reps[i] for i in g]

    def epoch(e, state):
        t = time.perf_counter()
        state, m = eng.train_epoch("level", state, epochs._keys(config, group, 0, e))
        parallel.get(m)
        jax.block_until_ready(state)
        return state, time.perf_counter() - t

    state, first = epoch(0, state)
    timed = []
    for e in range(1, 1 + (1 if first > 60 else EPOCHS_TIMED)):
        state, t = epoch(e, state)
        timed.append(t)
    t = time.perf_counter()
    eng.evaluate(state)
    eval_first = time.perf_counter() - t
    t = time.perf_counter()
    eng.evaluate(state)
    eval_steady = time.perf_counter() - t
    steady = statistics.median(timed)
    return {"first": first, "epochs": timed, "epoch": steady, "eval_first": eval_first,
            "eval": eval_steady, "groups": len(groups), "group": len(g)}


def project(config, m: dict, levels_left: int, warm: bool) -> dict:
    """Seconds to run `levels_left` levels (and the warm-up) from the measured `m`."""
    epl, every = int(config.epochs_per_level), int(config.eval_every_epochs)
    n_epochs = levels_left * epl + (int(config.warmup_epochs) if warm else 0)
    evals = levels_left * (sum(1 for e in range(epl) if (e + 1) % every == 0 or e == epl - 1)
                           + 2)  # + 2: the pruned-weights invariant evaluates twice
    train = n_epochs * m["groups"] * m["epoch"]
    evaluation = evals * m["groups"] * m["eval"]
    compile_ = (max(m["first"] - m["epoch"], 0.0) * (2 if warm else 1)
                + max(m["eval_first"] - m["eval"], 0.0)) if levels_left or warm else 0.0
    return {"epochs": n_epochs, "evals": evals, "train": train, "eval": evaluation,
            "compile": compile_, "total": train + evaluation + compile_}


def projection_lines(config, m, p) -> list[str]:
    g = m["groups"]
    groups = f" x {g} replica groups" if g > 1 else ""
    timed = ", ".join(duration(t) for t in m["epochs"])
    return [
        f"projected wall time: {duration(p['total'])} (train {duration(p['train'])}: "
        f"{p['epochs']} epochs{groups} x {duration(m['epoch'])}; evaluation "
        f"{duration(p['eval'])}: {p['evals']}{groups} x {duration(m['eval'])}; compile "
        f"~{duration(p['compile'])})",
        f"  measured here: the level program's first call {duration(m['first'])} (compile + "
        f"1 epoch), then {len(m['epochs'])} epoch{'s' if len(m['epochs']) > 1 else ''} "
        f"({timed}; median used) on the real data, {m['group']} replica"
        f"{'s' if m['group'] > 1 else ''} vmapped; evaluation {duration(m['eval_first'])} "
        f"first, {duration(m['eval'])} after; scaled to the epochs and evaluations left. "
        "Not included: checkpoint writes, pruning and rewinding on the host."
        + (" The warm-up program is compiled separately (assumed as long as the level one)."
           if int(config.warmup_epochs) else "")]


def cpu_warning(config, devices, total: float, how: str) -> str | None:
    if devices[0].platform != "cpu" or not (total > SLOW_SECONDS or paper_scale(config)):
        return None
    return (f"on CPU this run projects to {duration(total)} ({how}); a GPU or TPU runs it "
            "far faster: see README, GPU / TPU VM")


# ---- the dry run ------------------------------------------------------------------------------
def run(config, work_dir: str) -> dict:
    """Print the plan of `config` in `work_dir`; train nothing, write nothing. Returns it."""
    config_base.validate(config)
    work_dir = os.path.abspath(work_dir)
    runlock.check_path(work_dir)
    _print("dry run: nothing is trained or written", "config (keys that differ from the base "
           "config, lrr_jax/config_base.py):", *config_lines(config))
    if config.experiment != "prune":
        _print(f"experiment {config.experiment!r}: no plan beyond the config")
        return {}
    lines, todo, warm = workdir_lines(config, work_dir)
    reps = replicas.from_config(config)
    methods = config_base.methods_of(config)
    probs = config_base.parse_list(config.perturb_probs, float)
    groups = replicas.groups(len(reps), config.replica_batch)
    t = time.perf_counter()
    eng = engine.make(config)
    loading = time.perf_counter() - t
    init = eng.init_states([r.seed for r in reps])
    m = measure(config, eng, reps, init)
    p = project(config, m, len(todo), warm)
    steps = eng.steps_per_epoch
    ds = eng.dataset
    _print(
        f"replicas: {len(reps)} replicas ({len(methods)} method{'s' if len(methods) > 1 else ''}"
        f" x {len(probs)} perturbation probabilit{'ies' if len(probs) > 1 else 'y'} x "
        f"{config.num_replicas} seed{'s' if int(config.num_replicas) > 1 else ''}), trained "
        f"together in {len(groups)} group{'s' if len(groups) > 1 else ''} of <= "
        f"{len(groups[0])} ({config.data_order} data order)",
        *(f"  {r.method} replica {r.index}: seed {r.seed}, p={r.perturb_prob:g}" for r in reps),
        f"schedule: {config.levels} levels x {config.epochs_per_level} epochs x {steps} steps "
        f"per epoch (batch {config.batch_size}, {ds.train_x.shape[0] or 'sharded'} training "
        f"examples) + {config.warmup_epochs} warm-up epochs; density "
        f"{(1 - config.prune_fraction) ** (int(config.levels) - 1):.3g} at the last level",
        f"data: {config.dataset}, model {config.model}"
        + (f" (width {config.width})" if config.model != "mlp" else
           f" (hidden {tuple(config.mlp_hidden)})")
        + f", {config.dtype}; loaded and placed in {duration(loading)}",
        provenance.devices_line(eng.backend.devices),
        *memory_lines(eng, init, len(reps)),
        *lines,
        *projection_lines(config, m, p))
    peak = _peak_memory(eng)
    if peak:
        _print(f"  peak device memory during the measurement: {peak}")
    warning = cpu_warning(config, eng.backend.devices, p["total"], "measured by this dry run")
    if warning:
        _warn(warning)
    return {"measured": m, "projected": p}


# ---- a real run on a CPU ----------------------------------------------------------------------
class _Watch:
    """Wraps `Engine.train_epoch`: times whole epochs (all replica groups, evaluation, hooks)."""

    def __init__(self, c, inner, epochs_left: int):
        self.config, self.devices = c.config, c.engine.backend.devices
        self.inner, self.epochs_left = inner, epochs_left
        self.groups = len(replicas.groups(len(c.reps), c.config.replica_batch))
        self.calls: list[tuple[float, str]] = []
        self.first: dict[str, int] = {}
        self.t0, self.done = time.perf_counter(), False

    def __call__(self, phase, state, keys):
        now = time.perf_counter()
        k = len(self.calls)
        self.first.setdefault(phase, k)
        self.calls.append((now, phase))
        g = self.groups
        if not self.done and k >= 2 * g and self.first[phase] < k - g and all(
                ph == phase for _, ph in self.calls[k - g:]):
            self.done = True
            epoch = now - self.calls[k - g][0]  # one whole epoch, compiled before it started
            left = self.epochs_left - k // g
            total = now - self.t0 + left * epoch
            warning = cpu_warning(self.config, self.devices, total,
                                  f"measured: epoch {k // g - 1} took {duration(epoch)}, "
                                  f"{left} epochs to go")
            if warning and total > SLOW_SECONDS:
                _warn(warning)
        return self.inner(phase, state, keys)


def watch(c) -> None:
    """On a CPU: warn now for a full-width ResNet, and once measured epochs project > 1 h."""
    devices = c.engine.backend.devices
    if devices[0].platform != "cpu":
        return
    config = c.config
    if paper_scale(config):
        _warn(f"{config.model} at width {config.width} (the paper's) on CPU: expect hours per "
              "level; a measured projection follows after the first epochs "
              "(--config.dry_run=True measures it without training)")
    left = set()
    warm = False
    for store in c.stores.values():
        done = store.levels() if os.path.isdir(store.dir) else []
        left.update(lv for lv in range(int(config.levels)) if lv not in done)
        warm = warm or not store.exists("rewind")
    n = len(left) * int(config.epochs_per_level) + (int(config.warmup_epochs) if warm else 0)
    c.engine.train_epoch = _Watch(c, c.engine.train_epoch, n)


__all__ = ["run", "watch", "measure", "project", "math"]
