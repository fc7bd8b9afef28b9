"""KDFAS's pure step functions: the teacher's cross-entropy step and the student's
distillation step. Every hyper-parameter is an explicit keyword argument."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import optax

from dtda_jax.core import losses
from dtda_jax.core.state import TrainState
from dtda_jax.data import augmentation
from dtda_jax.inference.scoring import images_to_unit_range
from dtda_jax.methods.kdfas.losses import gram_distillation_loss
from dtda_jax.models.vit import VisionTransformer


def stage_blocks(depth: int, num_stages: int) -> tuple[int, ...]:
    """The last block of each of `num_stages` equal stages: depth 24, 4 stages -> (6, 12, 18, 24)."""
    return tuple(k * depth // num_stages for k in range(1, num_stages + 1))


def teacher_train_step(state: TrainState, batch: dict[str, jax.Array], *, model: VisionTransformer,
                       tx: optax.GradientTransformation, schedule: optax.Schedule):
    """One teacher step: live/spoof cross-entropy."""
    x = images_to_unit_range(augmentation.apply(batch))

    def loss_fn(params):
        logits = model.apply({"params": params}, x, train=True)["cls_logits"]
        return losses.cross_entropy(logits, batch["label"]), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx)
    return new_state, {"loss": loss, "accuracy": losses.accuracy(logits, batch["label"]),
                       "lr": schedule(state.step)}


def student_train_step(state: TrainState, teacher_variables: Any, batch: dict[str, jax.Array], *,
                       student: VisionTransformer, teacher: VisionTransformer | None,
                       tx: optax.GradientTransformation, schedule: optax.Schedule,
                       use_decision_kd: bool, use_feature_kd: bool, temperature: float,
                       scale_kd_by_t2: bool, lambda_decision: float, lambda_feature: float,
                       teacher_blocks: Sequence[int], student_blocks: Sequence[int]):
    """One student step: CE, plus the KD terms switched on, against the frozen teacher.

    Feature KD pairs the tokens after `teacher_blocks` with those after `student_blocks`
    (stage_blocks of each depth) and compares their patch tokens' Gram matrices; the class
    token is left to the decision term.
    """
    x = images_to_unit_range(augmentation.apply(batch))
    student_blocks = tuple(student_blocks) if use_feature_kd else ()
    target = None
    if teacher is not None:
        target = teacher.apply(teacher_variables, x, train=False,
                               return_blocks=tuple(teacher_blocks) if use_feature_kd else ())

    def loss_fn(params):
        out = student.apply({"params": params}, x, train=True, return_blocks=student_blocks)
        terms = {"loss_fas": losses.cross_entropy(out["cls_logits"], batch["label"])}
        total = terms["loss_fas"]
        if use_decision_kd:
            terms["loss_decision"] = losses.kd_kl_divergence(target["cls_logits"], out["cls_logits"],
                                                             temperature, scale_kd_by_t2)
            total = total + lambda_decision * terms["loss_decision"]
        if use_feature_kd:
            per_stage = [gram_distillation_loss(t[:, 1:], s[:, 1:])
                         for t, s in zip(target["block_tokens"], out["block_tokens"])]
            for k, term in enumerate(per_stage, 1):
                terms[f"loss_gram_stage{k}"] = term
            terms["loss_feature"] = sum(per_stage) / len(per_stage)
            total = total + lambda_feature * terms["loss_feature"]
        return total, (terms, out["cls_logits"])

    (total, (terms, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx)
    return new_state, {"loss": total, **terms, "accuracy": losses.accuracy(logits, batch["label"]),
                       "lr": schedule(state.step)}
