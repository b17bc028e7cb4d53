"""Tests for lrr_jax.models: architecture counts, shapes, BatchNorm, init, dtypes."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lrr_jax import errors, models


def _config(**kwargs):
    base = {"model": "resnet18", "width": 1.0, "dtype": "float32", "mlp_hidden": (256, 256)}
    base.update(kwargs)
    return ml_collections.ConfigDict(base)


def _leaves(tree):
    """Returns [(path tuple of str, leaf)] for a nested dict of arrays."""
    return [
        (tuple(k.key for k in path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _shapes(model, input_shape):
    """Variables of `model` as ShapeDtypeStructs, without allocating or computing."""
    return jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(input_shape), train=False)
    )


# XLA:CPU spends most of a ResNet's compile time in LLVM optimization; these
# tests run each program once, so compile cheaply (about 4x less CPU time).
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _call(fn, *args):
    """Compiles `fn` for `args` with cheap CPU optimization and runs it once."""
    return jax.jit(fn).lower(*args).compile(_FAST_COMPILE)(*args)


def _prunable_count(params):
    return sum(leaf.size for path, leaf in _leaves(params) if path[-1] == "kernel")


def _init_and_apply(model, x):
    """Init, train apply and eval apply of `model` on `x`, compiled as one program.

    Returns:
        A dict with the initial variables, train and eval logits and the mutable
        updates of both, and the eval logits of the first example alone.
    """

    def run(x):
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        train_logits, train_updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        eval_logits, eval_updates = model.apply(variables, x, train=False, mutable=["batch_stats"])
        eval_first = model.apply(variables, x[:1], train=False)
        return {
            "variables": variables,
            "train_logits": train_logits,
            "train_updates": train_updates,
            "eval_logits": eval_logits,
            "eval_updates": eval_updates,
            "eval_first": eval_first,
        }

    return _call(run, x)


@pytest.fixture(scope="module")
def small_resnet18():
    """ResNet18 at width 0.125 run once on a (2, 32, 32, 3) batch with mean 3, std 2."""
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    return x, _init_and_apply(models.create(_config(width=0.125), 10), x)


# Example shape each model is built for (the count table's entries).
_INPUT = {"resnet50_imagenet": (64, 64, 3), "lenet_300_100": (28, 28, 1)}


@pytest.mark.parametrize("name,num_classes", sorted(models.PAPER_PRUNABLE_COUNTS))
def test_prunable_counts_at_width_one(name, num_classes):
    model = models.create(_config(model=name), num_classes)
    variables = _shapes(model, (1, *_INPUT.get(name, (32, 32, 3))))
    count = _prunable_count(variables["params"])
    assert count == models.PAPER_PRUNABLE_COUNTS[(name, num_classes)]
    expected = {"resnet18": 11_164_352, "resnet50": 23_652_032, "resnet50_imagenet": 23_864_512,
                # 784*300 + 300*100 + 100*10 (Frankle & Carbin 2019: 266K weights)
                "lenet_300_100": 266_200,
                # open_lth's prunable tensors (every conv and linear weight)
                "vgg16": 14_715_584, "vgg19": 20_024_000, "resnet20": 270_896,
                "resnet56": 851_504}
    assert count == expected[name]


def test_resnet18_is_the_paper_network():
    variables = _shapes(models.create(_config(), 10), (1, 32, 32, 3))
    params = variables["params"]
    assert params["conv1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["fc"]["kernel"].shape == (512, 10)
    assert "bias" not in params["fc"]  # the paper's classifier is a bias-free 1x1 conv
    # Projection shortcuts exactly where the shape changes.
    with_shortcut = sorted(k for k, v in params.items() if "shortcut_conv" in v)
    assert with_shortcut == ["layer2_0", "layer3_0", "layer4_0"]
    assert params["layer2_0"]["shortcut_conv"]["kernel"].shape == (1, 1, 64, 128)
    # 4800 BatchNorm channels: 11,173,962 PyTorch parameters = 11,164,352 prunable
    # + 2 * 4800 BatchNorm scale/bias + 10 classifier bias (which the paper's code lacks).
    bn_channels = sum(leaf.size for _, leaf in _leaves(variables["batch_stats"])) // 2
    assert bn_channels == 4800


def test_resnet50_structure():
    params = _shapes(models.create(_config(model="resnet50"), 100), (1, 32, 32, 3))["params"]
    blocks = [k for k in params if k.startswith("layer")]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert params["layer1_0"]["shortcut_conv"]["kernel"].shape == (1, 1, 64, 256)
    assert params["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)  # stride on the 3x3
    assert params["fc"]["kernel"].shape == (2048, 100)
    imagenet = _shapes(models.create(_config(model="resnet50_imagenet"), 200), (1, 64, 64, 3))
    assert imagenet["params"]["conv1"]["kernel"].shape == (7, 7, 3, 64)


def test_only_prunable_weights_are_named_kernel_and_convs_have_no_bias():
    for name in ("resnet18", "resnet50", "resnet50_imagenet"):
        variables = _shapes(models.create(_config(model=name, width=0.125), 10), (1, 32, 32, 3))
        for path, leaf in _leaves(variables["params"]):
            assert path[-1] in ("kernel", "scale", "bias"), path
            if path[-1] == "kernel":
                assert leaf.ndim in (2, 4), path
                assert "bn" not in path[-2], path
            else:
                # scale/bias only in BatchNorm: no conv or classifier bias.
                assert "bn" in path[-2], path
                assert leaf.ndim == 1


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50_imagenet"])
def test_output_shapes_small_width(name):
    model = models.create(_config(model=name, width=0.125), 10)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    assert variables["params"]["conv1"]["kernel"].shape[-1] == 8  # round(64 * 0.125)
    assert variables["params"]["fc"]["kernel"].shape[0] == (8 if name == "resnet18" else 32) * 8
    eval_logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    train_logits, updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x
    )
    for logits in (eval_logits, train_logits):
        assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert set(updates) == {"batch_stats"}


def test_resnet18_forward_is_finite(small_resnet18):
    _, out = small_resnet18
    for key in ("train_logits", "eval_logits"):
        assert out[key].shape == (2, 10) and out[key].dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(out[key])))


def test_imagenet_stem_resnet50_forward_is_finite():
    model = models.create(_config(model="resnet50_imagenet", width=0.125), 200)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))

    def run(x):
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        return model.apply(variables, x, train=True, mutable=["batch_stats"])[0]

    logits = _call(run, x)
    assert logits.shape == (2, 200) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))


def test_width_rounding():
    params = _shapes(models.create(_config(width=0.01), 10), (1, 8, 8, 3))["params"]
    assert params["conv1"]["kernel"].shape[-1] == 1  # max(1, round(0.64))
    assert params["layer4_0"]["conv1"]["kernel"].shape[-1] == 5  # round(5.12)


def test_batchnorm_stats_update_in_train_only(small_resnet18):
    x, out = small_resnet18
    variables = out["variables"]
    stats = variables["batch_stats"]
    for path, leaf in _leaves(stats):
        np.testing.assert_array_equal(np.asarray(leaf), 0.0 if path[-1] == "mean" else 1.0)

    # Train mode: every running mean and variance moves.
    new = out["train_updates"]["batch_stats"]
    for (path, old_leaf), (_, new_leaf) in zip(_leaves(stats), _leaves(new), strict=True):
        assert not np.allclose(np.asarray(old_leaf), np.asarray(new_leaf)), path
    # Flax momentum 0.9 = PyTorch momentum 0.1: running = 0.9 * 0 + 0.1 * batch mean of conv1(x).
    h = jax.lax.conv_general_dilated(
        x,
        variables["params"]["conv1"]["kernel"],
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(
        np.asarray(new["bn1"]["mean"]),
        0.1 * np.asarray(h.mean(axis=(0, 1, 2))),
        rtol=1e-4,
        atol=1e-5,
    )

    # Eval mode: running statistics are used and left alone; examples are independent.
    eval_stats = out["eval_updates"]["batch_stats"]
    for (_, a), (_, b) in zip(_leaves(stats), _leaves(eval_stats), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(
        np.asarray(out["eval_logits"][:1]), np.asarray(out["eval_first"]), rtol=1e-5, atol=1e-5
    )


def test_bn_axis_name_averages_statistics_across_shards(small_resnet18):
    # Two shards of one example each, BatchNorm statistics averaged over axis 'data',
    # must reproduce the single-device run on the whole batch.
    x, out = small_resnet18
    sharded = models.create(_config(width=0.125), 10, bn_axis_name="data")

    def run(variables, x):
        def shard_apply(xs):
            return sharded.apply(variables, xs, train=True, mutable=["batch_stats"])

        return jax.vmap(shard_apply, axis_name="data")(x.reshape(2, 1, *x.shape[1:]))

    logits, updates = _call(run, out["variables"], x)
    np.testing.assert_allclose(
        np.asarray(logits.reshape(2, 10)), np.asarray(out["train_logits"]), rtol=1e-4, atol=1e-4
    )
    expected = _leaves(out["train_updates"]["batch_stats"])
    for (_, a), (_, b) in zip(_leaves(updates["batch_stats"]), expected, strict=True):
        np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(a[1]), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_kernel_init_is_untruncated_kaiming_normal():
    model = models.create(_config(width=0.5), 10)
    params = _call(
        lambda x: model.init(jax.random.PRNGKey(0), x, train=False), jnp.zeros((1, 8, 8, 3))
    )["params"]
    for path, rel_tol in [
        (("layer4_1", "conv2"), 0.01),  # 3x3x256x256: 590k samples
        (("layer3_0", "shortcut_conv"), 0.03),  # 1x1x64x128
        (("fc",), 0.1),  # 256x10
        (("conv1",), 0.15),  # 3x3x3x32: 864 samples
    ]:
        node = params
        for key in path:
            node = node[key]
        w = np.asarray(node["kernel"], np.float64)
        std = math.sqrt(2.0 / int(np.prod(w.shape[:-1])))  # fan_in = all but the last axis
        assert abs(w.std() / std - 1) < rel_tol, (path, w.std(), std)
        assert abs(w.mean()) < 5 * std / math.sqrt(w.size), path
    wide = np.asarray(params["layer4_1"]["conv2"]["kernel"])
    # A truncated normal would stop at 2 std; ~37 of 590k normal samples pass 4 std.
    assert np.abs(wide).max() > 4 * math.sqrt(2.0 / (9 * 256))
    bn = params["layer1_0"]["bn1"]
    np.testing.assert_array_equal(np.asarray(bn["scale"]), 1.0)
    np.testing.assert_array_equal(np.asarray(bn["bias"]), 0.0)


def _all_eqns(jaxpr):
    """Equations of a jaxpr and of the jaxprs nested in it (models/conv.py's custom VJP)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _all_eqns(inner)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    # Shapes and dtypes of the bottleneck network, without compiling it.
    model = models.create(_config(model="resnet50", width=0.125, dtype="bfloat16"), 10)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    logits, updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x
    )
    for _, leaf in _leaves(variables) + _leaves(updates):
        assert leaf.dtype == jnp.float32
    assert logits.dtype == jnp.float32
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    convs = [e for e in _all_eqns(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 53  # stem + 16 blocks * 3 + 4 shortcuts
    assert all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars)

    # A real bfloat16 run of the small ResNet18.
    model = models.create(_config(width=0.125, dtype="bfloat16"), 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3))

    def run(x):
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        return variables, model.apply(variables, x, train=True, mutable=["batch_stats"])

    variables, (logits, updates) = _call(run, x)
    for _, leaf in _leaves(variables) + _leaves(updates):
        assert leaf.dtype == jnp.float32
    assert logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits)))


