"""Training augmentation: random horizontal flip, then reflect-pad-and-crop, applied in the step.

The host draws each image's flip and crop shift from (seed, step) (`draws`) and sends them
with the un-augmented uint8 images; the jitted step moves the pixels (`apply`). The host's
share of a batch is then a row gather from the decoded-frame store (frame_store.py), and a
batch stays a pure function of (seed, step). `apply` gives exactly the pixels of flipping
with `image[:, ::-1]` and cropping `np.pad(image, pad, mode="reflect")` at offset
`shift + pad` (tests/test_pipeline.py checks it against that).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def pad_pixels(crop_padding: float, image_size: int) -> int:
    """The crop's padding in pixels: `data.augment_crop_padding` of the image size."""
    return int(round(crop_padding * image_size))


def draws(seed: int, step: int, n: int, flip: bool, pad: int) -> dict[str, np.ndarray]:
    """The flips (n,) bool and crop shifts (n, 2) int32 in [-pad, pad] of `step`'s `n` images;
    {} when the augmentation is off."""
    if not flip and pad == 0:
        return {}
    rng = np.random.default_rng([seed, step, 0, 1])
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2)) if pad > 0 else np.zeros((n, 2), np.int64)
    return {"flip": flips, "shift": (offsets - pad).astype(np.int32)}


def _reflect(index: jax.Array, size: int) -> jax.Array:
    """numpy's "reflect" padding as an index map (edge not repeated); |shift| < size."""
    index = jnp.abs(index)
    return jnp.where(index >= size, 2 * (size - 1) - index, index)


def apply(batch: dict[str, jax.Array]) -> jax.Array:
    """The batch's images with its draws applied (the images as they are without draws)."""
    images = batch["image"]
    if "shift" not in batch:
        return images
    _, height, width, _ = images.shape
    shift = batch["shift"]
    rows = _reflect(jnp.arange(height)[None, :] + shift[:, :1], height)
    cols = _reflect(jnp.arange(width)[None, :] + shift[:, 1:], width)
    cols = jnp.where(batch["flip"][:, None], width - 1 - cols, cols)
    return jax.vmap(lambda image, r, c: image[r][:, c])(images, rows, cols)
