"""Protocol-II M&I -> O: train on MSU-MFSD and Replay-Attack; test on OULU-NPU.

Paper (Table IV): HTER 28.22% / AUC 79.44%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/mi_to_o.py            # or :baseline, :fr, :fa, :fr_fa

Settings, split conventions and HTER threshold: README, "Protocol configs".
"""

from dtda_jax import config_lib


def get_config(variant: str = "dtda"):
    return config_lib.real_protocol_config(*config_lib.PAPER_PROTOCOLS["mi_to_o"], variant)
