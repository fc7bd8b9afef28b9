"""Built-in benchmark, leave-one-domain-out (Protocol I analogue): studio & webcam & phone -> kiosk.

    python -m dtda_jax.main --config=configs/synthetic_to_kiosk.py --workdir=runs/synthetic_to_kiosk

Variant argument as in synthetic.py (e.g. `--config=configs/synthetic_to_kiosk.py:baseline`).

Expected result (seed 0, 2-core AMD EPYC, jax 0.10.2; other CPUs move it by a few points,
see README "What the main job does and prints"):
AUC 93.47% / HTER 15.00% (best on target, step 300; last step 92.22 / 16.88); deployable
(last step, source-val threshold): ACER 20.00%. Measured at 66e8330, 16 + 24 people per domain.
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="kiosk", variant=variant)
