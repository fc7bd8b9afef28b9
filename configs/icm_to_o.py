"""Protocol-I I&C&M -> O: train on Replay-Attack, CASIA-FASD and MSU-MFSD; test on OULU-NPU.

Paper (Table III): HTER 13.13% / AUC 94.24%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/icm_to_o.py            # or :baseline, :fr, :fa, :fr_fa

Settings, split conventions and HTER threshold: README, "Protocol configs".
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.real_protocol_config(*config_lib.PAPER_PROTOCOLS["icm_to_o"], variant)
