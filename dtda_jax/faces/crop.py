"""Face crops for the FAS models: a square crop around a detected box, or a crop aligned on
the five MTCNN landmarks.

Both keep some context around the face (`margin`): spoof cues such as screen borders, paper
edges and moire often sit just outside the face box. Regions outside the image repeat its
edge pixels, so a face at the border gives no artificial black frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from dtda_jax.faces.mtcnn import FaceDetections

# The standard ArcFace 5-point template in a 112x112 crop (insightface's `arcface_dst`):
# left eye, right eye, nose, left and right mouth corner, as (x, y) pixels ("left" = smaller x).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
ARCFACE_SIZE = 112


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError("image must be a uint8 RGB array (H, W, 3), got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {np.shape(image)}")


def _check_size_margin(size: int, margin: float) -> None:
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")


def largest_face(detections: FaceDetections) -> int | None:
    """Index of the face with the largest box area, None when there is none."""
    boxes = detections.boxes
    if not len(boxes):
        return None
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def square_region(box, margin: float) -> tuple[int, int, int]:
    """(top, left, side) in whole pixels of the square of side max(w, h) * (1 + margin)
    centred on `box` (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1, round(max(x2 - x1, y2 - y1) * (1 + margin)))
    return round((y1 + y2 - side) / 2), round((x1 + x2 - side) / 2), side


def crop_face(image: np.ndarray, box, size: int = 256, margin: float = 0.2) -> np.ndarray:
    """Square crop centred on `box` (x1, y1, x2, y2 pixels), side max(w, h) * (1 + margin),
    resized to size x size (area interpolation when shrinking, bilinear when enlarging).

    The box's centre must lie in the image; parts of the square outside it repeat the edge
    pixels. Returns uint8 (size, size, 3).
    """
    _check_image(image)
    _check_size_margin(size, margin)
    box = np.asarray(box, np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box must be finite (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {box}")
    height, width = image.shape[:2]
    if not (0 <= (box[0] + box[2]) / 2 < width and 0 <= (box[1] + box[3]) / 2 < height):
        raise ValueError(f"box {box.tolist()} is centred outside the {width}x{height} image")
    top, left, side = square_region(box, margin)
    rows = np.clip(np.arange(top, top + side), 0, height - 1)
    cols = np.clip(np.arange(left, left + side), 0, width - 1)
    square = image[rows[:, None], cols[None, :]]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity (rotation, uniform scale, translation; no
    reflection) taking points `src` (K, 2) onto `dst` (K, 2): Umeyama (1991)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum(1).mean()
    if src_var == 0:
        raise ValueError("the source points coincide; no similarity transform fits them")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    return np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])


def aligned_template(size: int = 256, margin: float = 0.2) -> np.ndarray:
    """Where `align_face` puts the five landmarks: the ArcFace template scaled to size x size
    and shrunk by 1 + margin about the crop's centre. float64 (5, 2)."""
    return ((ARCFACE_TEMPLATE / ARCFACE_SIZE - 0.5) / (1 + margin) + 0.5) * size


def align_face(image: np.ndarray, landmarks, size: int = 256, margin: float = 0.2) -> np.ndarray:
    """Crop rotated and scaled so that the five landmarks (5, 2) (x, y; MTCNN's order) best
    fit `aligned_template(size, margin)`. Bilinear, edge pixels repeated. uint8 (size, size, 3)."""
    _check_image(image)
    _check_size_margin(size, margin)
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(f"landmarks must be finite (5, 2) (x, y) points, got {landmarks.shape}")
    matrix = similarity_transform(landmarks, aligned_template(size, margin))
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
