"""Small fake copies of the face anti-spoofing downloads, with their real directory and file naming.

Every video shows a real face photo (`tests/real_photos.py`) moving slightly over a background;
spoofs show the same face through artefacts of their attack type (print: colour reduction,
halftone, blur, paper texture and a white border; warped photo: bent print; cut photo: print with
eye holes; replay: gamma, sub-pixel grid, moire, glare, black bezel; masks: a cut-out print
worn over a head). Everything is seeded by the file's key, so a tree is identical on every run.

The builders write each dataset's own container: MJPG .avi (OULU-NPU, CASIA-FASD), mp4v .mov
(Replay-Attack, MSU laptop) and mp4v .mp4 (MSU android); CelebA-Spoof gets .jpg live and .png
spoof images with `_BB.txt` boxes and the json label lists of protocols 1 and 2.

Edge cases, by key (posix path relative to the root): `corrupt=` writes garbage bytes instead
of the file, `no_face_frames={key: frames}` leaves those frames without a face, `no_face_video=`
makes a video (or image) without any face.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Collection, Mapping

import cv2
import numpy as np

from tests import real_photos

FRAME_WIDTH, FRAME_HEIGHT, FPS = 240, 180, 25
NUM_FRAMES = 10

# Head-and-shoulders crop (top, bottom, left, right) of each photo, checked by eye.
_CROPS = {
    "astronaut": (10, 240, 120, 320),
    "person_a_2": (40, 620, 150, 610),
    "person_b_1": (20, 560, 160, 590),
    "impostor_1": (60, 520, 170, 510),
    "impostor_2": (60, 620, 150, 580),
    "person_b_2": (20, 600, 150, 600),
    "gauss": (170, 720, 240, 700),
    "newton": (20, 330, 230, 520),
    "person_a_1": (10, 170, 30, 175),
}
_FOURCC = {".avi": "MJPG", ".mov": "mp4v", ".mp4": "mp4v"}
_SENSOR_NOISE = {"low": 5.0, "normal": 3.0, "high": 1.5}


@functools.lru_cache(maxsize=None)
def face_photos() -> tuple[np.ndarray, ...]:
    """The cropped face photos, one per fake subject (subjects beyond 9 reuse them in turn)."""
    photos = {"astronaut": real_photos.astronaut(), "newton": real_photos.newton(),
              "gauss": real_photos.gauss(), **real_photos.portraits()}
    return tuple(np.ascontiguousarray(photos[name][t:b, l:r]) for name, (t, b, l, r) in _CROPS.items())


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


# ---------------------------------------------------------------------------------------------
# Rendering


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A room-like background: a two-colour gradient with a few soft blocks (walls, furniture)."""
    top, bottom = rng.uniform(60, 220, 3), rng.uniform(40, 200, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).copy()
    for _ in range(3):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 8, width // 3), rng.integers(height // 8, height // 2)
        image[y:y + h, x:x + w] = 0.5 * image[y:y + h, x:x + w] + 0.5 * rng.uniform(30, 230, 3)
    return cv2.GaussianBlur(image.astype(np.float32), (0, 0), 2.0)


def _print_look(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink on paper: fewer colours, halftone dots, blur, paper grain, lifted blacks."""
    image = np.round(face / 51.0) * 51.0
    yy, xx = np.mgrid[:face.shape[0], :face.shape[1]]
    image *= 1.0 - 0.12 * ((np.sin(xx * 2.1) * np.sin(yy * 2.1)) > 0.3)[..., None]
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8)
    grain = cv2.resize(rng.normal(0, 8, (face.shape[0] // 4 + 1, face.shape[1] // 4 + 1)).astype(np.float32),
                       (face.shape[1], face.shape[0]))
    return 35.0 + 0.78 * image + grain[..., None]


def _screen_look(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A display: gamma, RGB sub-pixel stripes, moire and a glare spot."""
    image = 255.0 * (face / 255.0) ** 0.8
    h, w = face.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    stripes = np.stack([(xx % 3 == c) for c in range(3)], axis=-1)
    image = image * (0.82 + 0.18 * stripes)
    angle = rng.uniform(0.2, 0.6)
    image += 14.0 * np.sin(0.9 * (xx * np.cos(angle) + yy * np.sin(angle)))[..., None]
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.5) * h
    image += 70.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.15 * w) ** 2))[..., None]
    return image * np.array([0.95, 0.98, 1.06])


