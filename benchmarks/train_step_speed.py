"""DTDA training throughput (images/s), whole step and per part, JAX vs PyTorch eager.

    python benchmarks/train_step_speed.py [--config demo|paper] [--image_size N] [--batch N]
        [--parts full attack student teacher_fr teacher_fa] [--repeats 3] [--no-reference]
        [--threads N] [--xla_flags "--xla_cpu_..."] [--xla_variants jit xla-default ...]

Configs (random weights everywhere; no checkpoint file is read):

* demo (default): configs/synthetic.py, the laptop demo: 64x64, batch 48,
  student ResNet-18 width 64, domain classifier width 16, teachers IResNet-r18 (width 32)
  and StarGAN D (conv_dim 32, 5 stride-2 convs) at 64x64. About 3-4 minutes on 2 cores.
* paper: configs/oci_to_m.py (OCI -> M) with the released-weight
  architectures, their paths cleared: 256x256, batch 96, domain classifier width 64, ArcFace
  IResNet-r50 at 112x112, StarGAN D (conv_dim 64, 6 stride-2 convs) at 128x128. A full step
  is about 2 TFLOPs, 40-60 s per step and implementation on 2 cores; `--batch 12` keeps
  every shape but the batch and takes about 10 minutes with the defaults.

Parts, each timed on its own (images/s = batch / seconds per call):

* full: `dtda_jax.methods.dtda.steps.student_train_step` as training jits it (`stages.student_step`):
  the batch's flip/crop augmentation (a gather; the PyTorch twin takes its images as they
  are), domain-adversarial attack (Eq. 2, one signed-gradient step through the frozen domain
  classifier), both frozen teachers' forwards, student forward/backward, SGD update;
* attack: `steps.attack_images` alone;
* student: the same step built with no teachers and no attack (CE loss, SGD update);
* teacher_fr, teacher_fa: each frozen teacher's forward (resize + network).

The PyTorch side (benchmarks/torch_dtda.py) runs the same arithmetic in eager fp32, once
with contiguous NCHW tensors and once with channels_last. First calls (jit compilation,
oneDNN primitive creation) are printed separately; medians of `--repeats` calls are
interleaved round by round across implementations, so load from other processes hits all
alike. Ratio = JAX images/s / PyTorch images/s (> 1: JAX faster).

XLA options: `--xla_flags` is appended to XLA_FLAGS before JAX starts. Each of
`--xla_variants` compiles every JAX part once more with per-executable compiler options
(XLA_VARIANTS in benchmarks/student_speed.py); "jit" adds none, so every part runs with the
training options of dtda_jax/xla_cpu.py, full and student as the project's `jit_train_step`
compiles them; "xla-default" restores jaxlib's own choices.
`--threads N` pins the process to N CPUs (JAX and PyTorch then both use N threads); with
other jobs on the machine, `--threads 1` keeps PyTorch's OpenMP barriers from stalling on
descheduled threads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time

sys.path.insert(0, ".")  # benchmarks.* and tests.* when run from the repository root
from benchmarks.student_speed import XLA_VARIANTS, add_step_arguments, interleaved, pin_threads_and_flags  # noqa: E402

PARTS = ("full", "attack", "student", "teacher_fr", "teacher_fa")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("demo", "paper"), default="demo")
    add_step_arguments(parser, PARTS)
    parser.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before JAX starts")
    parser.add_argument("--xla_variants", nargs="+", default=["jit", "xla-default"],
                        choices=list(XLA_VARIANTS))
    parser.add_argument("--flops", action="store_true",
                        help="only print XLA's cost analysis (FLOPs per image of each part, from the "
                             "lowered program: no compilation, seconds) and the images/s that a GPU of "
                             "--peak_tflops at --mfu would consume")
    parser.add_argument("--peak_tflops", type=float, default=989.0,
                        help="peak dense TFLOP/s of the GPU to estimate for (default: H200 SXM bf16, "
                             "NVIDIA's datasheet)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed")
    return parser.parse_args()


def print_flops(config, num_domains: int, batch_np: dict, parts, peak_tflops: float, mfu: float) -> None:
    """XLA's FLOP count of each part per image, and the GPU consumption it implies."""
    batch = len(batch_np["image"])
    print(f"\nXLA cost analysis of the lowered programs (a multiply-add counts 2); GPU estimate at "
          f"{peak_tflops:g} TFLOP/s x MFU {mfu:g}")
    for part, build in jax_builders(config, num_domains, batch_np, parts).items():
        lowered, _ = build()
        per_image = flops_per_image(lowered, batch)
        print(f"{part:<11} {per_image / 1e9:9.2f} GFLOP/image -> {peak_tflops * 1e12 * mfu / per_image:9.0f} "
              f"images/s", flush=True)


