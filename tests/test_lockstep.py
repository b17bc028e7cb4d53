"""A whole figure in one program: TARGET@SOURCE method entries, and resumes that give the
same bits as an uninterrupted run.

`--config.methods=imp,lrr@imp` trains LRR on the masks of this run's IMP
replicas in lockstep with them (the paper's "LRR with IMP's masks"), written to
`<workdir>/lrr@imp/` with `mask_source` naming the IMP run directory, as the
two-stage run (`--config.mask_source=<the IMP run>`) writes it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from lrr_jax import campaign, checkpoints, schema, validation, workdir
from lrr_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import quickstart  # noqa: E402

TINY = {"mlp_hidden": (16, 16), "train_limit": 400, "test_limit": 200, "batch_size": 100,
        "eval_batch_size": 200, "levels": 4, "epochs_per_level": 2, "warmup_epochs": 1,
        "progress": False, "tensorboard": False, "checkpoint_every_epochs": 0,
        "num_replicas": 2}


def tiny(**overrides):
    c = quickstart.get_config()
    c.update({**TINY, **overrides})
    return c


@pytest.fixture(scope="module")
def figure(tmp_path_factory):
    """imp, lrr and lrr@imp in one program (2 seeds), and the two-stage equivalent."""
    root = tmp_path_factory.mktemp("lockstep")
    lockstep = campaign.run(tiny(methods="imp,lrr,lrr@imp"), str(root / "one"))
    first = campaign.run(tiny(methods="imp"), str(root / "stage1"))
    second = campaign.run(tiny(methods="lrr", mask_source=str(root / "stage1" / "imp")),
                          str(root / "stage2"))
    return root, lockstep, first, second


def test_lrr_at_imp_trains_on_the_imp_replicas_masks_at_every_level(figure):
    root, lockstep, _, _ = figure
    one = root / "one"
    assert sorted(n for n in os.listdir(one) if not n.startswith(".")) == [
        "imp", "lrr", "lrr@imp", "summary.txt"]
    for level in range(TINY["levels"]):
        for replica in range(2):
            got = workdir.load_level(str(one / "lrr@imp"), level, replica)["mask"]
            imp = workdir.load_level(str(one / "imp"), level, replica)["mask"]
            own = workdir.load_level(str(one / "lrr"), level, replica)["mask"]
            for a, b in zip(_leaves(got), _leaves(imp)):
                np.testing.assert_array_equal(a, b)
            if level >= 2:  # LRR's own masks have parted from IMP's by then
                assert any(not np.array_equal(a, b) for a, b in
                           zip(_leaves(got), _leaves(own))), (level, replica)
    rows = lockstep["lrr@imp"]
    assert {r["method"] for r in rows} == {"lrr"}
    assert {r["mask_source"] for r in rows} == {str(one / "imp")}
    on_disk = schema.read_csv(str(one / "lrr@imp" / "results.csv"))
    assert [r["mask_source"] for r in on_disk] == [str(one / "imp")] * len(rows)


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_lockstep_figure_agrees_with_the_two_stage_run(figure):
    _, lockstep, first, second = figure
    # The IMP replicas: another position of the vmapped program, the same computation.
    for a, b in zip(lockstep["imp"], first["imp"]):
        assert (a["level"], a["replica"], a["density"]) == (b["level"], b["replica"],
                                                             b["density"])
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.02)
    # LRR on IMP's masks: the same masks, weights to float tolerance.
    assert len(lockstep["lrr@imp"]) == len(second["lrr"]) == 2 * TINY["levels"]
    for a, b in zip(lockstep["lrr@imp"], second["lrr"]):
        assert (a["level"], a["replica"], a["seed"]) == (b["level"], b["replica"], b["seed"])
        assert a["density"] == b["density"]
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.02)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05)
    # Labelled as the two-stage transfer is: LRR with IMP's mask.
    from lrr_jax.reporting import series

    ident = {k: lockstep["lrr@imp"][0][k] for k in schema.IDENTITY}
    assert series.label_of(ident) == "LRR + IMP mask"


def test_mask_source_entries_are_checked():
    for methods, key, words in (
            ("lrr@imp", "methods", "must be a method of this run"),
            ("imp,lrr@sgd", "methods", "must be a method of this run"),
            ("imp,sgd@imp", "methods", "unknown method 'sgd'"),
            ("lrr,lrr@lrr", "methods", "trains on its own masks"),
            ("imp,lrr@imp,lrr@imp", "methods", "listed twice")):
        with pytest.raises(ConfigError, match=words) as e:
            validation.validate(tiny(methods=methods))
        assert e.value.key == key
    with pytest.raises(ConfigError) as e:
        validation.validate(tiny(methods="imp,lrr@imp", mask_source="/some/run"))
    assert e.value.key == "mask_source"


def _main(workdir_, *extra, fault=""):
    args = [f"--config.{k}={v}" for k, v in TINY.items() if k != "mlp_hidden"]
    return subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", "--config=configs/quickstart.py",
         f"--workdir={workdir_}", "--config.mlp_hidden=(16,16)", *args, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, LRR_JAX_FAULT=fault))


def _csvs(root):
    """method -> results.csv text, the workdir's own path (in mask_source) made neutral."""
    out = {}
    for m in sorted(os.listdir(root)):
        path = os.path.join(root, m, "results.csv")
        if os.path.isfile(path):
            out[m] = open(path).read().replace(str(root), "<workdir>")
    return out


@pytest.mark.slow
def test_killed_lockstep_run_and_a_partly_saved_level_resume_to_the_same_bits(tmp_path):
    methods = "--config.methods=imp,wr,lrr,wr@lrr,lrr@imp"
    whole = _main(tmp_path / "whole", methods)
    assert whole.returncode == 0, whole.stderr[-3000:]
    # SIGKILL while level 2 trains, then the same command.
    cut = _main(tmp_path / "kill", methods, fault="in_epoch:2:0")
    assert cut.returncode == -9
    again = _main(tmp_path / "kill", methods)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _csvs(tmp_path / "kill") == _csvs(tmp_path / "whole")
    # Killed right after IMP saved level 2, before the others did: level 2 is retrained
    # for the other methods in the same program as before, IMP alongside (its outputs
    # discarded, its level-2 mask given again to lrr@imp), so every row is the
    # uninterrupted run's (on a ResNet, where the program shape matters:
    # tests/test_rewind_resnet.py).
    part = _main(tmp_path / "part", methods, fault="after_save:level_002")
    assert part.returncode == -9
    store = checkpoints.Store(tmp_path / "part" / "imp")
    assert store.exists("level_002")
    assert not checkpoints.Store(tmp_path / "part" / "lrr").exists("level_002")
    again = _main(tmp_path / "part", methods)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _csvs(tmp_path / "part") == _csvs(tmp_path / "whole")
