"""Protocol-II M&I -> O: train on MSU-MFSD and Replay-Attack; test on OULU-NPU.

Paper (Table IV): HTER 28.22% / AUC 79.44%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/mi_to_o.py            # or :baseline, :fr, :fa, :fr_fa

Settings: configs/base/dtda_real.py (the paper's hyper-parameters); split conventions
and HTER threshold: README, "Protocol configs".
"""

from dtda_jax.config import load_base

dtda_real = load_base(__file__, "base/dtda_real.py")

SOURCES = ("msu_mfsd", "replay_attack")
TARGET = "oulu_npu"


def get_config(variant: str = "dtda"):
    return dtda_real.get_config(SOURCES, TARGET, variant)
