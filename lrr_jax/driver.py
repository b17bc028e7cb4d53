"""The level driver: train, prune, rewind, repeat.

A run of one method lives in one directory. Level k trains at density
(1 - prune_fraction)^k; between levels the driver prunes the finished level's
weights (`pruning`), then rewinds according to the method (`rewind`). Rewind
points and each finished level are checkpointed once and skipped when
present, and mid-level saves let a preempted level continue, so re-running
the same command resumes. `results.csv` is rebuilt from the level checkpoints
after every level, so a resumed run writes the same file as an uninterrupted
one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrr_jax import (
    checkpoints,
    config_base,
    data,
    distributed,
    faults,
    invariants,
    masks,
    models,
    parallel,
    preemption,
    pruning,
    rewind,
    runlock,
    signs,
    train,
)
from lrr_jax.errors import ConfigError

RESULT_COLUMNS = (
    "method", "level", "replica", "seed", "perturb_prob", "density", "test_acc", "best_test_acc",
    "test_loss", "train_loss", "train_acc", "sign_flip_frac_vs_init", "sign_flip_frac_vs_prev",
    "mask_source", "sign_source", "pruning", "epochs")
SIGN_COLUMNS = ("method", "level", "replica", "layer", "reference", "flip_frac", "n_unpruned")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def write_atomic(path: str, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half.

    In a multi-process run only process 0 writes (all compute the same text).
    """
    if not distributed.is_primary():
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_csv(path: str, columns, rows) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    write_atomic(path, buf.getvalue())


def _round(x: float) -> float:
    return float(f"{float(x):.6g}")