def test_mlp_shapes_and_no_batch_stats():
    model = models.create(_config(model="mlp", mlp_hidden=(32, 16)), 10)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 40))
    variables = _call(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    assert set(variables) == {"params"}
    params = variables["params"]
    assert [params[k]["kernel"].shape for k in ("dense1", "dense2", "fc")] == [
        (40, 32),
        (32, 16),
        (16, 10),
    ]
    assert all(np.all(np.asarray(params[k]["bias"]) == 0) for k in params)
    logits = _call(lambda v, x: model.apply(v, x, train=True), variables, x)
    assert logits.shape == (5, 10) and logits.dtype == jnp.float32


def test_mlp_defaults_and_bfloat16():
    config = ml_collections.ConfigDict({"model": "mlp", "dtype": "bfloat16"})
    model = models.create(config, 10)
    x = jnp.ones((3, 64))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    assert variables["params"]["dense1"]["kernel"].shape == (64, 256)
    assert variables["params"]["dense2"]["kernel"].shape == (256, 256)
    assert all(leaf.dtype == jnp.float32 for _, leaf in _leaves(variables))
    logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"model": "vgg11"}, "model"),
        ({"dtype": "float16"}, "dtype"),
        ({"width": 0.0}, "width"),
        ({"model": "mlp", "mlp_hidden": (8, -1)}, "mlp_hidden"),
    ],
)
def test_bad_config_raises_config_error(kwargs, key):
    with pytest.raises(errors.ConfigError) as info:
        models.create(_config(**kwargs), 10)
    assert info.value.key == key


