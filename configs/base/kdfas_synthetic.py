"""Base of the KDFAS configs on the built-in benchmark (configs/kdfas_synthetic_*.py), sized
for a 2-core CPU.

Data and evaluation as the DTDA demo (configs/base/dtda_synthetic.py: 64 px, batch 48, 400
steps). ViTs at patch 8 (an 8 x 8 grid of tokens): a 6-block width-128 teacher (1.2 M
parameters) and a 3-block width-96 student (0.36 M), about the ViT-L/ViT-B ratio; 3 stages
pair teacher blocks 2/4/6 with student blocks 1/2/3.
"""

from dtda_jax.config import apply_variant, load_base
from dtda_jax.methods.kdfas import config as kdfas

protocol = load_base(__file__, "synthetic_protocol.py")


def get_config(target: str, variant: str = "kdfas", pretrain_on_faces: bool = True):
    c = kdfas.default_config()
    apply_variant(c, variant or "kdfas")

    # Protocol: three generated domains -> the held-out fourth, 64 x 64, batch 3 x 2 x 8 = 48.
    protocol.set_protocol(c, target)
    c.data.samples_per_group = 8
    c.data.eval_batch_size = 128

    # ViTs: teacher 6 blocks x 128 (4 heads), student 3 blocks x 96 (3 heads), patch 8.
    k = c.kdfas
    k.teacher = kdfas.vit_config(8, 128, 6, 4)
    k.student = kdfas.vit_config(8, 96, 3, 3)
    k.num_stages = 3
    # L = CE + 1 * tau^2 KL (tau 4) + 10 * mean Gram loss over the 3 stages.
    k.lambda_decision = 1.0
    k.temperature = 4.0
    k.lambda_feature = 10.0
    # AdamW lr 1e-3 (40 warm-up steps, then cosine), weight decay 0.05, clip 1.0; 400 steps each.
    k.teacher_num_steps = 400
    k.teacher_optim = kdfas.adamw_config(1e-3, 40)
    k.student_optim = kdfas.adamw_config(1e-3, 40)
    c.train.num_steps = 400
    c.train.log_every = 20
    c.train.eval_every = 100
    c.train.checkpoint_every = 100

    # Both ViTs start from their architecture pre-trained on the capture-diverse face corpus
    # (identities + attributes; teachers/settings.face_pretraining_config), cached in data/face_pretrained.
    if pretrain_on_faces:
        kdfas.use_face_pretraining(c)

    c.eval.threshold_policy = "target_eer"
    c.eval.selection = "best_on_target"
    return c
