"""Pretrained weights: the converted-checkpoint format (`store`), reading PyTorch state_dicts
(`torch_state`) and the converters of the released ArcFace, StarGAN, ResNet-18 and timm ViT
checkpoints behind tools/convert_*.py (`converters`)."""
