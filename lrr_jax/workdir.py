"""The run directory: its layout, the checks before a run, atomic files, reading a level back.

Layout: the replicas of method m are written to `<workdir>/<m>/` when the
config lists several methods (`config.methods`), else to `<workdir>` itself;
each such run directory holds `config.json` (that method's config),
`results.csv`, `sign_flips.csv`, `tb/` and `checkpoints/` (see
docs/DESIGN.md). The config also travels inside the `init` checkpoint, so a
lost or damaged `config.json` cannot let another config resume the run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from lrr_jax import checkpoints, config_base, distributed, replicas, rewind, schema, signs
from lrr_jax.errors import ConfigError

# The resume policy: how the config recorded in a run directory is compared with the
# config of the run that finds it.
# Fields that do not change what a run computes: they may differ on resume.
NON_SEMANTIC = ("progress", "checkpoint_every_epochs", "overwrite", "data_dir", "cifar_archive",
                "download", "tiny_imagenet_dir", "idx_dir", "verbosity", "parallel",
                "num_devices",
                "input_pipeline", "stream_threads", "stream_prefetch",
                "tensorboard", "methods", "replica_batch", "dry_run", "compile_for",
                "levels")  # more levels extend a finished run; the finished ones stay valid

# A run made before a key existed computed what this value gives, where that is not the
# key's default; other missing keys read as their defaults (`_differences`).
BEFORE_THE_KEY = {"data_order": "shared", "sign_source_level": "previous",
                  "init_signs_from": "theta0"}


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
    write_atomic(path, schema.to_csv(columns, rows))


def method_config(config, method: str):
    """The config of one method's run directory (`method` set, `methods` cleared)."""
    c = config.copy_and_resolve_references()
    c.method = method
    c.methods = ""
    return c


def run_dirs(config, workdir: str) -> dict[str, str]:
    """method -> its run directory."""
    workdir = os.path.abspath(workdir)
    return {m: (os.path.join(workdir, m) if config.methods else workdir)
            for m in replicas.methods_of(config)}


def _recorded_config(run_dir: str) -> tuple[dict | None, str]:
    """The config a run directory's checkpoints were made with, and where it was read."""
    path = os.path.join(run_dir, "config.json")
    store = checkpoints.Store(run_dir)
    saved = store.restore_meta("init").get("config") if store.exists("init") else None
    if saved is not None:
        return saved, f"{store.path('init')}"
    if not os.path.exists(path):
        return None, path
    try:
        with open(path) as f:
            return json.load(f), path
    except (OSError, ValueError) as e:
        raise ConfigError("workdir", f"{path} is unreadable ({e}) and no checkpoint records "
                          "the config; move it away to start afresh") from None


def _aliases_resolved(d: dict) -> dict:
    """A recorded config with its aliases read as the keys they stand for:
    `random_mask=True` is `score='random'` (the key before `score` existed)."""
    if d.get("random_mask"):
        d = {**d, "score": "random", "random_mask": False}
    return d


def _differences(config, run_dir: str) -> tuple[list[str], dict, dict, str]:
    """(semantic keys that differ, recorded config, this config, where it was recorded);
    no keys when the directory holds no run."""
    old, where = _recorded_config(run_dir)
    if old is None:
        return [], {}, {}, where
    new = json.loads(config.to_json())
    # A key added to lrr_jax after the run was made reads as what the run computed then.
    before = {**json.loads(config_base.get_base_config().to_json()),
              **BEFORE_THE_KEY}
    old = {**{k: v for k, v in before.items() if k in new}, **old}
    old, new = _aliases_resolved(old), _aliases_resolved(new)
    differ = sorted(k for k in set(old) | set(new)
                    if k not in NON_SEMANTIC and old.get(k) != new.get(k))
    return differ, old, new, where


def with_other_methods(config, workdir: str, results: dict[str, list[dict]]
                       ) -> dict[str, list[dict]]:
    """`results` and the results.csv rows of the workdir's other method directories that
    hold a run of this config, in `rewind.MODES` order (for summary.txt).

    A run of fewer methods in a multi-method workdir (`--config.method=lrr` on the
    quickstart's) reports them beside the methods an earlier run wrote there,
    instead of dropping them from the table. Directories of another config are left
    out; so are levels beyond `config.levels`.
    """
    merged = dict(results)
    for m in rewind.MODES if config.methods else ():
        d = os.path.join(os.path.abspath(workdir), m)
        path = os.path.join(d, "results.csv")
        if m in merged or not os.path.isfile(path):
            continue
        try:  # an unreadable directory is left out: it must not fail a finished run
            if _differences(method_config(config, m), d)[0]:
                continue
            rows = [r for r in schema.read_csv(path) if r.get("level") is not None
                    and int(r["level"]) < int(config.levels)]
        except (ConfigError, OSError, ValueError):
            continue
        if rows:
            merged[m] = rows
    return {m: merged[m] for m in sorted(merged, key=lambda m: (
        list(rewind.MODES).index(m) if m in rewind.MODES else len(rewind.MODES), m))}


def check_workdir(config, run_dir: str) -> bool:
    """Refuse a run directory that holds a run of a different config (unless overwrite).

    The config compared is the one recorded in the run's `init` checkpoint
    (else its config.json). Returns True when the directory holds a run of
    another config and `config.overwrite` is set: the caller deletes the old
    run's outputs (`checkpoints.clear_run`) once every other check has passed.
    """
    differ, old, new, where = _differences(config, run_dir)
    if differ and config.overwrite:
        return True
    if differ:
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in differ[:6])
        raise ConfigError("workdir", f"{run_dir} holds a run of a different config "
                          f"(recorded in {where}): {shown}; use another --workdir or "
                          "--config.overwrite=True")
    return False


