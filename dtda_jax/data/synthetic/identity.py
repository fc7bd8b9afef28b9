"""Synthetic subjects: identity parameters, their sampling and the binary attributes."""

from __future__ import annotations

import dataclasses

import numpy as np

from dtda_jax.data.synthetic.domains import DOMAIN_PARAMS

_F = np.float32

ATTRIBUTES = ("black_hair", "blond_hair", "brown_hair", "male", "young")

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
