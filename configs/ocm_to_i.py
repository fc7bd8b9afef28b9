"""Protocol-I O&C&M -> I: train on OULU-NPU, CASIA-FASD and MSU-MFSD; test on Replay-Attack.

Paper (Table III): HTER 13.12% / AUC 92.24%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/ocm_to_i.py            # or :baseline, :fr, :fa, :fr_fa

Settings: configs/base/dtda_real.py (the paper's hyper-parameters); split conventions
and HTER threshold: README, "Protocol configs".
"""

from dtda_jax.config import load_base

dtda_real = load_base(__file__, "base/dtda_real.py")

SOURCES = ("oulu_npu", "casia_fasd", "msu_mfsd")
TARGET = "replay_attack"


def get_config(variant: str = "dtda"):
    return dtda_real.get_config(SOURCES, TARGET, variant)
