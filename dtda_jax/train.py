"""DTDA training and evaluation, top to bottom.

Sections: mesh and sharding; state and optimiser; the pure step functions (domain classifier,
student); the shared loop (logging, NaN guard, checkpoints, resume); evaluation; the two
stages; `train_and_evaluate`, the entry point `dtda_jax.main` calls.

Numerics are pure jitted functions over parameter trees; files, logs and checkpoints stay in
the loop. Every step is jitted once over a 1-D device mesh with the batch sharded on the
`data` axis and the state replicated, so BatchNorm statistics and gradients are computed
over the global batch and the result does not depend on the number of devices.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from flax.traverse_util import flatten_dict
from jax.sharding import NamedSharding, PartitionSpec as P

from dtda_jax import config_lib, conversion, losses, xla_cpu
from dtda_jax.attack import domain_adversarial_attack
from dtda_jax.checkpointing import StageCheckpoints
from dtda_jax.converters import KIND_RESNET18
from dtda_jax.data import pipeline
from dtda_jax.evaluation import metrics as fas_metrics
from dtda_jax.models import DTDAStudent, ResNet18Classifier
from dtda_jax.run_logging import MetricWriter, Progress, format_duration
from dtda_jax.teachers import RANDOM_INIT, TEACHER_KINDS, init_teacher_variables, make_teachers


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/Inf; raised before a bad state can be checkpointed."""


# ============================================================================================
# Mesh and sharding
# ============================================================================================


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D data-parallel mesh over the first `num_devices` devices (default: all)."""
    devices = jax.devices()[:num_devices] if num_devices else jax.devices()
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def put_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Process-local numpy batch -> global arrays sharded over the data axis."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def check_batch_divisible(global_batch: int, mesh, field: str) -> None:
    if global_batch % mesh.size:
        raise config_lib.ConfigError(
            f"config.{field}: the global batch of {global_batch} does not split evenly over "
            f"{mesh.size} devices; choose a value that makes it a multiple of {mesh.size}.")


# ============================================================================================
# State and optimiser
# ============================================================================================


def rng_key(seed: int) -> jax.Array:
    """A typed PRNG key with the `rbg` implementation.

    Flax initialisers draw one random tensor per parameter; with the default threefry
    implementation XLA:CPU spends ~10 s compiling those hashes for a ResNet (~3 s with rbg).
    rbg streams are deterministic for a given backend, which is what resume and
    reproducibility need.
    """
    return jax.random.key(seed, impl="rbg")


class TrainState(struct.PyTreeNode):
    """Everything a stage updates; checkpointed as one tree."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def apply_gradients(self, grads: Any, tx: optax.GradientTransformation, **changes) -> "TrainState":
        """The state after one optimiser step on `grads` (step + 1), with `changes` (e.g. the
        new batch_stats) replacing fields."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state, **changes)


def learning_rate_schedule(o: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    if o.schedule == "constant":
        main = optax.constant_schedule(o.learning_rate)
    elif o.schedule == "cosine":
        main = optax.cosine_decay_schedule(o.learning_rate, max(num_steps - o.warmup_steps, 1))
    else:  # "step"
        main = optax.piecewise_constant_schedule(
            o.learning_rate, {int(b) - o.warmup_steps: 0.1 for b in o.step_boundaries})
    if o.warmup_steps:
        warmup = optax.linear_schedule(0.0, o.learning_rate, o.warmup_steps)
        return optax.join_schedules([warmup, main], [o.warmup_steps])
    return main


def make_optimizer(schedule: optax.Schedule, momentum: float, weight_decay: float,
                   grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
    """PyTorch-style SGD: g + wd * p, then heavy-ball momentum (dampening 0), as in the paper."""
    parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []
    parts += [optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=momentum)]
    return optax.chain(*parts)


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               image_size: int, mesh) -> TrainState:
    """Initialises params and optimiser state directly as replicated arrays on the mesh."""

    def init():
        variables = model.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))

    return jax.jit(init, out_shardings=replicated(mesh))()


def with_pretrained_encoder(state: TrainState, path: str, width: int, field: str,
                            tx: optax.GradientTransformation, mesh) -> TrainState:
    """Replaces the `encoder` subtree (weights and BN statistics) by a converted ImageNet
    ResNet-18 (tools/convert_resnet18.py); the heads keep their fresh initialisation."""
    variables, manifest = conversion.load_converted(
        path, None, kind=KIND_RESNET18, architecture={"width": width},
        config_fields={"width": f"config.{field}.width"})
    params = {**state.params, "encoder": variables["params"]["encoder"]}
    batch_stats = {**state.batch_stats, "encoder": variables["batch_stats"]["encoder"]}
    params, batch_stats = jax.device_put((params, batch_stats), replicated(mesh))
    print(f"[{field}] encoder initialised from ImageNet ResNet-18 {path} (source "
          f"{manifest['source_file']}, sha256 {manifest['source_sha256'][:12]}...)", flush=True)
    opt_state = jax.jit(tx.init, out_shardings=replicated(mesh))(params)
    return state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)


def check_weight_files(config) -> None:
    """Fails before any training if a configured converted checkpoint is missing or the wrong kind."""
    m = config.method
    wanted = [(config.model.init_checkpoint, KIND_RESNET18, "config.model.init_checkpoint")]
    if m.use_domain_attack:
        wanted.append((config.domain_classifier.init_checkpoint, KIND_RESNET18,
                       "config.domain_classifier.init_checkpoint"))
    if m.use_fr_teacher:
        wanted.append((config.teachers.fr_checkpoint, TEACHER_KINDS["fr"], "config.teachers.fr_checkpoint"))
    if m.use_fa_teacher:
        wanted.append((config.teachers.fa_checkpoint, TEACHER_KINDS["fa"], "config.teachers.fa_checkpoint"))
    for path, kind, field in wanted:
        if path:
            conversion.check_converted(path, kind, field)


def weights_provenance(path: str) -> dict[str, Any]:
    """Where a run's pretrained weights came from, as recorded in results.json."""
    if not path:
        return {"origin": RANDOM_INIT}
    manifest = conversion.read_manifest(path)
    return {"origin": os.path.abspath(path), "kind": manifest["kind"],
            "source_file": manifest["source_file"], "source_sha256": manifest["source_sha256"],
            "architecture": manifest["architecture"],
            **{k: manifest[k] for k in ("trained_by", "quality") if k in manifest}}  # own teachers


