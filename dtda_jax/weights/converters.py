"""The converters behind `tools/convert_*.py`: ArcFace IResNet, StarGAN D, ResNet-18, and
timm Vision Transformers (ImageNet initialisation of the KDFAS ViTs).

Each infers the architecture from the checkpoint's keys and shapes; an explicit `arch` that
disagrees is refused with the arch the keys show.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from dtda_jax.models import ResNet18Classifier, StarGANDiscriminator, iresnet
from dtda_jax.models.vit import VisionTransformer
from dtda_jax.weights import torch_state
from dtda_jax.weights.store import KIND_ARCFACE, KIND_RESNET18, KIND_STARGAN, KIND_VIT, save_converted
from dtda_jax.core.errors import UserError
from dtda_jax.weights.torch_state import ConversionError


def arcface_template(a: dict[str, Any]) -> Any:
    model = iresnet(a["arch"], input_size=a["input_size"], width=a["width"],
                    num_features=a["num_features"])
    x = jnp.zeros((1, a["input_size"], a["input_size"], 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def stargan_template(a: dict[str, Any]) -> Any:
    model = StarGANDiscriminator(image_size=a["image_size"], conv_dim=a["conv_dim"],
                                 c_dim=a["c_dim"], repeat_num=a["repeat_num"])
    x = jnp.zeros((1, a["image_size"], a["image_size"], 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def resnet18_template(a: dict[str, Any]) -> Any:
    model = ResNet18Classifier(num_classes=a["num_classes"], width=a["width"])
    x = jnp.zeros((1, 64, 64, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    # torchvision keys have no `encoder.` prefix: the template is the classifier with the
    # encoder's subtree lifted to the top, next to `fc`.
    return {col: {**tree["encoder"], **{k: v for k, v in tree.items() if k != "encoder"}}
            for col, tree in variables.items()}


def convert_arcface(source: str, out_dir: str, arch: str | None = None,
                    overwrite: bool = False) -> dict[str, Any]:
    state = torch_state.load_torch_state_dict(source)
    found = torch_state.infer_iresnet(state)
    if arch is not None and arch != found["arch"]:
        raise ConversionError(
            f"--arch {arch} does not match {source!r}: its blocks per stage are those of "
            f"{found['arch']}. Use --arch {found['arch']} (or leave --arch out).")
    variables = torch_state.state_dict_to_variables(state, arcface_template(found),
                                                    hint=f"The keys look like {found['arch']}.")
    return save_converted(out_dir, variables, kind=KIND_ARCFACE, architecture=found,
                          source=source, overwrite=overwrite,
                          extra={"source_keys": len(state)})


def convert_stargan(source: str, out_dir: str, overwrite: bool = False) -> dict[str, Any]:
    state = torch_state.load_torch_state_dict(source)
    found = torch_state.infer_stargan(state)
    variables = torch_state.state_dict_to_variables(state, stargan_template(found))
    return save_converted(out_dir, variables, kind=KIND_STARGAN, architecture=found,
                          source=source, overwrite=overwrite,
                          extra={"source_keys": len(state),
                                 "attributes": ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male",
                                                "Young"][:found["c_dim"]]})


def convert_resnet18(source: str, out_dir: str, overwrite: bool = False) -> dict[str, Any]:
    state = torch_state.load_torch_state_dict(source)
    found = torch_state.infer_resnet18(state)
    flat = torch_state.state_dict_to_variables(state, resnet18_template(found))
    # Back into ResNet18Classifier's layout: everything but `fc` under `encoder`.
    variables = {col: {"encoder": {k: v for k, v in tree.items() if k != "fc"},
                       **({"fc": tree["fc"]} if "fc" in tree else {})}
                 for col, tree in flat.items()}
    return save_converted(out_dir, variables, kind=KIND_RESNET18, architecture=found,
                          source=source, overwrite=overwrite,
                          extra={"source_keys": len(state),
                                 "input_normalisation": "ImageNet mean/std on [0, 1] RGB"})


def infer_timm_vit(state: Mapping[str, np.ndarray], num_heads: int | None = None) -> dict[str, Any]:
    """Architecture of a timm VisionTransformer state_dict (class token, learned position
    embeddings, pre-norm blocks). The number of heads is not in the weights: `num_heads`, or
    width // 64 (every ViT-Ti/S/B/L has 64-wide heads)."""
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight", "blocks.0.attn.qkv.weight",
              "blocks.0.mlp.fc1.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ConversionError(f"This is not a timm VisionTransformer state_dict: it lacks {missing} "
                              "(expected keys such as patch_embed.proj.weight, cls_token, pos_embed, "
                              "blocks.N.attn.qkv.weight, norm.weight).")
    width = int(state["cls_token"].shape[-1])
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    tokens = int(state["pos_embed"].shape[1]) - 1
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ConversionError(f"pos_embed holds {tokens} patch positions, not a square grid (plus one "
                              "class token); only square inputs with a class token are supported.")
    heads = num_heads or width // 64
    if width % heads:
        raise ConversionError(f"--num_heads {heads} does not divide the width {width}.")
    return {"patch_size": patch, "width": width, "depth": depth, "num_heads": heads,
            "mlp_dim": int(state["blocks.0.mlp.fc1.weight"].shape[0]), "image_size": grid * patch}


