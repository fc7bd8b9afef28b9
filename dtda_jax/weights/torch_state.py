"""Reading PyTorch checkpoints and mapping their state_dicts onto Flax variables.

The conversion is a pure function of the state_dict (a mapping of key -> numpy array) and
the Flax template (the shapes `model.init` would give). Every PyTorch key must land on
exactly one Flax leaf and every leaf must be filled, so a wrong architecture can never load
half a checkpoint silently. Reading the `.pth` file needs torch (the `convert` extra) and is
done safely with `torch.load(..., weights_only=True)`. The converted result is written in the
format of :mod:`dtda_jax.weights.store`.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from dtda_jax.core.errors import UserError


class ConversionError(UserError, ValueError):
    """The checkpoint does not fit the requested architecture; the message says what would."""


class UnsafeCheckpointError(UserError, ValueError):
    """The file holds pickled objects other than tensors; it was refused without running them."""


class MissingCheckpointError(UserError, FileNotFoundError):
    """The PyTorch checkpoint to convert does not exist."""


class TorchMissingError(UserError, ImportError):
    """Converting needs torch (the `convert` extra)."""


def unpickler_detail(message: str) -> str:
    """What torch's refusal says the file holds ("Unsupported global: GLOBAL builtins.print ..."),
    without its advice to load the file unsafely."""
    match = re.search(r"WeightsUnpickler error: (.*?)(?: Please use|$)", message, re.S)
    return f" Detail: {' '.join(match.group(1).split())}" if match else ""


# ============================================================================================
# Reading a PyTorch checkpoint
# ============================================================================================


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a `.pth` / `.ckpt` state_dict (zip or legacy format) as float32 numpy arrays.

    Safe: `weights_only=True` refuses any pickled object that is not a tensor or a plain
    container, before it can run. Accepts the `module.` prefix of DataParallel saves and a
    `{"state_dict": ...}` wrapper.
    """
    if not os.path.isfile(path):
        raise MissingCheckpointError(f"Checkpoint {path!r} does not exist.")
    try:
        import torch
    except ImportError:
        raise TorchMissingError("reading PyTorch checkpoints needs torch, which is not installed: "
                                "pip install torch==2.13.0 (the CPU build; or pip install -e '.[convert]' "
                                "after it).") from None
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path!r} contains pickled objects that are not tensors, so it was refused without "
            "loading them (a .pth file can run code when unpickled). Use the original released "
            f"state_dict file.{unpickler_detail(str(err))}") from None
    except RuntimeError as err:
        raise ConversionError(f"{path!r} is not a readable PyTorch checkpoint ({err}).") from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(
            f"{path!r} does not hold a state_dict (a mapping of parameter names to tensors); "
            f"found {type(obj).__name__}. Save the model with torch.save(model.state_dict(), path).")
    state = {}
    for key, tensor in obj.items():
        key = key[len("module."):] if key.startswith("module.") else key
        state[key] = tensor.detach().to(torch.float32).numpy() if tensor.is_floating_point() \
            else tensor.detach().numpy()
    return state


# ============================================================================================
# Architecture inference from the keys
# ============================================================================================


def _blocks_per_stage(state: Mapping[str, np.ndarray], stages: int = 4) -> tuple[int, ...]:
    counts = []
    for s in range(1, stages + 1):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))}
        counts.append(len(blocks))
    return tuple(counts)


