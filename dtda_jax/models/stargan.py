"""StarGAN discriminator (yunjey/stargan ``model.py``) in Flax linen.

Used as the frozen face-attribute-editing teacher. Key names map 1:1 onto the
PyTorch state_dict: ``main.0.weight``/``main.0.bias`` -> ``main_0/kernel``,
``main_0/bias`` (convs at even indices 0, 2, ..., 2*(repeat_num-1); the odd
indices are the parameter-free LeakyReLUs), ``conv1.weight`` ->
``conv1/kernel``, ``conv2.weight`` -> ``conv2/kernel``.

Input: NHWC images already mapped to ``[-1, 1]`` (``(x - 0.5) / 0.5``); no
normalisation is applied here.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from dtda_jax.models.layers import Dtype, conv


class StarGANDiscriminator(nn.Module):
    """PatchGAN discriminator with an auxiliary attribute classifier.

    Attributes:
      image_size: input side (128 for the released CelebA model); must be
        divisible by ``2**repeat_num``.
      conv_dim: channels of the first conv; doubled at each of the
        ``repeat_num`` stride-2 convs.
      c_dim: number of attribute logits (5: Black_Hair, Blond_Hair,
        Brown_Hair, Male, Young).
      repeat_num: number of k4 s2 p1 convs.
      dtype: computation dtype (params stay float32).

    ``__call__(x, train=False)`` (``train`` is accepted for interface
    uniformity and ignored: there is no normalisation layer) returns
    ``(patch_map, attr_logits)`` with shapes
    ``(N, image_size/2**repeat_num, image_size/2**repeat_num, 1)`` and
    ``(N, c_dim)``.
    """

    image_size: int = 128
    conv_dim: int = 64
    c_dim: int = 5
    repeat_num: int = 6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> Tuple[jax.Array, jax.Array]:
        factor = 2 ** self.repeat_num
        if self.image_size % factor != 0:
            raise ValueError(
                f"StarGANDiscriminator: image_size ({self.image_size}) must be divisible by "
                f"2**repeat_num ({factor})"
            )
        if x.ndim != 4 or x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            raise ValueError(
                f"StarGANDiscriminator(image_size={self.image_size}) expects NHWC input of shape "
                f"(N, {self.image_size}, {self.image_size}, C); got {x.shape}"
            )
        h = x.astype(self.dtype)
        ch = self.conv_dim
        for i in range(self.repeat_num):
            h = conv(ch, 4, 2, 1, use_bias=True, dtype=self.dtype, name=f"main_{2 * i}")(h)
            h = nn.leaky_relu(h, negative_slope=0.01)
            ch *= 2
        patch_map = conv(1, 3, 1, 1, use_bias=False, dtype=self.dtype, name="conv1")(h)
        k = self.image_size // factor
        attr = conv(self.c_dim, k, 1, 0, use_bias=False, dtype=self.dtype, name="conv2")(h)
        attr_logits = attr.reshape(attr.shape[0], self.c_dim)
        return patch_map, attr_logits
