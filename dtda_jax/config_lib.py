"""Default configuration (DTDA, and KDFAS as the second method), the ablation variants, and
config validation.

Protocol files in `configs/` start from `base_config()` and override a few fields, so a
reader sees in one place what a protocol changes. `validate_config` runs before any work
and names the offending field and its allowed values.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from typing import Any

import ml_collections

from dtda_jax.data.render import DOMAINS  # the built-in benchmark's domains
from dtda_jax.teacher_settings import check_teacher_training_settings, default_teacher_training_config

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
PAPER_VARIANTS = ("baseline", "fr", "fa", "fr_fa", "dtda")  # Table II's rows

# KDFAS (method.name = "kdfas", dtda_jax/kdfas.py): its ablation rows. "kd_teacher" reports the
# ViT teacher alone; the others train the student without KD, with one KD term, or with both.
KDFAS_VARIANTS = {
    "kd_teacher": dict(report="teacher", use_decision_kd=False, use_feature_kd=False),
    "kd_student": dict(report="student", use_decision_kd=False, use_feature_kd=False),
    "kd_decision": dict(report="student", use_decision_kd=True, use_feature_kd=False),
    "kd_feature": dict(report="student", use_decision_kd=False, use_feature_kd=True),
    "kdfas": dict(report="student", use_decision_kd=True, use_feature_kd=True),
}
ALL_VARIANTS = (*VARIANTS, *KDFAS_VARIANTS)
METHODS = ("dtda", "kdfas")
KDFAS_REPORTS = ("student", "teacher")

THRESHOLD_POLICIES = ("target_eer", "source_val_eer", "fixed")
SELECTION_POLICIES = ("best_on_target", "last")
VIDEO_REDUCTIONS = ("mean", "median", "first")
LR_SCHEDULES = ("constant", "cosine", "step")
IRESNET_ARCHS = ("r18", "r34", "r50", "r100", "r200")
DATASET_KINDS = ("synthetic_fas", "real_fas")
# Kept in sync with dtda_jax/data (tested); listed here so validating a config imports no
# video or detection code.
REAL_DATASETS = ("oulu_npu", "casia_fasd", "replay_attack", "msu_mfsd", "celeba_spoof")
SPLIT_CONVENTIONS = ("ssdg", "official")
FRAME_POLICIES = ("all", "every_k", "ssdg", "random")
FACE_MODES = ("crop", "align")
CELEBA_SPOOF_PROTOCOLS = ("p1", "p2_low", "p2_middle", "p2_high")


def base_config() -> ml_collections.ConfigDict:
    """The paper's hyper-parameters at 256x256 on the built-in benchmark's domain names."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    # --- data -------------------------------------------------------------------------------
    c.data = d = ml_collections.ConfigDict()
    d.dataset = "synthetic_fas"  # the built-in tfds benchmark (dtda_jax/data/synthetic_fas.py)
    d.data_dir = "data"  # tfds data_dir; the built-in benchmark is generated here on first use
    d.image_size = 256
    d.synthetic_seed = 0  # seed of the generated benchmark (independent of the training seed)
    d.synthetic_overrides = ml_collections.ConfigDict()  # SyntheticFasConfig fields, e.g. sizes
    d.generate_if_missing = True  # build the built-in benchmark on first use (seconds at 64 px)
    d.source_domains = ("studio", "webcam", "phone")
    d.target_domain = "kiosk"
    d.source_splits = ("train",)  # what the student trains on
    d.source_val_splits = ("test",)  # held-out source data: `source_val_eer` threshold policy
    d.target_splits = ("train", "test")  # all frames of the unseen domain are evaluated
    # Exact per-(domain, live/spoof) balance, the SSDG convention: batch = domains * 2 * this.
    d.samples_per_group = 16  # 3 domains * 2 classes * 16 = 96, the paper's batch size
    # Real datasets (data.dataset = "real_fas"): how they were prepared (tools/prepare_fas.py;
    # these settings name the prepared copy) and which official splits a protocol uses.
    d.split_convention = "ssdg"  # "ssdg" (train+test of every dataset, dev held out) | "official"
    d.real = r = ml_collections.ConfigDict()
    r.frame_policy = "ssdg"  # frames 6 and 6+N//2 of each video | all | every_k | random
    r.frame_every_k = 5
    r.frame_num_random = 1
    r.frame_seed = 0
    r.face_mode = "crop"  # MTCNN box + margin, or "align" (5-landmark similarity transform)
    r.face_margin = 0.2
    r.face_min_size = 20  # MTCNN minimum face size in detection pixels
    r.face_detect_max_side = 640  # frames are downscaled to this for detection
    r.face_max_fallback_offset = 15  # no face on a frame: try neighbours up to this far
    r.celeba_spoof_protocol = "p1"  # p1 | p2_low | p2_middle | p2_high
    d.augment_flip = True
    d.augment_crop_padding = 0.0625  # random crop after padding by this fraction of the size
    d.eval_batch_size = 64

    # --- method (Table II variants) ---------------------------------------------------------
    c.method = m = ml_collections.ConfigDict()
    m.name = "dtda"  # "kdfas": the second method (config.kdfas, dtda_jax/kdfas.py)
    m.use_fr_teacher = True
    m.use_fa_teacher = True
    m.use_domain_attack = True
    m.use_grl_domain_head = False  # the "dat" baseline (gradient reversal), see VARIANTS

    # --- student ----------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.width = 64  # ResNet-18 base width (64 = torchvision)
    c.model.dtype = "float32"  # computation dtype: float32 or bfloat16
    c.model.init_checkpoint = ""  # tools/convert_resnet18.py output; empty = random init

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
    # Own teachers: where a *_checkpoint is empty, train that teacher first in JAX on synthetic
    # faces disjoint from the benchmark (dtda_jax/teacher_training.py) and use it; cached in
    # own_teachers_dir ("" = <data.data_dir>/teachers) by architecture and training settings.
    t.own_teachers = False
    t.own_teachers_dir = ""
    t.own_training = default_teacher_training_config()

    # --- losses (Eq. 6-9) -------------------------------------------------------------------
    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_fr = 1.0
    c.loss.lambda_fa = 1.0
    c.loss.temperature = 4.0
    c.loss.scale_kd_by_t2 = True  # Hinton's tau^2 keeps KD gradients comparable across tau
    # "dat" only: weight of the domain head's cross-entropy; the reversed gradient reaching the
    # features ramps up with DANN's schedule 2 / (1 + exp(-10 p)) - 1.
    c.loss.lambda_domain = 0.1

    # --- optimiser (paper: SGD momentum 0.9, weight decay 5e-4, lr 0.1, batch 96) ----------
    c.optim = o = ml_collections.ConfigDict()
    o.learning_rate = 0.1
    o.momentum = 0.9
    o.weight_decay = 5e-4
    o.schedule = "constant"
    o.warmup_steps = 0
    o.step_boundaries = ()  # for schedule="step": lr *= 0.1 at each boundary
    o.grad_clip_norm = 0.0  # 0 = off

    # --- loop -------------------------------------------------------------------------------
    c.train = tr = ml_collections.ConfigDict()
    tr.num_steps = 4000
    tr.log_every = 20
    tr.eval_every = 500
    tr.checkpoint_every = 500

    # --- evaluation -------------------------------------------------------------------------
    c.eval = e = ml_collections.ConfigDict()
    e.video_reduce = "mean"  # per-video score = mean of frame live probabilities
    e.threshold_policy = "target_eer"  # the community's "idealized" convention (paper tables)
    e.fixed_threshold = 0.5
    e.selection = "best_on_target"  # what every DG FAS repo reports; "last" is honest
    e.fpr_targets = (1e-2, 5e-3, 1e-3)

    c.kdfas = kdfas_defaults()  # read only when method.name == "kdfas"
    return c


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


