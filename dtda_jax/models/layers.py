"""Small building blocks shared by the DTDA models.

Conventions used by every module in :mod:`dtda_jax.models`:

* Inputs are NHWC.
* ``dtype`` is the *computation* dtype; parameters are always kept in float32
  (``param_dtype=jnp.float32``).
* Every convolution uses explicit PyTorch-style padding ``((p, p), (p, p))``;
  XLA's ``'SAME'`` pads stride-2 convolutions asymmetrically ``(0, 1)`` and
  would silently break converted PyTorch checkpoints.
* BatchNorm follows PyTorch's defaults: ``momentum=0.1`` in torch, i.e.
  ``momentum=0.9`` in Flax, ``epsilon=1e-5``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

Dtype = Any

# PyTorch BatchNorm defaults expressed in Flax terms.
BN_MOMENTUM = 0.9  # torch momentum 0.1
BN_EPSILON = 1e-5


def torch_padding(p: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Symmetric explicit padding ``((p, p), (p, p))`` as PyTorch's ``padding=p``."""
    return ((p, p), (p, p))


def conv_general_dilated_small_spatial_as_matmul(lhs, rhs, window_strides, padding,
                                                  lhs_dilation=None, rhs_dilation=None,
                                                  dimension_numbers=None, feature_group_count=1,
                                                  precision=None, **kwargs):
    """``lax.conv_general_dilated``, computed as patches @ kernel when the image is tiny.

    XLA:CPU picks a very slow algorithm for the gradients of a k x k convolution whose input
    is at most 2x2 pixels with many channels (ResNet-18's layer4 on 64 px images: 440 ms vs
    41 ms for 512 channels, batch 48). For those shapes im2col + one matmul is the same
    arithmetic and ~10x faster; everywhere else XLA's convolution is faster and is used.
    Inputs are NHWC with HWIO kernels (flax's layout).
    """
    _, h, w, c = lhs.shape
    kh, kw, _, out = rhs.shape
    plain = (lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1))
             and feature_group_count == 1 and not kwargs)
    if not (plain and max(h, w) <= 2 and kh * kw > 1):
        return jax.lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
            precision=precision, **kwargs)
    patches = jax.lax.conv_general_dilated_patches(
        lhs, (kh, kw), window_strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision)  # feature order (c, kh, kw)
    kernel = rhs.transpose(2, 0, 1, 3).reshape(c * kh * kw, out)
    return jnp.matmul(patches, kernel, precision=precision)


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    use_bias: bool = False,
    dtype: Dtype = jnp.float32,
    name: Optional[str] = None,
) -> nn.Conv:
    """An ``nn.Conv`` configured exactly like ``torch.nn.Conv2d(k, stride, padding, bias)``."""
    return nn.Conv(
        features=features,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=torch_padding(padding),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        conv_general_dilated=conv_general_dilated_small_spatial_as_matmul,
        name=name,
    )


def batch_norm(train: bool, dtype: Dtype = jnp.float32, name: Optional[str] = None) -> nn.BatchNorm:
    """``nn.BatchNorm`` with PyTorch defaults (eps 1e-5, torch momentum 0.1).

    In eval mode (``train=False``) the running statistics in ``batch_stats`` are
    used; in train mode the batch statistics are used and ``batch_stats`` is
    updated (the caller must pass ``mutable=["batch_stats"]``).
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def max_pool_torch(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
    """``torch.nn.MaxPool2d(window, stride, padding)`` on NHWC input.

    Padding is filled with ``-inf`` (as PyTorch does), so padded positions never
    win the max, even when every real input value is negative.
    """
    # A Python scalar -inf init lets lax.reduce_window recognise the max monoid
    # (reduce_window_max, differentiable); a traced init array under jit would
    # fall back to the generic reduce_window, which has no autodiff rule.
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        window_dimensions=(1, window, window, 1),
        window_strides=(1, stride, stride, 1),
        padding=((0, 0), (padding, padding), (padding, padding), (0, 0)),
    )


def signed_unit_range(x: jax.Array) -> jax.Array:
    """Map images in ``[0, 1]`` to ``[-1, 1]``: ``(x - 0.5) / 0.5``.

    This is the input normalisation both teachers (ArcFace IResNet, StarGAN D)
    were trained with; neither teacher module applies it itself.
    """
    return (x - 0.5) / 0.5


class PReLU(nn.Module):
    """PReLU with one learnable slope per channel (``torch.nn.PReLU(C)``).

    ``y = max(0, x) + weight * min(0, x)`` with ``weight`` of shape ``(C,)``
    broadcast over the last (channel) axis. The parameter is named ``weight``
    so that ``prelu.weight`` of a PyTorch checkpoint maps 1:1. Flax's built-in
    ``nn.PReLU`` only has a single scalar slope.

    Attributes:
      num_parameters: number of channels; inferred from the input's last axis
        when ``None``.
      init_value: initial slope (PyTorch default 0.25).
      dtype: computation dtype (the parameter stays float32).
    """

    num_parameters: Optional[int] = None
    init_value: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.num_parameters if self.num_parameters is not None else x.shape[-1]
        if x.shape[-1] != c:
            raise ValueError(f"PReLU expects {c} channels on the last axis, got shape {x.shape}")
        weight = self.param(
            "weight", nn.initializers.constant(self.init_value), (c,), jnp.float32
        )
        x = x.astype(self.dtype)
        w = weight.astype(self.dtype)
        return jnp.where(x >= 0, x, w * x)
