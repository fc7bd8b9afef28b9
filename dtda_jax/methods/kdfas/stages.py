"""KDFAS's stages, both on the framework's data pipeline, loop, checkpoints and evaluation:

1. Teacher: a large ViT trained on live/spoof with cross-entropy, evaluated on the target
   like any model, then frozen. Trained teachers are cached by their settings (data, seed,
   size, optimiser) in `kdfas.teacher_dir`, so every variant and rerun at the same settings
   distils the same teacher; an interrupted teacher resumes from its checkpoint there.
2. Student: a smaller ViT trained with L = CE + lambda_decision * L_KL + lambda_feature *
   L_gram: decision-level KL against the teacher's logits at temperature tau, and
   feature-level distillation at `num_stages` paired blocks, comparing the token Gram
   matrices (methods/kdfas/losses.token_gram), which are T x T whatever the two widths.

The choices the KDFAS README leaves open are documented in methods/kdfas/config.py.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import optax

from dtda_jax.core import artifacts, optim
from dtda_jax.core.errors import ConfigError
from dtda_jax.core.lock import directory_lock
from dtda_jax.core.logs import MetricWriter
from dtda_jax.core.loop import jit_train_step
from dtda_jax.core.sharding import replicate
from dtda_jax.core.state import TrainState, image_model_init, init_state, rng_key, with_converted_weights
from dtda_jax.methods.common import RunContext, train_live_spoof_stage
from dtda_jax.methods.kdfas.steps import stage_blocks, student_train_step, teacher_train_step
from dtda_jax.models.vit import VisionTransformer
from dtda_jax.weights import store
from dtda_jax.weights.store import KIND_VIT

# Part of every teacher cache name: bump it when teacher training changes in a way the
# settings do not show.
TEACHER_CACHE_VERSION = 1
VIT_ARCHITECTURE = ("patch_size", "width", "depth", "num_heads", "mlp_dim")
NAN_ADVICE = ("Lower config.kdfas.{role}_optim.learning_rate, enable clipping "
              "(config.kdfas.{role}_optim.grad_clip_norm) or check the input data.")


def make_vit(size: ml_collections.ConfigDict, dtype: str) -> VisionTransformer:
    return VisionTransformer(patch_size=size.patch_size, width=size.width, depth=size.depth,
                             num_heads=size.num_heads, mlp_dim=size.mlp_dim, num_classes=2,
                             dtype=jnp.dtype(dtype))


def make_adamw(o: ml_collections.ConfigDict, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW of a KDFAS optimiser section, weight decay on the kernels only (as ViT recipes)."""
    schedule = optim.learning_rate_schedule(o.learning_rate, num_steps, o.schedule, o.warmup_steps,
                                            o.step_boundaries)
    return optim.make_optimizer("adamw", schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                                grad_clip_norm=o.grad_clip_norm, decay="kernels"), schedule


def student_and_optimizer(config) -> tuple[VisionTransformer, optax.GradientTransformation, optax.Schedule]:
    """The KDFAS student of a config and its optimiser (training and dtda_jax.predict)."""
    tx, schedule = make_adamw(config.kdfas.student_optim, config.train.num_steps)
    return make_vit(config.kdfas.student, config.kdfas.dtype), tx, schedule


def check_init_checkpoints(config) -> None:
    """Fails before any training if a configured ViT initialisation is missing or the wrong kind."""
    for role in ("teacher", "student"):
        path = config.kdfas[role].init_checkpoint
        if path:
            store.check_converted(path, KIND_VIT, f"config.kdfas.{role}.init_checkpoint")


