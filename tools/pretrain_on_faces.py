"""Pre-trains on the synthetic face corpus (identities + attributes, capture-diverse) the
networks a config's runs start from: KDFAS's ViTs (`kdfas.pretrain_on_faces`), DTDA's student
encoder (`model.pretrain_on_faces`); prints their quality next to random init.

    python tools/pretrain_on_faces.py --config=configs/kdfas_synthetic_to_kiosk.py
    python tools/pretrain_on_faces.py --config=configs/synthetic_to_kiosk_face_pretrained.py \\
        --set model.face_pretraining.steps=500

Cached in the config's `pretrained_dir` (default data/face_pretrained): a run with the same
settings reuses them. See dtda_jax/teachers/pretraining.py.
"""

import sys

from dtda_jax.teachers import pretraining

if __name__ == "__main__":
    sys.exit(pretraining.main())
