"""ArcFace IResNet (insightface ``arcface_torch/backbones/iresnet.py``) in Flax linen.

Used as the frozen face-recognition teacher. Layout, key names, padding and
BatchNorm settings follow ``/work/shared/reference/teachers.md`` so that a
released PyTorch ``backbone.pth`` converts 1:1 (``.`` -> ``_`` for indexed
submodules: ``layer1.0.downsample.0.weight`` -> ``layer1_0/downsample_0/kernel``,
``prelu.weight`` -> ``prelu/weight``, ``features.running_var`` ->
``batch_stats/features/var``).

Input: NHWC faces already mapped to ``[-1, 1]`` (``(x - 0.5) / 0.5`` for x in
``[0, 1]``, see :func:`dtda_jax.models.layers.signed_unit_range`); the module
applies no normalisation itself. Output: the 512-d embedding after the final
``features`` BatchNorm1d, NOT L2-normalised.

The head flattens in NCHW order (the NHWC map is transposed to NCHW before
the reshape), so ``fc.weight`` of the checkpoint converts by a plain
transpose: ``kernel = weight.T``.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from dtda_jax.models.layers import Dtype, PReLU, batch_norm, conv

IRESNET_STAGES: Dict[str, Tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}


def _conv_out(n: int) -> int:
    """Spatial size after a 3x3, stride-2, pad-1 conv (= ceil(n / 2))."""
    return (n + 2 - 3) // 2 + 1


def iresnet_output_size(input_size: int) -> int:
    """Final spatial size of the IResNet trunk (four stride-2 stages; 112 -> 7)."""
    s = input_size
    for _ in range(4):
        s = _conv_out(s)
    return s


class IBasicBlock(nn.Module):
    """insightface ``IBasicBlock``.

    bn1 -> conv1 (3x3, s1, p1) -> bn2 -> prelu -> conv2 (3x3, stride, p1) -> bn3,
    plus shortcut on the RAW block input (identity, or ``downsample_0`` 1x1
    conv stride s + ``downsample_1`` BN). No activation after the addition.
    """

    features: int
    stride: int = 1
    downsample: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = batch_norm(train, self.dtype, name="bn1")(x)
        y = conv(self.features, 3, 1, 1, dtype=self.dtype, name="conv1")(y)
        y = batch_norm(train, self.dtype, name="bn2")(y)
        y = PReLU(self.features, dtype=self.dtype, name="prelu")(y)
        y = conv(self.features, 3, self.stride, 1, dtype=self.dtype, name="conv2")(y)
        y = batch_norm(train, self.dtype, name="bn3")(y)
        if self.downsample:
            shortcut = conv(self.features, 1, self.stride, 0, dtype=self.dtype, name="downsample_0")(x)
            shortcut = batch_norm(train, self.dtype, name="downsample_1")(shortcut)
        else:
            shortcut = x
        return y + shortcut


class IResNet(nn.Module):
    """ArcFace IResNet backbone.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``IRESNET_STAGES["r50"]``.
      num_features: embedding size (512).
      input_size: expected square input side (112 for released models); the
        input must have exactly this spatial size. The trunk output is
        ``iresnet_output_size(input_size)`` (7 at 112), which fixes the input
        width of ``fc`` (``8 * width * s * s``).
      width: base channel count (64 in the original; small values for tests).
      dtype: computation dtype (params stay float32).

    ``__call__(x, train=False)``: ``x`` NHWC in ``[-1, 1]`` -> ``(N, num_features)``
    embedding (not L2-normalised). Teachers run with ``train=False`` (running
    BN statistics); ``train=True`` changes the output completely.
    """

    stage_sizes: Sequence[int]
    num_features: int = 512
    input_size: int = 112
    width: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4 or x.shape[1] != self.input_size or x.shape[2] != self.input_size:
            raise ValueError(
                f"IResNet(input_size={self.input_size}) expects NHWC input of shape "
                f"(N, {self.input_size}, {self.input_size}, C); got {x.shape}"
            )
        x = x.astype(self.dtype)
        x = conv(self.width, 3, 1, 1, dtype=self.dtype, name="conv1")(x)
        x = batch_norm(train, self.dtype, name="bn1")(x)
        x = PReLU(self.width, dtype=self.dtype, name="prelu")(x)
        for stage, (mult, n_blocks) in enumerate(zip((1, 2, 4, 8), self.stage_sizes)):
            for b in range(n_blocks):
                # Block 0 of EVERY stage (layer1 too) has stride 2 and a downsample.
                x = IBasicBlock(
                    self.width * mult,
                    stride=2 if b == 0 else 1,
                    downsample=(b == 0),
                    dtype=self.dtype,
                    name=f"layer{stage + 1}_{b}",
                )(x, train)
        x = batch_norm(train, self.dtype, name="bn2")(x)
        s = iresnet_output_size(self.input_size)
        assert x.shape[1:3] == (s, s), (x.shape, s)
        # Flatten in NCHW order (index c*s*s + h*s + w) like torch.flatten(x, 1).
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        # dropout (p=0 in the released models) is the identity: omitted.
        x = nn.Dense(self.num_features, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(x)
        x = batch_norm(train, self.dtype, name="features")(x)
        return x


def iresnet(arch: str, **kwargs: Any) -> IResNet:
    """Build an IResNet by name (``"r18"``, ``"r34"``, ``"r50"``, ``"r100"``, ``"r200"``).

    Extra keyword arguments (``num_features``, ``input_size``, ``width``,
    ``dtype``) are passed to :class:`IResNet`.
    """
    if arch not in IRESNET_STAGES:
        raise ValueError(
            f"Unknown IResNet arch {arch!r}; valid archs: {', '.join(sorted(IRESNET_STAGES, key=lambda a: int(a[1:])))}"
        )
    return IResNet(stage_sizes=IRESNET_STAGES[arch], **kwargs)