def flops_per_image(lowered, batch: int) -> float:
    """XLA's FLOP count of a lowered program (before optimisation: the model's arithmetic,
    the same on every backend), per image of its batch."""
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one dict per program
    return float(cost["flops"]) / batch


def make_config(name: str, image_size: int | None, batch: int | None):
    from dtda_jax.config import load_config_file
    if name == "demo":
        config = load_config_file("configs/synthetic.py")
    else:
        config = load_config_file("configs/oci_to_m.py")
        config.teachers.fr_checkpoint = config.teachers.fa_checkpoint = ""
        config.model.init_checkpoint = config.domain_classifier.init_checkpoint = ""
    if image_size:
        config.data.image_size = image_size
    num_domains = len(config.data.source_domains)
    default_batch = num_domains * 2 * config.data.samples_per_group
    return config, num_domains, batch or default_batch


def random_batch(config, batch_size: int, num_domains: int) -> dict:
    """A training batch as the pipeline delivers it, random: uint8 NHWC images, domain and
    live/spoof labels, and the config's augmentation draws (flip flags, crop shifts), which
    the step applies."""
    import numpy as np

    from dtda_jax.data import augmentation

    d = config.data
    rng = np.random.default_rng(0)
    pad = augmentation.pad_pixels(d.augment_crop_padding, d.image_size)
    return {"image": rng.integers(0, 256, (batch_size, d.image_size, d.image_size, 3), dtype=np.uint8),
            "domain": rng.integers(0, num_domains, batch_size).astype(np.int32),
            "label": rng.integers(0, 2, batch_size).astype(np.int32),
            **augmentation.draws(config.seed, 0, batch_size, d.augment_flip, pad)}


def describe(config, num_domains: int, batch: int) -> str:
    t, a = config.teachers, config.attack
    return (f"{config.data.image_size}x{config.data.image_size}, batch {batch} "
            f"({num_domains} source domains); student ResNet-18 width {config.model.width}; "
            f"domain classifier ResNet-18 width {config.domain_classifier.width}; attack eps "
            f"{a.epsilon}/255, {a.num_steps} step(s); teachers IResNet-{t.fr_arch} width "
            f"{t.fr_width} at {t.fr_input_size}, StarGAN D conv_dim {t.fa_conv_dim} x"
            f"{t.fa_repeat_num} at {t.fa_image_size}; KD temperature {config.loss.temperature}; "
            f"SGD lr {config.optim.learning_rate} momentum {config.optim.momentum} wd "
            f"{config.optim.weight_decay}; dtype {config.model.dtype}")


