"""The config sections every method shares: seed, method name, data, loop and evaluation.

A run's config is these sections plus its method's own (dtda_jax/methods/<name>/config.py),
nothing else: a DTDA run's config.json holds no KDFAS field and a KDFAS run's none of DTDA's.
Validation names the offending field and its allowed values before any work starts.
"""

from __future__ import annotations

import ml_collections

from dtda_jax.core.errors import ConfigError

THRESHOLD_POLICIES = ("target_eer", "source_val_eer", "fixed")
SELECTION_POLICIES = ("best_on_target", "last")
VIDEO_REDUCTIONS = ("mean", "median", "first")
LR_SCHEDULES = ("constant", "cosine", "step")  # dtda_jax.core.optim
OPTIMIZERS = ("sgd", "adamw")
DATASET_KINDS = ("synthetic_fas", "real_fas")
FRAME_STORES = ("decoded", "encoded", "device")  # data.frame_store
# Kept in sync with dtda_jax/data (tested); listed here so validating a config imports no
# video or detection code.
REAL_DATASETS = ("oulu_npu", "casia_fasd", "replay_attack", "msu_mfsd", "celeba_spoof")
SPLIT_CONVENTIONS = ("ssdg", "official")
FRAME_POLICIES = ("all", "every_k", "ssdg", "random")
FACE_MODES = ("crop", "align")
CELEBA_SPOOF_PROTOCOLS = ("p1", "p2_low", "p2_middle", "p2_high")

# The paper's protocols (Section IV-A): sources -> target, as dataset names of layouts.py.
PAPER_PROTOCOLS = {
    "oci_to_m": (("oulu_npu", "casia_fasd", "replay_attack"), "msu_mfsd"),
    "omi_to_c": (("oulu_npu", "msu_mfsd", "replay_attack"), "casia_fasd"),
    "ocm_to_i": (("oulu_npu", "casia_fasd", "msu_mfsd"), "replay_attack"),
    "icm_to_o": (("replay_attack", "casia_fasd", "msu_mfsd"), "oulu_npu"),
    "mi_to_c": (("msu_mfsd", "replay_attack"), "casia_fasd"),
    "mi_to_o": (("msu_mfsd", "replay_attack"), "oulu_npu"),
}


# The built-in benchmark's size fields that data.synthetic_overrides may set (SyntheticFasConfig).
SYNTHETIC_COUNTS = ("train_identities_per_domain", "test_identities_per_domain", "frames_per_video")


