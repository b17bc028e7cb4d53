"""Hand-written run directories in the columns of `lrr_jax.schema`, for the reporting tests.

`make_fake_runs(root)` writes, with known numbers:
- multi/{imp,wr,lrr}: a multi-method workdir (config.json at the top), 2 seeds,
  LEVELS levels, results.csv and sign_flips.csv, and multi/lmc.json;
- perturb/: LRR with p in (0, 0.1, 0.3) x seeds (0, 1) in one run;
- wr_lrr_mask/: WR on multi/lrr's masks;
- imp_lrr_signs/: IMP with multi/lrr's mask and signs (sign_transfer source_signs);
- random/{imp,lrr}: random masks, balanced allocation.
"""

from __future__ import annotations

import json
import os

from lrr_jax import schema

LAYERS = ("params/Conv_0/kernel", "params/layer1_0/Conv_0/kernel",
          "params/layer1_0/Conv_1/kernel", "params/Dense_0/kernel")
BASE_ACC = {"imp": 0.90, "wr": 0.91, "lrr": 0.92}
FLIPS = {"lrr": 0.3, "wr": 0.1, "imp": 0.02}
LEVELS = 4
STEPS_AFTER_LAST_FLIP = 117


def acc(base: float, level: int, seed: int, p: float = 0.0) -> float:
    return round(base - 0.005 * level + 0.01 * seed - 0.02 * p * level, 6)


def identity(method, seed=0, p=0.0, pruning="global", score="magnitude", mask_source="",
             sign_source="", sign_transfer=""):
    return dict(method=method, seed=seed, perturb_prob=p, pruning=pruning, score=score,
                mask_source=mask_source, sign_source=sign_source, sign_transfer=sign_transfer)


def result_rows(method, base, replicas=((0, 0.0), (1, 0.0)), flips=None, **ident):
    """LEVELS levels x replicas ((seed, perturb_prob) pairs, replica = index) of results rows."""
    rows = []
    flips = FLIPS[method] if flips is None else flips
    for level in range(LEVELS):
        for replica, (seed, p) in enumerate(replicas):
            a = acc(base, level, seed, p)
            rows.append(dict(
                level=level, replica=replica, **identity(method, seed, p, **ident),
                data_order="per_replica", density=0.8 ** level, test_acc=a,
                best_epoch_test_acc=a + 0.002, test_loss=0.3 + 0.01 * level, train_loss=0.01,
                train_acc=0.999,
                sign_flip_frac_vs_init=0.0 if level == 0 else flips + 0.01 * level + 0.01 * seed,
                sign_flip_frac_vs_prev=None if level == 0 else flips / level,
                epochs=2, steps_after_last_flip=STEPS_AFTER_LAST_FLIP if p > 0 else None,
                wall_seconds=1.5))
    return rows


def flip_rows(results):
    """Per-layer sign_flips rows for each (replica, level >= 1) of `results`."""
    rows = []
    for r in results:
        if r["level"] == 0:
            continue
        for i, layer in enumerate(LAYERS):
            for ref in ("init", "prev"):
                frac = 0.05 * (i + 1) * (r["level"] if ref == "init" else 1) / LEVELS
                rows.append(dict(level=r["level"], replica=r["replica"],
                                 **{k: r[k] for k in schema.IDENTITY}, layer=layer,
                                 reference=ref, flip_frac=frac,
                                 n_unpruned=1000 // r["level"]))
    return rows


def write_run(directory, rows, config=None, flips=True):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "results.csv"), "w") as f:
        f.write(schema.to_csv(schema.RESULT_COLUMNS, rows))
    if flips:
        with open(os.path.join(directory, "sign_flips.csv"), "w") as f:
            f.write(schema.to_csv(schema.SIGN_FLIP_COLUMNS, flip_rows(rows)))
    if config is not None:
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f)


CONFIG = {"dataset": "cifar10", "model": "resnet18", "width": 1.0}


