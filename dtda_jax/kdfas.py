"""KDFAS, the project's second method: multi-stage knowledge distillation between ViTs.

Zhang et al., PRCV 2023 (../shared/paper/kdfas-readme.md). Two stages on the protocol's
source domains, both on the framework's data pipeline, loop, checkpoints and evaluation:

1. Teacher: a large ViT trained on live/spoof with cross-entropy, evaluated on the target
   like any model, then frozen. Trained teachers are cached by their settings (data, seed,
   size, optimiser) in `kdfas.teacher_dir`, so every variant and rerun at the same settings
   distils the same teacher; an interrupted teacher resumes from its checkpoint there.
2. Student: a smaller ViT trained with L = CE + lambda_decision * L_KL + lambda_feature *
   L_gram: decision-level KL against the teacher's logits at temperature tau, and
   feature-level distillation at `num_stages` paired blocks, comparing the token Gram
   matrices (losses.token_gram), which are T x T whatever the two widths.

The choices the KDFAS README leaves open are documented in config_lib.kdfas_defaults.
Entry point: `train.train_and_evaluate` hands configs with method.name == "kdfas" here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dtda_jax import config_lib, conversion, losses, train
from dtda_jax.atomic_write import write_json_atomically
from dtda_jax.converters import KIND_VIT
from dtda_jax.data import pipeline
from dtda_jax.models.vit import VisionTransformer
from dtda_jax.run_logging import MetricWriter

# Part of every teacher cache name: bump it when teacher training changes in a way the
# settings do not show.
TEACHER_CACHE_VERSION = 1


def make_vit(size: ml_collections.ConfigDict, dtype: str) -> VisionTransformer:
    return VisionTransformer(patch_size=size.patch_size, width=size.width, depth=size.depth,
                             num_heads=size.num_heads, mlp_dim=size.mlp_dim, num_classes=2,
                             dtype=jnp.dtype(dtype))


def stage_blocks(depth: int, num_stages: int) -> tuple[int, ...]:
    """The last block of each of `num_stages` equal stages: depth 24, 4 stages -> (6, 12, 18, 24)."""
    return tuple(k * depth // num_stages for k in range(1, num_stages + 1))


def _decays(path, _) -> bool:
    """Weight decay on the dense and convolution kernels only (not on biases, LayerNorm
    scales, the class token or the position embeddings), as ViT recipes do."""
    return getattr(path[-1], "key", None) == "kernel"


def make_adamw(o: ml_collections.ConfigDict, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = train.learning_rate_schedule(o, num_steps)
    parts = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm > 0 else []
    parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                             mask=lambda params: jax.tree_util.tree_map_with_path(_decays, params)))
    return optax.chain(*parts), schedule


def student_and_optimizer(config) -> tuple[VisionTransformer, optax.GradientTransformation, optax.Schedule]:
    """The KDFAS student of a config and its optimiser (training and dtda_jax.predict)."""
    tx, schedule = make_adamw(config.kdfas.student_optim, config.train.num_steps)
    return make_vit(config.kdfas.student, config.model.dtype), tx, schedule


VIT_ARCHITECTURE = ("patch_size", "width", "depth", "num_heads", "mlp_dim")


def check_init_checkpoints(config) -> None:
    """Fails before any training if a configured ViT initialisation is missing or the wrong kind."""
    for role in ("teacher", "student"):
        path = config.kdfas[role].init_checkpoint
        if path:
            conversion.check_converted(path, KIND_VIT, f"config.kdfas.{role}.init_checkpoint")


def with_pretrained_vit(state: train.TrainState, role: str, config, tx: optax.GradientTransformation,
                        mesh) -> train.TrainState:
    """Replaces every parameter but the live/spoof head by the converted ViT of
    `kdfas.<role>.init_checkpoint`, after checking its architecture and patch grid."""
    size = config.kdfas[role]
    field = f"config.kdfas.{role}"
    variables, manifest = conversion.load_converted(
        size.init_checkpoint, None, kind=KIND_VIT,
        architecture={k: size[k] for k in VIT_ARCHITECTURE},
        config_fields={k: f"{field}.{k}" for k in VIT_ARCHITECTURE})
    if manifest["architecture"]["image_size"] != config.data.image_size:
        raise config_lib.ConfigError(
            f"{size.init_checkpoint!r} has position embeddings for {manifest['architecture']['image_size']} px "
            f"inputs at patch {size.patch_size}; set config.data.image_size="
            f"{manifest['architecture']['image_size']} (resampling position embeddings is not supported).")
    params = {**variables["params"], "head": state.params["head"]}
    params = jax.device_put(params, train.replicated(mesh))
    print(f"[{role}] initialised from {size.init_checkpoint} (source {manifest['source_file']}, sha256 "
          f"{manifest['source_sha256'][:12]}...); fresh live/spoof head", flush=True)
    opt_state = jax.jit(tx.init, out_shardings=train.replicated(mesh))(params)
    return state.replace(params=params, opt_state=opt_state)


def parameter_count(params: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# ============================================================================================
# Step functions (pure)
# ============================================================================================


def _pretrained_init(role: str, config, tx, mesh):
    if not config.kdfas[role].init_checkpoint:
        return None
    return lambda state: with_pretrained_vit(state, role, config, tx, mesh)


def teacher_train_step(state: train.TrainState, batch: dict[str, jax.Array], *,
                       model: VisionTransformer, tx: optax.GradientTransformation,
                       schedule: optax.Schedule):
    """One teacher step: live/spoof cross-entropy."""
    x = train.images_to_unit_range(batch["image"])

    def loss_fn(params):
        logits = model.apply({"params": params}, x, train=True)["cls_logits"]
        return losses.cross_entropy(logits, batch["label"]), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx)
    return new_state, {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"]),
                       "lr": schedule(state.step)}


def student_train_step(state: train.TrainState, teacher_variables: Any, batch: dict[str, jax.Array], *,
                       student: VisionTransformer, teacher: VisionTransformer | None,
                       tx: optax.GradientTransformation, schedule: optax.Schedule,
                       kd: ml_collections.ConfigDict):
    """One student step: CE, plus the KD terms `kd` switches on, against the frozen teacher.

    Feature KD pairs the tokens after blocks stage_blocks(depth, num_stages) of each model and
    compares their patch tokens' Gram matrices; the class token is left to the decision term.
    """
    x = train.images_to_unit_range(batch["image"])
    feature_kd = kd.use_feature_kd
    student_blocks = stage_blocks(kd.student.depth, kd.num_stages) if feature_kd else ()
    target = None
    if teacher is not None:
        teacher_blocks = stage_blocks(kd.teacher.depth, kd.num_stages) if feature_kd else ()
        target = teacher.apply(teacher_variables, x, train=False, return_blocks=teacher_blocks)

    def loss_fn(params):
        out = student.apply({"params": params}, x, train=True, return_blocks=student_blocks)
        terms = {"loss_fas": losses.cross_entropy(out["cls_logits"], batch["label"])}
        total = terms["loss_fas"]
        if kd.use_decision_kd:
            terms["loss_decision"] = losses.kd_kl_divergence(target["cls_logits"], out["cls_logits"],
                                                             kd.temperature, kd.scale_kd_by_t2)
            total = total + kd.lambda_decision * terms["loss_decision"]
        if feature_kd:
            per_stage = [losses.gram_distillation_loss(t[:, 1:], s[:, 1:])
                         for t, s in zip(target["block_tokens"], out["block_tokens"])]
            for k, term in enumerate(per_stage, 1):
                terms[f"loss_gram_stage{k}"] = term
            terms["loss_feature"] = sum(per_stage) / len(per_stage)
            total = total + kd.lambda_feature * terms["loss_feature"]
        return total, (terms, out["cls_logits"])

    (total, (terms, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx)
    return new_state, {"loss": total, **terms, "accuracy": losses.accuracy(logits, batch["label"]),
                       "lr": schedule(state.step)}


# ============================================================================================
# Stage 1: the teacher (cached)
# ============================================================================================


def teacher_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Everything the trained teacher and its evaluations depend on (its cache key)."""
    data = {k: v for k, v in config.data.to_dict().items() if k != "eval_batch_size"}
    k = config.kdfas
    init = k.teacher.init_checkpoint
    init_sha256 = conversion.read_manifest(init)["source_sha256"] if init else None
    return json.loads(json.dumps({
        "version": TEACHER_CACHE_VERSION, "seed": config.seed, "dtype": config.model.dtype,
        "teacher_init_sha256": init_sha256,
        "data": data, "teacher": k.teacher.to_dict(), "teacher_optim": k.teacher_optim.to_dict(),
        "teacher_num_steps": k.teacher_num_steps, "eval": config.eval.to_dict(),
        "eval_every": config.train.eval_every, "checkpoint_every": config.train.checkpoint_every}))


