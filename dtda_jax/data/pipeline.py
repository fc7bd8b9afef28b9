"""Input pipeline: protocol frames, exact balanced training batches, evaluation batches.

A protocol is three frame sets (source train, held-out source validation, target) over
random-access tfds data sources. Training batches follow the SSDG convention: every batch
holds exactly `samples_per_group` frames of every (source domain, live/spoof) group. The
batch of step `s` is a pure function of (seed, s), so grain's iterator state is just a
position, a resumed run sees exactly the batches an uninterrupted run sees, and each process
of a multi-host run reads only its own slice of the global batch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Iterator, Sequence

import grain
import numpy as np

from dtda_jax.core.errors import UserError
from dtda_jax.core.sharding import process_slice
from dtda_jax.data import augmentation, frame_store

# Keys every frame record carries (see dtda_jax/data/synthetic/benchmark.py).
_INDEX_KEYS = ("domain", "label", "video_id")


class DataError(UserError, ValueError):
    """The configured data cannot be used as it is (damaged, empty, unknown); the message says why."""


class MissingDataError(UserError, FileNotFoundError):
    """The configured dataset is not prepared where the config says; the message says how to."""


@dataclasses.dataclass(frozen=True)
class FrameSet:
    """Metadata of a set of frames, enough to build batches without reading any image.

    `domain` is the index of the frame's domain in the protocol's domain list (sources first),
    `video` a video key unique within the set, `label` 1 = live, 0 = spoof.
    """

    sources: tuple[Any, ...]
    source_id: np.ndarray
    record: np.ndarray
    domain: np.ndarray
    label: np.ndarray
    video: np.ndarray
    # Per data source, its frames decoded once (frame_store.DecodedFrames), or () to decode
    # each frame's stored bytes when it is read (config.data.frame_store = "encoded").
    decoded: tuple[Any, ...] = ()

    def __len__(self) -> int:
        return int(self.record.shape[0])

    def read(self, position: int) -> dict[str, np.ndarray]:
        return self.sources[self.source_id[position]][int(self.record[position])]

    def read_images(self, positions: Sequence[int]) -> np.ndarray:
        """The uint8 (N, H, W, 3) images of the frames at `positions`, in that order."""
        if not self.decoded:
            return np.stack([decode_image(self.read(p)["image"]) for p in positions])
        positions = np.asarray(positions, np.int64)
        source_ids, records = self.source_id[positions], self.record[positions]
        if np.all(source_ids == source_ids[0]):
            return self.decoded[source_ids[0]].take(records)
        out = np.empty((positions.size, *self.decoded[source_ids[0]].array.shape[1:]), np.uint8)
        for source_id in np.unique(source_ids):
            rows = source_ids == source_id
            out[rows] = self.decoded[source_id].take(records[rows])
        return out


def decode_image(image) -> np.ndarray:
    """A record's image as RGB uint8: the built-in benchmark stores arrays, prepared real
    datasets store PNG/JPEG bytes (`real_fas.py`)."""
    if not isinstance(image, bytes):
        return np.asarray(image)
    import cv2

    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise DataError("A record's image bytes are not a decodable PNG/JPEG: the prepared dataset "
                        "is damaged; delete it and run tools/prepare_fas.py again.")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A leave-domain-out protocol: where to train, where to set thresholds, what to test."""

    domain_names: tuple[str, ...]  # sources first, then the target
    train: FrameSet
    source_val: FrameSet
    target: FrameSet

    @property
    def num_source_domains(self) -> int:
        return len(self.domain_names) - 1

    @property
    def name(self) -> str:
        """"studio&webcam&phone -> kiosk"."""
        return f"{'&'.join(self.domain_names[:-1])} -> {self.domain_names[-1]}"


def _scan_source(source, domain_map: dict[int, int], source_id: int, video_offset: int):
    """Reads the index keys of every record of one data source; keeps the mapped domains."""
    num = len(source)
    domain = np.empty(num, np.int32)
    label = np.empty(num, np.int32)
    video = np.empty(num, np.int64)
    for i in range(num):
        rec = source[i]
        domain[i], label[i], video[i] = (int(rec[k]) for k in _INDEX_KEYS)
    keep = np.isin(domain, list(domain_map))
    mapped = np.array([domain_map[int(d)] for d in domain[keep]], np.int32)
    return dict(
        source_id=np.full(int(keep.sum()), source_id, np.int32),
        record=np.nonzero(keep)[0].astype(np.int64),
        domain=mapped,
        label=label[keep],
        video=video[keep] + video_offset,
    )


