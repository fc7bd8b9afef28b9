"""Protocol-II M&I -> C: train on MSU-MFSD and Replay-Attack; test on CASIA-FASD.

Paper (Table IV): HTER 22.67% / AUC 82.43%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/mi_to_c.py            # or :baseline, :fr, :fa, :fr_fa

Settings: configs/base/dtda_real.py (the paper's hyper-parameters); split conventions
and HTER threshold: README, "Protocol configs".
"""

from dtda_jax.config import load_base

dtda_real = load_base(__file__, "base/dtda_real.py")

SOURCES = ("msu_mfsd", "replay_attack")
TARGET = "casia_fasd"


def get_config(variant: str = "dtda"):
    return dtda_real.get_config(SOURCES, TARGET, variant)
