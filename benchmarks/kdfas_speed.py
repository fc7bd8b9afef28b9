"""KDFAS model sizes and training throughput (images/s), JAX vs PyTorch eager.

    python benchmarks/kdfas_speed.py [--config demo|paper] [--image_size N] [--batch N]
        [--parts teacher student_kd student_plain] [--repeats 3] [--no-reference] [--threads N]

Configs (random weights; nothing is read from disk):

* demo (default): configs/kdfas_synthetic_to_kiosk.py: 64x64, batch 48, patch 8, teacher 6 blocks
  x 128, student 3 blocks x 96. About a minute on 2 cores.
* paper: configs/kdfas_oci_to_m.py (OCI -> M): ViT-L/16 teacher, ViT-B/16 student at
  224x224, batch 96. A ViT-L/16 training step is ~180 GFLOPs per image; on a CPU use
  `--batch 2`.

Sizes are printed first (parameter counts and float32 megabytes, from shapes only). Parts,
each timed on its own (images/s = batch / seconds per call, median of `--repeats`):

* teacher: `methods.kdfas.steps.teacher_train_step` (CE, AdamW);
* student_kd: `methods.kdfas.steps.student_train_step` with both KD terms: the frozen
  teacher's forward with its stage tokens, the student's forward/backward, CE + KL + Gram
  losses, AdamW;
* student_plain: the same step without distillation (no teacher).

JAX runs the steps exactly as training jits them (`core.loop.jit_train_step`, the project's
XLA:CPU options) on one device. The PyTorch side is an eager fp32 twin: the same ViT built
from `torch.nn.TransformerEncoderLayer(norm_first=True)` (the block tests/test_kdfas.py
checks ours against), the same losses and `torch.optim.AdamW`. Calls are interleaved round by
round, so load from other processes hits both alike. Ratio = JAX images/s / PyTorch images/s.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, ".")  # benchmarks.* when run from the repository root
from benchmarks.student_speed import add_step_arguments, interleaved, pin_threads_and_flags  # noqa: E402

PARTS = ("teacher", "student_kd", "student_plain")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("demo", "paper"), default="demo")
    add_step_arguments(parser, PARTS)
    return parser.parse_args()


def make_config(name: str, image_size: int | None):
    from dtda_jax.config import load_config_file
    config = load_config_file("configs/kdfas_synthetic_to_kiosk.py" if name == "demo" else "configs/kdfas_oci_to_m.py")
    if image_size:
        config.data.image_size = image_size
    return config


def torch_vit(size, image_size: int):
    """The PyTorch twin of dtda_jax.models.vit.VisionTransformer."""
    import torch
    from torch import nn

    class TorchViT(nn.Module):
        def __init__(self):
            super().__init__()
            tokens = (image_size // size.patch_size) ** 2 + 1
            self.patch_embed = nn.Conv2d(3, size.width, size.patch_size, size.patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, size.width))
            self.pos_embed = nn.Parameter(0.02 * torch.randn(1, tokens, size.width))
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(size.width, size.num_heads, size.mlp_dim, dropout=0.0,
                                           activation="gelu", layer_norm_eps=1e-6, batch_first=True,
                                           norm_first=True) for _ in range(size.depth))
            self.norm = nn.LayerNorm(size.width, eps=1e-6)
            self.head = nn.Linear(size.width, 2)

        def forward(self, x, return_blocks=()):
            x = self.patch_embed((x - 0.5) / 0.5).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            kept = []
            for i, block in enumerate(self.blocks, 1):
                x = block(x)
                if i in return_blocks:
                    kept.append(x)
            return self.head(self.norm(x)[:, 0]), kept

    return TorchViT()


def torch_gram(tokens):
    import torch
    x = tokens - tokens.mean(dim=1, keepdim=True)
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.bmm(x, x.transpose(1, 2))


def torch_runners(config, parts, images01, labels):
    """PyTorch eager fp32 versions of the parts (NCHW)."""
    import torch
    import torch.nn.functional as F

    from dtda_jax.methods.kdfas.steps import stage_blocks

    k = config.kdfas
    size = config.data.image_size
    x = torch.from_numpy(images01).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels).long()
    teacher, student = torch_vit(k.teacher, size), torch_vit(k.student, size)
    t_blocks, s_blocks = stage_blocks(k.teacher.depth, k.num_stages), stage_blocks(k.student.depth, k.num_stages)
    runners = {}

    def adamw(model, o):
        return torch.optim.AdamW(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2),
                                 weight_decay=o.weight_decay)

    if "teacher" in parts:
        opt = adamw(teacher, k.teacher_optim)

        def teacher_step():
            loss = F.cross_entropy(teacher(x)[0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        runners["teacher"] = teacher_step

    def student_step(opt, distil: bool):
        logits, tokens = student(x, s_blocks if distil else ())
        loss_total = F.cross_entropy(logits, y)
        if distil:
            with torch.no_grad():
                t_logits, t_tokens = teacher.eval()(x, t_blocks)
            tau = k.temperature
            kl = F.kl_div(F.log_softmax(logits / tau, -1), F.log_softmax(t_logits / tau, -1),
                          reduction="batchmean", log_target=True) * tau ** 2
            gram = sum(((torch_gram(s[:, 1:]) - torch_gram(t[:, 1:])) ** 2).mean()
                       for s, t in zip(tokens, t_tokens)) / len(tokens)
            loss_total = loss_total + k.lambda_decision * kl + k.lambda_feature * gram
        opt.zero_grad()
        loss_total.backward()
        opt.step()

    for part, distil in (("student_kd", True), ("student_plain", False)):
        if part in parts:
            runners[part] = functools.partial(student_step, adamw(student, k.student_optim), distil)
    return runners


def jax_runners(config, parts, images01, labels):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dtda_jax.core.loop import jit_train_step
    from dtda_jax.core.sharding import make_mesh, put_batch
    from dtda_jax.core.state import image_model_init, init_state, rng_key
    from dtda_jax.methods.kdfas import stages, steps

    k = config.kdfas
    mesh = make_mesh(1)
    batch = put_batch({"image": (images01 * 255).astype(np.uint8), "label": labels}, mesh)
    teacher = stages.make_vit(k.teacher, k.dtype)
    tx_t, schedule_t = stages.make_adamw(k.teacher_optim, 1000)
    teacher_state = init_state(image_model_init(teacher, config.data.image_size), tx_t, rng_key(1), mesh)
    runners = {}

    def timed(step_fn, state, *frozen):
        holder = {"state": state}

        def run():
            holder["state"], metrics = step_fn(holder["state"], *frozen, batch)
            jax.block_until_ready(metrics["loss"])
        return run

    if "teacher" in parts:
        step = jit_train_step(functools.partial(steps.teacher_train_step, model=teacher, tx=tx_t,
                                                schedule=schedule_t), mesh, with_frozen=False)
        runners["teacher"] = timed(step, jax.tree.map(jnp.copy, teacher_state))
    student, tx, schedule = stages.student_and_optimizer(config)
    frozen = {"params": teacher_state.params}
    for part, distil in (("student_kd", True), ("student_plain", False)):
        if part not in parts:
            continue
        step = jit_train_step(functools.partial(
            steps.student_train_step, student=student, teacher=teacher if distil else None, tx=tx,
            schedule=schedule, use_decision_kd=distil, use_feature_kd=distil, temperature=k.temperature,
            scale_kd_by_t2=k.scale_kd_by_t2, lambda_decision=k.lambda_decision, lambda_feature=k.lambda_feature,
            teacher_blocks=steps.stage_blocks(k.teacher.depth, k.num_stages),
            student_blocks=steps.stage_blocks(k.student.depth, k.num_stages)), mesh, with_frozen=True)
        state = init_state(image_model_init(student, config.data.image_size), tx, rng_key(0), mesh)
        runners[part] = timed(step, state, frozen if distil else {})
    return runners, teacher_state.params


def main():
    args = parse_args()
    pin_threads_and_flags(args.threads, "")
    import jax
    import numpy as np

    from dtda_jax.core.state import parameter_count
    from dtda_jax.methods.kdfas import stages

    config = make_config(args.config, args.image_size)
    size = config.data.image_size
    batch = args.batch or 3 * 2 * config.data.samples_per_group
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for role in ("teacher", "student"):
        v = config.kdfas[role]
        model = stages.make_vit(v, "float32")
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3), np.float32)))
        n = parameter_count(shapes["params"])
        print(f"{role}: ViT {v.depth} blocks x {v.width}, {v.num_heads} heads, patch {v.patch_size} at "
              f"{size}px: {n:,} parameters = {4 * n / 1e6:.1f} MB ({4 * n / 2 ** 20:.1f} MiB) in float32")
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, 2, batch).astype(np.int32)
    print(f"batch {batch}, parts {args.parts}, {args.repeats} timed calls each (medians)", flush=True)

    runners = {}
    jax_parts, _ = jax_runners(config, args.parts, images, labels)
    runners.update({f"jax {p}": r for p, r in jax_parts.items()})
    if not args.no_reference:
        import torch
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        runners.update({f"torch {p}": r for p, r in torch_runners(config, args.parts, images, labels).items()})
    for name, run in runners.items():  # first calls: compilation / allocator warm-up
        start = time.perf_counter()
        run()
        print(f"  first call {name}: {time.perf_counter() - start:.2f} s", flush=True)
    times = interleaved(runners, args.repeats)
    print(f"\n{'part':<15}{'JAX img/s':>12}{'PyTorch img/s':>15}{'ratio':>8}")
    for part in args.parts:
        jax_rate = batch / statistics.median(times[f"jax {part}"])
        torch_t = times.get(f"torch {part}")
        torch_rate = batch / statistics.median(torch_t) if torch_t else float("nan")
        print(f"{part:<15}{jax_rate:>12.1f}{torch_rate:>15.1f}{jax_rate / torch_rate:>8.2f}")


if __name__ == "__main__":
    main()