def kdfas_defaults() -> ml_collections.ConfigDict:
    """KDFAS (PRCV 2023; ../shared/paper/kdfas-readme.md): a ViT teacher trained on FAS, then a
    smaller ViT student trained with cross-entropy plus decision-level KL distillation and
    multi-stage feature distillation through token Gram matrices.

    Choices where the KDFAS README is silent (all settings here):
    - Sizes: teacher ViT-L/16 (24 blocks, width 1024, 303.3 M parameters, 1.21 GB in float32)
      and student ViT-B/16 (12 blocks, width 768, 85.8 M, 343 MB = 327 MiB): the standard ViTs
      nearest to the README's "1.28 GB" teacher and "330.8 MB" student.
    - Stages: the blocks are cut into `num_stages` equal stages and the tokens after the last
      block of stage k are paired: teacher block k * depth_t / S with student block
      k * depth_s / S (ViT-L/B, S = 4: blocks 6/12/18/24 with 3/6/9/12). Both depths must be
      divisible by S.
    - Gram matrix: over the patch tokens (the class token is distilled at the decision
      level), centred over the tokens and cosine-normalised (losses.token_gram); the loss is
      the mean squared difference, averaged over the stages. Teacher and student need the
      same patch grid (same patch size).
    - Loss: L = CE + lambda_decision * tau^2 KL(teacher || student at temperature tau)
      + lambda_feature * L_gram, lambda_decision = 1, tau = 4 (as DTDA's KD terms),
      lambda_feature = 10 (the Gram loss is O(0.01-0.1) where CE and KL are O(0.1-1)).
    - Optimiser: AdamW (lr warm-up then cosine, weight decay 0.05, clip 1.0), the ViT recipe;
      the teacher trains `teacher_num_steps`, the student `train.num_steps`.
    - The teacher is trained on the protocol's source domains with cross-entropy, evaluated
      like any student, and frozen; its last state is distilled (not the best-on-target one).
      Both ViTs start from random weights unless `init_checkpoint` names a converted timm
      ViT (tools/convert_vit.py), e.g. ImageNet ViT-L/16 and ViT-B/16.
    """
    k = ml_collections.ConfigDict()
    k.teacher = vit_config(16, 1024, 24, 16)  # ViT-L/16
    k.student = vit_config(16, 768, 12, 12)  # ViT-B/16
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
    return k




