"""KDFAS, O&C&I -> M: train on OULU-NPU, CASIA-FASD and Replay-Attack; test on MSU-MFSD.

ViT-L/16 teacher and ViT-B/16 student at 224 x 224 on the prepared datasets (README, "Real
datasets"); variants as in kdfas_synthetic_to_kiosk.py:

    python -m dtda_jax.main --config=configs/kdfas_oci_to_m.py            # or :kd_teacher, :kd_student, ...

Settings: configs/base/kdfas_real.py; the KDFAS choices: dtda_jax/methods/kdfas/config.py.
"""

from dtda_jax.config import load_base

kdfas_real = load_base(__file__, "base/kdfas_real.py")

SOURCES = ("oulu_npu", "casia_fasd", "replay_attack")
TARGET = "msu_mfsd"


def get_config(variant: str = "kdfas"):
    return kdfas_real.get_config(SOURCES, TARGET, variant)
