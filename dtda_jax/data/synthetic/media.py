"""Attack media: the reflectance of a printed photo and the light emitted by a replay screen."""

from __future__ import annotations

import math

import numpy as np

from dtda_jax.data.synthetic.domains import DomainParams
from dtda_jax.data.synthetic.raster import box_stripe, sample_tex

_F = np.float32


def print_medium(content, mx, my, h_med, dom: DomainParams, rng_vals: dict) -> np.ndarray:
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
    fib = sample_tex(rng_vals["paper_tex"], mx * 150.0, my * 150.0)
    out *= (1.0 + 0.035 * fib)[..., None]
    return out


def screen_emission(content, mx, my, h_med, dom: DomainParams, rv: dict) -> np.ndarray:
    """Light emitted by an LCD showing ``content`` (already sampled at pixel centres)."""
    c = np.clip(content, 0.0, 1.0) ** rv["screen_gamma"]
    c = c * np.array(rv["white_point"], _F)
    P = dom.screen_pitch * rv["pitch_jit"]
    rows = box_stripe(my, P, 0.0, 0.82 * P, h_med) / 0.82
    out = np.empty_like(c)
    for k in range(3):
        col = box_stripe(mx, P, k * P / 3.0, 0.85 * P / 3.0, h_med) / (0.85 / 3.0)
        out[..., k] = c[..., k] * (0.72 + 0.28 * col * rows) * rv["brightness"]
    return out