def images_to_unit_range(images: jax.Array) -> jax.Array:
    """uint8 0..255 (how batches travel to the device) -> float32 in [0, 1]."""
    return images.astype(jnp.float32) / 255.0


# ============================================================================================
# Step functions (pure)
# ============================================================================================


def domain_classifier_train_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
                                 tx: optax.GradientTransformation):
    """One step of Eq. (1): cross-entropy over the source-domain labels."""
    x = images_to_unit_range(batch["image"])

    def loss_fn(params):
        logits, mutated = model.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
        return losses.cross_entropy(logits, batch["domain"]), (mutated["batch_stats"], logits)

    (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx, batch_stats=batch_stats)
    return new_state, {"loss": loss, "domain_acc": losses.accuracy(logits, batch["domain"])}


def attack_images(images01: jax.Array, domains: jax.Array, domain_model: nn.Module,
                  domain_variables: Any, attack: ml_collections.ConfigDict, key: jax.Array) -> jax.Array:
    """Eq. (2) with the frozen domain classifier (inference-mode BatchNorm)."""
    def logits_fn(x):
        return domain_model.apply(domain_variables, x, train=False)

    return domain_adversarial_attack(
        logits_fn, images01, domains, epsilon=attack.epsilon / 255.0, num_steps=attack.num_steps,
        step_size=attack.step_size / 255.0, key=key, random_start=attack.random_start)


