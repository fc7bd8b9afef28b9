"""Capture domains (the four stand-in "datasets") and the attack types they record."""

from __future__ import annotations

import dataclasses

import numpy as np

ATTACK_TYPES = ("live", "print", "replay", "cut_photo")
LIVE, PRINT, REPLAY, CUT_PHOTO = range(4)
DOMAINS = ("studio", "webcam", "phone", "kiosk")


@dataclasses.dataclass(frozen=True)
class DomainParams:
    """How one capture domain ("dataset") differs from the others.

    Scene: ``background`` style, ``illum_level`` and ``illum_rgb`` (illuminant
    colour, not white-balanced away unless ``wb_gains`` compensate it),
    ``light_dir`` mean key-light direction (x, y; image plane), ``flicker`` per-frame
    light level jitter.  Camera: ``capture_scale`` sensor resolution relative to the
    output (upsampled bilinearly afterwards), ``blur_sigma`` optical blur in output
    pixels, ``read_noise`` / ``shot_noise`` sensor noise, ``chroma_noise`` fraction of
    noise that is per-channel, ``wb_gains``, ``saturation``, ``tone_gamma`` (out =
    in ** tone_gamma), ``black_level``, ``contrast``, ``vignette``, ``sharpen``
    (unsharp-mask amount), ``jpeg_quality``; ``saturation`` and ``hue_deg`` (rotation
    about the grey axis) together form the camera's colour matrix.  Attack instruments: ``print_period``
    halftone cell size and ``print_contrast`` of the printer, ``screen_pitch`` and
    ``screen_gamma`` of the replay display, ``glare`` strength.  Population:
    ``skin_tone_mean`` in [0, 1] (light .. dark).  ``attack_mix``: indices into
    :data:`ATTACK_TYPES` recorded in this domain.
    """

    name: str
    summary: str
    attack_mix: tuple[int, ...]
    background: str
    illum_level: float
    illum_rgb: tuple[float, float, float]
    light_dir: tuple[float, float]
    flicker: float
    capture_scale: float
    blur_sigma: float
    read_noise: float
    shot_noise: float
    chroma_noise: float
    wb_gains: tuple[float, float, float]
    saturation: float
    hue_deg: float
    tone_gamma: float
    black_level: float
    contrast: float
    vignette: float
    sharpen: float
    jpeg_quality: int
    print_period: float
    print_contrast: float
    screen_pitch: float
    screen_gamma: float
    glare: float
    skin_tone_mean: float


