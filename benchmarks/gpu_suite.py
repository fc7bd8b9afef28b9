"""The GPU check (issue 17, part 5): what one lent GPU does with dtda-jax, in one run of minutes.

    python benchmarks/gpu_suite.py [--smoke] [--sections a b c d e f] [--repeats 5] [--out FILE]
    bash benchmarks/gpu_suite.sh [the same options]   # on a lent GPU machine (README, "GPU check")

Sections, each timed on its own; one that fails prints its error and the others still run (the
exit status is 1 if any failed):

a. The full DTDA training step as training jits it (benchmarks/train_step_speed.py, config
   'paper' = configs/oci_to_m.py with random weights: 256 px, batch 96): images/s and MFU in
   fp32 (default precision, which XLA runs as TF32 on a GPU) and bf16 (model.dtype='bfloat16'),
   next to the PyTorch eager twin (benchmarks/torch_dtda.py), contiguous and channels_last, in
   fp32 with TF32 off, with TF32 on, and under bf16 autocast, in the same process.
   MFU = XLA's FLOPs per image of the lowered step x images/s / the peak of the arithmetic the
   variant runs in (H200_PEAK_FLOPS); every implementation is credited with the same FLOPs.
b. Student inference (dtda_jax.inference.scoring.jit_live_probability, ResNet-18 + heads at
   256 px) images/s at batch 1 and 256, fp32 and bf16.
c. The KDFAS ViT-L/16 -> ViT-B/16 distillation step (benchmarks/kdfas_speed.py, config 'paper':
   224 px, batch 96) images/s, fp32 and bf16.
d. One DTDA student step (the demo config, 64 px, batch 48, attack and both teachers) from the
   same state and batch on JAX's CPU backend and on the accelerator, matmul precision
   'highest': the differences of the losses, the parameter update and the BatchNorm statistics
   against STEP_TOLERANCE.
e. The converted teachers (random-weight PyTorch ArcFace IResNet-r50 and StarGAN D converted with
   dtda_jax.weights.converters, loaded as training loads them) on the accelerator against the
   PyTorch modules on the CPU, precision 'highest' and TF32 off: embedding / logit differences
   against TEACHER_TOLERANCE; PyTorch on the accelerator with TF32 off, and JAX at default
   precision, for comparison.
f. The input pipeline on this host's cores: benchmarks/input_pipeline_speed.py in a subprocess
   (JAX on the CPU there).

Compilation (or, for PyTorch, the first call) is timed apart from the `--repeats` timed calls,
whose median is reported. `--smoke` runs every section at tiny shapes with JAX and PyTorch on the
CPU (the same code, a few minutes on 2 cores), to check the suite before a GPU is lent.
`--out FILE` writes every table row, the environment and each section's status as JSON,
rewritten after each section.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # benchmarks.*, tests.* and dtda_jax without installing
from benchmarks import kdfas_speed, train_step_speed  # noqa: E402  (neither imports jax at import)
from benchmarks.student_speed import interleaved  # noqa: E402

# Dense peak throughput of one NVIDIA H200 SXM (NVIDIA's datasheet: the H100 SXM's rates; the 2:4
# sparsity figures are twice these), by the arithmetic a variant runs in. KINDS.md measured an
# 8192^3 bf16 matmul at 769-798 TFLOP/s on random data on the lent H200s, ~80% of the bf16 peak.
H200_PEAK_FLOPS = {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12}

# Section d: GPU vs CPU, both at precision 'highest', one step. Relative differences: of each
# loss term; of the parameter update (L2 norm of the difference / L2 norm of the CPU update, over
# all parameters); of the BatchNorm statistics (max abs difference / max abs value). Float32
# rounding through ~40 layers, summed in other orders by other kernels, is ~1e-6 relative.
STEP_TOLERANCE = {"loss": 1e-4, "update": 1e-3, "batch_stats": 1e-4}
# Section e: the largest per-sample relative L2 difference of a teacher's outputs. The CPU
# conversion tests (tests/test_conversion.py) hold 1e-5 on CPU; a GPU's fp32 convolution
# algorithms (Winograd, FFT) round differently, hence the margin.
TEACHER_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Shapes:
    dtda_config: str  # a: train_step_speed config name, image size and batch (None: the config's)
    dtda_size: int | None
    dtda_batch: int | None
    student_size: int  # b
    student_batches: tuple[int, ...]
    kdfas_config: str  # c: kdfas_speed config name, image size and batch
    kdfas_size: int | None
    kdfas_batch: int
    equality_size: int | None  # d: the demo config at this size and batch
    equality_batch: int | None
    teachers_config: str  # e: the teachers of this train_step_speed config, on images of this size
    teachers_images: int
    teachers_size: int
    pipeline_size: int  # f
    pipeline_steps: int


FULL = Shapes("paper", None, None, 256, (1, 256), "paper", None, 96, None, None, "paper", 8, 256, 256, 20)
SMOKE = Shapes("demo", 32, 4, 32, (1, 4), "demo", 32, 4, 32, 4, "demo", 2, 32, 64, 5)
INFERENCE_CALLS = 20  # b: timed calls per batch size (batch 1 is a few ms a call)
PIPELINE_TIMEOUT_S = 180  # f


class CheckFailed(Exception):
    """A section ran, and a figure is outside its tolerance (the table says which)."""


@dataclasses.dataclass
class Context:
    shapes: Shapes
    repeats: int
    smoke: bool
    accelerator: object  # jax's default device
    on_gpu: bool
    torch_device: str  # "cuda" or "cpu"


class Table:
    """Prints a header, then one line per row as it comes; keeps the rows for the JSON."""

    def __init__(self, rows: list, columns: list[tuple[str, int, str]]):
        self.rows, self.columns = rows, columns  # (key, width, format spec for numbers)
        print("  ".join(f"{key:>{width}}" if spec else f"{key:<{width}}" for key, width, spec in columns))

    def row(self, **values) -> None:
        cells = []
        for key, width, spec in self.columns:
            value = values.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and spec:
                cells.append(f"{value:>{width}{spec}}")
            else:
                cell = "-" if value is None else str(value)
                cells.append(f"{cell:>{width}}" if spec else f"{cell:<{width}}")
        print("  ".join(cells), flush=True)
        self.rows.append(values)


# --------------------------------------------------------------------------- helpers

def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def environment(ctx: Context) -> dict:
    import jax
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "smoke (tiny shapes, CPU)" if ctx.smoke else "full",
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in (
            "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "orbax-checkpoint",
            "numpy", "torch", "grain", "tensorflow-datasets", "ml-collections", "protobuf")},
        "jax_devices": [str(d) for d in jax.devices()],
        "device_kind": ctx.accelerator.device_kind,
        "cpu_model": cpu_model(),
        "host_cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                               "XLA_PYTHON_CLIENT_PREALLOCATE", "NVIDIA_TF32_OVERRIDE",
                                               "JAX_PLATFORMS") if k in os.environ},
    }
    try:
        import torch
        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name(0)
    except ImportError as error:
        info["torch_cuda"] = f"torch missing: {error}"
    return info


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" + local changes" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown (no git)"


def precision(name: str | None):
    """jax's default matmul precision for what is traced inside (None: jax's default)."""
    import jax
    return jax.default_matmul_precision(name) if name else contextlib.nullcontext()


def median_seconds(run, repeats: int) -> float:
    return statistics.median(interleaved({"run": run}, repeats)["run"])


def timed(fn):
    """(fn(), seconds it took)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def step_flops(lowered, compiled, batch: int) -> float:
    """XLA's FLOPs per image of the lowered program (the model's arithmetic), or of the compiled
    one where this jax has no cost analysis of lowered programs (custom calls to cuDNN may go
    uncounted there); NaN if neither has one."""
    for program in (lowered, compiled):
        with contextlib.suppress(Exception):
            return train_step_speed.flops_per_image(program, batch)
    return float("nan")


