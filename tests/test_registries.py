"""Open for research: a score, a model or a dataset is one function and one registry line.

A config file (Python) registers a toy dataset, a toy model and a toy score and
runs a 2-level campaign with them through the entry point, with no edit to
lrr_jax; SNIP and SynFlow (pruning.SCORES) run through the level loop and
prune differently from magnitude on the quickstart's setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from lrr_jax import campaign, schema, workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import quickstart  # noqa: E402

TOY_CONFIG = '''
"""A toy dataset, model and score, registered here and used at once."""
import flax.linen as nn
import numpy as np

from lrr_jax import config_base, data, models, pruning


def load_toy(config, name):
    """Two classes told apart by the sign of the sum of the first four features."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int32)
    return {"train_x": x[:200], "train_y": y[:200], "test_x": x[200:], "test_y": y[200:]}, 2


class ToyNet(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(self.num_classes, name="out")(nn.relu(nn.Dense(16, name="hidden")(x)))


def smallest_first(ctx):
    """Keeps the smallest magnitudes (the opposite of IMP's rule)."""
    return {k: -v for k, v in pruning.SCORES["magnitude"](ctx).items()}


data.DATASETS["toy"] = data.Spec(load_toy, "Toy")
models.MODELS["toy_net"] = lambda config, num_classes, bn_axis_name: ToyNet(num_classes)
pruning.SCORES["smallest_first"] = smallest_first


def get_config():
    c = config_base.get_base_config()
    c.methods = "imp,lrr"
    c.dataset, c.model, c.score = "toy", "toy_net", "smallest_first"
    c.levels, c.epochs_per_level, c.warmup_epochs = 2, 2, 1
    c.batch_size, c.eval_batch_size = 50, 100
    c.progress, c.tensorboard = False, False
    return c
'''


def test_a_toy_score_model_and_dataset_registered_in_a_config_file_run_a_campaign(tmp_path):
    config = tmp_path / "toy.py"
    config.write_text(textwrap.dedent(TOY_CONFIG))
    done = subprocess.run([sys.executable, "-m", "lrr_jax.main", f"--config={config}",
                           f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for method in ("imp", "lrr"):
        rows = schema.read_csv(str(tmp_path / "w" / method / "results.csv"))
        assert [r["level"] for r in rows] == [0, 1]
        assert {r["score"] for r in rows} == {"smallest_first"}
        assert rows[1]["density"] == pytest.approx(0.8, abs=1e-3)
        # The toy score decided the mask: every kept weight of level 1 is smaller than
        # every pruned one of its layer (the opposite of magnitude pruning).
        final0 = workdir.load_level(str(tmp_path / "w" / method), 0)
        level1 = workdir.load_level(str(tmp_path / "w" / method), 1)
        for layer in ("hidden", "out"):
            w = np.abs(np.asarray(final0["params"][layer]["kernel"])).reshape(-1)
            m = np.asarray(level1["mask"][layer]["kernel"]).reshape(-1) > 0
            assert m.any() and not m.all()
            assert w[m].max() <= w[~m].min(), (method, layer)
    # --help lists the entries the config file registered (from the registries).
    helped = subprocess.run([sys.executable, "-m", "lrr_jax.main", f"--config={config}",
                             "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "smallest_first" in helped.stdout and "toy_net" in helped.stdout


TINY = {"mlp_hidden": (32, 32), "train_limit": 400, "test_limit": 200, "batch_size": 100,
        "eval_batch_size": 200, "levels": 2, "epochs_per_level": 2, "warmup_epochs": 1,
        "progress": False, "tensorboard": False, "checkpoint_every_epochs": 0,
        "num_replicas": 1, "methods": "lrr"}


@pytest.mark.slow
def test_snip_and_synflow_prune_differently_from_magnitude_on_the_quickstart(tmp_path):
    masks_of = {}
    for score in ("magnitude", "snip", "synflow"):
        c = quickstart.get_config()
        c.update({**TINY, "score": score})
        rows = campaign.run(c, str(tmp_path / score))["lrr"]
        assert [r["score"] for r in rows] == [score, score]
        assert rows[1]["density"] == pytest.approx(0.8, abs=1e-3)  # the planned count
        masks_of[score] = workdir.load_level(str(tmp_path / score / "lrr"), 1)["mask"]
    leaves = {k: np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(v)])
              for k, v in masks_of.items()}
    for score in ("snip", "synflow"):
        assert leaves[score].sum() == leaves["magnitude"].sum()
        assert not np.array_equal(leaves[score], leaves["magnitude"]), score
