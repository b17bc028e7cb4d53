"""The epoch loop of one phase (the warm-up or a level) for all pending replicas, with its hooks.

Each epoch runs the compiled epoch program once per replica group
(`config.replica_batch`), then the hooks: sign perturbation before the
paper's epochs, fault injection (tests), the divergence check, TensorBoard
scalars, evaluation, the progress bar, mid-level saves and the preemption
check. The replicas stay in lockstep: every hook acts on the same epoch for
all of them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import numpy as np

from lrr_jax import checkpoints, distributed, faults, parallel, preemption, replicas, studies


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class Phase:
    """What is trained: `reps` (stacked in this order), their run directories' stores and logs."""

    config: Any
    engine: Any
    reps: list  # replicas.Replica, in the order of the stacked state
    stores: dict  # method -> checkpoints.Store
    writers: dict  # method -> TensorBoard writer (or absent)
    phase: str  # 'warmup' | 'level'
    level: int  # -1 for the warm-up
    epochs: int

    @property
    def label(self) -> str:
        """E.g. 'imp/wr/lrr level 3/11' or 'lrr warm-up', for messages."""
        methods = "/".join(dict.fromkeys(r.method for r in self.reps))
        return f"{methods} " + ("warm-up" if self.phase == "warmup" else
                                f"level {self.level}/{self.config.levels - 1}")


def save_mid(p: Phase, state, epoch: int, best, last_eval, train_metrics, *, step: int = 0,
             partial: dict | None = None) -> str:
    """Save the level in progress in every method's store; older mid saves go after all.

    `step` > 0 (a streamed epoch stopped by a preemption notice): the save is
    inside epoch `epoch`, after `step` steps of the group that stopped;
    `partial` then says where each replica group stands (`train`).
    """
    name = checkpoints.mid_name(p.level, epoch, step)
    for method, pos in replicas.by_method(p.reps).items():
        p.stores[method].save(name, replicas.take(state, pos), {
            "level": p.level, "epoch": epoch, "best": np.asarray(best)[pos].tolist(),
            "last_eval": {k: np.asarray(v)[pos].tolist() for k, v in last_eval.items()}
            if last_eval else None,
            "train_metrics": {k: np.asarray(v)[pos].tolist() for k, v in train_metrics.items()}
            if train_metrics else None, "partial": partial})
    for method in replicas.by_method(p.reps):
        p.stores[method].delete_mids(keep=name)
    return name


def tb_tag(tag: str, replica) -> str:
    """A replica's TensorBoard tag, from its identity: `level/test_acc/seed_0` (`..._p0.1`
    with a sign perturbation), the same whatever the replica count or order."""
    suffix = f"seed_{replica.seed}" + (f"_p{replica.perturb_prob:g}" if replica.perturb_prob
                                       else "")
    return f"{tag}/{suffix}"


def _log(p: Phase, tag: str, values, step: int) -> None:
    for r, v in zip(p.reps, np.atleast_1d(values)):
        writer = p.writers.get(r.method)  # one event folder per method: <run>/<method>/tb
        if writer is not None:
            writer.add_scalar(tb_tag(tag, r), float(v), step)


def progress(iterable, desc, enabled, **kwargs):
    if not enabled or not distributed.is_primary():
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, **kwargs)


# Steps between two looks at the preemption flag inside a streamed epoch when several
# processes must agree on it (a collective); one process looks after every step.
PREEMPTION_CHECK_STEPS = 20


def _stop_check(p: Phase, epoch: int):
    """stop(steps_done) for a streamed level epoch: a preemption notice, asked collectively."""
    every = 1 if jax.process_count() == 1 else PREEMPTION_CHECK_STEPS

    def stop(step: int) -> bool:
        faults.hit("in_step", p.level, epoch, step)
        return step % every == 0 and preemption.requested()

    return stop


def _json(tree):
    return {k: np.asarray(v).tolist() for k, v in tree.items()}


