"""The single-hidden-neuron experiment of Section 2 of the paper.

Model f(x) = a * relu(w . x) with w in R^d, teacher y = relu(x_1) (a* = 1,
w* = e_1), squared loss L = mean((f(x) - y)^2) / 2 over `theory_num_inputs`
standard Gaussian inputs drawn once per run and shared by every
initialization. Training is full-batch gradient descent with a small constant
step (`theory_lr`) for `theory_steps` steps, a discretization of gradient flow;
under gradient flow a^2 - |w|^2 is conserved (the model is 1-homogeneous in a
and in w), and the experiment measures how far GD drifts from that.

The one-input networks (d = 1, and the pruned networks of d > 1, which see
only the kept coordinate) are trained from four moments of their sample input
(`moments`), which gives exactly the sampled loss and its GD iterates at O(1)
cost per step; the dense d > 1 networks are trained on the (n, d) sample.

Success of a trained network means its final loss is below
`theory_threshold` times the loss of the zero predictor (relative loss).

Two experiments run in one `jax.jit`-compiled, `jax.vmap`-ped program:

- d = 1 (teacher relu(x)): `theory_num_inits` random initializations
  (w0, a0) ~ init_scale * N(0, I_2) and a regular grid over
  [-grid_range, grid_range]^2. Reports the success fraction per sign quadrant,
  the grid of success booleans and the largest drift of a^2 - w^2.
- d = `theory_dim` > 1 (teacher relu(x_1)): per initialization, train dense to
  convergence, keep the single largest |w_i| (the mask), then
  IMP: rewind the kept weight and a to their initial values and retrain;
  LRR: keep the trained values (masked) and retrain with the same step size.
  A run succeeds when the retrained one-weight network fits the teacher.

Initialization of the d > 1 experiment (`theory_init`):
    w(0) = init_scale * z / sqrt(d), z ~ N(0, I_d) (fan-in scaling, so
    |w(0)| ~ init_scale), and
    'balanced':    a(0) = s * |w(0)|, s = +-1 with probability 1/2 each, so
                   a(0)^2 - |w(0)|^2 = 0 (the balanced start gradient-flow
                   analyses assume; the paper's 1/4 vs 1/2 rates hold here);
    'independent': a(0) = init_scale * xi, xi ~ N(0, 1).
With `theory_compare_inits` the other mode is run in the same program and
reported under `other_init`.

`run(config, workdir)` writes `<workdir>/theory.json`; the figure is made by
`lrr_jax.reporting.theory_figure.plot`.
"""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from lrr_jax import errors

INIT_MODES = ("balanced", "independent")

# Inits per vmapped chunk of the dense d > 1 training (a speed knob only).
_CHUNK = 160

QUADRANTS = ("w0>0,a0>0", "w0>0,a0<0", "w0<0,a0>0", "w0<0,a0<0")
# The experiment's own config keys (configs/single_neuron.py explains them) and defaults.
DEFAULTS = {"theory_dim": 10, "theory_num_inits": 10000, "theory_steps": 4000,
            "theory_lr": 0.01, "theory_num_inputs": 128, "theory_init_scale": 1.0,
            "theory_init": "balanced", "theory_compare_inits": True, "theory_threshold": 1e-3,
            "theory_grid_size": 41, "theory_grid_range": 2.0}


def _settings(config) -> dict:
    """Reads and validates the theory settings from `config`.

    Args:
        config: an `ml_collections.ConfigDict` (or anything with `.get`).

    Returns:
        A dict of plain Python settings.

    Raises:
        errors.ConfigError: on an invalid value.
    """
    def get(key):
        return config.get(key, DEFAULTS[key])

    s = {
        "d": int(get("theory_dim")),
        "num_inits": int(get("theory_num_inits")),
        "steps": int(get("theory_steps")),
        "lr": float(get("theory_lr")),
        "n_inputs": int(get("theory_num_inputs")),
        "init_scale": float(get("theory_init_scale")),
        "init": str(get("theory_init")),
        "compare_inits": bool(get("theory_compare_inits")),
        "threshold": float(get("theory_threshold")),
        "grid_size": int(get("theory_grid_size")),
        "grid_range": float(get("theory_grid_range")),
        "seed": int(config.get("seed", 0)),
    }
    if s["d"] < 2:
        raise errors.ConfigError("theory_dim", f"must be >= 2 (d = 1 always runs), got {s['d']}")
    for key, name in (("num_inits", "theory_num_inits"), ("steps", "theory_steps"),
                      ("n_inputs", "theory_num_inputs"), ("grid_size", "theory_grid_size")):
        if s[key] < (2 if key == "grid_size" else 1):
            raise errors.ConfigError(name, f"must be a positive integer (grid: >= 2), got {s[key]}")
    for key, name in (("lr", "theory_lr"), ("init_scale", "theory_init_scale"),
                      ("threshold", "theory_threshold"), ("grid_range", "theory_grid_range")):
        if not s[key] > 0:
            raise errors.ConfigError(name, f"must be > 0, got {s[key]}")
    if s["init"] not in INIT_MODES:
        raise errors.ConfigError("theory_init", f"must be one of {INIT_MODES}, got {s['init']!r}")
    return s


