"""Deployment speed: the exported student and MTCNN under ONNX Runtime, vs JAX and PyTorch eager.

    python benchmarks/deploy_speed.py [--repeats 30] [--batches 1 8] [--frames 30] [--rounds 5]
        [--stream_threads 1 2] [--threads N] [--no-reference] [--smoke]

The student is the 256-px DTDA student of configs/oci_to_m.py (ResNet-18 width 64 with the
cls / fr / fa heads, built by `scored_model` as `python -m dtda_jax.export` builds it), scoring
uint8 NHWC RGB face crops to live probabilities (`inference.scoring.live_probability`). Its
weights are random (tests/torch_reference.py `randomize`: random BatchNorm statistics too) and
identical in every engine: set on the PyTorch twin (benchmarks/torch_dtda.py) and copied into
the Flax variables with `weights.torch_state.state_dict_to_variables` (with --no-reference,
Flax's own random init).

1. Latency at batch 1 (and each of --batches) in three engines:
   * ONNX Runtime (CPUExecutionProvider, default SessionOptions: graph optimisation
     ORT_ENABLE_ALL, intra-op threads 0 = ORT's choice) on the graph of the project's exporter
     (`deploy.onnx_graph.to_onnx`, dynamic batch), as the bundle holds it;
   * JAX: `inference.scoring.jit_live_probability` (the jit evaluation and predict use);
   * PyTorch eager fp32 under torch.no_grad(), contiguous NCHW and channels_last.
   Every engine is handed the same numpy uint8 NHWC batch and returns numpy, so the timed call
   includes whatever layout change it needs. The first call (JAX compilation, ORT / oneDNN
   allocations) is timed separately and --warmup more calls are made; the table reports
   medians of --repeats calls interleaved round by round (load from other processes hits every
   engine alike) and images/s relative to PyTorch eager contiguous (> 1: faster). ORT and
   PyTorch are checked against JAX on the same batch (max abs difference of the probability).
2. Frames/s on a 640x480 stream: scikit-image's astronaut resized into a 640x480 canvas, shifted
   a few pixels per frame so no two frames are alike. Per frame: detection (`face_extraction.
   Detector` with the FaceSettings the real configs use, largest face), the crop (`face_crop`)
   and the student at batch 1. With ONNX Runtime the MTCNN nets are the exporter's graphs
   (`deploy.export.mtcnn_functions`, saved as a bundle names them, opened with
   `deploy.runtime.onnx_nets`) and the student is the ONNX session: numpy, OpenCV and ORT only,
   for each of --stream_threads intra-op threads (SessionOptions.intra_op_num_threads, every
   session; thread spinning off, as deploy.runtime opens a bundle's sessions), once detecting
   on every whole frame (what `predict` does on a video's frames) and once tracked as
   `predict --stream` does by default (`inference.stream.FaceTracker`: the whole frame every 15
   frames, a region around the last face in between). The reference row is the JAX MTCNN
   (default jitted nets) + the jitted JAX student, every frame.
   Detection alone, the student alone (on the frames' crops) and the whole pipeline are each
   timed as a pass over the --frames frames, --rounds interleaved passes, median.
Goals printed next to the results: ONNX student at batch 1 at least as fast as PyTorch eager
(its faster layout), and the stream at >= 15 frames/s on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, ".")  # benchmarks.* and tests.* when run from the repository root
from benchmarks.student_speed import interleaved, pin_threads_and_flags  # noqa: E402

CONFIG = "configs/oci_to_m.py"
GOAL_FPS = 15.0
GOAL_CORES = 2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per engine and batch")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls after the first")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--frames", type=int, default=30, help="distinct stream frames per pass")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the frames")
    parser.add_argument("--stream_threads", type=int, nargs="+", default=[1, 2],
                        help="ORT intra-op threads of the stream pipelines")
    parser.add_argument("--threads", type=int, default=None,
                        help="pin the process to this many CPUs (default: all)")
    parser.add_argument("--no-reference", action="store_true", help="skip PyTorch")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.warmup, args.frames, args.rounds = 3, 1, 3, 1
    return args


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version
    found = [f"python {sys.version.split()[0]}"]
    for name in ("numpy", "jax", "jaxlib", "flax", "onnx", "onnxruntime", "torch", "opencv-python",
                 "opencv-python-headless"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def ort_session(model_bytes: bytes, threads: int | None = None, spin: bool = True):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spin:  # idle pool threads block at once instead of spinning (ORT's default)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def first_and_warm(run, warmup: int) -> float:
    """Seconds of the first call; then `warmup` untimed calls."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    for _ in range(warmup):
        run()
    return first


