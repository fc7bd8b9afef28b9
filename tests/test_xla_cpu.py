"""The per-executable XLA:CPU options: accepted by this jaxlib, and overridable by XLA_FLAGS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtda_jax.core import xla_cpu


@pytest.mark.parametrize("options", [xla_cpu.TRAINING, xla_cpu.SCORING, xla_cpu.FACE_DETECTION])
def test_options_compile_and_keep_results(options):
    """XLA rejects unknown enum values at compile time, so a jaxlib that renames them fails
    here, not in a user's first training step; the numbers stay those of a plain jit."""

    def f(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.mean(jnp.maximum(y, 0.0) @ jnp.ones((8, 3)), axis=(1, 2))

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32)
    with_options = jax.jit(jax.value_and_grad(lambda w: f(x, w).sum()),
                           compiler_options=xla_cpu.compiler_options(options))
    plain = jax.jit(jax.value_and_grad(lambda w: f(x, w).sum()))
    for a, b in zip(jax.tree.leaves(with_options(w)), jax.tree.leaves(plain(w))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_xla_flags_naming_the_option_win(monkeypatch):
    assert jax.default_backend() == "cpu"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert xla_cpu.compiler_options(xla_cpu.TRAINING) == xla_cpu.TRAINING
    monkeypatch.setenv("XLA_FLAGS", f"--{xla_cpu.YNN_OPTION}=")
    assert xla_cpu.compiler_options(xla_cpu.TRAINING) is None
