"""Converts an arcface_torch IResNet backbone (r18/r34/r50/r100/r200) to Flax.

    python tools/convert_arcface.py ms1mv3_arcface_r50_fp16/backbone.pth --out pretrained/arcface_r50

Writes OUT/manifest.json (source sha256, architecture, shapes) and OUT/variables/ (Orbax).
Needs torch: pip install torch==2.13.0 (or pip install -e ".[convert]"). See README,
"Real teachers and ImageNet initialisation".
"""

from dtda_jax.weights import converters

if __name__ == "__main__":
    converters.run_tool(converters.KIND_ARCFACE)