DOMAIN_PARAMS: tuple[DomainParams, ...] = (
    DomainParams(
        name="studio",
        summary="OULU-like: clean high-res camera, neutral colour, even light, "
        "plain backdrop; has all three attack types",
        attack_mix=(PRINT, REPLAY, CUT_PHOTO),
        background="backdrop",
        illum_level=1.0,
        illum_rgb=(1.0, 1.0, 1.0),
        light_dir=(-0.3, -0.35),
        flicker=0.01,
        capture_scale=1.0,
        blur_sigma=0.35,
        read_noise=0.004,
        shot_noise=0.0002,
        chroma_noise=0.2,
        wb_gains=(1.0, 1.0, 1.0),
        saturation=1.05,
        hue_deg=0.0,
        tone_gamma=0.95,
        black_level=0.01,
        contrast=1.0,
        vignette=0.08,
        sharpen=0.0,
        jpeg_quality=92,
        print_period=0.016,
        print_contrast=0.9,
        screen_pitch=0.018,
        screen_gamma=1.3,
        glare=0.35,
        skin_tone_mean=0.35,
    ),
    DomainParams(
        name="webcam",
        summary="Replay-Attack-like: low-res noisy webcam, soft and low contrast "
        "(looks like a print elsewhere), cool cast, office wall; print + replay",
        attack_mix=(PRINT, REPLAY),
        background="office",
        illum_level=0.8,
        illum_rgb=(0.95, 1.0, 1.02),
        light_dir=(0.45, -0.25),
        flicker=0.05,
        capture_scale=0.6,
        blur_sigma=0.75,
        read_noise=0.012,
        shot_noise=0.0012,
        chroma_noise=0.5,
        wb_gains=(0.93, 1.02, 1.08),
        saturation=0.78,
        hue_deg=4.0,
        tone_gamma=0.9,
        black_level=0.07,
        contrast=0.8,
        vignette=0.3,
        sharpen=0.0,
        jpeg_quality=72,
        print_period=0.02,
        print_contrast=0.88,
        screen_pitch=0.022,
        screen_gamma=1.2,
        glare=0.3,
        skin_tone_mean=0.45,
    ),
    DomainParams(
        name="phone",
        summary="MSU-like: phone ISP, over-sharpened (halos), saturated warm colour, "
        "blocky JPEG (mimics screen texture), bright outdoor-ish scene; replay + cut",
        attack_mix=(REPLAY, CUT_PHOTO),
        background="outdoor",
        illum_level=1.1,
        illum_rgb=(1.0, 0.98, 1.04),
        light_dir=(0.05, -0.6),
        flicker=0.02,
        capture_scale=0.75,
        blur_sigma=0.6,
        read_noise=0.007,
        shot_noise=0.0006,
        chroma_noise=0.6,
        wb_gains=(1.1, 1.0, 0.86),
        saturation=1.35,
        hue_deg=-5.0,
        tone_gamma=0.85,
        black_level=0.0,
        contrast=1.15,
        vignette=0.15,
        sharpen=0.8,
        jpeg_quality=45,
        print_period=0.017,
        print_contrast=0.9,
        screen_pitch=0.015,
        screen_gamma=1.35,
        glare=0.5,
        skin_tone_mean=0.3,
    ),
    DomainParams(
        name="kiosk",
        summary="CASIA-like: tungsten-lit kiosk, strong warm cast and vignette, "
        "dark mid-tones (like a replay's gamma shift), tiled wall; print + cut",
        attack_mix=(PRINT, CUT_PHOTO),
        background="tiles",
        illum_level=1.0,
        illum_rgb=(1.0, 0.82, 0.6),
        light_dir=(0.3, -0.7),
        flicker=0.03,
        capture_scale=0.7,
        blur_sigma=0.7,
        read_noise=0.008,
        shot_noise=0.0006,
        chroma_noise=0.3,
        wb_gains=(1.0, 1.03, 1.2),
        saturation=0.95,
        hue_deg=3.0,
        tone_gamma=1.15,
        black_level=0.02,
        contrast=1.05,
        vignette=0.35,
        sharpen=0.3,
        jpeg_quality=80,
        print_period=0.018,
        print_contrast=0.9,
        screen_pitch=0.02,
        screen_gamma=1.25,
        glare=0.4,
        skin_tone_mean=0.5,
    ),
)
assert tuple(d.name for d in DOMAIN_PARAMS) == DOMAINS


# ---------------------------------------------------------------------------------------------
# Random capture pipelines (the own teachers' corpus): cameras and light no benchmark domain has.

# The scene and camera fields a capture pipeline draws (attack instruments and the population
# stay those of the identity's home domain).
CAPTURE_FIELDS = ("illum_level", "illum_rgb", "light_dir", "flicker", "capture_scale", "blur_sigma",
                  "read_noise", "shot_noise", "chroma_noise", "wb_gains", "saturation", "hue_deg",
                  "tone_gamma", "black_level", "contrast", "vignette", "sharpen", "jpeg_quality")
