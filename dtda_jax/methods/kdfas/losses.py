"""KDFAS's feature-level distillation: token Gram matrices compared across stages of
different widths."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dtda_jax.core.losses import l2_normalize


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
