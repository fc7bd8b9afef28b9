"""KDFAS, O&M&I -> C: train on OULU-NPU, MSU-MFSD and Replay-Attack; test on CASIA-FASD.

ViT-L/16 teacher and ViT-B/16 student at 224 x 224 on the prepared datasets (README, "Real
datasets"); variants as in kdfas_synthetic_to_kiosk.py:

    python -m dtda_jax.main --config=configs/kdfas_omi_to_c.py            # or :kd_teacher, :kd_student, ...

Settings: `config_lib.kdfas_protocol_config` and `config_lib.kdfas_defaults`.
"""

from dtda_jax import config_lib


def get_config(variant: str = "kdfas"):
    return config_lib.kdfas_protocol_config(*config_lib.PAPER_PROTOCOLS["omi_to_c"], variant)
