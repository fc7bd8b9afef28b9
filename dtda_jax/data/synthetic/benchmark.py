"""Synthetic multi-domain face anti-spoofing benchmark as a TFDS builder.

Real FAS datasets (OULU-NPU, CASIA-FASD, Replay-Attack, MSU-MFSD) cannot be shipped,
so this builder renders a deterministic stand-in from a seed (see
:mod:`dtda_jax.data.synthetic` for the scene, attack and camera models).  Four domains
(:data:`DOMAINS`) play the role of the four datasets of the usual leave-one-domain-out
protocol; each has its own camera, lighting, backgrounds and mix of attack types.

Layout
------
* Splits ``train`` and ``test``.  In every domain the two splits have disjoint
  subjects (identities); identities are also disjoint across domains.
* Every identity has one live video plus one video per attack type of its domain's
  attack mix (``DOMAIN_PARAMS[d].attack_mix``), ``frames_per_video`` frames each.
  One record per frame.
* Record features (as stored):

  ===============  =============  ====================================================
  ``image``        uint8 (S,S,3)  the frame
  ``domain``       int32          index into :data:`DOMAINS`
  ``label``        int32          1 = live, 0 = spoof (the SSDG convention)
  ``attack_type``  int32          index into :data:`ATTACK_TYPES` (0 = live)
  ``identity``     int32          subject id, globally unique
  ``attributes``   int32 (5,)     binary, :data:`ATTRIBUTES` order (CelebA/StarGAN)
  ``video_id``     int32          globally unique per video
  ``frame_index``  int32          0 .. frames_per_video-1
  ===============  =============  ====================================================

Reading (no TensorFlow needed; ``array_record`` files, random access)::

    from dtda_jax.data.synthetic.benchmark import prepare_synthetic_fas

    builder = prepare_synthetic_fas("/path/to/data", image_size=64, seed=0)  # builds once
    train = builder.as_data_source(split="train")     # random-access sequence
    rec = train[0]                                   # dict: numpy arrays / ints
    rec["image"].shape, rec["label"], rec["domain"]
    builder.info.metadata["domains"]                 # ["studio", "webcam", ...]

    # or, for the registered default configs (size64_seed0, size256_seed0):
    import tensorflow_datasets as tfds
    src = tfds.data_source("synthetic_fas/size64_seed0", split="test",
                           data_dir="/path/to/data", download=False)
    # any config, through its config object:
    src = tfds.data_source("synthetic_fas", split="test", data_dir="/path/to/data",
                           builder_kwargs={"config": builder.builder_config},
                           download=False)

``split="train+test"`` works too.  Scalar fields come back as Python ints (TFDS
decodes 0-d tensors that way), ``image`` and ``attributes`` as numpy arrays.  The
sources plug straight into ``grain`` (``grain.MapDataset.source(src).batch(n)``
gives a dict of stacked numpy arrays).

Default config (64 px, 12 train + 8 test identities per domain, 4 frames per video):
1040 frames (624 train, 416 test), about 13 MB, built in ~20 s on 2 CPU cores. The demo
configs use 16 + 24 (``size64_seed0_tr16_te24_f4``, configs/base/synthetic_protocol.py):
2080 frames in ~30 s, and a held-out domain (all its frames) of 40 live and 80 (studio: 120)
spoof videos, so one video moves HTER by 0.4-1.25 points instead of 1.25-2.5.
256 px renders at ~0.25 s per frame (the same config takes ~9 min).

Generation is deterministic: identity ``i`` is drawn from ``default_rng([seed, 1, i])``
and video ``v`` from ``default_rng([seed, 2, v, domain, attack_type])``, so the same
config gives byte-identical images, whatever the generation order.  Builds go to a
temporary directory that TFDS renames when complete, so an interrupted build leaves
no half dataset behind; :func:`prepare_synthetic_fas` also removes stale temporary
directories of earlier killed builds before building again (so do not build the same
config from two processes at once).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from dtda_jax.data.synthetic import (
    ATTACK_TYPES,
    ATTRIBUTES,
    DOMAIN_PARAMS,
    DOMAINS,
    render_video,
    sample_identity,
)

__all__ = [
    "ATTACK_TYPES",
    "ATTRIBUTES",
    "DOMAINS",
    "DOMAIN_PARAMS",
    "SyntheticFasConfig",
    "SyntheticFas",
    "VideoSpec",
    "dataset_plan",
    "prepare_synthetic_fas",
]

_DEFAULTS = dict(train_identities_per_domain=12, test_identities_per_domain=8, frames_per_video=4)


@dataclasses.dataclass(eq=False)
class SyntheticFasConfig(tfds.core.BuilderConfig):
    """Size / seed / counts of a synthetic FAS benchmark.

    ``name`` is derived from the fields (``size{S}_seed{seed}`` plus the counts when
    they differ from the defaults) unless given, so different configs are stored in
    different directories.
    """

    name: str = ""
    image_size: int = 64
    seed: int = 0
    train_identities_per_domain: int = _DEFAULTS["train_identities_per_domain"]
    test_identities_per_domain: int = _DEFAULTS["test_identities_per_domain"]
    frames_per_video: int = _DEFAULTS["frames_per_video"]

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if min(self.train_identities_per_domain, self.test_identities_per_domain, self.frames_per_video) < 1:
            raise ValueError("identity and frame counts must be >= 1")
        if not self.name:
            name = f"size{self.image_size}_seed{self.seed}"
            counts = (self.train_identities_per_domain, self.test_identities_per_domain, self.frames_per_video)
            if counts != tuple(_DEFAULTS.values()):
                name += "_tr{}_te{}_f{}".format(*counts)
            self.name = name
        if not self.description:
            self.description = (
                f"{self.image_size}x{self.image_size} px, seed {self.seed}, "
                f"{self.train_identities_per_domain}/{self.test_identities_per_domain} train/test identities "
                f"per domain, {self.frames_per_video} frames per video"
            )


def _config_fields(cfg: SyntheticFasConfig) -> tuple:
    return (cfg.name, cfg.image_size, cfg.seed, cfg.train_identities_per_domain,
            cfg.test_identities_per_domain, cfg.frames_per_video)


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """One video of the benchmark (see :func:`dataset_plan`)."""

    video_id: int
    identity: int
    domain: int
    split: str
    attack_type: int


def dataset_plan(config: SyntheticFasConfig) -> list[VideoSpec]:
    """All videos of a config, in a fixed order: domain, split (train, test),
    identity, then live followed by the domain's attack mix."""
    plan: list[VideoSpec] = []
    identity = 0
    video_id = 0
    for d, dom in enumerate(DOMAIN_PARAMS):
        for split, n in (("train", config.train_identities_per_domain), ("test", config.test_identities_per_domain)):
            for _ in range(n):
                for atk in (0, *dom.attack_mix):
                    plan.append(VideoSpec(video_id, identity, d, split, atk))
                    video_id += 1
                identity += 1
    return plan


