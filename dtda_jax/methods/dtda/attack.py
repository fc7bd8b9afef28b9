"""Domain adversarial attack (Eq. 2): perturb inputs so a frozen domain classifier fails.

`x_adv = clip(x + eps * sign(grad_x L_domain(x, d)), 0, 1)` moves every image up the domain
classifier's loss, i.e. towards looking like no particular source domain. With `num_steps > 1`
it is the projected (PGD) version: repeated signed steps of `step_size`, projected back into
the eps-ball around `x` and into the valid pixel range after each step.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from dtda_jax.core.losses import cross_entropy


def domain_adversarial_attack(domain_logits_fn: Callable[[jax.Array], jax.Array], images: jax.Array,
                              domain_labels: jax.Array, *, epsilon: float, num_steps: int = 1,
                              step_size: float | None = None, key: jax.Array | None = None,
                              random_start: bool = False) -> jax.Array:
    """Returns adversarial images in [0, 1]; `epsilon`/`step_size` are in the same [0, 1] scale.

    `domain_logits_fn` maps images in [0, 1] to domain logits (the frozen classifier in
    inference mode). The result carries no gradient back into the images.
    """
    images = jax.lax.stop_gradient(images)

    def domain_loss(x):
        return cross_entropy(domain_logits_fn(x), domain_labels)

    grad_fn = jax.grad(domain_loss)
    if num_steps == 1 and not random_start:
        x_adv = images + epsilon * jnp.sign(grad_fn(images))
        return jax.lax.stop_gradient(jnp.clip(x_adv, 0.0, 1.0))

    step = epsilon / num_steps if step_size is None else step_size
    x0 = images
    if random_start:
        if key is None:
            raise ValueError("random_start=True needs a PRNG key.")
        x0 = jnp.clip(images + jax.random.uniform(key, images.shape, images.dtype, -epsilon, epsilon),
                      0.0, 1.0)

    def body(_, x):
        x = x + step * jnp.sign(grad_fn(x))
        x = jnp.clip(x, images - epsilon, images + epsilon)
        return jnp.clip(x, 0.0, 1.0)

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, num_steps, body, x0))