def vit_init(config, role: str, tx: optax.GradientTransformation, mesh):
    """A fresh state's parameters, all but the live/spoof head, replaced by the converted ViT of
    `kdfas.<role>.init_checkpoint` after checking its architecture and patch grid; None when
    the field is empty (random init)."""
    size = config.kdfas[role]
    if not size.init_checkpoint:
        return None

    def init(state: TrainState) -> TrainState:
        image_size = store.read_manifest(size.init_checkpoint)["architecture"].get("image_size")
        if image_size != config.data.image_size:
            raise ConfigError(
                f"{size.init_checkpoint!r} has position embeddings for {image_size} px inputs at patch "
                f"{size.patch_size}; set config.data.image_size={image_size} (resampling position "
                "embeddings is not supported).")
        return with_converted_weights(
            state, size.init_checkpoint, kind=KIND_VIT, architecture={k: size[k] for k in VIT_ARCHITECTURE},
            config_fields={k: f"config.kdfas.{role}.{k}" for k in VIT_ARCHITECTURE},
            merge=lambda st, variables: ({**variables["params"], "head": st.params["head"]}, st.batch_stats),
            tx=tx, mesh=mesh, label=f"[{role}] initialised from", note="; fresh live/spoof head")

    return init


def roles_in_use(config) -> tuple[str, ...]:
    """The ViTs the variant trains: the teacher when it is reported or distilled, the student
    unless the teacher is reported alone."""
    k = config.kdfas
    uses_teacher = k.report == "teacher" or k.use_decision_kd or k.use_feature_kd
    return (("teacher",) if uses_teacher else ()) + (("student",) if k.report == "student" else ())


def face_pretraining_targets(config, every_role: bool = False) -> list:
    """The ViTs this config's run starts from pre-trained on the face corpus (those it trains,
    or with `every_role` both, that have no init_checkpoint) when `kdfas.pretrain_on_faces`
    is on (dtda_jax/teachers/pretraining.py)."""
    k = config.kdfas
    if not k.pretrain_on_faces:
        return []
    from dtda_jax.teachers import pretraining  # the face corpus renderer is only needed here

    roles = ("teacher", "student") if every_role else roles_in_use(config)
    root = pretraining.cache_dir(config, k.pretrained_dir)
    return [pretraining.Target(f"kdfas.{role}.init_checkpoint", pretraining.vit_backbone(k[role], config.data.image_size),
                               k.face_pretraining, "kdfas.face_pretraining", root)
            for role in roles if not k[role].init_checkpoint]


def with_pretrained_vits(ctx: RunContext) -> ml_collections.ConfigDict | None:
    """The config with the init_checkpoint of each ViT of face_pretraining_targets pointing at
    its pre-trained checkpoint (pre-trained first if the cache lacks it); unchanged without
    pre-training; None when the run was stopped during it. The recorded config.json keeps the
    empty paths: the cache name follows from the config, so a resumed run finds the same ViTs."""
    targets = face_pretraining_targets(ctx.config)
    if not targets:
        return ctx.config
    from dtda_jax.teachers import pretraining

    return pretraining.with_pretrained(ctx.config, targets, mesh=ctx.mesh, stop=ctx.stop)


# ============================================================================================
# Stage 1: the teacher (cached)
# ============================================================================================