def _tree_index(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def _tree_stack(trees):
    return jax.tree.map(lambda *a: np.stack(a), *trees)


@dataclasses.dataclass
class Setup:
    """Everything a method run needs that is shared between methods."""

    config: Any
    dataset: data.Dataset
    backend: parallel.Backend
    placed: dict  # device arrays: train_x, train_y, test_x, test_y, test_w
    eval_batch: int
    model: Any  # the flax module (the same for every method)
    programs: dict = dataclasses.field(default_factory=dict)  # compiled, shared by methods


class MethodRun:
    """One method's levels in one run directory."""

    def __init__(self, setup: Setup, method: str, run_dir: str):
        self.setup = setup
        self.config = setup.config
        self.method = method
        self.run_dir = os.path.abspath(run_dir)
        self.store = checkpoints.Store(self.run_dir)
        self.replicas = config_base.replica_settings(self.config)
        self.probs = np.array([p for _, p in self.replicas], np.float32)
        self.model = setup.model
        self._compiled = setup.programs
        self.writer = None

    # ---- compiled programs -------------------------------------------------------------
    def _epoch_fn(self, phase: str):
        if phase not in self._compiled:
            ds, b = self.setup.dataset, self.setup.backend
            sharded = bool(self.config.shard_train_data)
            fn, steps = train.make_train_epoch(
                apply_fn=self.model.apply, config=self.config, phase=phase,
                num_train=self.setup.placed["train_x"].shape[1] if sharded
                else ds.train_x.shape[0], num_devices=b.num_devices,
                mean=ds.mean, std=ds.std, image=ds.is_image, sharded=sharded)
            self._compiled[phase] = b.map(fn, 4, donate_first=True,
                                          sharded=(1, 2) if sharded else ())
            self._compiled["steps_per_epoch"] = steps
        self.steps_per_epoch = self._compiled["steps_per_epoch"]
        return self._compiled[phase]

    def _eval_fn(self):
        if "eval" not in self._compiled:
            ds, b = self.setup.dataset, self.setup.backend
            fn = train.make_evaluate(apply_fn=self.model.apply, num_devices=b.num_devices,
                                     mean=ds.mean, std=ds.std, eval_batch=self.setup.eval_batch)
            self._compiled["eval"] = b.map(fn, 4)
        return self._compiled["eval"]

    def evaluate(self, state) -> dict:
        p = self.setup.placed
        out = self._eval_fn()(state, p["test_x"], p["test_y"], p["test_w"])
        return parallel.get(out)

    def _key(self, level: int, epoch: int):
        # Level -1 is the warm-up. The data order depends on (seed, level, epoch) only.
        base = jax.random.PRNGKey(int(self.config.seed))
        return jax.random.fold_in(jax.random.fold_in(base, level + 1), epoch)

    # ---- phases ------------------------------------------------------------------------
    def _log(self, tag: str, values, step: int):
        if self.writer is None:
            return
        values = np.atleast_1d(values)
        for r, v in enumerate(values):
            suffix = f"/replica_{r}" if len(values) > 1 else ""
            self.writer.add_scalar(f"{tag}{suffix}", float(v), step)

    def train_phase(self, state, *, phase: str, level: int, epochs: int, start_epoch: int = 0,
                    best: np.ndarray | None = None, last_eval: dict | None = None):
        """Train `epochs` epochs (from `start_epoch`), with evaluation, perturbation and saves."""
        config, placed = self.config, self.setup.placed
        epoch_fn = self._epoch_fn(phase)
        k = len(self.replicas)
        best = np.full(k, -np.inf) if best is None else np.asarray(best)
        train_metrics = None
        desc = f"{self.method} warm-up" if phase == "warmup" else \
            f"{self.method} level {level}/{config.levels - 1}"
        bar = _progress(range(start_epoch, epochs), desc, config.progress,
                        initial=start_epoch, total=epochs)
        state = self.setup.backend.put(state)
        perturbing = phase == "level" and bool(np.any(self.probs > 0))
        for epoch in bar:
            if perturbing and epoch % config.perturb_every == config.perturb_every - 1:
                key = jax.random.fold_in(self._key(level, epoch), 7)
                state = self.setup.backend.put(
                    train.perturb_signs(state, key, jnp.asarray(self.probs)))
            state = faults.poison(state, level, epoch, self.setup.backend.put)
            state, train_metrics = epoch_fn(state, placed["train_x"], placed["train_y"],
                                            self._key(level, epoch))
            faults.hit("in_epoch", level, epoch)
            train_metrics = parallel.get(train_metrics)
            if not np.all(np.isfinite(train_metrics["loss"])):
                spe = self.steps_per_epoch
                kept = max(self.store.names(), key=checkpoints.order, default=None)
                # An epoch is one compiled scan that returns its mean loss, so the bad step
                # is known to within the epoch (1-based steps from the start of the phase).
                raise TrainingDiverged(
                    f"{self.method}: loss became {train_metrics['loss'].tolist()} in {desc}, "
                    f"epoch {epoch}, at a step in {epoch * spe + 1}..{(epoch + 1) * spe} of the "
                    f"{'warm-up' if phase == 'warmup' else 'level'}; stopped before saving it. "
                    f"The last good checkpoint is kept: "
                    f"{self.store.path(kept) if kept else 'none'}. Lower --config.lr or check "
                    "the data.")
            # TensorBoard x axis: epochs since the start of the run (warm-up first).
            global_epoch = epoch if level < 0 else \
                config.warmup_epochs + level * config.epochs_per_level + epoch
            self._log(f"{phase}/train_loss", train_metrics["loss"], global_epoch)
            self._log(f"{phase}/train_acc", train_metrics["acc"], global_epoch)
            if phase == "level" and ((epoch + 1) % config.eval_every_epochs == 0
                                     or epoch == epochs - 1):
                last_eval = self.evaluate(state)
                best = np.maximum(best, last_eval["acc"])
                self._log("level/test_acc", last_eval["acc"], global_epoch)
                self._log("level/test_loss", last_eval["loss"], global_epoch)
            if hasattr(bar, "set_postfix"):
                post = {"loss": f"{float(np.mean(train_metrics['loss'])):.3f}",
                        "acc": f"{float(np.mean(train_metrics['acc'])):.3f}"}
                if last_eval is not None and phase == "level":
                    post["test"] = f"{float(np.mean(last_eval['acc'])):.3f}"
                bar.set_postfix(post)
            every = config.checkpoint_every_epochs
            # A SIGTERM (preemption notice) forces a save now, whatever `every` says.
            # Asked once per epoch (a collective with several processes), so the
            # save and the exit below act on the same answer.
            stop = epoch < epochs - 1 and preemption.requested()
            if phase == "level" and epoch < epochs - 1 and (
                    stop or (every and (epoch + 1) % every == 0)):
                name = checkpoints.mid_name(level, epoch)
                self.store.save(name, parallel.get(state), {
                    "level": level, "epoch": epoch, "best": best.tolist(),
                    "last_eval": {k2: np.asarray(v).tolist() for k2, v in last_eval.items()}
                    if last_eval else None,
                    "train_metrics": {k2: np.asarray(v).tolist()
                                      for k2, v in train_metrics.items()}})
                self.store.delete_mids(keep=name)
            if stop:  # after the last epoch, the caller saves first
                preemption.stop(f"in {desc} after epoch {epoch}: " + (
                    "the warm-up restarts on resume" if phase == "warmup" else
                    f"saved {checkpoints.mid_name(level, epoch)}"))
        return parallel.get(state), best, last_eval, train_metrics

    # ---- levels ------------------------------------------------------------------------
    def level_start(self, level: int, prev, init, point):
        """The state that level `level` starts from: prune, rewind, transfer."""
        config = self.config
        if level == 0:
            state = point.replace(step=np.zeros_like(point.step))
            if config.mask_source:
                state = state.replace(mask=self.source_mask(level))
            return state
        total = masks.count(_tree_index(prev.mask, 0))[1]
        target = masks.scheduled_count(total, config.prune_fraction, level)
        if config.mask_source:
            new_mask = self.source_mask(level)
        else:
            new_mask = _tree_stack([
                pruning.prune(_tree_index(prev.params, r), _tree_index(prev.mask, r), target,
                              allocation=config.pruning,
                              score="random" if config.random_mask else "magnitude",
                              seed=seed * 1000 + level)
                for r, (seed, _) in enumerate(self.replicas)])
        faults.hit("after_prune", level)
        state = prev.replace(mask=new_mask)
        state = rewind.for_method(self.method, state, init=init, point=point,
                                  reset_momentum=config.reset_momentum,
                                  rewind_batch_stats=config.rewind_batch_stats)
        invariants.check_rewind(self.method, state, level=level, prev=prev, init=init,
                                point=point, new_mask=new_mask,
                                reset_momentum=config.reset_momentum,
                                rewind_batch_stats=config.rewind_batch_stats)
        if config.sign_transfer:
            # Without a sign source, the signs are this run's own trained ones: level k-1's
            # final weights before the rewind (paper code: reset_weight_amplitude).
            source = self.source_params(level) if config.sign_source else prev.params
            params = _tree_stack([
                signs.transfer(config.sign_transfer, _tree_index(state.params, r),
                               _tree_index(init.params, r),
                               None if source is None else _tree_index(source, r),
                               _tree_index(state.mask, r), seed=seed * 1000 + level)
                for r, (seed, _) in enumerate(self.replicas)])
            state = state.replace(params=params)
        if config.zero_pruned_weights:
            state = state.replace(params=masks.apply(state.params, state.mask))
        return state

    def _source(self, key: str, level: int, like):
        src = checkpoints.Store(self.config[key])
        name = checkpoints.level_name(level)
        if not src.exists(name):
            raise ConfigError(key, f"{self.config[key]} has no finished level {level}")
        state, _ = src.restore(name, like)
        return state

    def source_mask(self, level: int):
        like = self._like()
        # The mask the source trained level k with is stored in its level-k checkpoint.
        return self._source("mask_source", level, like).mask

    def source_params(self, level: int):
        # Level k of the source starts from its level k-1 weights (LRR keeps them).
        return self._source("sign_source", level - 1, self._like()).params

    def _like(self):
        return self._init_like

    def rows_for_level(self, level, state, init, prev, best, last_eval, train_metrics):
        rows, flips = [], []
        for r, (seed, prob) in enumerate(self.replicas):
            params, mask = _tree_index(state.params, r), _tree_index(state.mask, r)
            per_init = signs.sign_flips_per_layer(_tree_index(init.params, r), params, mask)
            per_prev = (signs.sign_flips_per_layer(_tree_index(prev.params, r), params, mask)
                        if prev is not None else None)

            def total(per):
                return sum(f for f, _ in per.values()) / max(sum(n for _, n in per.values()), 1)

            rows.append({
                "method": self.method, "level": level, "replica": r, "seed": seed,
                "perturb_prob": prob, "density": _round(masks.density(mask)),
                "test_acc": _round(last_eval["acc"][r]), "best_test_acc": _round(best[r]),
                "test_loss": _round(last_eval["loss"][r]),
                "train_loss": _round(train_metrics["loss"][r]),
                "train_acc": _round(train_metrics["acc"][r]),
                "sign_flip_frac_vs_init": _round(total(per_init)),
                "sign_flip_frac_vs_prev": _round(total(per_prev)) if per_prev else None,
                "mask_source": self.config.mask_source, "sign_source": self.config.sign_source,
                "pruning": ("random_" if self.config.random_mask else "") + self.config.pruning,
                "epochs": self.config.epochs_per_level})
            for reference, per in (("init", per_init), ("prev", per_prev)):
                for layer, (f, n) in (per or {}).items():
                    flips.append({"method": self.method, "level": level, "replica": r,
                                  "layer": layer, "reference": reference,
                                  "flip_frac": _round(f / max(n, 1)), "n_unpruned": n})
        return rows, flips

    def check_invariants(self, level: int, state, start, prev_mask, total: int):
        """Cheap end-of-level checks; a violation stops the run."""
        expected = masks.scheduled_count(total, self.config.prune_fraction, level)
        for r in range(len(self.replicas)):
            mask = _tree_index(state.mask, r)
            kept, _ = masks.count(mask)
            if not self.config.mask_source and kept != expected:
                raise invariants.InvariantViolation(
                    f"level {level} replica {r}: {kept} unpruned weights, scheduled {expected}")
            if prev_mask is not None and not self.config.mask_source:
                grew = any(np.any((np.asarray(m) > 0) & (np.asarray(p) == 0)) for m, p in zip(
                    jax.tree.leaves(mask), jax.tree.leaves(_tree_index(prev_mask, r))))
                if grew:
                    raise invariants.InvariantViolation(
                        f"level {level} replica {r}: the mask grew")
        for a, b in zip(jax.tree.leaves(state.mask), jax.tree.leaves(start.mask)):
            if not np.array_equal(a, b):
                raise invariants.InvariantViolation(
                    f"level {level}: the mask changed during training")

    def run(self) -> list[dict]:
        config, ds = self.config, self.setup.dataset
        os.makedirs(self.run_dir, exist_ok=True)
        if config.tensorboard and self.writer is None and distributed.is_primary():
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(os.path.join(self.run_dir, "tb"))
        sample = np.zeros((1, *ds.train_x.shape[1:]), np.float32)
        seeds = [s for s, _ in self.replicas]
        if "init" not in self._compiled:
            self._compiled["init"] = train.replica_initializer(self.model, config, sample)
        init = parallel.get(self._compiled["init"](seeds))
        self._init_like = init
        if self.store.exists("init"):
            init, _ = self.store.restore("init", init)
        else:
            self.store.save("init", init, {"method": self.method})
        if config.warmup_epochs > 0:
            if self.store.exists("rewind"):
                point, _ = self.store.restore("rewind", init)
            else:
                point, *_ = self.train_phase(init, phase="warmup", level=-1,
                                             epochs=config.warmup_epochs)
                self.store.save("rewind", point, {"method": self.method})
        else:
            point = init
        total = masks.count(_tree_index(init.mask, 0))[1]
        rows, flips, prev = [], [], None
        for level in range(config.levels):
            preemption.check(f"before {self.method} level {level}: finished levels are saved")
            name = checkpoints.level_name(level)
            if self.store.exists(name):
                state, meta = self.store.restore(name, init)
                rows += meta["rows"]
                flips += meta["sign_flips"]
                prev = state
                continue
            start = self.level_start(level, prev, init, point)
            t0 = time.time()
            mid = self.store.latest_mid(level)
            if mid is not None:
                state, meta = self.store.restore(mid[0], init)
                print(f"{self.method}: level {level} resumes after epoch {mid[1]} from "
                      f"{self.store.path(mid[0])}", file=sys.stderr, flush=True)
                last = meta["last_eval"]
                state, best, last_eval, train_metrics = self.train_phase(
                    state, phase="level", level=level, epochs=config.epochs_per_level,
                    start_epoch=mid[1] + 1, best=np.array(meta["best"]),
                    last_eval={k: np.array(v) for k, v in last.items()} if last else None)
            else:
                state, best, last_eval, train_metrics = self.train_phase(
                    start, phase="level", level=level, epochs=config.epochs_per_level)
            self.check_invariants(level, state, start, None if prev is None else prev.mask, total)
            invariants.check_pruned_inert(level, self.method, state,
                                          lambda s: self.evaluate(self.setup.backend.put(s)))
            level_rows, level_flips = self.rows_for_level(level, state, init, prev, best,
                                                          last_eval, train_metrics)
            self.store.save(name, state, {"rows": level_rows, "sign_flips": level_flips,
                                          "seconds": time.time() - t0})
            self.store.delete_mids()
            rows += level_rows
            flips += level_flips
            write_csv(os.path.join(self.run_dir, "results.csv"), RESULT_COLUMNS, rows)
            write_csv(os.path.join(self.run_dir, "sign_flips.csv"), SIGN_COLUMNS, flips)
            prev = state
        write_csv(os.path.join(self.run_dir, "results.csv"), RESULT_COLUMNS, rows)
        write_csv(os.path.join(self.run_dir, "sign_flips.csv"), SIGN_COLUMNS, flips)
        if self.writer is not None:
            self.writer.flush()
        return rows


def _progress(iterable, desc, enabled, **kwargs):
    if not enabled or not distributed.is_primary():
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, **kwargs)