def _frame_set(sources: Sequence[Any], domain_maps: Sequence[dict[int, int]],
               stores: Sequence[tuple[str, str]] = ()) -> FrameSet:
    """The frames of `sources` whose domains `domain_maps` keep; `stores` gives, per source,
    (path, description) of its decoded-frame store, or is empty to decode when reading."""
    parts = []
    for source_id, (source, domain_map) in enumerate(zip(sources, domain_maps)):
        # Offsetting video ids per source keeps them unique when a set spans several datasets.
        parts.append(_scan_source(source, domain_map, source_id, video_offset=source_id * (1 << 40)))
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # An empty split (every video skipped in preparation) has nothing to store or read.
    decoded = tuple(frame_store.decoded_frames(source, path, describe, decode_image) if len(source) else None
                    for source, (path, describe) in zip(sources, stores))
    return FrameSet(sources=tuple(sources), decoded=decoded, **cat)


def _store(d, builder, split: str) -> list[tuple[str, str]]:
    """The decoded-frame store of one split of a prepared dataset, if the config uses stores."""
    if d.frame_store == "encoded":
        return []
    return [(frame_store.store_path(builder.data_path, split), f"{builder.builder_config.name} {split}")]


def _synthetic_builder(d):
    """The built-in benchmark's builder; generated on first use unless that is switched off."""
    from dtda_jax.data.synthetic import benchmark

    overrides = dict(d.synthetic_overrides)
    if d.generate_if_missing:
        return benchmark.prepare_synthetic_fas(d.data_dir, d.image_size, d.synthetic_seed, **overrides)
    cfg = benchmark.SyntheticFasConfig(image_size=d.image_size, seed=d.synthetic_seed, **overrides)
    builder = benchmark.SyntheticFas(data_dir=os.fspath(d.data_dir), config=cfg)
    if not builder.is_prepared():
        raise MissingDataError(
            f"The built-in benchmark {cfg.name!r} is not in config.data.data_dir={d.data_dir!r} "
            f"(looked for {builder.data_path}). Set config.data.generate_if_missing=True to generate "
            "it (seconds at 64 px), or point config.data.data_dir at the directory that holds it.")
    return builder


def load_protocol(config) -> Protocol:
    """Builds (or finds) the configured dataset(s) and indexes the protocol's three frame sets."""
    d = config.data
    start = time.perf_counter()
    if d.dataset == "real_fas":
        protocol = _real_protocol(d)
    elif d.dataset == "synthetic_fas":
        protocol = _synthetic_protocol(d)
    else:
        raise DataError(f"config.data.dataset={d.dataset!r} is unknown; use 'synthetic_fas' (the built-in "
                        "benchmark) or 'real_fas' (prepared OULU-NPU / CASIA-FASD / Replay-Attack / "
                        "MSU-MFSD / CelebA-Spoof, see tools/prepare_fas.py).")
    print(f"[data] {describe_protocol(protocol)} (indexed in {time.perf_counter() - start:.1f}s)",
          flush=True)
    return protocol


def real_settings(d):
    """The preparation settings a config's data section asks for (they name the tfds config)."""
    from dtda_jax.data.face_extraction import FaceSettings, FrameSettings

    r = d.real
    frames = FrameSettings(policy=r.frame_policy, every_k=r.frame_every_k, num_random=r.frame_num_random,
                           seed=r.frame_seed)
    face = FaceSettings(size=d.image_size, mode=r.face_mode, margin=r.face_margin,
                        min_face_size=r.face_min_size, detect_max_side=r.face_detect_max_side,
                        max_fallback_offset=r.face_max_fallback_offset)
    return frames, face


def prepare_command(d, dataset: str) -> str:
    """The tools/prepare_fas.py command that prepares `dataset` the way config `d` reads it."""
    r = d.real
    args = [f"--dataset={dataset}", f"--manual_dir=/path/to/{dataset}", f"--data_dir={d.data_dir}",
            f"--image_size={d.image_size}", f"--frame_policy={r.frame_policy}",
            f"--face_mode={r.face_mode}", f"--face_margin={r.face_margin:g}"]
    if r.frame_policy == "every_k":
        args.append(f"--frame_every_k={r.frame_every_k}")
    if r.frame_policy == "random":
        args += [f"--frame_num_random={r.frame_num_random}", f"--frame_seed={r.frame_seed}"]
    if dataset == "celeba_spoof":
        args.append(f"--celeba_spoof_protocol={r.celeba_spoof_protocol}")
    from dtda_jax.config.common import common_config

    defaults = common_config("dtda").data.real  # the CLI's defaults
    args += [f"--{k}={r[k]}" for k in ("face_min_size", "face_detect_max_side", "face_max_fallback_offset")
             if r[k] != defaults[k]]
    return "python tools/prepare_fas.py " + " ".join(args)


