"""DTDA's stages: the domain classifier (trained first on the source domains, then frozen),
the teachers (converted, the project's own, or random), and the student.

Each stage reads the config and binds the numbers its pure step function takes
(dtda_jax/methods/dtda/steps.py); training goes through the one loop (dtda_jax/core/loop.py).
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dtda_jax.core import artifacts, optim, xla_cpu
from dtda_jax.core.checkpointing import StageCheckpoints
from dtda_jax.core.loop import jit_train_step, run_stage
from dtda_jax.core.sharding import replicate
from dtda_jax.core.state import TrainState, image_model_init, init_state, rng_key, with_converted_weights
from dtda_jax.data import pipeline
from dtda_jax.evaluation.fas import sharded_frame_scores
from dtda_jax.inference.scoring import images_to_unit_range
from dtda_jax.methods.common import RunContext, train_live_spoof_stage
from dtda_jax.methods.dtda.steps import (AttackSettings, attack_images, domain_classifier_train_step,
                                         student_train_step)
from dtda_jax.models import DTDAStudent, ResNet18Classifier
from dtda_jax.teachers import frozen as frozen_teachers
from dtda_jax.weights.store import KIND_RESNET18

NAN_ADVICE = ("Lower the learning rate (config.optim.learning_rate), enable clipping "
              "(config.optim.grad_clip_norm) or check the input data.")


def teacher_names(config) -> tuple[str, ...]:
    """The teachers the configured variant distils from (none for the baseline)."""
    m = config.method
    return tuple(name for name, used in (("fr", m.use_fr_teacher), ("fa", m.use_fa_teacher)) if used)


def make_teachers(config) -> dict[str, frozen_teachers.Teacher]:
    return frozen_teachers.make_teachers(config.teachers, teacher_names(config), config.model.dtype)


def attack_settings(config) -> AttackSettings:
    a = config.attack
    return AttackSettings(epsilon=a.epsilon, num_steps=a.num_steps, step_size=a.step_size,
                          random_start=a.random_start)


def encoder_init(config, field: str, tx, mesh):
    """A fresh state's encoder (weights and BN statistics) replaced by the converted ImageNet
    ResNet-18 of `config.<field>.init_checkpoint` (tools/convert_resnet18.py); heads keep their
    fresh initialisation. None when the field is empty (random init)."""
    section = config[field]
    if not section.init_checkpoint:
        return None

    def merge(state, variables):
        return ({**state.params, "encoder": variables["params"]["encoder"]},
                {**state.batch_stats, "encoder": variables["batch_stats"]["encoder"]})

    return lambda state: with_converted_weights(
        state, section.init_checkpoint, kind=KIND_RESNET18, architecture={"width": section.width},
        config_fields={"width": f"config.{field}.width"}, merge=merge, tx=tx, mesh=mesh,
        label=f"[{field}] encoder initialised from")


# ============================================================================================
# Stage 1: domain classifier
# ============================================================================================


def domain_accuracy(model, variables: Any, frames: pipeline.FrameSet, mesh, batch_size: int,
                    attack: AttackSettings | None) -> float:
    """Domain accuracy on `frames` for clean images, or for attacked ones when `attack` is set."""

    @functools.partial(jax.jit, compiler_options=xla_cpu.compiler_options(xla_cpu.TRAINING))
    def predict(images, domains):  # the frozen classifier's variables are closed over
        x = images_to_unit_range(images)
        if attack is not None:
            x = attack_images(x, domains, model, variables, attack, rng_key(0))
        return jnp.argmax(model.apply(variables, x, train=False), axis=-1)

    predicted = sharded_frame_scores(lambda _, batch: predict(batch["image"], batch["domain"]), None, frames,
                                     batch_size, mesh, keys=("domain",))
    return int((predicted == np.asarray(frames.domain)).sum()) / len(frames)


def domain_classifier_optimizer(dc: ml_collections.ConfigDict):
    schedule = optim.learning_rate_schedule(dc.learning_rate, dc.num_steps, "constant")
    return optim.make_optimizer("sgd", schedule, momentum=dc.momentum, weight_decay=dc.weight_decay)


def train_domain_classifier(ctx: RunContext):
    """Trains E_d on the source domains (or restores it), then freezes it; returns (model,
    variables, report), or None when the run was stopped early. The report (source-val domain
    accuracy, clean and attacked) is computed once and kept in domain_classifier.json."""
    config, dc = ctx.config, ctx.config.domain_classifier
    model = ResNet18Classifier(num_classes=ctx.protocol.num_source_domains, width=dc.width,
                               dtype=jnp.dtype(config.model.dtype))
    tx = domain_classifier_optimizer(dc)
    global_batch = ctx.global_batch(dc.samples_per_group, "domain_classifier.samples_per_group")
    state = init_state(image_model_init(model, config.data.image_size), tx, rng_key(config.seed + 1), ctx.mesh)
    batches = ctx.source_batches(dc.samples_per_group, config.seed + 1, dc.num_steps)
    step_fn = jit_train_step(functools.partial(domain_classifier_train_step, model=model, tx=tx), ctx.mesh,
                             with_frozen=False)
    checkpoints = StageCheckpoints(os.path.join(ctx.workdir, "checkpoints", "domain_classifier"))
    try:
        state, finished = run_stage(
            ctx.stage("domain_classifier", dc.num_steps, global_batch,
                      "Lower config.domain_classifier.learning_rate or check the input data."),
            state, step_fn, batches, ctx.mesh, checkpoints, ctx.writer,
            init=encoder_init(config, "domain_classifier", tx, ctx.mesh), stop=ctx.stop)
    finally:
        checkpoints.close()
    if not finished:
        return None
    variables = state.variables
    attack = attack_settings(config)

    def report():
        val, batch_size = ctx.protocol.source_val, config.data.eval_batch_size
        return {"source_val_domain_acc_clean": domain_accuracy(model, variables, val, ctx.mesh, batch_size, None),
                "source_val_domain_acc_attacked": domain_accuracy(model, variables, val, ctx.mesh, batch_size,
                                                                  attack),
                "chance": 1.0 / ctx.protocol.num_source_domains, "steps": dc.num_steps}

    result, computed = artifacts.cached_json(os.path.join(ctx.workdir, "domain_classifier.json"), report)
    if computed:
        ctx.writer.write("domain_classifier_eval", dc.num_steps, result)
    print(f"[domain_classifier] source-val domain accuracy: clean "
          f"{100 * result['source_val_domain_acc_clean']:.1f}% -> attacked (eps "
          f"{config.attack.epsilon}/255) {100 * result['source_val_domain_acc_attacked']:.1f}% "
          f"(chance {100 * result['chance']:.1f}%)", flush=True)
    return model, variables, result


# ============================================================================================
# Teachers
# ============================================================================================


def with_own_teachers(ctx: RunContext) -> ml_collections.ConfigDict | None:
    """The config with each empty teacher checkpoint pointing at the project's own trained
    teacher when `teachers.own_teachers` is on (trained first if its cache lacks it, see
    dtda_jax/teachers/training.py); unchanged otherwise; None when the run was stopped during
    that training. The recorded config.json keeps the empty paths: the cache name follows from
    the config, so a resumed run finds the same teachers."""
    config, t = ctx.config, ctx.config.teachers
    names = [n for n in teacher_names(config) if not t[f"{n}_checkpoint"]]
    if not t.own_teachers or not names:
        return config
    from dtda_jax.teachers import training  # the face corpus renderer is only needed here

    cache_dir = t.own_teachers_dir or os.path.join(config.data.data_dir, "teachers")
    paths = training.ensure_trained_teachers(config, cache_dir, t.own_training, names=names, mesh=ctx.mesh,
                                             stop=ctx.stop)
    if paths is None:
        return None
    config = copy.deepcopy(config)
    for name, path in paths.items():
        config.teachers[f"{name}_checkpoint"] = path
    return config


def face_pretraining_targets(config, every_role: bool = False) -> list:
    """The student encoder pre-trained on the face corpus, when `model.pretrain_on_faces` is on
    and `model.init_checkpoint` is empty (dtda_jax/teachers/pretraining.py)."""
    m = config.model
    if not m.pretrain_on_faces or m.init_checkpoint:
        return []
    from dtda_jax.teachers import pretraining  # the face corpus renderer is only needed here

    return [pretraining.Target("model.init_checkpoint", pretraining.resnet18_backbone(m.width, config.data.image_size),
                               m.face_pretraining, "model.face_pretraining",
                               pretraining.cache_dir(config, m.pretrained_dir))]


def with_face_pretrained_encoder(ctx: RunContext, config: ml_collections.ConfigDict
                                 ) -> ml_collections.ConfigDict | None:
    """`config` with `model.init_checkpoint` pointing at the face-pretrained encoder when
    `model.pretrain_on_faces` is on (pre-trained first if the cache lacks it); unchanged
    otherwise; None when the run was stopped during the pre-training. The recorded
    config.json keeps the empty path."""
    targets = face_pretraining_targets(config)
    if not targets:
        return config
    from dtda_jax.teachers import pretraining

    return pretraining.with_pretrained(config, targets, mesh=ctx.mesh, stop=ctx.stop)


# ============================================================================================
# Stage 2: student
# ============================================================================================


def make_student(config, teachers: dict) -> DTDAStudent:
    fr_dim = teachers["fr"].output_dim if "fr" in teachers else 512
    fa_dim = teachers["fa"].output_dim if "fa" in teachers else config.teachers.fa_c_dim
    num_domains = len(config.data.source_domains) if config.method.use_grl_domain_head else 0
    return DTDAStudent(width=config.model.width, num_classes=2, fr_dim=fr_dim, fa_dim=fa_dim,
                       num_domains=num_domains, dtype=jnp.dtype(config.model.dtype))


def student_optimizer(config):
    o = config.optim
    schedule = optim.learning_rate_schedule(o.learning_rate, config.train.num_steps, o.schedule,
                                            o.warmup_steps, o.step_boundaries)
    return optim.make_optimizer("sgd", schedule, momentum=o.momentum, weight_decay=o.weight_decay,
                                grad_clip_norm=o.grad_clip_norm), schedule


def student_step(config, student, tx, schedule, teachers, domain_model, mesh):
    """The jitted student step of `config`: `step(state, frozen, batch)`."""
    loss = config.loss
    step = functools.partial(
        student_train_step, student=student, tx=tx, schedule=schedule, teachers=teachers,
        domain_model=domain_model, attack=attack_settings(config), seed=config.seed,
        num_steps=config.train.num_steps, lambda_fr=loss.lambda_fr, lambda_fa=loss.lambda_fa,
        lambda_domain=loss.lambda_domain, temperature=loss.temperature, scale_kd_by_t2=loss.scale_kd_by_t2)
    return jit_train_step(step, mesh, with_frozen=True)


def train_student(ctx: RunContext, config, teachers: dict, frozen: dict, domain_model
                  ) -> tuple[TrainState, dict, dict] | None:
    """The DTDA student through the evaluated live/spoof stage; `config` has the teachers'
    checkpoint paths filled in (own teachers)."""
    student = make_student(config, teachers)
    tx, schedule = student_optimizer(config)
    d = config.data
    global_batch = ctx.global_batch(d.samples_per_group, "data.samples_per_group")
    state = init_state(image_model_init(student, d.image_size), tx, rng_key(config.seed), ctx.mesh)
    batches = ctx.source_batches(d.samples_per_group, config.seed, config.train.num_steps)
    step_fn = student_step(config, student, tx, schedule, teachers, domain_model, ctx.mesh)
    frozen = replicate(frozen, ctx.mesh)
    return train_live_spoof_stage(
        ctx, ctx.stage("student", config.train.num_steps, global_batch, NAN_ADVICE), directory=ctx.workdir,
        model=student, state=state, step_fn=lambda s, b: step_fn(s, frozen, b), batches=batches,
        writer=ctx.writer, init=encoder_init(config, "model", tx, ctx.mesh))
