"""`predict --stream`: live/spoof decisions on a camera or a video file, frame by frame.

Each frame is read as it arrives (OpenCV capture), its largest face found and cropped as the
run's data was (the same MTCNN settings and crop as `predict` on files), scored, and the live
score smoothed over a window: an exponential moving average (`ema0.3`: weight 0.3 for the newest
frame) or the mean of the last N scored frames (`mean10`). A frame without a face leaves the
smoothed score as it was. One line per second of stream time says the decision and the frames
per second processed; `--json` writes every frame's record.

The face is tracked (`FaceTracker`): once found, MTCNN's proposals on the next frames come
from a region around the last box only (three times its side) and from the pyramid levels
made for faces from half its size up: the same levels, pixels and window scores as the
whole-frame search, so the box is the whole-frame search's (unless a box outside the region
changed a non-maximum suppression) at a fraction of the cost. The whole frame is searched
again every `--redetect` frames (a larger face may have come in) and whenever the region
holds no face. `--redetect=1` searches every whole frame, exactly as
`predict` does on a video's frames (tests/test_deploy.py checks both on a video file).
"""

from __future__ import annotations

import collections
import os
import re
import time
from typing import Callable

import numpy as np

from dtda_jax.core.errors import UserError


def parse_window(spec: str) -> tuple[str, float]:
    """`emaA` (0 < A <= 1) -> ("ema", A); `meanN` (N >= 1) -> ("mean", N)."""
    match = re.fullmatch(r"ema([0-9]*\.?[0-9]+)|mean([0-9]+)", spec)
    if match and match.group(1) and 0 < float(match.group(1)) <= 1:
        return "ema", float(match.group(1))
    if match and match.group(2) and int(match.group(2)) >= 1:
        return "mean", int(match.group(2))
    raise ValueError(f"--window must be emaA with 0 < A <= 1 (e.g. ema0.3) or meanN with N >= 1 "
                     f"(e.g. mean10), got {spec!r}")


class Smoother:
    """The smoothed live score of the frames seen so far (None before the first)."""

    def __init__(self, spec: str):
        self.kind, self.value = parse_window(spec)
        self.recent: collections.deque = collections.deque(maxlen=int(self.value) if self.kind == "mean" else 1)
        self.current: float | None = None

    def update(self, score: float) -> float:
        if self.kind == "ema":
            a = self.value
            self.current = score if self.current is None else a * score + (1 - a) * self.current
        else:
            self.recent.append(score)
            self.current = float(np.mean(self.recent))
        return self.current


def open_capture(source: str):
    """An opened cv2.VideoCapture of a camera index ("0") or a video file."""
    import cv2

    if source.isdigit():
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our line says it all
        try:
            capture = cv2.VideoCapture(int(source))
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            raise UserError(f"camera {source} cannot be opened (not connected, not permitted, or used by "
                            "another program); check `ls /dev/video*`, or pass a video file to --stream.")
        return capture
    if not os.path.isfile(source):
        raise UserError(f"--stream {source}: no such video file, and not a camera index (0, 1, ...).")
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise UserError(f"--stream {source} cannot be opened as a video by OpenCV (corrupt, or a codec "
                        "its FFmpeg lacks); convert it, e.g. ffmpeg -i IN -c:v mjpeg OUT.avi.")
    return capture


def frames_of(capture, max_frames: int | None):
    """(index, stream time in s, RGB frame) as they arrive."""
    import cv2

    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    index = 0
    while max_frames is None or index < max_frames:
        ok, bgr = capture.read()
        if not ok:
            return
        msec = capture.get(cv2.CAP_PROP_POS_MSEC)
        seconds = msec / 1000.0 if msec and msec > 0 else (index / fps if fps > 0 else time.monotonic())
        yield index, seconds, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        index += 1