def mfu(flops_per_image: float, images_per_s: float, peak: str) -> float:
    return 100.0 * flops_per_image * images_per_s / H200_PEAK_FLOPS[peak]


def torch_settings(device: str, tf32: bool, autocast_dtype=None):
    """A context with PyTorch's TF32 switches set (they matter on CUDA only) and, given a dtype,
    autocast on `device`."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=autocast_dtype)


def torch_sync(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def relative_l2_per_sample(got, expected) -> float:
    """The largest ||got - expected|| / ||expected|| over the samples (rows) of a batch."""
    import numpy as np
    a = np.asarray(got, np.float64).reshape(len(got), -1)
    b = np.asarray(expected, np.float64).reshape(len(expected), -1)
    return float((np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)).max())


# --------------------------------------------------------------------------- a. full DTDA step

# (label, model.dtype, the peak of the arithmetic it runs in). XLA runs float32 convolutions and
# matmuls at default precision in TF32 on Ampere and later GPUs; a float32 step at precision
# 'highest' (the twin of PyTorch's 'fp32 tf32 off') would be one more compilation of the
# paper-shape step, left out for time.
JAX_STEP_VARIANTS = (("jax fp32", "float32", "tf32"), ("jax bf16", "bfloat16", "bf16"))
# (label, TF32 on, autocast to bf16, peak)
TORCH_STEP_VARIANTS = (("fp32 tf32 off", False, False, "fp32"),
                       ("fp32 tf32 on", True, False, "tf32"),
                       ("bf16 autocast", False, True, "bf16"))


def torch_step_runners(ctx: Context, config, num_domains: int, batch_np: dict, flops: float):
    """{label: run()} and {label: row details} of the PyTorch twin's variants, first calls done."""
    import torch

    config.model.dtype = "float32"  # the PyTorch twin is float32; autocast makes its bf16 variant
    if ctx.on_gpu:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
    torch_runs, _ = train_step_speed.torch_parts(config, num_domains, batch_np, ["full"], device=ctx.torch_device)
    runners, info = {}, {}
    for (_, impl), run in torch_runs.items():
        for variant, tf32, autocast, peak in TORCH_STEP_VARIANTS:
            def call(run=run, tf32=tf32, autocast=autocast):
                with torch_settings(ctx.torch_device, tf32, torch.bfloat16 if autocast else None):
                    run()
                torch_sync(ctx.torch_device)
            label = f"{impl} {variant} ({ctx.torch_device})"
            _, first_s = timed(call)
            runners[label], info[label] = call, dict(peak=peak, compile_s=None, first_s=first_s, flops=flops)
    return runners, info


