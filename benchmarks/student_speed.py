"""Student inference speed, parameters and FLOPs (the paper's Table VII for the student),
JAX vs PyTorch eager.

    python benchmarks/student_speed.py [--image_size 256] [--batches 1 64] [--repeats 5]
        [--width 64] [--no-reference] [--threads N] [--xla_flags "--xla_cpu_..."]
        [--xla_variants jit xla-default ...]

What is measured, for `dtda_jax.models.DTDAStudent` (width 64 = torchvision ResNet-18 with the
cls / fr / fa heads) scoring frames with `dtda_jax.inference.scoring.live_probability` (uint8 NHWC ->
[0, 1] -> student -> softmax live probability), random weights:

* images/s of inference at batch 1 and at a large batch, for the jitted JAX function and
  for PyTorch eager fp32 under torch.no_grad(), contiguous (NCHW) and channels_last. The
  first call (jit compilation for JAX, oneDNN primitive creation for PyTorch) is timed
  separately; the table reports medians of `--repeats` calls, interleaved JAX / PyTorch /
  PyTorch channels_last round by round so that load from other processes hits all alike,
  and the JAX/PyTorch ratio of images/s (> 1: JAX faster);
* parameters: every trainable parameter of the student (BatchNorm statistics excluded), also
  counted on the PyTorch twin (benchmarks/torch_dtda.py) as a cross-check;
* FLOPs: XLA's cost analysis ('flops') of the compiled forward at batch 1, next to the
  multiply-adds of every convolution and linear layer, over full kernels (as thop / fvcore,
  and so most papers, count) and over the taps that land on the image. XLA counts a
  multiply-add as 2 FLOPs, skips the taps on padding and adds the element-wise work
  (BatchNorm, ReLU, pooling, softmax).

XLA options: `--xla_flags` is appended to XLA_FLAGS before JAX starts (printed). Each of
`--xla_variants` compiles the function once more with per-executable compiler options
(XLA_VARIANTS; "jit" adds none: the function as evaluation and predict jit it, with the
scoring options of dtda_jax/xla_cpu.py; "xla-default" restores jaxlib's own choices),
and all variants are timed in the same interleaved rounds. `--threads N` pins the process to
N CPUs, so JAX and PyTorch both use N threads; when other jobs share the machine,
`--threads 1` keeps PyTorch's OpenMP barriers from stalling on descheduled threads (with 2
threads on a loaded 2-core machine PyTorch ran 10-50x slower than alone, which says nothing
about its speed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


# Per-executable XLA:CPU options (`jax.jit(...).lower(...).compile(options)`, merged over the
# jit's own `compiler_options`). jaxlib 0.10 hands individual dots, individual convolutions
# and reductions to YNNPACK by default; the rest goes to XLA's own emitters and Eigen.
YNN = "xla_cpu_experimental_ynn_fusion_type"
YNN_DOT, YNN_CONV, YNN_REDUCE = ("LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
                                 "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
                                 "LIBRARY_FUSION_TYPE_REDUCE")
XLA_VARIANTS = {
    "jit": {},  # nothing beyond the jit's own options
    "xla-default": {YNN: f"{YNN_DOT},{YNN_CONV},{YNN_REDUCE}"},  # jaxlib 0.10's defaults
    "no-ynn-conv": {YNN: f"{YNN_DOT},{YNN_REDUCE}"},  # convolutions back to Eigen
    "ynn-dot-only": {YNN: YNN_DOT},  # reductions too (a reduction fusion can swallow convs)
    "no-ynn": {YNN: ""},  # no YNNPACK at all
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=64, help="64 = the real ResNet-18")
    parser.add_argument("--no-reference", action="store_true", help="skip PyTorch")
    parser.add_argument("--threads", type=int, default=None,
                        help="pin the process to this many CPUs (default: all)")
    parser.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before JAX starts")
    parser.add_argument("--xla_variants", nargs="+", default=["jit", "xla-default"],
                        choices=list(XLA_VARIANTS),
                        help="compile the JAX function once per variant and time them all")
    return parser.parse_args()


def count_macs(module, example) -> tuple[int, int]:
    """Multiply-adds per image of every Conv2d / Linear: over full kernels (padding taps
    included, as thop / fvcore count) and over the taps that land on the image only."""
    import torch
    full, valid = [], []

    def taps_on_image(size, kernel, stride, padding, out):
        return sum(sum(0 <= o * stride - padding + k < size for k in range(kernel))
                   for o in range(out))

    def conv_hook(m, inputs, out):
        per_tap = (m.in_channels // m.groups) * m.out_channels
        (h, w), (ho, wo) = inputs[0].shape[2:], out.shape[2:]
        (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
        full.append(per_tap * ho * wo * kh * kw)
        valid.append(per_tap * taps_on_image(h, kh, sh, ph, ho) * taps_on_image(w, kw, sw, pw, wo))

    def linear_hook(m, _, out):
        full.append(m.in_features * m.out_features)
        valid.append(m.in_features * m.out_features)

    hooks = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        module(example[:1])
    for h in hooks:
        h.remove()
    return int(sum(full)), int(sum(valid))


def interleaved(runners: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each runner, `repeats` rounds, every runner once per round."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def add_step_arguments(parser, parts: tuple[str, ...]) -> None:
    """The options shared by the training-step benchmarks (train_step_speed, kdfas_speed)."""
    parser.add_argument("--image_size", type=int, default=None, help="default: the config's")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's")
    parser.add_argument("--parts", nargs="+", choices=parts, default=list(parts))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip PyTorch")
    parser.add_argument("--threads", type=int, default=None,
                        help="pin the process to this many CPUs (default: all)")


def pin_threads_and_flags(threads: int | None, xla_flags: str) -> None:
    """Before JAX starts: pin the process to `threads` CPUs, append `xla_flags` to XLA_FLAGS."""
    if threads:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    if xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags).strip()


def main():
    args = parse_args()
    pin_threads_and_flags(args.threads, args.xla_flags)

    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, ".")  # benchmarks.torch_dtda when run from the repository root
    from dtda_jax.models import DTDAStudent
    from dtda_jax.core.state import rng_key
    from dtda_jax.inference.scoring import jit_live_probability

    size = args.image_size
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    print(f"XLA_FLAGS in effect: {os.environ.get('XLA_FLAGS', '') or '(none)'}; "
          f"variants: {', '.join(f'{v} {XLA_VARIANTS[v] or {}}' for v in args.xla_variants)}")

    student = DTDAStudent(width=args.width)
    variables = jax.jit(functools.partial(student.init, train=False))(
        rng_key(0), jnp.zeros((1, size, size, 3), jnp.float32))
    score = jit_live_probability(student)  # as evaluation and predict compile it

    reference = None
    if not args.no_reference:
        try:
            import torch
            from benchmarks import torch_dtda
            reference = torch_dtda
        except ImportError as error:
            print(f"PyTorch reference skipped: {error}")

    print(f"\nInference of the student at {size}x{size}, median of {args.repeats} interleaved "
          "calls; ratio = JAX images/s / PyTorch images/s")
    print(f"{'batch':>5} {'implementation':<28} {'first call s':>12} {'ms/call':>10} "
          f"{'images/s':>9}")
    rng = np.random.default_rng(0)
    for batch in args.batches:
        images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        runners, first = {}, {}
        x = jax.device_put(images)
        lowered = score.lower(variables, x)
        for variant in args.xla_variants:
            start = time.perf_counter()
            options = XLA_VARIANTS[variant]
            compiled = lowered.compile(options) if options else lowered.compile()
            compiled(variables, x).block_until_ready()
            first[f"jax [{variant}]"] = time.perf_counter() - start
            runners[f"jax [{variant}]"] = (
                lambda c=compiled: c(variables, x).block_until_ready())
        if reference is not None:
            nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
            for label, fmt in (("torch contiguous", torch.contiguous_format),
                               ("torch channels_last", torch.channels_last)):
                model = reference.TorchStudent(width=args.width).eval().to(memory_format=fmt)
                inputs = nchw.contiguous(memory_format=fmt)

                def run(model=model, inputs=inputs):
                    with torch.no_grad():
                        return reference.live_probability(model, inputs)

                label = f"{label} ({torch.get_num_threads()} thr)"
                start = time.perf_counter()
                run()
                first[label] = time.perf_counter() - start
                runners[label] = run
        times = interleaved(runners, args.repeats)
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        for name, t in medians.items():
            print(f"{batch:>5} {name:<28} {first[name]:>12.2f} {1000 * t:>10.1f} {batch / t:>9.1f}",
                  flush=True)
        torch_names = [n for n in medians if n.startswith("torch")]
        for j in (n for n in medians if n.startswith("jax")):
            ratios = ", ".join(f"{medians[t] / medians[j]:.2f}x vs {t.split(' (')[0]}"
                               for t in torch_names)
            if ratios:
                print(f"{'':>5} ratio {j}: {ratios}")

    # Size and FLOPs last: compiling the batch-1 program here first would let the timed first
    # call above reuse it.
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    one = jnp.zeros((1, size, size, 3), jnp.uint8)
    cost = score.lower(variables, one).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one dict per program
    xla_flops = float(cost["flops"])
    print(f"\nStudent (ResNet-18 width {args.width} + cls/fr/fa heads), one {size}x{size} image")
    print(f"  parameters: {n_params:,} ({n_params / 1e6:.2f} M)", end="")
    if reference is None:
        print(f"\n  FLOPs (XLA cost analysis of the compiled forward, batch 1): "
              f"{xla_flops / 1e9:.3f} G (a multiply-add counts 2)")
    else:
        t_student = reference.TorchStudent(width=args.width).eval()
        t_params = sum(p.numel() for p in t_student.parameters())
        print(f"; PyTorch twin: {t_params:,}{'' if t_params == n_params else ' (DIFFERS)'}")
        full, valid = count_macs(t_student, torch.zeros(1, 3, size, size))
        print(f"  FLOPs (XLA cost analysis of the compiled forward, batch 1): "
              f"{xla_flops / 1e9:.3f} G")
        print(f"  conv + linear multiply-adds: {full / 1e9:.3f} G over full kernels (thop / fvcore "
              f"convention), {valid / 1e9:.3f} G over taps on the image")
        print(f"  XLA FLOPs = {xla_flops / valid:.3f} x the multiply-adds on the image (2.000 + "
              f"{(xla_flops - 2 * valid) / 1e9:.3f} GFLOPs of element-wise work): XLA counts a "
              "multiply-add as 2 FLOPs and skips the taps on padding")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
