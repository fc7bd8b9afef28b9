"""Procedural face anti-spoofing (FAS) renderer: faces, attack media, camera domains.

Pure numpy (plus Pillow for JPEG), fully vectorised: every primitive is an analytic
signed-distance / noise function evaluated on a coordinate grid, so the same face can
be rendered directly in camera coordinates (live), in the coordinates of a sheet of
paper held in front of the camera (print / cut photo) or on the pixel lattice of a
screen (replay).

Scene model
-----------
* **Identity** (:class:`IdentityParams`, :func:`sample_identity`): face shape (jaw-
  tapered ellipse), skin tone + per-identity skin micro texture, eyes (position, size,
  iris colour), brows, nose, mouth/lips, hair (colour + style: short, medium, long,
  receding; optional fringe), ears, optional glasses, optional beard (male),
  wrinkles/grey hair (not young), shirt.  Binary attributes in :data:`ATTRIBUTES`
  order (the StarGAN / CelebA order).
* **Video** (:func:`render_video`): per-frame pose (in-plane rotation, shift, scale,
  small yaw => parallax of the inner features), expression (blink, mouth opening,
  smile, gaze) and lighting (key-light direction and intensity => Lambertian shading
  with a head / nose normal model, skin specular, cast shadow on the backdrop).
* **Attacks** (:data:`ATTACK_TYPES`):

  - ``print``: a frontal photo of the identity printed on paper (reduced gamut and
    contrast, CMY halftone screen, paper tint and fibre texture, print blur), held by
    hand (rigid jitter, perspective, paper bend with shading); paper edges can be
    visible.  No 3D shading change, no blinking.
  - ``replay``: a recorded video of the identity shown on a screen (content quantised
    to the screen pixel lattice, RGB sub-pixel stripes box-integrated by the camera
    pixels => moire, display gamma / white-point shift, emissive brightness, specular
    glare blob, bezel visible near the borders).
  - ``cut_photo``: a print with the eye regions cut out, worn in front of the real
    face: the live eyes (which blink) show through the holes, the hole rims cast a
    thin shadow.

* **Domains** (:data:`DOMAINS`, :data:`DOMAIN_PARAMS`): each domain is a different
  "dataset": camera colour response (white balance, saturation, tone curve, black
  level), sensor noise, optical blur, sensor resolution (captured lower, upsampled),
  ISP sharpening, JPEG quality, illumination level/colour, vignetting, typical
  backgrounds, its own attack instruments (printer halftone, screen pitch/gamma) and
  its own mix of attack types.  The capture quirks are deliberately of comparable or
  larger magnitude than the spoof cues, and some mimic another domain's spoof cues
  (``webcam`` is soft and low contrast like a print; ``kiosk``'s tone curve and warm
  cast resemble a replay's gamma shift; ``phone``'s sharpening halos and JPEG blocks
  resemble screen texture).

Rendering is supersampled (3x the output size up to 128 px, 2x above) and
area-averaged down by the camera model, on top of analytic anti-aliasing of every
edge and pattern (shape coverage, box-filtered screen stripes, damped halftone dots).
The attack's source material (the printed photo / replayed recording) was shot in
the domain's own room half of the time (as in OULU-NPU) and elsewhere otherwise, so
the background is not a free spoof cue.

Randomness: identities come from ``np.random.default_rng([seed, 1, identity_id])``,
each video from ``np.random.default_rng([seed, 2, video_id, domain, attack_type])``
(plus ``[seed, 3, video_id]`` for its attack source material), so generation is
deterministic and independent of the order in which videos are made.  Results are
bit-identical on one machine / numpy / Pillow build; other builds may differ in the
last bits of transcendental functions.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "ATTRIBUTES",
    "ATTACK_TYPES",
    "DOMAINS",
    "DOMAIN_PARAMS",
    "DomainParams",
    "IdentityParams",
    "sample_identity",
    "render_video",
    "default_supersample",
    "domain_table",
    "contact_sheet",
]

ATTRIBUTES = ("black_hair", "blond_hair", "brown_hair", "male", "young")
ATTACK_TYPES = ("live", "print", "replay", "cut_photo")
LIVE, PRINT, REPLAY, CUT_PHOTO = range(4)
DOMAINS = ("studio", "webcam", "phone", "kiosk")

# Person placement: face coordinates are image coordinates ([-1, 1], y down) divided
# by FACE_SCALE, so a face of half-width ~0.31 covers ~45% of the image width.
FACE_SCALE = 1.45

_F = np.float32


# --------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------

_SKIN_PALETTE = np.array(
    [
        (0.97, 0.83, 0.72),
        (0.92, 0.73, 0.60),
        (0.80, 0.58, 0.44),
        (0.60, 0.41, 0.29),
        (0.38, 0.25, 0.17),
    ],
    _F,
)
_IRIS_COLOURS = np.array(
    [(0.30, 0.17, 0.08), (0.18, 0.10, 0.05), (0.28, 0.45, 0.62), (0.35, 0.45, 0.25),
     (0.45, 0.33, 0.15)],
    _F,
)
_HAIR_COLOURS = {
    "black": (0.07, 0.055, 0.05),
    "blond": (0.86, 0.72, 0.45),
    "brown": (0.38, 0.23, 0.12),
    "red": (0.58, 0.24, 0.10),
    "grey": (0.66, 0.65, 0.63),
}
HAIR_STYLES = ("short", "medium", "long", "receding")


@dataclasses.dataclass(frozen=True)
class IdentityParams:
    """Geometry and appearance of one synthetic subject (face coordinates, y down)."""

    identity_id: int
    attributes: tuple[int, int, int, int, int]
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    hair_style: int
    fringe: bool
    hair_volume: float
    face_a: float
    face_b: float
    jaw_taper: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    iris_r: float
    iris_rgb: tuple[float, float, float]
    brow_dy: float
    brow_t: float
    brow_w: float
    brow_arch: float
    brow_rgb: tuple[float, float, float]
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_t: float
    lip_rgb: tuple[float, float, float]
    glasses: bool
    glasses_rgb: tuple[float, float, float]
    glasses_p: float
    beard: float
    wrinkles: float
    shirt_rgb: tuple[float, float, float]
    texture_seed: int

    @property
    def attribute_vector(self) -> np.ndarray:
        return np.asarray(self.attributes, np.int32)


def _t3(x) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(x, 0.0, 1.0))  # type: ignore[return-value]


def sample_identity(seed: int, identity_id: int, domain: int | None = None) -> IdentityParams:
    """Draws identity ``identity_id`` of dataset ``seed``.

    ``domain`` (optional) shifts the skin-tone distribution towards that domain's
    population mean, like real datasets recorded in different countries.
    """
    rng = np.random.default_rng([int(seed), 1, int(identity_id)])
    male = bool(rng.random() < 0.5)
    young = bool(rng.random() < 0.65)
    u = rng.random()
    hair_cat = "black" if u < 0.3 else "blond" if u < 0.5 else "brown" if u < 0.8 else "other"
    if hair_cat == "other":
        hair_cat = "grey" if rng.random() < (0.25 if young else 0.8) else "red"
    attrs = (
        int(hair_cat == "black"),
        int(hair_cat == "blond"),
        int(hair_cat == "brown"),
        int(male),
        int(young),
    )
    hair = np.array(_HAIR_COLOURS[hair_cat], _F) * rng.uniform(0.85, 1.15)
    hair = np.clip(hair + rng.normal(0, 0.02, 3), 0.02, 1)
    if not young and hair_cat != "grey":
        hair = hair + rng.uniform(0.15, 0.4) * (np.array(_HAIR_COLOURS["grey"]) - hair)

    mean_tone = 0.4 if domain is None else DOMAIN_PARAMS[domain].skin_tone_mean
    tone = float(np.clip(rng.beta(2.0, 2.0) * 0.7 + (mean_tone - 0.35), 0.0, 1.0))
    pos = tone * (len(_SKIN_PALETTE) - 1)
    i0 = min(int(pos), len(_SKIN_PALETTE) - 2)
    skin = _SKIN_PALETTE[i0] * (1 - (pos - i0)) + _SKIN_PALETTE[i0 + 1] * (pos - i0)
    skin = skin * np.array([1.0, rng.uniform(0.96, 1.03), rng.uniform(0.95, 1.04)]) * rng.uniform(0.95, 1.04)

    if male:
        style = int(rng.choice(4, p=[0.55, 0.15, 0.08, 0.22] if not young else [0.7, 0.18, 0.07, 0.05]))
    else:
        style = int(rng.choice(4, p=[0.12, 0.38, 0.5, 0.0]))
    fringe = bool(rng.random() < (0.15 if male else 0.4)) and style != 3

    face_a = rng.uniform(0.3, 0.335) if male else rng.uniform(0.28, 0.315)
    face_b = rng.uniform(0.41, 0.45)
    jaw = rng.uniform(0.08, 0.2) if male else rng.uniform(0.2, 0.32)
    eye_w = rng.uniform(0.052, 0.066)
    lip = skin * np.array([1.05, 0.72, 0.72]) if male else skin * np.array([1.12, 0.62, 0.64])
    if not male and rng.random() < 0.5:  # lipstick
        lip = lip + rng.uniform(0.2, 0.5) * (np.array([0.7, 0.12, 0.18]) - lip)
    brow = hair * (0.55 if hair_cat != "blond" else 0.7)
    glasses = bool(rng.random() < 0.3)
    beard = 0.0
    if male and rng.random() < 0.45:
        beard = float(rng.uniform(0.25, 1.0))
    return IdentityParams(
        identity_id=int(identity_id),
        attributes=attrs,  # type: ignore[arg-type]
        skin_rgb=_t3(skin),
        hair_rgb=_t3(hair),
        hair_style=style,
        fringe=fringe,
        hair_volume=float(rng.uniform(0.2, 1.0)),
        face_a=float(face_a),
        face_b=float(face_b),
        jaw_taper=float(jaw),
        eye_dx=float(rng.uniform(0.115, 0.14)),
        eye_y=float(rng.uniform(-0.08, -0.04)),
        eye_w=float(eye_w),
        eye_h=float(eye_w * rng.uniform(0.42, 0.55)),
        iris_r=float(eye_w * rng.uniform(0.42, 0.5)),
        iris_rgb=_t3(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15)),
        brow_dy=float(rng.uniform(0.06, 0.08)),
        brow_t=float(rng.uniform(0.018, 0.026) if male else rng.uniform(0.011, 0.017)),
        brow_w=float(rng.uniform(0.065, 0.08)),
        brow_arch=float(rng.uniform(0.005, 0.015) if male else rng.uniform(0.012, 0.025)),
        brow_rgb=_t3(brow),
        nose_len=float(rng.uniform(0.13, 0.17)),
        nose_w=float(rng.uniform(0.035, 0.05) if male else rng.uniform(0.03, 0.042)),
        mouth_y=float(rng.uniform(0.2, 0.24)),
        mouth_w=float(rng.uniform(0.075, 0.1)),
        lip_t=float(rng.uniform(0.016, 0.022) if male else rng.uniform(0.02, 0.027)),
        lip_rgb=_t3(lip),
        glasses=glasses,
        glasses_rgb=_t3([(0.05, 0.05, 0.05), (0.3, 0.18, 0.1), (0.65, 0.62, 0.55)][rng.integers(3)]),
        glasses_p=float(rng.choice([2.0, 3.0, 5.0])),
        beard=beard,
        wrinkles=0.0 if young else float(rng.uniform(0.4, 1.0)),
        shirt_rgb=_t3(rng.uniform(0.1, 0.85, 3) ** 1.3),
        texture_seed=int(rng.integers(2**31 - 1)),
    )


# --------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------


def _smooth(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ell_sd(x, y, cx, cy, a, b):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    px = (x - cx) / a
    py = (y - cy) / b
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt((px / a) ** 2 + (py / b) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _cov(sd, aa):
    """Anti-aliased coverage of the region sd < 0 for a pixel of size aa."""
    return np.clip(0.5 - sd / aa, 0.0, 1.0)


def _over(C, A, col, alpha):
    """In-place premultiplied 'over' of a layer (colour (3,) or (...,3), alpha) onto
    C, A (which may be views of a window of the full arrays)."""
    a = alpha[..., None]
    C *= 1.0 - a
    C += np.asarray(col, _F) * a
    A *= 1.0 - alpha
    A += alpha


def _paint(img, col, alpha):
    a = alpha[..., None]
    img *= 1.0 - a
    img += np.asarray(col, _F) * a
    return img


def _sample_tex(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth (cubic-eased) bilinear lookup into a tileable 2-D texture whose sides are
    powers of two; u, v in texels."""
    h, w = tex.shape
    flat = tex.ravel()
    u0 = np.floor(u)
    v0 = np.floor(v)
    fu = (u - u0).astype(_F)
    fv = (v - v0).astype(_F)
    fu = fu * fu * (3 - 2 * fu)
    fv = fv * fv * (3 - 2 * fv)
    i0 = u0.astype(np.int32) & (w - 1)
    j0 = (v0.astype(np.int32) & (h - 1)) * w
    i1 = (i0 + 1) & (w - 1)
    j1 = (j0 + w) & (h * w - 1)
    top = flat.take(j0 + i0) * (1 - fu) + flat.take(j0 + i1) * fu
    bot = flat.take(j1 + i0) * (1 - fu) + flat.take(j1 + i1) * fu
    return top * (1 - fv) + bot * fv


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup into an (h, w, 3) image at pixel coordinates u (x), v (y);
    clamped at the borders."""
    h, w = img.shape[:2]
    flat = img.reshape(-1, img.shape[2])
    u = np.clip(u, 0.0, w - 1.001)
    v = np.clip(v, 0.0, h - 1.001)
    i0 = u.astype(np.int32)
    j0 = v.astype(np.int32)
    fu = (u - i0).astype(_F)[..., None]
    fv = (v - j0).astype(_F)[..., None]
    k = j0 * w + i0
    top = flat[k] * (1 - fu) + flat[k + 1] * fu
    bot = flat[k + w] * (1 - fu) + flat[k + w + 1] * fu
    return top * (1 - fv) + bot * fv


def _bbox(mask: np.ndarray):
    """Slices of the bounding box of a boolean mask (None when empty)."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))


