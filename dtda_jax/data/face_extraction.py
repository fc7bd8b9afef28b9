"""From a video or image of a dataset to face crops: frame choice, MTCNN, fallback, cache.

Preparation is the slow part of a real-data run (decoding 1080p videos, detecting faces),
so every video's result is cached as one file, written atomically, and a rerun skips the
videos already done: an interrupted preparation resumes where it stopped.

Failure handling follows the community's most common complaint (MTCNN finds no face on the
chosen frame): a sampled frame without a face is replaced by its nearest neighbour frame that
has one (within `max_fallback_offset` frames); a video with no face on any tried frame, and a
corrupt or unreadable video, is recorded in the report and skipped, never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from dtda_jax.core.artifacts import write_atomically
from dtda_jax.data import video as video_lib
from dtda_jax.data.layouts import MediaEntry

FACE_MODES = ("crop", "align")


@dataclasses.dataclass(frozen=True)
class FrameSettings:
    """Which frames of a video become samples (see `video.sample_frame_indices`)."""

    policy: str = "ssdg"
    every_k: int = 5
    num_random: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.policy not in video_lib.FRAME_POLICIES:
            raise ValueError(f"frame policy must be one of {video_lib.FRAME_POLICIES}, got {self.policy!r}")
        if self.every_k < 1 or self.num_random < 1:
            raise ValueError(f"every_k and num_random must be >= 1, got {self.every_k}, {self.num_random}")

    def tag(self) -> str:
        return {"all": "all", "ssdg": "ssdg", "every_k": f"every{self.every_k}",
                "random": f"random{self.num_random}s{self.seed}"}[self.policy]


@dataclasses.dataclass(frozen=True)
class FaceSettings:
    """How a face becomes a stored crop.

    `mode`: "crop" (square box around the MTCNN box, enlarged by `margin`) or "align"
    (similarity transform of the five landmarks to the ArcFace template, with `margin`).
    Detection runs on the frame scaled to `detect_max_side` (FAS faces are large; a 1080p
    pyramid costs ~10x more) and boxes are mapped back to full resolution.
    """

    size: int = 256
    mode: str = "crop"
    margin: float = 0.2
    min_face_size: int = 20
    detect_max_side: int = 640
    max_fallback_offset: int = 15

    def __post_init__(self):
        if self.mode not in FACE_MODES:
            raise ValueError(f"face mode must be one of {FACE_MODES}, got {self.mode!r}")
        if self.size < 16 or not 0 <= self.margin < 2:
            raise ValueError(f"face size must be >= 16 and margin in [0, 2), got {self.size}, {self.margin}")
        if self.detect_max_side < 64 or self.max_fallback_offset < 0 or self.min_face_size < 12:
            raise ValueError("detect_max_side must be >= 64, max_fallback_offset >= 0, min_face_size >= 12")

    def tag(self) -> str:
        """Names the prepared copy; detection settings appear only where they differ from the
        defaults, so a copy detected differently never reuses another's crops."""
        default = FaceSettings()
        extras = [f"{short}{getattr(self, name)}" for name, short in
                  (("min_face_size", "min"), ("detect_max_side", "det"), ("max_fallback_offset", "fb"))
                  if getattr(self, name) != getattr(default, name)]
        return "_".join([f"{self.mode}{self.size}_m{self.margin:g}", *extras])


@dataclasses.dataclass
class Faces:
    """The crops of one video (or image): row i was taken from frame `source_frame[i]` for the
    sampled frame `frame_index[i]` (they differ where the sampled frame had no face)."""

    crops: np.ndarray  # (n, S, S, 3) uint8
    frame_index: np.ndarray  # (n,) int32, the sampled frame
    source_frame: np.ndarray  # (n,) int32, the frame the face was found on
    score: np.ndarray  # (n,) float32, MTCNN score (0 where the official box was used)
    num_frames: int  # frames decoded from the video (1 for an image)
    box_source: str = "mtcnn"  # "mtcnn" or "official_bbox" (CelebA-Spoof fallback)


DETECT_PAD_MULTIPLE = 64