def build_student(no_reference: bool):
    """(config, model, variables, PyTorch twin with the same weights or None)."""
    import jax
    import jax.numpy as jnp
    from dtda_jax import methods
    from dtda_jax.config.overrides import load_config_file
    from dtda_jax.core.state import rng_key

    config = load_config_file(CONFIG)
    model, _ = methods.training_module(config.method.name).scored_model(config)
    size = int(config.data.image_size)
    init = functools.partial(model.init, train=False)
    example = jnp.zeros((1, size, size, 3), jnp.float32)
    twin = None
    if not no_reference:
        try:
            from benchmarks import torch_dtda
            from tests.torch_reference import randomize
        except ImportError as error:
            print(f"PyTorch reference skipped: {error}")
        else:
            from dtda_jax.weights.torch_state import state_dict_to_variables
            twin = randomize(torch_dtda.TorchStudent(width=model.width, fr_dim=model.fr_dim,
                                                     fa_dim=model.fa_dim), seed=0)
            state = {k: v.numpy() for k, v in twin.state_dict().items()}
            return config, model, state_dict_to_variables(state, jax.eval_shape(init, rng_key(0), example)), twin
    return config, model, jax.jit(init)(rng_key(0), example), twin


def engine_latency(args, size, model, variables, twin, student_bytes) -> dict:
    """Part 1; returns {batch: {engine: median seconds per call}}."""
    import numpy as np
    from dtda_jax.inference.scoring import jit_live_probability

    session = ort_session(student_bytes)
    jax_score = jit_live_probability(model)
    engines = {"onnxruntime": lambda x: session.run(None, {"image": x})[0],
               "jax jit": lambda x: np.asarray(jax_score(variables, x))}
    threads = {"onnxruntime": "ORT default", "jax jit": "XLA"}
    if twin is not None:
        import torch
        from benchmarks import torch_dtda
        for label, fmt in (("torch eager", torch.contiguous_format),
                           ("torch channels_last", torch.channels_last)):
            net = copy.deepcopy(twin).to(memory_format=fmt)

            def run(x, net=net, fmt=fmt):
                with torch.no_grad():
                    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
                    return torch_dtda.live_probability(net, inputs).numpy()

            engines[label], threads[label] = run, f"{torch.get_num_threads()} thr"
    print(f"\n1. Student latency at {size}x{size}, uint8 NHWC numpy in, probabilities out; median of "
          f"{args.repeats} interleaved calls after the first + {args.warmup} warm-up")
    print(f"{'batch':>5} {'engine':<20} {'threads':<12} {'first s':>8} {'ms/call':>9} "
          f"{'ms/image':>9} {'images/s':>9} {'vs torch':>8}")
    rng = np.random.default_rng(0)
    results = {}
    for batch in args.batches:
        images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        first = {name: first_and_warm(lambda f=f: f(images), args.warmup) for name, f in engines.items()}
        outputs = {name: f(images) for name, f in engines.items()}
        times = interleaved({name: lambda f=f: f(images) for name, f in engines.items()}, args.repeats)
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        base = medians.get("torch eager")
        for name, t in medians.items():
            ratio = f"{base / t:>7.2f}x" if base else f"{'-':>8}"
            print(f"{batch:>5} {name:<20} {threads[name]:<12} {first[name]:>8.2f} {1000 * t:>9.1f} "
                  f"{1000 * t / batch:>9.1f} {batch / t:>9.1f} {ratio}", flush=True)
        for name in (n for n in outputs if n != "jax jit"):
            diff = float(np.max(np.abs(outputs[name].astype(np.float64) - outputs["jax jit"])))
            print(f"{'':>5} {name} vs jax jit: max abs difference {diff:.2e}")
        results[batch] = medians
    return results