def loss(w, a, x, y):
    """Squared loss of f(x) = a * relu(x @ w) on a sample, for one network or a batch.

    Args:
        w: (d,) first-layer weights, or (d, b) for b networks sharing the inputs.
        a: output weight, scalar or (b,).
        x: (n, d) inputs.
        y: (n,) targets.

    Returns:
        mean((f(x) - y)^2) / 2, scalar or (b,).
    """
    pred = a * jax.nn.relu(x @ w)
    return 0.5 * jnp.mean((pred - _col(y, w)) ** 2, axis=0)


def _col(y, w):
    """`y` as a column when `w` is a batch (d, b), so it broadcasts against (n, b)."""
    return y if w.ndim == 1 else y[:, None]


def grads(w, a, x, y):
    """Gradient of `loss` with respect to (w, a), written out (relu'(0) = 0).

    Args:
        w: (d,) or (d, b) first-layer weights.
        a: output weight, scalar or (b,).
        x: (n, d) inputs.
        y: (n,) targets.

    Returns:
        (dL/dw, dL/da), per network equal to `jax.grad(loss, argnums=(0, 1))`.
    """
    pre = x @ w
    h = jax.nn.relu(pre)
    r = a * h - _col(y, w)
    return a * (x.T @ jnp.where(pre > 0, r, 0.0)) / x.shape[0], jnp.mean(r * h, axis=0)


def _sq_norm(w):
    """|w|^2 of a scalar weight, a (d,) vector or each column of a (d, b) batch."""
    return jnp.sum(w**2, axis=0) if jnp.ndim(w) else w**2


def _gd(grad_fn, w, a, lr: float, steps: int):
    """`steps` GD steps of `grad_fn(w, a)` from (w, a), tracking the drift of a^2 - |w|^2."""
    c0 = a**2 - _sq_norm(w)

    def step(carry, _):
        w, a, drift = carry
        gw, ga = grad_fn(w, a)
        w, a = w - lr * gw, a - lr * ga
        drift = jnp.maximum(drift, jnp.abs(a**2 - _sq_norm(w) - c0))
        return (w, a, drift), None

    (w, a, drift), _ = jax.lax.scan(step, (w, a, jnp.zeros_like(a)), None, length=steps)
    return w, a, drift


def train(w, a, x, y, lr: float, steps: int):
    """Full-batch gradient descent on `loss`, for one network or a batch.

    A batch (w of shape (d, b)) gives the same iterates as `jax.vmap` over
    networks, with the batch on the last axis (faster on CPU).

    Args:
        w: (d,) or (d, b) initial first-layer weights.
        a: initial output weight, scalar or (b,).
        x: (n, d) inputs.
        y: (n,) targets.
        lr: constant step size.
        steps: number of GD steps (static).

    Returns:
        (w, a, final_loss, max_drift) where max_drift is the largest
        |(a^2 - |w|^2)(t) - (a^2 - |w|^2)(0)| seen along the trajectory.
    """
    w, a, drift = _gd(lambda w, a: grads(w, a, x, y), w, a, lr, steps)
    return w, a, loss(w, a, x, y), drift


def moments(u, y):
    """The statistics of a sample that the one-input loss depends on.

    For one input column u (n,), a * relu(w * u) is a * w * u on {u > 0} when
    w > 0 and on {u < 0} when w < 0, so the sampled loss is exactly
    ((a w)^2 S - 2 a w M + mean(y^2)) / 2 with S = mean(u^2 1{active}) and
    M = mean(u y 1{active}).

    Args:
        u: (n,) the kept input coordinate.
        y: (n,) targets.

    Returns:
        (5,) array [S+, M+, S-, M-, mean(y^2)].
    """
    pos, neg = u > 0, u < 0
    return jnp.stack([jnp.mean(jnp.where(pos, u * u, 0.0)), jnp.mean(jnp.where(pos, u * y, 0.0)),
                      jnp.mean(jnp.where(neg, u * u, 0.0)), jnp.mean(jnp.where(neg, u * y, 0.0)),
                      jnp.mean(y * y)])