def section_full_step(ctx: Context, rows: list) -> None:
    s = ctx.shapes
    config, num_domains, batch = train_step_speed.make_config(s.dtda_config, s.dtda_size, s.dtda_batch)
    print(f"config {s.dtda_config}: {train_step_speed.describe(config, num_domains, batch)}")
    batch_np = train_step_speed.random_batch(config, batch, num_domains)
    runners, info = {}, {}
    for label, dtype, peak in JAX_STEP_VARIANTS:
        config.model.dtype = dtype
        lowered, make_run = train_step_speed.jax_builders(config, num_domains, batch_np, ["full"])["full"]()
        compiled, compile_s = timed(lowered.compile)
        run = make_run(compiled)
        _, first_s = timed(run)
        runners[label], info[label] = run, dict(peak=peak, compile_s=compile_s, first_s=first_s,
                                                flops=step_flops(lowered, compiled, batch))
    flops = info["jax fp32"]["flops"]  # the float32 step's, credited to PyTorch too
    torch_error = None
    try:  # without the twin, the JAX rows still stand
        torch_runners, torch_info = torch_step_runners(ctx, config, num_domains, batch_np, flops)
        runners.update(torch_runners)
        info.update(torch_info)
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        torch_error = f"{type(error).__name__}: {error}"

    print(f"\nmedian of {ctx.repeats} interleaved steps; {flops / 1e9:.2f} GFLOP/image (XLA's count of "
          f"the fp32 step); MFU against H200_PEAK_FLOPS[peak] (device: {ctx.accelerator.device_kind})")
    table = Table(rows, [("implementation", 50, ""), ("peak", 4, ""), ("compile_s", 9, ".1f"),
                         ("first_call_s", 12, ".2f"), ("s_per_step", 10, ".4f"), ("images_per_s", 12, ".1f"),
                         ("TFLOP_per_s", 11, ".1f"), ("MFU_percent", 11, ".2f")])
    medians = {label: statistics.median(t) for label, t in interleaved(runners, ctx.repeats).items()}
    for label, seconds in medians.items():
        i = info[label]
        images_per_s = batch / seconds
        table.row(implementation=label, peak=i["peak"], compile_s=i["compile_s"], first_call_s=i["first_s"],
                  s_per_step=seconds, images_per_s=images_per_s, TFLOP_per_s=i["flops"] * images_per_s / 1e12,
                  MFU_percent=mfu(i["flops"], images_per_s, i["peak"]), batch=batch,
                  gflop_per_image=i["flops"] / 1e9)
    best_torch = {}
    for label, seconds in medians.items():
        if not label.startswith("jax"):
            peak = info[label]["peak"]
            best_torch[peak] = min(best_torch.get(peak, (seconds, label)), (seconds, label))
    for label in (lbl for lbl in medians if lbl.startswith("jax") and info[lbl]["peak"] in best_torch):
        seconds, torch_label = best_torch[info[label]["peak"]]
        print(f"ratio {label} / {torch_label}: {seconds / medians[label]:.2f}x (> 1: JAX faster)")
    if torch_error:
        raise CheckFailed(f"the PyTorch twin failed ({torch_error}); the JAX rows stand")


