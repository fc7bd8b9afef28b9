"""A corpus of LIVE synthetic faces for training the project's own teachers.

The built-in FAS benchmark (:mod:`dtda_jax.data.synthetic.benchmark`) numbers its subjects
``0 .. 4 * (train + test identities per domain) - 1`` and its videos likewise from 0. The
teachers must not have seen those faces (a teacher trained on the test subjects would leak
them into the student through distillation), so this corpus draws its identities and videos
with ids offset by :data:`ID_OFFSET` / :data:`VIDEO_OFFSET`. The renderer draws identity ``i``
from ``default_rng([seed, 1, i])`` and video ``v`` from ``default_rng([seed, 2, v, ...])``,
so offset ids give faces and frames that no benchmark record can share, whatever the two
seeds (:func:`check_disjoint_from_benchmark` checks the ids against a benchmark's plan).

Layout: identity ``k`` (``0 <= k < train + heldout``) has id ``ID_OFFSET + k``, a home
domain ``k % 4`` (skin-tone population) and ``videos_per_identity`` live videos: the same face
under several cameras and lights, as a face recognition teacher must learn to ignore them.
With ``capture="random"`` every video has its own capture pipeline
(:func:`dtda_jax.data.synthetic.domains.random_capture`: colour response, noise, blur,
resolution, JPEG, illumination, background drawn from ranges wider than the four benchmark
domains', and never within ``MIN_CAPTURE_DISTANCE`` of one), as the paper's teachers saw
millions of faces under every kind of capture; its ``domain`` is -1. With
``capture="benchmark_cameras"`` (the default; corpus version 1's only layout) video ``j`` is
shot by benchmark domain ``(k + j) % 4``'s camera. The first ``train_identities`` identities
form split ``train`` (the ArcFace classes); the rest, ``heldout``, are only used to measure the teachers
(verification, attributes) on faces they never saw, and ``heldout_cameras`` shows those
held-out people once through each benchmark camera, to measure the teachers on cameras a
random-capture teacher never saw (evaluation only; the benchmark's people are not in it).

Every split holds ``images`` uint8 (N, S, S, 3), ``identity`` int32 (N,), ``attributes``
int32 (N, 5) in :data:`dtda_jax.data.synthetic.ATTRIBUTES` order, ``domain`` int32 (N,): the
benchmark camera, or -1, and ``video_id`` int32 (N,). :func:`load_face_corpus` renders once
and caches one ``.npz`` per settings (atomically: written to a temporary file, then renamed),
so later calls only read it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Iterable

import numpy as np

from dtda_jax.core.artifacts import write_atomically
from dtda_jax.data.synthetic import DOMAIN_PARAMS, DOMAINS, render_video, sample_identity
from dtda_jax.data.synthetic.domains import random_capture

__all__ = ["ID_OFFSET", "VIDEO_OFFSET", "SPLITS", "CorpusSettings", "CorpusSplit",
           "corpus_plan", "render_face_corpus", "load_face_corpus", "corpus_filename",
           "check_disjoint_from_benchmark"]

# Far beyond any benchmark id: the benchmark would need 250,000 identities per domain to reach it.
ID_OFFSET = 1_000_000
VIDEO_OFFSET = 1_000_000
SPLITS = ("train", "heldout", "heldout_cameras")
CAPTURES = ("random", "benchmark_cameras")
RANDOM_CAPTURE = -1  # the `domain` of a video shot through a random capture pipeline
# Bump when the layout or rendering of the corpus changes: old cache files are then not reused.
CORPUS_VERSION = 2
_FIELDS = ("images", "identity", "attributes", "domain", "video_id")


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """What a corpus is made of; every field is part of its cache file name."""

    image_size: int = 64
    seed: int = 0
    train_identities: int = 96
    heldout_identities: int = 32
    videos_per_identity: int = 8
    frames_per_video: int = 1
    capture: str = "benchmark_cameras"

    def __post_init__(self):
        problems = []
        if self.image_size < 16:
            problems.append(f"image_size must be >= 16 (the renderer's minimum), got {self.image_size}")
        if self.train_identities < 2:
            problems.append(f"train_identities must be >= 2 (they are the classes of the face "
                            f"recognition loss), got {self.train_identities}")
        if self.heldout_identities < 2:
            problems.append(f"heldout_identities must be >= 2 (verification needs pairs of different "
                            f"people), got {self.heldout_identities}")
        if self.videos_per_identity < 1 or self.frames_per_video < 1:
            problems.append("videos_per_identity and frames_per_video must be >= 1, got "
                            f"{self.videos_per_identity} and {self.frames_per_video}")
        elif self.videos_per_identity * self.frames_per_video < 2:
            problems.append("each identity needs at least 2 images (videos_per_identity * "
                            "frames_per_video >= 2), or there are no same-person pairs")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.capture not in CAPTURES:
            problems.append(f"capture must be one of {CAPTURES}, got {self.capture!r}")
        n_videos = (self.train_identities + self.heldout_identities) * self.videos_per_identity
        if n_videos >= 2**31 - VIDEO_OFFSET:
            problems.append("too many identities x videos for int32 video ids")
        if problems:
            raise ValueError("Invalid face corpus settings: " + "; ".join(problems) + ".")

    @property
    def frames_per_identity(self) -> int:
        return self.videos_per_identity * self.frames_per_video

    def num_frames(self, split: str | None = None) -> int:
        per_split = {"train": self.train_identities * self.frames_per_identity,
                     "heldout": self.heldout_identities * self.frames_per_identity,
                     "heldout_cameras": self.heldout_identities * len(DOMAINS) * self.frames_per_video}
        return sum(per_split.values()) if split is None else per_split[split]


@dataclasses.dataclass(frozen=True)
class CorpusSplit:
    """One split: parallel arrays, one row per frame."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    identity: np.ndarray  # int32 (N,), global ids (>= ID_OFFSET)
    attributes: np.ndarray  # int32 (N, 5)
    domain: np.ndarray  # int32 (N,)
    video_id: np.ndarray  # int32 (N,), global ids (>= VIDEO_OFFSET)

    def __len__(self) -> int:
        return int(self.identity.shape[0])

    def class_labels(self) -> tuple[np.ndarray, int]:
        """Identities as classes 0..K-1 (in id order) and K, for the face recognition loss."""
        _, labels = np.unique(self.identity, return_inverse=True)
        return labels.astype(np.int32), int(labels.max()) + 1


