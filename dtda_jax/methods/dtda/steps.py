"""DTDA's pure step functions: the domain classifier's (Eq. 1) and the student's (Eq. 2-9).

Every hyper-parameter is an explicit keyword argument, bound with `functools.partial` by the
stages; no step reads the config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dtda_jax.core import losses
from dtda_jax.core.state import TrainState, rng_key
from dtda_jax.data import augmentation
from dtda_jax.inference.scoring import images_to_unit_range
from dtda_jax.methods.dtda.attack import domain_adversarial_attack

# Which student output distils which teacher's soft labels.
STUDENT_OUTPUTS = {"fr": "fr_embedding", "fa": "fa_logits"}


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """Eq. 2's budget in 0..255 pixel units: one signed step of `epsilon`, or PGD."""

    epsilon: float
    num_steps: int = 1
    step_size: float = 1.0
    random_start: bool = False


def ganin_reversal_scale(progress: jax.Array) -> jax.Array:
    """DANN's schedule 2 / (1 + exp(-10 p)) - 1 for training progress p in [0, 1]: the
    reversed gradient ramps from 0 to ~1 so the untrained domain head cannot derail the start."""
    return 2.0 / (1.0 + jnp.exp(-10.0 * progress)) - 1.0


def domain_classifier_train_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
                                 tx: optax.GradientTransformation):
    """One step of Eq. (1): cross-entropy over the source-domain labels."""
    x = images_to_unit_range(augmentation.apply(batch))

    def loss_fn(params):
        logits, mutated = model.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
        return losses.cross_entropy(logits, batch["domain"]), (mutated["batch_stats"], logits)

    (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx, batch_stats=batch_stats)
    return new_state, {"loss": loss, "domain_acc": losses.accuracy(logits, batch["domain"])}


def attack_images(images01: jax.Array, domains: jax.Array, domain_model: nn.Module, domain_variables: Any,
                  attack: AttackSettings, key: jax.Array) -> jax.Array:
    """Eq. (2) with the frozen domain classifier (inference-mode BatchNorm)."""
    def logits_fn(x):
        return domain_model.apply(domain_variables, x, train=False)

    return domain_adversarial_attack(
        logits_fn, images01, domains, epsilon=attack.epsilon / 255.0, num_steps=attack.num_steps,
        step_size=attack.step_size / 255.0, key=key, random_start=attack.random_start)


def student_train_step(state: TrainState, frozen: dict[str, Any], batch: dict[str, jax.Array], *,
                       student: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule,
                       teachers: dict, domain_model: nn.Module | None, attack: AttackSettings | None,
                       seed: int, num_steps: int, lambda_fr: float, lambda_fa: float, lambda_domain: float,
                       temperature: float, scale_kd_by_t2: bool):
    """One DTDA step: attack (when `domain_model` is given) -> frozen teachers -> student update
    with Eq. (9), plus the gradient-reversal domain term when the student has a domain head.

    `frozen` holds the teachers' variables and the domain classifier's; they are arguments
    rather than closed-over constants so large teachers are not baked into the program. The
    attack's random start (PGD) draws from (seed, step); `num_steps` sets the reversal ramp.
    """
    clean = images_to_unit_range(augmentation.apply(batch))
    x = clean
    metrics = {}
    if domain_model is not None:
        key = jax.random.fold_in(rng_key(seed), state.step)
        x = attack_images(clean, batch["domain"], domain_model, frozen["domain"], attack, key)
        metrics["attack_linf_255"] = jnp.max(jnp.abs(x - clean)) * 255.0
    soft_labels = {name: teacher.logits(frozen[name], x) for name, teacher in teachers.items()}
    weights = {"fr": lambda_fr, "fa": lambda_fa}

    grl_scale = ganin_reversal_scale(state.step / num_steps)

    def loss_fn(params):
        out, mutated = student.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                     train=True, mutable=["batch_stats"], grl_scale=grl_scale)
        terms = {"loss_fas": losses.cross_entropy(out["cls_logits"], batch["label"])}
        total = terms["loss_fas"]
        for name, target in soft_labels.items():
            term = losses.kd_kl_divergence(target, out[STUDENT_OUTPUTS[name]], temperature, scale_kd_by_t2)
            terms[f"loss_{name}"] = term
            total = total + weights[name] * term
        if "domain_logits" in out:  # "dat": reversed gradient into the features
            terms["loss_domain"] = losses.cross_entropy(out["domain_logits"], batch["domain"])
            terms["domain_acc"] = losses.accuracy(out["domain_logits"], batch["domain"])
            total = total + lambda_domain * terms["loss_domain"]
        return total, (mutated["batch_stats"], terms, out["cls_logits"])

    (total, (batch_stats, terms, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, tx, batch_stats=batch_stats)
    metrics.update(loss=total, **terms, accuracy=losses.accuracy(logits, batch["label"]),
                   lr=schedule(state.step))
    return new_state, metrics