@pytest.mark.parametrize("stride,kernel,pad", [(1, 3, 1), (2, 3, 1), (2, 1, 0), (1, 1, 0)])
def test_cpu_canonical_conv_gradients_match_lax(monkeypatch, stride, kernel, pad):
    # models/conv.py: the custom VJP computes the same gradients as JAX's rules,
    # also as the body of a lax.scan (where it is meant to be used).
    from lrr_jax.models import conv

    monkeypatch.setenv("LRR_JAX_CPU_CONV", "canonical")
    rng = np.random.default_rng(stride * 10 + kernel)
    x = jnp.asarray(rng.normal(size=(3, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 4, 5)), jnp.float32)
    args = ((stride, stride), ((pad, pad), (pad, pad)))

    def loss(f, x, w):
        out = f(x, w, *args, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(out))

    def in_scan(f):
        def run(x, w):
            def body(c, _):
                g = jax.grad(lambda a, b: loss(f, a, b), argnums=(0, 1))(x, w)
                return c, g
            return jax.lax.scan(body, 0, None, length=2)[1]
        return jax.jit(run)

    ours = in_scan(conv.conv_general_dilated)(x, w)
    ref = in_scan(jax.lax.conv_general_dilated)(x, w)
    jaxpr = jax.make_jaxpr(lambda a: loss(conv.conv_general_dilated, a, w))(x)
    assert "custom_vjp" in str(jaxpr)  # the custom VJP is in use, not lax's rule
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


