"""Settings of the own teachers' training (:mod:`dtda_jax.teachers.training`) and of the face
pre-training of students' backbones (:mod:`dtda_jax.teachers.pretraining`), importable without
jax: the methods' configs embed :func:`default_teacher_training_config` /
:func:`face_pretraining_config` and their validation calls :func:`check_teacher_training_settings`
/ :func:`check_face_pretraining` before anything starts.
"""

from __future__ import annotations

import math

import ml_collections

from dtda_jax.config.common import OPTIMIZERS

TEACHER_NAMES = ("fr", "fa")
FR_STEPS_CAPTURE_DIVERSE = 800


def default_teacher_training_config() -> ml_collections.ConfigDict:
    """Settings sized for the CPU demo teachers (r18 width 32 / StarGAN D conv_dim 32, 64 px).

    Corpus + both teachers + evaluation take a few minutes on 2 CPU cores (see
    :mod:`dtda_jax.teachers.training`). ``corpus.image_size = 0`` renders the corpus at the
    config's ``data.image_size``: the size of the student's images, which the teachers then
    resize exactly as in distillation.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0  # network init, batch order, augmentation
    # Identities (ArcFace classes / held-out evaluation people) and images per identity: one
    # frame per video, since separate videos (sessions) vary background, camera and light.
    # Many identities matter most: with 96 instead of 192 the attribute teacher learns the
    # training people's male/young labels by heart (held-out accuracy 0.66/0.71 vs 0.92/0.83).
    # `capture`: every video through one of the benchmark's four cameras (these defaults), or
    # through its own random capture pipeline (capture_diverse_teacher_training_config).
    c.corpus = ml_collections.ConfigDict(dict(
        image_size=0, seed=0, train_identities=192, heldout_identities=48,
        videos_per_identity=5, frames_per_video=1, capture="benchmark_cameras"))
    c.fr = ml_collections.ConfigDict(dict(
        steps=200, batch_size=32, optimizer="adamw", learning_rate=2e-3, weight_decay=5e-4,
        warmup_steps=20, grad_clip_norm=5.0, arcface_scale=64.0, arcface_margin=0.5,
        flip=True, brightness_jitter=0.1))
    c.fa = ml_collections.ConfigDict(dict(
        steps=200, batch_size=64, optimizer="adamw", learning_rate=1e-3, weight_decay=5e-4,
        warmup_steps=20, grad_clip_norm=5.0, flip=True, brightness_jitter=0.1))
    # Quality report only (not part of the cache name): verification pairs and folds.
    c.eval = ml_collections.ConfigDict(dict(batch_size=64, max_negative_pairs=50_000, folds=10))
    c.log_every = 25
    c.checkpoint_every = 50  # resumable training (not part of the cache name: it changes no weight)
    return c


def capture_diverse_teacher_training_config() -> ml_collections.ConfigDict:
    """Teachers that saw faces the way the paper's did: under every kind of capture. Each
    video of the corpus goes through its own random capture pipeline (colour response, noise,
    blur, resolution, JPEG, illumination; never a benchmark camera, see
    dtda_jax.data.synthetic.domains.random_capture), with more people, and the face
    recognition teacher trains longer: it learns a harder task (FR_STEPS_CAPTURE_DIVERSE)."""
    c = default_teacher_training_config()
    c.corpus.update(dict(train_identities=320, heldout_identities=64, capture="random"))
    c.fr.steps = FR_STEPS_CAPTURE_DIVERSE
    return c


def face_pretraining_config() -> ml_collections.ConfigDict:
    """Settings of a backbone's pre-training on the face corpus (dtda_jax/teachers/pretraining.py:
    KDFAS's ViTs, DTDA's ResNet-18 encoder), sized for the built-in configs on a 2-core CPU.

    The corpus is the capture-diverse own teachers' (320 + 64 people, 5 videos each, every
    video through its own random capture pipeline): what the networks learn there is about faces,
    not about the benchmark's cameras. Loss: ArcFace over the train identities on the class
    token / pooled features (scale `arcface_scale`, margin `arcface_margin`) +
    `attribute_weight` x binary cross-entropy of the five attributes through a linear head.
    AdamW with decay on kernels only, warm-up then cosine; flips and a brightness gain as the
    own teachers'."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.corpus = capture_diverse_teacher_training_config().corpus
    c.steps = 1500
    c.batch_size = 64
    c.learning_rate = 1e-3
    c.weight_decay = 0.05
    c.warmup_steps = 100
    c.grad_clip_norm = 1.0
    c.arcface_scale = 32.0
    c.arcface_margin = 0.3
    c.attribute_weight = 1.0
    c.flip = True
    c.brightness_jitter = 0.1
    # Quality report only (not part of the cache name): verification pairs and folds.
    c.eval = ml_collections.ConfigDict(dict(batch_size=128, max_negative_pairs=50_000, folds=10))
    c.log_every = 50
    c.checkpoint_every = 100  # resumable pre-training (not part of the cache name)
    return c