def _active_moments(w, mom):
    """(S, M) of the half-line where relu(w * u) is active (none when w = 0)."""
    s = jnp.where(w > 0, mom[0], jnp.where(w < 0, mom[2], 0.0))
    m = jnp.where(w > 0, mom[1], jnp.where(w < 0, mom[3], 0.0))
    return s, m


def loss_1d(w, a, mom):
    """`loss` of a one-input network (w scalar) from the sample's `moments`."""
    s, m = _active_moments(w, mom)
    # Clamped: the expanded square can round to about -1e-8 at an exact fit.
    return jnp.maximum(0.5 * ((a * w) ** 2 * s - 2 * a * w * m + mom[4]), 0.0)


def train_1d(w, a, mom, lr: float, steps: int):
    """`train` for a one-input network, in O(1) per step from the sample's `moments`.

    Same iterates as `train(w[None], a, u[:, None], y, ...)` up to rounding.

    Args:
        w: scalar initial weight.
        a: scalar initial output weight.
        mom: `moments(u, y)` of the sample.
        lr: constant step size.
        steps: number of GD steps (static).

    Returns:
        (w, a, final_loss, max_drift) as in `train`.
    """

    def grad_fn(w, a):
        s, m = _active_moments(w, mom)
        r = a * w * s - m  # dL/d(a w)
        return r * a, r * w

    w, a, drift = _gd(grad_fn, w, a, lr, steps)
    return w, a, loss_1d(w, a, mom), drift


def _init_d(key, num: int, d: int, scale: float, mode: str):
    """Draws `num` initializations (w(0), a(0)) for the d > 1 experiment."""
    kw, ka = jax.random.split(key)
    w0 = scale * jax.random.normal(kw, (num, d)) / np.sqrt(d)
    xi = jax.random.normal(ka, (num,))
    if mode == "balanced":
        a0 = jnp.where(xi >= 0, 1.0, -1.0) * jnp.linalg.norm(w0, axis=1)
    else:
        a0 = scale * xi
    return w0, a0


def _train_chunked(w0, a0, x, y, lr: float, steps: int):
    """`train` for a batch w0 (B, d), a0 (B,), in chunks of `_CHUNK` networks.

    Each chunk is one batched `train` (the same iterates as `jax.vmap(train)`),
    and `lax.map` runs the chunks one after another so that each chunk's
    (n, _CHUNK) activations stay in cache. Returns per-network arrays.
    """
    num, d = w0.shape
    pad = -num % _CHUNK
    w = jnp.pad(w0, ((0, pad), (0, 0))).reshape(-1, _CHUNK, d).transpose(0, 2, 1)
    a = jnp.pad(a0, (0, pad)).reshape(-1, _CHUNK)
    wt, at, lt, drift = jax.lax.map(lambda p: train(p[0], p[1], x, y, lr, steps), (w, a))
    wt = wt.transpose(0, 2, 1).reshape(-1, d)[:num]
    return wt, at.reshape(-1)[:num], lt.reshape(-1)[:num], drift.reshape(-1)[:num]