def _warp(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photo bent around a vertical axis, darker where it turns away from the light."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    bend = rng.uniform(0.06, 0.12) * w
    map_x = xx + bend * np.sin(np.pi * xx / w) * (yy / h - 0.5)
    warped = cv2.remap(image.astype(np.float32), map_x, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped * (0.75 + 0.25 * np.sin(np.pi * xx / w))[..., None]


def _cut_eyes(image: np.ndarray) -> np.ndarray:
    """Holes where the eyes are, with the attacker's own (dark) eyes behind them."""
    h, w = image.shape[:2]
    out = image.copy()
    for cx in (0.38, 0.62):
        cv2.ellipse(out, (int(cx * w), int(0.4 * h)), (int(0.08 * w), int(0.04 * h)), 0, 0, 360,
                    (60.0, 42.0, 38.0), -1)
    return out


def _border(image: np.ndarray, width: int, colour: float) -> np.ndarray:
    return cv2.copyMakeBorder(image.astype(np.float32), width, width, width, width, cv2.BORDER_CONSTANT,
                              value=(colour, colour, colour))


def _medium(face: np.ndarray, attack_type: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The face as the attack presents it, and its alpha (1 = opaque), before placement."""
    face = face.astype(np.float32)
    h, w = face.shape[:2]
    if attack_type in ("replay", "pc", "pad", "phone"):
        bezel = {"replay": 8, "pc": 12, "pad": 9, "phone": 6}[attack_type]
        image = _border(_screen_look(face, rng), bezel, 15.0)
    elif attack_type in ("face_mask", "mask_3d"):
        image = _print_look(face, rng) if attack_type == "face_mask" else 0.7 * face + 0.3 * face.mean()
        alpha = np.zeros((h, w), np.float32)
        cv2.ellipse(alpha, (w // 2, int(0.47 * h)), (int(0.33 * w), int(0.4 * h)), 0, 0, 360, 1.0, -1)
        return image, alpha
    else:
        image = _print_look(face, rng)
        if attack_type == "warped_photo":
            image = _warp(image, rng)
        elif attack_type == "cut_photo":
            image = _cut_eyes(image)
        elif attack_type == "region_mask":
            image[int(0.55 * h):] = face[int(0.55 * h):]  # only the upper face is printed
        margin = {"a4": 14, "poster": 2, "region_mask": 0, "upper_body_mask": 0}.get(attack_type, 6)
        image = _border(image, margin, 235.0)
    return image, np.ones(image.shape[:2], np.float32)


def _live_alpha(h: int, w: int) -> np.ndarray:
    """A soft ellipse, so a live face blends into the room instead of showing its photo's edges."""
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (int(0.46 * w), int(0.49 * h)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(alpha, (0, 0), 0.05 * w)


def _paste(canvas: np.ndarray, image: np.ndarray, alpha: np.ndarray, cx: float, cy: float) -> None:
    """Alpha-blends `image` centred at (cx, cy) into `canvas`, clipped to the canvas."""
    h, w = image.shape[:2]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, canvas.shape[1]), min(y0 + h, canvas.shape[0])
    if cx1 <= cx0 or cy1 <= cy0:
        return
    img = image[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
    canvas[cy0:cy1, cx0:cx1] = a * img + (1 - a) * canvas[cy0:cy1, cx0:cx1]


class _Scene:
    """One recording: a subject's face (live or through an attack) moving over a background."""

    def __init__(self, key: str, subject: int, attack_type: str, quality: str, width: int, height: int):
        self.rng = _rng(key)
        self.width, self.height = width, height
        self.background = _background(self.rng, width, height)
        face = face_photos()[subject % len(face_photos())]
        face_h = int(0.7 * height)
        face_w = int(face_h * face.shape[1] / face.shape[0])
        face = cv2.resize(face, (face_w, face_h), interpolation=cv2.INTER_AREA)
        self.live = attack_type == "live"
        if self.live:
            self.image, self.alpha = face.astype(np.float32), _live_alpha(face_h, face_w)
        else:
            self.image, self.alpha = _medium(face, attack_type, self.rng)
        if attack_type in ("face_mask", "mask_3d", "upper_body_mask", "region_mask"):
            head = np.zeros(self.background.shape[:2], np.float32)  # the wearer's hair around the mask
            cv2.ellipse(head, (width // 2, height // 2), (int(0.36 * face_h), int(0.55 * face_h)), 0, 0, 360, 1.0, -1)
            self.background = self.background * (1 - 0.8 * head[..., None]) + 0.8 * head[..., None] * 35.0
        self.phase = self.rng.uniform(0, 2 * np.pi, 2)
        # Sensor noise: windows of one larger field, cheaper than fresh noise for every frame.
        self.noise = _SENSOR_NOISE[quality] * self.rng.standard_normal((height + 8, width + 8, 3), dtype=np.float32)

    def face_box(self, t: int = 0) -> tuple[float, float, float, float]:
        """Where the face is in frame t: x, y, w, h in pixels (the inner part of the photo crop)."""
        cx, cy = self._centre(t)
        h, w = self.image.shape[:2]
        return cx - 0.35 * w, cy - 0.4 * h, 0.7 * w, 0.8 * h

    def _centre(self, t: int) -> tuple[float, float]:
        return (self.width / 2 + 0.06 * self.width * np.sin(0.5 * t + self.phase[0]),
                self.height / 2 + 0.04 * self.height * np.sin(0.4 * t + self.phase[1]))

    def frame(self, t: int, with_face: bool = True) -> np.ndarray:
        canvas = self.background.copy()
        if with_face:
            layer = self.image
            if not self.live:  # screens flicker and prints catch the light differently as they move
                layer = layer * (1.0 + 0.04 * np.sin(1.3 * t + self.phase[0]))
            _paste(canvas, layer, self.alpha, *self._centre(t))
        dy, dx = self.rng.integers(0, 9, 2)
        canvas += self.noise[dy:dy + self.height, dx:dx + self.width]
        return np.clip(canvas, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Writing


def _check_keys(written: Collection[str], **requested: Collection[str]) -> None:
    for name, keys in requested.items():
        unknown = sorted(set(keys) - set(written))
        if unknown:
            raise ValueError(f"{name}: {unknown} are not files of this fake tree; it has e.g. {sorted(written)[:3]}")


def _write_video(path: str, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*_FOURCC[os.path.splitext(path)[1]]), FPS,
                             (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _write_garbage(path: str, key: str) -> None:
    with open(path, "wb") as f:
        f.write(_rng(key).bytes(4096))


def _write_videos(root: str, videos: list[tuple[str, int, str, str]], num_frames: int,
                  corrupt: Collection[str], no_face_frames: Mapping[str, Collection[int]],
                  no_face_video: Collection[str]) -> str:
    """Writes (key, subject, attack type, capture quality) videos under root."""
    no_face_frames = no_face_frames or {}
    _check_keys([v[0] for v in videos], corrupt=corrupt, no_face_frames=no_face_frames, no_face_video=no_face_video)
    for key, subject, attack_type, quality in videos:
        path = os.path.join(root, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if key in corrupt:
            _write_garbage(path, key)
            continue
        scene = _Scene(key, subject, attack_type, quality, FRAME_WIDTH, FRAME_HEIGHT)
        hidden = set(range(num_frames)) if key in no_face_video else set(no_face_frames.get(key, ()))
        _write_video(path, [scene.frame(t, with_face=t not in hidden) for t in range(num_frames)])
    return root


def _write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------
# The five datasets


def make_oulu_npu(root: str, *, users: Mapping[str, Collection[int]] | None = None,
                  phones: Collection[int] = (1, 2), sessions: Collection[int] = (1,),
                  files: Collection[int] = (1, 2, 3, 4, 5), num_frames: int = NUM_FRAMES,
                  corrupt: Collection[str] = (), no_face_frames: Mapping[str, Collection[int]] | None = None,
                  no_face_video: Collection[str] = ()) -> str:
    """`{Train,Dev,Test}_files/<phone>_<session>_<user>_<file>.avi` plus each video's eye-location
    `.txt` and a `Protocols/` folder, as in the download. Default: 2 users per split, 60 videos."""
    users = users or {"Train_files": (1, 2), "Dev_files": (21, 22), "Test_files": (36, 37)}
    videos = []
    for folder, ids in users.items():
        for phone in phones:
            for session in sessions:
                for user in ids:
                    for file in files:
                        attack = {1: "live", 2: "print", 3: "print", 4: "replay", 5: "replay"}[file]
                        videos.append((f"{folder}/{phone}_{session}_{user:02d}_{file}.avi", user, attack,
                                       "high" if phone in (1, 2) else "normal"))
    _write_videos(root, videos, num_frames, corrupt, no_face_frames, no_face_video)
    for key, *_ in videos:  # frame number, left eye x y, right eye x y
        _write_text(os.path.join(root, key[:-4] + ".txt"),
                    "".join(f"{t}, 100, 80, 140, 80\n" for t in range(num_frames)))
    _write_text(os.path.join(root, "Protocols", "Protocol_1", "Train.txt"), "+1,1_1_01_1\n-1,1_1_01_2\n")
    return root


_CASIA_ATTACKS = {"1": "live", "2": "live", "HR_1": "live", "3": "warped_photo", "4": "warped_photo",
                  "HR_2": "warped_photo", "5": "cut_photo", "6": "cut_photo", "HR_3": "cut_photo",
                  "7": "replay", "8": "replay", "HR_4": "replay"}


def make_casia_fasd(root: str, *, subjects: Mapping[str, Collection[int]] | None = None,
                    videos: Collection[str] = tuple(_CASIA_ATTACKS), num_frames: int = NUM_FRAMES,
                    corrupt: Collection[str] = (), no_face_frames: Mapping[str, Collection[int]] | None = None,
                    no_face_video: Collection[str] = ()) -> str:
    """`{train,test}_release/<subject>/{1..8,HR_1..HR_4}.avi`. Default: 2 subjects per split, 48 videos."""
    subjects = subjects or {"train_release": (1, 2), "test_release": (1, 2)}
    specs = []
    for folder, ids in subjects.items():
        for subject in ids:
            face = subject if folder == "train_release" else 20 + subject
            for name in videos:
                quality = "high" if name.startswith("HR") else "low" if int(name) % 2 else "normal"
                specs.append((f"{folder}/{subject}/{name}.avi", face, _CASIA_ATTACKS[name], quality))
    return _write_videos(root, specs, num_frames, corrupt, no_face_frames, no_face_video)


# (support, attack device, sample device, sample type, light) of the default Replay-Attack attacks.
_REPLAY_ATTACKS = (("fixed", "print", "highdef", "photo", "adverse"),
                   ("hand", "mobile", "mobile", "video", "controlled"),
                   ("fixed", "highdef", "highdef", "photo", "adverse"))


def make_replay_attack(root: str, *, clients: Mapping[str, Collection[int]] | None = None,
                       real_takes: Collection[tuple[str, int]] = (("adverse", 1), ("controlled", 1)),
                       attacks: Collection[tuple[str, str, str, str, str]] = _REPLAY_ATTACKS,
                       num_frames: int = NUM_FRAMES, corrupt: Collection[str] = (),
                       no_face_frames: Mapping[str, Collection[int]] | None = None,
                       no_face_video: Collection[str] = ()) -> str:
    """`{train,devel,test}/real/*.mov`, `.../attack/{fixed,hand}/*.mov` and an unused `enroll/`.
    Default: 2 clients per split, 2 real + 3 attack videos each, 30 videos (+1 enrolment)."""
    clients = clients or {"train": (1, 2), "devel": (3, 5), "test": (9, 11)}
    specs = []
    for folder, ids in clients.items():
        for client in ids:
            stem = f"client{client:03d}_session01"
            for light, take in real_takes:
                specs.append((f"{folder}/real/{stem}_webcam_authenticate_{light}_{take}.mov", client, "live", "normal"))
            for support, device, sample_device, sample_type, light in attacks:
                attack = "print" if device == "print" else "replay"
                name = f"attack_{device}_{stem}_{sample_device}_{sample_type}_{light}.mov"
                specs.append((f"{folder}/attack/{support}/{name}", client, attack, "normal"))
    specs.append(("enroll/client001_session01_webcam_enroll_controlled.mov", 1, "live", "normal"))
    return _write_videos(root, specs, num_frames, corrupt, no_face_frames, no_face_video)


# The official MSU-MFSD subject lists (35 public clients).
MSU_TRAIN_CLIENTS = (2, 3, 5, 6, 7, 8, 9, 11, 12, 21, 22, 34, 53, 54, 55)
MSU_TEST_CLIENTS = (1, 13, 14, 23, 24, 26, 28, 29, 30, 32, 33, 35, 36, 37, 39, 42, 48, 49, 50, 51)


def make_msu_mfsd(root: str, *, clients: Collection[int] = (2, 3, 1, 13), num_frames: int = NUM_FRAMES,
                  corrupt: Collection[str] = (), no_face_frames: Mapping[str, Collection[int]] | None = None,
                  no_face_video: Collection[str] = ()) -> str:
    """`scene01/{real,attack}/*` (android .mp4, laptop .mov) and the two subject lists at the
    root. Default: clients 2, 3 (train) and 1, 13 (test), 8 videos each, 32 videos."""
    specs = []
    for client in clients:
        for sensor, ext in (("android", "mp4"), ("laptop", "mov")):
            quality = "normal" if sensor == "android" else "low"
            specs.append((f"scene01/real/real_client{client:03d}_{sensor}_SD_scene01.{ext}", client, "live", quality))
            for instrument in ("ipad_video", "iphone_video", "printed_photo"):
                attack = "print" if instrument == "printed_photo" else "replay"
                specs.append((f"scene01/attack/attack_client{client:03d}_{sensor}_SD_{instrument}_scene01.{ext}",
                              client, attack, quality))
    _write_videos(root, specs, num_frames, corrupt, no_face_frames, no_face_video)
    _write_text(os.path.join(root, "train_sub_list.txt"), "\n".join(f"{c:02d}" for c in MSU_TRAIN_CLIENTS))
    _write_text(os.path.join(root, "test_sub_list.txt"), "\n".join(f"{c:02d}" for c in MSU_TEST_CLIENTS))
    return root


# CelebA-Spoof spoof type codes (label index 40) and the attack types they stand for.
CELEBA_SPOOF_CODES = {1: "print", 2: "poster", 3: "a4", 4: "face_mask", 5: "upper_body_mask",
                      6: "region_mask", 7: "pc", 8: "pad", 9: "phone", 10: "mask_3d"}
_QUALITIES = ("low", "middle", "high")


def make_celeba_spoof(root: str, *, subjects: Mapping[str, Collection[int]] | None = None,
                      images_per_subject: int = 4, corrupt: Collection[str] = (), no_face: Collection[str] = (),
                      missing: Collection[str] = (), no_box: Collection[str] = ()) -> str:
    """`Data/{train,test}/<subject>/{live,spoof}/<id>.{jpg,png}` with `<id>_BB.txt`, and the label
    lists `metas/intra_test/{train,test}_label.{json,txt}` (protocol 1) and
    `metas/protocol2/test_on_{low,middle,high}_quality_device/{train,test}_label.json`.

    Each subject gets one live .jpg and `images_per_subject - 1` spoof .png images whose spoof
    types cycle through all ten codes. Label vectors: 40 attributes (live only), spoof type,
    illumination, environment, label (0 live, 1 spoof). Protocol 2 (fake): a spoof image's capture
    device quality is its index modulo 3; test_on_X lists X-quality spoofs plus the protocol 1 test
    live images, train lists the rest, so its train list also holds images from `Data/test`.
    `missing` keys are listed but not written, `no_box` ones have no `_BB.txt`.
    """
    subjects = subjects or {"train": (101, 102, 103), "test": (201, 202)}
    rows: dict[str, dict[str, list[int]]] = {"train": {}, "test": {}}
    quality_of: dict[str, str] = {}
    image_id = 0
    all_subjects = [s for ids in subjects.values() for s in ids]
    for split, ids in subjects.items():
        for subject in ids:
            for i in range(images_per_subject):
                image_id += 1
                live = i == 0
                code = 0 if live else (image_id % 10) + 1
                folder, ext = ("live", "jpg") if live else ("spoof", "png")
                key = f"Data/{split}/{subject}/{folder}/{image_id:06d}.{ext}"
                rng = _rng(key)
                attributes = [int(a) for a in rng.integers(0, 2, 40)] if live else [0] * 40
                light = [0, 0] if live else [int(rng.integers(1, 5)), int(rng.integers(1, 3))]
                rows[split][key] = attributes + [code, *light, 0 if live else 1]
                if not live:
                    quality_of[key] = _QUALITIES[image_id % 3]
                if key not in missing:
                    size = (178, 218) if live else ((320, 240) if image_id % 2 else (240, 320))
                    attack = "live" if live else CELEBA_SPOOF_CODES[code]
                    _write_image(root, key, all_subjects.index(subject), attack, size, corrupt, no_face, no_box)
    every = {**rows["train"], **rows["test"]}
    _check_keys(every, corrupt=corrupt, no_face=no_face, missing=missing, no_box=no_box)
    for split, listed in rows.items():
        _write_text(os.path.join(root, "metas", "intra_test", f"{split}_label.json"), json.dumps(listed))
        _write_text(os.path.join(root, "metas", "intra_test", f"{split}_label.txt"),
                    "".join(f"{k} {v[43]}\n" for k, v in listed.items()))
    for quality in _QUALITIES:
        test = {k: v for k, v in every.items()
                if quality_of.get(k) == quality or (k in rows["test"] and k not in quality_of)}
        train = {k: v for k, v in every.items() if k not in test}
        for split, listed in (("train", train), ("test", test)):
            _write_text(os.path.join(root, "metas", "protocol2", f"test_on_{quality}_quality_device",
                                     f"{split}_label.json"), json.dumps(listed))
    return root


def _write_image(root: str, key: str, subject: int, attack_type: str, size: tuple[int, int],
                 corrupt: Collection[str], no_face: Collection[str], no_box: Collection[str]) -> None:
    path = os.path.join(root, *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if key in corrupt:
        _write_garbage(path, key)
        return
    width, height = size
    scene = _Scene(key, subject, attack_type, "high", width, height)
    cv2.imwrite(path, cv2.cvtColor(scene.frame(0, with_face=key not in no_face), cv2.COLOR_RGB2BGR))
    if key not in no_box:
        x, y, w, h = scene.face_box()
        scale_x, scale_y = 224.0 / width, 224.0 / height
        _write_text(os.path.splitext(path)[0] + "_BB.txt",
                    f"{x * scale_x:.0f} {y * scale_y:.0f} {w * scale_x:.0f} {h * scale_y:.0f} 0.99\n")
