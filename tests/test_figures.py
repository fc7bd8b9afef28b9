"""Grad-CAM and the t-SNE sampling against hand-derived values."""

import jax
import jax.numpy as jnp
import numpy as np

from dtda_jax.analysis import figures
from dtda_jax.models.student import DTDAStudent


def test_grad_cam_weights_are_the_class_weights_of_the_linear_head():
    """The student's logits are W^T mean(A) + b, so d logit_c / dA is W[:, c] / (H W) at every
    position: Grad-CAM must equal ReLU(A . W[:, c]) resized and scaled to a maximum of 1."""
    student = DTDAStudent(width=4, fr_dim=8, fa_dim=5)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    variables = jax.jit(lambda key: student.init(key, jnp.zeros((1, 64, 64, 3)), train=False))(
        jax.random.key(1, impl="rbg"))  # rbg: XLA:CPU compiles threefry initialisers slowly
    cams, classes = figures.grad_cam(student, variables, images, target_class=np.array([1, 0, 1]))
    assert cams.shape == (3, 64, 64) and list(classes) == [1, 0, 1]
    out = jax.jit(lambda v, x: student.apply(v, x.astype(jnp.float32) / 255.0, train=False,
                                             return_feature_map=True))(variables, images)
    kernel = variables["params"]["cls_head"]["kernel"]  # (C, 2)
    raw = np.maximum(np.einsum("nhwc,nc->nhw", np.asarray(out["feature_map"]),
                               np.asarray(kernel[:, [1, 0, 1]]).T), 0)
    expected = np.asarray(jax.jit(lambda r: jax.image.resize(r, (3, 64, 64), "bilinear"))(raw))
    expected = expected / np.maximum(expected.max(axis=(1, 2), keepdims=True), 1e-30)
    np.testing.assert_allclose(cams, expected, atol=1e-5)
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    _, predicted = figures.grad_cam(student, variables, images)
    np.testing.assert_array_equal(predicted, np.argmax(np.asarray(out["cls_logits"]), axis=-1))


def test_balanced_sample_takes_each_domain_and_label():
    domains = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    labels = np.array([1, 0, 0, 1, 1, 0, 0, 1])
    chosen = figures.balanced_sample(domains, labels, 1, seed=0)
    pairs = sorted(zip(domains[chosen], labels[chosen]))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]
    assert list(chosen) == sorted(chosen)
    everything = figures.balanced_sample(domains, labels, 10, seed=0)
    assert list(everything) == list(range(8))