@functools.partial(jax.jit, static_argnames=("s", "modes"))
def _experiment(key, s, modes):
    """The whole experiment as one compiled program.

    Args:
        key: PRNG key.
        s: settings as a hashable tuple of (name, value) pairs.
        modes: init modes of the d > 1 experiment, concatenated in one batch.

    Returns:
        A dict of arrays (see `run`).
    """
    s = dict(s)
    d, num, n, lr, steps = s["d"], s["num_inits"], s["n_inputs"], s["lr"], s["steps"]
    k_x1, k_d1, k_x, k_init = jax.random.split(key, 4)
    train_1d_b = jax.vmap(functools.partial(train_1d, lr=lr, steps=steps), in_axes=(0, 0, 0))

    # d = 1: random inits and a grid, teacher relu(x).
    x1 = jax.random.normal(k_x1, (n,))
    y1 = jax.nn.relu(x1)
    mom1 = moments(x1, y1)
    p1 = s["init_scale"] * jax.random.normal(k_d1, (num, 2))
    g = jnp.linspace(-s["grid_range"], s["grid_range"], s["grid_size"])
    gw, ga = jnp.meshgrid(g, g)  # [i_a, j_w]
    w1_all = jnp.concatenate([p1[:, 0], gw.ravel()])
    a1_all = jnp.concatenate([p1[:, 1], ga.ravel()])
    mom1_b = jnp.broadcast_to(mom1, (w1_all.shape[0], 5))
    _, _, l1, drift1 = train_1d_b(w1_all, a1_all, mom1_b)
    rel1 = l1 / (0.5 * mom1[4])

    # d > 1: teacher relu(x_1).
    x = jax.random.normal(k_x, (n, d))
    y = jax.nn.relu(x[:, 0])
    zero = 0.5 * jnp.mean(y**2)
    inits = [_init_d(k, num, d, s["init_scale"], m)
             for k, m in zip(jax.random.split(k_init, len(modes)), modes, strict=True)]
    w0 = jnp.concatenate([i[0] for i in inits])
    a0 = jnp.concatenate([i[1] for i in inits])
    wt, at, lt, drift_dense = _train_chunked(w0, a0, x, y, lr, steps)
    # Prune to the single largest |w_i|; the pruned net only sees x[:, kept].
    kept = jnp.argmax(jnp.abs(wt), axis=1)
    mom_k = jax.vmap(moments, in_axes=(1, None))(x, y)[kept]  # (B, 5)
    rows = jnp.arange(w0.shape[0])
    _, _, l_imp, drift_imp = train_1d_b(w0[rows, kept], a0, mom_k)  # IMP: rewind to init
    _, _, l_lrr, drift_lrr = train_1d_b(wt[rows, kept], at, mom_k)  # LRR: keep trained
    return {
        "d1_w0": w1_all, "d1_a0": a1_all, "d1_rel_loss": rel1, "d1_drift": drift1,
        "w0": w0, "a0": a0, "kept": kept,
        "dense_rel_loss": lt / zero, "imp_rel_loss": l_imp / zero, "lrr_rel_loss": l_lrr / zero,
        "drift": jnp.maximum(drift_dense, jnp.maximum(drift_imp, drift_lrr)),
    }


def _rate(mask) -> float:
    return float(np.mean(mask)) if mask.size else float("nan")


def _unconverged(rel_loss, threshold: float):
    """Runs neither fitted (< threshold) nor at a failure (relative loss >= 0.5)."""
    return (rel_loss >= threshold) & (rel_loss < 0.5)


def _summary_d(out: dict, sl: slice, threshold: float) -> dict:
    """Rates of the d > 1 experiment over the inits in `sl`."""
    imp, lrr, dense = out["imp_ok"][sl], out["lrr_ok"][sl], out["dense_ok"][sl]
    correct = out["kept"][sl] == 0
    w1_pos, a_pos = out["w0"][sl, 0] > 0, out["a0"][sl] > 0
    by_signs = {}
    for name, sel in (("w1>0,a>0", w1_pos & a_pos), ("w1>0,a<0", w1_pos & ~a_pos),
                      ("w1<0,a>0", ~w1_pos & a_pos), ("w1<0,a<0", ~w1_pos & ~a_pos)):
        by_signs[name] = {"count": int(sel.sum()), "imp_success_rate": _rate(imp[sel]),
                          "lrr_success_rate": _rate(lrr[sel]),
                          "dense_success_rate": _rate(dense[sel])}
    return {
        "imp_success_rate": _rate(imp), "lrr_success_rate": _rate(lrr),
        "dense_success_rate": _rate(dense), "mask_correct_rate": _rate(correct),
        "imp_success_count": int(imp.sum()), "lrr_success_count": int(lrr.sum()),
        "dense_success_count": int(dense.sum()), "mask_correct_count": int(correct.sum()),
        "unconverged_rates": {k: _rate(_unconverged(out[f"{k}_rel_loss"][sl], threshold))
                              for k in ("dense", "imp", "lrr")},
        "by_init_signs": by_signs,
    }


