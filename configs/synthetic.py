"""The built-in demo: DTDA on the generated benchmark, studio & webcam & phone -> kiosk.

    python -m dtda_jax.main --config=configs/synthetic.py --workdir=runs/synthetic

Select one of the paper's ablation variants (Table II) with an argument:
`--config=configs/synthetic.py:baseline` (baseline, fr, fa, fr_fa, dtda; default dtda), or
`:dat` for the domain-adversarial-training (gradient reversal) baseline.
The same protocol as `synthetic_to_kiosk.py`; the other held-out domains have their own
files. Settings: configs/base/dtda_synthetic.py.

Expected result (seed 0, 2-core AMD EPYC, jax 0.10.2; other CPUs move it by a few points,
see README "What the main job does and prints"):
AUC 93.47% / HTER 15.00% (best on target, step 300; last step 92.22 / 16.88); deployable
(last step, source-val threshold): ACER 20.00%. Measured at 66e8330, 16 + 24 people per domain.
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="kiosk", variant=variant)
