"""CelebA-Spoof Protocol 2: train and test on one sensor-quality group (low, middle, high).

The paper's result (Table V), AUC / APCER / BPCER / ACER in %: low 100.00 / 0.09 / 0.10 /
0.10, middle 99.71 / 2.09 / 2.15 / 2.12, high 99.97 / 0.50 / 0.49 / 0.50.

Prepare each group once (the face crops are shared with Protocol 1, so only the first
preparation detects faces):

    python tools/prepare_fas.py --dataset=celeba_spoof --manual_dir=/path/to/CelebA_Spoof \
        --celeba_spoof_protocol=p2_low      # and p2_middle, p2_high

then run one group, optionally with a variant after a comma:

    python -m dtda_jax.main --config=configs/celeba_spoof_p2.py:low
    python -m dtda_jax.main --config=configs/celeba_spoof_p2.py:high,baseline

Label lists: `metas/protocol2/test_on_{low,middle,high}_quality_device/{train,test}_label.txt`.
Everything else as in celeba_spoof_p1.py (one domain: no domain attack).
"""

from dtda_jax.config import load_base

dtda_real = load_base(__file__, "base/dtda_real.py")


def get_config(argument: str = "low"):
    group, _, variant = argument.partition(",")
    if group not in ("low", "middle", "high"):
        raise ValueError(f"configs/celeba_spoof_p2.py takes low, middle or high (optionally ',variant'), "
                         f"got {argument!r}.")
    c = dtda_real.get_config(("celeba_spoof",), "celeba_spoof", variant or "dtda")
    c.data.real.celeba_spoof_protocol = f"p2_{group}"
    return c
