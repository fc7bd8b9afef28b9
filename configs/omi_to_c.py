"""Protocol-I O&M&I -> C: train on OULU-NPU, MSU-MFSD and Replay-Attack; test on CASIA-FASD.

Paper (Table III): HTER 6.67% / AUC 97.27%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/omi_to_c.py            # or :baseline, :fr, :fa, :fr_fa

Settings, split conventions and HTER threshold: README, "Protocol configs".
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.real_protocol_config(*config_lib.PAPER_PROTOCOLS["omi_to_c"], variant)
