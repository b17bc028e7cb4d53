"""On-device input transforms used inside the compiled train program.

Pure jax, no host sync: the batch stays on the accelerator and these fuse
into the train step.

Training augmentation is per example: `data.train_transform(config)` is a
function (key, image) -> image and `per_example` applies it to a batch with
one key per example, folded from the epoch key and the example's position
in the epoch (so it does not depend on the device count):

- CIFAR (and Tiny ImageNet at 64): `crop_flip(pad)`, torchvision's
  `RandomCrop(H, padding=pad)` + `RandomHorizontalFlip()`.
- Tiny ImageNet at `tiny_imagenet_resolution` 224 (the paper code):
  `random_resized_crop_flip`, torchvision's `RandomResizedCrop(224)` (scale
  (0.08, 1), ratio (3/4, 4/3), bilinear) + `RandomHorizontalFlip()` on the
  64x64 image. The test split gets `resize_center_crop` (`Resize(256)` +
  `CenterCrop(224)`), applied once by `data.load`.

Resizing is PIL's bilinear filter (a triangle kernel of width max(1,
scale), half-pixel centres, taps outside the image dropped and the rest
renormalized: exactly bilinear with edge clamping when upsampling,
antialiased when downsampling) written as two small matrix products, so a
crop of data-dependent size still has static shapes.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

# torchvision's RandomResizedCrop defaults.
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def normalize(x: jax.Array, mean, std) -> jax.Array:
    """Standardizes inputs with per-channel (images) or per-feature (vectors) statistics.

    Args:
        x: uint8 images (scaled to 0..1 first, matching how `mean`/`std` were
            computed) or float vectors/images (used as they are).
        mean: Broadcastable to x's last axis, on the 0..1 scale for images.
        std: Same shape as `mean`.

    Returns:
        float32 array of x's shape: `(x/255 - mean)/std` for uint8,
        `(x - mean)/std` otherwise.
    """
    x = jnp.asarray(x)
    scaled = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    return (scaled - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_crop_flip(
    rng: jax.Array, images: jax.Array, pad: int = 4, flip: bool = True
) -> jax.Array:
    """Random crop of the zero-padded image plus a horizontal flip with probability 1/2.

    Same as torchvision's `RandomCrop(H, padding=pad)` followed by
    `RandomHorizontalFlip()`, independently per image of the batch.

    Args:
        rng: PRNG key; the same key gives the same crops and flips.
        images: (B, H, W, C) batch of any dtype.
        pad: Zero padding on each side; offsets are uniform in [0, 2*pad].
        flip: Whether to apply the random horizontal flip.

    Returns:
        Array of the same shape and dtype as `images`.
    """
    batch, height, width, channels = images.shape
    crop_key, flip_key = jax.random.split(rng)
    offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1)
    flips = jax.random.bernoulli(flip_key, 0.5, (batch,)) & flip
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(image, offset, do_flip):
        crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))
        # A select rather than lax.cond: under vmap cond becomes a select anyway.
        return jnp.where(do_flip, crop[:, ::-1], crop)

    return jax.vmap(one)(padded, offsets, flips)


def crop_flip(pad: int = 4):
    """The per-example form of `random_crop_flip`: (key, image) -> image."""
    return lambda key, image: random_crop_flip(key, image[None], pad=pad)[0]


def per_example(key: jax.Array, positions: jax.Array, images: jax.Array, transform):
    """`transform(fold_in(key, position), image)` for each image of a batch.

    Args:
        key: The epoch's augmentation key.
        positions: (B,) int positions of the examples in the epoch order.
        images: (B, H, W, C) batch.
        transform: (key, image) -> image, e.g. from `data.train_transform`.
    """
    keys = jax.vmap(lambda p: jax.random.fold_in(key, p))(positions)
    return jax.vmap(transform)(keys, images)


def _resize_matrix(start, length, in_size: int, out_size: int, offset: int = 0,
                   full_out: int | None = None) -> jax.Array:
    """(out_size, in_size) weights resizing pixels [start, start+length) to `full_out` pixels.

    Row y gives output pixel `offset + y` of the `full_out`-pixel resize (a
    crop of the resized image when offset > 0 or out_size < full_out). PIL's
    bilinear filter: output pixel x has centre c = (x + 0.5) * length /
    full_out in the source window; source pixel p weighs
    max(0, 1 - |p + 0.5 - c| / s) with s = max(length / full_out, 1), over the
    window's pixels only, normalized to sum 1. `start` and `length` may be traced.
    """
    full_out = out_size if full_out is None else full_out
    length = jnp.asarray(length, jnp.float32)
    scale = length / full_out
    support = jnp.maximum(scale, 1.0)
    centre = (jnp.arange(out_size, dtype=jnp.float32) + offset + 0.5) * scale
    rel = jnp.arange(in_size, dtype=jnp.float32) - jnp.asarray(start, jnp.float32)
    inside = (rel >= 0) & (rel < length)
    w = jnp.maximum(0.0, 1.0 - jnp.abs(rel[None, :] + 0.5 - centre[:, None]) / support)
    w = jnp.where(inside[None, :], w, 0.0)
    return w / jnp.sum(w, axis=1, keepdims=True)


def _apply_resize(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Resizes with `cols` along the width, then `rows` along the height.

    For uint8 images each pass is rounded (half up) and clipped to uint8, as
    PIL does (horizontal pass first, into an 8-bit intermediate); other
    dtypes stay float through both passes.
    """
    hp = jax.lax.Precision.HIGHEST  # no TF32: these are pixel values
    quantize = image.dtype == jnp.uint8

    def store(v):
        # PIL rounds half up (fixed point: + 0.5, then truncation). Exact halves are
        # common (dyadic scales give weights in multiples of 1/32); the 2^-12 margin
        # keeps float32 rounding (~1e-5 here) from sending them down.
        return jnp.clip(jnp.floor(v + (0.5 + 2.0 ** -12)), 0, 255) if quantize else v

    x = store(jnp.einsum("xs,ysc->yxc", cols, image.astype(jnp.float32), precision=hp))
    x = store(jnp.einsum("yr,rxc->yxc", rows, x, precision=hp))
    return x.astype(image.dtype)


