"""Linear mode connectivity and sign agreement between two checkpoints (experiment = 'lmc').

    python -m lrr_jax.main --config=configs/lmc.py --workdir=/tmp/lmc \
        --config.lmc_a=/tmp/quick/lrr:3 --config.lmc_b=/tmp/quick/imp:3

As the paper code's `linear_mode.py`: each endpoint's weights are masked by its
own mask, then params and BatchNorm running statistics are interpolated,
theta(alpha) = (1 - alpha) * theta_a + alpha * theta_b for alpha in
0, 0.1, ..., 1 (`lmc_points` points; alpha = 0 is `lmc_a`, alpha = 1 is
`lmc_b`; the paper code writes alpha * model_1 + (1 - alpha) * model_2, the
same path walked the other way), and every point is evaluated on the test set.
All points are evaluated as replicas of one vmapped program.

A checkpoint is 'RUN_DIR:LEVEL' with LEVEL a level number (that level's final
weights), 'init' (theta_0) or 'rewind' (the end of the warm-up); RUN_DIR is the
directory of one method (e.g. <workdir>/lrr of a multi-method run). Replica 0
of each run is used. Both runs must have this config's dataset and model.

As the paper code's `sign_similarity.py`, the fraction of weights whose sign
differs between the two endpoints is counted too, per layer and in total, over
the weights unpruned in both masks.

Writes `<workdir>/lmc.json`: alphas, test_loss, test_acc, a, b, barrier_loss
(max loss - max endpoint loss), sign_flip_frac, sign_flips_per_layer
({layer: [flipped, compared]}).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from lrr_jax import checkpoints, engine, masks, replicas, signs, workdir
from lrr_jax.errors import ConfigError

# The experiment's own config keys (configs/lmc.py explains them).
KEYS = ("lmc_a", "lmc_b", "lmc_points")
# Fields that decide the parameter shapes and the test set: must agree with this config.
MATCH_FIELDS = ("dataset", "model", "width", "mlp_hidden")


def parse_ref(key: str, ref: str) -> tuple[str, str]:
    """'RUN_DIR:LEVEL' -> (run_dir, checkpoint name); LEVEL is a number, 'init' or 'rewind'."""
    run_dir, sep, level = ref.rpartition(":")
    if not sep or not run_dir:
        raise ConfigError(key, f"expected RUN_DIR:LEVEL, got {ref!r}")
    name = checkpoints.level_name(int(level)) if level.isdigit() else level
    if not checkpoints.Store(run_dir).exists(name):
        have = ", ".join(checkpoints.Store(run_dir).names()) or "none"
        raise ConfigError(key, f"{run_dir} has no committed checkpoint {name!r} (have: {have})")
    return run_dir, name


def _run_config(key: str, run_dir: str, config) -> dict:
    """The run's config.json, checked against this config's data and model."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(key, f"{run_dir} is not a run directory (no config.json)")
    with open(path) as f:
        other = json.load(f)
    mine = json.loads(config.to_json())
    for field in MATCH_FIELDS:
        if field in other and other[field] != mine.get(field):
            raise ConfigError(key, f"{run_dir} was run with {field}={other[field]!r}, this "
                              f"config has {mine.get(field)!r}; pass --config.{field}=...")
    return other


def run(config, work_dir: str) -> dict:
    refs = {key: parse_ref(key, config[key]) for key in ("lmc_a", "lmc_b")}
    run_configs = {key: _run_config(key, run_dir, config) for key, (run_dir, _) in refs.items()}
    setup = engine.make(config)
    endpoints, raw_masks = {}, {}
    for key, (run_dir, name) in refs.items():
        other = config.copy_and_resolve_references()
        other.num_replicas = int(run_configs[key].get("num_replicas", 1))
        other.perturb_probs = run_configs[key].get("perturb_probs", "0")
        k = len(replicas.replica_settings(other))
        like = setup.init_states(list(range(k)))
        state, _ = checkpoints.Store(run_dir).restore(name, like)
        state = jax.tree.map(lambda a: a[0], state)  # replica 0
        raw_masks[key] = state.mask
        endpoints[key] = state.replace(params=masks.apply(state.params, state.mask))
    a, b = endpoints["lmc_a"], endpoints["lmc_b"]
    alphas = np.linspace(0.0, 1.0, int(config.lmc_points))

    def point(alpha):
        mix = lambda x, y: (1 - alpha) * np.asarray(x) + alpha * np.asarray(y)  # noqa: E731
        return a.replace(params=jax.tree.map(mix, a.params, b.params),
                         batch_stats=jax.tree.map(mix, a.batch_stats, b.batch_stats),
                         mask=jax.tree.map(np.ones_like, a.mask))

    stacked = jax.tree.map(lambda *xs: np.stack(xs), *[point(al) for al in alphas])
    out = setup.evaluate(stacked)
    both = jax.tree.map(lambda x, y: np.asarray(x) * np.asarray(y),
                        raw_masks["lmc_a"], raw_masks["lmc_b"])
    per_layer = signs.sign_flips_per_layer(a.params, b.params, both)
    compared = sum(n for _, n in per_layer.values())
    result = {"alphas": [round(float(x), 6) for x in alphas],
              "test_loss": out["loss"].tolist(), "test_acc": out["acc"].tolist(),
              "a": config.lmc_a, "b": config.lmc_b,
              "barrier_loss": float(np.max(out["loss"]) - max(out["loss"][0], out["loss"][-1])),
              "sign_flip_frac": sum(f for f, _ in per_layer.values()) / max(compared, 1),
              "sign_flips_per_layer": {k: [f, n] for k, (f, n) in per_layer.items()}}
    os.makedirs(work_dir, exist_ok=True)
    workdir.write_atomic(os.path.join(work_dir, "lmc.json"), json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "sign_flips_per_layer"}))
    return result
