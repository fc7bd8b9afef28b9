"""PyTorch eager references of the DTDA student and training step, for the speed benchmarks.

The networks come from tests/torch_reference.py (written from the released torchvision,
insightface and StarGAN sources); this module adds what the benchmarks compare against:
the student (ResNet-18 with the three heads of dtda_jax/models/student.py), the domain
classifier, the frozen teachers with their input resizing, the attack of Eq. (2), the loss
of Eq. (9) and PyTorch's SGD. Everything mirrors dtda_jax/methods/dtda/steps.py::student_train_step
operation for operation, so the two timings measure the same arithmetic. Weights are random:
the benchmarks measure speed only.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, ".")  # tests.torch_reference when run from the repository root
from tests.torch_reference import (  # noqa: E402
    IRESNET_LAYERS, IResNet, ResNet18, StarGANDiscriminator)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class TorchStudent(nn.Module):
    """torchvision ResNet-18 trunk + cls / fr / fa linear heads on the pooled feature."""

    def __init__(self, width: int = 64, num_classes: int = 2, fr_dim: int = 512, fa_dim: int = 5):
        super().__init__()
        self.encoder = ResNet18(width=width)
        del self.encoder.fc  # the heads replace it
        self.cls_head = nn.Linear(8 * width, num_classes)
        self.fr_head = nn.Linear(8 * width, fr_dim)
        self.fa_head = nn.Linear(8 * width, fa_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.encoder.features(imagenet_normalize(x))
        return {"cls_logits": self.cls_head(f), "fr_embedding": self.fr_head(f),
                "fa_logits": self.fa_head(f)}


class TorchDomainClassifier(nn.Module):
    """dtda_jax ResNet18Classifier: ImageNet normalisation, then ResNet-18 with `fc`."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.net = ResNet18(num_classes=num_classes, width=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(imagenet_normalize(x))


def live_probability(student: TorchStudent, images_uint8: torch.Tensor) -> torch.Tensor:
    """dtda_jax.inference.scoring.live_probability: uint8 NCHW -> [0, 1] -> student -> softmax[:, 1]."""
    out = student(images_uint8.float() / 255.0)
    return torch.softmax(out["cls_logits"], dim=-1)[:, 1]


class TorchTeacher:
    """A frozen teacher in eval mode with dtda_jax.teachers.teacher_input's resizing."""

    def __init__(self, name: str, model: nn.Module, input_size: int):
        self.name, self.model, self.input_size = name, model.eval(), input_size
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def logits(self, images01: torch.Tensor) -> torch.Tensor:
        x = images01
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = (x - 0.5) / 0.5
        return self.model(x) if self.name == "fr" else self.model(x)[1]


def make_torch_teachers(config) -> dict[str, TorchTeacher]:
    t, m = config.teachers, config.method
    teachers = {}
    if m.use_fr_teacher:
        teachers["fr"] = TorchTeacher("fr", IResNet(IRESNET_LAYERS[t.fr_arch], width=t.fr_width,
                                                    input_size=t.fr_input_size), t.fr_input_size)
    if m.use_fa_teacher:
        teachers["fa"] = TorchTeacher("fa", StarGANDiscriminator(
            image_size=t.fa_image_size, conv_dim=t.fa_conv_dim, c_dim=t.fa_c_dim,
            repeat_num=t.fa_repeat_num), t.fa_image_size)
    return teachers


def attack_images(images01: torch.Tensor, domains: torch.Tensor, domain_model: nn.Module,
                  attack) -> torch.Tensor:
    """Eq. (2) as dtda_jax.methods.dtda.attack.domain_adversarial_attack (one step, or PGD without a random
    start)."""
    eps, steps = attack.epsilon / 255.0, attack.num_steps
    step = eps if steps == 1 else attack.step_size / 255.0
    x = images01.detach()
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(domain_model(x), domains)
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() + step * grad.sign()
        if steps > 1:
            x = torch.minimum(torch.maximum(x, images01 - eps), images01 + eps)
        x = x.clamp(0.0, 1.0)
    return x.detach()


def kd_kl_divergence(teacher_logits, student_logits, temperature: float, scale_by_t2: bool):
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    return kl * (temperature ** 2 if scale_by_t2 else 1.0)


class TorchDTDAStep:
    """One DTDA student step in PyTorch eager: attack -> teachers -> student update (Eq. 9).

    `channels_last` converts every network and the batch to torch.channels_last (the layout
    oneDNN prefers on CPU); otherwise everything is contiguous NCHW. Networks live on `device`,
    and `__call__` expects its batch there.
    """

    def __init__(self, config, *, use_attack: bool, use_teachers: bool, num_domains: int,
                 channels_last: bool = False, seed: int = 0, device: str = "cpu"):
        torch.manual_seed(seed)
        self.config = config
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # make_student: fr_dim = the IResNet's 512-d embedding, fa_dim = StarGAN's c_dim.
        self.student = TorchStudent(width=config.model.width, fr_dim=512,
                                    fa_dim=config.teachers.fa_c_dim)
        self.student.to(device=device, memory_format=self.memory_format).train()
        self.teachers = make_torch_teachers(config) if use_teachers else {}
        for t in self.teachers.values():
            t.model.to(device=device, memory_format=self.memory_format)
        self.domain_model = None
        if use_attack:
            self.domain_model = TorchDomainClassifier(num_domains, config.domain_classifier.width)
            self.domain_model.to(device=device, memory_format=self.memory_format).eval()
            for p in self.domain_model.parameters():
                p.requires_grad_(False)
        o = config.optim
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=o.learning_rate,
                                         momentum=o.momentum, weight_decay=o.weight_decay)

    def to_input(self, images_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (how dtda_jax batches travel) -> float NCHW in [0, 1], this step's layout."""
        x = images_uint8_nhwc.permute(0, 3, 1, 2).float() / 255.0
        return x.contiguous(memory_format=self.memory_format)

    def attack(self, clean: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return attack_images(clean, domains, self.domain_model, self.config.attack)

    def teacher_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: t.logits(x) for name, t in self.teachers.items()}

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        c = self.config
        clean = self.to_input(batch["image"])
        x = self.attack(clean, batch["domain"]) if self.domain_model is not None else clean
        soft = self.teacher_logits(x)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.student(x)
        total = F.cross_entropy(out["cls_logits"], batch["label"])
        heads = {"fr": ("fr_embedding", c.loss.lambda_fr), "fa": ("fa_logits", c.loss.lambda_fa)}
        for name, target in soft.items():
            key, weight = heads[name]
            total = total + weight * kd_kl_divergence(target, out[key], c.loss.temperature,
                                                      c.loss.scale_kd_by_t2)
        total.backward()
        self.optimizer.step()
        return total.detach()
