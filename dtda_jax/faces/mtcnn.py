"""MTCNN face detector (Zhang et al., 2016) in JAX/Flax, with the original weights.

The weights come from the PyPI package ``mtcnn==1.0.0`` (MIT), which ships the original
P-Net / R-Net / O-Net as lists of numpy arrays in Keras layout; TensorFlow is not needed.
The cascade follows facenet-pytorch's ``detect_face`` step by step, so boxes, scores and
landmarks match that reference (tests/test_mtcnn.py measures how closely):

1. P-Net over an image pyramid (area resampling, scales ``12 / min_face_size * factor**k``):
   one proposal per 12x12 window at stride 2, NMS 0.5 per level, NMS 0.7 across levels,
   box regression, squaring.
2. R-Net on 24x24 crops: threshold, NMS 0.7, box regression, squaring.
3. O-Net on 48x48 crops: threshold, landmarks, box regression, NMS 0.7 over the smaller
   box's area ("Min").

The networks (`mtcnn_nets`: Flax, jitted; or their ONNX export) run on few shapes, so that
few programs compile: P-Net once per batch of
equal-size images, on a canvas holding every pyramid level side by side (its size rounded up,
see `pack_levels`); R-Net and O-Net on all crops of a batch, padded to a power of two.
Everything with data-dependent sizes runs in numpy: resampling, proposals, NMS, box
bookkeeping. The bookkeeping is float32 in the reference's order of operations: proposals
are floored to whole pixels, so a rounding difference would move a box by one.

Area resampling is PyTorch's ``interpolate(mode="area")`` (adaptive average pooling: output
pixel k averages input pixels ``floor(k * n_in / n_out)`` to ``ceil((k + 1) * n_in / n_out)``
exclusive). It is computed from a uint32 integral image, so the window sums are exact.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence

import numpy as np


PNET_CELL = 12  # P-Net window side, pixels of a pyramid level
PNET_STRIDE = 2
# R-Net and O-Net run on chunks of at most MAX_BATCH crops, each padded to a power of two
# >= MIN_BATCH: a handful of shapes to compile, whatever the number of candidates.
MIN_BATCH = 16
MAX_BATCH = 256
CANVAS_QUANTUM = 32  # P-Net canvas sides are multiples of this (shared compiled shapes)
# Largest image whose integral image fits uint32 (every window sum of uint8 pixels is exact).
MAX_PIXELS = (2**32 - 1) // 255


class Nets(NamedTuple):
    """The three networks as the cascade calls them, their weights bound: jitted Flax
    (`mtcnn_nets.jax_nets`) or ONNX Runtime sessions (`deploy.runtime`).

    pnet(canvas (N, H, W, 3), valid (H - 2, W - 2) bool) -> (offsets, face probabilities);
    rnet(crops (K, 24, 24, 3)) -> (offsets, probs); onet(crops (K, 48, 48, 3)) -> (offsets,
    landmarks, probs). Inputs are float32, normalised as ``(x - 127.5) / 128``.
    """

    pnet: Callable
    rnet: Callable
    onet: Callable


def integral_image(images: np.ndarray) -> np.ndarray:
    """(N, H + 1, W + 1, C) uint32 cumulative sums of uint8 images, zero first row and column.

    Window sums taken from it are exact: the differences wrap modulo 2**32, and no window of
    an image of at most MAX_PIXELS pixels sums to 2**32 or more.
    """
    n, h, w, c = images.shape
    sums = np.zeros((n, h + 1, w + 1, c), np.uint32)
    sums[:, 1:, 1:] = images
    np.cumsum(sums[:, 1:, 1:], axis=2, out=sums[:, 1:, 1:])
    for y in range(1, h + 1):  # row by row: numpy's cumsum over a non-last axis is ~10x slower
        np.add(sums[:, y], sums[:, y - 1], out=sums[:, y])
    return sums


def _normalised_means(sums: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Window sums / window areas, normalised for the nets as the reference does."""
    means = sums.astype(np.float32)
    means /= area.astype(np.float32)[..., None]
    means -= 127.5
    means *= 0.0078125
    return means


