"""Live/spoof scores for new images and videos from a trained run.

    python -m dtda_jax.predict --workdir=runs/oci_to_m photo.jpg clip.mp4 folder/ [--json=out.json]
    python -m dtda_jax.predict --bundle=bundles/oci_to_m photo.jpg clip.mp4   # ONNX Runtime, no JAX
    python -m dtda_jax.predict --bundle=bundles/oci_to_m --stream=0           # camera 0, or a video file

Faces are found and cropped the way the run's training data was prepared
(`pipeline.real_settings(config.data)`: MTCNN at the same detection size, the same crop or
alignment, margin and crop size, the same frame policy with the same neighbour-frame fallback,
all through `data.face_extraction`), then scored with the student's live probability
(`inference.scoring.live_probability`; the run's method gives the model through the method
registry) and reduced per video as evaluation does (`config.eval.video_reduce`).
Runs on the built-in synthetic benchmark, whose images are already face crops, skip detection
(`--detect` / `--no_detect` choose explicitly).

A bundle (`python -m dtda_jax.export`) is scored with ONNX Runtime, numpy and OpenCV alone
(JAX is never imported): the same faces, crops, frames and video reduction as the run, the
settings read from its bundle.json.

The decision threshold defaults to an operating point chosen on the run's held-out source-val
videos, never on the target's labels: the bundle's own (bundle.json), or for a workdir the
checkpoint's `--operating_point` (default eer) fitted on that evaluation's saved source-val
scores. The target-EER threshold of the papers' tables is not a default; `--threshold`
overrides either. `--stream` scores a camera or a video file frame by frame (inference/stream.py).

Exit status 0 when at least one input was scored; 2 when none was (each unreadable file or image
without a face is reported with its reason), and for a missing input, a workdir without config or
checkpoint, or a checkpoint that does not fit its config.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import sys
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from dtda_jax.core.errors import UserError
from dtda_jax.data import video as video_lib
from dtda_jax.data.face_extraction import (Detector, FaceSettings, FrameSettings, detection_input,
                                           extract_video, face_crop, read_image)
from dtda_jax.data.layouts import VIDEO_EXTENSIONS, MediaEntry

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
CHECKPOINT_DIRS = {"best": "student_best", "latest": "student"}  # under <workdir>/checkpoints/
DEFAULT_BATCH_SIZE = 64


class PredictError(UserError):
    """A problem with the command's inputs; the message names it and the fix."""


# ============================================================================================
# The run: config, checkpoint, threshold
# ============================================================================================


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained student ready to score uint8 face crops of the run's image size."""

    workdir: str
    config: Any  # ml_collections.ConfigDict, from config.json
    checkpoint: str  # "best" or "latest"
    step: int
    variables: Any  # {"params", "batch_stats"} on the device
    score_fn: Callable  # jitted (variables, uint8 NHWC) -> live probabilities

    @property
    def video_reduce(self) -> str:
        return self.config.eval.video_reduce

    def score(self, crops: np.ndarray, batch_size: int) -> np.ndarray:
        return score_crops(self.score_fn, self.variables, crops, batch_size)


