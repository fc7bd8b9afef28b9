"""DTDA's config sections, its ablation variants (the paper's Table II plus "dat") and their
validation. Imports no jax.

Sections besides the shared ones (dtda_jax/config/common.py): `method` (the variant's
switches), `model` (the ResNet-18 student), `domain_classifier` (Eq. 1), `attack` (Eq. 2),
`teachers` (the frozen T_fr and T_fa, or the project's own trained ones), `loss` (Eq. 6-9) and
`optim` (the student's SGD). The defaults are the paper's hyper-parameters (SGD momentum 0.9,
weight decay 5e-4, lr 0.1, batch 96, 256 x 256, eps 4/255, tau 4).
"""

from __future__ import annotations

import json

import ml_collections

from dtda_jax.config.common import LR_SCHEDULES, common_config, require, require_settings, with_defaults
from dtda_jax.teachers.settings import (check_face_pretraining, check_teacher_training_settings,
                                        default_teacher_training_config, face_pretraining_config)

NAME = "dtda"

# The paper's five ablation variants (Table II): which teachers distil and whether the
# student and teachers see domain-adversarial images; plus "dat", the domain-adversarial
# training the paper's Fig. 1a sets DAA against: both teachers, and a gradient-reversal
# domain head on the student's features instead of the attack on its inputs.
_NO_GRL = dict(use_grl_domain_head=False)
VARIANTS = {
    "baseline": dict(use_fr_teacher=False, use_fa_teacher=False, use_domain_attack=False, **_NO_GRL),
    "fr": dict(use_fr_teacher=True, use_fa_teacher=False, use_domain_attack=False, **_NO_GRL),
    "fa": dict(use_fr_teacher=False, use_fa_teacher=True, use_domain_attack=False, **_NO_GRL),
    "fr_fa": dict(use_fr_teacher=True, use_fa_teacher=True, use_domain_attack=False, **_NO_GRL),
    "dtda": dict(use_fr_teacher=True, use_fa_teacher=True, use_domain_attack=True, **_NO_GRL),
    "dat": dict(use_fr_teacher=True, use_fa_teacher=True, use_domain_attack=False,
                use_grl_domain_head=True),
}
BASELINE_VARIANT = "baseline"  # what the sweep tables compare every other variant with
DEFAULT_VARIANT = "dtda"
SWITCHES = "method"  # the section that holds the variants' switches
VARIANT_LABEL = "variant"  # as error messages call them
PAPER_VARIANTS = ("baseline", "fr", "fa", "fr_fa", "dtda")  # Table II's rows
IRESNET_ARCHS = ("r18", "r34", "r50", "r100", "r200")
# A config may leave these out: the own teachers' training settings exist only in configs
# that train their own teachers (use_own_teachers), the encoder's face pre-training settings
# only in configs that pre-train it (use_face_pretraining).
OPTIONAL_FIELDS = ("teachers.own_training", "model.face_pretraining")

# Where the README's conversion commands write (tools/convert_*.py --out ...).
RELEASED_WEIGHTS = {
    "fr": "pretrained/arcface_r50",  # arcface_torch ms1mv3_arcface_r50_fp16/backbone.pth
    "fa": "pretrained/stargan_celeba_128",  # StarGAN celeba 128x128, 200000-D.ckpt
    "imagenet": "pretrained/resnet18_imagenet",  # torchvision resnet18 ImageNet weights
}