def _real_protocol(d) -> Protocol:
    from dtda_jax.data import layouts, real_fas

    frames, face = real_settings(d)
    intra = d.target_domain in d.source_domains
    builders = {}
    for name in dict.fromkeys((*d.source_domains, d.target_domain)):
        builder = real_fas.get_builder(name, d.data_dir, frames, face, d.real.celeba_spoof_protocol)
        if not builder.is_prepared():
            raise MissingDataError(
                f"Dataset {name!r} prepared as {builder.builder_config.name!r} is not in "
                f"config.data.data_dir={d.data_dir!r} (looked for {builder.data_path}). Prepare it "
                f"once with:\n  {prepare_command(d, name)}\n"
                f"({layouts.manual_download_instructions(name)})")
        builders[name] = builder

    def role_set(domains, role, first_index):
        sources, maps, stores = [], [], []
        for i, name in enumerate(domains):
            domain_map = {layouts.DATASETS.index(name): first_index + i}
            for split in real_fas.protocol_splits(d.split_convention, name, role, intra):
                sources.append(builders[name].as_data_source(split=split))
                maps.append(domain_map)
                stores += _store(d, builders[name], split)
        if not sources:
            raise DataError(
                f"The {role} frames of {' & '.join(domains)} under config.data.split_convention="
                f"{d.split_convention!r} are empty: none of them has a split for it (only OULU-NPU and "
                "Replay-Attack have dev splits). Use split_convention='official' or add such a source.")
        return _frame_set(sources, maps, stores)

    sources = tuple(d.source_domains)
    return Protocol(domain_names=(*sources, d.target_domain),
                    train=role_set(sources, "train", 0),
                    source_val=role_set(sources, "source_val", 0),
                    target=role_set((d.target_domain,), "target", len(sources)))


def _synthetic_protocol(d) -> Protocol:
    from dtda_jax.data.synthetic import DOMAINS

    unknown = [n for n in (*d.source_domains, d.target_domain) if n not in DOMAINS]
    if unknown:
        raise DataError(f"config.data: unknown domain(s) {unknown}; the built-in benchmark has "
                        f"domains {DOMAINS}.")
    builder = _synthetic_builder(d)
    names = (*d.source_domains, d.target_domain)
    source_map = {DOMAINS.index(n): i for i, n in enumerate(d.source_domains)}
    target_map = {DOMAINS.index(d.target_domain): len(d.source_domains)}

    def split_set(splits, domain_map):
        sources = [builder.as_data_source(split=s) for s in splits]
        stores = [store for s in splits for store in _store(d, builder, s)]
        return _frame_set(sources, [domain_map] * len(sources), stores)

    return Protocol(
        domain_names=names,
        train=split_set(d.source_splits, source_map),
        source_val=split_set(d.source_val_splits, source_map),
        target=split_set(d.target_splits, target_map),
    )


def describe_protocol(p: Protocol) -> str:
    def counts(fs: FrameSet) -> str:
        live = int((fs.label == 1).sum())
        return (f"{len(fs)} frames / {len(np.unique(fs.video))} videos "
                f"({live} live, {len(fs) - live} spoof frames)")

    return (f"{'&'.join(p.domain_names[:-1])} -> {p.domain_names[-1]}: train {counts(p.train)}; "
            f"source-val {counts(p.source_val)}; target {counts(p.target)}")


# --------------------------------------------------------------------------------------------
# Balanced training batches
# --------------------------------------------------------------------------------------------


def group_members(frames: FrameSet, num_domains: int, domain_names: Sequence[str]) -> list[np.ndarray]:
    """Frame positions of every (domain, label) group, ordered domain-major, spoof then live."""
    groups = []
    for dom in range(num_domains):
        for label in (0, 1):
            members = np.nonzero((frames.domain == dom) & (frames.label == label))[0]
            if members.size == 0:
                kind = "live" if label else "spoof"
                raise DataError(f"Source domain {domain_names[dom]!r} has no {kind} frames in the "
                                "training splits; balanced batches need every (domain, class) group.")
            groups.append(members)
    return groups


@functools.lru_cache(maxsize=64)
def _group_permutation(seed: int, group: int, epoch: int, size: int) -> np.ndarray:
    """One epoch's order of a group; cached, since every batch of the epoch needs it (a
    permutation of a 100k-frame group costs about a millisecond)."""
    perm = np.random.default_rng([seed, group, epoch]).permutation(size)
    perm.flags.writeable = False
    return perm