@dataclasses.dataclass(frozen=True)
class _Video:
    split: str
    identity_index: int
    identity_id: int
    home_domain: int
    domain: int  # the benchmark camera, or RANDOM_CAPTURE
    video_id: int


def corpus_plan(settings: CorpusSettings) -> list[_Video]:
    """Every video of the corpus in rendering order (pure: ids, splits and domains only)."""
    plan = []
    n_total = settings.train_identities + settings.heldout_identities
    random = settings.capture == "random"
    for k in range(n_total):
        split = "train" if k < settings.train_identities else "heldout"
        home = k % len(DOMAINS)
        for j in range(settings.videos_per_identity):
            camera = RANDOM_CAPTURE if random else (k + j) % len(DOMAINS)
            plan.append(_Video(split, k, ID_OFFSET + k, home, camera,
                               VIDEO_OFFSET + k * settings.videos_per_identity + j))
    first = VIDEO_OFFSET + n_total * settings.videos_per_identity
    for k in range(settings.train_identities, n_total):
        for camera in range(len(DOMAINS)):
            plan.append(_Video("heldout_cameras", k, ID_OFFSET + k, k % len(DOMAINS), camera,
                               first + (k - settings.train_identities) * len(DOMAINS) + camera))
    return plan


def video_pipeline(settings: CorpusSettings, video: _Video):
    """The capture pipeline of a random-capture video (seeded by the corpus seed and video id);
    None for a benchmark camera's."""
    if video.domain != RANDOM_CAPTURE:
        return None
    return random_capture(np.random.default_rng([settings.seed, 4, video.video_id]),
                          DOMAIN_PARAMS[video.home_domain])


def check_disjoint_from_benchmark(identity_ids: Iterable[int], video_ids: Iterable[int],
                                  benchmark_plan) -> None:
    """Raises if any corpus identity or video id is also one of the benchmark's.

    `benchmark_plan` is :func:`benchmark.dataset_plan` of the benchmark's config.
    """
    ids, vids = set(int(i) for i in identity_ids), set(int(v) for v in video_ids)
    shared_ids = ids & {v.identity for v in benchmark_plan}
    shared_vids = vids & {v.video_id for v in benchmark_plan}
    if shared_ids or shared_vids:
        raise ValueError(
            f"The teacher corpus shares identity ids {sorted(shared_ids)[:5]} / video ids "
            f"{sorted(shared_vids)[:5]} with the FAS benchmark; its faces would not be disjoint "
            f"from the benchmark's (benchmark too large for ID_OFFSET={ID_OFFSET}?).")