def check_teacher_training_settings(s: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming every invalid field (``fr.steps`` etc.) and what it allows."""
    from dtda_jax.data.synthetic.face_corpus import CorpusSettings  # numpy only

    problems = []
    for name in TEACHER_NAMES:
        t = s[name]
        if t.steps < 1 or t.batch_size < 2:
            problems.append(f"{name}.steps must be >= 1 and {name}.batch_size >= 2 (BatchNorm "
                            f"needs a batch), got {t.steps} and {t.batch_size}")
        if t.optimizer not in OPTIMIZERS:
            problems.append(f"{name}.optimizer must be one of {OPTIMIZERS}, got {t.optimizer!r}")
        if not t.learning_rate > 0 or t.weight_decay < 0 or t.warmup_steps < 0 or t.grad_clip_norm < 0:
            problems.append(f"{name}.learning_rate must be > 0; weight_decay, warmup_steps and "
                            "grad_clip_norm >= 0")
        if not 0 <= t.brightness_jitter < 1:
            problems.append(f"{name}.brightness_jitter must be in [0, 1), got {t.brightness_jitter}")
    if not s.fr.arcface_scale > 0 or not 0 <= s.fr.arcface_margin < math.pi / 2:
        problems.append("fr.arcface_scale must be > 0 and fr.arcface_margin in [0, pi/2), got "
                        f"{s.fr.arcface_scale} and {s.fr.arcface_margin}")
    if s.eval.folds < 2 or s.eval.batch_size < 1 or s.eval.max_negative_pairs < 1:
        problems.append("eval.folds must be >= 2; eval.batch_size and eval.max_negative_pairs >= 1")
    if s.log_every < 1 or s.checkpoint_every < 1:
        problems.append(f"log_every and checkpoint_every must be >= 1, got {s.log_every} and "
                        f"{s.checkpoint_every}")
    corpus = dict(s.corpus)
    if corpus.get("image_size", 0) < 0:
        problems.append(f"corpus.image_size must be 0 (the data's image size) or >= 16, got "
                        f"{corpus['image_size']}")
    try:
        CorpusSettings(**{**corpus, "image_size": corpus.get("image_size") or 64})
    except ValueError as err:
        problems.append("corpus: " + str(err).removeprefix("Invalid face corpus settings: ").rstrip("."))
    except TypeError as err:
        problems.append(f"corpus: {err}")
    if problems:
        raise ValueError("Invalid teacher training settings: " + "; ".join(problems) + ".")


def check_face_pretraining(s: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming every invalid field of face pre-training settings."""
    from dtda_jax.data.synthetic.face_corpus import CorpusSettings  # numpy only

    problems = []
    if s.steps < 1 or s.batch_size < 2:
        problems.append(f"steps must be >= 1 and batch_size >= 2, got {s.steps} and {s.batch_size}")
    if not s.learning_rate > 0 or s.weight_decay < 0 or s.warmup_steps < 0 or s.grad_clip_norm < 0:
        problems.append("learning_rate must be > 0; weight_decay, warmup_steps and grad_clip_norm >= 0")
    if not s.arcface_scale > 0 or not 0 <= s.arcface_margin < math.pi / 2:
        problems.append(f"arcface_scale must be > 0 and arcface_margin in [0, pi/2), got {s.arcface_scale} "
                        f"and {s.arcface_margin}")
    if s.attribute_weight < 0 or not 0 <= s.brightness_jitter < 1:
        problems.append("attribute_weight must be >= 0 and brightness_jitter in [0, 1)")
    if s.eval.folds < 2 or s.eval.batch_size < 1 or s.eval.max_negative_pairs < 1:
        problems.append("eval.folds must be >= 2; eval.batch_size and eval.max_negative_pairs >= 1")
    if s.log_every < 1 or s.checkpoint_every < 1:
        problems.append("log_every and checkpoint_every must be >= 1")
    corpus = dict(s.corpus)
    if corpus.get("image_size", 0) != 0:
        problems.append("corpus.image_size must be 0: the corpus is rendered at data.image_size, the size "
                        f"the pre-trained network is for; got {corpus.get('image_size')}")
    try:
        CorpusSettings(**{**corpus, "image_size": 64})
    except ValueError as err:
        problems.append("corpus: " + str(err).removeprefix("Invalid face corpus settings: ").rstrip("."))
    except TypeError as err:
        problems.append(f"corpus: {err}")
    if problems:
        raise ValueError("; ".join(problems) + ".")