def stream_frames(n: int):
    """`n` 640x480 RGB frames: the astronaut (448x448) on a grey canvas, 3 px further per frame."""
    import cv2
    import numpy as np
    from tests import real_photos

    face = cv2.resize(real_photos.astronaut(), (448, 448), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        frame = np.full((480, 640, 3), 96, np.uint8)
        left, top = 64 + (3 * i) % 64, 16 + (2 * i) % 16
        frame[top:top + 448, left:left + 448] = face
        frames.append(frame)
    return frames


def stream(args, config, model, variables, student_bytes) -> dict:
    """Part 2; returns {pipeline: {stage: frames/s}}."""
    import numpy as np
    from dtda_jax.data import face_extraction
    from dtda_jax.data.pipeline import real_settings
    from dtda_jax.deploy import export, runtime
    from dtda_jax.deploy.onnx_graph import to_onnx
    from dtda_jax.faces.mtcnn import MTCNN
    from dtda_jax.inference.scoring import jit_live_probability
    from dtda_jax.inference.stream import FaceTracker

    _, settings = real_settings(config.data)
    folder = tempfile.mkdtemp(prefix="deploy-speed-")
    start, nets_bytes = time.perf_counter(), {}
    for name, (fn, specs) in export.mtcnn_functions().items():
        nets_bytes[name] = to_onnx(fn, specs, *runtime.NET_IO[name]).SerializeToString()
        with open(os.path.join(folder, runtime.MTCNN_ONNX[name]), "wb") as f:
            f.write(nets_bytes[name])
    print(f"\n2. Stream of {args.frames} distinct 640x480 frames (astronaut, shifted per frame); "
          f"{settings}; MTCNN exported to ONNX in {time.perf_counter() - start:.1f} s")

    pipelines = {}
    for t in args.stream_threads:
        session = ort_session(student_bytes, t, spin=False)  # as deploy.runtime opens a bundle's
        detector = face_extraction.Detector(settings, mtcnn=MTCNN(
            min_face_size=settings.min_face_size, nets=runtime.onnx_nets(folder, threads=t)))
        score = lambda crop, s=session: float(s.run(None, {"image": crop[None]})[0][0])  # noqa: E731
        pipelines[f"onnxruntime {t} thr, every frame"] = (detector, score)
        # What `predict --stream` does by default: whole-frame search every 15 frames, tracked between.
        pipelines[f"onnxruntime {t} thr, tracked"] = (FaceTracker(detector, redetect=15), score)
    jax_score = jit_live_probability(model)
    pipelines["jax (reference)"] = (face_extraction.Detector(settings),
                                    lambda crop: float(jax_score(variables, crop[None])[0]))
    shutil.rmtree(folder)  # the sessions hold the models

    frames = stream_frames(args.frames)

    def per_frame(detector, score, frame):
        hit = detector.largest_faces([frame])[0]
        if hit is None:
            return None
        box, landmarks, _ = hit
        crop = face_extraction.face_crop(frame, box, landmarks, settings)
        return box, crop, score(crop)

    found = {}
    for name, (detector, score) in pipelines.items():  # warm-up pass: compiles, allocates
        found[name] = [per_frame(detector, score, f) for f in frames]
    crops = [hit[1] for hit in found["jax (reference)"] if hit is not None] or [
        np.ascontiguousarray(frames[0][112:368, 192:448])]  # no face found: the frame's centre
    runners = {}
    for name, (detector, score) in pipelines.items():
        runners[name, "detect"] = lambda d=detector: [d.largest_faces([f]) for f in frames]
        runners[name, "student"] = lambda s=score: [s(c) for c in crops]
        runners[name, "pipeline"] = lambda d=detector, s=score: [per_frame(d, s, f) for f in frames]
    times = interleaved(runners, args.rounds)
    fps = {}
    for (name, stage), ts in times.items():
        n = len(crops) if stage == "student" else len(frames)
        fps.setdefault(name, {})[stage] = n / statistics.median(ts)
    print(f"median of {args.rounds} interleaved passes; frames/s (student: crops/s at batch 1)")
    print(f"{'pipeline':<34} {'faces':>7} {'detect':>8} {'student':>8} {'pipeline':>9} {'ms/frame':>9}")
    for name, stages in fps.items():
        faces = f"{sum(hit is not None for hit in found[name])}/{len(frames)}"
        print(f"{name:<34} {faces:>7} {stages['detect']:>8.1f} {stages['student']:>8.1f} "
              f"{stages['pipeline']:>9.1f} {1000 / stages['pipeline']:>9.1f}")
    reference = found["jax (reference)"]
    for name in (n for n in found if n != "jax (reference)"):
        pairs = [(a, b) for a, b in zip(found[name], reference) if a is not None and b is not None]
        if pairs:
            box = max(float(np.max(np.abs(a[0] - b[0]))) for a, b in pairs)
            prob = max(abs(a[2] - b[2]) for a, b in pairs)
            print(f"{name} vs jax: max abs difference of boxes {box:.2e} px, of probabilities {prob:.2e}")
    return fps


def main():
    wall = time.perf_counter()
    args = parse_args()
    pin_threads_and_flags(args.threads, "")

    import jax
    import jax.numpy as jnp
    import onnxruntime as ort
    from dtda_jax.deploy.onnx_graph import to_onnx
    from dtda_jax.inference.scoring import live_probability

    print(f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.2f}; JAX device {jax.devices()[0].device_kind} "
          f"({jax.default_backend()})")
    print(versions())
    options = ort.SessionOptions()
    print(f"ORT SessionOptions defaults: graph_optimization_level {options.graph_optimization_level.name}, "
          f"intra_op_num_threads {options.intra_op_num_threads} (0 = ORT's choice), "
          f"execution_mode {options.execution_mode.name}")

    config, model, variables, twin = build_student(args.no_reference)
    size = int(config.data.image_size)
    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
    start = time.perf_counter()
    proto = to_onnx(functools.partial(live_probability, variables, model=model), [spec],
                    ["image"], ["live_probability"])
    student_bytes = proto.SerializeToString()
    print(f"student: {CONFIG} (width {model.width}, {size} px), "
          f"{'weights shared with the PyTorch twin' if twin is not None else 'Flax random init'}; "
          f"ONNX export {time.perf_counter() - start:.1f} s, {len(proto.graph.node)} nodes, "
          f"{len(student_bytes) / 2**20:.1f} MiB")

    latency = engine_latency(args, size, model, variables, twin, student_bytes)
    fps = stream(args, config, model, variables, student_bytes)

    print("\nGoals")
    if 1 in latency and twin is not None:
        m = latency[1]
        best = min(("torch eager", "torch channels_last"), key=m.get)
        verdict = "met" if m["onnxruntime"] <= m[best] else "NOT met"
        print(f"  ONNX student batch 1 at least as fast as PyTorch eager: onnxruntime "
              f"{1000 * m['onnxruntime']:.1f} ms vs {best} {1000 * m[best]:.1f} ms "
              f"({m[best] / m['onnxruntime']:.2f}x) -> {verdict}")
    else:
        print("  ONNX student vs PyTorch eager: not measured (needs batch 1 and PyTorch)")
    t = GOAL_CORES if GOAL_CORES in args.stream_threads else max(args.stream_threads)
    cores = len(os.sched_getaffinity(0))
    for name in (n for n in fps if n.startswith(f"onnxruntime {t} thr,")):
        got = fps[name]["pipeline"]
        print(f"  stream >= {GOAL_FPS:g} frames/s on {GOAL_CORES} cores at 640x480: {name} "
              f"{got:.1f} frames/s on {cores} CPUs -> {'met' if got >= GOAL_FPS else 'NOT met'}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}; wall time "
          f"{time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
