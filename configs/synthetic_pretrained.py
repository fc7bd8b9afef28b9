"""The demo protocol (studio & webcam & phone -> kiosk) with the real released weights.

Convert the three downloads first (README, "Real teachers and ImageNet initialisation"):
ArcFace r50 -> pretrained/arcface_r50, StarGAN D -> pretrained/stargan_celeba_128, torchvision
ResNet-18 -> pretrained/resnet18_imagenet. Then:

    python -m dtda_jax.main --config=configs/synthetic_pretrained.py

Teachers run at their training resolutions (ArcFace 112x112, StarGAN 128x128, resized from
the 64x64 frames inside the step); student and domain classifier start from ImageNet.
Variants as in synthetic.py (e.g. `configs/synthetic_pretrained.py:baseline`).

Cost: the full-size teachers make a step ~6 s on a 2-core CPU (8 img/s measured with
converted weights of the released shapes), so the 400 steps take about 40 minutes there;
a GPU is the intended place.

Expected result: not measured yet (the released weights cannot be downloaded on the
project's machines).
"""

from dtda_jax.config import load_base
from dtda_jax.methods.dtda import config as dtda

dtda_synthetic = load_base(__file__, "base/dtda_synthetic.py")


def get_config(variant: str = "dtda"):
    c = dtda_synthetic.get_config(target="kiosk", variant=variant, own_teachers=False)
    # ArcFace r50 @112, StarGAN D CelebA @128 from pretrained/, ImageNet ResNet-18 student and
    # domain classifier (width 64).
    return dtda.use_released_weights(c)