def build_models(config, num_domains: int):
    """The full step's models with random weights: (teachers, domain_model, frozen variables
    {fr, fa, domain} on the default device, student, tx, schedule)."""
    import jax
    import jax.numpy as jnp
    from dtda_jax.core.state import rng_key
    from dtda_jax.methods.dtda import stages
    from dtda_jax.models import ResNet18Classifier
    from dtda_jax.teachers.frozen import init_teacher_variables

    size = config.data.image_size
    with contextlib.redirect_stdout(io.StringIO()):  # the random-teacher banners
        teachers = stages.make_teachers(config)
        frozen = init_teacher_variables(teachers, rng_key(config.seed + 2), config.teachers)
    domain_model = ResNet18Classifier(num_classes=num_domains, width=config.domain_classifier.width,
                                      dtype=jnp.dtype(config.model.dtype))
    frozen["domain"] = jax.jit(lambda k: domain_model.init(
        k, jnp.zeros((1, size, size, 3), jnp.float32), train=False))(rng_key(config.seed + 1))
    student = stages.make_student(config, teachers)
    tx, schedule = stages.student_optimizer(config)
    return teachers, domain_model, frozen, student, tx, schedule


def jax_builders(config, num_domains: int, batch_np: dict, parts) -> dict:
    """{part: build()} for the requested JAX parts; build() -> (lowered, make_run(compiled))."""
    import jax
    from dtda_jax.core import xla_cpu
    from dtda_jax.inference.scoring import images_to_unit_range
    from dtda_jax.core.sharding import make_mesh, put_batch, replicated
    from dtda_jax.core.state import image_model_init, init_state, rng_key
    from dtda_jax.methods.dtda import stages
    from dtda_jax.methods.dtda.steps import attack_images

    training_options = xla_cpu.compiler_options(xla_cpu.TRAINING)  # as inside the train step

    mesh = make_mesh()
    size = config.data.image_size
    teachers, domain_model, frozen, student, tx, schedule = build_models(config, num_domains)
    frozen = jax.device_put(frozen, replicated(mesh))
    batch = put_batch(batch_np, mesh)
    key = rng_key(config.seed)

    def step_runner(step_teachers, step_domain_model, step_frozen):
        step = stages.student_step(config, student, tx, schedule, step_teachers, step_domain_model, mesh)

        def fresh_state():  # one per compiled variant: every call donates the state it gets
            return init_state(image_model_init(student, size), tx, rng_key(config.seed), mesh)

        lowered = step.lower(fresh_state(), step_frozen, batch)
        return lowered, lambda compiled: _stateful(compiled, fresh_state(), step_frozen, batch)

    builders = {}
    if "full" in parts:
        builders["full"] = lambda: step_runner(teachers, domain_model, frozen)
    if "student" in parts:
        builders["student"] = lambda: step_runner({}, None, {})
    if "attack" in parts:
        attack = jax.jit(lambda dv, images, domains: attack_images(
            images_to_unit_range(images), domains, domain_model, dv, stages.attack_settings(config), key),
            compiler_options=training_options)
        builders["attack"] = lambda: (
            attack.lower(frozen["domain"], batch["image"], batch["domain"]),
            lambda c: lambda: c(frozen["domain"], batch["image"],
                                batch["domain"]).block_until_ready())
    for name, teacher in teachers.items():
        if f"teacher_{name}" in parts:
            forward = jax.jit(
                lambda v, images, t=teacher: t.logits(v, images_to_unit_range(images)),
                compiler_options=training_options)
            builders[f"teacher_{name}"] = lambda f=forward, n=name: (
                f.lower(frozen[n], batch["image"]),
                lambda c: lambda: c(frozen[n], batch["image"]).block_until_ready())

    return builders


def jax_parts(config, num_domains: int, batch_np: dict, parts, variants) -> tuple[dict, dict]:
    """{label: run()} and {label: first-call seconds} for the requested JAX parts."""
    runners, first = {}, {}
    for part, build in jax_builders(config, num_domains, batch_np, parts).items():
        lowered, make_run = build()
        for variant in variants:
            label = (part, f"jax [{variant}]")
            start = time.perf_counter()
            options = XLA_VARIANTS[variant]
            run = make_run(lowered.compile(options) if options else lowered.compile())
            run()
            first[label] = time.perf_counter() - start
            runners[label] = run
    return runners, first


