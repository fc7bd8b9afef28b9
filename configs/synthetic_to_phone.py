"""Built-in benchmark, leave-one-domain-out (Protocol I analogue): studio & webcam & kiosk -> phone.

    python -m dtda_jax.main --config=configs/synthetic_to_phone.py --workdir=runs/synthetic_to_phone

Variant argument as in synthetic.py (e.g. `--config=configs/synthetic_to_phone.py:baseline`).
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="phone", variant=variant)