def timm_vit_params(state: Mapping[str, np.ndarray], a: Mapping[str, Any]) -> dict[str, Any]:
    """timm keys -> the params of dtda_jax.models.vit.VisionTransformer (without the head:
    ImageNet classes are not live/spoof). Every key must be used; LayerScale, register tokens
    or a pooled fc_norm are other architectures and are refused by name."""
    used = set()

    def take(key: str) -> np.ndarray:
        used.add(key)
        return np.asarray(state[key], np.float32)

    def dense(prefix: str) -> dict[str, np.ndarray]:
        return {"kernel": take(prefix + ".weight").T, "bias": take(prefix + ".bias")}

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {"scale": take(prefix + ".weight"), "bias": take(prefix + ".bias")}

    width, heads = a["width"], a["num_heads"]
    per_head = (heads, width // heads)
    params = {"patch_embed": {"kernel": take("patch_embed.proj.weight").transpose(2, 3, 1, 0),
                              "bias": take("patch_embed.proj.bias")},
              "cls_token": take("cls_token"), "pos_embed": take("pos_embed"), "norm": norm("norm")}
    for i in range(a["depth"]):
        b = f"blocks.{i}"
        qkv_w, qkv_b = take(b + ".attn.qkv.weight"), take(b + ".attn.qkv.bias")
        attention = {name: {"kernel": w.T.reshape(width, *per_head), "bias": bias.reshape(per_head)}
                     for name, w, bias in zip(("query", "key", "value"), np.split(qkv_w, 3), np.split(qkv_b, 3))}
        attention["out"] = {"kernel": take(b + ".attn.proj.weight").T.reshape(*per_head, width),
                            "bias": take(b + ".attn.proj.bias")}
        params[f"block{i + 1}"] = {"norm1": norm(b + ".norm1"), "norm2": norm(b + ".norm2"),
                                   "attention": attention, "mlp_fc1": dense(b + ".mlp.fc1"),
                                   "mlp_fc2": dense(b + ".mlp.fc2")}
    leftover = sorted(k for k in state if k not in used and not k.startswith("head."))
    if leftover:
        raise ConversionError(f"keys this ViT has no place for: {torch_state.listing(leftover)} (LayerScale, "
                              "register tokens, fc_norm or attention norms belong to other ViT variants).")
    return params


def vit_template(a: Mapping[str, Any]) -> Any:
    model = VisionTransformer(patch_size=a["patch_size"], width=a["width"], depth=a["depth"],
                              num_heads=a["num_heads"], mlp_dim=a["mlp_dim"])
    x = jnp.zeros((1, a["image_size"], a["image_size"], 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]


def convert_timm_vit(source: str, out_dir: str, num_heads: int | None = None,
                     overwrite: bool = False) -> dict[str, Any]:
    state = torch_state.load_torch_state_dict(source)
    found = infer_timm_vit(state, num_heads)
    params = timm_vit_params(state, found)
    want = {k: v.shape for k, v in flatten_dict(vit_template(found)).items() if k[0] != "head"}
    got = {k: v.shape for k, v in flatten_dict(params).items()}
    wrong = [f"{'/'.join(k)}: {got.get(k)} vs {want.get(k)}" for k in sorted(set(want) | set(got))
             if got.get(k) != want.get(k)]
    if wrong:
        raise ConversionError(f"The checkpoint does not fit a ViT of {found}: {'; '.join(wrong[:8])}.")
    return save_converted(out_dir, {"params": params}, kind=KIND_VIT, architecture=found,
                          source=source, overwrite=overwrite,
                          extra={"source_keys": len(state),
                                 "input_normalisation": "[-1, 1] ((x - 0.5) / 0.5 on [0, 1] RGB)"})


def describe(manifest: dict[str, Any]) -> str:
    arch = ", ".join(f"{k}={v}" for k, v in manifest["architecture"].items())
    return (f"{manifest['kind']} ({arch}): {manifest['num_params'] / 1e6:.2f}M params, "
            f"{manifest['source_keys']} source keys, sha256 {manifest['source_sha256'][:12]}...")


def run_tool(kind: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line shared by tools/convert_*.py."""
    doc = {KIND_ARCFACE: "Convert an arcface_torch IResNet backbone.pth to Flax.",
           KIND_STARGAN: "Convert a StarGAN discriminator (e.g. 200000-D.ckpt) to Flax.",
           KIND_RESNET18: "Convert torchvision's ImageNet resnet18 weights to Flax.",
           KIND_VIT: "Convert a timm VisionTransformer state_dict (KDFAS initialisation) to Flax."}[kind]
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("source", help="the PyTorch checkpoint (.pth / .ckpt)")
    parser.add_argument("--out", required=True, help="output directory (manifest.json + variables/)")
    if kind == KIND_ARCFACE:
        parser.add_argument("--arch", choices=("r18", "r34", "r50", "r100", "r200"),
                            help="expected arch (inferred from the keys when omitted)")
    if kind == KIND_VIT:
        parser.add_argument("--num_heads", type=int, default=None,
                            help="attention heads (not stored in the weights; default width // 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        if kind == KIND_ARCFACE:
            manifest = convert_arcface(args.source, args.out, args.arch, args.overwrite)
        elif kind == KIND_STARGAN:
            manifest = convert_stargan(args.source, args.out, args.overwrite)
        elif kind == KIND_VIT:
            manifest = convert_timm_vit(args.source, args.out, args.num_heads, args.overwrite)
        else:
            manifest = convert_resnet18(args.source, args.out, args.overwrite)
    except (UserError, FileExistsError) as err:
        if args.debug:
            raise
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.out}: {describe(manifest)}")
    return manifest
