"""Built-in benchmark, leave-one-domain-out (Protocol I analogue): webcam & phone & kiosk -> studio.

    python -m dtda_jax.main --config=configs/synthetic_to_studio.py --workdir=runs/synthetic_to_studio

Variant argument as in synthetic.py (e.g. `--config=configs/synthetic_to_studio.py:baseline`).
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.synthetic_demo_config("studio", variant)
