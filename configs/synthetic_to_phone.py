"""Built-in benchmark, leave-one-domain-out (Protocol I analogue): studio & webcam & kiosk -> phone.

    python -m dtda_jax.main --config=configs/synthetic_to_phone.py --workdir=runs/synthetic_to_phone

Variant argument as in synthetic.py (e.g. `--config=configs/synthetic_to_phone.py:baseline`).
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.synthetic_demo_config("phone", variant)
