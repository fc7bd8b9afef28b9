"""Protocol-I O&C&M -> I: train on OULU-NPU, CASIA-FASD and MSU-MFSD; test on Replay-Attack.

Paper (Table III): HTER 13.12% / AUC 92.24%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/ocm_to_i.py            # or :baseline, :fr, :fa, :fr_fa

Settings, split conventions and HTER threshold: README, "Protocol configs".
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.real_protocol_config(*config_lib.PAPER_PROTOCOLS["ocm_to_i"], variant)