def _metadata() -> dict[str, Any]:
    return {
        "domains": list(DOMAINS),
        "attack_types": list(ATTACK_TYPES),
        "attributes": list(ATTRIBUTES),
        "label_convention": "label 1 = live, 0 = spoof",
        "domain_attack_mix": {d.name: [ATTACK_TYPES[a] for a in d.attack_mix] for d in DOMAIN_PARAMS},
        "domain_params": {d.name: dataclasses.asdict(d) for d in DOMAIN_PARAMS},
    }


class SyntheticFas(tfds.core.GeneratorBasedBuilder):
    """Procedurally rendered multi-domain face anti-spoofing benchmark."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [SyntheticFasConfig(image_size=64, seed=0), SyntheticFasConfig(image_size=256, seed=0)]
    DEFAULT_BUILDER_CONFIG_NAME = "size64_seed0"

    def __init__(self, *, file_format: str | None = "array_record", **kwargs: Any):
        super().__init__(file_format=file_format, **kwargs)

    def _create_builder_config(self, builder_config, version):
        # A fresh ``SyntheticFasConfig(...)`` equal to a registered one (e.g. the default
        # size64_seed0) stands for that one; TFDS would otherwise refuse it for reusing
        # a registered name.
        if isinstance(builder_config, SyntheticFasConfig):
            registered = type(self).builder_configs.get(builder_config.name)
            if registered is not None and registered is not builder_config:
                if _config_fields(registered) != _config_fields(builder_config):
                    raise ValueError(f"config name {builder_config.name!r} is taken by {registered}")
                builder_config = registered
        return super()._create_builder_config(builder_config, version)

    # TFDS's default ``code_path`` resolves package resources through the optional
    # ``importlib_resources`` backport (absent here); the plain file path is what it
    # would compute anyway.  It is only used to look for a (non-existent) checksums file.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath

        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        s = cfg.image_size
        i32 = np.int32
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0] + "\n\n" + (cfg.description or ""),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
                "domain": tfds.features.Scalar(dtype=i32),
                "label": tfds.features.Scalar(dtype=i32),
                "attack_type": tfds.features.Scalar(dtype=i32),
                "identity": tfds.features.Scalar(dtype=i32),
                "attributes": tfds.features.Tensor(shape=(len(ATTRIBUTES),), dtype=i32),
                "video_id": tfds.features.Scalar(dtype=i32),
                "frame_index": tfds.features.Scalar(dtype=i32),
            }),
            metadata=tfds.core.MetadataDict(_metadata()),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        cfg = self.builder_config
        plan = [v for v in dataset_plan(cfg) if v.split == split]
        t0 = time.perf_counter()
        n_frames = 0
        current = None
        identity = None
        for v in plan:
            if current != v.domain:
                if current is not None:
                    _progress(split, current, n_frames, t0)
                current = v.domain
            if identity is None or identity.identity_id != v.identity:
                identity = sample_identity(cfg.seed, v.identity, v.domain)
            frames = render_video(cfg.seed, v.video_id, identity, v.domain, v.attack_type,
                                  cfg.frames_per_video, cfg.image_size)
            attrs = np.asarray(identity.attributes, np.int32)
            for t, frame in enumerate(frames):
                n_frames += 1
                yield f"{v.video_id:07d}_{t:04d}", {
                    "image": frame,
                    "domain": np.int32(v.domain),
                    "label": np.int32(v.attack_type == 0),
                    "attack_type": np.int32(v.attack_type),
                    "identity": np.int32(v.identity),
                    "attributes": attrs,
                    "video_id": np.int32(v.video_id),
                    "frame_index": np.int32(t),
                }
        if current is not None:
            _progress(split, current, n_frames, t0)


def _progress(split: str, domain: int, n_frames: int, t0: float) -> None:
    print(f"[synthetic_fas] {split}: domain {DOMAINS[domain]} done, {n_frames} frames, "
          f"{time.perf_counter() - t0:.1f}s", flush=True)


def prepare_synthetic_fas(data_dir: str | os.PathLike, image_size: int = 64, seed: int = 0,
                          **overrides: Any) -> SyntheticFas:
    """Builds the benchmark under ``data_dir`` unless already built; returns the builder.

    ``overrides`` are further :class:`SyntheticFasConfig` fields
    (``train_identities_per_domain``, ``test_identities_per_domain``,
    ``frames_per_video``).  A second call with the same arguments only opens the
    existing files.  Read with ``builder.as_data_source(split="train")``.
    """
    cfg = SyntheticFasConfig(image_size=image_size, seed=seed, **overrides)
    builder = SyntheticFas(data_dir=os.fspath(data_dir), config=cfg)
    if builder.is_prepared():
        return builder
    # Stale temporary directories of an interrupted (killed) earlier build.
    parent = os.path.dirname(os.fspath(builder.data_path).rstrip("/"))
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            if entry.startswith("incomplete.") or ".incomplete" in entry:
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    n = len(dataset_plan(cfg)) * cfg.frames_per_video
    print(f"[synthetic_fas] building {cfg.name} ({n} frames) in {builder.data_dir}", flush=True)
    t0 = time.perf_counter()
    tqdm_utils = tfds.core.utils.tqdm_utils
    bars = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(False)  # our own per-domain progress lines instead
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP))
    finally:
        tfds.display_progress_bar(bars)
    print(f"[synthetic_fas] built {cfg.name}: {n} frames in {time.perf_counter() - t0:.1f}s", flush=True)
    return builder