def synthetic_demo_config(target_domain: str, variant: str = "dtda") -> ml_collections.ConfigDict:
    """Leave-one-domain-out on the built-in benchmark, sized for a laptop CPU.

    The analogue of the paper's Protocol I: train on three domains, test on the fourth.
    64x64 images, batch 3 domains x 2 classes x 8 = 48, the student's ResNet-18 at full width,
    teachers at a reduced input size. The teachers are the project's own (teachers.own_teachers):
    trained first on synthetic faces of other identities, cached in data/teachers; with
    own_teachers=False and no converted checkpoint they are random networks (the run says so
    loudly) and the distillation terms act as a fixed random-feature regulariser.
    """
    if target_domain not in DOMAINS:
        raise ValueError(f"Unknown target domain {target_domain!r}; the built-in benchmark has "
                         f"{DOMAINS}.")
    c = base_config()
    apply_variant(c, variant or "dtda")
    c.data.source_domains = tuple(d for d in DOMAINS if d != target_domain)
    c.data.target_domain = target_domain
    c.data.image_size = 64
    c.data.samples_per_group = 8
    c.data.eval_batch_size = 128
    c.domain_classifier.width = 16
    c.domain_classifier.num_steps = 60
    c.domain_classifier.learning_rate = 0.05
    # The benchmark's resolution at half width keeps the teachers affordable on a CPU.
    # Converted real teachers run at 112 / 128 (their training resolutions).
    c.teachers.own_teachers = True
    c.teachers.fr_arch = "r18"
    c.teachers.fr_width = 32
    c.teachers.fr_input_size = 64
    c.teachers.fa_image_size = 64
    c.teachers.fa_conv_dim = 32
    c.teachers.fa_repeat_num = 5
    c.optim.learning_rate = 0.02
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 20
    c.train.num_steps = 400
    c.train.log_every = 20
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    return c


def kdfas_demo_config(target_domain: str, variant: str = "kdfas") -> ml_collections.ConfigDict:
    """KDFAS on the built-in benchmark, leave-one-domain-out, sized for a laptop CPU.

    Data and evaluation as `synthetic_demo_config` (64 px, batch 48, 400 steps). ViTs at
    patch 8 (an 8 x 8 grid of tokens): a 6-block width-128 teacher (1.2 M parameters) and a
    3-block width-96 student (0.36 M), about the ViT-L/ViT-B ratio; 3 stages pair teacher
    blocks 2/4/6 with student blocks 1/2/3.
    """
    c = synthetic_demo_config(target_domain, "baseline")
    use_kdfas(c, variant)
    k = c.kdfas
    k.teacher = vit_config(8, 128, 6, 4)
    k.student = vit_config(8, 96, 3, 3)
    k.num_stages = 3
    k.teacher_num_steps = 400
    k.teacher_optim = adamw_config(1e-3, 40)
    k.student_optim = adamw_config(1e-3, 40)
    return c


