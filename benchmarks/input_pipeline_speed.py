"""Training-input throughput (images/s) of the current pipeline on a prepared real-data layout.

    python benchmarks/input_pipeline_speed.py [--sizes 64 256] [--threads 1 2 4] [--steps 30]
        [--workdir DIR] [--step_images_per_s N]

A fake CASIA-FASD download (tests/fake_fas_trees.py: the official layout, short videos of the
real face photos) is prepared once per crop size with the project's own preparation (video
decoding, MTCNN, crops stored as PNG, tfds), as tools/prepare_fas.py prepares the real one.
Then, per size:

* decode, 1 core: `FrameSet.read_images` of whole batches in this process (PNG decode + stack);
* batches, grain threads T: the training iterator exactly as training builds it (balanced
  batches of 48, augmentation, grain's thread pool of T threads), images/s over --steps steps.

Next to them: what the step consumes. On this machine the DTDA step of the demo config
(measure with benchmarks/train_step_speed.py, pass it as --step_images_per_s), and on a GPU the
estimate from XLA's FLOPs (benchmarks/train_step_speed.py --config paper --flops: 35.07
GFLOP/image for the full step at paper shapes, ~11,300 images/s on one H200 at 40% MFU). The
last column says how many cores of this machine's speed the pipeline would need to deliver 3x
that rate, if it scaled linearly with cores (it does not beyond grain's thread pool: see the
threads rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GPU_IMAGES_PER_S = 11_300  # one H200, 40% of 989 TFLOP/s bf16, 35.07 GFLOP/image (see above)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--samples_per_group", type=int, default=24, help="batch = 2 x this (one domain)")
    parser.add_argument("--workdir", default=None, help="where the fake download and datasets go (default: a temp dir)")
    parser.add_argument("--step_images_per_s", type=float, default=None,
                        help="the training step's measured images/s on this machine, for comparison")
    return parser.parse_args()


def prepared_frames(workdir: str, size: int):
    """The train frames of a fake CASIA-FASD prepared with `size`-px crops."""
    from dtda_jax.data import pipeline, real_fas
    from dtda_jax.data.face_extraction import FaceSettings, FrameSettings
    from tests import fake_fas_trees

    root = os.path.join(workdir, "download_casia_fasd")
    if not os.path.isdir(root):
        fake_fas_trees.make_casia_fasd(root)
    builder = real_fas.prepare("casia_fasd", root, os.path.join(workdir, "data"), FrameSettings(),
                               FaceSettings(size=size, detect_max_side=256))
    source = builder.as_data_source(split="train")
    return pipeline._frame_set([source], [{int(source[0]["domain"]): 0}])


def rate(fn, images_per_call: int, calls: int) -> float:
    fn()  # warm-up (thread pools, first reads)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return images_per_call * calls / (time.perf_counter() - start)


def main():
    args = parse_args()
    import grain

    from dtda_jax.data import pipeline

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    print(f"host: {cpu}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="input_pipeline_speed_")
    rows = []
    for size in args.sizes:
        frames = prepared_frames(workdir, size)
        groups = tuple(pipeline.group_members(frames, 1, ("casia_fasd",)))
        batch_fn = pipeline.BalancedBatches(frames, groups, args.samples_per_group, seed=0, flip=True,
                                            crop_padding=0.125)
        batch = batch_fn.global_batch_size
        print(f"\n{size} px: {len(frames)} train frames (PNG), batch {batch}", flush=True)
        positions = pipeline.balanced_batch_positions(groups, args.samples_per_group, 0, 0)
        rows.append((size, "decode, 1 core", rate(lambda: frames.read_images(positions), batch, args.steps)))
        print(f"  {rows[-1][1]:<24} {rows[-1][2]:9.0f} images/s", flush=True)
        for threads in args.threads:
            def epoch(t=threads):
                ds = grain.MapDataset.range(0, args.steps).map(batch_fn)
                for _ in iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=t, prefetch_buffer_size=2))):
                    pass
            start = time.perf_counter()
            epoch()
            rows.append((size, f"batches, grain threads {threads}", batch * args.steps / (time.perf_counter() - start)))
            print(f"  {rows[-1][1]:<24} {rows[-1][2]:9.0f} images/s", flush=True)

    print("\nsize  what                      images/s   3 x GPU step / this rate (copies of it needed)")
    for size, what, r in rows:
        line = f"{size:>4}  {what:<24} {r:>9.0f}   {3 * GPU_IMAGES_PER_S / r:8.1f}"
        if args.step_images_per_s:
            line += f"   {r / args.step_images_per_s:6.1f}x this machine's step"
        print(line)
    print(f"\nGPU step: {GPU_IMAGES_PER_S} images/s (estimate, see the docstring); 3x that = "
          f"{3 * GPU_IMAGES_PER_S} images/s. workdir: {workdir}")


if __name__ == "__main__":
    main()
