"""On-device input transforms used inside the compiled train program.

Pure jax, no host sync: the batch stays on the accelerator and these fuse
into the train step.
"""

import jax
import jax.numpy as jnp


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