def kdfas_protocol_config(sources: tuple[str, ...], target: str,
                          variant: str = "kdfas") -> ml_collections.ConfigDict:
    """KDFAS on prepared real datasets: the data settings of `real_protocol_config` (batch 96,
    SSDG splits) at 224 x 224, the native size of ViT-L/16 and ViT-B/16 (14 x 14 patches)."""
    c = real_protocol_config(sources, target, "baseline", released_weights=False)
    use_kdfas(c, variant)
    c.data.image_size = 224
    return c


def use_kdfas(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Switches a config to KDFAS at one of its ablation variants (KDFAS_VARIANTS); DTDA's
    teachers, attack and domain head are off."""
    if variant not in KDFAS_VARIANTS:
        raise ValueError(f"Unknown KDFAS variant {variant!r}; choose one of {sorted(KDFAS_VARIANTS)} "
                         f"(DTDA's {sorted(VARIANTS)} belong to the DTDA configs).")
    apply_variant(config, "baseline")
    config.method.name = "kdfas"
    config.teachers.own_teachers = False
    for key, value in KDFAS_VARIANTS[variant].items():
        config.kdfas[key] = value
    return config


# The paper's protocols (Section IV-A): sources -> target, as dataset names of layouts.py.
PAPER_PROTOCOLS = {
    "oci_to_m": (("oulu_npu", "casia_fasd", "replay_attack"), "msu_mfsd"),
    "omi_to_c": (("oulu_npu", "msu_mfsd", "replay_attack"), "casia_fasd"),
    "ocm_to_i": (("oulu_npu", "casia_fasd", "msu_mfsd"), "replay_attack"),
    "icm_to_o": (("replay_attack", "casia_fasd", "msu_mfsd"), "oulu_npu"),
    "mi_to_c": (("msu_mfsd", "replay_attack"), "casia_fasd"),
    "mi_to_o": (("msu_mfsd", "replay_attack"), "oulu_npu"),
}


def real_protocol_config(sources: tuple[str, ...], target: str, variant: str = "dtda",
                         released_weights: bool = True) -> ml_collections.ConfigDict:
    """A protocol on prepared real datasets at the paper's settings (256x256, batch 96, SGD 0.1).

    Batches stay at 96 frames: 16 per (domain, class) with three sources, 24 with two, 48 for
    the one-domain CelebA-Spoof protocols (where the attack is off: there is one domain).
    `released_weights` points teachers and ImageNet initialisation at the converted released
    checkpoints (README, "Real teachers and ImageNet initialisation").
    """
    c = base_config()
    apply_variant(c, variant or "dtda")
    d = c.data
    d.dataset = "real_fas"
    d.source_domains, d.target_domain = tuple(sources), target
    d.samples_per_group = 96 // (2 * len(sources))
    if target in sources:  # intra-dataset (CelebA-Spoof): one domain, nothing to align
        c.method.use_domain_attack = c.method.use_grl_domain_head = False
        d.split_convention = "official"
    if released_weights:
        use_released_weights(c)
    return c


# Where the README's conversion commands write (tools/convert_*.py --out ...).
RELEASED_WEIGHTS = {
    "fr": "pretrained/arcface_r50",  # arcface_torch ms1mv3_arcface_r50_fp16/backbone.pth
    "fa": "pretrained/stargan_celeba_128",  # StarGAN celeba 128x128, 200000-D.ckpt
    "imagenet": "pretrained/resnet18_imagenet",  # torchvision resnet18 ImageNet weights
}


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


def with_defaults(saved: dict, defaults: dict | None = None) -> dict:
    """A recorded config (config.json) plus every field it lacks from `defaults` (base_config):
    a run recorded before a field existed still loads and resumes (new fields default to the
    behaviour that came before them)."""
    defaults = base_config().to_dict() if defaults is None else defaults
    merged = dict(defaults)
    for key, value in saved.items():
        nested = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        merged[key] = with_defaults(value, defaults[key]) if nested else value
    return merged


def parse_assignment(assignment: str, example: str = "train.num_steps=200") -> tuple[str, Any]:
    """"train.num_steps=200" -> ("train.num_steps", 200): the value read as a Python literal,
    or kept as text when it is not one (a bare word such as cosine)."""
    field, sep, text = assignment.partition("=")
    if not sep or not field.strip():
        raise ValueError(f"--set {assignment!r}: expected FIELD=VALUE, e.g. {example}.")
    try:
        return field.strip(), ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return field.strip(), text.strip()


def set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    """`config.<field> = value` for a dotted field such as "train.num_steps". KeyError when the
    config has no such field (the caller names it); ValueError when the value's type does
    not fit the field."""
    *parents, key = field.split(".")
    node = config
    for part in parents:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(field)
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        raise KeyError(field)
    try:
        node[key] = value
    except TypeError as err:
        raise ValueError(f"{field}: {err}") from None


def load_config_file(path: str, *args: str) -> ml_collections.ConfigDict:
    """`get_config(*args)` of a config file such as configs/synthetic.py (as --config=path:arg)."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    if spec is None or not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Sets the method switches of one of the paper's ablation variants (Table II)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    for key, value in VARIANTS[variant].items():
        config.method[key] = value
    return config


def variant_name(config: ml_collections.ConfigDict) -> str:
    """Name of the Table II (or KDFAS) variant the switches select, or 'custom'."""
    if config.method.name == "kdfas":
        chosen = {k: config.kdfas[k] for k in KDFAS_VARIANTS["kdfas"]}
        return next((n for n, preset in KDFAS_VARIANTS.items() if preset == chosen), "custom")
    switches = {k: bool(config.method[k]) for k in VARIANTS["dtda"]}
    for name, preset in VARIANTS.items():
        if preset == switches:
            return name
    return "custom"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field and the fix."""


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config.{field}: {message}")


def validate_config(c: ml_collections.ConfigDict) -> None:
    """Checks every value the run depends on before any work starts."""
    d = c.data
    _require(c.method.name in METHODS, "method.name", f"must be one of {METHODS}, got {c.method.name!r}.")
    if c.method.name == "kdfas":
        _validate_kdfas(c)
    else:
        _require(d.image_size >= 32 and d.image_size % 32 == 0, "data.image_size",
                 f"must be a multiple of 32 and >= 32 (ResNet-18 downsamples 32x), got {d.image_size}.")
    _require(len(d.source_domains) >= 1, "data.source_domains", "needs at least one domain.")
    _require(len(set(d.source_domains)) == len(d.source_domains), "data.source_domains",
             f"has duplicates: {tuple(d.source_domains)}.")
    _require(d.dataset in DATASET_KINDS, "data.dataset", f"must be one of {DATASET_KINDS}, got {d.dataset!r}.")
    if d.dataset == "real_fas":
        _validate_real_data(c)
    else:
        _require(d.target_domain not in d.source_domains, "data.target_domain",
                 f"{d.target_domain!r} is also a source domain; a cross-domain protocol holds it out.")
    _require(d.samples_per_group >= 1, "data.samples_per_group", f"must be >= 1, got {d.samples_per_group}.")
    _require(d.eval_batch_size >= 1, "data.eval_batch_size", f"must be >= 1, got {d.eval_batch_size}.")
    _require(0.0 <= d.augment_crop_padding < 0.5, "data.augment_crop_padding",
             f"must be in [0, 0.5), got {d.augment_crop_padding}.")
    _require(len(d.source_splits) > 0 and len(d.target_splits) > 0, "data.source_splits/target_splits",
             "must name at least one split each.")
    _require(c.model.dtype in ("float32", "bfloat16"), "model.dtype",
             f"must be 'float32' or 'bfloat16', got {c.model.dtype!r}.")
    _require(c.model.width >= 1 and c.domain_classifier.width >= 1, "model.width", "must be >= 1.")
    if c.method.use_domain_attack:
        _require(len(d.source_domains) >= 2, "method.use_domain_attack",
                 "the domain adversarial attack needs >= 2 source domains (one-domain protocols such "
                 "as CelebA-Spoof run with use_domain_attack=False).")
        _require(c.attack.epsilon > 0, "attack.epsilon", f"must be > 0 (0..255 units), got {c.attack.epsilon}.")
        _require(c.attack.num_steps >= 1, "attack.num_steps", f"must be >= 1, got {c.attack.num_steps}.")
        _require(c.attack.step_size > 0, "attack.step_size", f"must be > 0, got {c.attack.step_size}.")
        _require(c.domain_classifier.num_steps >= 1, "domain_classifier.num_steps",
                 "must be >= 1 when the attack is on (the attack needs a trained classifier).")
    if c.method.use_grl_domain_head:
        _require(len(d.source_domains) >= 2, "method.use_grl_domain_head",
                 "domain-adversarial training needs >= 2 source domains.")
        _require(c.loss.lambda_domain > 0, "loss.lambda_domain", f"must be > 0, got {c.loss.lambda_domain}.")
    _require(c.teachers.fr_arch in IRESNET_ARCHS, "teachers.fr_arch",
             f"must be one of {IRESNET_ARCHS}, got {c.teachers.fr_arch!r}.")
    _require(c.teachers.fr_input_size % 16 == 0, "teachers.fr_input_size",
             f"must be a multiple of 16 (IResNet downsamples 16x), got {c.teachers.fr_input_size}.")
    fa_stride = 2 ** c.teachers.fa_repeat_num
    _require(c.teachers.fa_image_size % fa_stride == 0, "teachers.fa_image_size",
             f"must be divisible by 2**fa_repeat_num = {fa_stride}, got {c.teachers.fa_image_size}.")
    if c.teachers.own_teachers:
        try:
            check_teacher_training_settings(c.teachers.own_training)
        except ValueError as err:
            raise ConfigError(f"config.teachers.own_training: {err}") from None
    _require(c.loss.temperature > 0, "loss.temperature", f"must be > 0, got {c.loss.temperature}.")
    _require(c.loss.lambda_fr >= 0 and c.loss.lambda_fa >= 0, "loss.lambda_fr/lambda_fa", "must be >= 0.")
    _require(c.optim.learning_rate > 0, "optim.learning_rate", f"must be > 0, got {c.optim.learning_rate}.")
    _require(0 <= c.optim.momentum < 1, "optim.momentum", f"must be in [0, 1), got {c.optim.momentum}.")
    _require(c.optim.schedule in LR_SCHEDULES, "optim.schedule",
             f"must be one of {LR_SCHEDULES}, got {c.optim.schedule!r}.")
    _require(c.train.num_steps >= 1, "train.num_steps", f"must be >= 1, got {c.train.num_steps}.")
    for name in ("log_every", "eval_every", "checkpoint_every"):
        _require(c.train[name] >= 1, f"train.{name}", f"must be >= 1, got {c.train[name]}.")
    _require(c.eval.threshold_policy in THRESHOLD_POLICIES, "eval.threshold_policy",
             f"must be one of {THRESHOLD_POLICIES}, got {c.eval.threshold_policy!r}.")
    _require(c.eval.selection in SELECTION_POLICIES, "eval.selection",
             f"must be one of {SELECTION_POLICIES}, got {c.eval.selection!r}.")
    _require(c.eval.video_reduce in VIDEO_REDUCTIONS, "eval.video_reduce",
             f"must be one of {VIDEO_REDUCTIONS}, got {c.eval.video_reduce!r}.")
    if c.eval.threshold_policy == "source_val_eer":
        _require(len(d.source_val_splits) > 0, "data.source_val_splits",
                 "threshold_policy='source_val_eer' needs held-out source splits.")


def _validate_real_data(c: ml_collections.ConfigDict) -> None:
    d, r = c.data, c.data.real
    names = (*d.source_domains, d.target_domain)
    unknown = [n for n in names if n not in REAL_DATASETS]
    _require(not unknown, "data.source_domains/target_domain",
             f"unknown dataset(s) {unknown}; real datasets are {REAL_DATASETS}.")
    intra = d.target_domain in d.source_domains
    _require(not intra or tuple(d.source_domains) == (d.target_domain,), "data.target_domain",
             f"{d.target_domain!r} is also a source domain; only a one-dataset protocol (CelebA-Spoof "
             "train -> test) may train and test on the same dataset.")
    _require(("celeba_spoof" not in names) or intra, "data.source_domains",
             "CelebA-Spoof is an intra-dataset benchmark here (protocols p1 / p2_*); it is not mixed "
             "with the video datasets.")
    _require(not (intra and c.eval.threshold_policy == "source_val_eer"), "eval.threshold_policy",
             "'source_val_eer' needs held-out source data, which an intra-dataset protocol does not "
             "have (its held-out split is the test set); use 'target_eer' or 'fixed'.")
    _require(d.split_convention in SPLIT_CONVENTIONS, "data.split_convention",
             f"must be one of {SPLIT_CONVENTIONS}, got {d.split_convention!r}.")
    _require(r.frame_policy in FRAME_POLICIES, "data.real.frame_policy",
             f"must be one of {FRAME_POLICIES}, got {r.frame_policy!r}.")
    _require(r.frame_every_k >= 1 and r.frame_num_random >= 1, "data.real.frame_every_k/frame_num_random",
             "must be >= 1.")
    _require(r.face_mode in FACE_MODES, "data.real.face_mode", f"must be one of {FACE_MODES}, got {r.face_mode!r}.")
    _require(0 <= r.face_margin < 2, "data.real.face_margin", f"must be in [0, 2), got {r.face_margin}.")
    _require(r.face_min_size >= 12 and r.face_detect_max_side >= 64 and r.face_max_fallback_offset >= 0,
             "data.real.face_min_size/face_detect_max_side/face_max_fallback_offset",
             "must be >= 12, >= 64 and >= 0.")
    _require(r.celeba_spoof_protocol in CELEBA_SPOOF_PROTOCOLS, "data.real.celeba_spoof_protocol",
             f"must be one of {CELEBA_SPOOF_PROTOCOLS}, got {r.celeba_spoof_protocol!r}.")


def _validate_kdfas(c: ml_collections.ConfigDict) -> None:
    k = c.kdfas
    for role in ("teacher", "student"):
        v = k[role]
        _require(min(v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim) >= 1, f"kdfas.{role}",
                 f"patch_size, width, depth, num_heads and mlp_dim must be >= 1, got {v.to_dict()}.")
        _require(v.width % v.num_heads == 0, f"kdfas.{role}.num_heads",
                 f"the width {v.width} must be divisible by the number of heads {v.num_heads}.")
        _require(c.data.image_size % v.patch_size == 0, "data.image_size",
                 f"must be a multiple of kdfas.{role}.patch_size = {v.patch_size}, got {c.data.image_size}.")
    _require(k.report in KDFAS_REPORTS, "kdfas.report", f"must be one of {KDFAS_REPORTS}, got {k.report!r}.")
    if k.use_feature_kd:
        _require(k.teacher.patch_size == k.student.patch_size, "kdfas.student.patch_size",
                 f"feature distillation compares token Gram matrices, so teacher and student need the "
                 f"same patches; got {k.teacher.patch_size} and {k.student.patch_size}.")
        _require(k.num_stages >= 1 and k.teacher.depth % k.num_stages == 0
                 and k.student.depth % k.num_stages == 0, "kdfas.num_stages",
                 f"must divide both depths (teacher {k.teacher.depth}, student {k.student.depth}) so the "
                 f"stages pair evenly, got {k.num_stages}.")
        _require(k.lambda_feature > 0, "kdfas.lambda_feature", f"must be > 0, got {k.lambda_feature}.")
    if k.use_decision_kd:
        _require(k.temperature > 0, "kdfas.temperature", f"must be > 0, got {k.temperature}.")
        _require(k.lambda_decision > 0, "kdfas.lambda_decision", f"must be > 0, got {k.lambda_decision}.")
    _require(k.teacher_num_steps >= 1, "kdfas.teacher_num_steps", f"must be >= 1, got {k.teacher_num_steps}.")
    for name in ("teacher_optim", "student_optim"):
        o = k[name]
        _require(o.learning_rate > 0 and o.weight_decay >= 0, f"kdfas.{name}",
                 "learning_rate must be > 0 and weight_decay >= 0.")
        _require(o.schedule in LR_SCHEDULES, f"kdfas.{name}.schedule",
                 f"must be one of {LR_SCHEDULES}, got {o.schedule!r}.")
    _require(not (c.method.use_fr_teacher or c.method.use_fa_teacher or c.method.use_domain_attack
                  or c.method.use_grl_domain_head), "method",
             "DTDA's switches (use_fr_teacher, use_fa_teacher, use_domain_attack, use_grl_domain_head) "
             "must be off in a KDFAS run; start from config_lib.use_kdfas.")