BACKGROUNDS = ("backdrop", "office", "outdoor", "tiles", "plain")
# Physical limits the widened ranges are clipped to.
_LIMITS = {"illum_level": (0.4, 1.6), "illum_rgb": (0.6, 1.4), "light_dir": (-0.8, 0.8),
           "flicker": (0.0, 0.12), "capture_scale": (0.3, 1.0), "blur_sigma": (0.1, 2.0),
           "read_noise": (0.0, 0.05), "shot_noise": (0.0, 0.01), "chroma_noise": (0.0, 1.0),
           "wb_gains": (0.6, 1.4), "saturation": (0.4, 1.6), "hue_deg": (-20.0, 20.0),
           "tone_gamma": (0.6, 1.5), "black_level": (0.0, 0.12), "contrast": (0.6, 1.4),
           "vignette": (0.0, 0.8), "sharpen": (0.0, 1.0), "jpeg_quality": (25, 98)}
# A drawn pipeline is kept only this far (RMS over the fields, each scaled to its range) from
# every benchmark domain, so the teachers never see a benchmark camera.
MIN_CAPTURE_DISTANCE = 0.25


def _as_vector(params: DomainParams) -> np.ndarray:
    return np.concatenate([np.atleast_1d(np.asarray(getattr(params, f), np.float64)) for f in CAPTURE_FIELDS])


def capture_ranges() -> tuple[np.ndarray, np.ndarray]:
    """Per capture value (flattened): the span of the four domains widened by half of itself
    (at least 10% of the physical range) on each side, clipped to the physical limits."""
    values = np.stack([_as_vector(d) for d in DOMAIN_PARAMS])
    limits = np.concatenate([np.broadcast_to(np.asarray(_LIMITS[f], np.float64)[:, None],
                                             (2, np.size(getattr(DOMAIN_PARAMS[0], f))))
                             for f in CAPTURE_FIELDS], axis=1)
    low, high = values.min(0), values.max(0)
    pad = np.maximum((high - low) / 2, 0.1 * (limits[1] - limits[0]))
    return np.maximum(low - pad, limits[0]), np.minimum(high + pad, limits[1])


def capture_distance(a: DomainParams, b: DomainParams) -> float:
    """RMS difference of two pipelines' capture values, each scaled to its drawing range."""
    low, high = capture_ranges()
    return float(np.sqrt(np.mean(((_as_vector(a) - _as_vector(b)) / (high - low)) ** 2)))


def random_capture(rng: np.random.Generator, home: DomainParams) -> DomainParams:
    """A capture pipeline drawn uniformly from :func:`capture_ranges` (background: any style),
    redrawn until it is at least MIN_CAPTURE_DISTANCE from every benchmark domain; the attack
    instruments and population stay `home`'s."""
    low, high = capture_ranges()
    sizes = [np.size(getattr(home, f)) for f in CAPTURE_FIELDS]
    while True:
        values = np.split(rng.uniform(low, high), np.cumsum(sizes)[:-1])
        fields = {f: (tuple(float(x) for x in v) if n > 1 else float(v[0]))
                  for f, v, n in zip(CAPTURE_FIELDS, values, sizes)}
        fields["jpeg_quality"] = int(round(fields["jpeg_quality"]))
        params = dataclasses.replace(home, name="random", summary="random capture pipeline",
                                     background=str(rng.choice(BACKGROUNDS)), **fields)
        if min(capture_distance(params, d) for d in DOMAIN_PARAMS) >= MIN_CAPTURE_DISTANCE:
            return params


def domain_table() -> str:
    """A markdown table of the per-domain parameters (for docs and reports)."""
    fields = [f.name for f in dataclasses.fields(DomainParams) if f.name not in ("name", "summary")]
    rows = ["| field | " + " | ".join(DOMAINS) + " |", "|---" * (len(DOMAINS) + 1) + "|"]
    for f in fields:
        vals = []
        for d in DOMAIN_PARAMS:
            v = getattr(d, f)
            if f == "attack_mix":
                v = "+".join(ATTACK_TYPES[i] for i in v)
            vals.append(str(v))
        rows.append(f"| {f} | " + " | ".join(vals) + " |")
    return "\n".join(rows)