def train(p: Phase, state, *, start_epoch: int = 0, best=None, last_eval=None,
          partial: dict | None = None):
    """Train the stacked host `state` of `p.reps` for the phase's epochs (from `start_epoch`).

    `partial` (a mid-epoch save of a streamed level, `save_mid`): epoch
    `start_epoch` is under way; per replica group it holds the finished
    epoch's metrics, the position to resume from, or None (not started).
    Returns (host state, outcome) with outcome {'best', 'last_eval',
    'train_metrics', 'seconds', 'steps_after_last_flip'}.
    """
    config, engine, t0 = p.config, p.engine, time.time()
    groups = replicas.groups(len(p.reps), config.replica_batch)
    states = [engine.put(replicas.take(state, g)) for g in groups]
    best = np.full(len(p.reps), -np.inf) if best is None else np.asarray(best)
    probs = np.array([r.perturb_prob for r in p.reps])
    perturbing = p.phase == "level" and bool(np.any(probs > 0))
    desc = p.label
    train_metrics = None
    streamed_level = engine.streaming and p.phase == "level"
    for epoch in progress(range(start_epoch, p.epochs), f"{desc} ({len(p.reps)} replicas)",
                          config.progress,
                          initial=start_epoch, total=p.epochs):
        outs = []
        resumed = partial["groups"] if partial and epoch == start_epoch else [None] * len(groups)
        for gi, g in enumerate(groups):
            reps, at = [p.reps[i] for i in g], resumed[gi]
            if at is not None and "metrics" in at:  # this group had finished the epoch
                outs.append({k: np.asarray(v, np.float32) for k, v in at["metrics"].items()})
                continue
            resume = engine_partial(at)
            if resume is None:  # the epoch starts here (a resumed one had its flips already)
                if perturbing and studies.perturbs_before(config, epoch):
                    states[gi] = studies.perturb(config, reps, states[gi], p.level, epoch,
                                                 engine.put)
                states[gi] = faults.poison(states[gi], p.level, epoch, engine.put)
            states[gi], m, stopped = engine.train_epoch(
                p.phase, states[gi], reps, p.level, epoch, resume=resume,
                stop=_stop_check(p, epoch) if streamed_level else None)
            if stopped is not None:  # a preemption notice inside a streamed epoch
                where = [{"metrics": _json(parallel.get(o))} for o in outs]
                where += [{"step": stopped.step, "reader": stopped.reader,
                           "sums": _json(stopped.sums)}]
                where += [None] * (len(groups) - gi - 1)
                host = replicas.concat([parallel.get(s) for s in states])
                name = save_mid(p, host, epoch, best, last_eval, train_metrics,
                                step=stopped.step, partial={
                                    "groups": where,
                                    "replicas": [r.name for r in p.reps]})
                preemption.stop(f"in {desc}, epoch {epoch} after step {stopped.step} of "
                                f"{engine.steps_per_epoch}: saved {name}")
            outs.append(m)
        faults.hit("in_epoch", p.level, epoch)
        train_metrics = replicas.concat([parallel.get(m) for m in outs])
        if not np.all(np.isfinite(train_metrics["loss"])):
            _diverged(p, epoch, train_metrics)
        # TensorBoard x axis: epochs since the start of the run (warm-up first).
        step = epoch if p.level < 0 else \
            config.warmup_epochs + p.level * config.epochs_per_level + epoch
        _log(p, f"{p.phase}/train_loss", train_metrics["loss"], step)
        _log(p, f"{p.phase}/train_acc", train_metrics["acc"], step)
        if p.phase == "level" and ((epoch + 1) % config.eval_every_epochs == 0
                                   or epoch == p.epochs - 1):
            last_eval = replicas.concat([engine.evaluate(s) for s in states])
            best = np.maximum(best, last_eval["acc"])
            _log(p, "level/test_acc", last_eval["acc"], step)
            _log(p, "level/test_loss", last_eval["loss"], step)
        # A SIGTERM (preemption notice) forces a save now, whatever `every` says.
        # Asked once per epoch (a collective with several processes), so the
        # save and the exit below act on the same answer.
        every = config.checkpoint_every_epochs
        stop = epoch < p.epochs - 1 and preemption.requested()
        if p.phase == "level" and epoch < p.epochs - 1 and (
                stop or (every and (epoch + 1) % every == 0)):
            host = replicas.concat([parallel.get(s) for s in states])
            name = save_mid(p, host, epoch, best, last_eval, train_metrics)
        if stop:  # after the last epoch, the caller saves first
            preemption.stop(f"in {desc} after epoch {epoch}: " + (
                "the warm-up restarts on resume" if p.phase == "warmup" else f"saved {name}"))
    state = replicas.concat([parallel.get(s) for s in states])
    return state, {"best": best, "last_eval": last_eval, "train_metrics": train_metrics,
                   "seconds": time.time() - t0,
                   "steps_after_last_flip": studies.steps_after_last_flip(
                       config, engine.steps_per_epoch)}


def engine_partial(at: dict | None):
    """The engine's resume point of a group from its entry in a mid-epoch save (or None)."""
    if at is None:
        return None
    from lrr_jax import engine

    return engine.Partial(int(at["step"]), at["reader"], at["sums"])


def _diverged(p: Phase, epoch: int, train_metrics) -> None:
    spe = p.engine.steps_per_epoch
    bad = [r.name for r, v in zip(p.reps, train_metrics["loss"]) if not np.isfinite(v)]
    store = p.stores[p.reps[0].method]
    kept = max(store.names(), key=checkpoints.order, default=None)
    # An epoch is one compiled scan that returns its mean loss, so the bad step
    # is known to within the epoch (1-based steps from the start of the phase).
    raise TrainingDiverged(
        f"loss became {train_metrics['loss'].tolist()} in {p.label}, epoch {epoch}, at a step "
        f"in {epoch * spe + 1}..{(epoch + 1) * spe} of the "
        f"{'warm-up' if p.phase == 'warmup' else 'level'} ({', '.join(bad)}); stopped before "
        f"saving it. The last good checkpoint is kept: "
        f"{store.path(kept) if kept else 'none'}. Lower --config.lr or check the data.")