def make_setup(config) -> Setup:
    """Load data, choose devices and place the data; raises ConfigError on bad input."""
    # Global devices: in a multi-process run (lrr_jax.distributed) the data axis
    # spans every process; with one process these are the local devices.
    devices = jax.devices()
    if config.num_devices and jax.process_count() > 1:
        raise ConfigError("num_devices", "must be 0 (all devices) in a multi-process run")
    if config.num_devices:
        if config.num_devices > len(devices):
            raise ConfigError("num_devices", f"{config.num_devices} requested, "
                              f"{len(devices)} available")
        devices = devices[: config.num_devices]
    if config.batch_size % len(devices):
        raise ConfigError("batch_size", f"{config.batch_size} is not divisible by the "
                          f"{len(devices)} devices")
    dataset = data.load(config)
    if dataset.train_x.shape[0] < config.batch_size:
        raise ConfigError("batch_size", f"{config.batch_size} exceeds the "
                          f"{dataset.train_x.shape[0]} training examples")
    backend = parallel.Backend(config.parallel, devices)
    test_x, test_y, test_w, eval_batch = train.pad_for_eval(
        dataset.test_x, dataset.test_y, backend.num_devices, config.eval_batch_size)
    placed = backend.put({"test_x": test_x, "test_y": test_y, "test_w": test_w})
    if config.shard_train_data:
        placed.update(shard_train_data(dataset, backend))
        # This process keeps only its devices' shards (its `dataset` loses the rest).
        dataset = dataclasses.replace(dataset, train_x=dataset.train_x[:0],
                                      train_y=dataset.train_y[:0])
    else:
        placed.update(backend.put({"train_x": dataset.train_x, "train_y": dataset.train_y}))
    model = models.create(config, dataset.num_classes, bn_axis_name=train.AXIS)
    return Setup(config, dataset, backend, placed, eval_batch, model)


