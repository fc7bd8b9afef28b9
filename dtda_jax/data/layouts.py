"""Scanning the official download trees of the face anti-spoofing datasets (no decoding).

Each scanner turns a dataset root into `MediaEntry`s: file, official split, live/spoof label,
attack type, subject, sensor and session, parsed from the official directory and file naming.
The naming below was checked against the datasets' own database packages and the public FAS
code that reads the raw downloads (SSDG's `generate_label.py`, FLIP's frame lists, Idiap's
`bob.db.replay`, `bob.db.msu_mfsd_mod`, the CelebA-Spoof repository's `client.py`); the
docstring of each scanner says what its layout is and what remains an assumption.

A video file under the scanned folders that does not follow the naming is not dropped silently:
the scanner logs one warning with the count and a few examples. Other files (eye-location .txt,
face-location files, protocol lists) are ignored without a word.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Callable


from dtda_jax.core.errors import UserError

DATASETS = ("oulu_npu", "casia_fasd", "replay_attack", "msu_mfsd", "celeba_spoof")

SPLITS = {
    "oulu_npu": ("train", "dev", "test"),
    "casia_fasd": ("train", "test"),
    "replay_attack": ("train", "dev", "test"),
    "msu_mfsd": ("train", "test"),
    "celeba_spoof": ("train", "test"),
}

# One vocabulary for all datasets. "print" is a flat printed photo (OULU, Replay-Attack, MSU
# printed_photo, CelebA-Spoof "photo"); "replay" is any screen (OULU displays, CASIA video replay,
# Replay-Attack mobile/highdef photo or video, MSU iPad/iPhone video). CelebA-Spoof's finer types
# keep their own names, including its screens (pc, pad, phone).
ATTACK_TYPES = ("live", "print", "warped_photo", "cut_photo", "replay", "poster", "a4", "face_mask",
                "upper_body_mask", "region_mask", "pc", "pad", "phone", "mask_3d")

CELEBA_SPOOF_PROTOCOLS = ("p1", "p2_low", "p2_middle", "p2_high")

VIDEO_EXTENSIONS = (".avi", ".mov", ".mp4")

# Where each dataset comes from, and the folder the manual dir must be (with the entries that
# mark it). Shown by tfds and by every layout error.
DOWNLOADS = {
    "oulu_npu": ("OULU-NPU", "https://sites.google.com/site/oulunpudatabase/",
                 "the folder holding Train_files/, Dev_files/ and Test_files/"),
    "casia_fasd": ("CASIA-FASD", "http://www.cbsr.ia.ac.cn/english/FASDB_Agreement/Agreement.pdf",
                   "the folder holding train_release/ and test_release/"),
    "replay_attack": ("Idiap Replay-Attack", "https://www.idiap.ch/en/scientific-research/data/replayattack",
                      "the folder holding train/, devel/ and test/"),
    "msu_mfsd": ("MSU-MFSD", "https://sites.google.com/site/huhanhomepage/datasetcode",
                 "the folder holding scene01/, train_sub_list.txt and test_sub_list.txt"),
    "celeba_spoof": ("CelebA-Spoof", "https://github.com/ZhangYuanhan-AI/CelebA-Spoof",
                     "the folder holding Data/ and metas/"),
}
_ROOT_MARKERS = {
    "oulu_npu": (("Train_files", "Dev_files", "Test_files"), "Train_files/, Dev_files/ or Test_files/"),
    "casia_fasd": (("train_release", "test_release"), "train_release/ or test_release/"),
    "replay_attack": (("train", "devel", "test"), "train/, devel/ or test/"),
    "msu_mfsd": (("scene01",), "scene01/"),
    "celeba_spoof": (("metas",), "Data/ and metas/"),
}


def manual_download_instructions(dataset: str) -> str:
    title, url, what = DOWNLOADS[dataset]
    return (f"{title} is distributed under a licence agreement: request it at {url}, unpack it, "
            f"and pass {what} as --manual_dir to tools/prepare_fas.py.")

_log = logging.getLogger(__name__)


class DatasetLayoutError(UserError, ValueError):
    """The root is missing or does not hold the dataset's official layout."""


