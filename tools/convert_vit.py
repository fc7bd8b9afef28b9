"""Converts a timm Vision Transformer state_dict to Flax (ImageNet initialisation of KDFAS).

    python tools/convert_vit.py vit_large_patch16_224.pth --out pretrained/vit_large_patch16_224
    python tools/convert_vit.py vit_base_patch16_224.pth --out pretrained/vit_base_patch16_224

then `--config.kdfas.teacher.init_checkpoint=pretrained/vit_large_patch16_224` (and the student
likewise). For timm ViTs that normalise inputs to [-1, 1] (mean = std = 0.5: the original
and AugReg ViTs, e.g. vit_base_patch16_224.augreg2_in21k_ft_in1k); a DeiT checkpoint (ImageNet
mean/std) would see differently scaled inputs. Save the state_dict with
torch.save(model.state_dict(), path). Needs torch: pip install torch==2.13.0. See README, "KDFAS".
"""

from dtda_jax.weights import converters

if __name__ == "__main__":
    converters.run_tool(converters.KIND_VIT)
