"""Pre-trains the ViTs of a KDFAS config on the synthetic face corpus (identities + attributes,
capture-diverse), the initialisation `kdfas.pretrain_on_faces` runs use; prints their quality.

    python tools/pretrain_vits.py --config=configs/kdfas_synthetic_to_kiosk.py
    python tools/pretrain_vits.py --config=configs/kdfas_synthetic_to_kiosk.py --roles=student \\
        --set kdfas.face_pretraining.steps=500

Cached in `kdfas.pretrained_dir` (default data/kdfas_pretrained): a KDFAS run with the same
settings reuses them. See dtda_jax/methods/kdfas/pretraining.py.
"""

import sys

from dtda_jax.methods.kdfas import pretraining

if __name__ == "__main__":
    sys.exit(pretraining.main())