def teacher_directory(config: ml_collections.ConfigDict, settings: dict[str, Any] | None = None) -> str:
    """<kdfas.teacher_dir or <data_dir>/kdfas_teachers>/vit<depth>x<width>p<patch>_seed<k>_<hash
    of `settings`, by default teacher_settings(config)>."""
    root = config.kdfas.teacher_dir or os.path.join(config.data.data_dir, "kdfas_teachers")
    settings = teacher_settings(config) if settings is None else settings
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    t = config.kdfas.teacher
    return os.path.abspath(os.path.join(
        root, f"vit{t.depth}x{t.width}p{t.patch_size}_seed{config.seed}_{digest}"))


def train_teacher(config, protocol: pipeline.Protocol, mesh, stop_after: int | None):
    """Trains (or resumes, or just restores) the cached teacher; returns (directory, model,
    variables, best eval, last eval), or None when `stop_after` ended it early."""
    k, d = config.kdfas, config.data
    settings = teacher_settings(config)
    directory = teacher_directory(config, settings)
    settings_path = os.path.join(directory, "settings.json")
    if not os.path.exists(settings_path):
        write_json_atomically(settings_path, settings)
    print(f"[teacher] {directory}", flush=True)
    model = make_vit(k.teacher, config.model.dtype)
    tx, schedule = make_adamw(k.teacher_optim, k.teacher_num_steps)
    state = train.init_state(model, tx, train.rng_key(config.seed + 3), d.image_size, mesh)
    global_batch = protocol.num_source_domains * 2 * d.samples_per_group
    iterator = train.source_iterator(config, protocol, d.samples_per_group, config.seed + 3,
                                     k.teacher_num_steps)
    step_fn = train.jit_train_step(
        functools.partial(teacher_train_step, model=model, tx=tx, schedule=schedule), mesh,
        with_frozen=False)
    writer = MetricWriter(directory)
    outcome = train.train_evaluated_stage(
        stage="teacher", state=state, step_fn=step_fn, iterator=iterator, model=model,
        stage_dir=directory, num_steps=k.teacher_num_steps, global_batch=global_batch,
        protocol=protocol, config=config, mesh=mesh, writer=writer, stop_after=stop_after,
        init_fn=_pretrained_init("teacher", config, tx, mesh))
    writer.close()
    if outcome is None:
        return None
    state, best_eval, last_eval = outcome
    return directory, model, {"params": state.params}, best_eval, last_eval


