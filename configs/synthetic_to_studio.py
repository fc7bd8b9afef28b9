"""Built-in benchmark, leave-one-domain-out (Protocol I analogue): webcam & phone & kiosk -> studio.

    python -m dtda_jax.main --config=configs/synthetic_to_studio.py --workdir=runs/synthetic_to_studio

Variant argument as in synthetic.py (e.g. `--config=configs/synthetic_to_studio.py:baseline`).

Expected result, measured on the benchmark's earlier 12 + 8 people per domain, not
re-measured at the current 16 + 24 (seed 0, 2-core AMD EPYC, jax 0.10.2; other CPUs move it
by a few points, see README "What the main job does and prints"):
AUC 74.33% / HTER 30.00% (best on target = last step, 400).
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="studio", variant=variant)