@dataclasses.dataclass(frozen=True)
class BundleScorer:
    """A deployment bundle's student (ONNX Runtime), scoring like `Run`."""

    bundle: Any  # deploy.runtime.Bundle

    @property
    def video_reduce(self) -> str:
        return self.bundle.manifest["videos"]["video_reduce"]

    def score(self, crops: np.ndarray, batch_size: int) -> np.ndarray:
        parts = [self.bundle.score(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def locate_run(path: str) -> tuple[str, str | None, int | None]:
    """(workdir, checkpoint kind, step) named by a workdir, one of its checkpoint directories
    (`checkpoints/student_best`, `checkpoints/student`) or a step directory inside one."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise PredictError(f"--workdir {path} does not exist; pass the --workdir of a training run "
                           "(python -m dtda_jax.main --workdir=DIR) or one of its checkpoint directories.")
    if os.path.isfile(os.path.join(path, "config.json")):
        return path, None, None
    step = None
    if os.path.basename(path).isdigit():
        path, step = os.path.dirname(path), int(os.path.basename(path))
    kinds = {name: kind for kind, name in CHECKPOINT_DIRS.items()}
    parent = os.path.dirname(path)
    if os.path.basename(path) in kinds and os.path.basename(parent) == "checkpoints":
        workdir = os.path.dirname(parent)
        if not os.path.isfile(os.path.join(workdir, "config.json")):
            raise PredictError(f"{workdir} (the run of checkpoint {path}) has no config.json, so the "
                               "student's architecture and preprocessing are unknown; restore the "
                               "run's config.json (training writes it) next to checkpoints/.")
        return workdir, kinds[os.path.basename(path)], step
    raise PredictError(f"--workdir {path} has no config.json: it is not a training run's workdir "
                       "(training writes config.json and checkpoints/ there) nor one of its "
                       "checkpoints/student_best or checkpoints/student directories.")


def read_config(workdir: str):
    from dtda_jax.config import records

    try:
        return records.read_recorded_config(workdir)
    except (OSError, ValueError) as err:
        raise PredictError(f"{os.path.join(workdir, records.CONFIG_FILE)} cannot be read as the run's "
                           f"config ({err}); it is written by training, restore it from the run.") from err


def checkpoint_steps(workdir: str) -> dict[str, int | None]:
    """The saved step of each student checkpoint kind (None: none saved)."""
    from dtda_jax.core.checkpointing import StageCheckpoints

    steps = {}
    for kind, name in CHECKPOINT_DIRS.items():
        directory = os.path.join(workdir, "checkpoints", name)
        # StageCheckpoints creates its directory; only open one that exists.
        steps[kind] = (StageCheckpoints(directory, with_data=False).latest_step()
                       if os.path.isdir(directory) else None)
    return steps


def choose_checkpoint(workdir: str, requested: str, steps: dict[str, int | None]) -> tuple[str, int]:
    """(kind, step): `requested` ("best", "latest") or, for "auto", best if saved, else latest."""
    if requested == "auto":
        requested = "best" if steps["best"] is not None else "latest"
    if steps[requested] is not None:
        return requested, steps[requested]
    if requested == "best" and steps["latest"] is not None:
        raise PredictError(f"{workdir} has no best checkpoint yet (it is saved at the first evaluation, "
                           "config.train.eval_every); use --checkpoint=latest.")
    raise PredictError(f"{workdir} has no student checkpoint (checkpoints/student_best and "
                       "checkpoints/student are empty or missing): training has not saved one yet. "
                       "Train the run further, or point --workdir at a run that finished.")


def check_checkpoint_fits(directory: str, step: int, template) -> None:
    """Names the first parameter whose presence or shape differs between the checkpoint and the
    state `config.json` describes (a restore would fail less clearly, or not at all)."""
    import orbax.checkpoint as ocp
    from etils import epath
    from flax.traverse_util import flatten_dict

    # The handler reads the item's tree metadata directly (a Checkpointer would first warn about
    # the step-level metadata file, which lives one level up).
    stored_tree = ocp.StandardCheckpointHandler().metadata(
        epath.Path(directory) / str(step) / "state").tree
    for part in ("params", "batch_stats"):
        stored = flatten_dict(stored_tree.get(part) or {}, sep="/")
        wanted = flatten_dict(getattr(template, part), sep="/")
        for name in sorted(set(stored) | set(wanted)):
            have = tuple(stored[name].shape) if name in stored else None
            want = tuple(wanted[name].shape) if name in wanted else None
            if have != want:
                raise PredictError(
                    f"The checkpoint {directory}/{step} does not match the run's config.json: "
                    f"{part}/{name} is {have or 'absent'} in the checkpoint but "
                    f"{want or 'absent'} for the config (model.width, teachers.*_dim...). "
                    "config.json must be the one the run was trained with.")


def load_run(path: str, checkpoint: str = "auto") -> Run:
    """Restores the student of a run's checkpoint onto one device, and jits its score function."""
    import jax

    from dtda_jax import methods
    from dtda_jax.core.checkpointing import DamagedCheckpointError, StageCheckpoints
    from dtda_jax.core.sharding import make_mesh, replicated
    from dtda_jax.core.state import image_model_init, init_state, rng_key
    from dtda_jax.inference.scoring import jit_live_probability

    workdir, implied, step = locate_run(path)
    if implied is not None and checkpoint not in ("auto", implied):
        raise PredictError(f"--workdir names the {implied} checkpoint but --checkpoint={checkpoint}; "
                           "drop one of them.")
    config = read_config(workdir)
    try:
        student, tx = methods.training_module(config.method.name).scored_model(config)
    except UserError as err:
        raise PredictError(f"{workdir}: {err}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise PredictError(f"{workdir}/config.json does not describe a student ({err!r}); it must be "
                           "the config.json training wrote.") from err
    steps = checkpoint_steps(workdir)
    kind, latest_step = choose_checkpoint(workdir, implied or checkpoint, steps)
    if step is not None and step != latest_step:
        raise PredictError(f"{workdir}: the {kind} checkpoint holds step {latest_step}, not {step}.")
    directory = os.path.join(workdir, "checkpoints", CHECKPOINT_DIRS[kind])
    mesh = make_mesh(1)
    # The checkpoint's state layout, without running the initialisers; every array is placed
    # on this machine's first device whatever topology training ran on.
    try:
        shapes = jax.eval_shape(lambda: init_state(image_model_init(student, config.data.image_size), tx,
                                                   rng_key(config.seed), mesh))
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise PredictError(f"{workdir}/config.json does not describe a student ({err!r}); it must be "
                           "the config.json training wrote.") from err
    sharding = replicated(mesh)
    template = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
    check_checkpoint_fits(directory, latest_step, template)
    try:
        state = StageCheckpoints(directory, with_data=False).restore(template, step=latest_step)
    except DamagedCheckpointError as err:
        raise PredictError(f"{err}. Score with the other checkpoint (--checkpoint=best|latest) or "
                           "resume the run's training, which sets a damaged checkpoint aside.") from None
    return Run(workdir=workdir, config=config, checkpoint=kind, step=int(state.step),
               variables=state.variables, score_fn=jit_live_probability(student))


def default_threshold(run: Run, point: str = "eer") -> tuple[float, str]:
    """The threshold of operating point `point` chosen on the source-val scores of the run's
    evaluation of this checkpoint, and a sentence saying so."""
    from dtda_jax.deploy import operating_point

    try:
        op = operating_point.choose(run.workdir, run.step, point)
    except UserError as err:
        raise PredictError(f"{err} (--threshold=T sets one by hand)") from None
    return float(op["threshold"]), operating_point.describe(op)


def bundle_threshold(bundle) -> tuple[float, str]:
    from dtda_jax.deploy import operating_point

    op = bundle.manifest["operating_point"]
    return float(op["threshold"]), "the bundle's " + operating_point.describe(op)


# ============================================================================================
# Faces: the run's MTCNN preparation, or whole images for the synthetic benchmark
# ============================================================================================


class FaceDetector(Detector):
    """The preparation's `Detector`, plus every face of an image (for `--all_faces`)."""

    def all_faces(self, image: np.ndarray) -> list[tuple]:
        """(box, landmarks, score) of every face, largest first, in the image's own pixels
        (the mapping `largest_faces` applies)."""
        x, scale = detection_input(image, self.settings.detect_max_side)
        (det,) = self.mtcnn.detect([x])
        area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        return [(det.boxes[i] / scale, det.landmarks[i] / scale, float(det.scores[i]))
                for i in np.argsort(-area, kind="stable")]

    def describe(self) -> str:
        s = self.settings
        how = "square crop around the box" if s.mode == "crop" else "5-landmark alignment"
        return (f"MTCNN (faces >= {s.min_face_size} px at {s.detect_max_side} px detection size), "
                f"{how} with margin {s.margin:g} -> {s.size}x{s.size}, as the run's data was prepared")


class WholeImage:
    """Takes every image or frame as one face crop: the box is the whole frame and, with margin
    0, `face_crop` resizes it to `size` (a non-square frame is centred in a square with its edge
    pixels repeated). For inputs like the synthetic benchmark's, which are face crops already.
    Quacks like `Detector` so `extract_video` samples frames for it exactly as for MTCNN."""

    def __init__(self, size: int):
        self.settings = FaceSettings(size=size, mode="crop", margin=0.0, max_fallback_offset=0)

    def largest_faces(self, frames: Sequence[np.ndarray]) -> list[tuple]:
        return [(np.array([0, 0, f.shape[1], f.shape[0]], np.float32), None, 1.0) for f in frames]

    def all_faces(self, image: np.ndarray) -> list[tuple]:
        return self.largest_faces([image])

    def describe(self) -> str:
        size = self.settings.size
        return f"inputs taken as face crops and resized to {size}x{size} (no detection)"


class BoxRecorder:
    """Passes a detector to `extract_video` and remembers the box behind each crop it yields:
    `face_extraction.Faces` keeps crops and frame numbers, not boxes. A crop is matched to its box
    by content (the same `face_crop` of the same frame gives the same bytes)."""

    def __init__(self, detector):
        self.detector, self.settings = detector, detector.settings
        self._boxes: dict[bytes, np.ndarray] = {}

    def largest_faces(self, frames: Sequence[np.ndarray]) -> list[tuple | None]:
        hits = self.detector.largest_faces(frames)
        for frame, hit in zip(frames, hits):
            if hit is not None:
                self._boxes[self._key(face_crop(frame, hit[0], hit[1], self.settings))] = hit[0]
        return hits

    def box_of(self, crop: np.ndarray) -> np.ndarray:
        return self._boxes[self._key(crop)]

    @staticmethod
    def _key(crop: np.ndarray) -> bytes:
        return hashlib.sha1(np.ascontiguousarray(crop).tobytes()).digest()


def parse_frames(spec: str, seed: int = 0) -> FrameSettings:
    """`all`, `ssdg`, `every<K>` or `random<N>` (the names `FrameSettings.tag` gives them)."""
    match = re.fullmatch(r"(all|ssdg)|every(\d+)|random(\d+)", spec)
    if not match:
        raise ValueError(f"--frames must be all, ssdg, every<K> (e.g. every5) or random<N>, got {spec!r}")
    if match.group(1):
        return FrameSettings(policy=match.group(1), seed=seed)
    if match.group(2):
        return FrameSettings(policy="every_k", every_k=int(match.group(2)), seed=seed)
    return FrameSettings(policy="random", num_random=int(match.group(3)), seed=seed)


def face_source(config, detect: bool | None = None, frames: str | None = None):
    """(detector, frame settings, note) for a run's config: MTCNN with its face settings for real
    data, whole images for the synthetic benchmark (`detect` forces either), and its frame policy
    (all frames on the synthetic benchmark, which evaluates every frame) unless `frames` is given."""
    from dtda_jax.data import pipeline

    run_frames, run_face = pipeline.real_settings(config.data)
    synthetic = config.data.dataset == "synthetic_fas"
    if synthetic:
        run_frames = FrameSettings(policy="all", seed=run_frames.seed)
    return make_face_source(run_face, run_frames, synthetic, detect, frames)


def bundle_face_source(bundle, detect: bool | None = None, frames: str | None = None):
    """`face_source` from a bundle's manifest, detecting with its ONNX MTCNN."""
    m = bundle.manifest
    face = FaceSettings(**{f.name: m["faces"][f.name] for f in dataclasses.fields(FaceSettings)})
    return make_face_source(face, FrameSettings(**m["videos"]["frames"]), not m["faces"]["detect"],
                            detect, frames, make_mtcnn=lambda: bundle.mtcnn(face.min_face_size))


def make_face_source(face: FaceSettings, run_frames: FrameSettings, synthetic: bool, detect: bool | None,
                     frames: str | None, make_mtcnn: Callable | None = None):
    if detect is None:
        detect = not synthetic
    if detect:
        detector = FaceDetector(face, make_mtcnn() if make_mtcnn else None)
    else:
        detector = WholeImage(face.size)
    frame_settings = parse_frames(frames, run_frames.seed) if frames is not None else run_frames
    note = detector.describe()
    if synthetic and not detect:
        note = f"synthetic-benchmark run: {note}; --detect runs MTCNN instead"
    elif synthetic:
        note += " (data.real settings of a synthetic-benchmark run)"
    return detector, frame_settings, note


# ============================================================================================
# Inputs -> face crops
# ============================================================================================


def media_kind(path: str) -> str:
    return "video" if path.lower().endswith(VIDEO_EXTENSIONS) else "image"


def collect_inputs(paths: Iterable[str]) -> list[str]:
    """Files as given (an unknown extension is tried as an image), folders searched recursively
    for images and videos, in sorted order; each file once. Missing paths are an error."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise PredictError(f"no such file or folder: {', '.join(missing)}")
    found = []
    for path in paths:
        if not os.path.isdir(path):
            found.append(path)
            continue
        inside = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                        if name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
        if not inside:
            raise PredictError(f"{path} holds no image ({', '.join(IMAGE_EXTENSIONS)}) or video "
                               f"({', '.join(VIDEO_EXTENSIONS)}) file.")
        found += inside
    return list(dict.fromkeys(found))


@dataclasses.dataclass
class MediaFaces:
    """One input before scoring: its face crops and where they came from, or why there are none."""

    path: str
    kind: str  # "image" | "video"
    crops: np.ndarray  # (n, S, S, 3) uint8
    frames: list[int]  # per crop: the frame the policy sampled (0 for images)
    source_frames: list[int]  # per crop: the frame the face was found on (a neighbour on fallback)
    boxes: list[list[float]]  # per crop: x1, y1, x2, y2 in the frame's pixels
    num_frames: int = 1
    status: str = "ok"  # "ok" | "unreadable" | "no_face"
    reason: str = ""


def _failure(path: str, kind: str, size: int, status: str, reason: str) -> MediaFaces:
    return MediaFaces(path, kind, np.zeros((0, size, size, 3), np.uint8), [], [], [], 0, status, reason)


def extract_faces(path: str, detector, frames: FrameSettings, all_faces: bool = False) -> MediaFaces:
    """The face crops of one image or video; unreadable files and faceless inputs are returned as
    failures with a reason, never raised."""
    kind, size = media_kind(path), detector.settings.size
    try:
        if kind == "video":
            recorder = BoxRecorder(detector)
            # The key seeds the "random" frame policy: the same path gets the same frames.
            entry = MediaEntry(dataset="", path=path, key=path, split="", label=-1, attack_type="",
                               subject=-1, sensor="", session=-1, is_video=True)
            faces = extract_video(entry, frames, recorder)
            if faces is None:
                return _failure(path, kind, size, "no_face",
                                f"no face on the {frames.tag()} frames or their neighbours "
                                f"(+-{detector.settings.max_fallback_offset} frames)")
            return MediaFaces(path, kind, faces.crops, faces.frame_index.tolist(),
                              faces.source_frame.tolist(),
                              [recorder.box_of(c).tolist() for c in faces.crops], faces.num_frames)
        image = read_image(path)
        hits = detector.all_faces(image) if all_faces else detector.largest_faces([image])
        hits = [h for h in hits if h is not None]
        if not hits:
            s = detector.settings
            return _failure(path, kind, size, "no_face", f"no face found by MTCNN (faces >= "
                            f"{s.min_face_size} px at {s.detect_max_side} px detection size)")
        crops = np.stack([face_crop(image, box, landmarks, detector.settings) for box, landmarks, _ in hits])
        zeros = [0] * len(hits)
        return MediaFaces(path, kind, crops, zeros, zeros, [np.asarray(h[0]).tolist() for h in hits])
    except video_lib.VideoReadError as err:
        return _failure(path, kind, size, "unreadable", str(err))


# ============================================================================================
# Scores and records (pure given the jitted score function)
# ============================================================================================


def score_crops(score_fn: Callable, variables: Any, crops: np.ndarray, batch_size: int) -> np.ndarray:
    """Live probabilities of uint8 crops (n, S, S, 3), in order, `batch_size` at a time; a shorter
    last batch is padded to the next power of two, so one image does not pay for a full batch
    and few shapes are ever compiled."""
    from dtda_jax.inference.scoring import chunks, score_batches

    return score_batches(score_fn, variables, chunks(crops, batch_size), batch_size, padding="power_of_two")


def decision(score: float, threshold: float) -> str:
    """`metrics.py`'s convention: accepted as live when score >= threshold."""
    return "live" if score >= threshold else "spoof"


def video_score(frame_scores: np.ndarray, reduce: str) -> float:
    """One video's score from its frame scores, by evaluation's own reduction."""
    from dtda_jax.evaluation.metrics import aggregate_by_video

    n = len(frame_scores)
    scores, _, _ = aggregate_by_video(frame_scores, np.zeros(n), np.zeros(n), reduce=reduce)
    return float(scores[0])


def media_record(media: MediaFaces, scores: np.ndarray, threshold: float, reduce: str) -> dict:
    """The JSON-ready result of one input."""
    record = {"path": media.path, "kind": media.kind, "status": media.status}
    if media.status != "ok":
        record["reason"] = media.reason
        return record
    faces = []
    for frame, source, box, score in zip(media.frames, media.source_frames, media.boxes, scores):
        face = {"frame": frame, "box": [float(v) for v in box], "live_probability": float(score),
                "decision": decision(float(score), threshold)}
        if media.kind == "video" and source != frame:
            face["face_from_frame"] = source
        faces.append(face)
    record["faces"] = faces
    if media.kind == "video":
        score = video_score(np.asarray(scores, np.float64), reduce)
        record["num_frames"] = media.num_frames
        record["video"] = {"live_probability": score, "decision": decision(score, threshold),
                           "reduce": reduce, "num_faces": len(faces)}
    return record


def predict(scorer, paths: Sequence[str], detector, frames: FrameSettings, threshold: float, *,
            all_faces: bool = False, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[dict]:
    """One record per input file, in order, scored by `scorer` (a `Run` or a `BundleScorer`).
    Crops of consecutive inputs share batches; at most about one batch plus one input's crops
    are held at a time."""
    reduce = scorer.video_reduce
    pending: list[MediaFaces] = []

    def flush() -> Iterator[dict]:
        crops = [m.crops for m in pending if len(m.crops)]
        scores = scorer.score(np.concatenate(crops), batch_size) if crops else []
        start = 0
        for media in pending:
            yield media_record(media, scores[start:start + len(media.crops)], threshold, reduce)
            start += len(media.crops)
        pending.clear()

    for path in paths:
        pending.append(extract_faces(path, detector, frames, all_faces))
        if sum(len(m.crops) for m in pending) >= batch_size:
            yield from flush()
    yield from flush()


# ============================================================================================
# Console
# ============================================================================================


def format_probability(value: float) -> str:
    """4 decimals; 3 significant digits below 0.001, so a tiny score or threshold is not shown as 0."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"


def _box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def format_record(record: dict) -> list[str]:
    """The console lines of one record: one per face, then the video's line."""
    path = record["path"]
    if record["status"] != "ok":
        return [f"{path}  {record['status'].upper().replace('_', ' ')}: {record['reason']}"]
    lines = []
    for i, face in enumerate(record["faces"]):
        where = (f"frame {face['frame']}" if record["kind"] == "video"
                 else f"face {i + 1}/{len(record['faces'])}")
        if "face_from_frame" in face:
            where += f" (face from frame {face['face_from_frame']})"
        lines.append(f"{path}  {where}  box {_box_text(face['box'])}  "
                     f"live {format_probability(face['live_probability'])}  {face['decision']}")
    if record["kind"] == "video":
        v = record["video"]
        how = f"{v['reduce']} of {v['num_faces']} frames, {record['num_frames']} decoded"
        lines.append(f"{path}  VIDEO ({how})  live {format_probability(v['live_probability'])}  "
                     f"{v['decision']}")
    return lines


def parse_args(argv: Sequence[str] | None):
    p = argparse.ArgumentParser(
        prog="python -m dtda_jax.predict", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="image (.jpg .jpeg .png .bmp) or video (.avi .mov .mp4) "
                   "files, or folders searched recursively for them")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--workdir",
                       help="a training run's workdir, or its checkpoints/student_best or checkpoints/student")
    model.add_argument("--bundle", help="a deployment bundle (python -m dtda_jax.export): ONNX Runtime, no JAX")
    p.add_argument("--checkpoint", default="auto", choices=("auto", "best", "latest"),
                   help="with --workdir; auto (default): best if the run saved one, else latest")
    p.add_argument("--threshold", type=float, default=None,
                   help="live when live probability >= this (default: the bundle's operating point, or "
                        "for --workdir the --operating_point chosen on the run's source-val videos)")
    p.add_argument("--operating_point", default=None,
                   help="with --workdir: eer (default), bpcer=X%%, apcer=X%% or fixed=T, chosen on the "
                        "checkpoint's source-val scores")
    p.add_argument("--stream", default=None, metavar="FILE_OR_CAMERA_INDEX",
                   help="score a video file or a camera (0, 1, ...) frame by frame as it arrives")
    p.add_argument("--window", default="ema0.3", metavar="emaA|meanN",
                   help="--stream's smoothing of the live score: an exponential moving average with "
                        "weight A for the new frame (ema0.3, default) or the mean of the last N frames (mean10)")
    p.add_argument("--redetect", type=int, default=15, metavar="K",
                   help="--stream: search the whole frame for faces every K frames (default 15), near "
                        "the tracked face in between; 1: every whole frame, as predict on a video")
    p.add_argument("--max_frames", type=int, default=None, help="--stream: stop after this many frames")
    p.add_argument("--threads", type=int, default=None,
                   help="--bundle: ONNX Runtime threads per model (default: its own choice)")
    p.add_argument("--frames", default=None,
                   help="video frames to score: all, ssdg, every<K>, random<N> (default: the run's "
                        "frame policy; all frames for a synthetic-benchmark run)")
    p.add_argument("--all_faces", action="store_true",
                   help="score every face of an image (default: the largest; videos: largest per frame)")
    detect = p.add_mutually_exclusive_group()
    detect.add_argument("--no_detect", dest="detect", action="store_false", default=None,
                        help="take inputs as face crops and resize them (automatic for synthetic runs)")
    detect.add_argument("--detect", dest="detect", action="store_true", default=None,
                        help="detect with MTCNN and the run's data.real face settings even on a "
                             "synthetic-benchmark run")
    p.add_argument("--batch_size", type=int, default=None,
                   help="faces per forward pass (default: the run's data.eval_batch_size)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the results as JSON to PATH ('-': stdout, text goes to stderr)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    if bool(args.inputs) == (args.stream is not None):
        p.error("give input files or folders, or --stream=FILE_OR_CAMERA_INDEX (one of the two)")
    if args.operating_point is not None:
        if args.bundle:
            p.error("--operating_point is chosen at export (python -m dtda_jax.export --operating_point); "
                    "a bundle has its own, --threshold overrides it")
        from dtda_jax.evaluation import metrics

        try:
            metrics.parse_operating_point(args.operating_point)
        except ValueError as err:
            p.error(str(err))
    if args.stream is not None:
        from dtda_jax.inference import stream

        try:
            stream.parse_window(args.window)
        except ValueError as err:
            p.error(str(err))
        if args.redetect < 1:
            p.error(f"--redetect must be >= 1, got {args.redetect}")
    if args.frames is not None:
        try:
            parse_frames(args.frames)
        except ValueError as err:
            p.error(str(err))
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch_size must be >= 1, got {args.batch_size}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from dtda_jax.core.cli import run_command

    args = parse_args(argv)
    return run_command("predict", lambda: score_inputs(args), debug=args.debug)


def open_scorer(args, say: Callable[[str], None]):
    """(scorer, detector, frame settings, threshold, where the threshold came from, how faces
    are found) of the command's --workdir or --bundle, after saying what they are."""
    if args.bundle:
        from dtda_jax.deploy import runtime

        bundle = runtime.open_bundle(args.bundle, args.threads)
        scorer = BundleScorer(bundle)
        threshold, origin = bundle_threshold(bundle)
        detector, frames, face_note = bundle_face_source(bundle, args.detect, args.frames)
        m = bundle.manifest
        say(f"[predict] bundle {m['directory']}: {m['model']['architecture']}, {m['source']['checkpoint']} "
            f"checkpoint, step {m['source']['step']} ({m['source']['protocol']}), ONNX Runtime")
    else:
        run = load_run(args.workdir, args.checkpoint)
        scorer = run
        threshold, origin = default_threshold(run, args.operating_point or "eer")
        detector, frames, face_note = face_source(run.config, args.detect, args.frames)
        c = run.config
        say(f"[predict] {run.workdir}: {run.checkpoint} checkpoint, step {run.step} "
            f"({'&'.join(c.data.source_domains)} -> {c.data.target_domain})")
    if args.threshold is not None:
        threshold, origin = args.threshold, "given by --threshold"
    else:
        origin += " (--threshold overrides it)"
    say(f"[predict] threshold {format_probability(threshold)}: {origin}")
    say(f"[predict] faces: {face_note}")
    return scorer, detector, frames, threshold, origin, face_note


def score_inputs(args) -> int:
    out = sys.stderr if args.json == "-" else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    paths = collect_inputs(args.inputs) if args.inputs else []
    scorer, detector, frames, threshold, origin, face_note = open_scorer(args, say)
    if args.stream is not None:
        from dtda_jax.inference import stream

        return stream.run_stream(args, scorer, detector, threshold, say)
    batch_size = args.batch_size or (scorer.config.data.eval_batch_size if isinstance(scorer, Run)
                                     else DEFAULT_BATCH_SIZE)
    say(f"[predict] videos: {frames.tag()} frames, scored per video by the {scorer.video_reduce} "
        "(config.eval.video_reduce)")
    records = []
    for record in predict(scorer, paths, detector, frames, threshold, all_faces=args.all_faces,
                          batch_size=batch_size):
        records.append(record)
        for line in format_record(record):
            say(line)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "unreadable", "no_face")}
    say(f"[predict] {counts['ok']} of {len(records)} inputs scored; {counts['unreadable']} unreadable, "
        f"{counts['no_face']} without a face")
    if args.json is not None:
        if isinstance(scorer, Run):
            origin_keys = {"workdir": scorer.workdir, "checkpoint": scorer.checkpoint, "step": scorer.step}
        else:
            source = scorer.bundle.manifest["source"]
            origin_keys = {"bundle": scorer.bundle.manifest["directory"], "checkpoint": source["checkpoint"],
                           "step": source["step"]}
        report = {**origin_keys, "threshold": threshold, "threshold_origin": origin, "faces": face_note,
                  "frames": frames.tag(), "video_reduce": scorer.video_reduce,
                  "summary": {"inputs": len(records), "scored": counts["ok"],
                              "unreadable": counts["unreadable"], "no_face": counts["no_face"]},
                  "results": records}
        write_json_output(args.json, report)
    return 0 if counts["ok"] else 2


def write_json_output(path: str, report: dict) -> None:
    """`report` as JSON to `path`, or to stdout for '-'."""
    text = json.dumps(report, indent=2)
    if path == "-":
        print(text, flush=True)
    else:
        from dtda_jax.core import artifacts

        artifacts.write_text(path, text + "\n")


if __name__ == "__main__":
    sys.exit(main())