def default_config() -> ml_collections.ConfigDict:
    """Every DTDA field with its default: the paper's hyper-parameters at 256 x 256."""
    c = common_config(NAME)
    m = c.method
    m.use_fr_teacher = True
    m.use_fa_teacher = True
    m.use_domain_attack = True
    m.use_grl_domain_head = False  # the "dat" baseline (gradient reversal), see VARIANTS

    # --- student ----------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.width = 64  # ResNet-18 base width (64 = torchvision)
    c.model.dtype = "float32"  # computation dtype: float32 or bfloat16
    c.model.init_checkpoint = ""  # tools/convert_resnet18.py output; empty = random init
    # Or (use_face_pretraining), with an empty init_checkpoint: the encoder pre-trained on the
    # synthetic face corpus (dtda_jax/teachers/pretraining.py), cached in pretrained_dir
    # ("" = <data.data_dir>/face_pretrained).
    c.model.pretrain_on_faces = False
    c.model.pretrained_dir = ""

    # --- domain classifier (Eq. 1), trained first on the source domains, then frozen --------
    c.domain_classifier = dc = ml_collections.ConfigDict()
    dc.width = 64
    dc.num_steps = 300
    dc.learning_rate = 0.01
    dc.momentum = 0.9
    dc.weight_decay = 5e-4
    dc.samples_per_group = 16  # per (domain, class), like the student's batches
    dc.init_checkpoint = ""  # converted ImageNet ResNet-18 (needs width 64); empty = random init

    # --- domain adversarial attack (Eq. 2) --------------------------------------------------
    c.attack = a = ml_collections.ConfigDict()
    a.epsilon = 4.0  # L-inf budget in 0..255 pixel units
    a.num_steps = 1  # 1 = the paper's single signed-gradient step; >1 = PGD
    a.step_size = 1.0  # PGD step in 0..255 pixel units (ignored for a single step)
    a.random_start = False  # PGD only: start from a uniform point in the eps-ball

    # --- teachers (frozen, BN in inference mode) --------------------------------------------
    c.teachers = t = ml_collections.ConfigDict()
    t.fr_arch = "r50"
    t.fr_input_size = 112  # ArcFace was trained on 112x112 aligned faces in [-1, 1]
    t.fr_width = 64
    t.fr_checkpoint = ""  # converted arcface_torch backbone; empty = random init (loud warning)
    t.fa_image_size = 128  # StarGAN D was trained on 128x128 CelebA in [-1, 1]
    t.fa_conv_dim = 64
    t.fa_repeat_num = 6
    t.fa_c_dim = 5
    t.fa_checkpoint = ""  # converted 200000-D.ckpt; empty = random init (loud warning)
    # Own teachers (use_own_teachers): where a *_checkpoint is empty, train that teacher first
    # in JAX on synthetic faces disjoint from the benchmark (dtda_jax/teachers/training.py)
    # with the settings `own_training`; cached in own_teachers_dir ("" = <data.data_dir>/teachers)
    # by architecture and training settings.
    t.own_teachers = False
    t.own_teachers_dir = ""

    # --- losses (Eq. 6-9) -------------------------------------------------------------------
    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_fr = 1.0
    c.loss.lambda_fa = 1.0
    c.loss.temperature = 4.0
    c.loss.scale_kd_by_t2 = True  # Hinton's tau^2 keeps KD gradients comparable across tau
    # "dat" only: weight of the domain head's cross-entropy; the reversed gradient reaching the
    # features ramps up with DANN's schedule 2 / (1 + exp(-10 p)) - 1.
    c.loss.lambda_domain = 0.1

    # --- optimiser of the student (paper: SGD momentum 0.9, weight decay 5e-4, lr 0.1) -------
    c.optim = o = ml_collections.ConfigDict()
    o.learning_rate = 0.1
    o.momentum = 0.9
    o.weight_decay = 5e-4
    o.schedule = "constant"
    o.warmup_steps = 0
    o.step_boundaries = ()  # for schedule="step": lr *= 0.1 at each boundary
    o.grad_clip_norm = 0.0  # 0 = off
    return c


def use_own_teachers(c: ml_collections.ConfigDict,
                     training: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Turns on the project's own teachers with their training settings (default:
    dtda_jax.teachers.settings.default_teacher_training_config, sized for the CPU demo)."""
    c.teachers.own_teachers = True
    c.teachers.own_training = training if training is not None else default_teacher_training_config()
    return c


def use_face_pretraining(c: ml_collections.ConfigDict,
                         settings: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Turns on the student encoder's initialisation from its pre-training on the face corpus
    (when `model.init_checkpoint` is empty), with `settings` or face_pretraining_config()."""
    c.model.pretrain_on_faces = True
    c.model.face_pretraining = settings if settings is not None else face_pretraining_config()
    return c


def use_released_weights(c: ml_collections.ConfigDict,
                         paths: dict[str, str] | None = None) -> ml_collections.ConfigDict:
    """Points a config at converted released weights and sets the matching architectures.

    ArcFace r50 at its 112x112 training size, the StarGAN D of the CelebA 128x128 release,
    and ImageNet ResNet-18 initialisation of the student and the domain classifier (both at
    full width 64, which the ImageNet weights need).
    """
    paths = {**RELEASED_WEIGHTS, **(paths or {})}
    t = c.teachers
    t.fr_arch, t.fr_width, t.fr_input_size, t.fr_checkpoint = "r50", 64, 112, paths["fr"]
    t.fa_image_size, t.fa_conv_dim, t.fa_c_dim, t.fa_repeat_num = 128, 64, 5, 6
    t.fa_checkpoint = paths["fa"]
    c.model.width = 64
    c.model.init_checkpoint = paths["imagenet"]
    c.domain_classifier.width = 64
    c.domain_classifier.init_checkpoint = paths["imagenet"]
    return c