def shard_train_data(dataset, backend) -> dict:
    """This process's devices' shards of the training set, placed on those devices.

    Device d of D (its position in the global device list) holds examples
    d, d + D, d + 2D, ... (every class in about the same proportion), cut to
    the same count n // D on every device. Returns {'train_x', 'train_y'} of
    shape (D, n // D, ...), each device holding only its own block.
    """
    # n >= batch_size (checked by make_setup), so every device holds at least
    # one local batch: n // D >= batch_size // D.
    n, d_all = dataset.train_x.shape[0], backend.num_devices
    per = n // d_all
    mine = [backend.devices.index(d) for d in backend.local_devices]
    return {name: backend.put_sharded(np.stack([a[i::d_all][:per] for i in mine]))
            for name, a in (("train_x", dataset.train_x), ("train_y", dataset.train_y))}


def check_workdir(config, run_dir: str) -> bool:
    """Refuse a run directory that holds a run of a different config (unless overwrite).

    Returns True when it holds one and `config.overwrite` is set: the caller
    deletes the old run's outputs (`checkpoints.clear_run`) once every other
    check has passed, so that they are never resumed as this config's.
    """
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        if config.overwrite:
            return True
        raise ConfigError("workdir", f"{path} is unreadable ({e}); use another --workdir or "
                          "--config.overwrite=True") from None
    new = json.loads(config.to_json())
    differ = sorted(k for k in set(old) | set(new)
                    if k not in config_base.NON_SEMANTIC and old.get(k) != new.get(k))
    if differ and config.overwrite:
        return True
    if differ:
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in differ[:6])
        raise ConfigError("workdir", f"{run_dir} holds a run of a different config: {shown}; "
                          "use another --workdir or --config.overwrite=True")
    return False