# --------------------------------------------------------------------------- b. student inference

def section_inference(ctx: Context, rows: list) -> None:
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    from dtda_jax.core.state import rng_key
    from dtda_jax.inference.scoring import jit_live_probability
    from dtda_jax.models import DTDAStudent

    size = ctx.shapes.student_size
    variables = jax.jit(functools.partial(DTDAStudent(width=64).init, train=False))(
        rng_key(0), jnp.zeros((1, size, size, 3), jnp.float32))
    rng = np.random.default_rng(0)
    print(f"DTDAStudent (ResNet-18 width 64 + heads), live probability of uint8 {size}x{size} images; "
          f"median of {INFERENCE_CALLS} calls")
    table = Table(rows, [("dtype", 8, ""), ("batch", 5, "d"), ("compile_s", 9, ".2f"), ("ms_per_call", 11, ".3f"),
                         ("images_per_s", 12, ".1f")])
    for dtype in ("float32", "bfloat16"):
        score = jit_live_probability(DTDAStudent(width=64, dtype=jnp.dtype(dtype)))  # as evaluation jits it
        for batch in ctx.shapes.student_batches:
            images = jax.device_put(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
            compiled, compile_s = timed(lambda: score.lower(variables, images).compile())
            def run(compiled=compiled, images=images):
                compiled(variables, images).block_until_ready()
            run()
            seconds = median_seconds(run, INFERENCE_CALLS)
            table.row(dtype=dtype, batch=batch, compile_s=compile_s, ms_per_call=1000 * seconds,
                      images_per_s=batch / seconds, image_size=size)


# --------------------------------------------------------------------------- c. KDFAS step

def section_kdfas(ctx: Context, rows: list) -> None:
    import numpy as np

    s = ctx.shapes
    config = kdfas_speed.make_config(s.kdfas_config, s.kdfas_size)
    k, size = config.kdfas, config.data.image_size
    print(f"config {s.kdfas_config}: teacher ViT {k.teacher.depth} blocks x {k.teacher.width} -> student ViT "
          f"{k.student.depth} x {k.student.width}, patch {k.student.patch_size}, {size}x{size}, batch "
          f"{s.kdfas_batch}; step = the student's KD step (teacher forward, CE + KL + Gram, AdamW)")
    rng = np.random.default_rng(0)
    images = rng.random((s.kdfas_batch, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, 2, s.kdfas_batch).astype(np.int32)
    table = Table(rows, [("dtype", 8, ""), ("compile_and_first_s", 19, ".1f"), ("s_per_step", 10, ".4f"),
                         ("images_per_s", 12, ".1f")])
    for dtype in ("float32", "bfloat16"):
        k.dtype = dtype
        runners, _ = kdfas_speed.jax_runners(config, ["student_kd"], images, labels)
        run = runners["student_kd"]
        _, first_s = timed(run)  # jit compilation and the first step
        seconds = median_seconds(run, ctx.repeats)
        table.row(dtype=dtype, compile_and_first_s=first_s, s_per_step=seconds,
                  images_per_s=s.kdfas_batch / seconds, batch=s.kdfas_batch, image_size=size)
        del runners, run
        gc.collect()


# --------------------------------------------------------------------------- d. step equality

def one_device_mesh(device):
    import jax
    return jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=[device])


def section_step_equality(ctx: Context, rows: list) -> None:
    import jax
    import numpy as np

    from dtda_jax.core.sharding import put_batch, replicated
    from dtda_jax.core.state import image_model_init, init_state, rng_key
    from dtda_jax.methods.dtda import stages

    s = ctx.shapes
    config, num_domains, batch = train_step_speed.make_config("demo", s.equality_size, s.equality_batch)
    config.optim.warmup_steps = 0  # the first step then has a non-zero learning rate
    size = config.data.image_size
    cpu, other = jax.devices("cpu")[0], ctx.accelerator
    print(f"demo config: {train_step_speed.describe(config, num_domains, batch)}; {other} vs {cpu}, "
          "matmul precision 'highest', the same initial state and batch")
    results = {}
    with precision("highest"):
        teachers, domain_model, frozen, student, tx, schedule = train_step_speed.build_models(config, num_domains)
        state = init_state(image_model_init(student, size), tx, rng_key(config.seed), one_device_mesh(cpu))
        host = jax.device_get((state, frozen))  # the same numbers for both devices
        batch_np = train_step_speed.random_batch(config, batch, num_domains)
        for name, device in (("cpu", cpu), ("accelerator", other)):
            mesh = one_device_mesh(device)
            step = stages.student_step(config, student, tx, schedule, teachers, domain_model, mesh)
            state_d, frozen_d = jax.device_put(host, replicated(mesh))
            (new_state, metrics), seconds = timed(lambda: jax.block_until_ready(
                step(state_d, frozen_d, put_batch(batch_np, mesh))))
            results[name] = jax.device_get((new_state, metrics))
            print(f"  {device}: compile + one step {seconds:.1f} s")

    (cpu_state, cpu_metrics), (acc_state, acc_metrics) = results["cpu"], results["accelerator"]
    table = Table(rows, [("quantity", 24, ""), ("cpu_value", 12, ".6g"), ("max_abs_diff", 12, ".3e"),
                         ("relative_diff", 13, ".3e"), ("tolerance", 9, ".0e"), ("pass", 4, "")])
    failed = []

    def check(quantity, kind, cpu_value, abs_diff, rel_diff):
        ok = bool(rel_diff <= STEP_TOLERANCE[kind])
        table.row(quantity=quantity, cpu_value=cpu_value, max_abs_diff=abs_diff, relative_diff=rel_diff,
                  tolerance=STEP_TOLERANCE[kind], **{"pass": "yes" if ok else "NO"})
        if not ok:
            failed.append(quantity)

    for name in sorted(k for k in cpu_metrics if k.startswith("loss")):
        a, b = float(acc_metrics[name]), float(cpu_metrics[name])
        check(name, "loss", b, abs(a - b), abs(a - b) / max(abs(b), 1e-30))
    def flat(tree):
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)]).astype(np.float64)

    old = flat(host[0].params)
    cpu_update, acc_update = flat(cpu_state.params) - old, flat(acc_state.params) - old
    check("parameter update (L2)", "update", float(np.linalg.norm(cpu_update)),
          float(np.abs(acc_update - cpu_update).max()),
          float(np.linalg.norm(acc_update - cpu_update) / np.linalg.norm(cpu_update)))
    cpu_stats, acc_stats = flat(cpu_state.batch_stats), flat(acc_state.batch_stats)
    stats_diff = float(np.abs(acc_stats - cpu_stats).max())
    check("batch_stats (max abs)", "batch_stats", float(np.abs(cpu_stats).max()), stats_diff,
          stats_diff / float(np.abs(cpu_stats).max()))
    if failed:
        raise CheckFailed(f"outside STEP_TOLERANCE: {', '.join(failed)}")


