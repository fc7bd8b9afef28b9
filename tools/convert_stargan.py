"""Converts a StarGAN discriminator checkpoint (any size) to Flax.

    python tools/convert_stargan.py stargan_celeba_128/models/200000-D.ckpt --out pretrained/stargan_celeba_128

Writes OUT/manifest.json (source sha256, architecture, shapes) and OUT/variables/ (Orbax).
Needs torch: pip install torch==2.13.0 (or pip install -e ".[convert]"). See README,
"Real teachers and ImageNet initialisation".
"""

from dtda_jax.weights import converters

if __name__ == "__main__":
    converters.run_tool(converters.KIND_STARGAN)
