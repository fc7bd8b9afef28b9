"""Loss terms: DTDA's (Eq. 6-9: face anti-spoofing cross-entropy, teacher distillation) and
KDFAS's token Gram-matrix feature distillation."""

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


@jax.custom_vjp
def gradient_reversal(x: jax.Array, scale: jax.Array | float) -> jax.Array:
    """Identity forward; backward multiplies the gradient by -scale (Ganin & Lempitsky, 2015).

    The domain head below it learns to tell domains apart while the features above it are
    pushed to hide them: the domain-adversarial training that the paper's Fig. 1a sets
    against the domain adversarial attack. `scale` gets no gradient.
    """
    return x


def _reversal_forward(x, scale):
    return x, scale


def _reversal_backward(scale, g):
    return -scale * g, jnp.zeros_like(scale)


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)


def ganin_reversal_scale(progress: jax.Array) -> jax.Array:
    """DANN's schedule 2 / (1 + exp(-10 p)) - 1 for training progress p in [0, 1]: the
    reversed gradient ramps from 0 to ~1 so the untrained domain head cannot derail the start."""
    return 2.0 / (1.0 + jnp.exp(-10.0 * progress)) - 1.0


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """`x` divided by its L2 norm along `axis` (at least `eps`, so zero vectors stay zero)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


def token_gram(tokens: jax.Array, eps: float = 1e-6) -> jax.Array:
    """(N, T, D) token features -> (N, T, T) matrices of cosine similarities between the tokens
    after centring them over the tokens (the token-token covariance, normalised).

    KDFAS compares teacher and student stages through these matrices: they are T x T
    whatever the widths D, so no learned projection is needed. Centring removes what every
    token shares; normalising makes the matrix independent of the features' scale. Both keep
    it unchanged under any rotation of the feature space, so a student whose tokens are an
    isometric image of the teacher's has exactly the teacher's matrix.
    """
    x = tokens.astype(jnp.float32)
    x = x - jnp.mean(x, axis=1, keepdims=True)
    x = l2_normalize(x, eps=eps)
    return jnp.einsum("ntd,nsd->nts", x, x)


def gram_distillation_loss(teacher_tokens: jax.Array, student_tokens: jax.Array) -> jax.Array:
    """Mean squared difference of the teacher's and the student's token Gram matrices, over the
    batch and all T x T entries; the teacher side gets no gradient."""
    if teacher_tokens.shape[:2] != student_tokens.shape[:2]:
        raise ValueError(f"teacher tokens {teacher_tokens.shape} and student tokens "
                         f"{student_tokens.shape} differ in batch or token count; the Gram matrices "
                         "need the same tokens (same image size and patch size).")
    target = token_gram(jax.lax.stop_gradient(teacher_tokens))
    return jnp.mean(jnp.square(token_gram(student_tokens) - target))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