# --------------------------------------------------------------------------- e. converted teachers

def convert_random_teachers(config, workdir: str) -> dict:
    """Random-weight PyTorch teachers of `config`, saved and converted with the project's
    converters, their paths set in config.teachers; {name: TorchTeacher} on the CPU."""
    import torch

    from benchmarks.torch_dtda import make_torch_teachers
    from dtda_jax.weights import converters
    from tests.torch_reference import randomize

    convert = {"fr": converters.convert_arcface, "fa": converters.convert_stargan}
    torch_teachers = make_torch_teachers(config)
    for seed, (name, teacher) in enumerate(sorted(torch_teachers.items()), 1):
        randomize(teacher.model, seed)
        source = os.path.join(workdir, f"{name}.pth")
        torch.save(teacher.model.state_dict(), source)
        convert[name](source, os.path.join(workdir, name))
        config.teachers[f"{name}_checkpoint"] = os.path.join(workdir, name)
    return torch_teachers


def section_teachers(ctx: Context, rows: list) -> None:
    import copy

    import jax
    import numpy as np
    import torch

    from benchmarks.torch_dtda import TorchTeacher
    from dtda_jax.core.state import rng_key
    from dtda_jax.methods.dtda import stages
    from dtda_jax.teachers.frozen import init_teacher_variables

    s = ctx.shapes
    config, _, _ = train_step_speed.make_config(s.teachers_config, None, None)
    t = config.teachers
    print(f"config {s.teachers_config}: ArcFace IResNet-{t.fr_arch} width {t.fr_width} at {t.fr_input_size}, "
          f"StarGAN D conv_dim {t.fa_conv_dim} x{t.fa_repeat_num} at {t.fa_image_size}; random weights converted "
          f"with dtda_jax.weights.converters; {s.teachers_images} images of {s.teachers_size}x{s.teachers_size} "
          "in [0, 1] (resized by each teacher); reference: PyTorch fp32 on the CPU")
    workdir = tempfile.mkdtemp(prefix="gpu_suite_teachers_")
    try:
        torch_teachers = convert_random_teachers(config, workdir)
        with contextlib.redirect_stdout(io.StringIO()):  # the loading banners
            teachers = stages.make_teachers(config)
            variables = init_teacher_variables(teachers, rng_key(0), config.teachers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    images = np.random.default_rng(0).uniform(0, 1, (s.teachers_images, s.teachers_size, s.teachers_size, 3))
    images = images.astype(np.float32)
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    table = Table(rows, [("teacher", 7, ""), ("implementation", 40, ""), ("max_abs_diff", 12, ".3e"),
                         ("max_abs_ref", 11, ".3g"), ("rel_l2_per_sample", 17, ".3e"), ("tolerance", 9, ".0e"),
                         ("pass", 4, "")])
    failed = []
    for name, teacher in sorted(teachers.items()):
        with torch_settings("cpu", tf32=False):
            expected = torch_teachers[name].logits(nchw).numpy()
        outputs = {}
        for matmul_precision in ("highest", None):
            with precision(matmul_precision):
                got = jax.jit(teacher.logits)(variables[name], jax.device_put(images, ctx.accelerator))
                outputs[f"jax {ctx.accelerator.platform} precision {matmul_precision or 'default'}"] = (
                    np.asarray(got), matmul_precision == "highest")
        on_device = TorchTeacher(name, copy.deepcopy(torch_teachers[name].model).to(ctx.torch_device),
                                 teacher.input_size)
        with torch_settings(ctx.torch_device, tf32=False):
            outputs[f"torch {ctx.torch_device} fp32 tf32 off"] = (
                on_device.logits(nchw.to(ctx.torch_device)).cpu().numpy(), True)
        for label, (got, checked) in outputs.items():
            rel = relative_l2_per_sample(got, expected)
            ok = rel <= TEACHER_TOLERANCE
            table.row(teacher=name, implementation=label, max_abs_diff=float(np.abs(got - expected).max()),
                      max_abs_ref=float(np.abs(expected).max()), rel_l2_per_sample=rel,
                      tolerance=TEACHER_TOLERANCE if checked else None,
                      **{"pass": ("yes" if ok else "NO") if checked else "info"})
            if checked and not ok:
                failed.append(f"{name} {label}")
    if failed:
        raise CheckFailed(f"outside TEACHER_TOLERANCE: {', '.join(failed)}")


# --------------------------------------------------------------------------- f. input pipeline

def section_pipeline(ctx: Context, rows: list) -> None:
    s = ctx.shapes
    workdir = tempfile.mkdtemp(prefix="gpu_suite_pipeline_")
    command = [sys.executable, "benchmarks/input_pipeline_speed.py", "--workdir", workdir,
               "--sizes", str(s.pipeline_size), "--steps", str(s.pipeline_steps), "--threads", "1", "2", "4", "8"]
    print(f"$ JAX_PLATFORMS=cpu python {' '.join(command[1:])}   (host: {cpu_model()}, {os.cpu_count()} cores)")
    try:
        proc, seconds = timed(lambda: subprocess.run(
            command, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
            timeout=PIPELINE_TIMEOUT_S))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for line in proc.stdout.splitlines():
        print(f"  | {line}")
    table = Table(rows, [("benchmark", 24, ""), ("exit_status", 11, "d"), ("seconds", 8, ".1f"),
                         ("host_cores", 10, "d")])
    table.row(benchmark="input_pipeline_speed.py", exit_status=proc.returncode, seconds=seconds,
              host_cores=os.cpu_count(), output=proc.stdout.splitlines())
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"input_pipeline_speed.py exited with status {proc.returncode}:\n{tail}")