def _stateful(compiled, state, frozen, batch):
    """A run() that threads the (donated) train state through successive calls."""
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], frozen, batch)
        metrics["loss"].block_until_ready()

    return run


def torch_parts(config, num_domains: int, batch_np: dict, parts, device: str = "cpu") -> tuple[dict, dict]:
    import torch
    from benchmarks import torch_dtda

    batch = {k: (torch.from_numpy(v).long() if k != "image" else torch.from_numpy(v)).to(device)
             for k, v in batch_np.items()}
    threads = f" ({torch.get_num_threads()} thr)" if device == "cpu" else ""
    runners, first = {}, {}
    for impl, channels_last in (("torch", False), ("torch channels_last", True)):
        full = torch_dtda.TorchDTDAStep(config, use_attack=True, use_teachers=True, num_domains=num_domains,
                                        channels_last=channels_last, device=device)
        plain = torch_dtda.TorchDTDAStep(config, use_attack=False, use_teachers=False, num_domains=num_domains,
                                         channels_last=channels_last, device=device)
        candidates = {
            "full": lambda s=full: s(batch),
            "student": lambda s=plain: s(batch),
            "attack": lambda s=full: s.attack(s.to_input(batch["image"]), batch["domain"]),
        }
        for name, teacher in full.teachers.items():
            candidates[f"teacher_{name}"] = (
                lambda t=teacher, s=full: t.logits(s.to_input(batch["image"])))
        for part in parts:
            if part not in candidates:
                continue
            label = (part, f"{impl}{threads}")
            start = time.perf_counter()
            candidates[part]()
            first[label] = time.perf_counter() - start
            runners[label] = candidates[part]
    return runners, first


def main():
    args = parse_args()
    pin_threads_and_flags(args.threads, args.xla_flags)

    import jax

    config, num_domains, batch_size = make_config(args.config, args.image_size, args.batch)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    print(f"XLA_FLAGS in effect: {os.environ.get('XLA_FLAGS', '') or '(none)'}; "
          f"variants: {', '.join(f'{v} {XLA_VARIANTS[v] or {}}' for v in args.xla_variants)}")
    print(f"config {args.config}: {describe(config, num_domains, batch_size)}", flush=True)

    batch_np = random_batch(config, batch_size, num_domains)
    parts = [p for p in PARTS if p in args.parts]
    if args.flops:
        print_flops(config, num_domains, batch_np, parts, args.peak_tflops, args.mfu)
        return
    runners, first = jax_parts(config, num_domains, batch_np, parts, args.xla_variants)
    if not args.no_reference:
        try:
            t_runners, t_first = torch_parts(config, num_domains, batch_np, parts)
            runners.update(t_runners)
            first.update(t_first)
        except ImportError as error:
            print(f"PyTorch reference skipped: {error}")

    print(f"\nmedian of {args.repeats} interleaved calls; ratio = JAX images/s / PyTorch images/s")
    print(f"{'part':<11} {'implementation':<30} {'first call s':>12} {'s/call':>8} {'images/s':>9}")
    for part in parts:
        mine = {impl: run for (p, impl), run in runners.items() if p == part}
        if not mine:
            continue
        times = interleaved(mine, args.repeats)
        medians = {impl: statistics.median(ts) for impl, ts in times.items()}
        for impl, t in medians.items():
            print(f"{part:<11} {impl:<30} {first[(part, impl)]:>12.2f} {t:>8.3f} "
                  f"{batch_size / t:>9.1f}", flush=True)
        torch_impls = [i for i in medians if i.startswith("torch")]
        for j in (i for i in medians if i.startswith("jax")):
            ratios = ", ".join(f"{medians[t] / medians[j]:.2f}x vs {t.split(' (')[0]}"
                               for t in torch_impls)
            if ratios:
                print(f"{'':<11} ratio {j}: {ratios}", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
