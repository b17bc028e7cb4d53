"""Tests of the single-hidden-neuron experiment (lrr_jax/theory.py) and its figure."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lrr_jax import errors, theory
from lrr_jax.reporting import theory_figure

LR, STEPS = 0.02, 2000  # gradient-flow time 40, as in configs/single_neuron.py


def _sample_1d(n=128, seed=0):
    x = jax.random.normal(jax.random.PRNGKey(seed), (n,))
    return x, jax.nn.relu(x)


def _fit_1d(w0, a0, lr=LR, steps=STEPS):
    """Trains d = 1 from (w0, a0); returns (relative final loss, max drift)."""
    x, y = _sample_1d()
    _, _, loss, drift = theory.train_1d(jnp.float32(w0), jnp.float32(a0),
                                        theory.moments(x, y), lr, steps)
    return float(loss / (0.5 * jnp.mean(y**2))), float(drift)


def test_grads_match_autodiff():
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 5))
    y = jax.nn.relu(x[:, 0])
    w, a = jax.random.normal(jax.random.PRNGKey(2), (5,)), jnp.float32(-0.7)
    gw, ga = theory.grads(w, a, x, y)
    ref_w, ref_a = jax.grad(theory.loss, argnums=(0, 1))(w, a, x, y)
    np.testing.assert_allclose(gw, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ga, ref_a, rtol=1e-5, atol=1e-6)


def test_batched_train_matches_vmap():
    x = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    y = jax.nn.relu(x[:, 0])
    w = jax.random.normal(jax.random.PRNGKey(4), (6, 4))
    a = jax.random.normal(jax.random.PRNGKey(5), (6,))
    tr = functools.partial(theory.train, x=x, y=y, lr=LR, steps=200)
    wv, av, lv, _ = jax.vmap(tr)(w, a)
    wb, ab, lb, _ = tr(w.T, a)
    np.testing.assert_allclose(wb.T, wv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ab, av, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lb, lv, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("w0,a0", [(1.0, 1.0), (0.8, -0.5), (-0.6, 1.2), (1.0, -1.5)])
def test_train_1d_from_moments_matches_sampled_gd(w0, a0):
    x, y = _sample_1d()
    w, a = jnp.float32(w0), jnp.float32(a0)
    w1, a1, l1, d1 = theory.train_1d(w, a, theory.moments(x, y), LR, 500)
    ws, as_, ls, ds = theory.train(w[None], a, x[:, None], y, LR, 500)
    np.testing.assert_allclose([w1, a1, l1, d1], [ws[0], as_, ls, ds], rtol=1e-4, atol=1e-5)


def test_conservation_law_d1():
    # a^2 - w^2 is conserved by gradient flow; GD drifts O(lr), so halving
    # the step (same flow time) halves the drift.
    _, drift = _fit_1d(1.0, 0.5)
    _, drift_half = _fit_1d(1.0, 0.5, lr=LR / 2, steps=2 * STEPS)
    assert drift < 1e-2 * (1.0**2 + 0.5**2)
    assert drift_half < 0.7 * drift


def test_d1_success_and_failure():
    assert _fit_1d(1.0, 1.0)[0] < 1e-3  # the balanced positive start learns
    assert _fit_1d(1.0, -0.5)[0] < 1e-3  # a0 < 0 but |a0| < w0: a crosses 0 first
    # w0 < 0: relu(w x) is active only on x < 0, where the teacher is 0, so
    # GD just shrinks w to 0 (it never crosses); the loss stays at the zero
    # predictor's (relative ~1), whatever the sign of a0.
    for a0 in (1.0, -1.0, 0.3):
        assert _fit_1d(-1.0, a0)[0] > 0.5
    assert _fit_1d(1.0, -1.5)[0] > 0.5  # |a0| > w0: w dies before a turns positive


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("theory"))
    config = ml_collections.ConfigDict({
        "experiment": "single_neuron", "seed": 0, "theory_dim": 10, "theory_num_inits": 2000,
        "theory_num_inputs": 128, "theory_lr": LR, "theory_steps": STEPS,
        "theory_init": "balanced", "theory_compare_inits": False, "theory_grid_size": 21,
    })
    return theory.run(config, workdir), workdir


def test_imp_vs_lrr_rates(small_run):
    result, _ = small_run
    # Balanced init: IMP succeeds iff w_1(0) > 0 and a(0) > 0 (p = 1/4), LRR
    # iff a(0) > 0 (p = 1/2). Binomial std with 2000 inits is <= 0.011, so
    # +-0.05 is > 4.5 std.
    assert result["num_inits"] == 2000
    assert abs(result["imp_success_rate"] - 0.25) < 0.05
    assert abs(result["lrr_success_rate"] - 0.5) < 0.05
    assert result["lrr_success_rate"] - result["imp_success_rate"] > 0.15
    assert result["mask_correct_rate"] > 0.95
    signs = result["by_init_signs"]
    assert signs["w1>0,a>0"]["imp_success_rate"] > 0.99
    assert signs["w1<0,a>0"]["imp_success_rate"] < 0.01
    assert signs["w1<0,a>0"]["lrr_success_rate"] > 0.99


def test_d1_quadrants_and_drift(small_run):
    d1 = small_run[0]["d1"]
    q = d1["quadrants"]
    assert q["w0>0,a0>0"]["success_rate"] > 0.99
    assert q["w0<0,a0>0"]["success_rate"] < 0.01
    assert q["w0<0,a0<0"]["success_rate"] < 0.01
    assert 0.4 < q["w0>0,a0<0"]["success_rate"] < 0.6  # the half with |a0| < w0
    assert d1["agreement_with_predicted_rule"] > 0.99
    assert d1["max_relative_conservation_drift"] < 0.1
    assert np.asarray(d1["grid"]["success"]).shape == (21, 21)


def test_theory_json_written(small_run):
    _, workdir = small_run
    with open(os.path.join(workdir, "theory.json")) as f:
        saved = json.load(f)
    for key in ("imp_success_rate", "lrr_success_rate", "mask_correct_rate", "num_inits", "d",
                "steps", "lr", "n_inputs", "init_scale", "seed", "threshold",
                "max_conservation_drift", "d1"):
        assert key in saved, key
    assert set(saved["d1"]["quadrants"]) == set(theory.QUADRANTS)


def test_figure_writes_png(small_run, tmp_path):
    result, workdir = small_run
    for source in (os.path.join(workdir, "theory.json"), result):
        out = theory_figure.plot(source, str(tmp_path / "theory.png"))
        with open(out, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(out) > 10_000


def test_bad_config_raises():
    with pytest.raises(errors.ConfigError, match="theory_init"):
        theory.run(ml_collections.ConfigDict({"theory_init": "nope"}), "/nonexistent")


def test_entry_point_prints_the_result(tmp_path):
    """`python -m lrr_jax.main --config=configs/single_neuron.py` ends with the rates."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", "--config=configs/single_neuron.py",
         f"--workdir={tmp_path}", "--config.theory_num_inits=200", "--config.theory_steps=300",
         "--config.theory_grid_size=5"], cwd=repo, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "theory.json") as f:
        r = json.load(f)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == (f"wrote {tmp_path / 'theory.json'} (figure: python -m lrr_jax.report "
                         f"{tmp_path})")
    text = "\n".join(lines)
    assert (f"| balanced (d = 10) | {r['imp_success_rate']:.3f} | {r['lrr_success_rate']:.3f} | "
            f"{r['dense_success_rate']:.3f} | {r['mask_correct_rate']:.3f} |") in text
    assert f"| independent (d = 10) | {r['other_init']['imp_success_rate']:.3f} |" in text
    q = r["d1"]["quadrants"]
    assert "d = 1, success per quadrant of (w0, a0): " + ", ".join(
        f"{k} {v['success_rate']:.2f}" for k, v in q.items()) in text
