"""The DTDA student: ResNet-18 encoder with three parallel embedding heads.

The paper describes three embeddings computed from the shared student
features: the classification embedding E_c (live/spoof), the recognition
embedding E_r (distilled from the ArcFace teacher) and the editing embedding
E_e (distilled from the StarGAN-D attribute teacher). They are the paper's
"embedding layers": single linear projections of the pooled backbone feature,
so each is a plain ``nn.Dense`` here. Keeping them linear keeps the shared
encoder responsible for all the representation learning, which is what the
distillation is meant to shape.

Inputs are float RGB images in ``[0, 1]`` (NHWC); :func:`imagenet_normalize`
is applied first, so the ``encoder`` subtree can be initialised from
torchvision's ImageNet ResNet-18.
"""

from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import flax.linen as nn

from dtda_jax.models.layers import Dtype, gradient_reversal
from dtda_jax.models.resnet import ResNet18Encoder, imagenet_normalize


class DTDAStudent(nn.Module):
    """ResNet-18 student with classification / recognition / editing heads.

    Attributes:
      width: encoder base width (64 = real ResNet-18; pooled features have
        ``8 * width`` channels).
      num_classes: live/spoof classes (``cls_head``).
      fr_dim: recognition embedding size (``fr_head``; 512 = ArcFace).
      fa_dim: editing/attribute embedding size (``fa_head``; 5 = StarGAN c_dim).
      num_domains: > 0 adds ``domain_head``, a source-domain classifier behind a gradient
        reversal layer (the domain-adversarial-training baseline, ``dat``); 0 = none.
      dtype: computation dtype (params stay float32).

    Submodules (param subtrees): ``encoder``, ``cls_head``, ``fr_head``, ``fa_head``
    (and ``domain_head``).
    """

    width: int = 64
    num_classes: int = 2
    fr_dim: int = 512
    fa_dim: int = 5
    num_domains: int = 0
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.encoder = ResNet18Encoder(self.width, dtype=self.dtype)
        dense = lambda n: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32)
        self.cls_head = dense(self.num_classes)
        self.fr_head = dense(self.fr_dim)
        self.fa_head = dense(self.fa_dim)
        if self.num_domains:
            self.domain_head = dense(self.num_domains)

    def heads(self, features: jax.Array, grl_scale: float = 1.0) -> Dict[str, jax.Array]:
        """Apply the heads to pooled features ``(N, 8*width)``; ``grl_scale`` is the gradient
        reversal factor in front of ``domain_head`` (if any)."""
        out = {
            "features": features,
            "cls_logits": self.cls_head(features),
            "fr_embedding": self.fr_head(features),
            "fa_logits": self.fa_head(features),
        }
        if self.num_domains:
            out["domain_logits"] = self.domain_head(gradient_reversal(features, grl_scale))
        return out

    def from_feature_map(self, feature_map: jax.Array) -> Dict[str, jax.Array]:
        """Global-average-pool an encoder feature map and apply the heads.

        With ``__call__(..., return_feature_map=True)`` this splits the student
        at the last conv feature map, e.g. for Grad-CAM::

            out = model.apply(v, x, train=False, return_feature_map=True)
            g = jax.grad(lambda f: model.apply(
                v, f, method=DTDAStudent.from_feature_map)["cls_logits"][:, 1].sum()
            )(out["feature_map"])
        """
        return self.heads(jnp.mean(feature_map, axis=(1, 2)))

    def __call__(
        self, x: jax.Array, train: bool, return_feature_map: bool = False, grl_scale: float = 1.0
    ) -> Dict[str, jax.Array]:
        """``x``: NHWC float images in ``[0, 1]``.

        Returns ``{"features": (N, 8*width), "cls_logits": (N, num_classes),
        "fr_embedding": (N, fr_dim), "fa_logits": (N, fa_dim)}``, plus
        ``"domain_logits"`` (N, num_domains) if ``num_domains`` and ``"feature_map"``
        (N, H/32, W/32, 8*width) if ``return_feature_map``.
        """
        x = imagenet_normalize(x)
        features, fmap = self.encoder(x, train, return_feature_map=True)
        out = self.heads(features, grl_scale)
        if return_feature_map:
            out["feature_map"] = fmap
        return out