def _window(x, y, x0, x1, y0, y1):
    """Pixel window where the (face) coordinates fall inside [x0, x1] x [y0, y1]."""
    return _bbox((x > x0) & (x < x1) & (y > y0) & (y < y1))


@functools.lru_cache(maxsize=8)
def _identity_detail(texture_seed: int, n: int) -> np.ndarray:
    """Per-identity detail texture over face coordinates [-1, 1]^2, shape (2, n*n):
    channel 0 skin micro texture (blotches + pores), channel 1 hair strands (radiating
    from above the crown)."""
    rng = np.random.default_rng([texture_seed, 3])
    c = (np.arange(n, dtype=_F) + 0.5) / n * 2.0 - 1.0
    x = np.broadcast_to(c[None, :], (n, n))
    y = np.broadcast_to(c[:, None], (n, n))
    lo = _sample_tex(rng.standard_normal((16, 16)).astype(_F), x * 14.0 + 3.0, y * 14.0 + 3.0)
    hi = _sample_tex(rng.standard_normal((64, 64)).astype(_F), x * (n / 4.0), y * (n / 4.0))
    theta = np.arctan2(x, y + 0.8)
    r = np.sqrt(x * x + (y + 0.8) ** 2)
    s1 = _sample_tex(rng.standard_normal((16, 256)).astype(_F), theta * (n / 4.5), r * 12.0)
    s2 = _sample_tex(rng.standard_normal((16, 64)).astype(_F), theta * 30.0, r * 25.0)
    out = np.empty((2, n * n), _F)
    out[0] = (0.035 * lo + 0.028 * hi).ravel()
    out[1] = (0.55 * s1 + 0.45 * s2).ravel()
    return out


def _lookup_detail(texture_seed: int, n: int, x: np.ndarray, y: np.ndarray):
    """Nearest-texel lookup of the identity detail texture: (skin, strands)."""
    d = _identity_detail(texture_seed, n)
    i = np.clip(((x + 1.0) * (0.5 * n)).astype(np.int32), 0, n - 1)
    idx = np.clip(((y + 1.0) * (0.5 * n)).astype(np.int32), 0, n - 1)
    idx *= n
    idx += i
    return d[0].take(idx), d[1].take(idx)


