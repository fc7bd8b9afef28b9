"""Flax (linen) models for DTDA: the student, and ports of the two teachers."""

from dtda_jax.models.layers import (
    BN_EPSILON,
    BN_MOMENTUM,
    PReLU,
    batch_norm,
    conv,
    max_pool_torch,
    signed_unit_range,
    torch_padding,
)
from dtda_jax.models.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BasicBlock,
    ResNet18Classifier,
    ResNet18Encoder,
    imagenet_normalize,
)
from dtda_jax.models.iresnet import (
    IRESNET_STAGES,
    IBasicBlock,
    IResNet,
    iresnet,
    iresnet_output_size,
)
from dtda_jax.models.stargan import StarGANDiscriminator
from dtda_jax.models.student import DTDAStudent

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "PReLU",
    "batch_norm",
    "conv",
    "max_pool_torch",
    "signed_unit_range",
    "torch_padding",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "ResNet18Classifier",
    "ResNet18Encoder",
    "imagenet_normalize",
    "IRESNET_STAGES",
    "IBasicBlock",
    "IResNet",
    "iresnet",
    "iresnet_output_size",
    "StarGANDiscriminator",
    "DTDAStudent",
]