def run(config, workdir: str) -> dict:
    """Runs the single-hidden-neuron experiment and writes `<workdir>/theory.json`.

    Args:
        config: `ml_collections.ConfigDict` with the `theory_*` keys and `seed`
            (see configs/single_neuron.py).
        workdir: output directory (created if missing).

    Returns:
        The dict written to theory.json.
    """
    s = _settings(config)
    modes = (s["init"],)
    if s["compare_inits"]:
        modes += tuple(m for m in INIT_MODES if m != s["init"])
    start = time.time()
    out = _experiment(jax.random.PRNGKey(s["seed"]), tuple(sorted(s.items())), modes)
    out = jax.tree.map(np.asarray, jax.device_get(out))
    wall = time.time() - start
    for name in ("d1", "dense", "imp", "lrr"):
        out[f"{name}_ok"] = out[f"{name}_rel_loss"] < s["threshold"]
    num = s["num_inits"]

    # d = 1.
    w0, a0, ok = out["d1_w0"][:num], out["d1_a0"][:num], out["d1_ok"][:num]
    predicted = (w0 > 0) & ((a0 > 0) | (np.abs(a0) < w0))
    quads = {}
    for name, sel in zip(QUADRANTS, ((w0 > 0) & (a0 > 0), (w0 > 0) & (a0 < 0),
                                     (w0 < 0) & (a0 > 0), (w0 < 0) & (a0 < 0)), strict=True):
        quads[name] = {"count": int(sel.sum()), "success_rate": _rate(ok[sel])}
    g = np.linspace(-s["grid_range"], s["grid_range"], s["grid_size"])
    drift1 = out["d1_drift"]
    scale1 = out["d1_a0"] ** 2 + out["d1_w0"] ** 2
    d1 = {
        "num_inits": num,
        "init": "w0, a0 ~ init_scale * N(0, 1) independently",
        "success_rate": _rate(ok),
        "quadrants": quads,
        "predicted_rule": "w0 > 0 and (a0 > 0 or |a0| < w0)",
        "agreement_with_predicted_rule": _rate(ok == predicted),
        "unconverged_rate": _rate(_unconverged(out["d1_rel_loss"][:num], s["threshold"])),
        "max_conservation_drift": float(drift1.max()),
        "max_relative_conservation_drift": float((drift1 / np.maximum(scale1, 1e-12)).max()),
        "median_relative_conservation_drift": float(np.median(drift1 / np.maximum(scale1, 1e-12))),
        "relative_drift_note": "drift / (a0^2 + w0^2); zero under gradient flow, O(lr) for GD",
        "grid": {
            "w0": g.tolist(), "a0": g.tolist(),
            "success": out["d1_ok"][num:].reshape(s["grid_size"], s["grid_size"]).tolist(),
            "layout": "success[i][j] is (a0 = a0[i], w0 = w0[j])",
        },
    }

    result = {
        "experiment": "single_neuron",
        "init_description": {
            "w0": "init_scale * N(0, I_d) / sqrt(d)",
            "a0": {"balanced": "random sign * |w0|",
                   "independent": "init_scale * N(0, 1)"}[s["init"]],
        },
        **s,
        **_summary_d(out, slice(0, num), s["threshold"]),
        "max_conservation_drift": d1["max_conservation_drift"],
        "max_conservation_drift_d": float(out["drift"][:num].max()),
        "max_relative_conservation_drift_d": float(
            (out["drift"][:num] / (out["a0"][:num] ** 2 + np.sum(out["w0"][:num] ** 2, 1))).max()),
        "d1": d1,
        "wall_seconds": wall,
    }
    if len(modes) > 1:
        other = _summary_d(out, slice(num, 2 * num), s["threshold"])
        result["other_init"] = {"init": modes[1], **other}
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "theory.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(summary(result), f"wrote {path} (figure: python -m lrr_jax.report {workdir})",
          sep="\n", flush=True)
    return result


def summary(result: dict) -> str:
    """The rates of a `run` result as the lines the entry point prints at the end."""
    lines = [f"single hidden neuron: {result['num_inits']} initializations per row, success = "
             f"final loss < {result['threshold']:g} x the zero predictor's",
             "| a(0) init | IMP | LRR | dense | mask correct |", "|:--|--:|--:|--:|--:|"]
    for r in (result, result.get("other_init")):
        if r:
            lines.append(f"| {r['init']} (d = {result['d']}) | {r['imp_success_rate']:.3f} | "
                         f"{r['lrr_success_rate']:.3f} | {r['dense_success_rate']:.3f} | "
                         f"{r['mask_correct_rate']:.3f} |")
    lines.append("d = 1, success per quadrant of (w0, a0): " + ", ".join(
        f"{k} {v['success_rate']:.2f}" for k, v in result["d1"]["quadrants"].items()))
    return "\n".join(lines)
