"""KDFAS, M&I -> C: train on MSU-MFSD and Replay-Attack; test on CASIA-FASD.

ViT-L/16 teacher and ViT-B/16 student at 224 x 224 on the prepared datasets (README, "Real
datasets"); variants as in kdfas_synthetic_to_kiosk.py:

    python -m dtda_jax.main --config=configs/kdfas_mi_to_c.py            # or :kd_teacher, :kd_student, ...

Settings: configs/base/kdfas_real.py; the KDFAS choices: dtda_jax/methods/kdfas/config.py.
"""

from dtda_jax.config import load_base

kdfas_real = load_base(__file__, "base/kdfas_real.py")

SOURCES = ("msu_mfsd", "replay_attack")
TARGET = "casia_fasd"


def get_config(variant: str = "kdfas"):
    return kdfas_real.get_config(SOURCES, TARGET, variant)
