"""studio & webcam & phone -> kiosk with the student's ResNet-18 encoder PRE-TRAINED ON FACES:
synthetic_to_kiosk.py, but the encoder starts from its pre-training on the capture-diverse
synthetic face corpus (identities + attributes, every video through its own random capture
pipeline; dtda_jax/teachers/pretraining.py), the stand-in for the ImageNet initialisation of
the paper's student. Pre-trained once and cached in data/face_pretrained
(`python tools/pretrain_on_faces.py --config=configs/synthetic_to_kiosk_face_pretrained.py`).
Its column next to synthetic_to_kiosk in the ablation runner shows what a common starting
point does to the seed-to-seed spread:

    python -m dtda_jax.experiments --configs=configs/synthetic_to_kiosk.py,configs/synthetic_to_kiosk_face_pretrained.py \\
        --variants=baseline,dtda --seeds=0,1,2,3,4 --out=runs/student_init
"""

from dtda_jax.config import load_base

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    return dtda_synthetic.get_config(target="kiosk", variant=variant, face_pretrained_student=True)
