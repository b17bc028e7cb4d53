"""The epoch loop of one phase (the warm-up or a level) for every replica, and its hooks.

Each epoch runs the compiled epoch program once per replica group
(`config.replica_batch`); the periodic work around it is a list of small
hooks (`HOOKS`), each acting on the `Loop` (the replica groups' states and
what has been measured so far) at fixed points:

- `before_group(loop, gi)`, before group gi's epoch: sign perturbation
  (`SignPerturbation`), fault injection for the tests (`Poison`);
- `after_epoch(loop)`, after every group's epoch: the divergence check,
  TensorBoard scalars, evaluation, the progress bar, the preemption notice
  (asked once per epoch, collectively) and mid-level saves;
- `start(loop)` / `end(loop)`: the progress bar opens and closes.

The replicas stay in lockstep: every hook acts on the same epoch for all of
them. A phase trains every replica of the run, also those whose result is
already saved (a resumed level some methods had finished): the program, and
so each replica's floating-point result, is then the same as in an
uninterrupted run; only the replicas at `Phase.saving` are logged and saved.
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
    """What is trained: every replica of the set `rs` through one phase.

    `saving`: the positions whose checkpoints, TensorBoard scalars and
    divergence this phase owns (the replicas still to compute).
    """

    rs: Any  # replica_set.ReplicaSet
    phase: str  # 'warmup' | 'level'
    level: int  # -1 for the warm-up
    epochs: int
    saving: list[int]

    @property
    def config(self):
        return self.rs.config

    @property
    def engine(self):
        return self.rs.engine

    @property
    def reps(self) -> list:
        return self.rs.reps

    @property
    def label(self) -> str:
        """E.g. 'imp/wr/lrr level 3/11' or 'lrr warm-up', for messages."""
        methods = "/".join(dict.fromkeys(self.reps[i].method for i in self.saving))
        return f"{methods} " + ("warm-up" if self.phase == "warmup" else
                                f"level {self.level}/{self.config.levels - 1}")


@dataclasses.dataclass
class Resume:
    """Where a level continues: after epoch `epoch - 1`, or inside epoch `epoch` when
    `partial` (a streamed epoch stopped by a preemption notice) says where each replica
    group stands; with what was measured up to there."""

    epoch: int
    best: np.ndarray
    last_eval: dict | None
    partial: dict | None = None


@dataclasses.dataclass
class Loop:
    """The state of a phase's epoch loop, which the hooks read and change."""

    p: Phase
    groups: list  # positions of each replica group
    states: list  # each group's stacked state, on the devices
    best: np.ndarray  # best test accuracy so far, per replica
    last_eval: dict | None = None
    train_metrics: dict | None = None
    epoch: int = 0
    stopping: bool = False  # a preemption notice arrived (asked once per epoch)
    saved: str | None = None  # the mid-level save of this epoch, if any
    hooks: list = dataclasses.field(default_factory=list)

    def group_reps(self, gi: int) -> list:
        return [self.p.reps[i] for i in self.groups[gi]]

    def host_state(self):
        """Every group's state, stacked in replica order (host arrays)."""
        return replicas.concat([parallel.get(s) for s in self.states])

    @property
    def last_epoch(self) -> bool:
        return self.epoch == self.p.epochs - 1

    @property
    def x(self) -> int:
        """TensorBoard's x axis: epochs since the start of the run (warm-up first)."""
        c = self.p.config
        return self.epoch if self.p.level < 0 else \
            c.warmup_epochs + self.p.level * c.epochs_per_level + self.epoch


class Hook:
    """A piece of an epoch's periodic work; every method is optional."""

    def start(self, loop: Loop) -> None:
        pass

    def before_group(self, loop: Loop, gi: int) -> None:
        pass

    def after_epoch(self, loop: Loop) -> None:
        pass

    def end(self, loop: Loop) -> None:
        pass


class SignPerturbation(Hook):
    """Flip signs before the paper's epochs of a level (`studies.perturbs_before`)."""

    def before_group(self, loop, gi):
        p = loop.p
        reps = loop.group_reps(gi)
        if p.phase == "level" and any(r.perturb_prob > 0 for r in reps) \
                and studies.perturbs_before(p.config, loop.epoch):
            loop.states[gi] = studies.perturb(p.config, reps, loop.states[gi], p.level,
                                              loop.epoch, p.engine.put)


class Poison(Hook):
    """NaN params where `LRR_JAX_FAULT` asks for them (`faults.poison`; tests)."""

    def before_group(self, loop, gi):
        loop.states[gi] = faults.poison(loop.states[gi], loop.p.level, loop.epoch,
                                        loop.p.engine.put)


