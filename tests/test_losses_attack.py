"""KD/CE losses against hand-computed values; the domain adversarial attack's behaviour."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtda_jax.core import losses
from dtda_jax.methods.dtda.attack import domain_adversarial_attack
from dtda_jax.methods.dtda.steps import ganin_reversal_scale
from dtda_jax.models.layers import gradient_reversal


def test_cross_entropy_hand_value():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([0, 0])
    expected = np.mean([np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(1.0))])
    np.testing.assert_allclose(losses.cross_entropy(logits, labels), expected, rtol=1e-6)


def test_kd_kl_hand_value():
    t = np.array([[1.0, 2.0, 3.0]])
    s = np.array([[3.0, 1.0, 0.0]])
    tau = 2.0
    pt = np.exp(t / tau) / np.exp(t / tau).sum()
    ps = np.exp(s / tau) / np.exp(s / tau).sum()
    kl = float(np.sum(pt * np.log(pt / ps)))
    np.testing.assert_allclose(losses.kd_kl_divergence(t, s, tau, scale_by_t2=False), kl, rtol=1e-6)
    np.testing.assert_allclose(losses.kd_kl_divergence(t, s, tau, scale_by_t2=True), kl * tau**2,
                               rtol=1e-6)


def test_gradient_reversal_is_identity_forward_and_negated_backward():
    x = jnp.array([[1.0, -2.0, 3.0]])
    w = jnp.array([[0.5, 2.0, -1.0]])
    np.testing.assert_array_equal(gradient_reversal(x, 0.3), x)
    grad = jax.grad(lambda v: jnp.sum(w * gradient_reversal(v, 0.3)))(x)
    np.testing.assert_allclose(grad, -0.3 * w, rtol=1e-6)
    # Under jit with a traced scale, and no gradient flowing to the scale itself.
    g_scale = jax.jit(jax.grad(lambda s: jnp.sum(gradient_reversal(x * s, s))))(2.0)
    np.testing.assert_allclose(g_scale, -2.0 * jnp.sum(x), rtol=1e-6)  # only through x * s


def test_ganin_schedule_values():
    p = jnp.array([0.0, 0.5, 1.0])
    expected = 2.0 / (1.0 + np.exp(-10.0 * np.array([0.0, 0.5, 1.0]))) - 1.0
    np.testing.assert_allclose(ganin_reversal_scale(p), expected, rtol=1e-6)
    assert float(ganin_reversal_scale(0.0)) == 0.0 and float(ganin_reversal_scale(1.0)) > 0.999


def test_kd_kl_zero_iff_equal_and_batch_mean():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(4, 7)).astype(np.float32)
    assert float(losses.kd_kl_divergence(t, t, 3.0)) == pytest.approx(0.0, abs=1e-6)
    s = rng.normal(size=(4, 7)).astype(np.float32)
    per_row = [float(losses.kd_kl_divergence(t[i:i + 1], s[i:i + 1], 3.0)) for i in range(4)]
    np.testing.assert_allclose(losses.kd_kl_divergence(t, s, 3.0), np.mean(per_row), rtol=1e-5)
    assert min(per_row) > 0


def test_kd_gives_no_gradient_to_teacher():
    t = jnp.array([[1.0, -1.0, 0.5]])
    s = jnp.array([[0.2, 0.1, 0.0]])
    g_t = jax.grad(lambda a: losses.kd_kl_divergence(a, s, 2.0))(t)
    g_s = jax.grad(lambda b: losses.kd_kl_divergence(t, b, 2.0))(s)
    assert float(jnp.abs(g_t).sum()) == 0.0
    assert float(jnp.abs(g_s).sum()) > 0.0


class TinyDomainNet(nn.Module):
    num_domains: int = 3

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.relu(x).mean(axis=(1, 2))
        return nn.Dense(self.num_domains)(x)


@pytest.fixture(scope="module")
def trained_domain_net():
    """A small classifier trained to tell three colour-cast domains apart."""
    rng = np.random.default_rng(0)
    casts = np.array([[0.06, 0.0, 0.0], [0.0, 0.06, 0.0], [0.0, 0.0, 0.06]], np.float32)
    domains = rng.integers(0, 3, 96)
    images = np.clip(rng.uniform(0.2, 0.7, (96, 8, 8, 3)).astype(np.float32) + casts[domains][:, None, None],
                     0, 1)
    model = TinyDomainNet()
    params = model.init(jax.random.PRNGKey(0), images[:1])
    import optax
    tx = optax.adam(0.05)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt):
        loss, g = jax.value_and_grad(lambda p: losses.cross_entropy(model.apply(p, images), domains))(params)
        upd, opt = tx.update(g, opt)
        return optax.apply_updates(params, upd), opt, loss

    for _ in range(150):
        params, opt, loss = step(params, opt)
    assert losses.accuracy(model.apply(params, images), domains) > 0.9
    return model, params, jnp.asarray(images), jnp.asarray(domains)


@pytest.mark.parametrize("num_steps", [1, 5])
def test_attack_raises_domain_loss_within_budget(trained_domain_net, num_steps):
    model, params, images, domains = trained_domain_net
    logits_fn = lambda x: model.apply(params, x)
    eps = 8 / 255
    x_adv = domain_adversarial_attack(logits_fn, images, domains, epsilon=eps, num_steps=num_steps,
                                      step_size=eps / 2)
    clean_loss = float(losses.cross_entropy(logits_fn(images), domains))
    adv_loss = float(losses.cross_entropy(logits_fn(x_adv), domains))
    assert adv_loss > 2 * clean_loss + 0.1
    clean_acc = float(losses.accuracy(logits_fn(images), domains))
    adv_acc = float(losses.accuracy(logits_fn(x_adv), domains))
    assert adv_acc < clean_acc - 0.2
    assert float(jnp.max(jnp.abs(x_adv - images))) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert x_adv.shape == images.shape


def test_single_step_is_exactly_eq2(trained_domain_net):
    model, params, images, domains = trained_domain_net
    logits_fn = lambda x: model.apply(params, x)
    eps = 4 / 255
    grad = jax.grad(lambda x: losses.cross_entropy(logits_fn(x), domains))(images)
    expected = jnp.clip(images + eps * jnp.sign(grad), 0, 1)
    got = domain_adversarial_attack(logits_fn, images, domains, epsilon=eps)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_attack_leaves_fas_labels_and_is_pure(trained_domain_net):
    """Same inputs -> same output; the perturbation never touches anything but pixels."""
    model, params, images, domains = trained_domain_net
    logits_fn = lambda x: model.apply(params, x)
    a = domain_adversarial_attack(logits_fn, images, domains, epsilon=2 / 255)
    b = jax.jit(lambda x, d: domain_adversarial_attack(logits_fn, x, d, epsilon=2 / 255))(images, domains)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_random_start_needs_key(trained_domain_net):
    model, params, images, domains = trained_domain_net
    with pytest.raises(ValueError, match="PRNG key"):
        domain_adversarial_attack(lambda x: model.apply(params, x), images, domains, epsilon=0.1,
                                  num_steps=2, random_start=True)
