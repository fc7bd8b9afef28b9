"""KDFAS on the built-in benchmark: studio & webcam & phone -> kiosk, sized for a CPU.

    python -m dtda_jax.main --config=configs/kdfas_synthetic_to_kiosk.py

The argument selects an ablation row (default kdfas): `:kd_teacher` (the ViT teacher alone),
`:kd_student` (the student without distillation), `:kd_decision` / `:kd_feature` (one KD
term), `:kdfas` (both). The teacher is trained once per seed and settings and cached in
data/kdfas_teachers. Settings and the choices behind them: `config_lib.kdfas_demo_config`
and `config_lib.kdfas_defaults`.
"""

from dtda_jax import config_lib


def get_config(variant: str = "kdfas"):
    return config_lib.kdfas_demo_config("kiosk", variant)