SECTIONS = {
    "a": ("full DTDA step: JAX fp32 / bf16 vs the PyTorch eager twin, images/s and MFU", section_full_step),
    "b": ("student inference images/s", section_inference),
    "c": ("KDFAS ViT-L/16 -> ViT-B/16 step images/s", section_kdfas),
    "d": ("one student step on the accelerator vs JAX's CPU backend", section_step_equality),
    "e": ("converted teachers on the accelerator vs PyTorch on the CPU, TF32 off", section_teachers),
    "f": ("input pipeline on the host's cores", section_pipeline),
}


# --------------------------------------------------------------------------- driver

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, JAX and PyTorch on the CPU: checks the suite in a few minutes")
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per training-step variant, median (default 5; 2 with --smoke)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    return parser.parse_args()


def write_json(path: str | None, results: dict) -> None:
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=1, default=str)
        os.replace(path + ".tmp", path)


def free_device_memory() -> None:
    gc.collect()
    if "torch" in sys.modules:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main() -> int:
    args = parse_args()
    if args.smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"  # before jax starts
    suite_start = time.perf_counter()
    import jax

    accelerator = jax.devices()[0]
    torch_device = "cpu"
    if not args.smoke:
        with contextlib.suppress(ImportError):
            import torch
            torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    repeats = args.repeats or (2 if args.smoke else 5)
    ctx = Context(shapes=SMOKE if args.smoke else FULL, repeats=repeats, smoke=args.smoke,
                  accelerator=accelerator, on_gpu=accelerator.platform == "gpu", torch_device=torch_device)
    results = {"environment": environment(ctx), "sections": {}}
    print("GPU suite (benchmarks/gpu_suite.py)" + (" --smoke" if args.smoke else ""))
    for key, value in results["environment"].items():
        print(f"  {key}: {value}")
    print(f"  PyTorch device: {torch_device}", flush=True)
    write_json(args.out, results)

    for name in args.sections:
        title, section = SECTIONS[name]
        print(f"\n=== {name}. {title}", flush=True)
        record = {"title": title, "rows": []}
        start = time.perf_counter()
        try:
            section(ctx, record["rows"])
            record["status"] = "ok"
        except CheckFailed as error:
            record["status"], record["error"] = "failed", str(error)
        except Exception as error:  # noqa: BLE001  (a failing section must not stop the others)
            traceback.print_exc()
            record["status"], record["error"] = "error", f"{type(error).__name__}: {error}"
        record["seconds"] = time.perf_counter() - start
        print(f"=== {name}: {record['status'].upper()} in {record['seconds']:.1f} s"
              + (f": {record['error'].splitlines()[0]}" if "error" in record else ""), flush=True)
        results["sections"][name] = record
        write_json(args.out, results)
        free_device_memory()

    total = time.perf_counter() - suite_start
    results["seconds"] = total
    write_json(args.out, results)
    print("\nsummary: " + ", ".join(f"{n} {r['status']} {r['seconds']:.0f}s" for n, r in results["sections"].items())
          + f"; total {total:.0f} s")
    return 0 if all(r["status"] == "ok" for r in results["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
