"""Video decoding and frame choice for the video datasets (OULU-NPU, CASIA-FASD, Replay-Attack, MSU-MFSD).

OpenCV's FFmpeg backend reads every container these datasets use (.avi, .mov, .mp4). Frames are
decoded sequentially from the start because the frame counts stored in these containers and
seeking in them are unreliable (counts off by a few frames, keyframe-only seeks); the number of
frames actually decoded is what the sampling policies below work on.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

import cv2
import numpy as np

FRAME_POLICIES = ("all", "every_k", "ssdg", "random")

# SSDG (and FLIP after it) use frame 6 and the frame half a video later.
_SSDG_FIRST = 6


class VideoReadError(RuntimeError):
    """A video that is missing, cannot be opened, or yields no frame."""


def read_video(path: str, keep: Callable[[int], bool] | None = None) -> tuple[dict[int, np.ndarray], int]:
    """Decodes `path` from the first frame to the last.

    Returns the RGB uint8 frames whose index passes `keep` (all when None), keyed by index, and the
    number of frames decoded. Frames that are not kept are never converted or stored, so memory
    stays at what `keep` asks for even for long high-resolution videos.
    """
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: no such file")
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise VideoReadError(f"{path}: OpenCV/FFmpeg cannot open it (corrupt or not a video)")
        frames: dict[int, np.ndarray] = {}
        count = 0
        while capture.grab():
            if keep is None or keep(count):
                ok, bgr = capture.retrieve()
                if not ok:
                    raise VideoReadError(f"{path}: frame {count} was read but could not be decoded")
                frames[count] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise VideoReadError(f"{path}: no frame could be decoded (empty or corrupt video)")
    return frames, count


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sample_frame_indices(num_frames: int, policy: str, *, every_k: int = 5, num_random: int = 1,
                         seed: int = 0, key: str = "") -> list[int]:
    """The sorted frame indices of a `num_frames`-frame video that `policy` selects.

    - "all": every frame.
    - "every_k": 0, k, 2k, ... (SAFAS keeps every 5th frame).
    - "ssdg": frames 6 and 6 + N//2 (SSDG, FLIP). On videos shorter than 13 frames the first frame
      moves earlier so that both stay in range and half a video apart; N = 1 gives [0].
    - "random": `num_random` distinct frames (all frames if the video has fewer), drawn from a
      generator seeded by (seed, key): a video (key) gets the same frames on every run.
    """
    _check_positive("num_frames", num_frames)
    if policy == "all":
        return list(range(num_frames))
    if policy == "every_k":
        _check_positive("every_k", every_k)
        return list(range(0, num_frames, every_k))
    if policy == "ssdg":
        half = num_frames // 2
        first = min(_SSDG_FIRST, num_frames - 1 - half)
        return sorted({first, first + half})
    if policy == "random":
        _check_positive("num_random", num_random)
        key_hash = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        rng = np.random.default_rng([seed, key_hash])
        chosen = rng.choice(num_frames, size=min(num_random, num_frames), replace=False)
        return sorted(int(i) for i in chosen)
    raise ValueError(f"unknown frame policy {policy!r}; expected one of {FRAME_POLICIES}")


def neighbour_order(index: int, num_frames: int, max_offset: int) -> list[int]:
    """The frames to try, nearest first, when frame `index` has no detectable face.

    index+1, index-1, index+2, index-2, ... up to `max_offset` away, skipping indices outside the
    video, so a replacement frame stays as close as possible to the one the policy chose.
    """
    _check_positive("num_frames", num_frames)
    if not 0 <= index < num_frames:
        raise ValueError(f"index {index} is outside a {num_frames}-frame video")
    if max_offset < 0:
        raise ValueError(f"max_offset must be >= 0, got {max_offset}")
    order = []
    for offset in range(1, max_offset + 1):
        order.extend(i for i in (index + offset, index - offset) if 0 <= i < num_frames)
    return order
