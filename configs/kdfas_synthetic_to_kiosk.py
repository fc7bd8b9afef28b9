"""KDFAS on the built-in benchmark: studio & webcam & phone -> kiosk, sized for a CPU.

    python -m dtda_jax.main --config=configs/kdfas_synthetic_to_kiosk.py

The argument selects an ablation row (default kdfas): `:kd_teacher` (the ViT teacher alone),
`:kd_student` (the student without distillation), `:kd_decision` / `:kd_feature` (one KD
term), `:kdfas` (both). Both ViTs start from their architecture pre-trained on the synthetic
face corpus (identities + attributes, every video through its own random capture pipeline;
pre-trained once and cached in data/face_pretrained, `python tools/pretrain_on_faces.py`; without
it: kdfas_synthetic_to_kiosk_random_init.py). The teacher is trained once per seed and settings
and cached in data/kdfas_teachers. Settings: configs/base/kdfas_synthetic.py; the choices
behind them: dtda_jax/methods/kdfas/config.py.

Expected result (seed 0, at 717f5ee, 2-core AMD EPYC, jax 0.10.2; other CPUs move it by a
few points, see README "What the main job does and prints"): AUC 58.19% / HTER 46.88% (best on
target, step 100; last step 46.81 / 57.50): at chance on the held-out camera, as every KDFAS
row here (README, KDFAS). The first run also pre-trains the two ViTs on faces (34 and 12
minutes on 2 cores shared with another job); then about 7 minutes (teacher and student).
"""

from dtda_jax.config import load_base

kdfas_synthetic = load_base(__file__, "base/kdfas_synthetic.py")


def get_config(variant: str = "kdfas"):
    return kdfas_synthetic.get_config(target="kiosk", variant=variant)
