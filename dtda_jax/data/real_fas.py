"""The real FAS datasets as tensorflow-datasets builders over manually downloaded files.

OULU-NPU, CASIA-FASD, Idiap Replay-Attack, MSU-MFSD (videos) and CelebA-Spoof (images) are
licensed: users download them by hand and point `manual_dir` at the download. Preparation
scans the official layout (`layouts.py`), samples frames, detects and crops faces with the
JAX MTCNN (`face_extraction.py`, resumable) and writes one record per face crop:

  ==============  ============  ===========================================================
  ``image``       bytes         PNG (JPEG for CelebA-Spoof) of the S x S RGB face crop
  ``domain``      int32         index of the dataset in `layouts.DATASETS` (one domain each)
  ``label``       int32         1 = live, 0 = spoof
  ``attack_type`` int32         index into `layouts.ATTACK_TYPES` (0 = live)
  ``subject``     int32         subject id (-1 unknown)
  ``session``     int32         session (-1 unknown)
  ``sensor``      text          capture device / quality ('' unknown)
  ``video_id``    int32         index of the video (image) in the dataset's sorted file list
  ``video_key``   text          path of the video (image) relative to the download
  ``frame_index`` int32         the sampled frame
  ``source_frame`` int32        the frame the face was found on (a neighbour if none on it)
  ``num_frames``  int32         frames decoded from the video
  ``face_score``  float32       MTCNN score (0 when CelebA-Spoof's official box was used)
  ``attributes``  int32 (40,)   CelebA-Spoof only: the 40 CelebA face attributes
  ==============  ============  ===========================================================

Splits are the official ones, normalised to ``train`` / ``dev`` / ``test``; which of them a
protocol trains and tests on is the split convention (`protocol_splits`). The builder config
name records the preparation settings (e.g. ``ssdg_crop256_m0.2``), so differently prepared
copies live side by side under ``data_dir``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any

import cv2
import numpy as np
import tensorflow_datasets as tfds

from dtda_jax.core.artifacts import write_json
from dtda_jax.data import layouts
from dtda_jax.data.face_extraction import (
    Detector,
    FaceCache,
    FaceSettings,
    FrameSettings,
    extract_all,
    iter_entries_with_faces,
)

SPLIT_CONVENTIONS = ("ssdg", "official")


@dataclasses.dataclass(eq=False)
class RealFasConfig(tfds.core.BuilderConfig):
    """Preparation settings; the name is derived from them unless given."""

    name: str = ""
    frames: FrameSettings = FrameSettings()
    face: FaceSettings = FaceSettings()
    celeba_spoof_protocol: str = "p1"  # CelebA-Spoof only

    def __post_init__(self):
        if self.celeba_spoof_protocol not in layouts.CELEBA_SPOOF_PROTOCOLS:
            raise ValueError(f"CelebA-Spoof protocol must be one of {layouts.CELEBA_SPOOF_PROTOCOLS}, "
                             f"got {self.celeba_spoof_protocol!r}")
        if not self.description:
            self.description = f"frames {self.frames}, faces {self.face}"


class RealFasBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common code of the five dataset builders; subclasses set DATASET."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Face crops from the official downloads (dtda-jax preparation)."}
    DATASET = ""
    IMAGE_FORMAT = ".png"  # lossless; CelebA-Spoof's sources are JPEG already
    IMAGE_PARAMS: tuple[int, ...] = ()  # cv2.imencode parameters
    BUILDER_CONFIG_CLASS = RealFasConfig

    def __init__(self, *, file_format: str | None = "array_record", **kwargs: Any):
        super().__init__(file_format=file_format, **kwargs)

    # As in synthetic/benchmark.py: the plain path, instead of an importlib_resources lookup.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath

        return epath.Path(__file__)

    @property
    def cache_dir(self) -> str:
        """Face crops of every media file, shared by builder configs that crop alike."""
        cfg = self.builder_config
        tag = cfg.face.tag() if self.DATASET == "celeba_spoof" else f"{cfg.frames.tag()}_{cfg.face.tag()}"
        return os.path.join(self._data_dir_root, "face_cache", self.DATASET, tag)

    def _features(self) -> dict[str, Any]:
        i32 = np.int32
        return {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "domain": tfds.features.Scalar(dtype=i32),
            "label": tfds.features.Scalar(dtype=i32),
            "attack_type": tfds.features.Scalar(dtype=i32),
            "subject": tfds.features.Scalar(dtype=i32),
            "session": tfds.features.Scalar(dtype=i32),
            "sensor": tfds.features.Text(),
            "video_id": tfds.features.Scalar(dtype=i32),
            "video_key": tfds.features.Text(),
            "frame_index": tfds.features.Scalar(dtype=i32),
            "source_frame": tfds.features.Scalar(dtype=i32),
            "num_frames": tfds.features.Scalar(dtype=i32),
            "face_score": tfds.features.Scalar(dtype=np.float32),
        }

    def _info(self) -> tfds.core.DatasetInfo:
        title, url, _ = layouts.DOWNLOADS[self.DATASET]
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{title}: face crops prepared by dtda-jax ({self.builder_config.description}).",
            homepage=url,
            features=tfds.features.FeaturesDict(self._features()),
            metadata=tfds.core.MetadataDict(
                dataset=self.DATASET, domains=list(layouts.DATASETS),
                attack_types=list(layouts.ATTACK_TYPES), label_convention="label 1 = live, 0 = spoof"),
        )

    def _scan(self, manual_dir: str) -> list[layouts.MediaEntry]:
        kwargs = ({"protocol": self.builder_config.celeba_spoof_protocol}
                  if self.DATASET == "celeba_spoof" else {})
        return layouts.scan(self.DATASET, manual_dir, **kwargs)

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        entries = self._scan(os.fspath(dl_manager.manual_dir))
        # A stable id per file: its position in the sorted list of every file of the download.
        ids = {e.key: i for i, e in enumerate(sorted(entries, key=lambda e: e.key))}
        cache = FaceCache(self.cache_dir)
        report = extract_all(entries, cache, cfg.frames, lambda: Detector(cfg.face))
        print(f"[prepare] {self.DATASET}: {report.summary()}", flush=True)
        report_json = dataclasses.asdict(report)
        write_json(os.path.join(self.cache_dir, "report.json"), report_json)
        self.info.metadata["preparation_report"] = report_json
        self.info.metadata["cache_dir"] = self.cache_dir
        splits = sorted({e.split for e in entries})
        return {s: self._generate_examples([e for e in entries if e.split == s], cache, ids)
                for s in splits}

    def _record(self, entry: layouts.MediaEntry, faces, row: int, video_id: int) -> dict[str, Any]:
        crop = cv2.cvtColor(faces.crops[row], cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(self.IMAGE_FORMAT, crop, list(self.IMAGE_PARAMS))
        assert ok, "OpenCV failed to encode a face crop"
        return {
            "image": encoded.tobytes(),
            "domain": np.int32(layouts.DATASETS.index(self.DATASET)),
            "label": np.int32(entry.label),
            "attack_type": np.int32(layouts.ATTACK_TYPES.index(entry.attack_type)),
            "subject": np.int32(entry.subject),
            "session": np.int32(entry.session),
            "sensor": entry.sensor,
            "video_id": np.int32(video_id),
            "video_key": entry.key,
            "frame_index": np.int32(faces.frame_index[row]),
            "source_frame": np.int32(faces.source_frame[row]),
            "num_frames": np.int32(faces.num_frames),
            "face_score": np.float32(faces.score[row]),
        }

    def _generate_examples(self, entries, cache, ids):
        for entry, faces in iter_entries_with_faces(entries, cache):
            for row in range(len(faces.crops)):
                yield f"{entry.key}#{int(faces.frame_index[row])}", self._record(entry, faces, row,
                                                                                  ids[entry.key])


class OuluNpu(RealFasBuilder):
    DATASET = "oulu_npu"
    MANUAL_DOWNLOAD_INSTRUCTIONS = layouts.manual_download_instructions(DATASET)


class CasiaFasd(RealFasBuilder):
    DATASET = "casia_fasd"
    MANUAL_DOWNLOAD_INSTRUCTIONS = layouts.manual_download_instructions(DATASET)


class ReplayAttack(RealFasBuilder):
    DATASET = "replay_attack"
    MANUAL_DOWNLOAD_INSTRUCTIONS = layouts.manual_download_instructions(DATASET)


class MsuMfsd(RealFasBuilder):
    DATASET = "msu_mfsd"
    MANUAL_DOWNLOAD_INSTRUCTIONS = layouts.manual_download_instructions(DATASET)


class CelebaSpoof(RealFasBuilder):
    DATASET = "celeba_spoof"
    IMAGE_FORMAT = ".jpg"  # PNG would take ~60 GB for the 625k images at 256 px
    IMAGE_PARAMS = (cv2.IMWRITE_JPEG_QUALITY, 95)
    MANUAL_DOWNLOAD_INSTRUCTIONS = layouts.manual_download_instructions(DATASET)

    def _features(self):
        return {**super()._features(),
                "attributes": tfds.features.Tensor(shape=(40,), dtype=np.int32)}

    def _record(self, entry, faces, row, video_id):
        return {**super()._record(entry, faces, row, video_id),
                "attributes": np.asarray(entry.attributes, np.int32)}


BUILDERS = {b.DATASET: b for b in (OuluNpu, CasiaFasd, ReplayAttack, MsuMfsd, CelebaSpoof)}


def builder_config(frames: FrameSettings, face: FaceSettings, dataset: str,
                   celeba_spoof_protocol: str = "p1") -> RealFasConfig:
    if dataset == "celeba_spoof":
        name = f"{celeba_spoof_protocol}_{face.tag()}"
    else:
        name, celeba_spoof_protocol = f"{frames.tag()}_{face.tag()}", "p1"
    return RealFasConfig(name=name, frames=frames, face=face, celeba_spoof_protocol=celeba_spoof_protocol)


def get_builder(dataset: str, data_dir: str | os.PathLike, frames: FrameSettings, face: FaceSettings,
                celeba_spoof_protocol: str = "p1") -> RealFasBuilder:
    if dataset not in BUILDERS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {sorted(BUILDERS)}.")
    return BUILDERS[dataset](data_dir=os.fspath(data_dir),
                             config=builder_config(frames, face, dataset, celeba_spoof_protocol))


def prepare(dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike,
            frames: FrameSettings = FrameSettings(), face: FaceSettings = FaceSettings(),
            celeba_spoof_protocol: str = "p1") -> RealFasBuilder:
    """Prepares one dataset from its download (resuming an interrupted run); returns the builder.

    Raises `layouts.DatasetLayoutError` naming what is missing when `manual_dir` does not hold
    the official layout. A second call with the same settings only opens the result.
    """
    builder = get_builder(dataset, data_dir, frames, face, celeba_spoof_protocol)
    if builder.is_prepared():
        print(f"[prepare] {dataset}/{builder.builder_config.name} is already prepared in {data_dir}")
        return builder
    manual_dir = layouts.check_root(dataset, os.fspath(manual_dir))  # before tfds asserts on it
    _remove_incomplete_builds(builder)
    print(f"[prepare] {dataset} from {manual_dir} -> {builder.data_dir} "
          f"(face cache {builder.cache_dir})", flush=True)
    bars = getattr(tfds.core.utils.tqdm_utils, "_active", True)
    tfds.display_progress_bar(False)  # our own progress lines instead
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP))
    finally:
        tfds.display_progress_bar(bars)
    counts = {s: info.num_examples for s, info in builder.info.splits.items()}
    print(f"[prepare] {dataset} ready: {counts} face crops in {builder.data_dir}", flush=True)
    return builder


def _remove_incomplete_builds(builder: RealFasBuilder) -> None:
    """Temporary directories left by a killed earlier build (the face cache is kept)."""
    parent = os.path.dirname(os.fspath(builder.data_path).rstrip("/"))
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            if entry.startswith("incomplete.") or ".incomplete" in entry:
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Which official splits a protocol uses
# --------------------------------------------------------------------------------------------


def protocol_splits(convention: str, dataset: str, role: str, intra_dataset: bool = False) -> tuple[str, ...]:
    """Official splits of `dataset` in a protocol role ("train", "source_val" or "target").

    - "ssdg" (SSDG, FLIP; the convention of the paper's comparison tables): sources train on
      train + test, the target is evaluated on train + test; dev (OULU, Replay) is left out of
      both and serves as held-out source data.
    - "official" (SSAN): sources train on train; held-out source data is dev where the dataset
      has one, else test; the target is evaluated on test.
    - intra-dataset (CelebA-Spoof): train on train, evaluate on test (no dev split exists).
    """
    if convention not in SPLIT_CONVENTIONS:
        raise ValueError(f"split convention must be one of {SPLIT_CONVENTIONS}, got {convention!r}")
    available = layouts.SPLITS[dataset]
    if intra_dataset:
        return {"train": ("train",), "source_val": ("test",), "target": ("test",)}[role]
    has_dev = "dev" in available
    if convention == "ssdg":
        table = {"train": ("train", "test"), "source_val": ("dev",) if has_dev else (),
                 "target": ("train", "test")}
    else:
        table = {"train": ("train",), "source_val": ("dev",) if has_dev else ("test",), "target": ("test",)}
    return tuple(s for s in table[role] if s in available)