@dataclasses.dataclass(frozen=True)
class MediaEntry:
    """One video or image of a dataset, with everything its path and label files say about it."""

    dataset: str
    path: str  # absolute
    key: str  # posix path relative to the dataset root; unique within the dataset
    split: str  # "train" | "dev" | "test"
    label: int  # 1 = live, 0 = spoof
    attack_type: str  # one of ATTACK_TYPES
    subject: int  # -1 if unknown
    sensor: str  # "" if unknown
    session: int  # -1 if unknown
    is_video: bool
    attributes: tuple[int, ...] = ()  # CelebA-Spoof's 40 CelebA face attributes
    bbox: tuple[float, float, float, float] | None = None  # CelebA-Spoof box x1, y1, x2, y2 (pixels)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def check_root(dataset: str, root: str) -> str:
    """The absolute root, or DatasetLayoutError naming the folder to pass instead."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"{dataset}: {root} does not exist or is not a directory. "
                                 f"{manual_download_instructions(dataset)}")
    markers, what = _ROOT_MARKERS[dataset]
    if any(os.path.exists(os.path.join(root, m)) for m in markers):
        return root
    hint = ""
    for child in sorted(os.listdir(root)):
        if any(os.path.exists(os.path.join(root, child, m)) for m in markers):
            hint = f" They are in {os.path.join(root, child)}: point there instead."
            break
    raise DatasetLayoutError(f"{dataset}: no {what} under {root}.{hint} "
                             f"{manual_download_instructions(dataset)}")


def _video_keys(root: str, folders: tuple[str, ...]) -> list[str]:
    """Posix paths, relative to root, of the video files anywhere under root/<folder>."""
    keys = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            keys.extend(f"{rel}/{name}" for name in sorted(filenames)
                        if name.lower().endswith(VIDEO_EXTENSIONS))
    return keys


def _present(dataset: str, root: str, split_dirs: dict[str, str]) -> tuple[str, ...]:
    """The split folders that exist; one warning line names those that do not."""
    present = tuple(d for d in split_dirs if os.path.isdir(os.path.join(root, d)))
    missing = [d + "/" for d in split_dirs if d not in present]
    if missing:
        _log.warning("%s: no %s under %s; those splits are left out", dataset, ", ".join(missing), root)
    return present


def _scan_videos(dataset: str, root: str, folders: tuple[str, ...],
                 parse: Callable[[str], dict | None]) -> list[MediaEntry]:
    """Entries for the videos under `folders` that `parse` accepts; the others are reported."""
    entries, ignored = [], []
    for key in _video_keys(root, folders):
        fields = parse(key)
        if fields is None:
            ignored.append(key)
        else:
            entries.append(MediaEntry(dataset=dataset, path=os.path.join(root, *key.split("/")),
                                      key=key, is_video=True, **fields))
    return _finish(dataset, root, entries, ignored, "video files that do not follow the official naming")


def _finish(dataset: str, root: str, entries: list[MediaEntry], ignored: list[str],
            why: str) -> list[MediaEntry]:
    if ignored:
        examples = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        _log.warning("%s: ignored %d %s under %s, e.g. %s", dataset, len(ignored), why, root, examples)
    if not entries:
        raise DatasetLayoutError(f"{dataset}: found no usable file under {root} (download: "
                                 f"{DOWNLOADS[dataset][1]})")
    return sorted(entries, key=lambda e: e.key)


# ---------------------------------------------------------------------------------------------
# OULU-NPU

_OULU_SPLITS = {"Train_files": "train", "Dev_files": "dev", "Test_files": "test"}
_OULU_USERS = {"train": range(1, 21), "dev": range(21, 36), "test": range(36, 56)}
_OULU_ATTACKS = {1: "live", 2: "print", 3: "print", 4: "replay", 5: "replay"}
_OULU_NAME = re.compile(r"(?P<dir>Train_files|Dev_files|Test_files)/"
                        r"(?P<phone>[1-6])_(?P<session>[1-3])_(?P<user>\d\d)_(?P<file>[1-5])\.avi")


def _parse_oulu(key: str) -> dict | None:
    m = _OULU_NAME.fullmatch(key)
    if m is None:
        return None
    split, user, file = _OULU_SPLITS[m["dir"]], int(m["user"]), int(m["file"])
    if user not in _OULU_USERS[split]:
        return None
    return dict(split=split, label=int(file == 1), attack_type=_OULU_ATTACKS[file], subject=user,
                sensor=f"phone{m['phone']}", session=int(m["session"]))


def scan_oulu_npu(root: str) -> list[MediaEntry]:
    """OULU-NPU: `{Train,Dev,Test}_files/<phone>_<session>_<user>_<file>.avi`.

    phone 1-6, session 1-3, user 01-55 (train 1-20, dev 21-35, test 36-55), file 1 = real,
    2/3 = print (printer 1/2), 4/5 = replay (display 1/2). SSDG labels by `file == 1` and splits by
    the folder; the user ranges are those of the OULU-NPU protocols (FAS-SGTD's split tables).
    The `.txt` eye-location file beside each video and a `Protocols/` folder are ignored.
    """
    root = check_root("oulu_npu", root)
    return _scan_videos("oulu_npu", root, _present("oulu_npu", root, _OULU_SPLITS), _parse_oulu)


# ---------------------------------------------------------------------------------------------
# CASIA-FASD

_CASIA_SPLITS = {"train_release": "train", "test_release": "test"}
_CASIA_SUBJECTS = {"train": 20, "test": 30}
# Video name -> (attack type, capture quality).
_CASIA_VIDEOS = {
    "1": ("live", "low"), "2": ("live", "normal"), "HR_1": ("live", "high"),
    "3": ("warped_photo", "low"), "4": ("warped_photo", "normal"), "HR_2": ("warped_photo", "high"),
    "5": ("cut_photo", "low"), "6": ("cut_photo", "normal"), "HR_3": ("cut_photo", "high"),
    "7": ("replay", "low"), "8": ("replay", "normal"), "HR_4": ("replay", "high"),
}
_CASIA_NAME = re.compile(r"(?P<dir>train_release|test_release)/(?P<subject>[1-9]\d?)/"
                         r"(?P<video>[1-8]|HR_[1-4])\.avi")


def _parse_casia(key: str) -> dict | None:
    m = _CASIA_NAME.fullmatch(key)
    if m is None:
        return None
    split, folder = _CASIA_SPLITS[m["dir"]], int(m["subject"])
    if folder > _CASIA_SUBJECTS[split]:
        return None
    attack_type, quality = _CASIA_VIDEOS[m["video"]]
    subject = folder if split == "train" else _CASIA_SUBJECTS["train"] + folder
    return dict(split=split, label=int(attack_type == "live"), attack_type=attack_type,
                subject=subject, sensor=quality, session=-1)


def scan_casia_fasd(root: str) -> list[MediaEntry]:
    """CASIA-FASD: `train_release/<1..20>/` and `test_release/<1..30>/`, each holding
    `1..8.avi` and `HR_1..HR_4.avi`.

    1, 2, HR_1 real (SSDG's rule); 3, 4, HR_2 warped photo; 5, 6, HR_3 cut photo; 7, 8, HR_4
    video replay; quality low (1, 3, 5, 7), normal (2, 4, 6, 8), high (HR_*), stored as `sensor`.
    The 50 people are different in the two folders, so test folder n is subject 20 + n: subject
    ids are unique within the dataset.
    """
    root = check_root("casia_fasd", root)
    return _scan_videos("casia_fasd", root, _present("casia_fasd", root, _CASIA_SPLITS), _parse_casia)


# ---------------------------------------------------------------------------------------------
# Idiap Replay-Attack

_REPLAY_SPLITS = {"train": "train", "devel": "dev", "test": "test"}
_REPLAY_REAL = re.compile(r"(?P<dir>train|devel|test)/real/client(?P<client>\d{3})_session(?P<session>\d\d)"
                          r"_webcam_authenticate_(?:adverse|controlled)_\d\.mov")
_REPLAY_ATTACK = re.compile(r"(?P<dir>train|devel|test)/attack/(?:fixed|hand)/attack_(?P<device>highdef|mobile|print)"
                            r"_client(?P<client>\d{3})_session(?P<session>\d\d)_(?:highdef|mobile)_(?:photo|video)"
                            r"_(?:adverse|controlled)\.mov")


def _parse_replay(key: str) -> dict | None:
    if m := _REPLAY_REAL.fullmatch(key):
        attack_type = "live"
    elif m := _REPLAY_ATTACK.fullmatch(key):
        attack_type = "print" if m["device"] == "print" else "replay"
    else:
        return None
    return dict(split=_REPLAY_SPLITS[m["dir"]], label=int(attack_type == "live"), attack_type=attack_type,
                subject=int(m["client"]), sensor="webcam", session=int(m["session"]))


def scan_replay_attack(root: str) -> list[MediaEntry]:
    """Idiap Replay-Attack: `{train,devel,test}/real/*.mov` and `.../attack/{fixed,hand}/*.mov`.

    Real: `client001_session01_webcam_authenticate_{adverse,controlled}_{1,2}.mov`; attacks:
    `attack_{print,mobile,highdef}_client001_session01_{highdef,mobile}_{photo,video}_{light}.mov`
    (`bob.db.replay`'s parser). Every video is recorded by the laptop webcam (`sensor`); print is a
    printed photo, mobile/highdef a phone/iPad screen showing a photo or video ("replay"). The
    `enroll/` folder (face-recognition enrolment videos) and face-location files are not scanned.
    """
    root = check_root("replay_attack", root)
    return _scan_videos("replay_attack", root, _present("replay_attack", root, _REPLAY_SPLITS), _parse_replay)


# ---------------------------------------------------------------------------------------------
# MSU-MFSD

_MSU_LISTS = {"train": "train_sub_list.txt", "test": "test_sub_list.txt"}
_MSU_NAME = re.compile(r"scene01/(?P<kind>real|attack)/(?P=kind)_client(?P<client>\d{3})_(?P<sensor>android|laptop)"
                       r"_SD_(?:(?P<instrument>ipad_video|iphone_video|printed_photo)_)?scene01\.(?:mp4|mov)")


def _read_msu_lists(root: str) -> dict[int, str]:
    """Client number -> split, from the two official subject lists."""
    split_of = {}
    for split, name in _MSU_LISTS.items():
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise DatasetLayoutError(f"msu_mfsd: {path} is missing; it ships with MSU-MFSD next to scene01/ "
                                     f"and defines the official split (download: {DOWNLOADS['msu_mfsd'][1]})")
        with open(path) as f:
            for line in f:
                if line.strip():
                    split_of[int(line.strip())] = split
    return split_of


def scan_msu_mfsd(root: str) -> list[MediaEntry]:
    """MSU-MFSD: `scene01/real/real_client002_{android,laptop}_SD_scene01.{mp4,mov}` and
    `scene01/attack/attack_client002_{android,laptop}_SD_{ipad_video,iphone_video,printed_photo}_scene01.*`.

    The split is the client's line in `train_sub_list.txt` / `test_sub_list.txt` at the root
    (two-digit client numbers, 15 train and 20 test clients in the public release); a video of a
    client in neither list is reported and left out. `sensor` is the recording device (android
    phone, laptop webcam). Some android real videos are stored upside down (bob.db.msu_mfsd_mod
    rotates six of them); the scanner does not touch pixels, so the face detector has to cope.
    """
    root = check_root("msu_mfsd", root)
    split_of = _read_msu_lists(root)

    def parse(key: str) -> dict | None:
        m = _MSU_NAME.fullmatch(key)
        if m is None or (m["kind"] == "attack") != bool(m["instrument"]) or int(m["client"]) not in split_of:
            return None
        instrument = m["instrument"]
        attack_type = "live" if instrument is None else "print" if instrument == "printed_photo" else "replay"
        return dict(split=split_of[int(m["client"])], label=int(attack_type == "live"),
                    attack_type=attack_type, subject=int(m["client"]), sensor=m["sensor"], session=-1)

    return _scan_videos("msu_mfsd", root, ("scene01",), parse)


# ---------------------------------------------------------------------------------------------
# CelebA-Spoof

_CELEBA_META_DIRS = {
    "p1": "intra_test",
    "p2_low": "protocol2/test_on_low_quality_device",
    "p2_middle": "protocol2/test_on_middle_quality_device",
    "p2_high": "protocol2/test_on_high_quality_device",
}
# Index 40 of a label vector; 0 means "not a spoof".
_CELEBA_SPOOF_TYPES = {1: "print", 2: "poster", 3: "a4", 4: "face_mask", 5: "upper_body_mask",
                       6: "region_mask", 7: "pc", 8: "pad", 9: "phone", 10: "mask_3d"}
_CELEBA_KEY = re.compile(r"Data/(?:train|test)/(?P<subject>\d+)/(?P<folder>live|spoof)/[^/]+\.(?:jpg|png)",
                         re.IGNORECASE)
_CELEBA_BOX_FRAME = 224.0  # the _BB.txt boxes are given in a 224x224 frame


def _celeba_box(image_path: str, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The official box in image pixels, clipped to the image; None if there is no usable one."""
    try:
        with open(os.path.splitext(image_path)[0] + "_BB.txt") as f:
            x, y, w, h = (float(v) for v in f.readline().split()[:4])
    except (OSError, ValueError):
        return None
    sx, sy = width / _CELEBA_BOX_FRAME, height / _CELEBA_BOX_FRAME
    x1, y1 = max(0.0, x * sx), max(0.0, y * sy)
    x2, y2 = min(float(width), (x + w) * sx), min(float(height), (y + h) * sy)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _celeba_entry(root: str, split: str, key: str, vector) -> tuple[MediaEntry | None, bool]:
    """The entry for one label-file row (None if unusable) and whether its folder contradicts its label."""
    m = _CELEBA_KEY.fullmatch(key)
    if (m is None or not isinstance(vector, list) or len(vector) != 44
            or not all(isinstance(v, int) for v in vector) or vector[43] not in (0, 1)):
        return None, False
    live = vector[43] == 0
    attack_type = "live" if live else _CELEBA_SPOOF_TYPES.get(vector[40])
    if attack_type is None:
        return None, False
    path = os.path.join(root, *key.split("/"))
    from PIL import Image, UnidentifiedImageError  # here: predict --bundle needs no Pillow

    try:
        with Image.open(path) as image:
            size = image.size
    except (OSError, UnidentifiedImageError):
        return None, False
    entry = MediaEntry(dataset="celeba_spoof", path=path, key=key, split=split, label=int(live),
                       attack_type=attack_type, subject=int(m["subject"]), sensor="", session=-1,
                       is_video=False, attributes=tuple(vector[:40]), bbox=_celeba_box(path, *size))
    return entry, (m["folder"].lower() == "live") != live


def scan_celeba_spoof(root: str, protocol: str = "p1") -> list[MediaEntry]:
    """CelebA-Spoof: the images listed in the protocol's `train_label.json` and `test_label.json`.

    Root holds `Data/{train,test}/<subject>/{live,spoof}/<id>.{jpg,png}` and `metas/`. The lists:
    p1 = `metas/intra_test/` (what the official intra-dataset benchmark code reads), p2_* =
    `metas/protocol2/test_on_{low,middle,high}_quality_device/`. Each maps an image path relative to
    root to 44 ints: 0-39 the CelebA attributes, 40 the spoof type (0 live, 1 photo, 2 poster, 3 A4,
    4 face mask, 5 upper-body mask, 6 region mask, 7 PC, 8 pad, 9 phone, 10 3D mask), 41
    illumination, 42 environment, 43 the label with 0 = LIVE and 1 = spoof (the official evaluation
    counts label 0 as live). `split` is the list the image is in, not the folder in its path (the
    protocol 2 lists regroup images by capture device).

    The label file is authoritative: rows whose live/spoof folder contradicts index 43 are kept and
    counted in a warning. Rows that cannot be used (bad path or vector, spoof type 0 on a spoof,
    image missing or unreadable) are reported and left out. `bbox` is the `<id>_BB.txt` box
    (`x y w h score` in a 224x224 frame, scaled to the image size read from the image header, as
    the official `client.py` does), or None without a box file. The `.txt` twins of the json lists
    are not read. Assumption: the protocol 2 lists have the same json format (seen in public code
    reading them, not in the official repository).
    """
    if protocol not in CELEBA_SPOOF_PROTOCOLS:
        raise ValueError(f"unknown CelebA-Spoof protocol {protocol!r}; expected one of {CELEBA_SPOOF_PROTOCOLS}")
    root = check_root("celeba_spoof", root)
    entries, ignored, contradictions = [], [], 0
    for split in SPLITS["celeba_spoof"]:
        list_path = os.path.join(root, "metas", *_CELEBA_META_DIRS[protocol].split("/"), f"{split}_label.json")
        if not os.path.isfile(list_path):
            raise DatasetLayoutError(f"celeba_spoof: {list_path} is missing; protocol {protocol} needs it "
                                     f"(download: {DOWNLOADS['celeba_spoof'][1]})")
        with open(list_path) as f:
            rows = json.load(f)
        for key, vector in rows.items():
            entry, contradicts = _celeba_entry(root, split, key, vector)
            if entry is None:
                ignored.append(key)
            else:
                entries.append(entry)
                contradictions += contradicts
    if contradictions:
        _log.warning("celeba_spoof: %d listed images sit in a live/spoof folder that contradicts their label "
                     "(index 43); the label is used", contradictions)
    return _finish("celeba_spoof", root, entries, ignored, "label-file rows that cannot be used")


# ---------------------------------------------------------------------------------------------

_SCANNERS = {
    "oulu_npu": scan_oulu_npu,
    "casia_fasd": scan_casia_fasd,
    "replay_attack": scan_replay_attack,
    "msu_mfsd": scan_msu_mfsd,
    "celeba_spoof": scan_celeba_spoof,
}


def scan(dataset: str, root: str, **kwargs) -> list[MediaEntry]:
    """The entries of `dataset` under `root`, sorted by key (`protocol=` for CelebA-Spoof)."""
    if dataset not in _SCANNERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return _SCANNERS[dataset](root, **kwargs)
