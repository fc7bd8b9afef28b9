"""KDFAS on the built-in benchmark: studio & webcam & phone -> kiosk, sized for a CPU.

    python -m dtda_jax.main --config=configs/kdfas_synthetic_to_kiosk.py

The argument selects an ablation row (default kdfas): `:kd_teacher` (the ViT teacher alone),
`:kd_student` (the student without distillation), `:kd_decision` / `:kd_feature` (one KD
term), `:kdfas` (both). The teacher is trained once per seed and settings and cached in
data/kdfas_teachers. Settings: configs/base/kdfas_synthetic.py; the choices behind them:
dtda_jax/methods/kdfas/config.py.
"""

from dtda_jax.config import load_base

kdfas_synthetic = load_base(__file__, "base/kdfas_synthetic.py")


def get_config(variant: str = "kdfas"):
    return kdfas_synthetic.get_config(target="kiosk", variant=variant)