def random_resized_crop_params(key: jax.Array, height: int, width: int,
                               scale=RRC_SCALE, ratio=RRC_RATIO, attempts: int = 10):
    """(top, left, h, w) of a random crop, torchvision's `RandomResizedCrop.get_params`.

    Up to `attempts` draws of an area fraction U(scale) and a log-uniform
    aspect ratio in `ratio`; w = round(sqrt(area * aspect)), h =
    round(sqrt(area / aspect)); the first draw that fits is taken, with its
    top/left uniform over the valid positions. If none fits, the central crop
    of the whole image with the aspect ratio clamped into `ratio`.
    """
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    area = height * width
    target = area * jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
    log_ratio = jax.random.uniform(k_ratio, (attempts,), minval=math.log(ratio[0]),
                                   maxval=math.log(ratio[1]))
    aspect = jnp.exp(log_ratio)
    # jnp.round rounds half to even, as Python's round() in torchvision.
    ws = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
    hs = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
    fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
    first = jnp.argmax(fits)
    # Fallback (static): the whole image, aspect ratio clamped into `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    found = fits.any()
    h = jnp.where(found, hs[first], fh)
    w = jnp.where(found, ws[first], fw)
    top = jnp.where(found, jax.random.randint(k_top, (), 0, height - h + 1), (height - fh) // 2)
    left = jnp.where(found, jax.random.randint(k_left, (), 0, width - w + 1), (width - fw) // 2)
    return top, left, h, w


def random_resized_crop_flip(key: jax.Array, image: jax.Array, size: int = 224,
                             scale=RRC_SCALE, ratio=RRC_RATIO, flip: bool = True) -> jax.Array:
    """One image: `RandomResizedCrop(size, scale, ratio)` then `RandomHorizontalFlip()`.

    Args:
        key: PRNG key of this example.
        image: (H, W, C), any dtype (uint8 comes back rounded to uint8, as PIL does).
        size: Output height and width.

    Returns:
        (size, size, C) array of `image`'s dtype.
    """
    height, width, _ = image.shape
    crop_key, flip_key = jax.random.split(key)
    top, left, h, w = random_resized_crop_params(crop_key, height, width, scale, ratio)
    rows = _resize_matrix(top, h, height, size)
    cols = _resize_matrix(left, w, width, size)
    if flip:
        cols = jnp.where(jax.random.bernoulli(flip_key, 0.5), cols[::-1], cols)
    return _apply_resize(image, rows, cols)


def resize_center_crop(images: jax.Array, resize: int = 256, crop: int = 224) -> jax.Array:
    """torchvision `Resize(resize)` (shorter side, bilinear) then `CenterCrop(crop)`.

    Args:
        images: (B, H, W, C) batch (or one (H, W, C) image), any dtype.

    Returns:
        (B, crop, crop, C) of `images`' dtype; only the cropped part is computed.
    """
    single = images.ndim == 3
    batch = images[None] if single else images
    _, height, width, _ = batch.shape
    if height <= width:
        new_h, new_w = resize, int(resize * width / height)
    else:
        new_h, new_w = int(resize * height / width), resize
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    rows = _resize_matrix(0, height, height, crop, offset=top, full_out=new_h)
    cols = _resize_matrix(0, width, width, crop, offset=left, full_out=new_w)
    out = jax.vmap(lambda im: _apply_resize(im, rows, cols))(batch)
    return out[0] if single else out


def resize_center_crop_host(images: np.ndarray, resize: int = 256, crop: int = 224,
                            chunk: int = 500) -> np.ndarray:
    """`resize_center_crop` of a host array, in chunks (the test split, once per run)."""
    fn = jax.jit(resize_center_crop, static_argnames=("resize", "crop"))
    parts = [np.asarray(fn(images[i:i + chunk], resize=resize, crop=crop))
             for i in range(0, len(images), chunk)]
    if not parts:
        return np.zeros((0, crop, crop, images.shape[-1]), images.dtype)
    return np.concatenate(parts)