def common_config(method: str) -> ml_collections.ConfigDict:
    """The shared sections with their defaults (the built-in benchmark at 256 x 256)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.method = ml_collections.ConfigDict()
    c.method.name = method  # dtda_jax.methods: "dtda" | "kdfas"

    # --- data -------------------------------------------------------------------------------
    c.data = d = ml_collections.ConfigDict()
    d.dataset = "synthetic_fas"  # the built-in tfds benchmark (dtda_jax/data/synthetic/benchmark.py)
    d.data_dir = "data"  # tfds data_dir; the built-in benchmark is generated here on first use
    d.image_size = 256
    d.synthetic_seed = 0  # seed of the generated benchmark (independent of the training seed)
    d.synthetic_overrides = ml_collections.ConfigDict()  # SyntheticFasConfig fields, e.g. sizes
    d.generate_if_missing = True  # build the built-in benchmark on first use (seconds at 64 px)
    d.source_domains = ("studio", "webcam", "phone")
    d.target_domain = "kiosk"
    d.source_splits = ("train",)  # what the models train on
    d.source_val_splits = ("test",)  # held-out source data: `source_val_eer` threshold policy
    d.target_splits = ("train", "test")  # all frames of the unseen domain are evaluated
    # Exact per-(domain, live/spoof) balance, the SSDG convention: batch = domains * 2 * this.
    d.samples_per_group = 16  # 3 domains * 2 classes * 16 = 96, the paper's batch size
    # Real datasets (data.dataset = "real_fas"): how they were prepared (tools/prepare_fas.py;
    # these settings name the prepared copy) and which official splits a protocol uses.
    d.split_convention = "ssdg"  # "ssdg" (train+test of every dataset, dev held out) | "official"
    d.real = r = ml_collections.ConfigDict()
    r.frame_policy = "ssdg"  # frames 6 and 6+N//2 of each video | all | every_k | random
    r.frame_every_k = 5
    r.frame_num_random = 1
    r.frame_seed = 0
    r.face_mode = "crop"  # MTCNN box + margin, or "align" (5-landmark similarity transform)
    r.face_margin = 0.2
    r.face_min_size = 20  # MTCNN minimum face size in detection pixels
    r.face_detect_max_side = 640  # frames are downscaled to this for detection
    r.face_max_fallback_offset = 15  # no face on a frame: try neighbours up to this far
    r.celeba_spoof_protocol = "p1"  # p1 | p2_low | p2_middle | p2_high
    d.augment_flip = True
    d.augment_crop_padding = 0.0625  # random crop after padding by this fraction of the size
    d.eval_batch_size = 64
    # "decoded": every image decoded once into a memory-mapped uint8 file beside the prepared
    # dataset (dtda_jax/data/frame_store.py; disk = frames x H x W x 3 bytes), then read as
    # row copies; "encoded": the stored PNG/JPEG bytes decoded at every read (no extra disk,
    # ~700 images/s per core at 256 px); "device": the training frames copied once onto
    # every device, batches gathered there (dtda_jax/data/device_frames.py; for GPUs, where
    # the host's memory bandwidth would otherwise set the pace). Results are the same.
    d.frame_store = "decoded"

    # --- loop (the reported model's stage; other stages have their own step counts) --------
    c.train = tr = ml_collections.ConfigDict()
    tr.num_steps = 4000
    tr.log_every = 20
    tr.eval_every = 500
    tr.checkpoint_every = 500

    # --- evaluation -------------------------------------------------------------------------
    c.eval = e = ml_collections.ConfigDict()
    e.video_reduce = "mean"  # per-video score = mean of frame live probabilities
    e.threshold_policy = "target_eer"  # the community's "idealized" convention (paper tables)
    e.fixed_threshold = 0.5
    e.selection = "best_on_target"  # what every DG FAS repo reports; "last" is honest
    e.fpr_targets = (1e-2, 5e-3, 1e-3)
    return c


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; empty subtrees vanish."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def with_defaults(saved: dict, defaults: dict) -> dict:
    """`saved` plus every field it lacks from `defaults`, recursively."""
    merged = dict(defaults)
    for key, value in saved.items():
        nested = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        merged[key] = with_defaults(value, defaults[key]) if nested else value
    return merged


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config.{field}: {message}")


def require_settings(parent: ml_collections.ConfigDict, name: str, field: str, check, missing: str) -> None:
    """A settings section `parent[name]` (config field `field`) must be there (else `missing`)
    and pass `check`, whose ValueError becomes a ConfigError naming the field."""
    require(name in parent, field, missing)
    try:
        check(parent[name])
    except ValueError as err:
        require(False, field, str(err))


def validate_common(c: ml_collections.ConfigDict) -> None:
    """Checks the shared sections."""
    d = c.data
    require(len(d.source_domains) >= 1, "data.source_domains", "needs at least one domain.")
    require(len(set(d.source_domains)) == len(d.source_domains), "data.source_domains",
            f"has duplicates: {tuple(d.source_domains)}.")
    require(d.dataset in DATASET_KINDS, "data.dataset", f"must be one of {DATASET_KINDS}, got {d.dataset!r}.")
    if d.dataset == "real_fas":
        _validate_real_data(c)
    else:
        require(d.target_domain not in d.source_domains, "data.target_domain",
                f"{d.target_domain!r} is also a source domain; a cross-domain protocol holds it out.")
    require(d.samples_per_group >= 1, "data.samples_per_group", f"must be >= 1, got {d.samples_per_group}.")
    require(d.eval_batch_size >= 1, "data.eval_batch_size", f"must be >= 1, got {d.eval_batch_size}.")
    require(d.frame_store in FRAME_STORES, "data.frame_store",
            f"must be one of {FRAME_STORES}, got {d.frame_store!r}.")
    require(0.0 <= d.augment_crop_padding < 0.5, "data.augment_crop_padding",
            f"must be in [0, 0.5), got {d.augment_crop_padding}.")
    require(len(d.source_splits) > 0 and len(d.target_splits) > 0, "data.source_splits/target_splits",
            "must name at least one split each.")
    unknown = sorted(set(d.synthetic_overrides) - set(SYNTHETIC_COUNTS))
    require(not unknown, "data.synthetic_overrides", f"has no field {unknown}; its fields are {SYNTHETIC_COUNTS}.")
    require(c.train.num_steps >= 1, "train.num_steps", f"must be >= 1, got {c.train.num_steps}.")
    for name in ("log_every", "eval_every", "checkpoint_every"):
        require(c.train[name] >= 1, f"train.{name}", f"must be >= 1, got {c.train[name]}.")
    require(c.train.eval_every % c.train.checkpoint_every == 0, "train.eval_every",
            "must be a multiple of config.train.checkpoint_every (evaluation runs on checkpointed "
            f"states); got {c.train.eval_every} and {c.train.checkpoint_every}.")
    require(c.eval.threshold_policy in THRESHOLD_POLICIES, "eval.threshold_policy",
            f"must be one of {THRESHOLD_POLICIES}, got {c.eval.threshold_policy!r}.")
    require(c.eval.selection in SELECTION_POLICIES, "eval.selection",
            f"must be one of {SELECTION_POLICIES}, got {c.eval.selection!r}.")
    require(c.eval.video_reduce in VIDEO_REDUCTIONS, "eval.video_reduce",
            f"must be one of {VIDEO_REDUCTIONS}, got {c.eval.video_reduce!r}.")
    if c.eval.threshold_policy == "source_val_eer":
        require(len(d.source_val_splits) > 0, "data.source_val_splits",
                "threshold_policy='source_val_eer' needs held-out source splits.")


def _validate_real_data(c: ml_collections.ConfigDict) -> None:
    d, r = c.data, c.data.real
    names = (*d.source_domains, d.target_domain)
    unknown = [n for n in names if n not in REAL_DATASETS]
    require(not unknown, "data.source_domains/target_domain",
            f"unknown dataset(s) {unknown}; real datasets are {REAL_DATASETS}.")
    intra = d.target_domain in d.source_domains
    require(not intra or tuple(d.source_domains) == (d.target_domain,), "data.target_domain",
            f"{d.target_domain!r} is also a source domain; only a one-dataset protocol (CelebA-Spoof "
            "train -> test) may train and test on the same dataset.")
    require(("celeba_spoof" not in names) or intra, "data.source_domains",
            "CelebA-Spoof is an intra-dataset benchmark here (protocols p1 / p2_*); it is not mixed "
            "with the video datasets.")
    require(not (intra and c.eval.threshold_policy == "source_val_eer"), "eval.threshold_policy",
            "'source_val_eer' needs held-out source data, which an intra-dataset protocol does not "
            "have (its held-out split is the test set); use 'target_eer' or 'fixed'.")
    require(d.split_convention in SPLIT_CONVENTIONS, "data.split_convention",
            f"must be one of {SPLIT_CONVENTIONS}, got {d.split_convention!r}.")
    require(r.frame_policy in FRAME_POLICIES, "data.real.frame_policy",
            f"must be one of {FRAME_POLICIES}, got {r.frame_policy!r}.")
    require(r.frame_every_k >= 1 and r.frame_num_random >= 1, "data.real.frame_every_k/frame_num_random",
            "must be >= 1.")
    require(r.face_mode in FACE_MODES, "data.real.face_mode", f"must be one of {FACE_MODES}, got {r.face_mode!r}.")
    require(0 <= r.face_margin < 2, "data.real.face_margin", f"must be in [0, 2), got {r.face_margin}.")
    require(r.face_min_size >= 12 and r.face_detect_max_side >= 64 and r.face_max_fallback_offset >= 0,
            "data.real.face_min_size/face_detect_max_side/face_max_fallback_offset",
            "must be >= 12, >= 64 and >= 0.")
    require(r.celeba_spoof_protocol in CELEBA_SPOOF_PROTOCOLS, "data.real.celeba_spoof_protocol",
            f"must be one of {CELEBA_SPOOF_PROTOCOLS}, got {r.celeba_spoof_protocol!r}.")