class FaceTracker:
    """The largest face of each frame (see the module docstring); `region` is the searched
    square's side in units of the last box's longer side, `smallest` the smallest face
    searched for there in units of its shorter side."""

    def __init__(self, detector, redetect: int = 15, region: float = 3.0, smallest: float = 0.5):
        self.detector, self.settings = detector, detector.settings
        self.redetect, self.region, self.smallest = redetect, region, smallest
        self.box: np.ndarray | None = None  # the last face's box, the frame's pixels
        self.since_whole = 0

    def largest_faces(self, frames) -> list[tuple | None]:
        return [self.largest_face(frame) for frame in frames]

    def largest_face(self, frame: np.ndarray) -> tuple | None:
        if not hasattr(self.detector, "mtcnn"):  # whole images (a synthetic-benchmark run)
            return self.detector.largest_faces([frame])[0]
        hit = None
        if self.box is not None and self.since_whole < self.redetect:
            b = self.box
            side, centre = max(b[2] - b[0], b[3] - b[1]) * self.region / 2, (b[:2] + b[2:]) / 2
            region = (centre[1] - side, centre[1] + side, centre[0] - side, centre[0] + side)
            (hit,) = self.detector.largest_faces([frame], region=region,
                                                 min_level_face=self.smallest * min(b[2] - b[0], b[3] - b[1]))
            self.since_whole += 1
        if hit is None:
            (hit,) = self.detector.largest_faces([frame])
            self.since_whole = 1
        self.box = None if hit is None else hit[0]
        return hit


def score_frame(frame: np.ndarray, scorer, tracker) -> tuple[list[float] | None, float | None]:
    """(box, live probability) of the frame's largest face, or (None, None)."""
    from dtda_jax.data.face_extraction import face_crop

    hit = tracker.largest_face(frame)
    if hit is None:
        return None, None
    box, landmarks, _ = hit
    crop = face_crop(frame, box, landmarks, tracker.settings)
    return [float(v) for v in box], float(scorer.score(crop[None], 1)[0])


def run_stream(args, scorer, detector, threshold: float, say: Callable[[str], None]) -> int:
    """The --stream loop (see the module docstring); exit status 0 when a face was scored."""
    from dtda_jax.inference.predict import decision, format_probability, write_json_output

    smoother = Smoother(args.window)
    tracker = FaceTracker(detector, redetect=args.redetect)
    capture = open_capture(args.stream)
    say(f"[stream] {args.stream}: largest face per frame, live score smoothed by {args.window}, "
        f"live when >= {format_probability(threshold)}")
    records, scored = [], 0
    next_line, window_start, window_frames = None, time.perf_counter(), 0
    t_start = time.perf_counter()
    try:
        for index, seconds, frame in frames_of(capture, args.max_frames):
            box, score = score_frame(frame, scorer, tracker)
            smoothed = smoother.update(score) if score is not None else smoother.current
            scored += score is not None
            record = {"frame": index, "time_s": round(seconds, 4), "box": box, "live_probability": score,
                      "smoothed": smoothed,
                      "decision": None if smoothed is None else decision(smoothed, threshold)}
            records.append(record)
            window_frames += 1
            if next_line is None:
                next_line = seconds + 1.0
            if seconds >= next_line:
                now = time.perf_counter()
                rate = window_frames / max(now - window_start, 1e-9)
                say(format_line(record, rate, threshold))
                next_line, window_start, window_frames = next_line + 1.0, now, 0
    finally:
        capture.release()
    elapsed = time.perf_counter() - t_start
    rate = len(records) / max(elapsed, 1e-9)
    if records:
        say(format_line(records[-1], rate, threshold) + "  (last frame)")
    say(f"[stream] {len(records)} frames in {elapsed:.1f} s ({rate:.1f} frames/s), a face on {scored}")
    if args.json is not None:
        write_json_output(args.json, {"stream": args.stream, "threshold": threshold, "window": args.window,
                                      "frames": len(records), "faces": scored, "frames_per_s": rate,
                                      "records": records})
    return 0 if scored else 2


def format_line(record: dict, rate: float, threshold: float) -> str:
    from dtda_jax.inference.predict import format_probability

    if record["smoothed"] is None:
        state = "no face yet"
    else:
        state = f"live {format_probability(record['smoothed'])} {record['decision'].upper()}"
    face = "face" if record["box"] is not None else "no face"
    return (f"[stream] t={record['time_s']:.1f}s frame {record['frame']}: {state} ({face} on this frame) "
            f"| {rate:.1f} frames/s")
