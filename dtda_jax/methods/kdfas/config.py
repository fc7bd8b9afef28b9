"""KDFAS's config section, its ablation rows and their validation. Imports no jax.

KDFAS (PRCV 2023; ../shared/paper/kdfas-readme.md): a ViT teacher trained on FAS, then a
smaller ViT student trained with cross-entropy plus decision-level KL distillation and
multi-stage feature distillation through token Gram matrices. Besides the shared sections
(dtda_jax/config/common.py; `train.num_steps` counts the student's steps) a KDFAS config has
one section, `kdfas`.

Choices where the KDFAS README is silent (all settings here):
- Sizes: teacher ViT-L/16 (24 blocks, width 1024, 303.3 M parameters, 1.21 GB in float32)
  and student ViT-B/16 (12 blocks, width 768, 85.8 M, 343 MB = 327 MiB): the standard ViTs
  nearest to the README's "1.28 GB" teacher and "330.8 MB" student.
- Stages: the blocks are cut into `num_stages` equal stages and the tokens after the last
  block of stage k are paired: teacher block k * depth_t / S with student block
  k * depth_s / S (ViT-L/B, S = 4: blocks 6/12/18/24 with 3/6/9/12). Both depths must be
  divisible by S.
- Gram matrix: over the patch tokens (the class token is distilled at the decision
  level), centred over the tokens and cosine-normalised (methods/kdfas/losses.token_gram);
  the loss is the mean squared difference, averaged over the stages. Teacher and student
  need the same patch grid (same patch size).
- Loss: L = CE + lambda_decision * tau^2 KL(teacher || student at temperature tau)
  + lambda_feature * L_gram, lambda_decision = 1, tau = 4 (as DTDA's KD terms),
  lambda_feature = 10 (the Gram loss is O(0.01-0.1) where CE and KL are O(0.1-1)).
- Optimiser: AdamW (lr warm-up then cosine, weight decay 0.05 on kernels, clip 1.0), the
  ViT recipe; the teacher trains `teacher_num_steps`, the student `train.num_steps`.
- The teacher is trained on the protocol's source domains with cross-entropy, evaluated
  like any student, and frozen; its last state is distilled (not the best-on-target one).
- Initialisation: both ViTs start from random weights unless `init_checkpoint` names a
  converted timm ViT (tools/convert_vit.py), e.g. ImageNet ViT-L/16 and ViT-B/16, or
  `pretrain_on_faces` is on: then a ViT with an empty `init_checkpoint` starts from the
  same architecture pre-trained on the synthetic face corpus (identities and attributes,
  every video through its own random capture pipeline),
  trained once and cached in `pretrained_dir`, what ImageNet gives a ViT on real data
  (dtda_jax/teachers/pretraining.py).
"""

from __future__ import annotations

import ml_collections

from dtda_jax.config.common import LR_SCHEDULES, common_config, require, require_settings
from dtda_jax.teachers.settings import check_face_pretraining, face_pretraining_config

NAME = "kdfas"

# The ablation rows. "kd_teacher" reports the ViT teacher alone; the others train the
# student without KD, with one KD term, or with both.
VARIANTS = {
    "kd_teacher": dict(report="teacher", use_decision_kd=False, use_feature_kd=False),
    "kd_student": dict(report="student", use_decision_kd=False, use_feature_kd=False),
    "kd_decision": dict(report="student", use_decision_kd=True, use_feature_kd=False),
    "kd_feature": dict(report="student", use_decision_kd=False, use_feature_kd=True),
    "kdfas": dict(report="student", use_decision_kd=True, use_feature_kd=True),
}
BASELINE_VARIANT = "kd_student"  # what the sweep tables compare every other variant with
DEFAULT_VARIANT = "kdfas"
SWITCHES = "kdfas"  # the section that holds the variants' switches
VARIANT_LABEL = "KDFAS variant"  # as error messages call them
REPORTS = ("student", "teacher")
# A config may leave this out: the face pre-training settings exist only in configs that
# pre-train (use_face_pretraining).
OPTIONAL_FIELDS = ("kdfas.face_pretraining",)


def vit_config(patch_size: int, width: int, depth: int, num_heads: int) -> ml_collections.ConfigDict:
    """Size of a dtda_jax.models.vit.VisionTransformer (MLP width 4x, as in every ViT), and its
    initialisation: "" = random, or a timm ViT converted by tools/convert_vit.py (its head is
    not used; position embeddings must be for the run's patch grid)."""
    return ml_collections.ConfigDict(dict(patch_size=patch_size, width=width, depth=depth,
                                          num_heads=num_heads, mlp_dim=4 * width, init_checkpoint=""))


def adamw_config(learning_rate: float, warmup_steps: int) -> ml_collections.ConfigDict:
    """AdamW with warm-up and cosine decay, the usual recipe for training ViTs."""
    return ml_collections.ConfigDict(dict(
        learning_rate=learning_rate, weight_decay=0.05, b1=0.9, b2=0.999, schedule="cosine",
        warmup_steps=warmup_steps, step_boundaries=(), grad_clip_norm=1.0))


