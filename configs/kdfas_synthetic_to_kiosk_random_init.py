"""KDFAS on the built-in benchmark with RANDOMLY INITIALISED ViTs: kdfas_synthetic_to_kiosk.py
without the face-corpus pre-training (kdfas.pretrain_on_faces = False), as KDFAS starts
without ImageNet weights. Its column next to kdfas_synthetic_to_kiosk in the ablation runner
shows what the pre-training adds:

    python -m dtda_jax.experiments --configs=configs/kdfas_synthetic_to_kiosk.py,configs/kdfas_synthetic_to_kiosk_random_init.py \\
        --variants=kd_teacher,kd_student,kd_decision,kd_feature,kdfas --seeds=0,1,2,3,4 --out=runs/kdfas

Expected result (seed 0, at 717f5ee, 2-core AMD EPYC, jax 0.10.2): AUC 59.63% / HTER 42.50%
(best on target, step 100; last step 47.50 / 52.50).
"""

from dtda_jax.config import load_base

kdfas_synthetic = load_base(__file__, "base/kdfas_synthetic.py")


def get_config(variant: str = "kdfas"):
    return kdfas_synthetic.get_config(target="kiosk", variant=variant, pretrain_on_faces=False)