def infer_iresnet(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """arch, width, embedding size and input size of an arcface_torch IResNet state_dict."""
    from dtda_jax.models.iresnet import IRESNET_STAGES

    required = ("conv1.weight", "prelu.weight", "fc.weight", "features.running_var")
    missing = [k for k in required if k not in state]
    if missing:
        raise ConversionError(f"Not an arcface_torch IResNet state_dict: missing keys {missing}.")
    stages = _blocks_per_stage(state)
    by_stages = {v: k for k, v in IRESNET_STAGES.items()}
    if stages not in by_stages:
        raise ConversionError(
            f"IResNet with blocks per stage {stages} is none of the known archs "
            f"({', '.join(f'{k}={v}' for k, v in IRESNET_STAGES.items())}).")
    width = int(state["conv1.weight"].shape[0])
    num_features, flat = (int(n) for n in state["fc.weight"].shape)
    spatial = int(round((flat / (8 * width)) ** 0.5))
    if spatial * spatial * 8 * width != flat:
        raise ConversionError(f"fc.weight has {flat} inputs, not 8*width*s*s for width {width}.")
    return {"arch": by_stages[stages], "width": width, "num_features": num_features,
            "input_size": 16 * spatial}


def infer_stargan(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """image_size, conv_dim, c_dim and repeat_num of a StarGAN discriminator state_dict."""
    mains = sorted(int(m.group(1)) for k in state if (m := re.match(r"main\.(\d+)\.weight$", k)))
    if not mains or "conv1.weight" not in state or "conv2.weight" not in state:
        raise ConversionError("Not a StarGAN discriminator state_dict: expected main.<i>.weight, "
                              "conv1.weight and conv2.weight.")
    repeat_num = len(mains)
    kernel = int(state["conv2.weight"].shape[-1])
    return {"image_size": kernel * 2 ** repeat_num, "conv_dim": int(state["main.0.weight"].shape[0]),
            "c_dim": int(state["conv2.weight"].shape[0]), "repeat_num": repeat_num}


def infer_resnet18(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """width and classes of a torchvision ResNet-18 state_dict (refuses other depths)."""
    if "conv1.weight" not in state or tuple(state["conv1.weight"].shape[1:]) != (3, 7, 7):
        raise ConversionError("Not a torchvision ResNet state_dict: conv1.weight should be "
                              "(width, 3, 7, 7).")
    stages = _blocks_per_stage(state)
    if stages != (2, 2, 2, 2) or any(k.endswith("conv3.weight") for k in state):
        raise ConversionError(f"This is not a ResNet-18: blocks per stage {stages} (ResNet-18 has "
                              "(2, 2, 2, 2) basic blocks). Use torchvision's resnet18 weights.")
    return {"width": int(state["conv1.weight"].shape[0]),
            "num_classes": int(state["fc.weight"].shape[0]) if "fc.weight" in state else 0}


# ============================================================================================
# Key mapping
# ============================================================================================

SKIPPED_SUFFIXES = ("num_batches_tracked",)


def flax_path(torch_key: str, template: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """`layer1.0.downsample.0.weight` -> ("params", ("layer1_0", "downsample_0", "kernel")).

    Indexed submodules join their index with `_`; the leaf name depends on what the template
    holds at that module: kernel (conv/linear), scale (BatchNorm), weight (PReLU).
    """
    parts = torch_key.split(".")
    modules: list[str] = []
    for part in parts[:-1]:
        if part.isdigit() and modules:
            modules[-1] = f"{modules[-1]}_{part}"
        else:
            modules.append(part)
    leaf = parts[-1]
    if leaf == "running_mean":
        return "batch_stats", (*modules, "mean")
    if leaf == "running_var":
        return "batch_stats", (*modules, "var")
    if leaf == "bias":
        return "params", (*modules, "bias")
    if leaf == "weight":
        node = template.get("params", {})
        for m in modules:
            node = node.get(m, {}) if isinstance(node, Mapping) else {}
        for name in ("kernel", "scale", "weight"):
            if isinstance(node, Mapping) and name in node:
                return "params", (*modules, name)
        return "params", (*modules, "kernel")
    return "params", (*modules, leaf)


def to_flax_layout(array: np.ndarray, leaf: str) -> np.ndarray:
    """OIHW conv kernels -> HWIO; (out, in) linear weights -> (in, out); others unchanged."""
    if leaf == "kernel" and array.ndim == 4:
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if leaf == "kernel" and array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


def listing(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def state_dict_to_variables(state: Mapping[str, np.ndarray], template: Mapping[str, Any],
                            hint: str = "") -> dict[str, Any]:
    """Converts a state_dict into variables with exactly the template's structure and shapes.

    `template` is `jax.eval_shape(model.init, ...)` (or real variables). Raises
    ConversionError naming every missing, unexpected or mis-shaped key; `hint` is appended
    (e.g. which --arch the keys suggest).
    """
    expected = {(col, *path): leaf for col in template
                for path, leaf in flatten_dict(template[col]).items()}
    filled: dict[tuple[str, ...], np.ndarray] = {}
    sources: dict[tuple[str, ...], str] = {}
    unexpected, mismatched, wrong_shape = [], [], set()
    for key, array in state.items():
        if key.endswith(SKIPPED_SUFFIXES):
            continue
        collection, path = flax_path(key, template)
        target = (collection, *path)
        if target not in expected:
            unexpected.append(key)
            continue
        if target in filled:
            raise ConversionError(f"Keys {sources[target]!r} and {key!r} both map to "
                                  f"{'/'.join(target)}.")
        value = to_flax_layout(np.asarray(array, np.float32), path[-1])
        if tuple(value.shape) != tuple(expected[target].shape):
            mismatched.append(f"{key}: checkpoint {tuple(array.shape)} -> "
                              f"{tuple(value.shape)}, model wants {tuple(expected[target].shape)}")
            wrong_shape.add(target)
            continue
        filled[target] = value
        sources[target] = key
    missing = ["/".join(t) for t in expected if t not in filled and t not in wrong_shape]
    problems = []
    if unexpected:
        problems.append(f"unexpected checkpoint keys (nothing in the model matches): {listing(unexpected)}")
    if missing:
        problems.append(f"model variables the checkpoint does not provide: {listing(missing)}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched[:8])
                        + (f"; ... ({len(mismatched) - 8} more)" if len(mismatched) > 8 else ""))
    if problems:
        raise ConversionError("The checkpoint does not fit the model: " + " | ".join(problems)
                              + (f". {hint}" if hint else ""))
    flat = {t: filled[t] for t in expected}
    return unflatten_dict(flat)