def check_sources(config, methods) -> None:
    """Transfer sources must be finished runs of the same model with enough levels."""
    for key in ("mask_source", "sign_source"):
        src = config[key]
        if not src:
            continue
        if not os.path.isfile(os.path.join(src, "config.json")):
            inner = sorted(m for m in config_base.METHODS
                           if os.path.isfile(os.path.join(src, m, "config.json")))
            hint = (f"; it holds the runs of {', '.join(inner)}: name one, e.g. "
                    f"{os.path.join(src, inner[-1])}" if inner else "")
            raise ConfigError(key, f"{src} is not a run directory (no config.json){hint}")
        if key == "sign_source" and config.sign_transfer not in (
                "source_signs", "shuffled_init_magnitudes"):
            raise ConfigError(key, f"sign_transfer {config.sign_transfer!r} does not use a sign "
                              "source; use --config.sign_transfer=source_signs (or "
                              "shuffled_init_magnitudes), or drop --config.sign_source")
        with open(os.path.join(src, "config.json")) as f:
            other = json.load(f)
        for field in ("model", "width", "dataset", "mlp_hidden", "prune_fraction"):
            if field in other and other[field] != json.loads(config.to_json()).get(field):
                raise ConfigError(key, f"{src} was run with {field}={other[field]!r}, this run "
                                  f"uses {config[field]!r}")
        levels = checkpoints.Store(src).levels()
        needed = config.levels - 1 if key == "sign_source" else config.levels
        have = len(levels)
        if have < needed:
            raise ConfigError(key, f"{src} has {have} finished levels, this run needs {needed}")
        if int(other.get("num_replicas", 1)) * len(config_base.parse_list(
                other.get("perturb_probs", "0"))) != len(config_base.replica_settings(config)):
            raise ConfigError(key, f"{src} has a different number of replicas")