def resample_images(integral: np.ndarray, height: int, width: int,
                    window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Every image area-resampled to height x width, normalised: float32 (N, height, width, C);
    or only the rows r0:r1 and columns c0:c1 of that, `window = (r0, r1, c0, c1)`."""
    r0, r1, c0, c1 = window or (0, height, 0, width)
    y0, y1 = (b[r0:r1] for b in area_bins(integral.shape[1] - 1, height))
    x0, x1 = (b[c0:c1] for b in area_bins(integral.shape[2] - 1, width))
    rows = np.take(integral, y1, axis=1) - np.take(integral, y0, axis=1)
    sums = np.take(rows, x1, axis=2) - np.take(rows, x0, axis=2)
    return _normalised_means(sums, (y1 - y0)[:, None] * (x1 - x0))


def resample_crops(integral: np.ndarray, image: np.ndarray, y0: np.ndarray, y1: np.ndarray,
                   x0: np.ndarray, x1: np.ndarray, size: int) -> np.ndarray:
    """Crops ``integral``'s image ``image[k]``, rows y0[k]:y1[k], columns x0[k]:x1[k] (non-empty),
    area-resampled to size x size and normalised: float32 (K, size, size, C)."""
    top, bottom = (y0[:, None] + b for b in area_bins(y1 - y0, size))
    left, right = (x0[:, None] + b for b in area_bins(x1 - x0, size))

    def corner(y, x):
        return integral[image[:, None, None], y[:, :, None], x[:, None, :]]

    sums = (corner(bottom, right) - corner(top, right)) - (corner(bottom, left) - corner(top, left))
    return _normalised_means(sums, (bottom - top)[:, :, None] * (right - left)[:, None, :])


def run_on_crops(net: Callable, integral: np.ndarray, image: np.ndarray,
                 boxes: np.ndarray, size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """`net` (R-Net or O-Net, `Nets`) on the size x size crops of `boxes`.

    The crops run in chunks of MAX_BATCH, each padded to a power of two. Returns the net's
    outputs (numpy, a row per box) and which crops were non-empty (the outputs of empty ones
    are meaningless).
    """
    y0, y1, x0, x1 = crop_windows(boxes, integral.shape[2] - 1, integral.shape[1] - 1)
    valid = (y1 > y0) & (x1 > x0)
    y0, x0 = np.where(valid, y0, 0), np.where(valid, x0, 0)
    y1, x1 = np.where(valid, y1, 1), np.where(valid, x1, 1)
    crops = resample_crops(integral, image, y0, y1, x0, x1, size)
    chunks = []
    for start in range(0, len(crops), MAX_BATCH):  # all chunks dispatched before any wait
        chunk = crops[start:start + MAX_BATCH]
        padding = max(MIN_BATCH, 1 << (len(chunk) - 1).bit_length()) - len(chunk)
        chunks.append(net(np.pad(chunk, ((0, padding), (0, 0), (0, 0), (0, 0)))))
    outputs = [np.concatenate([np.asarray(o) for o in parts])[:len(crops)]
               for parts in zip(*chunks)]
    return outputs, valid


# ============================================================================================
# Box bookkeeping (numpy, float32, as facenet-pytorch's detect_face)
# ============================================================================================


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window sees faces from `min_face_size` px up."""
    scale = 12.0 / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def pnet_output_size(size: int) -> int:
    """P-Net's output rows (or columns) for an input of `size` rows (columns)."""
    return (size - 1) // 2 - 4


def pack_levels(sizes: Sequence[tuple[int, int]], quantum: int = CANVAS_QUANTUM):
    """Places pyramid levels (height, width), largest first, in one canvas for P-Net.

    Shelf packing: levels go left to right while they fit in the first level's width, then a
    new shelf starts below. Corners are even, so P-Net's stride-2 pooling lines up with each
    level. Returns ``(corners [(top, left)], (canvas height, canvas width))``, the canvas
    rounded up to multiples of `quantum` so that similar image sizes share a compiled P-Net.
    """
    width = sizes[0][1]
    corners = []
    top = left = shelf = 0
    for h, w in sizes:
        if left + w > width:
            top, left, shelf = top + shelf, 0, 0
        corners.append((top, left))
        left += w + w % 2
        shelf = max(shelf, h + h % 2)
    return corners, (-(-(top + shelf) // quantum) * quantum, -(-width // quantum) * quantum)


def area_bins(size_in, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last input pixel of each output pixel of area resampling.

    `size_in` may be an array (one crop size per row); the result then has a row per crop.
    """
    k = np.arange(size_out)
    n = np.asarray(size_in)[..., None]
    return (k * n // size_out).astype(np.int32), (-(-(k + 1) * n // size_out)).astype(np.int32)


def level_window(start: float, stop: float, scale: float, size: int) -> tuple[int, int]:
    """The rows (or columns) [a, b) of a pyramid level of `size` pixels that cover the image's
    [start, stop) at `scale`. `a` is even, so P-Net's stride-2 windows on the crop are the
    level's own; `b - a` is even unless `b` is the level's edge, so the crop's ceil-mode
    pooling border falls where the level's does or nowhere: every window of the crop then
    scores as on the whole level."""
    a = min(max(int(start * scale), 0), size) // 2 * 2
    b = min(max(int(np.ceil(stop * scale)), a), size)
    if (b - a) % 2 and b < size:
        b += 1
    return a, b


def proposals(offsets: np.ndarray, probs: np.ndarray, scale: float, threshold: float,
              origin: tuple[int, int] = (0, 0)):
    """P-Net windows with face probability >= threshold, in image pixels.

    `origin` is the (row, column) of the scored crop in its pyramid level. Returns ``(image
    (K,), boxes (K, 4), scores (K,), offsets (K, 4))``; the windows are ordered by image,
    row, column and their corners floored as in facenet-pytorch.
    """
    image, y, x = np.nonzero(probs >= threshold)
    corner = PNET_STRIDE * np.stack([x, y], axis=1).astype(np.float32)
    corner += np.array([origin[1], origin[0]], np.float32)
    scale = np.float32(scale)
    boxes = np.concatenate([np.floor((corner + 1) / scale),
                            np.floor((corner + PNET_CELL) / scale)], axis=1)
    return image, boxes, probs[image, y, x], offsets[image, y, x]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS as ``torchvision.ops.nms``: by descending score, drop IoU > threshold.

    Areas are ``(x2 - x1) * (y2 - y1)``. Returns kept indices, best first.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size:
            i, rest = order[0], order[1:]
            keep.append(i)
            w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
            h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
            inter = w * h
            order = rest[~(inter / (areas[i] + areas[rest] - inter) > threshold)]
    return np.asarray(keep, np.int64)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """The original MTCNN's last NMS: overlap = intersection / smaller area, pixel-inclusive
    areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, keep overlap <= threshold. Kept indices, best first.

    Ties are broken as the reference does, by numpy's default (unstable) ascending argsort.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    keep = []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[w * h / np.minimum(areas[i], areas[rest]) <= threshold]
    return np.asarray(keep, np.int64)


def nms_per_image(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, threshold: float,
                  method: Callable[..., np.ndarray] = nms) -> np.ndarray:
    """Indices kept by `method` run on each image's boxes separately, best first per image."""
    kept = [np.flatnonzero(image == i) for i in np.unique(image)]
    kept = [idx[method(boxes[idx], scores[idx], threshold)] for idx in kept]
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray, inclusive: bool) -> np.ndarray:
    """Box regression: each corner moves by its offset times the box size.

    The size is ``x2 - x1`` after P-Net and ``x2 - x1 + 1`` (pixel-inclusive) after R-Net and
    O-Net, as in the reference.
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    if inclusive:
        w, h = w + 1, h + 1
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square around its centre (the reference's ``rerec``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def crop_windows(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Pixel rows y0:y1 and columns x0:x1 cropped for each box, clipped to the image.

    As the reference (``pad`` then slicing): corners truncated to integers, the box's
    1-based first pixel becomes 0-based, no zero padding. Empty when the box is outside.
    """
    x1, y1, x2, y2 = boxes.astype(np.int64).T
    return (np.maximum(y1, 1) - 1, np.minimum(y2, height),
            np.maximum(x1, 1) - 1, np.minimum(x2, width))


# ============================================================================================
# Detector
# ============================================================================================


@dataclasses.dataclass(frozen=True)
class FaceDetections:
    """The faces found in one image, by descending score.

    boxes: float32 (K, 4), x1, y1, x2, y2 in pixels (may reach outside the image).
    scores: float32 (K,), O-Net face probability.
    landmarks: float32 (K, 5, 2), (x, y) of left eye, right eye, nose, left and right mouth
      corner, "left" meaning smaller x in the image (facenet-pytorch's order).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def _as_image_list(images) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    elif not isinstance(images, (list, tuple)):
        raise ValueError("images must be a uint8 array (N, H, W, 3) or (H, W, 3), or a list of "
                         f"(H, W, 3) arrays; got {type(images).__name__}")
    checked = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ValueError(f"image {i}: expected uint8 RGB (H, W, 3), got {image.dtype} "
                             f"{image.shape}")
        if image.shape[0] * image.shape[1] > MAX_PIXELS:
            raise ValueError(f"image {i}: {image.shape[0]}x{image.shape[1]} is over {MAX_PIXELS} "
                             "pixels; downscale it first")
        checked.append(image)
    return checked


class MTCNN:
    """Three-stage MTCNN face detector with the original weights.

    ``MTCNN().detect(images)`` returns one :class:`FaceDetections` per image.

    Args:
      min_face_size: smallest face side searched for, in pixels (sets the pyramid's top scale).
      thresholds: face probability thresholds of P-Net, R-Net and O-Net.
      scale_factor: ratio of successive pyramid levels.
      variables: ``mtcnn_nets.load_mtcnn_weights()``'s result; loaded when not given.
      nets: the networks to run (`Nets`); by default the jitted Flax nets with `variables`.
    """

    def __init__(self, min_face_size: float = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, variables: dict | None = None, nets: Nets | None = None):
        if min_face_size <= 0:
            raise ValueError(f"min_face_size must be > 0, got {min_face_size}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs three values (P-, R-, O-Net), got {thresholds}")
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = scale_factor
        if nets is None:
            from dtda_jax.faces import mtcnn_nets

            nets = mtcnn_nets.jax_nets(variables)
        self.nets = nets

    def detect(self, images, min_level_face: float | None = None,
               region: tuple[float, float, float, float] | None = None) -> list[FaceDetections]:
        """Faces in uint8 RGB images: an (N, H, W, 3) array, one (H, W, 3) image, or a list of
        images of any sizes (images of equal size run as one batch).

        A tracker that knows where a face was searches near it only, at a fraction of the
        cost: `region = (y0, y1, x0, x1)` proposes only P-Net windows inside those image
        pixels, and `min_level_face` skips the pyramid levels made for faces smaller than it.
        Both keep the levels, their pixels and their windows' scores as they are without
        them (R-Net and O-Net see the same crops), so a face inside the region gets the box
        the whole search gives unless a box outside changed the non-maximum suppressions."""
        images = _as_image_list(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        results: list[FaceDetections | None] = [None] * len(images)
        for indices in groups.values():
            batch = np.stack([images[i] for i in indices])
            for i, faces in zip(indices, self._detect_batch(batch, min_level_face, region)):
                results[i] = faces
        return results

    def _detect_batch(self, images: np.ndarray, min_level_face=None, region=None) -> list[FaceDetections]:
        n, height, width, _ = images.shape
        integral = integral_image(images)
        image, boxes = self._propose(integral, height, width, min_level_face, region)
        image, boxes = self._refine(integral, image, boxes)
        image, boxes, scores, landmarks = self._output(integral, image, boxes)
        return [FaceDetections(boxes[image == i], scores[image == i], landmarks[image == i])
                for i in range(n)]

    def _propose(self, integral, height, width, min_level_face=None, region=None):
        """Stage 1: P-Net proposals over the pyramid (or the crops of its levels that cover
        `region`), merged, regressed and squared."""
        scales = pyramid_scales(height, width, self.min_face_size, self.scale_factor)
        if min_level_face is not None:  # a level of scale s is for faces from 12 / s px up
            scales = [s for s in scales if PNET_CELL / s >= min_level_face]
        levels = []  # (scale, level size, the crop of it scored: r0, r1, c0, c1)
        for scale in scales:
            h, w = int(height * scale + 1), int(width * scale + 1)
            if region is None:
                crop = (0, h, 0, w)
            else:
                crop = (*level_window(region[0], region[1], scale, h), *level_window(region[2], region[3], scale, w))
            if min(crop[1] - crop[0], crop[3] - crop[2]) >= PNET_CELL:
                levels.append((scale, (h, w), crop))
        if not levels:  # image (region) smaller than the smallest face
            return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        sizes = [(r1 - r0, c1 - c0) for _, _, (r0, r1, c0, c1) in levels]
        corners, canvas_size = pack_levels(sizes)
        canvas = np.zeros((len(integral), *canvas_size, 3), np.float32)
        valid = np.zeros((canvas_size[0] - 2, canvas_size[1] - 2), bool)
        for (top, left), (h, w), (_, level, crop) in zip(corners, sizes, levels):
            canvas[:, top:top + h, left:left + w] = resample_images(integral, *level, crop)
            valid[top:top + h - 2, left:left + w - 2] = True
        offsets, probs = (np.asarray(a) for a in self.nets.pnet(canvas, valid))
        found = [np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                 np.zeros((0, 4), np.float32)]
        for (top, left), (h, w), (scale, _, crop) in zip(corners, sizes, levels):
            window = (slice(None), slice(top // 2, top // 2 + pnet_output_size(h)),
                      slice(left // 2, left // 2 + pnet_output_size(w)))
            level = proposals(offsets[window], probs[window], scale, self.thresholds[0], (crop[0], crop[2]))
            keep = nms_per_image(*level[:3], 0.5)
            found = [np.concatenate([a, b[keep]]) for a, b in zip(found, level)]
        image, boxes, scores, offsets = found
        keep = nms_per_image(image, boxes, scores, 0.7)
        return image[keep], square(apply_offsets(boxes[keep], offsets[keep], inclusive=False))

    def _refine(self, integral, image, boxes):
        """Stage 2: R-Net on 24x24 crops, threshold, NMS, regression, squaring."""
        if not len(boxes):
            return image, boxes
        (offsets, probs), valid = run_on_crops(self.nets.rnet, integral, image, boxes, 24)
        scores = probs[:, 1]
        keep = np.flatnonzero(valid & (scores > self.thresholds[1]))
        keep = keep[nms_per_image(image[keep], boxes[keep], scores[keep], 0.7)]
        return image[keep], square(apply_offsets(boxes[keep], offsets[keep], inclusive=True))

    def _output(self, integral, image, boxes):
        """Stage 3: O-Net on 48x48 crops, threshold, landmarks, regression, 'Min' NMS."""
        if not len(boxes):
            return image, boxes, np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        (offsets, points, probs), valid = run_on_crops(self.nets.onet, integral, image,
                                                       boxes, 48)
        scores = probs[:, 1]
        keep = np.flatnonzero(valid & (scores > self.thresholds[2]))
        image, boxes, scores, offsets, points = (
            a[keep] for a in (image, boxes, scores, offsets, points))
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        landmarks = np.stack([w * points[:, :5] + boxes[:, :1] - 1,
                              h * points[:, 5:] + boxes[:, 1:2] - 1], axis=-1)
        boxes = apply_offsets(boxes, offsets, inclusive=True)
        keep = nms_per_image(image, boxes, scores, 0.7, nms_min)
        return image[keep], boxes[keep], scores[keep], landmarks[keep]
