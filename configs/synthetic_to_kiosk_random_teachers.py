"""studio & webcam & phone -> kiosk with RANDOM teachers: synthetic_to_kiosk.py without the
project's own trained teachers (teachers.own_teachers = False), so the distillation terms
distil fixed random networks. Its column next to synthetic_to_kiosk in the ablation runner
shows what the teachers' face priors add:

    python -m dtda_jax.experiments --configs=configs/synthetic_to_kiosk.py,configs/synthetic_to_kiosk_random_teachers.py \\
        --variants=fr,fa,fr_fa,dtda --seeds=0,1,2 --out=runs/teachers
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    config = config_lib.synthetic_demo_config("kiosk", variant)
    config.teachers.own_teachers = False
    return config
