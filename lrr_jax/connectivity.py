"""Linear mode connectivity between two checkpoints (experiment = 'lmc').

    python -m lrr_jax.main --config=configs/quickstart.py --workdir=/tmp/lmc \
        --config.experiment=lmc --config.lmc_a=/tmp/quick/lrr:3 --config.lmc_b=/tmp/quick/imp:3

As the paper code's `linear_mode.py`: each endpoint's weights are masked by its
own mask, then params and BatchNorm running statistics are interpolated,
theta(alpha) = alpha * theta_a + (1 - alpha) * theta_b, for alpha in
0, 0.1, ..., 1, and every point is evaluated on the test set. All points are
evaluated as replicas of one vmapped program. Writes `<workdir>/lmc.json`.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from lrr_jax import checkpoints, driver, masks, models, parallel, train
from lrr_jax.errors import ConfigError


def parse_ref(key: str, ref: str) -> tuple[str, str]:
    """'RUN_DIR:LEVEL' -> (run_dir, checkpoint name); LEVEL is a number, 'init' or 'rewind'."""
    run_dir, sep, level = ref.rpartition(":")
    if not sep or not run_dir:
        raise ConfigError(key, f"expected RUN_DIR:LEVEL, got {ref!r}")
    name = checkpoints.level_name(int(level)) if level.isdigit() else level
    if not checkpoints.Store(run_dir).exists(name):
        raise ConfigError(key, f"{run_dir} has no committed checkpoint {name!r}")
    return run_dir, name


def run(config, workdir: str) -> dict:
    refs = {key: parse_ref(key, config[key]) for key in ("lmc_a", "lmc_b")}
    setup = driver.make_setup(config)
    ds = setup.dataset
    model = models.create(config, ds.num_classes, bn_axis_name=train.AXIS)
    sample = np.zeros((1, *ds.train_x.shape[1:]), np.float32)
    endpoints = {}
    for key, (run_dir, name) in refs.items():
        with open(os.path.join(run_dir, "config.json")) as f:
            k = int(json.load(f).get("num_replicas", 1))
        like = parallel.get(train.create_replicas(model, config, list(range(k)), sample))
        state, _ = checkpoints.Store(run_dir).restore(name, like)
        state = jax.tree.map(lambda a: a[0], state)  # replica 0
        endpoints[key] = state.replace(params=masks.apply(state.params, state.mask))
    a, b = endpoints["lmc_a"], endpoints["lmc_b"]
    alphas = np.linspace(0.0, 1.0, int(config.lmc_points))

    def point(alpha):
        mix = lambda x, y: alpha * np.asarray(x) + (1 - alpha) * np.asarray(y)  # noqa: E731
        return a.replace(params=jax.tree.map(mix, a.params, b.params),
                         batch_stats=jax.tree.map(mix, a.batch_stats, b.batch_stats),
                         mask=jax.tree.map(np.ones_like, a.mask))

    stacked = jax.tree.map(lambda *xs: np.stack(xs), *[point(al) for al in alphas])
    evaluate = setup.backend.map(train.make_evaluate(
        apply_fn=model.apply, num_devices=setup.backend.num_devices, mean=ds.mean, std=ds.std,
        eval_batch=setup.eval_batch), 4)
    p = setup.placed
    out = parallel.get(evaluate(setup.backend.put(stacked), p["test_x"], p["test_y"],
                                p["test_w"]))
    result = {"alphas": alphas.tolist(), "test_loss": out["loss"].tolist(),
              "test_acc": out["acc"].tolist(), "a": config.lmc_a, "b": config.lmc_b,
              "barrier_loss": float(np.max(out["loss"]) - max(out["loss"][0], out["loss"][-1]))}
    os.makedirs(workdir, exist_ok=True)
    driver.write_atomic(os.path.join(workdir, "lmc.json"), json.dumps(result, indent=2))
    print(json.dumps(result))
    return result