def balanced_batch_positions(groups: Sequence[np.ndarray], samples_per_group: int, seed: int,
                             step: int) -> np.ndarray:
    """Frame positions of the global batch of `step`: exactly `samples_per_group` per group.

    Each group is read as an endless sequence of fresh permutations (one per epoch of that
    group), so every frame of a group is seen once before any is seen twice.
    """
    out = np.empty(len(groups) * samples_per_group, np.int64)
    for g, members in enumerate(groups):
        n = members.size
        first = step * samples_per_group
        pos = np.arange(first, first + samples_per_group)
        epochs = pos // n
        for epoch in np.unique(epochs):
            perm = _group_permutation(seed, g, int(epoch), n)
            sel = epochs == epoch
            out[g * samples_per_group + np.nonzero(sel)[0]] = members[perm[pos[sel] % n]]
    return out


@dataclasses.dataclass(frozen=True)
class BalancedBatches:
    """The map from a step to its (process-local) training batch; used by grain."""

    frames: FrameSet
    groups: tuple[np.ndarray, ...]
    samples_per_group: int
    seed: int
    flip: bool
    crop_padding: float
    process_index: int = 0
    process_count: int = 1
    frames_on_device: bool = False  # "frame" positions instead of "image" (device_frames.py)

    @property
    def global_batch_size(self) -> int:
        return len(self.groups) * self.samples_per_group

    @functools.cached_property
    def _image_size(self) -> int:
        """The frames' size, read once (batches of positions read no image)."""
        return self.frames.read_images(self.groups[0][:1]).shape[1]

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        """The un-augmented uint8 images of the step's frames (or their positions) with their
        flip/crop draws (applied in the jitted step, see augmentation.py), labels and domains."""
        positions = balanced_batch_positions(self.groups, self.samples_per_group, self.seed, step)
        rows = process_slice(positions.size, self.process_index, self.process_count)
        positions = positions[rows]
        batch = {"label": self.frames.label[positions].astype(np.int32),
                 "domain": self.frames.domain[positions].astype(np.int32)}
        if self.frames_on_device:
            batch["frame"] = positions.astype(np.int32)
            image_size = self._image_size
        else:
            batch["image"] = self.frames.read_images(positions)
            image_size = batch["image"].shape[1]
        # Drawn for the global batch, so that a frame's crop and flip do not depend on how
        # many processes share the batch.
        pad = augmentation.pad_pixels(self.crop_padding, image_size)
        draws = augmentation.draws(self.seed, step, self.global_batch_size, self.flip, pad)
        return {**batch, **{k: v[rows] for k, v in draws.items()}}


def step_batches(batch_of_step, num_steps: int, num_threads: int | None = None) -> grain.DatasetIterator:
    """A checkpointable grain iterator over `batch_of_step(step)` for steps 0..num_steps-1,
    built by `num_threads` threads (default: up to 4, one per core).

    Batches are pure functions of the step, so the iterator's state is just a position: a
    resumed stage sees exactly the batches an uninterrupted one sees.
    """
    threads = num_threads or min(4, os.cpu_count() or 1)
    ds = grain.MapDataset.range(0, num_steps).map(batch_of_step)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)))


def balanced_train_iterator(frames: FrameSet, domain_names: Sequence[str], num_domains: int,
                            samples_per_group: int, seed: int, num_steps: int, *, flip: bool,
                            crop_padding: float, process_index: int = 0, process_count: int = 1,
                            frames_on_device: bool = False) -> grain.DatasetIterator:
    """A checkpointable grain iterator over the balanced batches of steps 0..num_steps-1."""
    groups = tuple(group_members(frames, num_domains, domain_names))
    batch_fn = BalancedBatches(frames, groups, samples_per_group, seed, flip, crop_padding,
                               process_index, process_count, frames_on_device)
    if batch_fn.global_batch_size % process_count:
        raise DataError(f"Global batch {batch_fn.global_batch_size} is not divisible by "
                        f"{process_count} processes; change data.samples_per_group.")
    return step_batches(batch_fn, num_steps)


# --------------------------------------------------------------------------------------------
# Evaluation batches
# --------------------------------------------------------------------------------------------


def position_batches(num_frames: int, batch_size: int) -> Iterator[np.ndarray]:
    """The frame positions 0..num_frames-1, `batch_size` at a time (the last batch may be shorter)."""
    for start in range(0, num_frames, batch_size):
        yield np.arange(start, min(start + batch_size, num_frames))


def read_frames(frames: FrameSet, positions: np.ndarray, keys: Sequence[str] = ()):
    """The images of the frames at `positions`, or a dict of "image" and the frame arrays
    named by `keys` (e.g. "domain")."""
    images = frames.read_images(positions)
    if not keys:
        return images
    return {"image": images, **{k: getattr(frames, k)[positions].astype(np.int32) for k in keys}}
