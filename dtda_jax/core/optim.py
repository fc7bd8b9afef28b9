"""The one optimiser and learning-rate schedule builder every stage uses.

SGD is PyTorch's (`g + wd * p`, then heavy-ball momentum without dampening), as in the DTDA
paper; AdamW has decoupled weight decay, optionally on the kernels only (the ViT recipe).
Gradient clipping by global norm comes first when on.
"""

from __future__ import annotations

from typing import Sequence

import jax
import optax

from dtda_jax.config.common import LR_SCHEDULES, OPTIMIZERS


def learning_rate_schedule(learning_rate: float, num_steps: int, schedule: str = "constant",
                           warmup_steps: int = 0, step_boundaries: Sequence[int] = ()) -> optax.Schedule:
    """Constant, cosine decay to 0 over the steps after warm-up, or x0.1 at each boundary;
    linear warm-up from 0 over the first `warmup_steps`."""
    if schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(learning_rate, max(num_steps - warmup_steps, 1))
    elif schedule == "step":
        main = optax.piecewise_constant_schedule(
            learning_rate, {int(b) - warmup_steps: 0.1 for b in step_boundaries})
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {LR_SCHEDULES}.")
    if warmup_steps:
        warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
        return optax.join_schedules([warmup, main], [warmup_steps])
    return main


def _kernels_only(params):
    """Weight decay on dense and convolution kernels only (not on biases, norm scales, class
    tokens or position embeddings)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel",
                                            params)


def make_optimizer(optimizer: str, schedule: optax.Schedule, *, momentum: float = 0.9,
                   weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
                   grad_clip_norm: float = 0.0, decay: str = "all") -> optax.GradientTransformation:
    """`optimizer` ("sgd" | "adamw") on `schedule`, with optional clipping and a weight-decay mask."""
    parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []
    if optimizer == "sgd":
        if decay != "all":
            raise ValueError("the SGD weight decay (PyTorch's L2 term) applies to every parameter.")
        parts += [optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=momentum)]
    elif optimizer == "adamw":
        mask = _kernels_only if decay == "kernels" else None
        parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=mask))
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}.")
    return optax.chain(*parts)