def teacher_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Everything the trained teacher and its evaluations depend on (its cache key)."""
    data = {k: v for k, v in config.data.to_dict().items() if k != "eval_batch_size"}
    k = config.kdfas
    init = k.teacher.init_checkpoint
    init_sha256 = store.read_manifest(init)["source_sha256"] if init else None
    return json.loads(json.dumps({
        "version": TEACHER_CACHE_VERSION, "seed": config.seed, "dtype": k.dtype,
        "teacher_init_sha256": init_sha256,
        "data": data, "teacher": k.teacher.to_dict(), "teacher_optim": k.teacher_optim.to_dict(),
        "teacher_num_steps": k.teacher_num_steps, "eval": config.eval.to_dict(),
        "eval_every": config.train.eval_every, "checkpoint_every": config.train.checkpoint_every}))


def teacher_directory(config: ml_collections.ConfigDict, settings: dict[str, Any] | None = None) -> str:
    """<kdfas.teacher_dir or <data_dir>/kdfas_teachers>/vit<depth>x<width>p<patch>_seed<k>_<hash
    of `settings`, by default teacher_settings(config)>."""
    root = config.kdfas.teacher_dir or os.path.join(config.data.data_dir, "kdfas_teachers")
    settings = teacher_settings(config) if settings is None else settings
    t = config.kdfas.teacher
    return os.path.abspath(os.path.join(
        root, artifacts.settings_name(f"vit{t.depth}x{t.width}p{t.patch_size}_seed{config.seed}", settings)))


def train_teacher(ctx: RunContext, global_batch: int):
    """Trains (or resumes, or just restores) the cached teacher; returns (directory, model,
    variables, best eval, last eval), or None when the run was stopped early."""
    config = ctx.config
    k, d = config.kdfas, config.data
    settings = teacher_settings(config)
    directory = teacher_directory(config, settings)
    settings_path = os.path.join(directory, "settings.json")
    if not os.path.exists(settings_path):
        artifacts.write_json(settings_path, settings)
    print(f"[teacher] {directory}", flush=True)
    model = make_vit(k.teacher, k.dtype)
    tx, schedule = make_adamw(k.teacher_optim, k.teacher_num_steps)
    state = init_state(image_model_init(model, d.image_size), tx, rng_key(config.seed + 3), ctx.mesh)
    batches = ctx.source_batches(d.samples_per_group, config.seed + 3, k.teacher_num_steps)
    step_fn = jit_train_step(functools.partial(teacher_train_step, model=model, tx=tx, schedule=schedule),
                             ctx.mesh, with_frozen=False)
    # Runs that need the same teacher at the same time: the second waits, then restores it.
    with directory_lock(directory, "KDFAS teacher training", wait=True):
        writer = MetricWriter(directory)
        try:
            outcome = train_live_spoof_stage(
                ctx, ctx.stage("teacher", k.teacher_num_steps, global_batch, NAN_ADVICE.format(role="teacher")),
                directory=directory, model=model, state=state, step_fn=step_fn, batches=batches, writer=writer,
                init=vit_init(config, "teacher", tx, ctx.mesh))
        finally:
            writer.close()
    if outcome is None:
        return None
    state, best_eval, last_eval = outcome
    return directory, model, {"params": state.params}, best_eval, last_eval


# ============================================================================================
# Stage 2: the student
# ============================================================================================


def train_student(ctx: RunContext, global_batch: int, teacher, teacher_variables):
    """The KDFAS student; distils from `teacher` when a KD term is on."""
    config = ctx.config
    k, d = config.kdfas, config.data
    student, tx, schedule = student_and_optimizer(config)
    state = init_state(image_model_init(student, d.image_size), tx, rng_key(config.seed), ctx.mesh)
    batches = ctx.source_batches(d.samples_per_group, config.seed, config.train.num_steps)
    distils = k.use_decision_kd or k.use_feature_kd
    step = functools.partial(
        student_train_step, student=student, teacher=teacher if distils else None, tx=tx, schedule=schedule,
        use_decision_kd=k.use_decision_kd, use_feature_kd=k.use_feature_kd, temperature=k.temperature,
        scale_kd_by_t2=k.scale_kd_by_t2, lambda_decision=k.lambda_decision, lambda_feature=k.lambda_feature,
        teacher_blocks=stage_blocks(k.teacher.depth, k.num_stages),
        student_blocks=stage_blocks(k.student.depth, k.num_stages))
    step_fn = jit_train_step(step, ctx.mesh, with_frozen=True)
    frozen = replicate(teacher_variables if distils else {}, ctx.mesh)
    return train_live_spoof_stage(
        ctx, ctx.stage("student", config.train.num_steps, global_batch, NAN_ADVICE.format(role="student")),
        directory=ctx.workdir, model=student, state=state, step_fn=lambda s, b: step_fn(s, frozen, b),
        batches=batches, writer=ctx.writer, init=vit_init(config, "student", tx, ctx.mesh))
