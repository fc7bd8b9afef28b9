"""Loss terms every method uses: cross-entropy (DTDA's Eq. 1 and 8), Hinton's KL distillation
(DTDA's Eq. 6-7, KDFAS's decision-level term), accuracy, L2 normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (Eq. 1 and Eq. 8 for two classes)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def kd_kl_divergence(teacher_logits: jax.Array, student_logits: jax.Array, temperature: float,
                     scale_by_t2: bool = True) -> jax.Array:
    """KL(softmax(t / tau) || softmax(s / tau)), averaged over the batch (Eq. 6 and 7).

    The paper's Eq. 6-7 print a second softmax around the student's distribution; a softmax
    of probabilities is nearly uniform and carries no gradient signal worth distilling, so we
    read it as a typo and use Hinton's KD (as the paper's own reference [22] does). Scaling by
    tau^2 keeps gradient magnitudes independent of the temperature (Hinton et al., 2015).
    The teacher side gets no gradient.
    """
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)) / temperature
    s = student_logits.astype(jnp.float32) / temperature
    log_p_t = jax.nn.log_softmax(t, axis=-1)
    log_p_s = jax.nn.log_softmax(s, axis=-1)
    kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    scale = temperature ** 2 if scale_by_t2 else 1.0
    return scale * jnp.mean(kl)


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """`x` divided by its L2 norm along `axis` (at least `eps`, so zero vectors stay zero)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
