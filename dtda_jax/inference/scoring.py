"""The one batched scorer: every caller that runs a model over many images (evaluation during
training, the own teachers' quality report, predict) goes through `score_batches`.

A jitted function compiles once per input shape, so each chunk of images is padded to a fixed
batch size ("full": one shape) or to the next power of two ("power_of_two": a few shapes, and
one image does not pay for a whole batch), by repeating its last image. Models run in
inference mode, so a row's output never depends on the other rows of its batch.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from dtda_jax.core import xla_cpu
from dtda_jax.core.sharding import to_host

PADDINGS = ("full", "power_of_two")


def padded_size(n: int, batch_size: int, padding: str) -> int:
    """The batch shape a chunk of `n <= batch_size` images is padded to."""
    if padding == "full":
        return batch_size
    if padding == "power_of_two":
        return min(batch_size, 1 << (n - 1).bit_length())
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")


def chunks(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


def score_batches(fn: Callable[[Any, Any], jax.Array], variables: Any, batches: Iterable[Any],
                  batch_size: int, *, padding: str = "full",
                  place: Callable[[Any], Any] = lambda batch: batch) -> np.ndarray:
    """`fn(variables, batch)` for every row of every batch, concatenated in order.

    A batch is an array of at most `batch_size` images, or a dict of such arrays (images and
    their labels); each is padded along its first axis. `place` puts the padded batch where
    `fn` expects it (e.g. this process's rows, sharded over a device mesh); the outputs are
    gathered from every process.
    """
    outputs = []
    for batch in batches:
        n = len(jax.tree.leaves(batch)[0])
        pad = padded_size(n, batch_size, padding) - n
        if pad:
            batch = jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), batch)
        outputs.append(to_host(fn(variables, place(batch)))[:n])
    return np.concatenate(outputs) if outputs else np.zeros(0, np.float32)


def images_to_unit_range(images: jax.Array) -> jax.Array:
    """uint8 0..255 (how batches travel to the device) -> float32 in [0, 1]."""
    return images.astype(jnp.float32) / 255.0


def live_probability(variables: Any, images: jax.Array, *, model) -> jax.Array:
    """Frame score = live probability (class 1) of a live/spoof model's `cls_logits`."""
    out = model.apply(variables, images_to_unit_range(images), train=False)
    return jax.nn.softmax(out["cls_logits"].astype(jnp.float32), axis=-1)[:, 1]


def jit_live_probability(model) -> Callable:
    """`live_probability` of `model`, jitted for batches of uint8 frames."""
    return jax.jit(functools.partial(live_probability, model=model),
                   compiler_options=xla_cpu.compiler_options(xla_cpu.SCORING))