class DivergenceCheck(Hook):
    """Stop when a saved replica's training loss is NaN or infinite."""

    def after_epoch(self, loop):
        p, m = loop.p, loop.train_metrics
        bad = [i for i in p.saving if not np.isfinite(m["loss"][i])]
        if not bad:
            return
        spe = p.engine.steps_per_epoch
        store = p.rs.stores[p.reps[p.saving[0]].method]
        kept = max(store.names(), key=checkpoints.order, default=None)
        # An epoch is one compiled scan that returns its mean loss, so the bad step
        # is known to within the epoch (1-based steps from the start of the phase).
        raise TrainingDiverged(
            f"loss became {[float(m['loss'][i]) for i in p.saving]} in {p.label}, epoch "
            f"{loop.epoch}, at a step in {loop.epoch * spe + 1}..{(loop.epoch + 1) * spe} of "
            f"the {'warm-up' if p.phase == 'warmup' else 'level'} "
            f"({', '.join(p.reps[i].name for i in bad)}); stopped before saving it. The "
            f"last good checkpoint is kept: {store.path(kept) if kept else 'none'}. Lower "
            "--config.lr or check the data.")


def tb_tag(tag: str, replica) -> str:
    """A replica's TensorBoard tag, from its identity: `level/test_acc/seed_0` (`..._p0.1`
    with a sign perturbation), the same whatever the replica count or order."""
    suffix = f"seed_{replica.seed}" + (f"_p{replica.perturb_prob:g}" if replica.perturb_prob
                                       else "")
    return f"{tag}/{suffix}"


def _log(loop: Loop, tag: str, values) -> None:
    p = loop.p
    for i in p.saving:
        writer = p.rs.writers.get(p.reps[i].method)  # one event folder per method
        if writer is not None:
            writer.add_scalar(tb_tag(tag, p.reps[i]), float(np.atleast_1d(values)[i]), loop.x)


class TrainScalars(Hook):
    """TensorBoard: the epoch's training loss and accuracy."""

    def after_epoch(self, loop):
        _log(loop, f"{loop.p.phase}/train_loss", loop.train_metrics["loss"])
        _log(loop, f"{loop.p.phase}/train_acc", loop.train_metrics["acc"])


class Evaluation(Hook):
    """The test set every `eval_every_epochs` epochs of a level and at its last epoch."""

    def after_epoch(self, loop):
        p = loop.p
        due = (loop.epoch + 1) % p.config.eval_every_epochs == 0 or loop.last_epoch
        if p.phase != "level" or not due:
            return
        loop.last_eval = replicas.concat([p.engine.evaluate(s) for s in loop.states])
        loop.best = np.maximum(loop.best, loop.last_eval["acc"])
        _log(loop, "level/test_acc", loop.last_eval["acc"])
        _log(loop, "level/test_loss", loop.last_eval["loss"])


class Progress(Hook):
    """A tqdm bar per phase (process 0, `config.progress`)."""

    def start(self, loop):
        p = loop.p
        self.bar = None
        if p.config.progress and distributed.is_primary():
            from tqdm.auto import tqdm
            self.bar = tqdm(desc=f"{p.label} ({len(p.reps)} replicas)", total=p.epochs,
                            initial=loop.epoch, leave=False, dynamic_ncols=True,
                            file=sys.stderr)

    def after_epoch(self, loop):
        if self.bar is not None:
            self.bar.update(1)

    def end(self, loop):
        if self.bar is not None:
            self.bar.close()


class PreemptionNotice(Hook):
    """Ask once per epoch (a collective with several processes) whether a SIGTERM or
    Ctrl-C arrived; the save and the exit act on that one answer."""

    def after_epoch(self, loop):
        loop.stopping = not loop.last_epoch and preemption.requested()


class PeriodicSave(Hook):
    """A mid-level save every `checkpoint_every_epochs` epochs, and at a preemption notice."""

    def after_epoch(self, loop):
        every = loop.p.config.checkpoint_every_epochs
        loop.saved = None
        if loop.p.phase == "level" and not loop.last_epoch and (
                loop.stopping or (every and (loop.epoch + 1) % every == 0)):
            loop.saved = save_mid(loop)


# The order matters where hooks share the loop: evaluation before the save that records
# it, the preemption notice before the save it forces.
HOOKS = (SignPerturbation, Poison, DivergenceCheck, TrainScalars, Evaluation, Progress,
         PreemptionNotice, PeriodicSave)


