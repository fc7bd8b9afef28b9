"""The scene: backgrounds, cast shadow, per-frame live / photo states, attack-medium homographies."""

from __future__ import annotations

import math

import numpy as np

from dtda_jax.data.synthetic.domains import DomainParams
from dtda_jax.data.synthetic.face import FACE_SCALE, FrameState
from dtda_jax.data.synthetic.raster import box_stripe, paint, sample_tex, smooth

_F = np.float32


def background(style: str, X, Y, rng: np.random.Generator) -> np.ndarray:
    """Background image (H, W, 3) of ``style`` (a domain's ``background``, or ``"plain"``) at X, Y."""
    H, W = X.shape
    n1 = rng.standard_normal((16, 16)).astype(_F)
    n2 = rng.standard_normal((64, 64)).astype(_F)
    lo = sample_tex(n1, X * 3 + 5, Y * 3 + 5)
    hi = sample_tex(n2, X * 24 + 5, Y * 24 + 5)
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
        door = smooth(0.01, -0.01, np.abs(X - x0) - wd)
        bg = paint(bg, jit((0.45, 0.33, 0.22), 0.05) * (0.9 + 0.06 * sample_tex(n2, X * 4, Y * 60))[..., None], door)
        y0 = rng.uniform(-0.85, -0.5)
        shelf = smooth(0.01, -0.01, np.abs(Y - y0) - 0.025)
        bg = paint(bg, jit((0.3, 0.3, 0.32), 0.05), shelf)
        bg = bg * (1.0 + 0.25 * np.exp(-((Y + 1.1) / 0.35) ** 2))[..., None]
    elif style == "outdoor":
        hy = rng.uniform(-0.1, 0.35)
        sky_t = np.clip((Y + 1) / (hy + 1), 0, 1)[..., None]
        sky = jit((0.45, 0.62, 0.92), 0.05) * (1 - sky_t) + jit((0.85, 0.9, 0.95), 0.03) * sky_t
        sky = sky + 0.05 * sample_tex(n1, X * 2, Y * 6)[..., None]
        leaves = 0.5 + 0.35 * lo + 0.35 * hi
        green = jit((0.22, 0.42, 0.18), 0.05)[None, None, :] * (0.6 + 0.8 * np.clip(leaves, 0, 1.5))[..., None]
        edge = hy + 0.08 * lo + 0.04 * hi
        bg = paint(sky, green, smooth(-0.01, 0.01, Y - edge))
        bx0 = rng.uniform(-0.9, 0.4)
        bld = smooth(0.01, -0.01, np.maximum(np.abs(X - bx0 - 0.25) - 0.25, (hy - 0.45) - Y))
        win = (np.sin(X * 40) > 0.3) & (np.sin(Y * 40) > 0.2)
        bg = paint(bg, jit((0.62, 0.6, 0.58), 0.05) * (1 - 0.25 * win)[..., None], bld * (Y < hy + 0.05))
    elif style == "tiles":
        p = rng.uniform(0.16, 0.28)
        tile = jit((0.78, 0.74, 0.64), 0.05)
        ix = np.floor(X / p + 10)
        iy = np.floor(Y / p + 10)
        var = sample_tex(n2, ix * 7.3, iy * 3.1)
        grout = np.maximum(box_stripe(X, p, 0, p * 0.07, 2.0 / W), box_stripe(Y, p, 0, p * 0.07, 2.0 / H))
        bg = tile * (1.0 + 0.05 * var + 0.01 * hi)[..., None]
        bg = paint(bg, tile * 0.55, grout)
        px0, py0 = rng.uniform(-0.95, 0.5), rng.uniform(-0.95, -0.3)
        poster = smooth(0.01, -0.01, np.maximum(np.abs(X - px0 - 0.2) - 0.2, np.abs(Y - py0 - 0.15) - 0.15))
        pc = rng.uniform(0.1, 0.9, 3).astype(_F)
        bg = paint(bg, pc * (0.8 + 0.2 * (np.sin(Y * 50) > 0))[..., None], poster)
    else:  # plain photo backdrop used in attack source material
        c0 = np.clip(rng.uniform(0.4, 0.9) + rng.normal(0, 0.07, 3), 0.05, 1).astype(_F)
        g = rng.uniform(-0.15, 0.15, 2)
        bg = c0 * (1.0 + g[0] * X + g[1] * Y + 0.02 * lo)[..., None]
    return np.clip(bg, 0.0, 1.2).astype(_F)


def cast_shadow(X, Y, st: FrameState, strength: float) -> np.ndarray:
    """Soft shadow of head and shoulders on the backdrop (live depth cue)."""
    ox, oy = -st.light_x * 0.22, -st.light_y * 0.12
    s = st.scale * FACE_SCALE
    d1 = np.sqrt(((X - st.tx - ox) / (0.36 * s)) ** 2 + ((Y - st.ty - oy - 0.02) / (0.52 * s)) ** 2)
    d2 = np.where(Y > st.ty + 0.65 * s, np.abs(X - st.tx - ox) / (1.1 * s), 10.0)
    d = np.minimum(d1, d2)
    return (1.0 - strength * smooth(1.35, 0.85, d)).astype(_F)


def live_states(rng, T: int, dom: DomainParams) -> list[FrameState]:
    """States of the T frames of a live video: a video-level pose, gaze, smile and light plus
    per-frame jitter, blinks, mouth movement and light flicker."""
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


def photo_state(rng) -> FrameState:
    """The (frontal, evenly lit, eyes open) photo an attacker prints."""
    return FrameState(
        angle=rng.normal(0, 0.03), tx=rng.normal(0, 0.03), ty=-0.02 + rng.normal(0, 0.03),
        scale=rng.uniform(0.95, 1.05), yaw=rng.normal(0, 0.1), eye_open=1.0,
        mouth_open=0.0, smile=rng.uniform(0.0, 0.6), gaze_x=0.0, gaze_y=0.0,
        light_x=rng.normal(0, 0.2), light_y=rng.uniform(-0.4, -0.1), ambient=rng.uniform(0.35, 0.55),
    )


def medium_homographies(rng, T: int, handheld: float, base_scale: tuple[float, float]):
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


def apply_h(Hinv, X, Y):
    """Maps coordinates X, Y through the 3x3 homography ``Hinv`` (with the projective divide)."""
    u = Hinv[0, 0] * X + Hinv[0, 1] * Y + Hinv[0, 2]
    v = Hinv[1, 0] * X + Hinv[1, 1] * Y + Hinv[1, 2]
    w = Hinv[2, 0] * X + Hinv[2, 1] * Y + Hinv[2, 2]
    return (u / w).astype(_F), (v / w).astype(_F)
