"""studio & webcam & phone -> kiosk with CAPTURE-DIVERSE own teachers: synthetic_to_kiosk.py,
but the teachers' face corpus puts every video through its own random capture pipeline
(never one of the benchmark's cameras) and has more people
(dtda_jax.teachers.settings.capture_diverse_teacher_training_config), as the paper's teachers
saw real faces under every kind of capture. Its column next to synthetic_to_kiosk and
synthetic_to_kiosk_random_teachers in the ablation runner shows what capture-invariant
teachers add:

    python -m dtda_jax.experiments --configs=configs/synthetic_to_kiosk.py,configs/synthetic_to_kiosk_capture_teachers.py,configs/synthetic_to_kiosk_random_teachers.py \\
        --variants=baseline,fr,fa,fr_fa,dtda,dat --seeds=0,1,2,3,4 --out=runs/ablation
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="kiosk", variant=variant, capture_diverse_teachers=True)
