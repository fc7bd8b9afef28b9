"""torchvision-layout ResNet-18 in Flax linen (NHWC).

Parameter names map 1:1 onto torchvision's ``resnet18().state_dict()`` with
``.`` -> ``_`` for indexed submodules, e.g. ``layer1.0.conv1.weight`` ->
``layer1_0/conv1/kernel`` and ``layer2.0.downsample.0.weight`` ->
``layer2_0/downsample_0/kernel``. In :class:`ResNet18Classifier` the backbone
lives in the ``encoder`` subtree (so an ImageNet checkpoint minus ``fc`` loads
into ``params["encoder"]``) and ``fc`` sits next to it.

The encoder itself applies NO input normalisation. :class:`ResNet18Classifier`
and :class:`dtda_jax.models.student.DTDAStudent` expect float images in
``[0, 1]`` and call :func:`imagenet_normalize` first.
"""

from __future__ import annotations

from typing import Tuple, Union

import jax
import jax.numpy as jnp
import flax.linen as nn

from dtda_jax.models.layers import Dtype, batch_norm, conv, max_pool_torch

# torchvision's ImageNet normalisation constants (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(x: jax.Array) -> jax.Array:
    """Normalise RGB images in ``[0, 1]`` (NHWC) with torchvision's ImageNet mean/std."""
    mean = jnp.asarray(IMAGENET_MEAN, dtype=x.dtype)
    std = jnp.asarray(IMAGENET_STD, dtype=x.dtype)
    return (x - mean) / std


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock`` (expansion 1).

    conv1(3x3, stride, pad 1) -> bn1 -> relu -> conv2(3x3, pad 1) -> bn2,
    plus shortcut (identity or ``downsample_0`` 1x1 conv stride s +
    ``downsample_1`` BN), then relu.
    """

    features: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x
        y = conv(self.features, 3, self.stride, 1, dtype=self.dtype, name="conv1")(x)
        y = batch_norm(train, self.dtype, name="bn1")(y)
        y = nn.relu(y)
        y = conv(self.features, 3, 1, 1, dtype=self.dtype, name="conv2")(y)
        y = batch_norm(train, self.dtype, name="bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            residual = conv(self.features, 1, self.stride, 0, dtype=self.dtype, name="downsample_0")(x)
            residual = batch_norm(train, self.dtype, name="downsample_1")(residual)
        return nn.relu(y + residual)


class ResNet18Encoder(nn.Module):
    """ResNet-18 backbone without ``fc`` (torchvision layout).

    Attributes:
      width: base width (64 for the real ResNet-18); stages have
        ``width * (1, 2, 4, 8)`` channels. Small widths are for tests.
      dtype: computation dtype (params stay float32).

    ``__call__(x, train, return_feature_map=False)``:
      x: NHWC input, already normalised (no normalisation is applied here).
      train: BatchNorm mode (batch stats + ``batch_stats`` update if True).
      return_feature_map: if True return ``(pooled, feature_map)``, where
        ``feature_map`` is the ``layer4`` output (N, H/32, W/32, 8*width), e.g.
        for Grad-CAM; otherwise return ``pooled`` (N, 8*width).
    """

    width: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool, return_feature_map: bool = False
    ) -> Union[jax.Array, Tuple[jax.Array, jax.Array]]:
        x = x.astype(self.dtype)
        x = conv(self.width, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
        x = batch_norm(train, self.dtype, name="bn1")(x)
        x = nn.relu(x)
        x = max_pool_torch(x, window=3, stride=2, padding=1)
        for stage, mult in enumerate((1, 2, 4, 8)):
            for b in range(2):
                stride = 2 if (stage > 0 and b == 0) else 1
                x = BasicBlock(
                    self.width * mult, stride, dtype=self.dtype, name=f"layer{stage + 1}_{b}"
                )(x, train)
        fmap = x
        pooled = jnp.mean(fmap, axis=(1, 2))
        if return_feature_map:
            return pooled, fmap
        return pooled


class ResNet18Classifier(nn.Module):
    """ImageNet-style ResNet-18 classifier: ``imagenet_normalize`` -> ``encoder`` -> ``fc``.

    Inputs are float RGB images in ``[0, 1]`` (NHWC). Returns logits
    ``(N, num_classes)``. The torchvision checkpoint maps to
    ``params["encoder"]`` (all keys but ``fc.*``) and ``params["fc"]``.
    """

    num_classes: int = 1000
    width: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = imagenet_normalize(x)
        f = ResNet18Encoder(self.width, dtype=self.dtype, name="encoder")(x, train)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(f)
