"""studio & webcam & phone -> kiosk with RANDOM teachers: synthetic_to_kiosk.py without the
project's own trained teachers (teachers.own_teachers = False), so the distillation terms
distil fixed random networks. Its column next to synthetic_to_kiosk in the ablation runner
shows what the teachers' face priors add:

    python -m dtda_jax.experiments --configs=configs/synthetic_to_kiosk.py,configs/synthetic_to_kiosk_random_teachers.py \\
        --variants=fr,fa,fr_fa,dtda --seeds=0,1,2 --out=runs/teachers

Expected result, measured on the benchmark's earlier 12 + 8 people per domain, not
re-measured at the current 16 + 24 (seed 0, 2-core AMD EPYC, jax 0.10.2; other CPUs move it
by a few points, see README "What the main job does and prints"):
AUC 86.12% / HTER 18.75% (best on target, step 100; last step 83.37 / 25.00).
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="kiosk", variant=variant, own_teachers=False)
