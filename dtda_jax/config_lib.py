"""Default DTDA configuration, the ablation variants, and config validation.

Protocol files in `configs/` start from `base_config()` and override a few fields, so a
reader sees in one place what a protocol changes. `validate_config` runs before any work
and names the offending field and its allowed values.
"""

from __future__ import annotations

import ml_collections

from dtda_jax.data.render import DOMAINS  # the built-in benchmark's domains

# The paper's five ablation variants (Table II): which teachers distil and whether the
# student and teachers see domain-adversarial images.
VARIANTS = {
    "baseline": dict(use_fr_teacher=False, use_fa_teacher=False, use_domain_attack=False),
    "fr": dict(use_fr_teacher=True, use_fa_teacher=False, use_domain_attack=False),
    "fa": dict(use_fr_teacher=False, use_fa_teacher=True, use_domain_attack=False),
    "fr_fa": dict(use_fr_teacher=True, use_fa_teacher=True, use_domain_attack=False),
    "dtda": dict(use_fr_teacher=True, use_fa_teacher=True, use_domain_attack=True),
}

THRESHOLD_POLICIES = ("target_eer", "source_val_eer", "fixed")
SELECTION_POLICIES = ("best_on_target", "last")
VIDEO_REDUCTIONS = ("mean", "median", "first")
LR_SCHEDULES = ("constant", "cosine", "step")
IRESNET_ARCHS = ("r18", "r34", "r50", "r100", "r200")


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
    d.augment_flip = True
    d.augment_crop_padding = 0.0625  # random crop after padding by this fraction of the size
    d.eval_batch_size = 64

    # --- method (Table II variants) ---------------------------------------------------------
    c.method = m = ml_collections.ConfigDict()
    m.use_fr_teacher = True
    m.use_fa_teacher = True
    m.use_domain_attack = True

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

    # --- losses (Eq. 6-9) -------------------------------------------------------------------
    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_fr = 1.0
    c.loss.lambda_fa = 1.0
    c.loss.temperature = 4.0
    c.loss.scale_kd_by_t2 = True  # Hinton's tau^2 keeps KD gradients comparable across tau

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
    return c




def synthetic_demo_config(target_domain: str, variant: str = "dtda") -> ml_collections.ConfigDict:
    """Leave-one-domain-out on the built-in benchmark, sized for a laptop CPU.

    The analogue of the paper's Protocol I: train on three domains, test on the fourth.
    64x64 images, batch 3 domains x 2 classes x 8 = 48, the student's ResNet-18 at full width,
    teachers at a reduced input size. Teachers are random unless converted checkpoints are
    configured (the run says so loudly); with random teachers the distillation terms act as a
    fixed random-feature regulariser, not as face priors.
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
    # Random teachers have no trained input size; 64 px at half width keeps them affordable on
    # a CPU. Converted real teachers run at 112 / 128 (their training resolutions).
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


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Sets the method switches of one of the paper's ablation variants (Table II)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    for key, value in VARIANTS[variant].items():
        config.method[key] = value
    return config


def variant_name(config: ml_collections.ConfigDict) -> str:
    """Name of the Table II variant the switches select, or 'custom'."""
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
    _require(d.image_size >= 32 and d.image_size % 32 == 0, "data.image_size",
             f"must be a multiple of 32 and >= 32 (ResNet-18 downsamples 32x), got {d.image_size}.")
    _require(len(d.source_domains) >= 1, "data.source_domains", "needs at least one domain.")
    _require(len(set(d.source_domains)) == len(d.source_domains), "data.source_domains",
             f"has duplicates: {tuple(d.source_domains)}.")
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
    _require(c.teachers.fr_arch in IRESNET_ARCHS, "teachers.fr_arch",
             f"must be one of {IRESNET_ARCHS}, got {c.teachers.fr_arch!r}.")
    _require(c.teachers.fr_input_size % 16 == 0, "teachers.fr_input_size",
             f"must be a multiple of 16 (IResNet downsamples 16x), got {c.teachers.fr_input_size}.")
    fa_stride = 2 ** c.teachers.fa_repeat_num
    _require(c.teachers.fa_image_size % fa_stride == 0, "teachers.fa_image_size",
             f"must be divisible by 2**fa_repeat_num = {fa_stride}, got {c.teachers.fa_image_size}.")
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