def migrate(saved: dict) -> dict:
    """A DTDA config.json of an earlier layout as this code reads it: the own teachers' training
    settings get the fields added since (defaults; the KDFAS section that versions before the
    one-loop redesign recorded is ignored, see dtda_jax/config/records.py)."""
    teachers = saved.get("teachers", {})
    if "own_training" not in teachers:
        return saved
    training = with_defaults(teachers["own_training"], json.loads(default_teacher_training_config().to_json()))
    return {**saved, "teachers": {**teachers, "own_training": training}}


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks DTDA's sections (the shared ones are checked by dtda_jax.config)."""
    d = c.data
    require(d.image_size >= 32 and d.image_size % 32 == 0, "data.image_size",
            f"must be a multiple of 32 and >= 32 (ResNet-18 downsamples 32x), got {d.image_size}.")
    require(c.model.dtype in ("float32", "bfloat16"), "model.dtype",
            f"must be 'float32' or 'bfloat16', got {c.model.dtype!r}.")
    require(c.model.width >= 1 and c.domain_classifier.width >= 1, "model.width", "must be >= 1.")
    if c.method.use_domain_attack:
        require(len(d.source_domains) >= 2, "method.use_domain_attack",
                "the domain adversarial attack needs >= 2 source domains (one-domain protocols such "
                "as CelebA-Spoof run with use_domain_attack=False).")
        require(c.attack.epsilon > 0, "attack.epsilon", f"must be > 0 (0..255 units), got {c.attack.epsilon}.")
        require(c.attack.num_steps >= 1, "attack.num_steps", f"must be >= 1, got {c.attack.num_steps}.")
        require(c.attack.step_size > 0, "attack.step_size", f"must be > 0, got {c.attack.step_size}.")
        require(c.domain_classifier.num_steps >= 1, "domain_classifier.num_steps",
                "must be >= 1 when the attack is on (the attack needs a trained classifier).")
    if c.method.use_grl_domain_head:
        require(len(d.source_domains) >= 2, "method.use_grl_domain_head",
                "domain-adversarial training needs >= 2 source domains.")
        require(c.loss.lambda_domain > 0, "loss.lambda_domain", f"must be > 0, got {c.loss.lambda_domain}.")
    t = c.teachers
    require(t.fr_arch in IRESNET_ARCHS, "teachers.fr_arch",
            f"must be one of {IRESNET_ARCHS}, got {t.fr_arch!r}.")
    require(t.fr_input_size % 16 == 0, "teachers.fr_input_size",
            f"must be a multiple of 16 (IResNet downsamples 16x), got {t.fr_input_size}.")
    fa_stride = 2 ** t.fa_repeat_num
    require(t.fa_image_size % fa_stride == 0, "teachers.fa_image_size",
            f"must be divisible by 2**fa_repeat_num = {fa_stride}, got {t.fa_image_size}.")
    if t.own_teachers:
        require_settings(t, "own_training", "teachers.own_training", check_teacher_training_settings,
                         "is missing: own teachers need their training settings. Start from a config that "
                         "trains its own teachers (configs/synthetic.py, built with "
                         "dtda_jax.methods.dtda.config.use_own_teachers).")
    if c.model.pretrain_on_faces:
        require_settings(c.model, "face_pretraining", "model.face_pretraining", check_face_pretraining,
                         "pretrain_on_faces needs the pre-training settings (set them with "
                         "dtda_jax.methods.dtda.config.use_face_pretraining).")
    require(c.loss.temperature > 0, "loss.temperature", f"must be > 0, got {c.loss.temperature}.")
    require(c.loss.lambda_fr >= 0 and c.loss.lambda_fa >= 0, "loss.lambda_fr/lambda_fa", "must be >= 0.")
    require(c.optim.learning_rate > 0, "optim.learning_rate", f"must be > 0, got {c.optim.learning_rate}.")
    require(0 <= c.optim.momentum < 1, "optim.momentum", f"must be in [0, 1), got {c.optim.momentum}.")
    require(c.optim.schedule in LR_SCHEDULES, "optim.schedule",
            f"must be one of {LR_SCHEDULES}, got {c.optim.schedule!r}.")
