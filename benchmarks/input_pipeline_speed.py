"""Training-input throughput (images/s) on a prepared real-data layout, per way of storing frames.

    python benchmarks/input_pipeline_speed.py [--sizes 64 256] [--threads 1 2 4] [--steps 30]
        [--store_frames 4000] [--workdir DIR] [--step_images_per_s N]

A fake CASIA-FASD download (tests/fake_fas_trees.py: the official layout, short videos of the
real face photos) is prepared once per crop size with the project's own preparation (video
decoding, MTCNN, crops stored as PNG, tfds), as tools/prepare_fas.py prepares the real one.
Then, per size:

* PNG decode (encoded), 1 core: `FrameSet.read_images` of whole batches with
  `data.frame_store = "encoded"` (every read decodes the stored PNG);
* JPEG q95 decode, 1 core: the same crops stored as JPEG instead (the storage alternative);
* store gather (decoded), 1 core: `read_images` from the decoded-frame store
  (`data.frame_store = "decoded"`, the default), tiled to --store_frames frames so the rows
  come from memory (the page cache), not from the CPU's caches;
* batches (encoded | decoded), T threads: the training iterator exactly as training builds it
  (`pipeline.step_batches` over `BalancedBatches`: balanced batches of 48, the augmentation's
  draws; the flips and crops themselves run in the jitted step), images/s over --steps steps.
  Training uses a thread per core, up to 4.

Next to them: what the step consumes. On this machine the DTDA step of the demo config
(measure with benchmarks/train_step_speed.py, pass it as --step_images_per_s), and on a GPU the
estimate from XLA's FLOPs (benchmarks/train_step_speed.py --config paper --flops: 35.07
GFLOP/image for the full step at paper shapes, ~11,300 images/s on one H200 at 40% MFU). The
"copies needed" column is 3x that GPU rate over the row's rate: below 1, one pipeline of this
kind on this host feeds one H200 three times over.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GPU_IMAGES_PER_S = 11_300  # one H200, 40% of 989 TFLOP/s bf16, 35.07 GFLOP/image (see above)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--store_frames", type=int, default=4000,
                        help="frames of the decoded store read in the 'decoded' rows (the prepared ones, tiled)")
    parser.add_argument("--samples_per_group", type=int, default=24, help="batch = 2 x this (one domain)")
    parser.add_argument("--workdir", default=None, help="where the fake download and datasets go (default: a temp dir)")
    parser.add_argument("--step_images_per_s", type=float, default=None,
                        help="the training step's measured images/s on this machine, for comparison")
    return parser.parse_args()


def prepared_frames(workdir: str, size: int, stored: bool):
    """The train frames of a fake CASIA-FASD prepared with `size`-px crops; `stored`: read
    through the decoded-frame store (config.data.frame_store = "decoded"), else decoded."""
    from dtda_jax.data import frame_store, pipeline, real_fas
    from dtda_jax.data.face_extraction import FaceSettings, FrameSettings
    from tests import fake_fas_trees

    root = os.path.join(workdir, "download_casia_fasd")
    if not os.path.isdir(root):
        fake_fas_trees.make_casia_fasd(root)
    builder = real_fas.prepare("casia_fasd", root, os.path.join(workdir, "data"), FrameSettings(),
                               FaceSettings(size=size, detect_max_side=256))
    source = builder.as_data_source(split="train")
    stores = [(frame_store.store_path(builder.data_path, "train"), f"casia_fasd {size} px train")] if stored else []
    return pipeline._frame_set([source], [{int(source[0]["domain"]): 0}], stores)


def tiled_store(frames, workdir: str, size: int, num_frames: int):
    """`frames` tiled to `num_frames` frames in a decoded-frame store of its own: a working
    set far beyond the CPU's caches (a real dataset's store is GBs), read from the page cache."""
    from dtda_jax.data import frame_store, pipeline

    path = os.path.join(workdir, f"tiled_{size}px_{num_frames}.npy")
    tile = np.arange(num_frames) % len(frames)
    if not os.path.exists(path):
        out = np.lib.format.open_memmap(path + ".partial", mode="w+", dtype=np.uint8,
                                        shape=(num_frames, size, size, 3))
        out[:] = frames.read_images(tile)
        out.flush()
        del out
        os.replace(path + ".partial", path)
    return pipeline.FrameSet(sources=frames.sources, source_id=np.zeros(num_frames, np.int32),
                             record=np.arange(num_frames), domain=frames.domain[tile], label=frames.label[tile],
                             video=frames.video[tile], decoded=(frame_store.DecodedFrames(path),))


def jpeg_decode(frames, positions):
    """JPEG (quality 95) instead of PNG storage: the same crops re-encoded, decoded per read."""
    import cv2

    from dtda_jax.data.pipeline import decode_image

    encoded = [cv2.imencode(".jpg", frames.read_images([p])[0], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
               for p in positions]
    return lambda: np.stack([decode_image(b) for b in encoded])


def rate(fn, images_per_call: int, calls: int) -> float:
    fn()  # warm-up (thread pools, first reads)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return images_per_call * calls / (time.perf_counter() - start)


def iterator_rate(batch_fn, threads: int, steps: int) -> float:
    """Images/s of the training iterator as training builds it, with `threads` grain threads."""
    from dtda_jax.data import pipeline

    iterator = pipeline.step_batches(batch_fn, steps + 1, num_threads=threads)
    next(iterator)  # the thread pool's start
    start = time.perf_counter()
    for _ in iterator:
        pass
    return batch_fn.global_batch_size * steps / (time.perf_counter() - start)


def device_rate(frames, groups, args) -> float:
    """Images/s of `data.frame_store = "device"` batches with the gather on this machine's CPU
    device (on a GPU it runs in device memory; the host side is the row above)."""
    import jax

    from dtda_jax.core.sharding import make_mesh
    from dtda_jax.data import pipeline
    from dtda_jax.data.device_frames import DeviceFrameBatches

    batch_fn = pipeline.BalancedBatches(frames, groups, args.samples_per_group, seed=0, flip=True,
                                        crop_padding=0.125, frames_on_device=True)
    batches = DeviceFrameBatches(pipeline.step_batches(batch_fn, args.steps + 1), frames, make_mesh(1))
    jax.block_until_ready(next(batches)["image"])  # compilation, the thread pool's start
    start = time.perf_counter()
    for batch in batches:
        jax.block_until_ready(batch["image"])
    return batch_fn.global_batch_size * args.steps / (time.perf_counter() - start)


def main():
    args = parse_args()
    from dtda_jax.data import pipeline

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    print(f"host: {cpu}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="input_pipeline_speed_")
    rows = []

    def report(size, what, images_per_s):
        rows.append((size, what, images_per_s))
        print(f"  {what:<40} {images_per_s:9.0f} images/s", flush=True)

    for size in args.sizes:
        encoded = prepared_frames(workdir, size, stored=False)
        stored = tiled_store(prepared_frames(workdir, size, stored=True), workdir, size, args.store_frames)
        groups = tuple(pipeline.group_members(encoded, 1, ("casia_fasd",)))
        positions = pipeline.balanced_batch_positions(groups, args.samples_per_group, 0, 0)
        batch = len(positions)
        print(f"\n{size} px: {len(encoded)} train frames (the store tiles them to {len(stored)}), batch {batch}",
              flush=True)
        report(size, "PNG decode (encoded), 1 core", rate(lambda: encoded.read_images(positions), batch, args.steps))
        report(size, "JPEG q95 decode, 1 core", rate(jpeg_decode(encoded, positions), batch, args.steps))
        store_groups = tuple(pipeline.group_members(stored, 1, ("casia_fasd",)))
        store_positions = [pipeline.balanced_batch_positions(store_groups, args.samples_per_group, 0, step)
                           for step in range(args.steps)]
        def gather_epoch():
            for p in store_positions:  # each batch dropped before the next, as training does
                stored.read_images(p)

        report(size, "store gather (decoded), 1 core", rate(gather_epoch, batch * args.steps, 3))
        for name, frames, frame_groups, on_device in (("encoded", encoded, groups, False),
                                                       ("decoded", stored, store_groups, False),
                                                       ("device, host side", stored, store_groups, True)):
            batch_fn = pipeline.BalancedBatches(frames, frame_groups, args.samples_per_group, seed=0, flip=True,
                                                crop_padding=0.125, frames_on_device=on_device)
            for threads in args.threads:
                report(size, f"batches ({name}), {threads} thread{'s' * (threads > 1)}",
                       iterator_rate(batch_fn, threads, args.steps))
        report(size, "batches (device), gathered on this CPU", device_rate(stored, store_groups, args))

    print(f"\n{'size':>4}  {'what':<40} {'images/s':>9}   3 x GPU step / this rate (copies of it needed)")
    for size, what, r in rows:
        line = f"{size:>4}  {what:<40} {r:>9.0f}   {3 * GPU_IMAGES_PER_S / r:8.2f}"
        if args.step_images_per_s:
            line += f"   {r / args.step_images_per_s:7.1f}x this machine's step"
        print(line)
    print(f"\nGPU step: {GPU_IMAGES_PER_S} images/s (estimate, see the docstring); 3x that = "
          f"{3 * GPU_IMAGES_PER_S} images/s. workdir: {workdir}")


if __name__ == "__main__":
    main()