def corpus_filename(settings: CorpusSettings) -> str:
    s = settings
    return (f"face_corpus_v{CORPUS_VERSION}_s{s.image_size}_seed{s.seed}_tr{s.train_identities}"
            f"_ho{s.heldout_identities}_v{s.videos_per_identity}_f{s.frames_per_video}_{s.capture}.npz")


def render_face_corpus(settings: CorpusSettings,
                       log: Callable[[str], None] = print) -> dict[str, CorpusSplit]:
    """Renders the corpus (deterministic in `settings`), printing progress with an ETA."""
    plan = corpus_plan(settings)
    total = settings.num_frames()
    out: dict[str, dict[str, list]] = {s: {f: [] for f in _FIELDS} for s in SPLITS}
    t0 = last = time.perf_counter()
    done = 0
    identity = None
    log(f"[face_corpus] rendering {total} live frames at {settings.image_size} px "
        f"({settings.train_identities} train + {settings.heldout_identities} held-out identities, "
        f"{settings.videos_per_identity} videos x {settings.frames_per_video} frames each, "
        f"{settings.capture.replace('_', ' ')} capture; the held-out ones also through the "
        f"{len(DOMAINS)} benchmark cameras)")
    for video in plan:
        if identity is None or identity.identity_id != video.identity_id:
            identity = sample_identity(settings.seed, video.identity_id, video.home_domain)
        random = video.domain == RANDOM_CAPTURE  # its randomness is seeded with the home domain
        seed_domain = video.home_domain if random else video.domain
        frames = render_video(settings.seed, video.video_id, identity, seed_domain, "live",
                              settings.frames_per_video, settings.image_size,
                              pipeline=video_pipeline(settings, video))
        n = len(frames)
        rows = out[video.split]
        rows["images"].append(frames)
        rows["identity"].append(np.full(n, video.identity_id, np.int32))
        rows["attributes"].append(np.tile(identity.attribute_vector, (n, 1)))
        rows["domain"].append(np.full(n, video.domain, np.int32))
        rows["video_id"].append(np.full(n, video.video_id, np.int32))
        done += n
        now = time.perf_counter()
        if now - last >= 10.0 or done == total:
            last = now
            eta = (now - t0) / done * (total - done)
            log(f"[face_corpus] {done}/{total} frames, {now - t0:.1f}s, ETA {eta:.0f}s")
    return {split: CorpusSplit(**{f: np.concatenate(v).astype(np.uint8 if f == "images" else np.int32)
                                  for f, v in rows.items()})
            for split, rows in out.items()}


def _settings_json(settings: CorpusSettings) -> str:
    return json.dumps({"corpus_version": CORPUS_VERSION, **dataclasses.asdict(settings)}, sort_keys=True)


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    write_atomically(path, lambda f: np.savez(f, **arrays), binary=True)


def _read(path: str, settings: CorpusSettings) -> dict[str, CorpusSplit]:
    with np.load(path) as z:
        stored = str(z["settings"])
        if stored != _settings_json(settings):
            raise ValueError(f"{path} holds a corpus with settings {stored}, not "
                             f"{_settings_json(settings)}; delete it to re-render.")
        return {s: CorpusSplit(**{f: z[f"{s}_{f}"] for f in _FIELDS}) for s in SPLITS}


def load_face_corpus(cache_dir: str, settings: CorpusSettings,
                     log: Callable[[str], None] = print) -> tuple[dict[str, CorpusSplit], str]:
    """The corpus for `settings` and its cache file: read if present, else rendered and cached."""
    path = os.path.join(cache_dir, corpus_filename(settings))
    if os.path.isfile(path):
        return _read(path, settings), path
    t0 = time.perf_counter()
    splits = render_face_corpus(settings, log)
    arrays = {f"{s}_{f}": getattr(splits[s], f) for s in SPLITS for f in _FIELDS}
    _write_atomically(path, {"settings": np.asarray(_settings_json(settings)), **arrays})
    log(f"[face_corpus] wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB) in "
        f"{time.perf_counter() - t0:.1f}s")
    return splits, path
