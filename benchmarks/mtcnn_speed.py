"""MTCNN detection speed on real photos: faces/s and images/s, JAX port vs facenet-pytorch.

    python tests/real_photos.py      # once: fetch the photos
    python benchmarks/mtcnn_speed.py [--repeats 5] [--batch 8] [--no-reference]

Three workloads: the astronaut (512x512, one face; the shape of a dataset frame, run alone
and as a batch of `--batch` copies, which is how preparation feeds video frames), and the
Solvay 1927 photo (3000x2171, 29 faces; downscaled to 640 px on its longer side as
preparation does, and at full size). Times exclude the first call (jit compilation), which
is printed separately. The PyTorch reference (facenet-pytorch with the same weights) runs
when it is installed: ``pip install --no-deps facenet-pytorch==2.6.0``.

On CPU, XLA's YNNPACK convolution fusions leave one of two cores idle here, so MTCNN's
executables are compiled without them (dtda_jax/xla_cpu.py); compare with the default
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_REDUCE python benchmarks/mtcnn_speed.py``.
"""

import argparse
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, ".")  # tests.real_photos when run from the repository root
from dtda_jax.faces import mtcnn  # noqa: E402
from tests import real_photos  # noqa: E402


def workloads(batch: int) -> dict[str, list[np.ndarray]]:
    astronaut = real_photos.astronaut()
    solvay = real_photos.solvay()
    scale = 640 / max(solvay.shape[:2])
    small = cv2.resize(solvay, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return {"astronaut 512x512": [astronaut],
            f"astronaut x{batch} batch": [astronaut] * batch,
            f"solvay {small.shape[1]}x{small.shape[0]}": [small],
            f"solvay {solvay.shape[1]}x{solvay.shape[0]}": [solvay]}


def timed(detect, images, repeats: int) -> tuple[float, float, int]:
    """(first call s, best of `repeats` later calls s, faces found)."""
    start = time.perf_counter()
    faces = sum(detect(images))
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        detect(images)
        best = min(best, time.perf_counter() - start)
    return first, best, faces


def reference_detector():
    try:
        from tests import torchvision_shim
        torchvision_shim.install()
        import facenet_pytorch
    except ImportError:
        return None
    net = facenet_pytorch.MTCNN(min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709,
                                keep_all=True)

    def detect(images):
        counts = []
        groups = {}
        for image in images:  # facenet-pytorch batches only equal sizes, as ours does
            groups.setdefault(image.shape, []).append(image)
        for group in groups.values():
            boxes, _ = net.detect(np.stack(group))
            counts += [0 if b is None else len(b) for b in boxes]
        return counts

    return detect


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()

    import jax
    ours = mtcnn.MTCNN()
    detectors = {"jax": lambda images: [len(f) for f in ours.detect(images)]}
    reference = None if args.no_reference else reference_detector()
    if reference is not None:
        import torch
        detectors[f"torch{torch.get_num_threads()}t"] = reference
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"repeats {args.repeats}", flush=True)
    print(f"{'workload':<24} {'detector':<9} {'faces':>5} {'compile+1st s':>13} {'ms':>9} "
          f"{'images/s':>9} {'faces/s':>9}")
    for name, images in workloads(args.batch).items():
        for label, detect in detectors.items():
            first, best, faces = timed(detect, images, args.repeats)
            print(f"{name:<24} {label:<9} {faces:>5} {first:>13.2f} {1000 * best:>9.1f} "
                  f"{len(images) / best:>9.1f} {faces / best:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