def make_fake_runs(root) -> dict[str, str]:
    root = str(root)
    multi = os.path.join(root, "multi")
    os.makedirs(multi)
    with open(os.path.join(multi, "config.json"), "w") as f:
        json.dump({**CONFIG, "method": "lrr", "methods": "imp,wr,lrr"}, f)
    for method, base in BASE_ACC.items():
        os.makedirs(os.path.join(multi, method, "checkpoints"))
        write_run(os.path.join(multi, method), result_rows(method, base))
    lmc = {"alphas": [i / 10 for i in range(11)],
           "test_loss": [0.3 + 1.2 * (i / 10) * (1 - i / 10) for i in range(11)],
           "test_acc": [0.92 - 0.4 * (i / 10) * (1 - i / 10) for i in range(11)],
           "a": "LRR level 3", "b": "IMP level 3"}
    with open(os.path.join(multi, "lmc.json"), "w") as f:
        json.dump(lmc, f)

    perturb = os.path.join(root, "perturb")
    replicas = [(s, p) for p in (0.0, 0.1, 0.3) for s in (0, 1)]
    write_run(perturb, result_rows("lrr", 0.92, replicas=replicas),
              {**CONFIG, "method": "lrr", "perturb_probs": "0,0.1,0.3"})

    lrr_dir = os.path.join(multi, "lrr")
    write_run(os.path.join(root, "wr_lrr_mask"),
              result_rows("wr", 0.917, flips=0.15, mask_source=lrr_dir),
              {**CONFIG, "method": "wr", "mask_source": lrr_dir})
    write_run(os.path.join(root, "imp_lrr_signs"),
              result_rows("imp", 0.912, flips=0.05, mask_source=lrr_dir, sign_source=lrr_dir,
                          sign_transfer="source_signs"),
              {**CONFIG, "method": "imp", "sign_transfer": "source_signs"})
    random = os.path.join(root, "random")
    os.makedirs(random)
    with open(os.path.join(random, "config.json"), "w") as f:
        json.dump({**CONFIG, "methods": "imp,lrr", "random_mask": True, "pruning": "balanced"},
                  f)
    for method, base in (("imp", 0.88), ("lrr", 0.895)):
        write_run(os.path.join(random, method),
                  result_rows(method, base, pruning="balanced", score="random"))
    return {"root": root, "multi": multi, "perturb": perturb, "lrr": lrr_dir}


def theory_result(grid_size: int = 21) -> dict:
    """A theory.json as `lrr_jax.theory.run` writes it, success = the paper's predicted rule."""
    g = [-2.0 + 4.0 * i / (grid_size - 1) for i in range(grid_size)]
    success = [[bool(w > 0 and (a > 0 or abs(a) < w)) for w in g] for a in g]
    quads = {"w0>0,a0>0": {"count": 26, "success_rate": 1.0},
             "w0>0,a0<0": {"count": 24, "success_rate": 0.5},
             "w0<0,a0>0": {"count": 25, "success_rate": 0.0},
             "w0<0,a0<0": {"count": 25, "success_rate": 0.0}}
    rates = {"imp_success_rate": 0.26, "lrr_success_rate": 0.51, "dense_success_rate": 0.51,
             "mask_correct_rate": 0.98, "imp_success_count": 26, "lrr_success_count": 51,
             "dense_success_count": 51, "mask_correct_count": 98}
    return {"experiment": "single_neuron", "d": 10, "num_inits": 100, "n_inputs": 128,
            "lr": 0.02, "steps": 2000, "init": "balanced", **rates,
            "other_init": {"init": "independent", **rates, "imp_success_rate": 0.3,
                           "imp_success_count": 30},
            "max_conservation_drift": 0.01,
            "d1": {"num_inits": 100, "quadrants": quads, "max_conservation_drift": 0.01,
                   "grid": {"w0": g, "a0": g, "success": success}}}
