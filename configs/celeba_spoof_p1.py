"""CelebA-Spoof Protocol 1 (intra-dataset): train on the official train list, test on test.

The paper's result (Table V): TPR@FPR=1% 95.72, 0.5% 94.01, 0.1% 90.39, AUC 99.75%,
APCER 2.43%, BPCER 2.40%, ACER 2.42%.

Prepare once (README, "Real datasets"; ~625k images, MTCNN crops at 256x256, CelebA-Spoof's
official box where MTCNN finds no face):

    python tools/prepare_fas.py --dataset=celeba_spoof --manual_dir=/path/to/CelebA_Spoof \
        --celeba_spoof_protocol=p1

convert the released teachers and ImageNet ResNet-18, then run

    python -m dtda_jax.main --config=configs/celeba_spoof_p1.py

One domain, so the domain adversarial attack is off (the `dtda` variant here is `fr_fa`);
batches are 48 live + 48 spoof. Label lists: `metas/intra_test/{train,test}_label.json`.
APCER/BPCER/ACER and TPR@FPR are reported with the target-EER threshold by default
(`--config.eval.threshold_policy=fixed` for 0.5). CelebA-Spoof has no validation split, so
`source_val` metrics are computed on the test split and `source_val_eer` is refused.
Variants: `--config=configs/celeba_spoof_p1.py:baseline` (baseline, fr, fa, fr_fa, dtda;
dtda and dat become fr_fa: one domain, nothing to align).
"""

from dtda_jax.config import load_base

dtda_real = load_base(__file__, "base/dtda_real.py")


def get_config(variant: str = "dtda"):
    return dtda_real.get_config(("celeba_spoof",), "celeba_spoof", variant)
