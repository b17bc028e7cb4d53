"""Results rows of a finished level, one per replica, in the columns of `schema`."""

from __future__ import annotations

import os

from lrr_jax import masks, replicas, signs


def _round(x) -> float:
    return float(f"{float(x):.6g}")


def score_of(config) -> str:
    """The run's pruning score: `config.score`, or 'random' for the older `random_mask`."""
    return "random" if config.get("random_mask") else config.get("score", "magnitude")


def identity(config, replica, mask_source: str = "") -> dict:
    """The identity fields (`schema.IDENTITY`) of a replica under `config`.

    `mask_source`: the run directory its masks come from, where that is a
    replica of the same run (TARGET@SOURCE); else `config.mask_source`.
    """
    return {"method": replica.rewind, "seed": replica.seed,
            "perturb_prob": replica.perturb_prob, "pruning": config.pruning,
            "score": score_of(config),
            "mask_source": mask_source or config.mask_source,
            "sign_source": config.sign_source, "sign_transfer": config.sign_transfer}


def level_rows(rs, run) -> dict[str, tuple[list, list]]:
    """method entry -> (results rows, sign-flip rows) of the pending replicas of a level.

    `rs` is the replica set, `run` the `levels.LevelRun` (its `trained` state,
    its `prev` and what the epoch loop measured in `outcome`: 'best',
    'last_eval', 'train_metrics' per replica, 'seconds', 'steps_after_last_flip').
    """
    config, level, state, prev, outcome = rs.config, run.level, run.trained, run.prev, \
        run.outcome
    out: dict[str, tuple[list, list]] = {}
    for i in run.pending:
        r = rs.reps[i]
        rows, flips = out.setdefault(r.method, ([], []))
        source = "" if r.mask_from is None else \
            os.path.dirname(rs.stores[r.mask_from].dir)
        params, mask = replicas.one(state.params, i), replicas.one(state.mask, i)
        per_init = signs.sign_flips_per_layer(replicas.one(rs.init.params, i), params, mask)
        per_prev = (signs.sign_flips_per_layer(replicas.one(prev.params, i), params, mask)
                    if prev is not None else None)

        def total(per):
            return sum(f for f, _ in per.values()) / max(sum(n for _, n in per.values()), 1)

        ident = identity(config, r, source)
        last, train_m = outcome["last_eval"], outcome["train_metrics"]
        rows.append({
            "level": level, "replica": r.index, **ident, "data_order": config.data_order,
            "density": _round(masks.density(mask)),
            "test_acc": _round(last["acc"][i]),
            "best_epoch_test_acc": _round(outcome["best"][i]),
            "test_loss": _round(last["loss"][i]),
            "train_loss": _round(train_m["loss"][i]), "train_acc": _round(train_m["acc"][i]),
            "sign_flip_frac_vs_init": _round(total(per_init)),
            "sign_flip_frac_vs_prev": _round(total(per_prev)) if per_prev else None,
            "epochs": int(config.epochs_per_level),
            "steps_after_last_flip": outcome["steps_after_last_flip"]
            if r.perturb_prob > 0 else None})
        for reference, per in (("init", per_init), ("prev", per_prev)):
            for layer, (f, n) in (per or {}).items():
                flips.append({"level": level, "replica": r.index, **ident, "layer": layer,
                              "reference": reference, "flip_frac": _round(f / max(n, 1)),
                              "n_unpruned": n})
    return out