def use_face_pretraining(c: ml_collections.ConfigDict,
                         settings: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Turns on the face-corpus initialisation of both ViTs (those with an empty
    `init_checkpoint`), with `settings` or face_pretraining_config()."""
    c.kdfas.pretrain_on_faces = True
    c.kdfas.face_pretraining = settings if settings is not None else face_pretraining_config()
    return c


def default_config() -> ml_collections.ConfigDict:
    """Every KDFAS field with its default: ViT-L/16 -> ViT-B/16 (see the module docstring)."""
    c = common_config(NAME)
    c.kdfas = k = ml_collections.ConfigDict()
    k.teacher = vit_config(16, 1024, 24, 16)  # ViT-L/16
    k.student = vit_config(16, 768, 12, 12)  # ViT-B/16
    k.dtype = "float32"  # computation dtype of both ViTs: float32 or bfloat16
    k.num_stages = 4
    k.report = "student"  # "teacher": the teacher-alone ablation row (no student is trained)
    k.use_decision_kd = True
    k.use_feature_kd = True
    k.lambda_decision = 1.0
    k.lambda_feature = 10.0
    k.temperature = 4.0
    k.scale_kd_by_t2 = True
    k.teacher_num_steps = 4000
    k.teacher_optim = adamw_config(1e-4, 400)
    k.student_optim = adamw_config(1e-4, 400)
    # Trained teachers are cached by their settings (data, seed, size, optimiser) and shared
    # by every run and variant that needs the same teacher; "" = <data.data_dir>/kdfas_teachers.
    k.teacher_dir = ""
    # Face-corpus initialisation (use_face_pretraining): pre-trained ViTs are cached by their
    # architecture and settings in pretrained_dir ("" = <data.data_dir>/face_pretrained).
    k.pretrain_on_faces = False
    k.pretrained_dir = ""
    return c


def migrate(saved: dict) -> dict:
    """A KDFAS config.json of an earlier layout as this code reads it: versions before the
    one-loop redesign kept the ViTs' dtype in DTDA's `model` section."""
    kdfas = saved.get("kdfas", {})
    if "dtype" not in kdfas and "dtype" in saved.get("model", {}):
        saved = {**saved, "kdfas": {**kdfas, "dtype": saved["model"]["dtype"]}}
    return saved


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks the `kdfas` section (the shared ones are checked by dtda_jax.config)."""
    k = c.kdfas
    for role in ("teacher", "student"):
        v = k[role]
        require(min(v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim) >= 1, f"kdfas.{role}",
                f"patch_size, width, depth, num_heads and mlp_dim must be >= 1, got {v.to_dict()}.")
        require(v.width % v.num_heads == 0, f"kdfas.{role}.num_heads",
                f"the width {v.width} must be divisible by the number of heads {v.num_heads}.")
        require(c.data.image_size % v.patch_size == 0, "data.image_size",
                f"must be a multiple of kdfas.{role}.patch_size = {v.patch_size}, got {c.data.image_size}.")
    require(k.dtype in ("float32", "bfloat16"), "kdfas.dtype",
            f"must be 'float32' or 'bfloat16', got {k.dtype!r}.")
    require(k.report in REPORTS, "kdfas.report", f"must be one of {REPORTS}, got {k.report!r}.")
    if k.use_feature_kd:
        require(k.teacher.patch_size == k.student.patch_size, "kdfas.student.patch_size",
                f"feature distillation compares token Gram matrices, so teacher and student need the "
                f"same patches; got {k.teacher.patch_size} and {k.student.patch_size}.")
        require(k.num_stages >= 1 and k.teacher.depth % k.num_stages == 0
                and k.student.depth % k.num_stages == 0, "kdfas.num_stages",
                f"must divide both depths (teacher {k.teacher.depth}, student {k.student.depth}) so the "
                f"stages pair evenly, got {k.num_stages}.")
        require(k.lambda_feature > 0, "kdfas.lambda_feature", f"must be > 0, got {k.lambda_feature}.")
    if k.use_decision_kd:
        require(k.temperature > 0, "kdfas.temperature", f"must be > 0, got {k.temperature}.")
        require(k.lambda_decision > 0, "kdfas.lambda_decision", f"must be > 0, got {k.lambda_decision}.")
    require(k.teacher_num_steps >= 1, "kdfas.teacher_num_steps", f"must be >= 1, got {k.teacher_num_steps}.")
    if k.pretrain_on_faces:
        require_settings(k, "face_pretraining", "kdfas.face_pretraining", check_face_pretraining,
                         "pretrain_on_faces needs the pre-training settings (set them with "
                         "dtda_jax.methods.kdfas.config.use_face_pretraining).")
    for name in ("teacher_optim", "student_optim"):
        o = k[name]
        require(o.learning_rate > 0 and o.weight_decay >= 0, f"kdfas.{name}",
                "learning_rate must be > 0 and weight_decay >= 0.")
        require(o.schedule in LR_SCHEDULES, f"kdfas.{name}.schedule",
                f"must be one of {LR_SCHEDULES}, got {o.schedule!r}.")
