"""Grad-CAM and the t-SNE sampling against hand-derived values."""

import jax
import jax.numpy as jnp
import numpy as np

from dtda_jax import figures
from dtda_jax.models.student import DTDAStudent


def test_grad_cam_weights_are_the_class_weights_of_the_linear_head():
    """The student's logits are W^T mean(A) + b, so d logit_c / dA is W[:, c] / (H W) at every
    position: Grad-CAM must equal ReLU(A . W[:, c]) resized and scaled to a maximum of 1."""
    student = DTDAStudent(width=4, fr_dim=8, fa_dim=5)
    images = np.asarray(jax.random.randint(jax.random.PRNGKey(0), (3, 64, 64, 3), 0, 256), np.uint8)
    variables = student.init(jax.random.PRNGKey(1), jnp.zeros((1, 64, 64, 3)), train=False)
    cams, classes = figures.grad_cam(student, variables, images, target_class=np.array([1, 0, 1]))
    assert cams.shape == (3, 64, 64) and list(classes) == [1, 0, 1]
    fmap = student.apply(variables, jnp.asarray(images, jnp.float32) / 255.0, train=False,
                         return_feature_map=True)["feature_map"]
    kernel = variables["params"]["cls_head"]["kernel"]  # (C, 2)
    for i, c in enumerate((1, 0, 1)):
        raw = np.maximum(np.einsum("hwc,c->hw", np.asarray(fmap[i]), np.asarray(kernel[:, c])), 0)
        expected = np.asarray(jax.image.resize(raw, (64, 64), "bilinear"))
        if expected.max() > 0:
            expected = expected / expected.max()
        np.testing.assert_allclose(cams[i], expected, atol=1e-5)
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    _, predicted = figures.grad_cam(student, variables, images)
    logits = student.apply(variables, jnp.asarray(images, jnp.float32) / 255.0, train=False)["cls_logits"]
    np.testing.assert_array_equal(predicted, np.argmax(logits, axis=-1))


def test_balanced_sample_takes_each_domain_and_label():
    domains = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    labels = np.array([1, 0, 0, 1, 1, 0, 0, 1])
    chosen = figures.balanced_sample(domains, labels, 1, seed=0)
    pairs = sorted(zip(domains[chosen], labels[chosen]))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]
    assert list(chosen) == sorted(chosen)
    everything = figures.balanced_sample(domains, labels, 10, seed=0)
    assert list(everything) == list(range(8))