# --- open_lth's lottery-ticket networks ----------------------------------------------------

# Total parameter counts asserted by open_lth's own tests (facebookresearch/open_lth,
# models/test/test_mnist_lenet.py, test_cifar_vgg.py, test_cifar_resnet.py).
OPEN_LTH_TOTALS = {"lenet_300_100": 266_610, "vgg16": 14_728_266, "vgg19": 20_040_522,
                   "resnet20": 272_474}


@pytest.mark.parametrize("name", sorted(OPEN_LTH_TOTALS))
def test_open_lth_parameter_totals(name):
    # Our kernels + BatchNorm scale/bias + classifier bias, plus the conv biases open_lth's
    # VGG keeps (one per BatchNorm channel; dropped here, see models/vgg.py), are open_lth's
    # tested totals: the same layers with the same shapes.
    variables = _shapes(models.create(_config(model=name), 10),
                        (1, *_INPUT.get(name, (32, 32, 3))))
    params = variables["params"]
    total = sum(leaf.size for _, leaf in _leaves(params))
    bn_channels = sum(leaf.size for _, leaf in _leaves(variables.get("batch_stats", {}))) // 2
    conv_biases = bn_channels if name.startswith("vgg") else 0
    assert total + conv_biases == OPEN_LTH_TOTALS[name]


