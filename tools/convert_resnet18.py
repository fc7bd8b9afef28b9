"""Converts torchvision's ImageNet ResNet-18 weights to Flax (student and domain-classifier init).

    python tools/convert_resnet18.py resnet18-f37072fd.pth --out pretrained/resnet18_imagenet

Writes OUT/manifest.json (source sha256, architecture, shapes) and OUT/variables/ (Orbax).
Needs torch: pip install torch==2.13.0 (or pip install -e ".[convert]"). See README,
"Real teachers and ImageNet initialisation".
"""

from dtda_jax.weights import converters

if __name__ == "__main__":
    converters.run_tool(converters.KIND_RESNET18)
