"""Vision Transformer (ViT) for KDFAS: the teacher and the student of dtda_jax.methods.kdfas.

The architecture of Dosovitskiy et al. (2021) as timm's ``VisionTransformer`` builds it, so
parameter counts match timm's models (ViT-B/16 at 224 px: 85,800,194 with a 2-class head):
non-overlapping patches embedded by a strided convolution, a learned class token, learned
position embeddings, pre-norm encoder blocks (LayerNorm eps 1e-6, multi-head self-attention,
MLP with exact GELU) and a final LayerNorm; the live/spoof head reads the class token.
No dropout or stochastic depth: the model is deterministic, so a step is reproducible.

Inputs are NHWC float images in ``[0, 1]``, mapped to ``[-1, 1]`` first (the original ViT's
normalisation).
"""

from __future__ import annotations

from typing import Dict, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dtda_jax.models.layers import Dtype, signed_unit_range

LAYER_NORM_EPSILON = 1e-6  # timm / the original ViT


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)).

    Numerically ``torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu",
    layer_norm_eps=1e-6, dropout=0)`` (tested against it).
    """

    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        norm = lambda name: nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype,
                                         param_dtype=jnp.float32, name=name)
        y = norm("norm1")(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype,
                                            param_dtype=jnp.float32, name="attention")(y, y)
        x = x + y
        y = norm("norm2")(x)
        y = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=jnp.float32, name="mlp_fc1")(y)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32, name="mlp_fc2")(y)
        return x + y


class VisionTransformer(nn.Module):
    """ViT classifier that can also hand out the token features after chosen blocks.

    Attributes:
      patch_size: side of the square patches; the image side must be a multiple of it.
      width: embedding width (768 = ViT-B, 1024 = ViT-L).
      depth: number of encoder blocks (12 = ViT-B, 24 = ViT-L).
      num_heads: attention heads (width must be divisible by it).
      mlp_dim: hidden width of the blocks' MLPs (4 * width in the ViT papers).
      num_classes: live/spoof classes.
      dtype: computation dtype (params stay float32).
    """

    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    num_classes: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False,
                 return_blocks: Sequence[int] = ()) -> Dict[str, jax.Array]:
        """``x``: (N, H, W, 3) in ``[0, 1]``. ``train`` is accepted for the training loop's
        interface; the model has no train-time behaviour.

        Returns ``{"cls_logits": (N, num_classes), "features": (N, width)}`` (the normalised
        class token), plus ``"block_tokens"``: a tuple with the tokens ``(N, 1 + patches,
        width)`` after each block in ``return_blocks`` (1-based block numbers, in that order).
        """
        del train
        bad = [b for b in return_blocks if not 1 <= b <= self.depth]
        if bad:
            raise ValueError(f"return_blocks {tuple(return_blocks)}: blocks are numbered 1..{self.depth}.")
        n, h, w, _ = x.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}.")
        x = signed_unit_range(x).astype(self.dtype)
        x = nn.Conv(self.width, (self.patch_size, self.patch_size), strides=self.patch_size,
                    padding="VALID", dtype=self.dtype, param_dtype=jnp.float32, name="patch_embed")(x)
        x = x.reshape(n, -1, self.width)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.width), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, self.width)), x], axis=1)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], self.width),
                         jnp.float32)
        x = x + pos.astype(self.dtype)
        kept = {}
        for i in range(1, self.depth + 1):
            x = EncoderBlock(self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"block{i}")(x)
            if i in return_blocks:
                kept[i] = x
        x = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype, param_dtype=jnp.float32,
                         name="norm")(x)
        features = x[:, 0]
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="head")(features)
        return {"cls_logits": logits, "features": features,
                "block_tokens": tuple(kept[b] for b in return_blocks)}