# ============================================================================================
# Entry point
# ============================================================================================


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_after: int | None = None, num_devices: int | None = None) -> dict | None:
    """Runs (or resumes) KDFAS in `workdir`: the teacher (from its cache when trained), then
    the student unless the variant reports the teacher alone. Returns the results dict, or
    None when `stop_after` (counted over teacher steps, then student steps) ended it early."""
    config_lib.validate_config(config)
    check_init_checkpoints(config)
    os.makedirs(workdir, exist_ok=True)
    train.record_config(config, workdir)
    t_start = time.perf_counter()
    k, d = config.kdfas, config.data
    variant = config_lib.variant_name(config)
    print(f"[run] workdir={os.path.abspath(workdir)} method=kdfas variant={variant} "
          f"devices={jax.devices()}", flush=True)
    mesh = train.make_mesh(num_devices)
    protocol = pipeline.load_protocol(config)
    global_batch = protocol.num_source_domains * 2 * d.samples_per_group
    train.check_batch_divisible(global_batch, mesh, "data.samples_per_group")
    writer = MetricWriter(workdir)

    needs_teacher = k.report == "teacher" or k.use_decision_kd or k.use_feature_kd
    teacher_info, teacher, teacher_variables = None, None, {}
    # best_eval / last_eval: the teacher's, replaced by the student's when one is trained.
    if needs_teacher:
        outcome = train_teacher(config, protocol, mesh, stop_after)
        if outcome is None:
            writer.close()
            return None
        directory, teacher, teacher_variables, best_eval, last_eval = outcome
        teacher_info = {"directory": directory, "architecture": k.teacher.to_dict(),
                        "parameters": parameter_count(teacher_variables["params"]),
                        "steps": k.teacher_num_steps,
                        "by_selection": {"best_on_target": best_eval, "last": last_eval}}
        print(f"[teacher] ViT {k.teacher.depth} blocks x {k.teacher.width}: "
              f"{teacher_info['parameters']:,} parameters; target AUC {100 * last_eval['auc']:.2f}% "
              f"at its last step {last_eval['step']}", flush=True)
        stop_after = None if stop_after is None else stop_after - k.teacher_num_steps

    student_info = None
    if k.report == "student":
        student, tx, schedule = student_and_optimizer(config)
        state = train.init_state(student, tx, train.rng_key(config.seed), d.image_size, mesh)
        iterator = train.source_iterator(config, protocol, d.samples_per_group, config.seed,
                                         config.train.num_steps)
        distils = k.use_decision_kd or k.use_feature_kd
        step = functools.partial(student_train_step, student=student, tx=tx, schedule=schedule, kd=k,
                                 teacher=teacher if distils else None)
        step_fn = train.jit_train_step(step, mesh, with_frozen=True)
        frozen = jax.device_put(teacher_variables if distils else {}, train.replicated(mesh))
        outcome = train.train_evaluated_stage(
            stage="student", state=state, step_fn=lambda s, b: step_fn(s, frozen, b), iterator=iterator,
            model=student, stage_dir=workdir, num_steps=config.train.num_steps,
            global_batch=global_batch, protocol=protocol, config=config, mesh=mesh, writer=writer,
            stop_after=stop_after, init_fn=_pretrained_init("student", config, tx, mesh))
        if outcome is None:
            writer.close()
            return None
        state, best_eval, last_eval = outcome
        student_info = {"architecture": k.student.to_dict(), "parameters": parameter_count(state.params),
                        "distilled_from": teacher_info["directory"] if distils else None}

    selection = {"best_on_target": best_eval, "last": last_eval}
    results = {
        "protocol": train.protocol_name(protocol),
        "variant": variant,
        "method": {"name": "kdfas", **{key: k[key] for key in config_lib.KDFAS_VARIANTS["kdfas"]}},
        "selection": config.eval.selection,
        "threshold_policy": config.eval.threshold_policy,
        "video_reduce": config.eval.video_reduce,
        "reported": selection[config.eval.selection],
        "by_selection": selection,
        "teacher": teacher_info,
        "student": student_info,
        "wall_time_s_this_process": time.perf_counter() - t_start,
    }
    train.finish_run(results, workdir, writer, t_start, print_models)
    return results


def print_models(results: dict) -> None:
    """Which model the reported numbers belong to, and the sizes."""
    parts = []
    for role in ("teacher", "student"):
        info = results[role]
        if info is not None:
            a = info["architecture"]
            parts.append(f"{role} ViT {a['depth']} blocks x {a['width']} (patch {a['patch_size']}, "
                         f"{info['parameters']:,} parameters)")
    reported = "the teacher alone" if results["student"] is None else "the student"
    print(f"KDFAS: {'; '.join(parts)}. Reported: {reported}.", flush=True)
