"""The train step: masking, the learning-rate schedule and the SGD update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrr_jax import config_base, masks, models, parallel, train


def small_config(**overrides):
    c = config_base.get_base_config()
    c.model, c.dataset, c.mlp_hidden = "mlp", "mnist1d", (16, 16)
    c.update(overrides)
    return c


def test_pruned_weights_have_no_effect_on_outputs_or_gradients():
    c = small_config()
    model = models.create(c, 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 40))
    y = jnp.arange(8) % 10
    params = model.init(jax.random.PRNGKey(0), x, train=False)["params"]
    mask = jax.tree.map(lambda p: (jax.random.uniform(jax.random.PRNGKey(2), p.shape) > 0.5)
                        .astype(jnp.float32) if p.ndim == 2 else jnp.ones_like(p), params)
    # Same unpruned weights, different raw values at pruned positions.
    noise = jax.tree.map(lambda p: 100 * jax.random.normal(jax.random.PRNGKey(3), p.shape),
                         params)
    other = jax.tree.map(lambda p, m, n: jnp.where(m > 0, p, n), params, mask, noise)

    def loss(p):
        logits = model.apply({"params": masks.apply(p, mask)}, x, train=False)
        return train.cross_entropy(logits, y), logits

    (l1, out1), g1 = jax.value_and_grad(loss, has_aux=True)(params)
    (l2, out2), g2 = jax.value_and_grad(loss, has_aux=True)(other)
    np.testing.assert_allclose(out1, out2, rtol=1e-6)
    for a, b, m in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), jax.tree.leaves(mask)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # gradients of the others
        assert np.all(np.asarray(a)[np.asarray(m) == 0] == 0)  # pruned: exactly zero


def test_schedules():
    c = small_config(lr=0.1, lr_min=0.01, warmup_epochs=10, epochs_per_level=4)
    warm = train.lr_schedule(c, "warmup", steps_per_epoch=5)
    assert float(warm(0)) == pytest.approx(0.01)
    assert float(warm(4)) == pytest.approx(0.01)  # constant within an epoch
    assert float(warm(45)) == pytest.approx(0.1)
    cos = train.lr_schedule(c, "level", steps_per_epoch=5)
    expected = [0.01 + 0.5 * (1 + np.cos(np.pi * e / 4)) * 0.09 for e in range(4)]
    got = [float(cos(5 * e + 2)) for e in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert float(cos(0)) == pytest.approx(0.1)  # step 0 = the start of the schedule


def test_sgd_update_matches_pytorch_formula():
    c = small_config(weight_decay=0.01, momentum=0.9)
    tx = train.make_optimizer(c)
    w = {"kernel": jnp.array([[1.0, -2.0]])}
    g = {"kernel": jnp.array([[0.5, 0.5]])}
    state = tx.init(w)
    buf = np.zeros((1, 2))
    wn = np.array([[1.0, -2.0]])
    for _ in range(3):  # torch.optim.SGD: d = g + wd*w; b = mu*b + d; w -= lr*b
        u, state = tx.update(g, state, {"kernel": jnp.asarray(wn)})
        buf = 0.9 * buf + (np.asarray(g["kernel"]) + 0.01 * wn)
        np.testing.assert_allclose(u["kernel"], buf, rtol=1e-6)
        wn = wn - 0.1 * buf


def test_epoch_counts_steps_and_learns():
    c = small_config(batch_size=32, epochs_per_level=3)
    model = models.create(c, 2, bn_axis_name=train.AXIS)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 40)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    state = train.create_replicas(model, c, [0, 1], x[:1])
    fn, steps = train.make_train_epoch(apply_fn=model.apply, config=c, phase="level",
                                       num_train=256, num_devices=1, mean=np.zeros(40),
                                       std=np.ones(40), image=False)
    assert steps == 8
    backend = parallel.Backend("pmap", jax.local_devices()[:1])
    epoch = backend.map(fn, 4, donate_first=True)
    state, xs, ys = backend.put(state), backend.put(x), backend.put(y)
    losses = []
    for e in range(3):
        state, m = epoch(state, xs, ys, jax.random.PRNGKey(e))
        losses.append(np.asarray(m["loss"]))
    assert np.asarray(state.step).tolist() == [24, 24]  # one counter per replica
    assert np.all(losses[-1] < losses[0])
    assert not np.allclose(losses[-1][0], losses[-1][1])  # replicas are different seeds
