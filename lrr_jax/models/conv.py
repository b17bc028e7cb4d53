"""A 2-D convolution whose gradients stay fast on XLA:CPU inside compiled loops.

`lax.conv_general_dilated`'s gradients are convolutions in transposed layouts
(kernel as `01oi` for the input gradient, batch and feature swapped for the
kernel gradient). XLA:CPU runs a convolution with its fast (Eigen) kernels only
in the canonical layout NHWC x HWIO -> NHWC, and its layout-canonicalization
pass rewrites only the entry computation: convolutions inside a `while` body
(every `lax.scan` / `fori_loop`, so the whole-epoch train program) stay in the
naive loop emitter. Measured with jax 0.10.2 on a 2-core CPU: a CIFAR ResNet18
(width 0.125, batch 128) SGD step took 0.45 s as a plain jit and 7.5 s as the
body of a one-step `lax.scan`.

`conv_general_dilated` here has the signature of `lax.conv_general_dilated`
(flax's `nn.Conv(conv_general_dilated=...)`). On the CPU backend with a single
device, for plain NHWC/HWIO convolutions (no dilation, no groups, explicit
padding), it uses a custom VJP that writes both gradients as canonical
convolutions with explicit transposes: the same arithmetic as JAX's own rules
(bitwise equal outside loops; within float32 rounding inside them). Anything
else, and every other backend, goes to `lax.conv_general_dilated` unchanged.

Why only a single CPU device: with 8 fake CPU devices
(`--xla_force_host_platform_device_count=8`), 2 vmapped replicas and a
per-device batch of 8 (tests/dp_worker.py's setting), XLA:CPU (jaxlib 0.10.2)
computed replica 1's gradient on device 0 wrongly in the first iteration of the
scan (~10% off; 1 device, 3 replicas, 4 devices, or `--xla_disable_hlo_passes=
algsimp` were all right; so were 9 single-device shape/replica/augmentation
combinations checked against `lax`). Multi-device CPU runs are tests and
fake-device experiments, so they keep JAX's rules. `LRR_JAX_CPU_CONV=lax`
turns the custom gradients off everywhere; `=canonical` forces them on.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

_CANONICAL = ("NHWC", "HWIO", "NHWC")


def _dilate(size: int, d: int) -> int:
    return 0 if size == 0 else 1 + d * (size - 1)


def _canon(lhs, rhs, strides, padding, lhs_dilation=(1, 1), rhs_dilation=(1, 1), precision=None):
    return lax.conv_general_dilated(lhs, rhs, strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=_CANONICAL,
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, w, strides, padding, precision=None):
    """NHWC x HWIO -> NHWC convolution with canonical-layout gradients."""
    return _canon(x, w, strides, padding, precision=precision)


def _conv2d_fwd(x, w, strides, padding, precision):
    return _canon(x, w, strides, padding, precision=precision), (x, w)


def _conv2d_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    spatial_in, window, spatial_out = x.shape[1:3], w.shape[:2], g.shape[1:3]
    # Input gradient: the stride-dilated output gradient correlated with the
    # spatially flipped kernel, input and output channels swapped.
    pads_dx = []
    for n, k, s, o, (lo, _) in zip(spatial_in, window, strides, spatial_out, padding):
        before = k - lo - 1
        pads_dx.append((before, n + k - 1 - _dilate(o, s) - before))
    w_flipped = jnp.swapaxes(w[::-1, ::-1], 2, 3)
    dx = _canon(g, w_flipped, (1, 1), pads_dx, lhs_dilation=strides, precision=precision)
    # Kernel gradient: input channels play the batch, the batch plays the
    # input channels, and the output gradient is the (stride-dilated) kernel.
    pads_dw = []
    for n, k, s, o, (lo, _) in zip(spatial_in, window, strides, spatial_out, padding):
        pads_dw.append((lo, _dilate(o, s) - n + k - lo - 1))
    x_t = jnp.transpose(x, (3, 1, 2, 0))  # (Ci, H, W, N)
    g_t = jnp.transpose(g, (1, 2, 0, 3))  # (Ho, Wo, N, Co)
    dw = _canon(x_t, g_t, (1, 1), pads_dw, rhs_dilation=strides, precision=precision)
    dw = jnp.transpose(dw, (1, 2, 0, 3))  # (kh, kw, Ci, Co)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _is_plain(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count, batch_group_count, preferred_element_type) -> bool:
    if lhs.ndim != 4 or isinstance(padding, str) or preferred_element_type is not None:
        return False
    if feature_group_count != 1 or batch_group_count != 1:
        return False
    if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(d != 1 for d in (rhs_dilation
                                                                              or (1, 1))):
        return False
    if dimension_numbers is None:
        return False
    given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return given == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _CANONICAL)


def _varying_axes(x) -> frozenset:
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)  # jax 0.10
    if manual is not None:
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", ()))  # older jax


def _same_varying_axes(*xs):
    """Mark inputs device-varying over the union of their varying axes (inside shard_map).

    A custom VJP must return each cotangent with its input's type; an input
    that is invariant over an axis (replicated data) while the other varies
    (params marked varying in `train.train_step`) would get a varying
    cotangent. Casting it first makes JAX's transpose of the cast (a psum)
    produce the invariant cotangent, as its built-in convolution rule does.
    """
    vmas = [_varying_axes(x) for x in xs]
    union = frozenset().union(*vmas)
    return tuple(x if v == union else lax.pcast(x, tuple(sorted(union - v)), to="varying")
                 for x, v in zip(xs, vmas))


def _canonical_gradients() -> bool:
    """Whether to use `conv2d`'s gradients (decided when the model is traced)."""
    mode = os.environ.get("LRR_JAX_CPU_CONV", "auto")
    if mode not in ("auto", "lax", "canonical"):
        raise ValueError(f"LRR_JAX_CPU_CONV={mode!r}; expected auto, lax or canonical")
    if mode == "lax" or jax.default_backend() != "cpu":
        return False
    return mode == "canonical" or jax.device_count() == 1


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """`lax.conv_general_dilated`, with loop-friendly gradients for plain 2-D CPU convolutions."""
    if _canonical_gradients() and _is_plain(
            lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, preferred_element_type):
        lhs, rhs = _same_varying_axes(lhs, rhs)
        return conv2d(lhs, rhs, tuple(int(s) for s in window_strides),
                      tuple((int(lo), int(hi)) for lo, hi in padding), precision)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