def student_train_step(state: TrainState, frozen: dict[str, Any], batch: dict[str, jax.Array], *,
                       student: nn.Module, tx: optax.GradientTransformation, teachers: dict,
                       domain_model: nn.Module | None, config: ml_collections.ConfigDict,
                       schedule: optax.Schedule):
    """One DTDA step: attack (optional) -> frozen teachers -> student update with Eq. (9).

    `frozen` holds the teachers' variables and the domain classifier's; they are arguments
    rather than closed-over constants so large teachers are not baked into the program.
    """
    clean = images_to_unit_range(batch["image"])
    x = clean
    metrics = {}
    if domain_model is not None:
        key = jax.random.fold_in(rng_key(config.seed), state.step)
        x = attack_images(clean, batch["domain"], domain_model, frozen["domain"], config.attack, key)
        metrics["attack_linf_255"] = jnp.max(jnp.abs(x - clean)) * 255.0
    soft_labels = {name: teacher.logits(frozen[name], x) for name, teacher in teachers.items()}
    weights = {"fr": config.loss.lambda_fr, "fa": config.loss.lambda_fa}
    student_outputs = {"fr": "fr_embedding", "fa": "fa_logits"}

    grl_scale = losses.ganin_reversal_scale(state.step / config.train.num_steps)

    def loss_fn(params):
        out, mutated = student.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                     train=True, mutable=["batch_stats"], grl_scale=grl_scale)
        terms = {"loss_fas": losses.cross_entropy(out["cls_logits"], batch["label"])}
        total = terms["loss_fas"]
        for name, target in soft_labels.items():
            term = losses.kd_kl_divergence(target, out[student_outputs[name]],
                                           config.loss.temperature, config.loss.scale_kd_by_t2)
            terms[f"loss_{name}"] = term
            total = total + weights[name] * term
        if "domain_logits" in out:  # "dat": reversed gradient into the features
            terms["loss_domain"] = losses.cross_entropy(out["domain_logits"], batch["domain"])
            terms["domain_acc"] = losses.accuracy(out["domain_logits"], batch["domain"])
            total = total + config.loss.lambda_domain * terms["loss_domain"]
        return total, (mutated["batch_stats"], terms, out["cls_logits"])

    (total, (batch_stats, terms, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx, batch_stats=batch_stats)
    metrics.update(loss=total, **terms, accuracy=losses.accuracy(logits, batch["label"]),
                   lr=schedule(state.step))
    return new_state, metrics


def live_probability(variables: Any, images: jax.Array, *, student: nn.Module) -> jax.Array:
    """Frame score = live probability (class 1) of the student's classification head."""
    out = student.apply(variables, images_to_unit_range(images), train=False)
    return jax.nn.softmax(out["cls_logits"].astype(jnp.float32), axis=-1)[:, 1]


def jit_live_probability(student: nn.Module) -> Callable:
    """`live_probability` jitted for scoring batches of uint8 frames."""
    return jax.jit(functools.partial(live_probability, student=student),
                   compiler_options=xla_cpu.compiler_options(xla_cpu.SCORING))


def jit_train_step(step_fn: Callable, mesh, with_frozen: bool) -> Callable:
    """Jits a step with replicated state (donated) and a data-sharded batch."""
    repl, data = replicated(mesh), batch_sharded(mesh)
    in_shardings = (repl, repl, data) if with_frozen else (repl, data)
    return jax.jit(step_fn, in_shardings=in_shardings, out_shardings=(repl, repl), donate_argnums=0,
                   compiler_options=xla_cpu.compiler_options(xla_cpu.TRAINING))


# ============================================================================================
# The shared loop
# ============================================================================================


def first_nonfinite(history: list[tuple[int, dict]]) -> int | None:
    for step, m in history:
        if not math.isfinite(float(m["loss"])):
            return step
    return None


def run_stage(*, stage: str, state: TrainState, step_fn: Callable, data_iterator, mesh,
              num_steps: int, global_batch: int, log_every: int, checkpoint_every: int,
              checkpoints: StageCheckpoints, writer: MetricWriter,
              on_checkpoint: Callable[[int, TrainState], None] | None = None,
              stop_after: int | None = None) -> TrainState:
    """Runs `step_fn` until `num_steps`; logs, guards against NaN/Inf and checkpoints.

    Metrics stay on the device between log points (no per-step host sync); at each log point
    the losses of every step since the last one are checked, so a NaN/Inf is reported with the
    exact step, before any checkpoint of that state is written. `stop_after` ends the stage
    early at that step, exactly as a preempted job would stop (used to test resume).
    """
    step = int(jax.device_get(state.step))
    progress = Progress(stage, num_steps, global_batch, step)
    pending: list[tuple[int, dict]] = []
    end = num_steps if stop_after is None else min(num_steps, stop_after)
    while step < end:
        batch = put_batch(next(data_iterator), mesh)
        state, metrics = step_fn(state, batch)
        step += 1
        pending.append((step, metrics))
        at_log = step % log_every == 0 or step == end
        at_checkpoint = step % checkpoint_every == 0 or step == end
        if not (at_log or at_checkpoint):
            continue
        history = jax.device_get(pending)
        pending = []
        bad = first_nonfinite(history)
        if bad is not None:
            raise NonFiniteLossError(
                f"[{stage}] the loss became {history[bad - history[0][0]][1]['loss']} at step {bad}. "
                "The run stopped before saving that state; the last good checkpoint is in "
                f"{checkpoints.directory}. Lower the learning rate (config.optim.learning_rate), "
                "enable clipping (config.optim.grad_clip_norm) or check the input data.")
        if at_log:
            means = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
            print(progress.line(step, means), flush=True)
            writer.write(stage, step, means)
        if at_checkpoint:
            checkpoints.save(step, state, data_iterator)
            if on_checkpoint is not None:
                on_checkpoint(step, state)
    return state


# ============================================================================================
# Evaluation
# ============================================================================================


def source_iterator(config, protocol: pipeline.Protocol, samples_per_group: int, seed: int,
                    num_steps: int):
    """Balanced (domain x live/spoof) training batches of the source domains, with the
    config's augmentation, this process's share of each global batch."""
    d = config.data
    return pipeline.balanced_train_iterator(
        protocol.train, protocol.domain_names, protocol.num_source_domains, samples_per_group,
        seed=seed, num_steps=num_steps, flip=d.augment_flip, crop_padding=d.augment_crop_padding,
        process_index=jax.process_index(), process_count=jax.process_count())


def sharded_eval_batches(frames: pipeline.FrameSet, batch_size: int, mesh):
    """`pipeline.eval_batches` on the mesh, the batch size rounded up to a multiple of the
    device count; yields (sharded batch, valid)."""
    batch_size = -(-batch_size // mesh.size) * mesh.size
    for batch, valid in pipeline.eval_batches(frames, batch_size):
        yield put_batch(batch, mesh), valid


def score_frames(score_fn: Callable, variables: Any, frames: pipeline.FrameSet, batch_size: int,
                 mesh) -> np.ndarray:
    """Live probability of every frame, in frame order."""
    scores = []
    for batch, valid in sharded_eval_batches(frames, batch_size, mesh):
        out = score_fn(variables, batch["image"])
        scores.append(np.asarray(jax.device_get(out))[:valid])
    return np.concatenate(scores)


def video_level(frames: pipeline.FrameSet, frame_scores: np.ndarray, reduce: str):
    scores, labels, _ = fas_metrics.aggregate_by_video(frame_scores, frames.label, frames.video,
                                                       reduce=reduce)
    return labels, scores


def evaluate_student(score_fn: Callable, variables: Any, protocol: pipeline.Protocol,
                     config: ml_collections.ConfigDict, mesh) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Cross-domain metrics on the target videos (and source-val AUC), as plain floats, and
    the per-video labels and scores they came from (for ROC curves)."""
    e = config.eval
    bs = config.data.eval_batch_size
    target = video_level(protocol.target, score_frames(score_fn, variables, protocol.target, bs, mesh),
                         e.video_reduce)
    source_val = video_level(protocol.source_val,
                             score_frames(score_fn, variables, protocol.source_val, bs, mesh),
                             e.video_reduce)
    result = fas_metrics.evaluate(*target, threshold_policy=e.threshold_policy, source_val=source_val,
                                  fixed_threshold=e.fixed_threshold, fpr_targets=tuple(e.fpr_targets))
    result["source_val_auc"] = fas_metrics.roc_auc(*source_val)
    scores = {"target_labels": target[0], "target_scores": target[1],
              "source_val_labels": source_val[0], "source_val_scores": source_val[1]}
    return result, scores


def is_better(new: dict, best: dict | None) -> bool:
    """Best-on-target selection: lower HTER, then higher AUC."""
    if best is None:
        return True
    return (new["hter"], -new["auc"]) < (best["hter"], -best["auc"])


def train_evaluated_stage(*, stage: str, state: TrainState, step_fn: Callable, iterator, model: nn.Module,
                          stage_dir: str, num_steps: int, global_batch: int, protocol: pipeline.Protocol,
                          config: ml_collections.ConfigDict, mesh, writer: MetricWriter,
                          init_fn: Callable[[TrainState], TrainState] | None = None,
                          stop_after: int | None = None) -> tuple[TrainState, dict, dict] | None:
    """Trains a live/spoof model (resumable) with evaluation on the target every
    `train.eval_every` steps and at the end; returns (state, best-on-target eval, last eval),
    or None when `stop_after` ended it early.

    Files under `stage_dir`: checkpoints/<stage> (latest, for resume), checkpoints/<stage>_best,
    best.json, eval.jsonl (one line per evaluation) and scores/step_*.npz (per-video labels
    and scores). `init_fn` replaces the fresh state when there is nothing to resume (e.g.
    ImageNet initialisation). `model` must return "cls_logits" (scored by live_probability).
    """
    if config.train.eval_every % config.train.checkpoint_every:
        raise config_lib.ConfigError(
            "config.train.eval_every must be a multiple of config.train.checkpoint_every (evaluation "
            f"runs on checkpointed states); got {config.train.eval_every} and "
            f"{config.train.checkpoint_every}.")
    latest = StageCheckpoints(os.path.join(stage_dir, "checkpoints", stage))
    best = StageCheckpoints(os.path.join(stage_dir, "checkpoints", f"{stage}_best"), with_data=False)
    best_path = os.path.join(stage_dir, "best.json")
    eval_path = os.path.join(stage_dir, "eval.jsonl")
    scores_dir = os.path.join(stage_dir, "scores")
    best_eval = None
    if latest.latest_step() is not None:
        state = latest.restore(state, iterator)
        done = int(state.step)
        print(f"[{stage}] resumed from step {done}" if done < num_steps else
              f"[{stage}] already trained ({done} steps), restored", flush=True)
        if os.path.exists(best_path):
            with open(best_path) as f:
                best_eval = json.load(f)
    elif init_fn is not None:
        state = init_fn(state)
    score_fn = jit_live_probability(model)

    def evaluate(step: int, st: TrainState) -> dict:
        result, scores = evaluate_student(score_fn, {"params": st.params, "batch_stats": st.batch_stats},
                                          protocol, config, mesh)
        result["step"] = step
        os.makedirs(scores_dir, exist_ok=True)
        path = os.path.join(scores_dir, f"step_{step:07d}.npz")
        with open(path + ".tmp", "wb") as f:  # renamed when complete: never a half-written file
            np.savez(f, **scores)
        os.replace(path + ".tmp", path)
        writer.write("eval", step, {k: v for k, v in result.items() if k != "threshold_policy"})
        with open(eval_path, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"[eval {stage}] step {step}: target HTER {100 * result['hter']:.2f}% "
              f"({result['threshold_policy']}) AUC {100 * result['auc']:.2f}% "
              f"| source-val AUC {100 * result['source_val_auc']:.2f}%", flush=True)
        return result

    def on_checkpoint(step: int, st: TrainState) -> None:
        nonlocal best_eval
        if step % config.train.eval_every and step != num_steps:
            return
        result = evaluate(step, st)
        if is_better(result, best_eval):
            best_eval = result
            best.save(step, st)
            with open(best_path, "w") as f:
                json.dump(result, f, indent=2)

    state = run_stage(stage=stage, state=state, step_fn=step_fn, data_iterator=iterator, mesh=mesh,
                      num_steps=num_steps, global_batch=global_batch, log_every=config.train.log_every,
                      checkpoint_every=config.train.checkpoint_every, checkpoints=latest, writer=writer,
                      on_checkpoint=on_checkpoint, stop_after=stop_after)
    latest.close()
    best.close()
    if int(state.step) < num_steps:
        return None
    last_eval = None
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            evals = [json.loads(line) for line in f]
        last_eval = next((e for e in reversed(evals) if e["step"] == num_steps), None)
    if last_eval is None:
        last_eval = evaluate(num_steps, state)
    return state, best_eval, last_eval


# ============================================================================================
# Stage 1: domain classifier
# ============================================================================================


def domain_accuracy(model: nn.Module, variables: Any, frames: pipeline.FrameSet, mesh,
                    batch_size: int, attack: ml_collections.ConfigDict | None) -> float:
    """Domain accuracy on `frames` for clean images, or for attacked ones when `attack` is set."""

    @functools.partial(jax.jit, compiler_options=xla_cpu.compiler_options(xla_cpu.TRAINING))
    def predict(images, domains):
        x = images_to_unit_range(images)
        if attack is not None:
            x = attack_images(x, domains, model, variables, attack, rng_key(0))
        return jnp.argmax(model.apply(variables, x, train=False), axis=-1)

    correct = 0
    for batch, valid in sharded_eval_batches(frames, batch_size, mesh):
        pred = np.asarray(jax.device_get(predict(batch["image"], batch["domain"])))
        domains = np.asarray(jax.device_get(batch["domain"]))
        correct += int((pred[:valid] == domains[:valid]).sum())
    return correct / len(frames)


def train_domain_classifier(config, protocol: pipeline.Protocol, mesh, workdir: str,
                            writer: MetricWriter, stop_after: int | None = None):
    """Trains E_d on the source domains (or restores it), then freezes it."""
    dc = config.domain_classifier
    d = config.data
    model = ResNet18Classifier(num_classes=protocol.num_source_domains, width=dc.width,
                               dtype=jnp.dtype(config.model.dtype))
    schedule = optax.constant_schedule(dc.learning_rate)
    tx = make_optimizer(schedule, dc.momentum, dc.weight_decay)
    global_batch = protocol.num_source_domains * 2 * dc.samples_per_group
    check_batch_divisible(global_batch, mesh, "domain_classifier.samples_per_group")
    state = init_state(model, tx, rng_key(config.seed + 1), d.image_size, mesh)
    iterator = source_iterator(config, protocol, dc.samples_per_group, config.seed + 1, dc.num_steps)
    checkpoints = StageCheckpoints(os.path.join(workdir, "checkpoints", "domain_classifier"))
    if checkpoints.latest_step() is not None:
        state = checkpoints.restore(state, iterator)
        print(f"[domain_classifier] resumed from step {int(state.step)}", flush=True)
    elif dc.init_checkpoint:
        state = with_pretrained_encoder(state, dc.init_checkpoint, dc.width, "domain_classifier",
                                        tx, mesh)
    step_fn = jit_train_step(functools.partial(domain_classifier_train_step, model=model, tx=tx),
                             mesh, with_frozen=False)
    already_done = int(state.step) >= dc.num_steps
    state = run_stage(stage="domain_classifier", state=state, step_fn=step_fn, data_iterator=iterator,
                      mesh=mesh, num_steps=dc.num_steps, global_batch=global_batch,
                      log_every=config.train.log_every,
                      checkpoint_every=config.train.checkpoint_every, checkpoints=checkpoints,
                      writer=writer, stop_after=stop_after)
    checkpoints.close()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    if int(state.step) < dc.num_steps:  # stopped early (preemption test)
        return model, variables, None
    report = {}
    if not already_done or not os.path.exists(os.path.join(workdir, "domain_classifier.json")):
        clean = domain_accuracy(model, variables, protocol.source_val, mesh, d.eval_batch_size, None)
        attacked = domain_accuracy(model, variables, protocol.source_val, mesh, d.eval_batch_size,
                                   config.attack)
        report = {"source_val_domain_acc_clean": clean, "source_val_domain_acc_attacked": attacked,
                  "chance": 1.0 / protocol.num_source_domains, "steps": dc.num_steps}
        with open(os.path.join(workdir, "domain_classifier.json"), "w") as f:
            json.dump(report, f, indent=2)
        writer.write("domain_classifier_eval", dc.num_steps, report)
    else:
        with open(os.path.join(workdir, "domain_classifier.json")) as f:
            report = json.load(f)
    print(f"[domain_classifier] source-val domain accuracy: clean "
          f"{100 * report['source_val_domain_acc_clean']:.1f}% -> attacked (eps "
          f"{config.attack.epsilon}/255) {100 * report['source_val_domain_acc_attacked']:.1f}% "
          f"(chance {100 * report['chance']:.1f}%)", flush=True)
    return model, variables, report


# ============================================================================================
# Stage 2: student
# ============================================================================================


def make_student(config, teachers: dict) -> DTDAStudent:
    fr_dim = teachers["fr"].output_dim if "fr" in teachers else 512
    fa_dim = teachers["fa"].output_dim if "fa" in teachers else config.teachers.fa_c_dim
    num_domains = len(config.data.source_domains) if config.method.use_grl_domain_head else 0
    return DTDAStudent(width=config.model.width, num_classes=2, fr_dim=fr_dim, fa_dim=fa_dim,
                       num_domains=num_domains, dtype=jnp.dtype(config.model.dtype))


def build_student_step(config, student, tx, schedule, teachers, domain_model, mesh) -> Callable:
    step = functools.partial(student_train_step, student=student, tx=tx, teachers=teachers,
                             domain_model=domain_model, config=config, schedule=schedule)
    return jit_train_step(step, mesh, with_frozen=True)


# ============================================================================================
# Entry point
# ============================================================================================

# Config fields a resumed run may change (they do not alter what was computed so far).
RESUMABLE_CHANGES = ("train.log_every", "train.eval_every", "train.checkpoint_every",
                     "data.eval_batch_size")


def record_config(config, workdir: str) -> None:
    """Writes config.json; refuses to resume a workdir that was started with another config."""
    check_same_config(config, workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(json.loads(config.to_json()), f, indent=2)


def check_same_config(config, workdir: str) -> None:
    """ConfigError listing the fields that differ from the workdir's config.json, if any."""
    path = os.path.join(workdir, "config.json")
    current = json.loads(config.to_json())
    if os.path.exists(path):
        with open(path) as f:
            previous = config_lib.with_defaults(json.load(f))
        a, b = flatten_dict(previous, sep="."), flatten_dict(current, sep=".")
        changed = sorted(k for k in set(a) | set(b)
                         if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed)
            raise config_lib.ConfigError(
                f"{workdir} holds a run started with a different config ({details}). Resume it with "
                "the same config, or start a new run in a fresh --workdir.")


def with_own_teachers(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config with each empty teacher checkpoint pointing at the project's own trained
    teacher when `teachers.own_teachers` is on (trained first if its cache lacks it, see
    dtda_jax/teacher_training.py); unchanged otherwise. The recorded config.json keeps the
    empty paths: the cache name follows from the config, so a resumed run finds the same
    teachers."""
    t = config.teachers
    names = [n for n in make_teachers(config) if not t[f"{n}_checkpoint"]]
    if not t.own_teachers or not names:
        return config
    from dtda_jax import teacher_training  # the face corpus renderer is only needed here

    cache_dir = t.own_teachers_dir or os.path.join(config.data.data_dir, "teachers")
    paths = teacher_training.ensure_trained_teachers(config, cache_dir, t.own_training, names=names)
    config = copy.deepcopy(config)
    for name, path in paths.items():
        config.teachers[f"{name}_checkpoint"] = path
    return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_after: int | None = None, num_devices: int | None = None) -> dict | None:
    """Runs (or resumes) both stages in `workdir` and returns the results dict.

    Returns None when `stop_after` ended the run early (a simulated preemption). A config
    with method.name == "kdfas" runs the second method (dtda_jax/kdfas.py) instead.
    """
    if config.method.name == "kdfas":
        from dtda_jax import kdfas  # it builds on this module

        return kdfas.train_and_evaluate(config, workdir, stop_after, num_devices)
    config_lib.validate_config(config)
    check_weight_files(config)
    os.makedirs(workdir, exist_ok=True)
    record_config(config, workdir)
    t_start = time.perf_counter()
    variant = config_lib.variant_name(config)
    print(f"[run] workdir={os.path.abspath(workdir)} variant={variant} devices={jax.devices()}",
          flush=True)

    # --- mesh, data, writers ---
    mesh = make_mesh(num_devices)
    protocol = pipeline.load_protocol(config)
    writer = MetricWriter(workdir)

    # --- stage 1: domain classifier (only the attack needs it) ---
    domain_model, frozen, domain_report = None, {}, None
    if config.method.use_domain_attack:
        domain_model, frozen["domain"], domain_report = train_domain_classifier(
            config, protocol, mesh, workdir, writer, stop_after)
        if domain_report is None:
            writer.close()
            return None
        stop_after = None if stop_after is None else stop_after - config.domain_classifier.num_steps

    # --- teachers, student, optimiser ---
    config = with_own_teachers(config)
    teachers = make_teachers(config)
    frozen.update(init_teacher_variables(teachers, rng_key(config.seed + 2), config))
    frozen = jax.device_put(frozen, replicated(mesh))
    student = make_student(config, teachers)
    schedule = learning_rate_schedule(config.optim, config.train.num_steps)
    tx = make_optimizer(schedule, config.optim.momentum, config.optim.weight_decay,
                        config.optim.grad_clip_norm)
    d = config.data
    global_batch = protocol.num_source_domains * 2 * d.samples_per_group
    check_batch_divisible(global_batch, mesh, "data.samples_per_group")
    state = init_state(student, tx, rng_key(config.seed), d.image_size, mesh)
    iterator = source_iterator(config, protocol, d.samples_per_group, config.seed, config.train.num_steps)

    step_fn = build_student_step(config, student, tx, schedule, teachers, domain_model, mesh)
    init_fn = None
    if config.model.init_checkpoint:
        init_fn = lambda st: with_pretrained_encoder(st, config.model.init_checkpoint, config.model.width,
                                                     "model", tx, mesh)
    outcome = train_evaluated_stage(
        stage="student", state=state, step_fn=lambda s, b: step_fn(s, frozen, b), iterator=iterator,
        model=student, stage_dir=workdir, num_steps=config.train.num_steps, global_batch=global_batch,
        protocol=protocol, config=config, mesh=mesh, writer=writer, init_fn=init_fn,
        stop_after=stop_after)
    if outcome is None:
        writer.close()
        return None
    state, best_eval, last_eval = outcome

    # --- results ---
    results = {
        "protocol": protocol_name(protocol),
        "variant": variant,
        "method": dict(config.method),
        "selection": config.eval.selection,
        "threshold_policy": config.eval.threshold_policy,
        "video_reduce": config.eval.video_reduce,
        "reported": best_eval if config.eval.selection == "best_on_target" else last_eval,
        "by_selection": {"best_on_target": best_eval, "last": last_eval},
        "teachers": {name: {"model": type(t.model).__name__, "random_init": t.origin == RANDOM_INIT,
                            **weights_provenance("" if t.origin == RANDOM_INIT else t.origin)}
                     for name, t in teachers.items()},
        "domain_classifier": domain_report,
        "student_encoder_init": weights_provenance(config.model.init_checkpoint),
        "domain_classifier_encoder_init": (weights_provenance(config.domain_classifier.init_checkpoint)
                                           if config.method.use_domain_attack else None),
        "wall_time_s_this_process": time.perf_counter() - t_start,
    }
    finish_run(results, workdir, writer, t_start, print_weights)
    return results


def protocol_name(protocol: pipeline.Protocol) -> str:
    """"studio&webcam&phone -> kiosk"."""
    return f"{'&'.join(protocol.domain_names[:-1])} -> {protocol.domain_names[-1]}"


def finish_run(results: dict, workdir: str, writer: MetricWriter, t_start: float,
               print_models: Callable[[dict], None]) -> None:
    """Writes results.json, closes the writer, prints the results table and where the models
    came from (`print_models`)."""
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    writer.close()
    print_results(results)
    print_models(results)
    print(f"[run] done in {format_duration(time.perf_counter() - t_start)}; results in "
          f"{os.path.join(os.path.abspath(workdir), 'results.json')}", flush=True)


def print_results(results: dict) -> None:
    rows = []
    for selection, r in results["by_selection"].items():
        rows.append({"protocol": results["protocol"], "variant": results["variant"],
                     "selection": f"{selection}@{r['step']}", **r})
    columns = ("protocol", "variant", "selection", "num_live", "num_spoof", "auc", "eer", "hter",
               "acer", "tpr@fpr=0.01", "source_val_auc")
    print("\n" + fas_metrics.format_results_table(rows, columns), flush=True)
    print(f"HTER/ACER threshold policy: {results['threshold_policy']}; scores are per video "
          f"({results['video_reduce']} of frame live probabilities); reported selection: "
          f"{results['selection']}.", flush=True)


def print_weights(results: dict) -> None:
    """Where a DTDA run's teachers and encoder initialisations came from."""
    used = {f"teacher {n}": t for n, t in results["teachers"].items()}
    used["student encoder"] = results["student_encoder_init"]
    if results["domain_classifier_encoder_init"] is not None:
        used["domain-classifier encoder"] = results["domain_classifier_encoder_init"]
    print("Weights: " + "; ".join(
        f"{name} <- {w['origin'] if 'trained_by' in w else w.get('source_file', w['origin'])}"
        for name, w in used.items()), flush=True)
    random_teachers = [n for n, t in results["teachers"].items() if t["random_init"]]
    if random_teachers:
        print(f"NOTE: teacher(s) {random_teachers} were randomly initialised (no converted checkpoint).",
              flush=True)