def detection_input(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame scaled so its longer side is `max_side`, bottom/right padded with black to a
    multiple of 64; returns it and the scale. Few distinct shapes reach the jitted MTCNN, so
    datasets of many image sizes (CelebA-Spoof) do not recompile it for each one."""
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    resized = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ph, pw = (-(-n // DETECT_PAD_MULTIPLE) * DETECT_PAD_MULTIPLE for n in resized.shape[:2])
    padded = np.zeros((ph, pw, 3), np.uint8)
    padded[:resized.shape[0], :resized.shape[1]] = resized
    return padded, scale


class Detector:
    """Largest-face detection at a fixed working resolution (`detect_max_side`), boxes and
    landmarks mapped back to the frame's own pixels."""

    def __init__(self, settings: FaceSettings, mtcnn=None):
        from dtda_jax.faces import mtcnn as mtcnn_lib

        self.settings = settings
        self.mtcnn = mtcnn or mtcnn_lib.MTCNN(min_face_size=settings.min_face_size)

    def largest_faces(self, frames: Sequence[np.ndarray], region: tuple | None = None,
                      min_level_face: float | None = None) -> list[tuple | None]:
        """Per frame: (box, landmarks, score) of the largest face at full resolution, or None.

        `region` (y0, y1, x0, x1) and `min_level_face`, in the frames' pixels, search near a
        known face only (`MTCNN.detect`; what the stream's tracker asks)."""
        from dtda_jax.faces.crop import largest_face

        inputs = [detection_input(f, self.settings.detect_max_side) for f in frames]
        if region is None and min_level_face is None:
            found = self.mtcnn.detect([x for x, _ in inputs]) if frames else []
        else:  # in each frame's detection pixels
            found = [self.mtcnn.detect([x], min_level_face=None if min_level_face is None else min_level_face * scale,
                                       region=None if region is None else tuple(v * scale for v in region))[0]
                     for x, scale in inputs]
        out = []
        for (_, scale), det in zip(inputs, found):
            i = largest_face(det)
            out.append(None if i is None else
                       (det.boxes[i] / scale, det.landmarks[i] / scale, float(det.scores[i])))
        return out


def face_crop(image: np.ndarray, box, landmarks, settings: FaceSettings) -> np.ndarray:
    from dtda_jax.faces import crop

    if settings.mode == "align":
        return crop.align_face(image, np.asarray(landmarks), settings.size, settings.margin)
    return crop.crop_face(image, np.asarray(box), settings.size, settings.margin)


def extract_video(entry: MediaEntry, frames: FrameSettings, detector: Detector) -> Faces | None:
    """Face crops of the sampled frames of one video; None if no tried frame shows a face.

    Frames are decoded once, keeping only the sampled frames and their fallback neighbours.
    """
    s = detector.settings

    def plan(num_frames: int) -> tuple[list[int], set[int]]:
        sampled = video_lib.sample_frame_indices(num_frames, frames.policy, every_k=frames.every_k,
                                                 num_random=frames.num_random, seed=frames.seed,
                                                 key=entry.key)
        wanted = set(sampled)
        for i in sampled:
            wanted.update(video_lib.neighbour_order(i, num_frames, s.max_fallback_offset))
        return sampled, wanted

    # The container's frame count is cheap but can be wrong: sample from it, then re-plan from
    # the decoded count, decoding a second time only if the new plan needs other frames.
    sampled, wanted = plan(max(container_frame_count(entry.path), 1))
    decoded, num_frames = video_lib.read_video(entry.path, keep=wanted.__contains__)
    sampled, new_wanted = plan(num_frames)
    if not new_wanted <= set(decoded):
        decoded, num_frames = video_lib.read_video(entry.path, keep=new_wanted.__contains__)
    found: dict[int, tuple | None] = {}

    def detect(indices: list[int]) -> None:
        todo = [i for i in indices if i not in found and i in decoded]
        for i, hit in zip(todo, detector.largest_faces([decoded[i] for i in todo])):
            found[i] = hit

    detect(sampled)
    rows, used = [], set()
    for i in sampled:
        source = i if found.get(i) else None
        if source is None:
            for j in video_lib.neighbour_order(i, num_frames, s.max_fallback_offset):
                detect([j])
                if found.get(j):
                    source = j
                    break
        if source is None or source in used:  # two sampled frames falling back to one frame
            continue
        used.add(source)
        box, landmarks, score = found[source]
        rows.append((i, source, score, face_crop(decoded[source], box, landmarks, s)))
    if not rows:
        return None
    return Faces(crops=np.stack([r[3] for r in rows]),
                 frame_index=np.array([r[0] for r in rows], np.int32),
                 source_frame=np.array([r[1] for r in rows], np.int32),
                 score=np.array([r[2] for r in rows], np.float32), num_frames=num_frames)


def container_frame_count(path: str) -> int:
    """The frame count the container claims (0 if unknown); only a first guess."""
    capture = cv2.VideoCapture(path)
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if capture.isOpened() else 0
    finally:
        capture.release()


def read_image(path: str) -> np.ndarray:
    """RGB uint8 image; VideoReadError (the same 'unreadable media' error) if it cannot be read."""
    data = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
    image = None if data is None or data.size == 0 else cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise video_lib.VideoReadError(f"{path}: missing, empty or not a decodable image.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def extract_image(entry: MediaEntry, detector: Detector) -> Faces | None:
    """The face of one image; the dataset's official box (CelebA-Spoof) when MTCNN finds none."""
    image = read_image(entry.path)
    (hit,) = detector.largest_faces([image])
    if hit is not None:
        box, landmarks, score = hit
        crop, box_source = face_crop(image, box, landmarks, detector.settings), "mtcnn"
    elif entry.bbox is not None:
        from dtda_jax.faces import crop as crop_lib

        s = detector.settings
        crop, score, box_source = crop_lib.crop_face(image, np.asarray(entry.bbox, np.float32), s.size,
                                                     s.margin), 0.0, "official_bbox"
    else:
        return None
    zero = np.zeros(1, np.int32)
    return Faces(crops=crop[None], frame_index=zero, source_frame=zero,
                 score=np.array([score], np.float32), num_frames=1, box_source=box_source)


# --------------------------------------------------------------------------------------------
# The per-video cache: one .npz per success, one .json per failure, both written atomically.
# --------------------------------------------------------------------------------------------


class FaceCache:
    """Results of one preparation setting, keyed by the media file's dataset-relative key."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _stem(self, key: str) -> str:
        digest = hashlib.sha1(key.encode()).hexdigest()
        return os.path.join(self.root, digest[:2], digest)

    def _write(self, path: str, payload: bytes) -> None:
        write_atomically(path, lambda f: f.write(payload), binary=True)

    def status(self, key: str) -> dict | None:
        """None if not processed yet; else {"status": "ok"} or the failure record."""
        stem = self._stem(key)
        if os.path.exists(stem + ".npz"):
            return {"status": "ok"}
        if os.path.exists(stem + ".json"):
            with open(stem + ".json") as f:
                return json.load(f)
        return None

    def save(self, key: str, faces: Faces) -> None:
        buf = io.BytesIO()
        np.savez(buf, crops=faces.crops, frame_index=faces.frame_index, source_frame=faces.source_frame,
                 score=faces.score, num_frames=faces.num_frames, box_source=faces.box_source)
        self._write(self._stem(key) + ".npz", buf.getvalue())

    def save_failure(self, key: str, status: str, message: str) -> None:
        record = {"status": status, "key": key, "message": message}
        self._write(self._stem(key) + ".json", json.dumps(record).encode())

    def load(self, key: str) -> Faces:
        with np.load(self._stem(key) + ".npz") as z:
            return Faces(crops=z["crops"], frame_index=z["frame_index"], source_frame=z["source_frame"],
                         score=z["score"], num_frames=int(z["num_frames"]),
                         box_source=str(z["box_source"]))


@dataclasses.dataclass
class ExtractionReport:
    """What preparation did to each media file; written next to the dataset as JSON."""

    total: int = 0
    ok: int = 0
    cached: int = 0  # already done by an earlier (interrupted) run
    crops: int = 0
    fallback_crops: int = 0  # crops taken from a neighbour frame or the official box
    no_face: list = dataclasses.field(default_factory=list)  # keys of skipped media
    unreadable: list = dataclasses.field(default_factory=list)  # [key, message]
    fallback_videos: list = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.ok}/{self.total} files with faces ({self.cached} from the cache), {self.crops} crops "
                f"({self.fallback_crops} from a neighbour frame / official box); skipped: "
                f"{len(self.no_face)} without any face, {len(self.unreadable)} unreadable")


def extract_all(entries: Sequence[MediaEntry], cache: FaceCache, frames: FrameSettings,
                detector_factory: Callable[[], Detector], *, log: Callable[[str], None] = print,
                log_every_s: float = 30.0) -> ExtractionReport:
    """Runs (or resumes) extraction over `entries`; failures are recorded, never raised."""
    report = ExtractionReport(total=len(entries))
    todo = [e for e in entries if cache.status(e.key) is None]
    report.cached = len(entries) - len(todo)
    if todo:
        log(f"[prepare] detecting faces in {len(todo)} files ({report.cached} already done)")
    detector = detector_factory() if todo else None
    start = last = time.perf_counter()
    for n, entry in enumerate(todo, 1):
        try:
            faces = (extract_video(entry, frames, detector) if entry.is_video
                     else extract_image(entry, detector))
        except video_lib.VideoReadError as err:
            cache.save_failure(entry.key, "unreadable", str(err))
        else:
            if faces is None:
                cache.save_failure(entry.key, "no_face", "no face on any tried frame")
            else:
                cache.save(entry.key, faces)
        now = time.perf_counter()
        if now - last >= log_every_s or n == len(todo):
            rate = n / (now - start)
            log(f"[prepare] {n}/{len(todo)} files | {rate:.2f} files/s | "
                f"ETA {_duration((len(todo) - n) / rate)}")
            last = now
    for entry in entries:  # the report covers cached results too
        record = cache.status(entry.key)
        if record["status"] == "no_face":
            report.no_face.append(entry.key)
        elif record["status"] == "unreadable":
            report.unreadable.append([entry.key, record["message"]])
        else:
            faces = cache.load(entry.key)
            report.ok += 1
            report.crops += len(faces.crops)
            fallback = int((faces.frame_index != faces.source_frame).sum())
            fallback += len(faces.crops) if faces.box_source != "mtcnn" else 0
            report.fallback_crops += fallback
            if fallback:
                report.fallback_videos.append(entry.key)
    return report


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def iter_entries_with_faces(entries: Iterable[MediaEntry], cache: FaceCache):
    """(entry, Faces) for every entry whose extraction succeeded, in the given order."""
    for entry in entries:
        record = cache.status(entry.key)
        if record is not None and record["status"] == "ok":
            yield entry, cache.load(entry.key)