@functools.lru_cache(maxsize=64)
def _resize_taps(n_in: int, n_out: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Sparse 1-D resampling operator, 'area' (box) or 'linear' (triangle, pixel
    centres aligned): input indices (n_out, K) and weights (n_out, K)."""
    scale = n_in / n_out
    rows: list[list[tuple[int, float]]] = []
    for i in range(n_out):
        taps: dict[int, float] = {}
        if kind == "area":
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(math.floor(lo)), int(math.ceil(hi))):
                taps[j] = taps.get(j, 0.0) + max(0.0, min(hi, j + 1) - max(lo, j))
        else:
            c = (i + 0.5) * scale - 0.5
            j0 = int(math.floor(c))
            f = c - j0
            for j, wgt in ((j0, 1.0 - f), (j0 + 1, f)):
                j = min(max(j, 0), n_in - 1)
                taps[j] = taps.get(j, 0.0) + wgt
        tot = sum(taps.values())
        rows.append([(j, wgt / tot) for j, wgt in taps.items()])
    K = max(len(r) for r in rows)
    idx = np.zeros((n_out, K), np.int64)
    wts = np.zeros((n_out, K), _F)
    for i, r in enumerate(rows):
        for k, (j, wgt) in enumerate(r):
            idx[i, k], wts[i, k] = j, wgt
    return idx, wts


def _resize(img: np.ndarray, n_out: int, kind: str) -> np.ndarray:
    """Resizes a square (n, n, C) image to (n_out, n_out, C), separably (no BLAS)."""
    n_in = img.shape[0]
    if n_in == n_out:
        return img
    idx, wts = _resize_taps(n_in, n_out, kind)
    out = wts[:, 0, None, None] * img[idx[:, 0]]
    for k in range(1, idx.shape[1]):
        out += wts[:, k, None, None] * img[idx[:, k]]
    res = wts[None, :, 0, None] * out[:, idx[:, 0]]
    for k in range(1, idx.shape[1]):
        res += wts[None, :, k, None] * out[:, idx[:, k]]
    return res


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (sigma in pixels) of an (H, W, C) image, mirrored borders."""
    if sigma < 0.05:
        return img
    r = max(1, int(math.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(_F)
    H, W = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="symmetric")
    out = k[0] * p[0:H]
    for i in range(1, 2 * r + 1):
        out += k[i] * p[i:i + H]
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="symmetric")
    out = k[0] * p[:, 0:W]
    for i in range(1, 2 * r + 1):
        out += k[i] * p[:, i:i + W]
    return out


def _box_stripe(x: np.ndarray, period: float, start: float, width: float, h: float) -> np.ndarray:
    """Box-filtered (footprint h) periodic indicator of [start, start+width) mod period."""

    def cum(t):
        n = np.floor(t / period)
        r = t - n * period
        return n * width + np.clip(r - start, 0.0, width)

    return ((cum(x + 0.5 * h) - cum(x - 0.5 * h)) / h).astype(_F)


# --------------------------------------------------------------------------------------
# Person
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FrameState:
    """Pose, expression and lighting of one frame."""

    angle: float = 0.0  # in-plane rotation, radians
    tx: float = 0.0
    ty: float = -0.02
    scale: float = 1.0
    yaw: float = 0.0  # small out-of-plane turn => parallax of inner features
    eye_open: float = 1.0
    mouth_open: float = 0.0
    smile: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    light_x: float = -0.3
    light_y: float = -0.4
    light_int: float = 1.0  # room light level (flicker); applied by the caller
    ambient: float = 0.35


def _face_coords(X, Y, st: FrameState):
    s = st.scale * FACE_SCALE
    ca, sa = math.cos(st.angle), math.sin(st.angle)
    xs = (X - st.tx) / s
    ys = (Y - st.ty) / s
    return (ca * xs + sa * ys).astype(_F), (-sa * xs + ca * ys).astype(_F), s


def _eye_centres(idn: IdentityParams, st: FrameState):
    off = st.yaw * 0.05
    return [(sg * idn.eye_dx + off, idn.eye_y) for sg in (-1.0, 1.0)]


def _render_person(X, Y, aa_img, idn: IdentityParams, st: FrameState, *, detail_n: int = 256,
                   shading: bool = True):
    """Renders the person over transparency.

    X, Y are image-plane coordinates of the pixels (any 2-D arrays: a camera grid, a
    paper or screen mapped into the camera, a sub-window) and ``aa_img`` the pixel size
    in those units; ``detail_n`` the resolution of the identity detail texture (fixed
    per video so that skin / hair texture does not change between frames).  Returns
    premultiplied colour C (H,W,3), alpha A (H,W) and the shading field (H,W) that C
    is to be multiplied with.
    """
    x, y, s = _face_coords(X, Y, st)
    aa = aa_img / s
    H, W = x.shape
    C = np.zeros((H, W, 3), _F)
    A = np.zeros((H, W), _F)
    a, b = idn.face_a, idn.face_b
    yaw = st.yaw
    skin = np.array(idn.skin_rgb, _F)
    hair = np.array(idn.hair_rgb, _F)
    style = idn.hair_style
    vol = idn.hair_volume
    male = idn.attributes[3]
    skin_d, strands = _lookup_detail(idn.texture_seed, detail_n, x, y)
    hair_alb = hair[None, None, :] * (0.8 + 0.2 * strands)[..., None]

    # --- hair behind the head (medium / long)
    if style in (1, 2):
        y_end = 0.27 if style == 1 else 0.75
        wa = a * (1.2 + 0.12 * vol)
        w = _window(x, y, -wa - 0.12, wa + 0.12, -b * 1.4, y_end + 0.05)
        if w is not None:
            xs, ys = x[w], y[w]
            wa_y = wa + (0.1 if style == 2 else 0.02) * np.clip(ys, 0, None)
            sd = np.maximum(np.abs(xs) - wa_y, ys - y_end - 0.02 * np.sin(xs * 30.0))
            top = _ell_sd(xs, ys, 0.0, -0.03, a * 1.12 + 0.05 * vol, b * 1.07 + 0.05 * vol)
            sd = np.where(ys < -0.03, np.maximum(sd, top), sd)
            _over(C[w], A[w], hair_alb[w] * 0.72, _cov(sd, aa))

    # --- shirt / shoulders with a round neckline
    w = _window(x, y, -10, 10, 0.35, 10)
    if w is not None:
        xs, ys = x[w], y[w]
        sh_y = 0.54 + 0.5 * np.clip(np.abs(xs) - 0.17, 0.0, None) ** 1.3
        sd_sh = np.maximum(sh_y - ys, -_ell_sd(xs, ys, 0.0, 0.55, 0.13 + 0.02 * male, 0.08))
        shirt = np.array(idn.shirt_rgb, _F)
        fold = 1.0 + 0.06 * np.sin(xs * 9.0 + ys * 3.0)
        _over(C[w], A[w], shirt[None, None, :] * fold[..., None], _cov(sd_sh, aa))

    # --- neck (in the jaw's shadow at the top)
    nw = 0.13 + 0.03 * male
    w = _window(x, y, -nw - 0.02, nw + 0.02, 0.05, 0.75)
    if w is not None:
        xs, ys = x[w], y[w]
        sd_n = np.maximum(np.abs(xs) - nw * (1.0 + 0.3 * _smooth(0.45, 0.65, ys)), np.maximum(0.1 - ys, ys - 0.7))
        neck_col = skin[None, None, :] * (0.7 + 0.22 * _smooth(b * 0.8, b * 0.8 + 0.2, ys))[..., None]
        _over(C[w], A[w], neck_col, _cov(sd_n, aa))

    # --- ears (covered by hair for medium / long styles)
    if style in (0, 3):
        for sg in (-1.0, 1.0):
            ex = sg * (a - 0.012) - yaw * 0.02
            w = _window(x, y, ex - 0.07, ex + 0.07, -0.08, 0.12)
            if w is None:
                continue
            xs, ys = x[w], y[w]
            _over(C[w], A[w], skin * 0.9, _cov(_ell_sd(xs, ys, ex, 0.02, 0.045, 0.08), aa))
            _over(C[w], A[w], skin * 0.7, _cov(_ell_sd(xs, ys, ex + sg * 0.01, 0.025, 0.02, 0.045), aa) * 0.6)

    # --- face: jaw-tapered ellipse, skin micro texture, cheeks, eye-socket occlusion
    wf = _window(x, y, -a - 0.03, a + 0.03, -b - 0.03, b + 0.03)
    face_cov = np.zeros_like(x)
    if wf is not None:
        xs, ys = x[wf], y[wf]
        a_eff = a * (1.0 - idn.jaw_taper * np.clip(ys / b, 0.0, 1.0) ** 2)
        face_cov[wf] = _cov(_ell_sd(xs, ys, 0.0, 0.0, a_eff, b), aa)
        tone = 1.0 + skin_d[wf]
        for ex, ey in _eye_centres(idn, st):
            tone = tone - 0.1 * np.exp(-(((xs - ex) / (idn.eye_w * 1.7)) ** 2 + ((ys - ey + 0.008) / 0.05) ** 2))
        alb = skin[None, None, :] * tone[..., None]
        for sg in (-1.0, 1.0):  # cheeks: a little redder
            g = np.exp(-(((xs - sg * 0.15 - yaw * 0.02) / 0.07) ** 2 + ((ys - 0.1) / 0.06) ** 2))
            alb = alb * (1.0 - 0.07 * g[..., None] * np.array([0.0, 1.0, 0.8], _F))
        _over(C[wf], A[wf], alb, face_cov[wf])

    nose_x = yaw * 0.1
    ny_tip = idn.eye_y + idn.nose_len
    # --- under-nose and under-lip shadows, nostrils
    w = _window(x, y, nose_x - 0.1, nose_x + 0.1, ny_tip - 0.03, idn.mouth_y + 0.09)
    if w is not None:
        xs, ys = x[w], y[w]
        f = 1.0 - 0.2 * np.exp(-(((xs - nose_x) / 0.04) ** 2 + ((ys - ny_tip - 0.022) / 0.012) ** 2))
        f -= 0.12 * np.exp(-(((xs - yaw * 0.06) / 0.06) ** 2 + ((ys - idn.mouth_y - 0.05) / 0.012) ** 2))
        C[w] *= f[..., None]
        for sg in (-1.0, 1.0):
            sd_ns = _ell_sd(xs, ys, nose_x + sg * idn.nose_w * 0.55, ny_tip + 0.006, 0.013, 0.0075)
            _over(C[w], A[w], skin * 0.35, _cov(sd_ns, aa) * 0.85)

    # --- wrinkles (not young): forehead lines, nasolabial folds, crow's feet
    if idn.wrinkles > 0 and wf is not None:
        xs, ys = x[wf], y[wf]
        lines = np.zeros_like(xs)
        for k in range(3):
            yk = idn.eye_y - 0.14 - 0.03 * k + 0.008 * np.sin(xs * 9.0 + k)
            lines += np.exp(-(((ys - yk) / 0.0045) ** 2)) * _smooth(0.2, 0.12, np.abs(xs))
        for sg in (-1.0, 1.0):
            xf = sg * (idn.nose_w + 0.02 + 0.45 * (ys - ny_tip + 0.02)) + yaw * 0.07
            lines += 1.3 * np.exp(-(((xs - xf) / 0.005) ** 2)) * _smooth(ny_tip - 0.03, ny_tip, ys) * _smooth(
                idn.mouth_y + 0.04, idn.mouth_y + 0.01, ys)
            ex = sg * (idn.eye_dx + idn.eye_w + 0.02)
            for k in (-1, 0, 1):
                lines += 0.8 * np.exp(-((((ys - idn.eye_y) - k * 0.5 * (xs - ex) * sg - 0.012 * k) / 0.004) ** 2)
                                      - ((xs - ex) / 0.015) ** 2)
        C[wf] *= (1.0 - 0.22 * idn.wrinkles * np.clip(lines, 0, 1) * face_cov[wf])[..., None]

    # --- beard / moustache
    if idn.beard > 0:
        w = _window(x, y, -a - 0.05, a + 0.05, idn.mouth_y - 0.12, b * 1.1)
        if w is not None:
            xs, ys = x[w], y[w]
            a_eff = a * (1.0 - idn.jaw_taper * np.clip(ys / b, 0.0, 1.0) ** 2)
            bsd = np.maximum(_ell_sd(xs, ys, 0.0, 0.0, a_eff * 1.02, b * 1.05), (idn.mouth_y - 0.06) - ys)
            mst = _ell_sd(xs, ys, yaw * 0.06, idn.mouth_y - 0.033, idn.mouth_w * 1.15, 0.016)
            bsd = np.minimum(bsd, mst)
            dens = idn.beard * (0.5 + 0.5 * np.clip(0.5 + 0.6 * strands[w], 0, 1))
            _over(C[w], A[w], hair_alb[w] * 0.75, _cov(bsd, aa) * dens)

    # --- mouth: lips, opening, teeth; smile raises the corners
    w_m = idn.mouth_w
    w = _window(x, y, yaw * 0.06 - w_m * 1.3, yaw * 0.06 + w_m * 1.3, idn.mouth_y - 0.07, idn.mouth_y + 0.07)
    if w is not None:
        xs, ys = x[w], y[w]
        dx = xs - yaw * 0.06
        m = st.mouth_open
        dy = ys - idn.mouth_y + st.smile * 0.03 * (dx / w_m) ** 2
        lips = _cov(_ell_sd(dx, dy, 0.0, 0.004 * m, w_m, idn.lip_t * (1.0 + 0.9 * m)), aa)
        lip_col = np.array(idn.lip_rgb, _F)[None, None, :] * (0.95 + 0.15 * _smooth(0.0, idn.lip_t, dy))[..., None]
        _over(C[w], A[w], lip_col, lips)
        inner_h = 0.0025 + 0.03 * m
        inner = _cov(_ell_sd(dx, dy, 0.0, 0.003 * m, w_m * 0.86, inner_h), aa)
        _over(C[w], A[w], (0.22, 0.07, 0.07), inner)
        if m > 0.15:
            teeth = inner * _cov(dy - (-inner_h * 0.25 + 0.003 * m), aa) * _smooth(w_m * 0.8, w_m * 0.5, np.abs(dx))
            _over(C[w], A[w], (0.85, 0.82, 0.76), teeth * 0.9)

    # --- eyes: sclera, iris, pupil, catch light, lids (blink), crease
    o = max(st.eye_open, 0.06)
    for ex, ey in _eye_centres(idn, st):
        w = _window(x, y, ex - idn.eye_w * 1.8, ex + idn.eye_w * 1.8, ey - idn.eye_h * 2.6, ey + idn.eye_h * 2.2)
        if w is None:
            continue
        xs, ys = x[w], y[w]
        Cw, Aw = C[w], A[w]
        dx = xs - ex
        dy = ys - ey
        he = idn.eye_h * o
        cy_e = idn.eye_h * (1 - o) * 0.35
        eye_sd = _ell_sd(dx, dy, 0.0, cy_e, idn.eye_w, he)
        sclera = _cov(eye_sd, aa)
        Cw *= (1.0 - 0.12 * np.exp(-((dx / (idn.eye_w * 1.1)) ** 2 + ((dy + idn.eye_h * 1.25) / 0.012) ** 2)))[..., None]
        _over(Cw, Aw, (0.9, 0.87, 0.84), sclera)
        ix = ex + st.gaze_x * idn.eye_w * 0.35
        iy = ey + st.gaze_y * idn.eye_h * 0.3 + cy_e * 0.5
        r = np.sqrt((xs - ix) ** 2 + (ys - iy) ** 2)
        iris = _cov(r - idn.iris_r, aa) * sclera
        iris_col = np.array(idn.iris_rgb, _F)[None, None, :] * (1.0 - 0.5 * np.clip(r / idn.iris_r, 0, 1) ** 4)[..., None]
        _over(Cw, Aw, iris_col, iris)
        _over(Cw, Aw, (0.02, 0.02, 0.02), _cov(r - idn.iris_r * 0.42, aa) * sclera)
        cl = np.sqrt((xs - ix + idn.iris_r * 0.35) ** 2 + (ys - iy + idn.iris_r * 0.35) ** 2)
        _over(Cw, Aw, (1.0, 1.0, 1.0), _cov(cl - idn.iris_r * 0.2, aa) * sclera * 0.85)
        lid_t = 0.006 + 0.004 * (1 - male)
        lid = _cov(np.abs(eye_sd + lid_t * 0.5) - lid_t * 0.5, aa) * _smooth(0.2 * idn.eye_h, -0.2 * idn.eye_h, dy - cy_e)
        _over(Cw, Aw, (0.08, 0.05, 0.04), lid * 0.9)
        Cw *= (1.0 - 0.1 * np.exp(-((dx / idn.eye_w) ** 2 + ((dy - idn.eye_h * 1.15) / 0.008) ** 2)))[..., None]

    # --- brows
    brow = np.array(idn.brow_rgb, _F)
    for (ex, ey), sg in zip(_eye_centres(idn, st), (-1.0, 1.0)):
        bx = ex + sg * 0.012
        by = ey - idn.eye_h - idn.brow_dy * 0.6
        w = _window(x, y, bx - idn.brow_w * 1.1, bx + idn.brow_w * 1.1, by - 0.05, by + 0.03)
        if w is None:
            continue
        xs, ys = x[w], y[w]
        u = (xs - bx) * sg / idn.brow_w
        arc = by - idn.brow_arch * (1.0 - u * u) + 0.01 * u
        th = idn.brow_t * (1.0 - 0.55 * np.clip(u, 0, 1) ** 2) * 0.5
        sd_b = np.maximum(np.abs(ys - arc) - th, (np.abs(u) - 1.0) * idn.brow_w)
        _over(C[w], A[w], brow[None, None, :] * (0.9 + 0.2 * strands[w][..., None]), _cov(sd_b, aa) * 0.92)

    # --- hair in front: cap, sides, fringe
    if style == 3:
        hc, hs = -0.42, -0.08
    elif style == 0:
        hc, hs = -0.3, -0.1
    else:
        hc, hs = -0.28, (0.03 if style == 1 else 0.08)
    if idn.fringe:
        hc = idn.eye_y - idn.eye_h - idn.brow_dy * 0.6 - 0.045
    cap_a = a * (1.06 + 0.07 * vol)
    cap_b = b * (1.04 + 0.06 * vol)
    w = _window(x, y, -cap_a - 0.02, cap_a + 0.02, -0.02 - cap_b - 0.02, max(hc, hs) + 0.03)
    if w is not None:
        xs, ys = x[w], y[w]
        hairline = hc + (hs - hc) * np.clip(np.abs(xs) / (a * 0.95), 0.0, 1.0) ** 2.5
        if idn.fringe:
            hairline = hairline + 0.012 * np.sin(xs * 60.0 + 1.0)
        sd_cap = np.maximum(_ell_sd(xs, ys, 0.0, -0.02, cap_a, cap_b), ys - hairline)
        alpha = _cov(sd_cap, aa)
        if style == 3:  # receding: sparse on top
            alpha = alpha * (1.0 - 0.5 * _smooth(0.18, 0.05, np.abs(xs)) * _smooth(-0.3, -0.4, ys))
        sheen = 0.2 * np.exp(-(((ys + b * 0.78) / 0.05) ** 2)) * (0.6 + 0.4 * strands[w])
        _over(C[w], A[w], hair_alb[w] * (1.0 + sheen)[..., None], alpha)

    # --- glasses: rims, bridge, temples, faint lens tint with reflections
    if idn.glasses:
        gp = idn.glasses_p
        lw, lh = idn.eye_w * 1.55, idn.eye_w * 1.12
        t = 0.009
        ey0 = idn.eye_y
        w = _window(x, y, -a * 1.05, a * 1.05, ey0 - lh - 0.03, ey0 + lh + 0.03)
        if w is not None:
            xs, ys = x[w], y[w]
            rim = np.zeros_like(xs)
            lens = np.zeros_like(xs)
            for ex, ey in _eye_centres(idn, st):
                rr = (np.abs((xs - ex) / lw) ** gp + np.abs((ys - ey - 0.006) / lh) ** gp) ** (1.0 / gp)
                sd_l = (rr - 1.0) * lh
                rim = np.maximum(rim, _cov(np.abs(sd_l) - t * 0.5, aa))
                lens = np.maximum(lens, _cov(sd_l, aa))
            by = ey0 - 0.012
            inner_x = idn.eye_dx - lw * 0.95
            bridge = _cov(np.maximum(np.abs(ys - by) - t * 0.45, np.abs(xs - yaw * 0.05) - inner_x), aa)
            outer = idn.eye_dx + lw * 0.95
            temple = _cov(np.maximum(np.abs(ys - by + 0.004) - t * 0.4,
                                     np.maximum(outer - np.abs(xs - yaw * 0.05), np.abs(xs) - a * 1.02)), aa)
            refl = 0.25 * np.exp(-((((xs + ys * 0.8) % 0.1) - 0.05) / 0.012) ** 2)
            _over(C[w], A[w], (0.75, 0.82, 0.9), lens * (0.1 + refl))
            _over(C[w], A[w], np.array(idn.glasses_rgb, _F), np.maximum(np.maximum(rim, bridge), temple))

    if not shading:
        return C, A, np.ones_like(x)

    # --- shading: head ellipsoid normal + nose ridge, body cylinder; Lambert + specular
    lx, ly = st.light_x, st.light_y
    lz = math.sqrt(max(0.05, 1.0 - lx * lx - ly * ly))
    nx = x / (a * 1.15)
    nyy = (y + 0.02) / (b * 1.2)
    w = _window(x, y, nose_x - idn.nose_w * 3.5, nose_x + idn.nose_w * 3.5, idn.eye_y - 0.02, ny_tip + 0.05)
    if w is not None:
        xs, ys = x[w], y[w]
        nose_m = np.exp(-(((ys - (idn.eye_y + ny_tip) * 0.5) / (idn.nose_len * 0.6)) ** 4)
                        - ((xs - nose_x) / (idn.nose_w * 1.6)) ** 2)
        nx[w] += 0.9 * np.tanh((xs - nose_x) / (idn.nose_w * 0.6)) * nose_m
        nyy[w] += 0.5 * np.exp(-(((xs - nose_x) / idn.nose_w) ** 2 + ((ys - ny_tip - 0.01) / 0.015) ** 2))
    q = nx * nx + nyy * nyy
    nz = np.sqrt(np.clip(1.0 - q, 0.03, 1.0))
    inv = 1.0 / np.sqrt(q + nz * nz)
    lam_h = np.clip((nx * lx + nyy * ly + nz * lz) * inv, 0.0, 1.0)
    nbx = np.clip(x / 0.9, -0.95, 0.95)
    lam_b = np.clip(nbx * lx + 0.25 * ly + np.sqrt(1.0 - nbx * nbx) * lz * 0.97, 0.0, 1.0)
    head = _cov(_ell_sd(x, y, 0.0, -0.03, a * 1.25, b * 1.18), aa * 6 + 0.03)
    lam = head * lam_h + (1.0 - head) * lam_b
    shade = st.ambient + (1.0 - st.ambient) * 1.1 * lam
    if wf is not None:  # Blinn specular on skin (forehead / nose tip / cheeks)
        hz = lz + 1.0
        hn = math.sqrt(lx * lx + ly * ly + hz * hz)
        spec = np.clip((nx[wf] * lx + nyy[wf] * ly + nz[wf] * hz) * inv[wf] / hn, 0.0, 1.0) ** 30 * face_cov[wf]
        C[wf] += (0.2 * spec)[..., None] * np.array([1.0, 0.97, 0.94], _F)
    return C, A, shade.astype(_F)


# --------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------


def _background(style: str, X, Y, rng: np.random.Generator) -> np.ndarray:
    H, W = X.shape
    n1 = rng.standard_normal((16, 16)).astype(_F)
    n2 = rng.standard_normal((64, 64)).astype(_F)
    lo = _sample_tex(n1, X * 3 + 5, Y * 3 + 5)
    hi = _sample_tex(n2, X * 24 + 5, Y * 24 + 5)
    jit = lambda c, s: np.clip(np.array(c, _F) + rng.normal(0, s, 3).astype(_F), 0.02, 1)  # noqa: E731
    if style == "backdrop":
        c0 = jit((0.55, 0.6, 0.66), 0.06) * rng.uniform(0.85, 1.15)
        cx, cy = rng.uniform(-0.3, 0.3, 2)
        r2 = (X - cx) ** 2 + (Y - cy) ** 2
        bg = c0 * (1.12 - 0.22 * r2 + 0.02 * lo)[..., None]
    elif style == "office":
        wall = jit((0.76, 0.72, 0.64), 0.05)
        bg = wall * (1.05 - 0.18 * (Y + 1) / 2 + 0.04 * lo + 0.015 * hi)[..., None]
        x0 = rng.choice([-1, 1]) * rng.uniform(0.55, 0.85)
        wd = rng.uniform(0.12, 0.3)
        door = _smooth(0.01, -0.01, np.abs(X - x0) - wd)
        bg = _paint(bg, jit((0.45, 0.33, 0.22), 0.05) * (0.9 + 0.06 * _sample_tex(n2, X * 4, Y * 60))[..., None], door)
        y0 = rng.uniform(-0.85, -0.5)
        shelf = _smooth(0.01, -0.01, np.abs(Y - y0) - 0.025)
        bg = _paint(bg, jit((0.3, 0.3, 0.32), 0.05), shelf)
        bg = bg * (1.0 + 0.25 * np.exp(-((Y + 1.1) / 0.35) ** 2))[..., None]
    elif style == "outdoor":
        hy = rng.uniform(-0.1, 0.35)
        sky_t = np.clip((Y + 1) / (hy + 1), 0, 1)[..., None]
        sky = jit((0.45, 0.62, 0.92), 0.05) * (1 - sky_t) + jit((0.85, 0.9, 0.95), 0.03) * sky_t
        sky = sky + 0.05 * _sample_tex(n1, X * 2, Y * 6)[..., None]
        leaves = 0.5 + 0.35 * lo + 0.35 * hi
        green = jit((0.22, 0.42, 0.18), 0.05)[None, None, :] * (0.6 + 0.8 * np.clip(leaves, 0, 1.5))[..., None]
        edge = hy + 0.08 * lo + 0.04 * hi
        bg = _paint(sky, green, _smooth(-0.01, 0.01, Y - edge))
        bx0 = rng.uniform(-0.9, 0.4)
        bld = _smooth(0.01, -0.01, np.maximum(np.abs(X - bx0 - 0.25) - 0.25, (hy - 0.45) - Y))
        win = (np.sin(X * 40) > 0.3) & (np.sin(Y * 40) > 0.2)
        bg = _paint(bg, jit((0.62, 0.6, 0.58), 0.05) * (1 - 0.25 * win)[..., None], bld * (Y < hy + 0.05))
    elif style == "tiles":
        p = rng.uniform(0.16, 0.28)
        tile = jit((0.78, 0.74, 0.64), 0.05)
        ix = np.floor(X / p + 10)
        iy = np.floor(Y / p + 10)
        var = _sample_tex(n2, ix * 7.3, iy * 3.1)
        grout = np.maximum(_box_stripe(X, p, 0, p * 0.07, 2.0 / W), _box_stripe(Y, p, 0, p * 0.07, 2.0 / H))
        bg = tile * (1.0 + 0.05 * var + 0.01 * hi)[..., None]
        bg = _paint(bg, tile * 0.55, grout)
        px0, py0 = rng.uniform(-0.95, 0.5), rng.uniform(-0.95, -0.3)
        poster = _smooth(0.01, -0.01, np.maximum(np.abs(X - px0 - 0.2) - 0.2, np.abs(Y - py0 - 0.15) - 0.15))
        pc = rng.uniform(0.1, 0.9, 3).astype(_F)
        bg = _paint(bg, pc * (0.8 + 0.2 * (np.sin(Y * 50) > 0))[..., None], poster)
    else:  # plain photo backdrop used in attack source material
        c0 = np.clip(rng.uniform(0.4, 0.9) + rng.normal(0, 0.07, 3), 0.05, 1).astype(_F)
        g = rng.uniform(-0.15, 0.15, 2)
        bg = c0 * (1.0 + g[0] * X + g[1] * Y + 0.02 * lo)[..., None]
    return np.clip(bg, 0.0, 1.2).astype(_F)


def _cast_shadow(X, Y, st: FrameState, strength: float) -> np.ndarray:
    """Soft shadow of head and shoulders on the backdrop (live depth cue)."""
    ox, oy = -st.light_x * 0.22, -st.light_y * 0.12
    s = st.scale * FACE_SCALE
    d1 = np.sqrt(((X - st.tx - ox) / (0.36 * s)) ** 2 + ((Y - st.ty - oy - 0.02) / (0.52 * s)) ** 2)
    d2 = np.where(Y > st.ty + 0.65 * s, np.abs(X - st.tx - ox) / (1.1 * s), 10.0)
    d = np.minimum(d1, d2)
    return (1.0 - strength * _smooth(1.35, 0.85, d)).astype(_F)


# --------------------------------------------------------------------------------------
# Video sampling
# --------------------------------------------------------------------------------------


def _live_states(rng, T: int, dom: DomainParams) -> list[FrameState]:
    base = dict(
        angle=rng.normal(0, 0.06), tx=rng.normal(0, 0.05), ty=-0.02 + rng.normal(0, 0.04),
        scale=rng.uniform(0.92, 1.08), yaw=rng.normal(0, 0.3),
        light_x=dom.light_dir[0] + rng.normal(0, 0.15), light_y=dom.light_dir[1] + rng.normal(0, 0.1),
        gaze_x=rng.normal(0, 0.3), gaze_y=rng.normal(0, 0.2), smile=rng.uniform(-0.2, 0.8),
        ambient=rng.uniform(0.3, 0.45),
    )
    out = []
    for _ in range(T):
        out.append(FrameState(
            angle=base["angle"] + rng.normal(0, 0.03),
            tx=base["tx"] + rng.normal(0, 0.015),
            ty=base["ty"] + rng.normal(0, 0.012),
            scale=base["scale"] * (1 + rng.normal(0, 0.012)),
            yaw=base["yaw"] + rng.normal(0, 0.15),
            eye_open=0.0 if rng.random() < 0.2 else float(rng.uniform(0.75, 1.0)),
            mouth_open=float(np.clip(rng.normal(0.05, 0.2), 0, 0.8)),
            smile=base["smile"] + rng.normal(0, 0.15),
            gaze_x=base["gaze_x"] + rng.normal(0, 0.2),
            gaze_y=base["gaze_y"] + rng.normal(0, 0.1),
            light_x=base["light_x"] + rng.normal(0, 0.03),
            light_y=base["light_y"] + rng.normal(0, 0.03),
            light_int=1.0 + rng.normal(0, dom.flicker),
            ambient=base["ambient"],
        ))
    return out


def _photo_state(rng) -> FrameState:
    """The (frontal, evenly lit, eyes open) photo an attacker prints."""
    return FrameState(
        angle=rng.normal(0, 0.03), tx=rng.normal(0, 0.03), ty=-0.02 + rng.normal(0, 0.03),
        scale=rng.uniform(0.95, 1.05), yaw=rng.normal(0, 0.1), eye_open=1.0,
        mouth_open=0.0, smile=rng.uniform(0.0, 0.6), gaze_x=0.0, gaze_y=0.0,
        light_x=rng.normal(0, 0.2), light_y=rng.uniform(-0.4, -0.1), ambient=rng.uniform(0.35, 0.55),
    )


def _medium_homographies(rng, T: int, handheld: float, base_scale: tuple[float, float]):
    """Per-frame 3x3 maps image -> medium coordinates (inverse of medium -> image)."""
    th0 = rng.normal(0, 0.05)
    t0 = rng.normal(0, 0.05, 2)
    s0 = rng.uniform(*base_scale)
    p0 = rng.normal(0, 0.06, 2)
    out = []
    for _ in range(T):
        th = th0 + rng.normal(0, 0.012 * handheld)
        t = t0 + rng.normal(0, 0.01 * handheld, 2)
        s = s0 * (1 + rng.normal(0, 0.008 * handheld))
        p = p0 + rng.normal(0, 0.01 * handheld, 2)
        c, si = math.cos(th), math.sin(th)
        Hm = np.array([[s * c, -s * si, t[0]], [s * si, s * c, t[1]], [p[0], p[1], 1.0]])
        out.append((np.linalg.inv(Hm), s))
    return out


def _apply_h(Hinv, X, Y):
    u = Hinv[0, 0] * X + Hinv[0, 1] * Y + Hinv[0, 2]
    v = Hinv[1, 0] * X + Hinv[1, 1] * Y + Hinv[1, 2]
    w = Hinv[2, 0] * X + Hinv[2, 1] * Y + Hinv[2, 2]
    return (u / w).astype(_F), (v / w).astype(_F)


# --------------------------------------------------------------------------------------
# Attack media
# --------------------------------------------------------------------------------------


def _print_medium(content, mx, my, h_med, dom: DomainParams, rng_vals: dict) -> np.ndarray:
    """Reflectance of a printed photo: gamut/contrast reduction, CMY halftone, paper."""
    c = np.clip(content, 0.0, 1.0)
    luma = c @ np.array([0.299, 0.587, 0.114], _F)
    c = luma[..., None] + rng_vals["print_sat"] * (c - luma[..., None])
    c = 0.5 + dom.print_contrast * (c - 0.5) + rng_vals["print_bias"]
    cmy = np.clip(1.0 - c, 0.0, 1.0) * 0.97
    P = dom.print_period * rng_vals["period_jit"]
    out = np.empty_like(c)
    paper = np.array(rng_vals["paper_rgb"], _F)
    for k, ang in enumerate((0.26, 1.31, 0.0)):
        ca, sa = math.cos(ang), math.sin(ang)
        u = (ca * mx + sa * my) * (2 * math.pi / P)
        v = (-sa * mx + ca * my) * (2 * math.pi / P)
        thr = 0.5 + 0.25 * (np.cos(u) + np.cos(v))
        # analytic anti-aliasing: soften the dot edges and fade the pattern towards its
        # mean coverage when the cells approach the sampling pixel size
        soft = max(0.06, 1.5 * h_med / P)
        damp = math.exp(-4.0 * (h_med / P) ** 2)
        cov = np.clip((cmy[..., k] - (1.0 - thr)) / soft + 0.5, 0.0, 1.0)
        cov = cmy[..., k] + (damp * rng_vals["halftone"]) * (cov - cmy[..., k])
        out[..., k] = paper[k] * (1.0 - 0.95 * cov)
    fib = _sample_tex(rng_vals["paper_tex"], mx * 150.0, my * 150.0)
    out *= (1.0 + 0.035 * fib)[..., None]
    return out


def _screen_emission(content, mx, my, h_med, dom: DomainParams, rv: dict) -> np.ndarray:
    """Light emitted by an LCD showing ``content`` (already sampled at pixel centres)."""
    c = np.clip(content, 0.0, 1.0) ** rv["screen_gamma"]
    c = c * np.array(rv["white_point"], _F)
    P = dom.screen_pitch * rv["pitch_jit"]
    rows = _box_stripe(my, P, 0.0, 0.82 * P, h_med) / 0.82
    out = np.empty_like(c)
    for k in range(3):
        col = _box_stripe(mx, P, k * P / 3.0, 0.85 * P / 3.0, h_med) / (0.85 / 3.0)
        out[..., k] = c[..., k] * (0.72 + 0.28 * col * rows) * rv["brightness"]
    return out


# --------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _colour_matrix(saturation: float, hue_deg: float) -> np.ndarray:
    """3x3 camera colour matrix: saturation about the luma axis, then a hue rotation
    about the grey axis (Rodrigues)."""
    luma = np.array([0.299, 0.587, 0.114])
    sat = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), luma)
    k = np.ones(3) / math.sqrt(3.0)
    t = math.radians(hue_deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = math.cos(t) * np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * np.outer(k, k)
    return (rot @ sat).astype(_F)


def _capture(rad: np.ndarray, dom: DomainParams, S: int, rng: np.random.Generator, vid: dict) -> np.ndarray:
    """Domain camera: area-sample, optics blur, sensor noise, colour pipeline, JPEG."""
    R = rad.shape[0]
    if R % S:
        img = _resize(rad, S, "area")
    else:
        k = R // S
        img = rad.reshape(S, k, R, 3).sum(1).reshape(S, S, k, 3).sum(2) * (1.0 / (k * k))
    Cn = max(8, int(round(S * dom.capture_scale)))
    if Cn != S:
        img = _resize(img, Cn, "area")
    img = _blur(img, vid["blur"] * Cn / S)
    # sensor noise (signal dependent, partly per channel)
    std = np.sqrt(dom.read_noise ** 2 + dom.shot_noise * np.clip(img, 0, None))
    nl = rng.standard_normal(img.shape[:2]).astype(_F)[..., None]
    nc = rng.standard_normal(img.shape).astype(_F)
    cn = dom.chroma_noise
    img = img + std * (math.sqrt(1 - cn) * nl + math.sqrt(cn) * nc)
    # colour pipeline
    img = img * (np.array(dom.wb_gains, _F) * vid["wb_jit"])
    img = img @ _colour_matrix(dom.saturation, dom.hue_deg).T
    img = np.clip(img, 0.0, None) ** dom.tone_gamma
    img = dom.black_level + (1.0 - dom.black_level) * (0.5 + dom.contrast * (img - 0.5))
    if Cn != S:
        img = _resize(img, S, "linear")
    if dom.sharpen > 0:
        img = img + dom.sharpen * (img - _blur(img, 1.0))
    u8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(vid["jpeg"]))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def default_supersample(image_size: int) -> int:
    """Render supersampling factor (the render is area-averaged down to the output)."""
    return 3 if image_size <= 128 else 2


