"""Trains the project's own DTDA teachers on synthetic faces that the FAS benchmark never shows.

Without converted PyTorch checkpoints both frozen teachers are random networks, so on the
built-in benchmark distillation transfers no face prior. This module trains them in JAX on
:mod:`dtda_jax.data.synthetic.face_corpus` (live faces whose identities and videos are
disjoint from the benchmark's) and saves them exactly like converted checkpoints
(:func:`dtda_jax.weights.store.save_converted`, same kind, same architecture entries as the
converters write), so ``config.teachers.fr_checkpoint`` / ``fa_checkpoint`` can point at them
and :func:`dtda_jax.teachers.frozen.init_teacher_variables` loads them unchanged.

* T_fr: the config's IResNet (arch / width / input size) + an ArcFace head (additive angular
  margin, :func:`arcface_logits`) over the corpus' train identities; BatchNorm in train mode.
  Only the backbone is saved (``params`` + ``batch_stats``, the structure of ``Teacher.init``).
* T_fa: the config's StarGAN discriminator, binary cross-entropy of its attribute logits against
  the corpus' five attributes. Its PatchGAN real/fake head (``conv1``) gets no loss and is frozen
  at its random init: there are no generated images to train it on, and distillation only uses
  the attribute logits.

Both see their images through :func:`dtda_jax.teachers.frozen.teacher_input` (resize to the teacher's
input size, map to [-1, 1]), i.e. exactly what they are fed during distillation. Quality is
measured on held-out corpus identities, next to the same network at random init (the teacher
a run uses without a checkpoint): face verification (AUC, TAR@FAR, LFW-style 10-fold
best-threshold accuracy) for T_fr, per-attribute accuracy / AUC for T_fa.

Both train through the framework's stage loop (dtda_jax/core/loop.py): checkpoints every
`checkpoint_every` steps in ``<cache>/<name>.training/``, so an interrupted training resumes
where it stopped; the NaN guard; every step's loss in that folder's metrics.jsonl (the
report's history); progress lines.

Entry points: :func:`ensure_trained_teachers` (train what a cache lacks, return checkpoint
paths) and the command line::

    python tools/train_teachers.py --config=configs/synthetic.py --out=pretrained/synthetic_teachers

Measured with the defaults (:func:`dtda_jax.teachers.settings.default_teacher_training_config`)
for the demo teachers (r18 width 32, StarGAN D conv_dim 32, 64 px), on 2 CPU cores shared
with another training job (about one core free): 5 min 9 s in all (corpus 29 s, T_fr 200
steps 208 s, T_fa 200 steps 50 s, compilation and evaluation the rest). Held-out quality
(48 identities, 480 genuine / 28,200 impostor pairs): T_fr verification AUC 0.978 (random
init 0.578), TAR@FAR=1e-2 0.58 (0.03), 10-fold accuracy 0.899 (0.529); T_fa mean attribute
accuracy 0.918 (random init 0.519, majority class 0.650), mean AUC 0.966 (0.472).

Every report also measures the teachers on the held-out people once through each of the
benchmark's four cameras (`benchmark_cameras`). With
:func:`dtda_jax.teachers.settings.capture_diverse_teacher_training_config` (320 + 64 people,
every video through its own random capture pipeline, T_fr 800 steps) the teachers never see
a benchmark camera: T_fr verification AUC 0.963 on held-out people through unseen random
pipelines and 0.962 across the benchmark's cameras (TAR@FAR=1e-2 0.52 / 0.47; with 200 steps
it had not learned the harder task: 0.703 / 0.617); T_fa mean attribute accuracy 0.887 / 0.888
(2-core AMD EPYC, shared with a training job: corpus 68 s, T_fr 800 steps ~14 min, T_fa ~2 min).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dtda_jax import config as config_lib
from dtda_jax.core import artifacts, distributed, losses, optim, xla_cpu
from dtda_jax.core.checkpointing import StageCheckpoints
from dtda_jax.core.errors import UserError
from dtda_jax.core.logs import MetricWriter, format_duration, say
from dtda_jax.core.loop import Stage, StopAt, jit_train_step, run_stage
from dtda_jax.core.sharding import check_batch_divisible, make_mesh, process_slice, replicate
from dtda_jax.core.state import TrainState, init_state
from dtda_jax.data.pipeline import step_batches
from dtda_jax.data.synthetic import ATTRIBUTES, face_corpus
from dtda_jax.evaluation.face_quality import attribute_metrics, verification_metrics
from dtda_jax.inference.scoring import chunks, score_batches
from dtda_jax.teachers import frozen as teachers
from dtda_jax.teachers.settings import (TEACHER_NAMES, check_teacher_training_settings,
                                        default_teacher_training_config)
from dtda_jax.weights import store

__all__ = [
    "TRAINER_VERSION", "TEACHER_NAMES", "default_teacher_training_config", "arcface_logits",
    "arcface_loss", "attribute_bce", "augment", "augmentation", "batch_indices", "corpus_batch",
    "train_on_corpus", "teacher_module",
    "teacher_architecture", "corpus_settings", "teacher_cache_name", "train_fr_teacher",
    "train_fa_teacher", "teacher_outputs", "evaluate_fr", "evaluate_fa", "train_teacher",
    "ensure_trained_teachers", "quality_summary", "format_quality_table", "main",
]

# Part of every cache name: bump it when training changes in a way the settings do not show.
TRAINER_VERSION = 1
Log = Callable[[str], None]


# ============================================================================================
# Losses (pure)
# ============================================================================================


def arcface_logits(embeddings: jax.Array, weight: jax.Array, labels: jax.Array,
                   scale: float = 64.0, margin: float = 0.5) -> jax.Array:
    """ArcFace (additive angular margin) logits: ``scale * cos(theta_j)``, and for the target
    class ``scale * cos(theta_y + margin)``.

    `embeddings` (N, D) and the class centres `weight` (C, D) (insightface's layout) are
    L2-normalised here. Where ``theta_y + margin > pi`` (``cos theta_y <= cos(pi - margin)``)
    ``cos(theta + m)`` would start to grow again with theta; like insightface's arcface_torch
    ``ArcFace`` loss (m2 = 0.5, ``easy_margin=False``) the target logit is then
    ``cos theta_y - sin(pi - margin) * margin``, which keeps it decreasing in theta (it meets
    ``cos(theta + m)`` at ``theta = pi - m``: a continuous, CosFace-like fallback).
    """
    cos = jnp.clip(losses.l2_normalize(embeddings) @ losses.l2_normalize(weight).T, -1.0, 1.0)
    target = jnp.take_along_axis(cos, labels[:, None], axis=1)[:, 0]
    # Clamped away from 0: the derivative of sqrt at 0 is infinite (cos_target = +-1).
    sin = jnp.sqrt(jnp.clip(1.0 - target * target, 1e-9, 1.0))
    with_margin = target * math.cos(margin) - sin * math.sin(margin)  # cos(theta + m)
    fallback = target - math.sin(math.pi - margin) * margin
    final = jnp.where(target > math.cos(math.pi - margin), with_margin, fallback)
    one_hot = jax.nn.one_hot(labels, cos.shape[1], dtype=bool)
    return scale * jnp.where(one_hot, final[:, None], cos)


def arcface_loss(embeddings: jax.Array, weight: jax.Array, labels: jax.Array,
                 scale: float = 64.0, margin: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy on :func:`arcface_logits`, and the plain top-1 accuracy
    (nearest class centre by cosine, no margin)."""
    logits = arcface_logits(embeddings, weight, labels, scale, margin)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    cos = losses.l2_normalize(embeddings) @ losses.l2_normalize(weight).T
    return loss, jnp.mean(jnp.argmax(cos, axis=1) == labels)


def attribute_bce(logits: jax.Array, attributes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean binary cross-entropy with logits (StarGAN's attribute loss) and the accuracy."""
    targets = attributes.astype(jnp.float32)
    loss = optax.sigmoid_binary_cross_entropy(logits, targets).mean()
    return loss, jnp.mean((logits > 0) == (attributes > 0))


def augment(images01: jax.Array, flip: jax.Array, gain: jax.Array) -> jax.Array:
    """Mirrors the images where `flip` (N,) is true and scales their brightness by `gain` (N,).

    One gain for all channels: skin and hair colour are identity and attribute cues that a
    per-channel jitter would blur. The random draws come from the host (:func:`augmentation`),
    which keeps random-number generation out of the compiled step (XLA:CPU compiles
    threefry slowly).
    """
    images01 = jnp.where(flip[:, None, None, None], images01[:, :, ::-1], images01)
    return jnp.clip(images01 * gain[:, None, None, None], 0.0, 1.0)


def augmentation(steps: int, batch_size: int, flip: bool, brightness_jitter: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-step draws for :func:`augment`: flips (steps, B) bool, gains (steps, B)."""
    rng = np.random.default_rng([seed, 19])
    flips = rng.random((steps, batch_size)) < 0.5 if flip else np.zeros((steps, batch_size), bool)
    gains = rng.uniform(1 - brightness_jitter, 1 + brightness_jitter, (steps, batch_size))
    return flips, gains.astype(np.float32)


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(steps, batch_size) sample indices: epochs of seeded permutations (every image once per
    epoch), the incomplete tail of each epoch dropped. Needs batch_size <= n."""
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} exceeds the {n} training images; lower it or "
                         "enlarge the corpus.")
    rng = np.random.default_rng([seed, 11])
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    rows = [rng.permutation(n)[:per_epoch * batch_size].reshape(per_epoch, batch_size)
            for _ in range(epochs)]
    return np.concatenate(rows)[:steps].astype(np.int32)


# ============================================================================================
# Teachers, settings and names
# ============================================================================================


def teacher_module(config, name: str) -> teachers.Teacher:
    """The config's teacher `name` as :func:`teachers.make_teachers` builds it, in float32
    (whatever the variant and the student's dtype)."""
    if name not in TEACHER_NAMES:
        raise ValueError(f"Unknown teacher {name!r}; choose from {TEACHER_NAMES}.")
    return teachers.make_teachers(config.teachers, (name,), "float32")[name]


def teacher_architecture(config, name: str) -> dict[str, Any]:
    """The manifest architecture the converters write for this teacher (same keys and order)."""
    t = config.teachers
    if name == "fr":
        return {"arch": t.fr_arch, "width": int(t.fr_width),
                "num_features": int(teacher_module(config, "fr").model.num_features),
                "input_size": int(t.fr_input_size)}
    if t.fa_c_dim > len(ATTRIBUTES):
        raise ValueError(f"config.teachers.fa_c_dim={t.fa_c_dim}, but the face corpus has only "
                         f"{len(ATTRIBUTES)} attributes {ATTRIBUTES}.")
    return {"image_size": int(t.fa_image_size), "conv_dim": int(t.fa_conv_dim),
            "c_dim": int(t.fa_c_dim), "repeat_num": int(t.fa_repeat_num)}


def corpus_settings(config, settings: ml_collections.ConfigDict) -> face_corpus.CorpusSettings:
    c = settings.corpus
    return face_corpus.CorpusSettings(
        image_size=int(c.image_size or config.data.image_size), seed=int(c.seed),
        train_identities=int(c.train_identities), heldout_identities=int(c.heldout_identities),
        videos_per_identity=int(c.videos_per_identity), frames_per_video=int(c.frames_per_video),
        capture=str(c.capture))


def _cache_payload(config, name: str, settings: ml_collections.ConfigDict) -> dict[str, Any]:
    return {"trainer_version": TRAINER_VERSION, "teacher": name,
            "architecture": teacher_architecture(config, name),
            "corpus": {"corpus_version": face_corpus.CORPUS_VERSION,
                       **dataclasses.asdict(corpus_settings(config, settings))},
            "training": settings[name].to_dict(), "seed": int(settings.seed)}


def teacher_cache_name(config, name: str, settings: ml_collections.ConfigDict) -> str:
    """Directory name of a trained teacher: readable architecture + hash of everything that
    determines its weights (architecture, corpus, training settings, seed, trainer version).
    Configs that need the same teacher share it; evaluation settings are not part of it."""
    a = teacher_architecture(config, name)
    if name == "fr":
        prefix = f"fr_arcface_{a['arch']}_w{a['width']}_in{a['input_size']}_f{a['num_features']}"
    else:
        prefix = f"fa_stargan_in{a['image_size']}_c{a['conv_dim']}_k{a['c_dim']}_r{a['repeat_num']}"
    return artifacts.settings_name(prefix, _cache_payload(config, name, settings))


# ============================================================================================
# Training
# ============================================================================================


def _optimizer(s: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Linear warmup, cosine decay to 0; AdamW (decoupled decay) or SGD momentum 0.9 (+L2)."""
    steps = int(s.steps)
    warmup = min(int(s.warmup_steps), max(steps - 1, 0))
    schedule = optim.learning_rate_schedule(s.learning_rate, steps, "cosine", warmup)
    return optim.make_optimizer(s.optimizer, schedule, momentum=0.9, weight_decay=s.weight_decay,
                                grad_clip_norm=s.grad_clip_norm)


def init_key(seed: int, salt: int) -> jax.Array:
    """A key for network initialisation. The "rbg" generator: XLA:CPU compiles a network's
    initialiser about 5x faster with it than with threefry (seconds instead of tens of
    seconds for the tiny test teachers); deterministic on a given install."""
    return jax.random.fold_in(jax.random.key(seed, impl="rbg"), salt)


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(teacher: teachers.Teacher, key: jax.Array) -> Any:
    """`teacher.init`, compiled once per teacher (the random-init baseline of the report)."""
    return teacher.init(key)


INIT_SALT = {"fr": 1, "fa": 2}  # folded into the seed's key for each teacher's initialisation


@dataclasses.dataclass(frozen=True)
class SampledBatches:
    """The map from a step to its batch: image indices and augmentation draws (this process's
    share of the global batch)."""

    indices: np.ndarray  # (steps, B) int32
    flips: np.ndarray  # (steps, B) bool
    gains: np.ndarray  # (steps, B) float32
    process_index: int = 0
    process_count: int = 1

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        part = process_slice(self.indices.shape[1], self.process_index, self.process_count)
        return {"idx": self.indices[step, part], "flip": self.flips[step, part],
                "gain": self.gains[step, part]}


def corpus_batch(frozen, batch):
    """The augmented [0, 1] images of a batch and their targets, gathered on the device from
    the replicated (uint8 images, targets) `frozen`."""
    images_dev, targets_dev = frozen
    idx = batch["idx"]
    return augment(images_dev[idx].astype(jnp.float32) / 255.0, batch["flip"], batch["gain"]), targets_dev[idx]


def fr_train_step(state: TrainState, frozen, batch, *, model, input_size: int, tx: optax.GradientTransformation,
                  arcface_scale: float, arcface_margin: float):
    """One ArcFace step of the IResNet backbone (BatchNorm in train mode) and its class centres."""
    x, y = corpus_batch(frozen, batch)

    def loss_fn(p):
        emb, updates = model.apply({"params": p["backbone"], "batch_stats": state.batch_stats},
                                   teachers.teacher_input(x, input_size), train=True, mutable=["batch_stats"])
        loss, acc = arcface_loss(emb.astype(jnp.float32), p["head"], y, arcface_scale, arcface_margin)
        return loss, (updates["batch_stats"], acc)

    (loss, (batch_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, tx, batch_stats=batch_stats), {"loss": loss, "acc": acc}


def fa_train_step(state: TrainState, frozen, batch, *, model, input_size: int, tx: optax.GradientTransformation):
    """One attribute-BCE step of the StarGAN discriminator."""
    x, y = corpus_batch(frozen, batch)

    def loss_fn(p):
        _, logits = model.apply({"params": p}, teachers.teacher_input(x, input_size))
        return attribute_bce(logits.astype(jnp.float32), y)

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, tx), {"loss": loss, "acc": acc}


def train_on_corpus(stage_name: str, settings_field: str, init_salt: int, step_fn, init_variables, tx,
                    images: np.ndarray, targets: np.ndarray, s: ml_collections.ConfigDict, *, seed: int,
                    log_every: int, checkpoint_every: int, log, workdir: str, mesh,
                    stop: StopAt | None) -> tuple[Any, dict[str, Any]] | None:
    """Trains a network on corpus `images` and per-image `targets` through the stage loop in
    `workdir` (resumable): `s.steps` steps of `s.batch_size` seeded epochs with flip /
    brightness augmentation; `settings_field` (e.g. "teachers.own_training.fr") names the
    settings in error messages, `init_salt` is folded into the seed's initialisation key.
    Returns the final state and a record (every step's metrics, seconds), or None when `stop`
    ended it early."""
    steps, batch = int(s.steps), int(s.batch_size)
    mesh = mesh if mesh is not None else make_mesh()
    check_batch_divisible(batch, mesh, f"{settings_field}.batch_size")
    stage = Stage(name=stage_name, num_steps=steps, global_batch=batch, log_every=log_every,
                  checkpoint_every=checkpoint_every, every_step_records=True,
                  nan_advice=f"Lower {settings_field}.learning_rate or enable {settings_field}.grad_clip_norm.")
    flips, gains = augmentation(steps, batch, bool(s.flip), float(s.brightness_jitter), seed)
    batches = step_batches(SampledBatches(batch_indices(len(images), batch, steps, seed), flips, gains,
                                          jax.process_index(), jax.process_count()), steps)
    state = init_state(init_variables, tx, init_key(seed, init_salt), mesh)
    frozen = replicate((images, targets), mesh)
    jitted = jit_train_step(step_fn, mesh, with_frozen=True)
    checkpoints = StageCheckpoints(os.path.join(workdir, "checkpoints"))
    writer = MetricWriter(workdir)
    t0 = time.perf_counter()
    try:
        state, finished = run_stage(stage, state, lambda st, b: jitted(st, frozen, b), batches, mesh,
                                    checkpoints, writer, stop=stop, log=log)
    finally:
        checkpoints.close()
        writer.close()
    if not finished:
        return None
    records = {r["step"]: r for r in artifacts.read_jsonl(writer.path) if r["stage"] == stage.name}
    history = [{k: v for k, v in records[step].items() if k != "stage"} for step in sorted(records)]
    return jax.device_get(state), {"history": history, "seconds": time.perf_counter() - t0}


def train_fr_teacher(teacher: teachers.Teacher, images: np.ndarray, labels: np.ndarray,
                     num_classes: int, s: ml_collections.ConfigDict, *, workdir: str, seed: int = 0,
                     log_every: int = 25, checkpoint_every: int = 50, log: Log = say, mesh=None,
                     stop: StopAt | None = None) -> tuple[Any, dict[str, Any]] | None:
    """ArcFace training of the IResNet `teacher` on uint8 `images` with class `labels`.

    Returns the backbone's variables (``params``, ``batch_stats``; the ArcFace head is dropped)
    and a training record (loss / accuracy history, seconds); None when `stop` ended it early.
    """
    # insightface's PartialFC initialises the class centres with N(0, 0.01).
    head = 0.01 * np.random.default_rng([seed, 3]).standard_normal(
        (num_classes, teacher.output_dim)).astype(np.float32)

    def init_variables(key):
        variables = teacher.init(key)
        return {"params": {"backbone": variables["params"], "head": head},
                "batch_stats": variables["batch_stats"]}

    tx = _optimizer(s)
    step = functools.partial(fr_train_step, model=teacher.model, input_size=teacher.input_size, tx=tx,
                             arcface_scale=s.arcface_scale, arcface_margin=s.arcface_margin)
    log(f"[teachers] fr: ArcFace training of {type(teacher.model).__name__} on {len(images)} images of "
        f"{num_classes} identities: {s.steps} steps x {s.batch_size}, {s.optimizer} lr "
        f"{s.learning_rate}, s={s.arcface_scale} m={s.arcface_margin}")
    outcome = train_on_corpus("teacher fr", "teachers.own_training.fr", INIT_SALT["fr"], step, init_variables, tx,
                              images, labels, s, seed=seed, log_every=log_every,
                              checkpoint_every=checkpoint_every, log=log, workdir=workdir, mesh=mesh, stop=stop)
    if outcome is None:
        return None
    state, record = outcome
    return {"params": state.params["backbone"], "batch_stats": state.batch_stats}, record


def train_fa_teacher(teacher: teachers.Teacher, images: np.ndarray, attributes: np.ndarray,
                     s: ml_collections.ConfigDict, *, workdir: str, seed: int = 0, log_every: int = 25,
                     checkpoint_every: int = 50, log: Log = say, mesh=None,
                     stop: StopAt | None = None) -> tuple[Any, dict[str, Any]] | None:
    """BCE training of the StarGAN discriminator's attribute logits on uint8 `images`.

    The real/fake head ``conv1`` is frozen at its init (zero updates, no weight decay): it has
    no training signal without generated images and distillation does not use it.
    """
    labels = lambda params: {k: ("frozen" if k == "conv1" else "train") for k in params}
    tx = optax.multi_transform({"train": _optimizer(s), "frozen": optax.set_to_zero()}, labels)
    step = functools.partial(fa_train_step, model=teacher.model, input_size=teacher.input_size, tx=tx)
    log(f"[teachers] fa: attribute training of {type(teacher.model).__name__} on {len(images)} images: "
        f"{s.steps} steps x {s.batch_size}, {s.optimizer} lr {s.learning_rate}")
    outcome = train_on_corpus("teacher fa", "teachers.own_training.fa", INIT_SALT["fa"], step, teacher.init, tx,
                              images, attributes, s, seed=seed, log_every=log_every,
                              checkpoint_every=checkpoint_every, log=log, workdir=workdir, mesh=mesh, stop=stop)
    if outcome is None:
        return None
    state, record = outcome
    return {"params": state.params}, record


# ============================================================================================
# Evaluation
# ============================================================================================


def teacher_outputs(teacher: teachers.Teacher, batch_size: int = 64, flip_sum: bool = False):
    """A function (variables, uint8 images) -> numpy outputs of `teacher.logits`, batched.

    ``flip_sum`` adds the output of the mirrored image (insightface's flip test for embeddings).
    One jitted program serves every set of variables (trained and random-init alike).
    """
    def forward(variables, images_uint8):
        x = images_uint8.astype(jnp.float32) / 255.0
        if not flip_sum:
            return teacher.logits(variables, x)
        # One forward over [x, mirrored x] (BatchNorm runs on running statistics: per sample).
        out = teacher.logits(variables, jnp.concatenate([x, x[:, :, ::-1]]))
        return out[:len(x)] + out[len(x):]

    forward = jax.jit(forward, compiler_options=xla_cpu.compiler_options(xla_cpu.SCORING))
    return lambda variables, images: score_batches(forward, variables, chunks(images, batch_size), batch_size)


def evaluate_fr(teacher: teachers.Teacher, variables: Mapping[str, Any],
                heldout: face_corpus.CorpusSplit, s: ml_collections.ConfigDict) -> dict[str, Any]:
    """Verification on held-out identities: trained teacher and the same net at random init."""
    run = teacher_outputs(teacher, int(s.eval.batch_size), flip_sum=True)
    random_init = _init_variables(teacher, init_key(int(s.seed), 1000))
    kw = dict(max_negative_pairs=int(s.eval.max_negative_pairs), folds=int(s.eval.folds), seed=int(s.seed))
    return {"protocol": "cosine of L2-normalised (embedding(image) + embedding(mirrored image)); "
                        f"{len(heldout)} images of {len(np.unique(heldout.identity))} held-out identities",
            "trained": verification_metrics(run(variables, heldout.images), heldout.identity, **kw),
            "random_init": verification_metrics(run(random_init, heldout.images), heldout.identity, **kw)}


def evaluate_fa(teacher: teachers.Teacher, variables: Mapping[str, Any],
                heldout: face_corpus.CorpusSplit, train_attributes: np.ndarray,
                s: ml_collections.ConfigDict) -> dict[str, Any]:
    """Attribute accuracy / AUC on held-out identities: trained teacher and random init."""
    c_dim = teacher.output_dim
    names = ATTRIBUTES[:c_dim]
    run = teacher_outputs(teacher, int(s.eval.batch_size))
    random_init = _init_variables(teacher, init_key(int(s.seed), 1000))
    attrs = heldout.attributes[:, :c_dim]
    return {"protocol": f"logit > 0 on {len(heldout)} images of "
                        f"{len(np.unique(heldout.identity))} held-out identities",
            "trained": attribute_metrics(run(variables, heldout.images), attrs, names,
                                         train_attributes[:, :c_dim]),
            "random_init": attribute_metrics(run(random_init, heldout.images), attrs, names,
                                             train_attributes[:, :c_dim])}


# ============================================================================================
# Training + saving one teacher, and the cache
# ============================================================================================


def _check_structure(variables: Any, teacher: teachers.Teacher) -> None:
    """The saved variables must be exactly what `Teacher.init` makes (what loading restores)."""
    want = jax.eval_shape(teacher.init, jax.random.key(0))
    got_tree, want_tree = jax.tree.structure(variables), jax.tree.structure(want)
    pairs = zip(jax.tree.leaves(variables), jax.tree.leaves(want), strict=True)
    shapes_ok = got_tree == want_tree and all(np.shape(a) == b.shape for a, b in pairs)
    if not shapes_ok:
        raise AssertionError(f"trained {teacher.name} variables do not match Teacher.init's structure")


def train_teacher(config, name: str, settings: ml_collections.ConfigDict,
                  corpus: Mapping[str, face_corpus.CorpusSplit], workdir: str, log: Log = say,
                  mesh=None, stop: StopAt | None = None) -> tuple[Any, dict[str, Any]] | None:
    """Trains (or resumes, in `workdir`) and evaluates teacher `name` of `config`: its variables
    (structure of ``Teacher.init``) and its report (settings, history, quality); None when
    `stop` ended the training early."""
    teacher = teacher_module(config, name)
    train = corpus["train"]
    t0 = time.perf_counter()
    common = dict(seed=int(settings.seed), log_every=int(settings.log_every), log=log, workdir=workdir,
                  mesh=mesh, stop=stop, checkpoint_every=int(settings.checkpoint_every))
    if name == "fr":
        labels, num_classes = train.class_labels()
        outcome = train_fr_teacher(teacher, train.images, labels, num_classes, settings.fr, **common)
    else:
        outcome = train_fa_teacher(teacher, train.images, train.attributes[:, :teacher.output_dim],
                                   settings.fa, **common)
    if outcome is None:
        return None
    variables, record = outcome
    # Held-out people through the corpus' own capture, then through the benchmark's cameras
    # (unseen by a teacher of a random-capture corpus: does it ignore the camera?).
    if name == "fr":
        quality, cameras = (evaluate_fr(teacher, variables, corpus[split], settings)
                            for split in ("heldout", "heldout_cameras"))
    else:
        quality, cameras = (evaluate_fa(teacher, variables, corpus[split], train.attributes, settings)
                            for split in ("heldout", "heldout_cameras"))
    quality["benchmark_cameras"] = cameras
    variables = jax.tree.map(np.asarray, variables)
    _check_structure(variables, teacher)
    history = record["history"]
    report = {
        **_cache_payload(config, name, settings),
        "kind": teachers.TEACHER_KINDS[name],
        "eval_settings": settings.eval.to_dict(),
        "train_seconds": round(record["seconds"], 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": history[-1]["loss"], "first_loss": history[0]["loss"],
        "history": history,
        "quality": quality,
        "disjointness": (f"corpus identity ids and video ids start at {face_corpus.ID_OFFSET} / "
                         f"{face_corpus.VIDEO_OFFSET}; the FAS benchmark's start at 0"),
    }
    return variables, report


def has_converted(path: str, kind: str) -> bool:
    """Whether `path` holds a complete converted checkpoint of `kind` (a cache entry)."""
    try:
        store.check_converted(path, kind)
        return True
    except (FileNotFoundError, ValueError):
        return False


def check_benchmark_disjoint(config, corpus: face_corpus.CorpusSettings) -> None:
    if config.data.dataset != "synthetic_fas":
        return
    from dtda_jax.data.synthetic import benchmark  # tensorflow_datasets: imported only when needed

    bench = benchmark.SyntheticFasConfig(image_size=int(config.data.image_size),
                                         seed=int(config.data.synthetic_seed),
                                         **dict(config.data.synthetic_overrides))
    plan = face_corpus.corpus_plan(corpus)
    face_corpus.check_disjoint_from_benchmark([v.identity_id for v in plan], [v.video_id for v in plan],
                                              benchmark.dataset_plan(bench))


def save_teacher(config, name: str, path: str, variables: Any, report: dict[str, Any]) -> None:
    """The trained teacher as a converted checkpoint whose source is its report (pinned by sha256)."""
    if not artifacts.writes_files():
        return  # a job's other processes: the primary saves it
    report_path = path + ".report.json"
    artifacts.write_json(report_path, report)
    extra = {"trained_by": {"tool": "dtda_jax.teachers.training", "trainer_version": TRAINER_VERSION,
                            "cache_name": os.path.basename(path),
                            "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
             "quality": report["quality"]}
    if name == "fa":
        extra["attributes"] = list(ATTRIBUTES[:teacher_architecture(config, "fa")["c_dim"]])
    store.save_converted(path, variables, kind=teachers.TEACHER_KINDS[name],
                         architecture=teacher_architecture(config, name), source=report_path, extra=extra)


def ensure_trained_teachers(config, cache_dir: str, settings: ml_collections.ConfigDict | None = None,
                            names: Sequence[str] = TEACHER_NAMES, log: Log = say, mesh=None,
                            stop: StopAt | None = None) -> dict[str, str] | None:
    """Checkpoint directories of the config's trained teachers, training only what is missing;
    None when `stop` ended a training early (rerunning resumes it).

    Layout of `cache_dir`: ``corpus/`` (the rendered face corpus), one checkpoint per teacher
    named by :func:`teacher_cache_name` (manifest.json + variables/, as converters write), its
    training report ``<name>.report.json`` (the manifest's source file, pinned by sha256), and,
    while a teacher trains, ``<name>.training/`` (its stage checkpoints and metrics; removed
    once the teacher is saved). Writes are atomic (report: temp file + rename; checkpoint:
    staging dir + rename), so an interrupted call leaves no half checkpoint and the next call
    resumes the training from its last stage checkpoint. A second process that needs the same
    teacher at the same time waits for the first (a lock in the training folder) and reuses it.
    """
    settings = settings if settings is not None else default_teacher_training_config()
    check_teacher_training_settings(settings)
    unknown = [n for n in names if n not in TEACHER_NAMES]
    if unknown:
        raise ValueError(f"Unknown teachers {unknown}; choose from {TEACHER_NAMES}.")
    cache_dir = os.path.abspath(cache_dir)
    paths = {n: os.path.join(cache_dir, teacher_cache_name(config, n, settings)) for n in names}
    missing = [n for n in names if not has_converted(paths[n], teachers.TEACHER_KINDS[n])]
    for n in names:
        if n not in missing:
            log(f"[teachers] {n}: reusing trained teacher {paths[n]}")
            log(quality_summary(n, store.read_manifest(paths[n])["quality"]))
    if not missing:
        return paths
    corpus_cfg = corpus_settings(config, settings)
    check_benchmark_disjoint(config, corpus_cfg)
    with distributed.primary_first("face corpus"):  # rendered once, by the primary
        corpus, corpus_path = face_corpus.load_face_corpus(os.path.join(cache_dir, "corpus"), corpus_cfg, log)
    for n in missing:
        training_dir = paths[n] + ".training"
        # Another run filling the same cache entry makes this one wait, then reuse its teacher.
        with distributed.primary_lock(training_dir, "teacher training", wait=True, log=log):
            if has_converted(paths[n], teachers.TEACHER_KINDS[n]):
                log(f"[teachers] {n}: reusing trained teacher {paths[n]}")
                continue
            outcome = train_teacher(config, n, settings, corpus, training_dir, log, mesh, stop)
            if outcome is None:
                return None
            variables, report = outcome
            report["corpus"]["file"] = os.path.basename(corpus_path)
            save_teacher(config, n, paths[n], variables, report)
            artifacts.remove(training_dir)
        log(f"[teachers] {n}: saved {paths[n]}")
        log(quality_summary(n, report["quality"]))
    return paths


# ============================================================================================
# Reporting and the command line
# ============================================================================================


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def quality_summary(name: str, quality: Mapping[str, Any]) -> str:
    """One log line: the teacher's headline held-out metric, trained vs random init."""
    tr, ri = quality["trained"], quality["random_init"]
    cams = quality.get("benchmark_cameras", {}).get("trained")  # reports of corpus version 1 lack it
    if name == "fr":
        line = (f"[teachers] fr quality on held-out identities: verification AUC {_fmt(tr['auc'])} "
                f"(random init {_fmt(ri['auc'])}), TAR@FAR=1e-2 {_fmt(tr['tar_at_far_1e-02'])} "
                f"({_fmt(ri['tar_at_far_1e-02'])})")
        return line + (f"; across the benchmark's cameras AUC {_fmt(cams['auc'])}, TAR@FAR=1e-2 "
                       f"{_fmt(cams['tar_at_far_1e-02'])}" if cams else "")
    line = (f"[teachers] fa quality on held-out identities: mean attribute accuracy "
            f"{_fmt(tr['mean_accuracy'])} (random init {_fmt(ri['mean_accuracy'])}, majority "
            f"class {_fmt(tr['mean_majority_accuracy'])}), mean AUC {_fmt(tr['mean_auc'])}")
    return line + (f"; through the benchmark's cameras accuracy {_fmt(cams['mean_accuracy'])}, AUC "
                   f"{_fmt(cams['mean_auc'])}" if cams else "")


def format_quality_table(quality: Mapping[str, Mapping[str, Any]]) -> str:
    """A plain-text table of teacher quality: trained vs random-init (and the majority floor)."""
    rows = [("teacher", "metric", "trained", "random-init", "majority")]
    if "fr" in quality:
        q = quality["fr"]
        tr, ri = q["trained"], q["random_init"]
        folds = next(k for k in tr if k.endswith("fold_accuracy"))
        for key, label in (("auc", "verification AUC"), ("tar_at_far_1e-02", "TAR@FAR=1e-2"),
                           ("tar_at_far_1e-03", "TAR@FAR=1e-3"),
                           (folds, f"{folds.split('_')[0]} accuracy"),
                           ("mean_genuine_cosine", "mean genuine cos"),
                           ("mean_impostor_cosine", "mean impostor cos")):
            rows.append(("fr", label, _fmt(tr[key]), _fmt(ri[key]), ""))
        pairs = f"{tr['genuine_pairs']}/{tr['impostor_pairs']}"
        rows.append(("fr", "pairs (genuine/impostor)", pairs, "", ""))
        if "benchmark_cameras" in q:
            cams = q["benchmark_cameras"]
            for key, label in (("auc", "verification AUC"), ("tar_at_far_1e-02", "TAR@FAR=1e-2")):
                rows.append(("fr", f"{label}, benchmark cameras", _fmt(cams["trained"][key]),
                             _fmt(cams["random_init"][key]), ""))
    if "fa" in quality:
        tr, ri = quality["fa"]["trained"], quality["fa"]["random_init"]
        for name in tr["accuracy"]:
            rows.append(("fa", f"{name} acc", _fmt(tr["accuracy"][name]), _fmt(ri["accuracy"][name]),
                         _fmt(tr["majority_accuracy"][name])))
        rows.append(("fa", "mean acc", _fmt(tr["mean_accuracy"]), _fmt(ri["mean_accuracy"]),
                     _fmt(tr["mean_majority_accuracy"])))
        rows.append(("fa", "mean AUC", _fmt(tr["mean_auc"]), _fmt(ri["mean_auc"]), "0.500"))
        if "benchmark_cameras" in quality["fa"]:
            cams = quality["fa"]["benchmark_cameras"]
            rows.append(("fa", "mean acc, benchmark cameras", _fmt(cams["trained"]["mean_accuracy"]),
                         _fmt(cams["random_init"]["mean_accuracy"]), _fmt(cams["trained"]["mean_majority_accuracy"])))
            rows.append(("fa", "mean AUC, benchmark cameras", _fmt(cams["trained"]["mean_auc"]),
                         _fmt(cams["random_init"]["mean_auc"]), "0.500"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _apply_override(settings: ml_collections.ConfigDict, assignment: str) -> None:
    key, value = config_lib.parse_assignment(assignment, example="fr.steps=100")
    try:
        config_lib.set_field(settings, key, value)
    except KeyError:
        raise ValueError(f"unknown teacher training setting {key!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    from dtda_jax.core.cli import run_command

    parser = argparse.ArgumentParser(description="Train the DTDA teachers of a config on synthetic "
                                     "faces disjoint from the FAS benchmark; print their quality.")
    parser.add_argument("--config", required=True, help="config file, optionally with its argument "
                        "(configs/synthetic.py or configs/synthetic.py:dtda)")
    parser.add_argument("--out", required=True, help="cache directory for the corpus and the teachers")
    parser.add_argument("--teachers", default="fr,fa", help="which teachers (default fr,fa)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting, e.g. --set fr.steps=100 (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_command("train_teachers", lambda: train_and_report(args), debug=args.debug, stop_on_signals=True)


def train_and_report(args) -> None:
    """The command: train what the cache lacks, print the quality table and the config lines."""
    path, _, arg = args.config.partition(":")
    config = config_lib.load_config_file(path, *([arg] if arg else []))
    # The config's own training settings when it trains its own teachers, else the defaults.
    settings = (ml_collections.ConfigDict(config.teachers.own_training.to_dict())
                if "own_training" in config.teachers else default_teacher_training_config())
    names = tuple(n.strip() for n in args.teachers.split(",") if n.strip())
    try:
        for assignment in args.set:
            _apply_override(settings, assignment)
        check_teacher_training_settings(settings)
        unknown = [n for n in names if n not in TEACHER_NAMES]
        if unknown:
            raise ValueError(f"--teachers: unknown {unknown}; choose from {TEACHER_NAMES}")
    except ValueError as err:
        raise UserError(str(err)) from None
    t0 = time.perf_counter()
    paths = ensure_trained_teachers(config, args.out, settings, names)
    quality = {n: store.read_manifest(p)["quality"] for n, p in paths.items()}
    took = format_duration(time.perf_counter() - t0)
    print(f"\nTeacher quality on held-out synthetic identities ({took}):")
    print(format_quality_table(quality))
    print("\nPoint a config at them:")
    for n, p in paths.items():
        print(f"  config.teachers.{n}_checkpoint = {p!r}")
