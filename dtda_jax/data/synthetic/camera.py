"""The domain camera: area sampling, optics blur, sensor noise, colour pipeline and JPEG."""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image

from dtda_jax.data.synthetic.domains import DomainParams
from dtda_jax.data.synthetic.raster import blur, resize

_F = np.float32


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


def capture(rad: np.ndarray, dom: DomainParams, S: int, rng: np.random.Generator, vid: dict) -> np.ndarray:
    """Domain camera: area-sample, optics blur, sensor noise, colour pipeline, JPEG."""
    R = rad.shape[0]
    if R % S:
        img = resize(rad, S, "area")
    else:
        k = R // S
        img = rad.reshape(S, k, R, 3).sum(1).reshape(S, S, k, 3).sum(2) * (1.0 / (k * k))
    Cn = max(8, int(round(S * dom.capture_scale)))
    if Cn != S:
        img = resize(img, Cn, "area")
    img = blur(img, vid["blur"] * Cn / S)
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
        img = resize(img, S, "linear")
    if dom.sharpen > 0:
        img = img + dom.sharpen * (img - blur(img, 1.0))
    u8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(vid["jpeg"]))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)