def test_lenet_300_100_layers_and_init():
    model = models.create(_config(model="lenet_300_100"), 10)
    x = jnp.zeros((3, 28, 28, 1))
    variables = _call(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    assert set(variables) == {"params"}  # no BatchNorm
    params = variables["params"]
    assert list(params) == ["dense1", "dense2", "fc"]
    assert [params[k]["kernel"].shape for k in params] == [(784, 300), (300, 100), (100, 10)]
    for name, fan_in in (("dense1", 784), ("dense2", 300), ("fc", 100)):
        # Kernel: Kaiming normal, std sqrt(2 / fan_in) (the fc's 1000 samples: 10%).
        w = np.asarray(params[name]["kernel"], np.float64)
        assert abs(w.std() / math.sqrt(2.0 / fan_in) - 1) < (0.01 if fan_in == 784 else 0.1)
        # Bias: PyTorch's default nn.Linear bias, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        b = np.asarray(params[name]["bias"], np.float64)
        bound = 1 / math.sqrt(fan_in)
        assert np.all(np.abs(b) <= bound) and np.abs(b).max() > 0.8 * bound
        if b.size >= 100:
            assert abs(b.std() / (bound / math.sqrt(3)) - 1) < 0.2
    logits = model.apply(variables, jnp.ones((3, 28, 28, 1)), train=True)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    # Width scales the hidden units only.
    narrow = _shapes(models.create(_config(model="lenet_300_100", width=0.1), 10), (1, 28, 28, 1))
    assert [narrow["params"][k]["kernel"].shape for k in ("dense1", "dense2", "fc")] == [
        (784, 30), (30, 10), (10, 10)]


@pytest.mark.parametrize("name,depth", [("vgg16", 13), ("vgg19", 16)])
def test_vgg_is_open_lths_cifar_vgg(name, depth):
    from lrr_jax.models import vgg

    params = _shapes(models.create(_config(model=name), 10), (1, 32, 32, 3))["params"]
    channels = [c for c in vgg.PLANS[name] if c != "M"]
    assert len(channels) == depth
    ins = [3] + channels[:-1]
    assert [params[f"conv{i + 1}"]["kernel"].shape for i in range(depth)] == [
        (3, 3, c_in, c_out) for c_in, c_out in zip(ins, channels)]
    assert all(set(params[f"conv{i + 1}"]) == {"kernel"} for i in range(depth))  # no conv bias
    assert set(params) == {f"conv{i + 1}" for i in range(depth)} | {
        f"bn{i + 1}" for i in range(depth)} | {"fc"}  # no hidden fully connected layer
    assert params["fc"]["kernel"].shape == (512, 10) and params["fc"]["bias"].shape == (10,)
    assert vgg.PLANS[name].count("M") == 4  # 32x32 -> 2x2 before the average pool


@pytest.mark.parametrize("name,blocks", [("resnet20", 3), ("resnet56", 9)])
def test_cifar_resnet_is_open_lths(name, blocks):
    variables = _shapes(models.create(_config(model=name), 10), (1, 32, 32, 3))
    params = variables["params"]
    assert params["conv1"]["kernel"].shape == (3, 3, 3, 16)
    assert sorted(k for k in params if k.startswith("layer")) == sorted(
        f"layer{s}_{b}" for s in (1, 2, 3) for b in range(blocks))
    # 1x1 stride-2 projections (conv + BN) exactly where the shape changes.
    assert sorted(k for k, v in params.items() if "shortcut_conv" in v) == ["layer2_0", "layer3_0"]
    assert params["layer2_0"]["shortcut_conv"]["kernel"].shape == (1, 1, 16, 32)
    assert params["layer3_0"]["shortcut_conv"]["kernel"].shape == (1, 1, 32, 64)
    assert params["layer3_0"]["conv1"]["kernel"].shape == (3, 3, 32, 64)
    assert params["fc"]["kernel"].shape == (64, 10) and params["fc"]["bias"].shape == (10,)
    convs = [p for p, leaf in _leaves(params) if p[-1] == "kernel" and leaf.ndim == 4]
    assert len(convs) == 1 + 6 * blocks + 2  # depth 6n + 2 counts the fc, not the projections
    for path, _ in _leaves(params):  # only BatchNorm and the classifier have biases
        assert path[-1] != "bias" or "bn" in path[-2] or path[-2] == "fc", path
    # Stride 2 in the first conv and the projection of stages 2 and 3: 32 -> 16 -> 8.
    model = models.create(_config(model=name), 10)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        variables, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    strides = [tuple(e.params["window_strides"]) for e in _all_eqns(jaxpr.jaxpr)
               if e.primitive.name == "conv_general_dilated"]
    assert len(strides) == len(convs) and strides.count((2, 2)) == 4


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_cifar_models_forward_bn_and_sharded_statistics(name):
    # Width 1/8, a real run: finite float32 logits in both modes; BatchNorm statistics move
    # in training only; with bn_axis_name, two shards of one example reproduce the batch of 2.
    model = models.create(_config(model=name, width=0.125), 10)
    sharded = models.create(_config(model=name, width=0.125), 10, bn_axis_name="data")
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))

    def run(x):
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        train = model.apply(variables, x, train=True, mutable=["batch_stats"])
        evaluated = model.apply(variables, x, train=False)
        split = jax.vmap(lambda xs: sharded.apply(variables, xs, train=True,
                                                  mutable=["batch_stats"]),
                         axis_name="data")(x.reshape(2, 1, 32, 32, 3))
        return variables, train, evaluated, split

    variables, (logits, updates), evaluated, (split_logits, split_updates) = _call(run, x)
    for out in (logits, evaluated):
        assert out.shape == (2, 10) and out.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_allclose(np.asarray(split_logits).reshape(2, 10), np.asarray(logits),
                               rtol=1e-4, atol=1e-4)
    old = _leaves(variables["batch_stats"])
    for (path, a), (_, b), (_, c) in zip(old, _leaves(updates["batch_stats"]),
                                         _leaves(split_updates["batch_stats"]), strict=True):
        assert not np.allclose(np.asarray(a), np.asarray(b)), path
        np.testing.assert_allclose(np.asarray(c[0]), np.asarray(b), rtol=1e-4, atol=1e-5)
    # The convolutions go through models/conv.py (fast CPU gradients inside lax.scan).
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)
    calls = [e for e in _all_eqns(jaxpr.jaxpr) if "custom_vjp" in e.primitive.name]
    kernels = [leaf for path, leaf in _leaves(variables["params"])
               if path[-1] == "kernel" and leaf.ndim == 4]
    assert len(calls) == len(kernels) == {"vgg16": 13, "resnet20": 21}[name]


def test_registry_is_a_dict_of_builders(monkeypatch):
    assert all(callable(build) for build in models.MODELS.values())
    assert "lenet_300_100" in models.MODELS and "vgg19" in models.MODELS

    # A toy model is one function and one registry line.
    import flax.linen as nn

    class Toy(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, x, train: bool):
            return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))

    seen = {}

    def build_toy(config, num_classes, bn_axis_name):
        seen["args"] = (config.get("model"), num_classes, bn_axis_name)
        return Toy(num_classes)

    monkeypatch.setitem(models.MODELS, "toy", build_toy)
    model = models.create(_config(model="toy"), 7, bn_axis_name="data")
    assert isinstance(model, Toy) and seen["args"] == ("toy", 7, "data")
    with pytest.raises(errors.ConfigError, match="choose one of .*'toy'"):
        models.create(_config(model="toy2"), 7)
