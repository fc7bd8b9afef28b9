"""The three converters behind `tools/convert_*.py`: ArcFace IResNet, StarGAN D, ResNet-18.

Each infers the architecture from the checkpoint's keys and shapes; an explicit `arch` that
disagrees is refused with the arch the keys show.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from dtda_jax import conversion
from dtda_jax.conversion import ConversionError
from dtda_jax.models import ResNet18Classifier, StarGANDiscriminator, iresnet

KIND_ARCFACE = "arcface_iresnet"
KIND_STARGAN = "stargan_discriminator"
KIND_RESNET18 = "torchvision_resnet18"


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
    state = conversion.load_torch_state_dict(source)
    found = conversion.infer_iresnet(state)
    if arch is not None and arch != found["arch"]:
        raise ConversionError(
            f"--arch {arch} does not match {source!r}: its blocks per stage are those of "
            f"{found['arch']}. Use --arch {found['arch']} (or leave --arch out).")
    variables = conversion.state_dict_to_variables(state, arcface_template(found),
                                                   hint=f"The keys look like {found['arch']}.")
    return conversion.save_converted(out_dir, variables, kind=KIND_ARCFACE, architecture=found,
                                     source=source, overwrite=overwrite,
                                     extra={"source_keys": len(state)})


def convert_stargan(source: str, out_dir: str, overwrite: bool = False) -> dict[str, Any]:
    state = conversion.load_torch_state_dict(source)
    found = conversion.infer_stargan(state)
    variables = conversion.state_dict_to_variables(state, stargan_template(found))
    return conversion.save_converted(out_dir, variables, kind=KIND_STARGAN, architecture=found,
                                     source=source, overwrite=overwrite,
                                     extra={"source_keys": len(state),
                                            "attributes": ["Black_Hair", "Blond_Hair", "Brown_Hair",
                                                           "Male", "Young"][:found["c_dim"]]})


def convert_resnet18(source: str, out_dir: str, overwrite: bool = False) -> dict[str, Any]:
    state = conversion.load_torch_state_dict(source)
    found = conversion.infer_resnet18(state)
    flat = conversion.state_dict_to_variables(state, resnet18_template(found))
    # Back into ResNet18Classifier's layout: everything but `fc` under `encoder`.
    variables = {col: {"encoder": {k: v for k, v in tree.items() if k != "fc"},
                       **({"fc": tree["fc"]} if "fc" in tree else {})}
                 for col, tree in flat.items()}
    return conversion.save_converted(out_dir, variables, kind=KIND_RESNET18, architecture=found,
                                     source=source, overwrite=overwrite,
                                     extra={"source_keys": len(state),
                                            "input_normalisation": "ImageNet mean/std on [0, 1] RGB"})


def describe(manifest: dict[str, Any]) -> str:
    arch = ", ".join(f"{k}={v}" for k, v in manifest["architecture"].items())
    return (f"{manifest['kind']} ({arch}): {manifest['num_params'] / 1e6:.2f}M params, "
            f"{manifest['source_keys']} source keys, sha256 {manifest['source_sha256'][:12]}...")


def run_tool(kind: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line shared by tools/convert_*.py."""
    doc = {KIND_ARCFACE: "Convert an arcface_torch IResNet backbone.pth to Flax.",
           KIND_STARGAN: "Convert a StarGAN discriminator (e.g. 200000-D.ckpt) to Flax.",
           KIND_RESNET18: "Convert torchvision's ImageNet resnet18 weights to Flax."}[kind]
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("source", help="the PyTorch checkpoint (.pth / .ckpt)")
    parser.add_argument("--out", required=True, help="output directory (manifest.json + variables/)")
    if kind == KIND_ARCFACE:
        parser.add_argument("--arch", choices=("r18", "r34", "r50", "r100", "r200"),
                            help="expected arch (inferred from the keys when omitted)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        if kind == KIND_ARCFACE:
            manifest = convert_arcface(args.source, args.out, args.arch, args.overwrite)
        elif kind == KIND_STARGAN:
            manifest = convert_stargan(args.source, args.out, args.overwrite)
        else:
            manifest = convert_resnet18(args.source, args.out, args.overwrite)
    except (ConversionError, conversion.UnsafeCheckpointError, FileNotFoundError,
            FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.out}: {describe(manifest)}")
    return manifest