def save_mid(loop: Loop, *, step: int = 0, partial: dict | None = None) -> str:
    """Save the level in progress for the saved replicas' methods; older mid saves go after.

    `step` > 0 (a streamed epoch stopped by a preemption notice): the save is
    inside epoch `loop.epoch`, after `step` steps of the group that stopped;
    `partial` then says where each replica group stands (`train`).
    """
    p = loop.p
    name = checkpoints.mid_name(p.level, loop.epoch, step)

    def meta(method, pos):
        per = lambda tree: {k: np.asarray(v)[pos].tolist() for k, v in tree.items()} \
            if tree else None  # noqa: E731
        return {"level": p.level, "epoch": loop.epoch, "best": np.asarray(loop.best)[pos].tolist(),
                "last_eval": per(loop.last_eval), "train_metrics": per(loop.train_metrics),
                "partial": partial}

    p.rs.save(name, loop.host_state(), meta, positions=p.saving)
    p.rs.delete_mids(positions=p.saving, keep=name)
    return name


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


def _run_group(loop: Loop, gi: int, at: dict | None, outs: list) -> None:
    """Group gi's epoch (from `at`, its entry in a mid-epoch save, if any)."""
    p = loop.p
    if at is not None and "metrics" in at:  # this group had finished the epoch
        outs.append({k: np.asarray(v, np.float32) for k, v in at["metrics"].items()})
        return
    resume = None
    if at is None:  # the epoch starts here (a resumed one had its flips already)
        for hook in loop.hooks:
            hook.before_group(loop, gi)
    else:
        from lrr_jax import engine

        resume = engine.Partial(int(at["step"]), at["reader"], at["sums"])
    streamed = p.engine.streaming and p.phase == "level"
    loop.states[gi], m, stopped = p.engine.train_epoch(
        p.phase, loop.states[gi], loop.group_reps(gi), p.level, loop.epoch, resume=resume,
        stop=_stop_check(p, loop.epoch) if streamed else None)
    if stopped is None:
        outs.append(m)
        return
    # A preemption notice inside a streamed epoch: save here, with each group's position.
    where = [{"metrics": _json(parallel.get(o))} for o in outs]
    where += [{"step": stopped.step, "reader": stopped.reader, "sums": _json(stopped.sums)}]
    where += [None] * (len(loop.groups) - gi - 1)
    name = save_mid(loop, step=stopped.step, partial={
        "groups": where, "replicas": [r.name for r in p.reps]})
    preemption.stop(f"in {p.label}, epoch {loop.epoch} after step {stopped.step} of "
                    f"{p.engine.steps_per_epoch}: saved {name}")


def train(p: Phase, state, resume: Resume | None = None):
    """Train the stacked host `state` of every replica through the phase's epochs.

    Returns (host state, outcome) with outcome {'best', 'last_eval',
    'train_metrics', 'seconds', 'steps_after_last_flip'}.
    """
    t0 = time.time()
    groups = replicas.groups(len(p.reps), p.config.replica_batch)
    loop = Loop(p, groups, [p.engine.put(replicas.take(state, g)) for g in groups],
                np.full(len(p.reps), -np.inf) if resume is None else np.asarray(resume.best),
                last_eval=None if resume is None else resume.last_eval,
                epoch=0 if resume is None else resume.epoch,
                hooks=[hook() for hook in HOOKS])
    partial = resume.partial if resume is not None else None
    for hook in loop.hooks:
        hook.start(loop)
    try:
        for epoch in range(loop.epoch, p.epochs):
            loop.epoch, outs = epoch, []
            entries = partial["groups"] if partial else [None] * len(groups)
            partial = None  # only the first epoch resumes inside
            for gi in range(len(groups)):
                _run_group(loop, gi, entries[gi], outs)
            faults.hit("in_epoch", p.level, epoch)
            loop.train_metrics = replicas.concat([parallel.get(m) for m in outs])
            for hook in loop.hooks:
                hook.after_epoch(loop)
            if loop.stopping:  # after the last epoch, the caller saves first
                preemption.stop(f"in {p.label} after epoch {epoch}: " + (
                    "the warm-up restarts on resume" if p.phase == "warmup" else
                    f"saved {loop.saved}"))
    finally:
        for hook in loop.hooks:
            hook.end(loop)
    return loop.host_state(), {
        "best": loop.best, "last_eval": loop.last_eval, "train_metrics": loop.train_metrics,
        "seconds": time.time() - t0,
        "steps_after_last_flip": studies.steps_after_last_flip(p.config,
                                                               p.engine.steps_per_epoch)}