def _as_index(value, names: Sequence[str]) -> int:
    if isinstance(value, str):
        return names.index(value)
    return int(value)


def render_video(
    seed: int | Sequence[int],
    video_id: int,
    identity: IdentityParams,
    domain: int | str,
    attack_type: int | str,
    num_frames: int = 4,
    image_size: int = 64,
    *,
    supersample: int | None = None,
) -> np.ndarray:
    """Renders one video: uint8 array (num_frames, image_size, image_size, 3).

    The video's randomness comes from ``np.random.default_rng([*seed, 2, video_id,
    domain, attack_type])`` only, so videos can be rendered in any order / in parallel.
    """
    d = _as_index(domain, DOMAINS)
    atk = _as_index(attack_type, ATTACK_TYPES)
    dom = DOMAIN_PARAMS[d]
    seeds = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]  # type: ignore[union-attr]
    rng = np.random.default_rng([*seeds, 2, int(video_id), d, atk])
    S = int(image_size)
    ss = supersample or default_supersample(S)
    R = S * ss
    c = ((np.arange(R, dtype=_F) + 0.5) / R * 2.0 - 1.0).astype(_F)
    X = np.broadcast_to(c[None, :], (R, R))
    Y = np.broadcast_to(c[:, None], (R, R))
    aa = 2.0 / R
    T = int(num_frames)
    det_n = int(min(512, max(128, 2 ** math.ceil(math.log2(R * FACE_SCALE)))))

    # video-level camera / scene variation (same domain, different session)
    vid = dict(
        blur=dom.blur_sigma * rng.uniform(0.8, 1.25),
        wb_jit=np.exp(rng.normal(0, 0.03, 3)).astype(_F),
        jpeg=int(np.clip(dom.jpeg_quality + rng.integers(-6, 7), 10, 98)),
        illum=dom.illum_level * rng.uniform(0.88, 1.12),
    )
    bg = _background(dom.background, X, Y, rng)
    # scene illumination (colour, level, a gentle gradient from the key light) and the
    # lens vignetting of the camera (applied to everything the camera sees)
    illum_map = (np.array(dom.illum_rgb, _F) * vid["illum"])[None, None, :] * (
        1.0 + 0.1 * (dom.light_dir[0] * X + dom.light_dir[1] * Y))[..., None]
    vign = (1.0 - 0.5 * dom.vignette * (X * X + Y * Y))[..., None]
    live = _live_states(rng, T, dom)
    frames = []

    if atk == LIVE:
        for st in live:
            C, A, shade = _render_person(X, Y, aa, identity, st, detail_n=det_n)
            scene = bg * _cast_shadow(X, Y, st, 0.3)[..., None] * (1 - A)[..., None] + C * shade[..., None]
            frames.append(_capture(scene * illum_map * vign * st.light_int, dom, S, rng, vid))
        return np.stack(frames)

    # ---------------- spoofs ----------------
    # The attack's source material (photo / recording of the subject) was shot either
    # in the same room during the collection (as in OULU-NPU) or somewhere else.
    src_rng = np.random.default_rng([*seeds, 3, int(video_id)])
    if src_rng.random() < 0.5:
        src_style = dom.background
    else:
        src_style = ("plain", "backdrop", "office", "outdoor", "tiles")[src_rng.integers(5)]
    env = bg * illum_map  # the real environment around the attack medium

    if atk == REPLAY:
        Hs = _medium_homographies(rng, T, handheld=rng.uniform(0.3, 1.5), base_scale=(0.95, 1.15))
        src_states = _live_states(rng, T, dom)  # the replayed recording has motion
        src_light = (rng.normal(0, 0.25), rng.uniform(-0.45, -0.15))
        src_states = [dataclasses.replace(s, light_x=src_light[0], light_y=src_light[1], light_int=1.0,
                                          ambient=0.5) for s in src_states]
        rv = dict(
            screen_gamma=dom.screen_gamma * rng.uniform(0.9, 1.1),
            white_point=(rng.uniform(0.86, 0.95), rng.uniform(0.95, 1.0), rng.uniform(1.0, 1.1)),
            pitch_jit=rng.uniform(0.85, 1.15),
            brightness=rng.uniform(0.95, 1.2),
        )
        half = (rng.uniform(0.82, 1.2), rng.uniform(0.9, 1.3))
        bezel_w = rng.uniform(0.05, 0.12)
        bezel_col = np.array([0.06, 0.06, 0.07], _F) * rng.uniform(0.6, 3.0)
        gx, gy = rng.uniform(-0.6, 0.6, 2)
        gs = rng.uniform(0.15, 0.35, 2)
        g_amp = dom.glare * rng.uniform(0.4, 1.3)
        P = dom.screen_pitch * rv["pitch_jit"]
        # the screen's pixel lattice: the recording is shown at one sample per pixel
        nx, ny = int(math.ceil(2 * half[0] / P)), int(math.ceil(2 * half[1] / P))
        lx_c = (-half[0] + (np.arange(nx, dtype=_F) + 0.5) * P).astype(_F)
        ly_c = (-half[1] + (np.arange(ny, dtype=_F) + 0.5) * P).astype(_F)
        LX = np.broadcast_to(lx_c[None, :], (ny, nx))
        LY = np.broadcast_to(ly_c[:, None], (ny, nx))
        sbg = _background(src_style, LX, LY, src_rng)
        glare = g_amp * np.exp(-(((X - gx) / gs[0]) ** 2 + ((Y - gy) / gs[1]) ** 2))
        for (Hinv, sm), sst in zip(Hs, src_states):
            C, A, shade = _render_person(LX, LY, P, identity, sst, detail_n=det_n)
            shown = sbg * _cast_shadow(LX, LY, sst, 0.2)[..., None] * (1 - A)[..., None] + C * shade[..., None]
            mx, my = _apply_h(Hinv, X, Y)
            h_med = aa / sm
            ix = np.clip(np.floor((mx + half[0]) / P).astype(np.int32), 0, nx - 1)
            iy = np.clip(np.floor((my + half[1]) / P).astype(np.int32), 0, ny - 1)
            content = shown.reshape(-1, 3)[iy * nx + ix]
            emit = _screen_emission(content, mx, my, h_med, dom, rv)
            screen_sd = np.maximum(np.abs(mx) - half[0], np.abs(my) - half[1])
            on_screen = _cov(screen_sd, h_med)
            device = _cov(screen_sd - bezel_w, h_med)
            rad_screen = emit + illum_map * (0.05 + glare[..., None])
            bezel = bezel_col * (1.0 + 0.6 * np.exp(-((screen_sd - bezel_w) / 0.01) ** 2))[..., None] * illum_map
            rad = env * (1 - device)[..., None] + bezel * (device - on_screen)[..., None] + rad_screen * on_screen[..., None]
            frames.append(_capture(rad * vign, dom, S, rng, vid))
        return np.stack(frames)

    # print / cut photo: one photo, printed once, hand held in front of the camera
    photo = _photo_state(rng)
    Hs = _medium_homographies(rng, T, handheld=rng.uniform(0.5, 2.0), base_scale=(0.95, 1.12))
    sm_mean = float(np.mean([s for _, s in Hs]))
    half = (rng.uniform(0.8, 1.25), rng.uniform(0.9, 1.35))
    bend = rng.uniform(0.0, 0.12)
    sheen_xy = rng.uniform(-0.8, 0.8, 2)
    sheen_amp = rng.uniform(0.0, 0.12)  # glossy photo paper reflects the room light
    rv = dict(
        print_sat=rng.uniform(0.75, 0.92),
        print_bias=rng.uniform(-0.03, 0.05),
        period_jit=rng.uniform(0.85, 1.15),
        halftone=rng.uniform(0.3, 1.0),  # laser (coarse dots) .. photo inkjet (fine dither)
        paper_rgb=(rng.uniform(0.9, 0.97), rng.uniform(0.89, 0.96), rng.uniform(0.82, 0.93)),
        paper_tex=rng.standard_normal((128, 128)).astype(_F),
    )
    # the printed photo (contone, before halftoning) on a regular grid over the paper
    g = 2.0 / R  # grid step ~ one render pixel
    gnx, gny = int(math.ceil(2 * half[0] / g)), int(math.ceil(2 * half[1] / g))
    px_c = (-half[0] + (np.arange(gnx, dtype=_F) + 0.5) * g).astype(_F)
    py_c = (-half[1] + (np.arange(gny, dtype=_F) + 0.5) * g).astype(_F)
    PX = np.broadcast_to(px_c[None, :], (gny, gnx))
    PY = np.broadcast_to(py_c[:, None], (gny, gnx))
    pbg = _background(src_style, PX, PY, src_rng)
    C, A, shade = _render_person(PX, PY, g, identity, photo, detail_n=det_n)
    # printing softens the photo (ink spread, printer resolution): 0.3-0.9 output px
    photo_img = _blur(pbg * (1 - A)[..., None] + C * shade[..., None], rng.uniform(0.3, 0.9) * ss / sm_mean)
    for (Hinv, sm), st in zip(Hs, live):
        mx, my = _apply_h(Hinv, X, Y)
        mxb = mx * (1.0 + bend * mx * mx)  # paper bent around the vertical axis
        h_med = aa / sm
        content = _bilinear(photo_img, (mxb + half[0]) / g - 0.5, (my + half[1]) / g - 0.5)
        refl = _print_medium(content, mxb, my, h_med, dom, rv)
        paper_shade = (1.0 - 1.5 * bend * mx * mx + 0.04 * rng.normal()) * (1.0 + 0.05 * (mx * 0.3 - my * 0.2))
        paper_sd = np.maximum(np.abs(mx) - half[0], np.abs(my) - half[1])
        on_paper = _cov(paper_sd, h_med)
        sheen = sheen_amp * np.exp(-((mx - sheen_xy[0]) ** 2 + (my - sheen_xy[1]) ** 2) / 0.5)
        rad_paper = refl * paper_shade[..., None] + sheen[..., None]
        if atk == CUT_PHOTO:
            # Eye holes cut in the photo; the wearer's live face behind it is aligned
            # with the printed eyes, so the real eyes (which blink) show through.
            wearer = dataclasses.replace(photo, eye_open=st.eye_open, gaze_x=st.gaze_x, gaze_y=st.gaze_y,
                                         light_x=st.light_x, light_y=st.light_y, ambient=st.ambient)
            fx, fy, fs = _face_coords(mxb, my, photo)
            hw, hh = identity.eye_w * 1.3, identity.eye_h * 1.7
            for ex, ey in _eye_centres(identity, photo):
                w = _window(fx, fy, ex - hw - 0.03, ex + hw + 0.03, ey - hh - 0.03, ey + hh + 0.03)
                if w is None:
                    continue
                sd_h = _ell_sd(fx[w], fy[w], ex, ey, hw, hh)
                hole = _cov(sd_h, h_med / fs)
                rim = np.exp(-(((sd_h - 0.005) / 0.006) ** 2)) * (1.0 - hole)
                Cl, _, shl = _render_person(mxb[w], my[w], h_med, identity, wearer, detail_n=det_n)
                live_rad = Cl * shl[..., None] * 0.9  # in the photo's shadow
                rp = rad_paper[w]
                rp *= (1.0 - hole)[..., None] * (1.0 - 0.35 * rim)[..., None]
                rp += live_rad * hole[..., None]
        rad = env * (1 - on_paper)[..., None] + rad_paper * illum_map * on_paper[..., None]
        frames.append(_capture(rad * vign * st.light_int, dom, S, rng, vid))
    return np.stack(frames)


