"""Trains the DTDA teachers of a config on synthetic faces disjoint from the FAS benchmark.

    python tools/train_teachers.py --config=configs/synthetic.py --out=pretrained/synthetic_teachers
    python tools/train_teachers.py --config=configs/synthetic.py --out=DIR --set fr.steps=100

Renders the face corpus (cached under OUT/corpus/), trains the face recognition teacher
(ArcFace on the config's IResNet) and the attribute teacher (the config's StarGAN
discriminator), prints their quality on held-out identities next to random-init networks,
and saves them as converted checkpoints (OUT/<name>/manifest.json + variables/) for
`config.teachers.fr_checkpoint` / `fa_checkpoint`. Rerunning reuses what OUT holds.
See dtda_jax/teachers/training.py.
"""

import sys

from dtda_jax.teachers import training as teacher_training

if __name__ == "__main__":
    sys.exit(teacher_training.main())
