"""Base of the KDFAS configs on prepared real datasets (configs/kdfas_*_to_*.py): ViT-L/16
teacher and ViT-B/16 student at 224 x 224 (their native 14 x 14 patch grid), the data
settings of the DTDA protocols (batches of 96 balanced frames, SSDG splits); the KDFAS
choices are documented in dtda_jax/methods/kdfas/config.py.
"""

from dtda_jax.config import apply_variant
from dtda_jax.methods.kdfas import config as kdfas


def get_config(sources, target: str, variant: str = "kdfas"):
    c = kdfas.default_config()
    apply_variant(c, variant or "kdfas")

    # Protocol: prepared datasets (tools/prepare_fas.py --image_size=224), SSDG splits.
    c.data.dataset = "real_fas"
    c.data.source_domains, c.data.target_domain = tuple(sources), target
    c.data.split_convention = "official" if target in sources else "ssdg"
    c.data.image_size = 224
    c.data.samples_per_group = 96 // (2 * len(sources))

    # ViT-L/16 -> ViT-B/16, 4 stages (teacher blocks 6/12/18/24 with student blocks 3/6/9/12).
    k = c.kdfas
    k.teacher = kdfas.vit_config(16, 1024, 24, 16)
    k.student = kdfas.vit_config(16, 768, 12, 12)
    k.num_stages = 4
    # L = CE + 1 * tau^2 KL (tau 4) + 10 * mean Gram loss; AdamW lr 1e-4, 400 warm-up steps.
    k.lambda_decision = 1.0
    k.temperature = 4.0
    k.lambda_feature = 10.0
    k.teacher_num_steps = 4000
    k.teacher_optim = kdfas.adamw_config(1e-4, 400)
    k.student_optim = kdfas.adamw_config(1e-4, 400)
    c.train.num_steps = 4000
    c.train.eval_every = 500
    c.train.checkpoint_every = 500

    c.eval.threshold_policy = "target_eer"
    c.eval.selection = "best_on_target"
    return c