def contact_sheet(seed: int = 0, image_size: int = 64, identities: int = 1, *, labels: bool = True) -> np.ndarray:
    """A uint8 grid for eyeballing the benchmark: one row per domain, one column per
    attack type (x ``identities``); attack types outside a domain's mix are left
    dark grey.  With ``labels`` a header and row names are drawn (Pillow's font)."""
    S = int(image_size)
    rows = []
    for d, dom in enumerate(DOMAIN_PARAMS):
        tiles = []
        for atk in range(len(ATTACK_TYPES)):
            for k in range(identities):
                if atk != LIVE and atk not in dom.attack_mix:
                    tiles.append(np.full((S, S, 3), 40, np.uint8))
                    continue
                idn = sample_identity(seed, 10_000 + d * 100 + k, d)
                tiles.append(render_video(seed, 10_000 + (d * 100 + k) * 10 + atk, idn, d, atk, 1, S)[0])
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    if not labels:
        return grid
    from PIL import ImageDraw

    pad_l, pad_t = 64, 16
    canvas = Image.new("RGB", (grid.shape[1] + pad_l, grid.shape[0] + pad_t), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (pad_l, pad_t))
    draw = ImageDraw.Draw(canvas)
    for atk, name in enumerate(ATTACK_TYPES):
        draw.text((pad_l + atk * identities * S + 2, 2), name, fill=(0, 0, 0))
    for d, name in enumerate(DOMAINS):
        draw.text((2, pad_t + d * S + S // 2 - 5), name, fill=(0, 0, 0))
    return np.asarray(canvas)
