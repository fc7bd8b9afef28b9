"""Protocol-I O&C&I -> M: train on OULU-NPU, CASIA-FASD and Replay-Attack; test on MSU-MFSD.

Paper (Table III): HTER 5.71% / AUC 98.03%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/oci_to_m.py            # or :baseline, :fr, :fa, :fr_fa

Settings, split conventions and HTER threshold: README, "Protocol configs".
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.real_protocol_config(*config_lib.PAPER_PROTOCOLS["oci_to_m"], variant)