def run(config, workdir: str) -> dict[str, list[dict]]:
    """Run every method of `config` under `workdir`; returns method -> result rows.

    The config is validated first; then `<workdir>/.lock` is held for the whole
    run, so a second process on the same workdir is refused (`runlock`).
    """
    config_base.validate(config)
    distributed.check_shared_dir(workdir)  # multi-process: every process sees one workdir
    # One lock per run: process 0 holds it for all processes of a multi-process run.
    with runlock.hold(workdir) if distributed.is_primary() else contextlib.nullcontext():
        return _run(config, workdir)


def _run(config, workdir: str) -> dict[str, list[dict]]:
    workdir = os.path.abspath(workdir)
    if config.experiment == "single_neuron":
        from lrr_jax import theory
        return theory.run(config, workdir)
    if config.experiment == "lmc":
        from lrr_jax import connectivity
        return connectivity.run(config, workdir)
    methods = config_base.methods_of(config)
    run_dirs = {m: (os.path.join(workdir, m) if config.methods else workdir) for m in methods}
    stale = {}
    for m, d in run_dirs.items():
        method_config = _for_method(config, m)
        stale[m] = check_workdir(method_config, d)
        if not stale[m]:
            checkpoints.Store(d).verify_all()  # a damaged checkpoint stops us before compiling
    check_sources(config, methods)
    distributed.barrier("workdir checked")  # every process read it before process 0 writes
    setup = make_setup(config)
    results = {}
    for m in methods:
        method_config = _for_method(config, m)
        if stale[m]:
            checkpoints.clear_run(run_dirs[m])  # process 0 only
            distributed.barrier(f"cleared {run_dirs[m]}")
        os.makedirs(run_dirs[m], exist_ok=True)
        write_atomic(os.path.join(run_dirs[m], "config.json"), method_config.to_json(indent=2))
        setup.config = method_config
        results[m] = MethodRun(setup, m, run_dirs[m]).run()
    from lrr_jax.reporting import summary
    table = summary.side_by_side_table(summary.by_replica_setting(results))
    if distributed.is_primary():  # every process has the same results; one prints them
        print(table)
    write_atomic(os.path.join(workdir, "summary.txt"), table + "\n")
    return results


def _for_method(config, method):
    c = config.copy_and_resolve_references()
    c.method = method
    c.methods = ""
    return c


def load_level(workdir: str, level, replica: int = 0) -> dict:
    """Numpy pytrees of a finished level's final state (or 'init' / 'rewind').

    Returns {'params', 'batch_stats', 'mask', 'opt_state', 'meta'} of replica
    `replica`. `workdir` is a run directory of one method.
    """
    store = checkpoints.Store(workdir)
    name = checkpoints.level_name(level) if isinstance(level, int) else str(level)
    if not store.exists(name):
        raise ConfigError("workdir", f"{workdir} has no committed checkpoint {name!r} "
                          f"(have: {', '.join(store.names()) or 'none'})")
    restored, meta = store.restore_untyped(name)
    out = {k: jax.tree.map(lambda a: np.asarray(a)[replica], restored[k])
           for k in ("params", "batch_stats", "mask", "opt_state") if k in restored}
    out["meta"] = meta
    return out
