"""The built-in demo: DTDA on the generated benchmark, studio & webcam & phone -> kiosk.

    python -m dtda_jax.main --config=configs/synthetic.py --workdir=runs/synthetic

Select one of the paper's ablation variants (Table II) with an argument:
`--config=configs/synthetic.py:baseline` (baseline, fr, fa, fr_fa, dtda; default dtda), or
`:dat` for the domain-adversarial-training (gradient reversal) baseline.
The same protocol as `synthetic_to_kiosk.py`; the other held-out domains have their own
files. Settings: `dtda_jax.config_lib.synthetic_demo_config`.
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.synthetic_demo_config("kiosk", variant)
