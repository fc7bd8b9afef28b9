"""Protocol-I O&C&I -> M: train on OULU-NPU, CASIA-FASD and Replay-Attack; test on MSU-MFSD.

Paper (Table III): HTER 5.71% / AUC 98.03%.

Prepare each dataset once (README, "Real datasets"; a run without them prints the commands),
convert the released teachers (README, "Real teachers and ImageNet initialisation"), then

    python -m dtda_jax.main --config=configs/oci_to_m.py            # or :baseline, :fr, :fa, :fr_fa

Settings: configs/base/dtda_real.py (the paper's hyper-parameters); split conventions
and HTER threshold: README, "Protocol configs".
"""

from dtda_jax.config import load_base

dtda_real = load_base(__file__, "base/dtda_real.py")

SOURCES = ("oulu_npu", "casia_fasd", "replay_attack")
TARGET = "msu_mfsd"


def get_config(variant: str = "dtda"):
    return dtda_real.get_config(SOURCES, TARGET, variant)