def check_sources(config, methods) -> None:
    """Transfer sources must be finished runs of the same model and seeds with enough levels."""
    mine = json.loads(config.to_json())
    for key in ("mask_source", "sign_source"):
        src = config[key]
        if not src:
            continue
        if not os.path.isfile(os.path.join(src, "config.json")):
            inner = sorted(m for m in rewind.MODES
                           if os.path.isfile(os.path.join(src, m, "config.json")))
            hint = (f"; it holds the runs of {', '.join(inner)}: name one, e.g. "
                    f"{os.path.join(src, inner[-1])}" if inner else "")
            raise ConfigError(key, f"{src} is not a run directory (no config.json){hint}")
        if key == "sign_source" and config.sign_transfer not in (
                "source_signs", *signs.SHUFFLES):
            raise ConfigError(key, f"sign_transfer {config.sign_transfer!r} does not use a sign "
                              "source; use --config.sign_transfer=source_signs (or "
                              f"{' or '.join(signs.SHUFFLES)}), or drop --config.sign_source")
        with open(os.path.join(src, "config.json")) as f:
            other = json.load(f)
        for field in ("model", "width", "dataset", "mlp_hidden", "prune_fraction"):
            if field in other and other[field] != mine.get(field):
                raise ConfigError(key, f"{src} was run with {field}={other[field]!r}, this run "
                                  f"uses {config[field]!r}")
        levels = checkpoints.Store(src).levels()
        # Levels 1.. take signs: from the source's same level, or the one before.
        needed = (config.levels - (config.sign_source_level == "previous")
                  if key == "sign_source" else config.levels)
        have = len(levels)
        if have < needed:
            raise ConfigError(key, f"{src} has {have} finished levels, this run needs {needed}")
        theirs = [s for s, _ in replicas.replica_settings(_as_config(other))]
        ours = [s for s, _ in replicas.replica_settings(config)]
        if len(theirs) != len(ours):
            raise ConfigError(key, f"{src} has a different number of replicas")
        if theirs != ours and not config.allow_source_seed_mismatch:
            raise ConfigError("seed", f"{key} {src} was run with seeds {theirs}, this run uses "
                              f"{ours}: its masks/signs belong to another initialization; use "
                              "the same --config.seed, or --config.allow_source_seed_mismatch="
                              "True when that is the point")


def _as_config(d: dict):
    import ml_collections
    c = ml_collections.ConfigDict()
    c.seed = int(d.get("seed", 0))
    c.num_replicas = int(d.get("num_replicas", 1))
    c.perturb_probs = d.get("perturb_probs", "0")
    return c


def check(config, workdir: str) -> dict[str, bool]:
    """Check every method's run directory and the transfer sources; reads only.

    What a run checks before it loads data or compiles anything (the dry run
    too). Returns method -> whether its run directory holds another config's
    run that `prepare` deletes (`config.overwrite`).
    """
    stale = {}
    for m, d in run_dirs(config, workdir).items():
        stale[m] = check_workdir(method_config(config, m), d)
        if not stale[m]:
            checkpoints.Store(d).verify_all()  # a damaged checkpoint stops us before compiling
    check_sources(config, list(stale))
    return stale


def prepare(config, workdir: str, stale: dict[str, bool]) -> dict[str, str]:
    """Clear the stale run directories (`check`'s answer), write each config.json.

    Runs after every check has passed (the data loaded), before anything is
    compiled; returns method -> run dir.
    """
    dirs = run_dirs(config, workdir)
    distributed.barrier("workdir checked")  # every process read it before process 0 writes
    for m, d in dirs.items():
        if stale[m]:
            checkpoints.clear_run(d)  # process 0 only
            distributed.barrier(f"cleared {d}")
        if distributed.is_primary():
            os.makedirs(d, exist_ok=True)
        write_atomic(os.path.join(d, "config.json"), method_config(config, m).to_json(indent=2))
    return dirs


def load_level(workdir: str, level, replica: int = 0) -> dict:
    """Numpy pytrees of a finished level's final state (or 'init' / 'rewind').

    Returns {'params', 'batch_stats', 'mask', 'opt_state', 'meta'} of replica
    `replica`. `workdir` is a run directory of one method (`<workdir>/<method>`
    of a multi-method run).
    """
    store = checkpoints.Store(workdir)
    name = checkpoints.level_name(level) if isinstance(level, int) else str(level)
    if not store.exists(name):
        inner = sorted(m for m in rewind.MODES if os.path.isdir(os.path.join(workdir, m)))
        hint = (f"; it holds the run directories of {', '.join(inner)}: pass one, e.g. "
                f"{os.path.join(workdir, inner[0])}" if inner else "")
        raise ConfigError("workdir", f"{workdir} has no committed checkpoint {name!r} "
                          f"(have: {', '.join(store.names()) or 'none'}){hint}")
    restored, meta = store.restore_untyped(name)
    count = np.shape(jax.tree.leaves(restored["mask"])[0])[0]
    if not 0 <= int(replica) < count:
        raise ConfigError("replica", f"{workdir} has replicas 0..{count - 1}, not {replica}")
    out: dict[str, Any] = {k: jax.tree.map(lambda a: np.asarray(a)[replica], restored[k])
                           for k in ("params", "batch_stats", "mask", "opt_state")
                           if k in restored}
    out["meta"] = meta
    return out
