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


def _window_taps(x: jax.Array, kh: int, kw: int, strides, padding, out_h: int, out_w: int):
    """The kh * kw strided views of the zero-padded NHWC input, in row-major kernel order:
    view (i, j) holds the input pixel that kernel tap (i, j) multiplies at every output."""
    (pt, pb), (pl, pr) = padding
    sh, sw = strides
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, c = xp.shape[0], xp.shape[3]
    return [jax.lax.slice(xp, (0, i, j, 0),
                          (n, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, c), (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def conv_general_dilated_small_spatial_as_matmul(lhs, rhs, window_strides, padding,
                                                  lhs_dilation=None, rhs_dilation=None,
                                                  dimension_numbers=None, feature_group_count=1,
                                                  precision=None, **kwargs):
    """``lax.conv_general_dilated``, computed as patches @ kernel when the output is tiny.

    XLA:CPU picks very slow algorithms for the gradients of a k x k convolution with an
    output of at most 2x2 pixels and many channels: ResNet-18's layer4 on 64 px images,
    where the input gradient of the stride-2 conv (4x4 -> 2x2, 256 -> 512 channels) alone
    took 270 ms of a 1.15 s training step at batch 48. For those shapes im2col + one matmul is
    the same arithmetic; the patches are strided slices of the padded input, so their
    gradients are pads and additions (``lax.conv_general_dilated_patches`` would convolve
    with a one-hot kernel of 9 * 512 output channels, and its gradient is a depthwise
    convolution that XLA:CPU also runs slowly). Everywhere else XLA's convolution is faster
    and is used. Inputs are NHWC with HWIO kernels (flax's layout).
    """
    _, h, w, c = lhs.shape
    kh, kw, _, out = rhs.shape
    plain = (lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1))
             and feature_group_count == 1 and not kwargs and not isinstance(padding, str))
    if plain and kh * kw > 1:
        (sh, sw), ((pt, pb), (pl, pr)) = window_strides, padding
        out_h, out_w = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        # Symbolic sizes (a shape-polymorphic export) are never tiny.
        if isinstance(out_h, int) and isinstance(out_w, int) and max(out_h, out_w) <= 2:
            taps = _window_taps(lhs, kh, kw, window_strides, padding, out_h, out_w)
            patches = jnp.concatenate(taps, axis=-1)  # features (kh, kw, c), as rhs.reshape
            return jnp.matmul(patches, rhs.reshape(kh * kw * c, out), precision=precision)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        precision=precision, **kwargs)


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


def _max_pool_axis(x: jax.Array, axis: int, window: int, stride: int, padding: int) -> jax.Array:
    """1-D max pooling along `axis` over -inf padding. Where taps tie, the earliest wins, in the
    value and in the gradient (`jnp.where` sends the cotangent to the operand it selected); a
    NaN wins over numbers, as in PyTorch's kernel."""
    out = (x.shape[axis] + 2 * padding - window) // stride + 1
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (padding, padding, 0)
    xp = jax.lax.pad(x, jnp.array(-jnp.inf, x.dtype), config)
    y = None
    for i in range(window):
        start, limit, strides = [0] * x.ndim, list(xp.shape), [1] * x.ndim
        start[axis], limit[axis], strides[axis] = i, i + stride * (out - 1) + 1, stride
        tap = jax.lax.slice(xp, start, limit, strides)
        y = tap if y is None else jnp.where((tap > y) | jnp.isnan(tap), tap, y)
    return y


def max_pool_torch(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
    """``torch.nn.MaxPool2d(window, stride, padding)`` on NHWC input, with PyTorch's gradient.

    Padding is filled with ``-inf`` (as PyTorch does), so padded positions never win the max,
    even when every real input value is negative. Pooling is separable: over the columns,
    then over the rows. Either pass keeps the earliest of tied taps, so the gradient goes to
    the first maximum of each window in row-major order, the element PyTorch's kernel picks.

    Written with strided slices and selects, both directions are a few fused element-wise
    passes. ``lax.reduce_window``'s gradient is a select-and-scatter that XLA:CPU expands into
    an argmax reduce-window, a scatter and large broadcasts: 3.3x slower for the ResNet stem
    (ReLU + pool, forward and backward, 16 x 128 x 128 x 64), 10% of a training step at 256 px.
    """
    return _max_pool_axis(_max_pool_axis(x, 2, window, stride, padding), 1, window, stride, padding)


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
        # Not jnp.where(x >= 0, x, w * x): the same values, but ONNX Runtime runs an exported
        # Where several times slower than max / min (MTCNN's nets spent 55-60% there).
        return jnp.maximum(x, 0) + w * jnp.minimum(x, 0)


@jax.custom_vjp
def gradient_reversal(x: jax.Array, scale: jax.Array | float) -> jax.Array:
    """Identity forward; backward multiplies the gradient by -scale (Ganin & Lempitsky, 2015).

    The domain head below it learns to tell domains apart while the features above it are
    pushed to hide them: the domain-adversarial training that the paper's Fig. 1a sets
    against the domain adversarial attack. `scale` gets no gradient.
    """
    return x


def _reversal_forward(x, scale):
    return x, scale


def _reversal_backward(scale, g):
    return -scale * g, jnp.zeros_like(scale)


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)
