"""The person: per-frame pose / expression / lighting (:class:`FrameState`) and the person renderer."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from dtda_jax.data.synthetic.identity import IdentityParams
from dtda_jax.data.synthetic.raster import cov, ell_sd, over, sample_tex, smooth, window

_F = np.float32

# Person placement: face coordinates are image coordinates ([-1, 1], y down) divided
# by FACE_SCALE, so a face of half-width ~0.31 covers ~45% of the image width.
FACE_SCALE = 1.45


@functools.lru_cache(maxsize=8)
def _identity_detail(texture_seed: int, n: int) -> np.ndarray:
    """Per-identity detail texture over face coordinates [-1, 1]^2, shape (2, n*n):
    channel 0 skin micro texture (blotches + pores), channel 1 hair strands (radiating
    from above the crown)."""
    rng = np.random.default_rng([texture_seed, 3])
    c = (np.arange(n, dtype=_F) + 0.5) / n * 2.0 - 1.0
    x = np.broadcast_to(c[None, :], (n, n))
    y = np.broadcast_to(c[:, None], (n, n))
    lo = sample_tex(rng.standard_normal((16, 16)).astype(_F), x * 14.0 + 3.0, y * 14.0 + 3.0)
    hi = sample_tex(rng.standard_normal((64, 64)).astype(_F), x * (n / 4.0), y * (n / 4.0))
    theta = np.arctan2(x, y + 0.8)
    r = np.sqrt(x * x + (y + 0.8) ** 2)
    s1 = sample_tex(rng.standard_normal((16, 256)).astype(_F), theta * (n / 4.5), r * 12.0)
    s2 = sample_tex(rng.standard_normal((16, 64)).astype(_F), theta * 30.0, r * 25.0)
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


def face_coords(X, Y, st: FrameState):
    """Image-plane coordinates -> face coordinates of frame ``st`` (shift, scale, rotation undone),
    and the image units per face unit."""
    s = st.scale * FACE_SCALE
    ca, sa = math.cos(st.angle), math.sin(st.angle)
    xs = (X - st.tx) / s
    ys = (Y - st.ty) / s
    return (ca * xs + sa * ys).astype(_F), (-sa * xs + ca * ys).astype(_F), s


def eye_centres(idn: IdentityParams, st: FrameState):
    """Face-coordinate centres of the two eyes, shifted by the yaw parallax."""
    off = st.yaw * 0.05
    return [(sg * idn.eye_dx + off, idn.eye_y) for sg in (-1.0, 1.0)]


def render_person(X, Y, aa_img, idn: IdentityParams, st: FrameState, *, detail_n: int = 256,
                  shading: bool = True):
    """Renders the person over transparency.

    X, Y are image-plane coordinates of the pixels (any 2-D arrays: a camera grid, a
    paper or screen mapped into the camera, a sub-window) and ``aa_img`` the pixel size
    in those units; ``detail_n`` the resolution of the identity detail texture (fixed
    per video so that skin / hair texture does not change between frames).  Returns
    premultiplied colour C (H,W,3), alpha A (H,W) and the shading field (H,W) that C
    is to be multiplied with.
    """
    x, y, s = face_coords(X, Y, st)
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
        w = window(x, y, -wa - 0.12, wa + 0.12, -b * 1.4, y_end + 0.05)
        if w is not None:
            xs, ys = x[w], y[w]
            wa_y = wa + (0.1 if style == 2 else 0.02) * np.clip(ys, 0, None)
            sd = np.maximum(np.abs(xs) - wa_y, ys - y_end - 0.02 * np.sin(xs * 30.0))
            top = ell_sd(xs, ys, 0.0, -0.03, a * 1.12 + 0.05 * vol, b * 1.07 + 0.05 * vol)
            sd = np.where(ys < -0.03, np.maximum(sd, top), sd)
            over(C[w], A[w], hair_alb[w] * 0.72, cov(sd, aa))

    # --- shirt / shoulders with a round neckline
    w = window(x, y, -10, 10, 0.35, 10)
    if w is not None:
        xs, ys = x[w], y[w]
        sh_y = 0.54 + 0.5 * np.clip(np.abs(xs) - 0.17, 0.0, None) ** 1.3
        sd_sh = np.maximum(sh_y - ys, -ell_sd(xs, ys, 0.0, 0.55, 0.13 + 0.02 * male, 0.08))
        shirt = np.array(idn.shirt_rgb, _F)
        fold = 1.0 + 0.06 * np.sin(xs * 9.0 + ys * 3.0)
        over(C[w], A[w], shirt[None, None, :] * fold[..., None], cov(sd_sh, aa))

    # --- neck (in the jaw's shadow at the top)
    nw = 0.13 + 0.03 * male
    w = window(x, y, -nw - 0.02, nw + 0.02, 0.05, 0.75)
    if w is not None:
        xs, ys = x[w], y[w]
        sd_n = np.maximum(np.abs(xs) - nw * (1.0 + 0.3 * smooth(0.45, 0.65, ys)), np.maximum(0.1 - ys, ys - 0.7))
        neck_col = skin[None, None, :] * (0.7 + 0.22 * smooth(b * 0.8, b * 0.8 + 0.2, ys))[..., None]
        over(C[w], A[w], neck_col, cov(sd_n, aa))

    # --- ears (covered by hair for medium / long styles)
    if style in (0, 3):
        for sg in (-1.0, 1.0):
            ex = sg * (a - 0.012) - yaw * 0.02
            w = window(x, y, ex - 0.07, ex + 0.07, -0.08, 0.12)
            if w is None:
                continue
            xs, ys = x[w], y[w]
            over(C[w], A[w], skin * 0.9, cov(ell_sd(xs, ys, ex, 0.02, 0.045, 0.08), aa))
            over(C[w], A[w], skin * 0.7, cov(ell_sd(xs, ys, ex + sg * 0.01, 0.025, 0.02, 0.045), aa) * 0.6)

    # --- face: jaw-tapered ellipse, skin micro texture, cheeks, eye-socket occlusion
    wf = window(x, y, -a - 0.03, a + 0.03, -b - 0.03, b + 0.03)
    face_cov = np.zeros_like(x)
    if wf is not None:
        xs, ys = x[wf], y[wf]
        a_eff = a * (1.0 - idn.jaw_taper * np.clip(ys / b, 0.0, 1.0) ** 2)
        face_cov[wf] = cov(ell_sd(xs, ys, 0.0, 0.0, a_eff, b), aa)
        tone = 1.0 + skin_d[wf]
        for ex, ey in eye_centres(idn, st):
            tone = tone - 0.1 * np.exp(-(((xs - ex) / (idn.eye_w * 1.7)) ** 2 + ((ys - ey + 0.008) / 0.05) ** 2))
        alb = skin[None, None, :] * tone[..., None]
        for sg in (-1.0, 1.0):  # cheeks: a little redder
            g = np.exp(-(((xs - sg * 0.15 - yaw * 0.02) / 0.07) ** 2 + ((ys - 0.1) / 0.06) ** 2))
            alb = alb * (1.0 - 0.07 * g[..., None] * np.array([0.0, 1.0, 0.8], _F))
        over(C[wf], A[wf], alb, face_cov[wf])

    nose_x = yaw * 0.1
    ny_tip = idn.eye_y + idn.nose_len
    # --- under-nose and under-lip shadows, nostrils
    w = window(x, y, nose_x - 0.1, nose_x + 0.1, ny_tip - 0.03, idn.mouth_y + 0.09)
    if w is not None:
        xs, ys = x[w], y[w]
        f = 1.0 - 0.2 * np.exp(-(((xs - nose_x) / 0.04) ** 2 + ((ys - ny_tip - 0.022) / 0.012) ** 2))
        f -= 0.12 * np.exp(-(((xs - yaw * 0.06) / 0.06) ** 2 + ((ys - idn.mouth_y - 0.05) / 0.012) ** 2))
        C[w] *= f[..., None]
        for sg in (-1.0, 1.0):
            sd_ns = ell_sd(xs, ys, nose_x + sg * idn.nose_w * 0.55, ny_tip + 0.006, 0.013, 0.0075)
            over(C[w], A[w], skin * 0.35, cov(sd_ns, aa) * 0.85)

    # --- wrinkles (not young): forehead lines, nasolabial folds, crow's feet
    if idn.wrinkles > 0 and wf is not None:
        xs, ys = x[wf], y[wf]
        lines = np.zeros_like(xs)
        for k in range(3):
            yk = idn.eye_y - 0.14 - 0.03 * k + 0.008 * np.sin(xs * 9.0 + k)
            lines += np.exp(-(((ys - yk) / 0.0045) ** 2)) * smooth(0.2, 0.12, np.abs(xs))
        for sg in (-1.0, 1.0):
            xf = sg * (idn.nose_w + 0.02 + 0.45 * (ys - ny_tip + 0.02)) + yaw * 0.07
            lines += 1.3 * np.exp(-(((xs - xf) / 0.005) ** 2)) * smooth(ny_tip - 0.03, ny_tip, ys) * smooth(
                idn.mouth_y + 0.04, idn.mouth_y + 0.01, ys)
            ex = sg * (idn.eye_dx + idn.eye_w + 0.02)
            for k in (-1, 0, 1):
                lines += 0.8 * np.exp(-((((ys - idn.eye_y) - k * 0.5 * (xs - ex) * sg - 0.012 * k) / 0.004) ** 2)
                                      - ((xs - ex) / 0.015) ** 2)
        C[wf] *= (1.0 - 0.22 * idn.wrinkles * np.clip(lines, 0, 1) * face_cov[wf])[..., None]

    # --- beard / moustache
    if idn.beard > 0:
        w = window(x, y, -a - 0.05, a + 0.05, idn.mouth_y - 0.12, b * 1.1)
        if w is not None:
            xs, ys = x[w], y[w]
            a_eff = a * (1.0 - idn.jaw_taper * np.clip(ys / b, 0.0, 1.0) ** 2)
            bsd = np.maximum(ell_sd(xs, ys, 0.0, 0.0, a_eff * 1.02, b * 1.05), (idn.mouth_y - 0.06) - ys)
            mst = ell_sd(xs, ys, yaw * 0.06, idn.mouth_y - 0.033, idn.mouth_w * 1.15, 0.016)
            bsd = np.minimum(bsd, mst)
            dens = idn.beard * (0.5 + 0.5 * np.clip(0.5 + 0.6 * strands[w], 0, 1))
            over(C[w], A[w], hair_alb[w] * 0.75, cov(bsd, aa) * dens)

    # --- mouth: lips, opening, teeth; smile raises the corners
    w_m = idn.mouth_w
    w = window(x, y, yaw * 0.06 - w_m * 1.3, yaw * 0.06 + w_m * 1.3, idn.mouth_y - 0.07, idn.mouth_y + 0.07)
    if w is not None:
        xs, ys = x[w], y[w]
        dx = xs - yaw * 0.06
        m = st.mouth_open
        dy = ys - idn.mouth_y + st.smile * 0.03 * (dx / w_m) ** 2
        lips = cov(ell_sd(dx, dy, 0.0, 0.004 * m, w_m, idn.lip_t * (1.0 + 0.9 * m)), aa)
        lip_col = np.array(idn.lip_rgb, _F)[None, None, :] * (0.95 + 0.15 * smooth(0.0, idn.lip_t, dy))[..., None]
        over(C[w], A[w], lip_col, lips)
        inner_h = 0.0025 + 0.03 * m
        inner = cov(ell_sd(dx, dy, 0.0, 0.003 * m, w_m * 0.86, inner_h), aa)
        over(C[w], A[w], (0.22, 0.07, 0.07), inner)
        if m > 0.15:
            teeth = inner * cov(dy - (-inner_h * 0.25 + 0.003 * m), aa) * smooth(w_m * 0.8, w_m * 0.5, np.abs(dx))
            over(C[w], A[w], (0.85, 0.82, 0.76), teeth * 0.9)

    # --- eyes: sclera, iris, pupil, catch light, lids (blink), crease
    o = max(st.eye_open, 0.06)
    for ex, ey in eye_centres(idn, st):
        w = window(x, y, ex - idn.eye_w * 1.8, ex + idn.eye_w * 1.8, ey - idn.eye_h * 2.6, ey + idn.eye_h * 2.2)
        if w is None:
            continue
        xs, ys = x[w], y[w]
        Cw, Aw = C[w], A[w]
        dx = xs - ex
        dy = ys - ey
        he = idn.eye_h * o
        cy_e = idn.eye_h * (1 - o) * 0.35
        eye_sd = ell_sd(dx, dy, 0.0, cy_e, idn.eye_w, he)
        sclera = cov(eye_sd, aa)
        Cw *= (1.0 - 0.12 * np.exp(-((dx / (idn.eye_w * 1.1)) ** 2 + ((dy + idn.eye_h * 1.25) / 0.012) ** 2)))[..., None]
        over(Cw, Aw, (0.9, 0.87, 0.84), sclera)
        ix = ex + st.gaze_x * idn.eye_w * 0.35
        iy = ey + st.gaze_y * idn.eye_h * 0.3 + cy_e * 0.5
        r = np.sqrt((xs - ix) ** 2 + (ys - iy) ** 2)
        iris = cov(r - idn.iris_r, aa) * sclera
        iris_col = np.array(idn.iris_rgb, _F)[None, None, :] * (1.0 - 0.5 * np.clip(r / idn.iris_r, 0, 1) ** 4)[..., None]
        over(Cw, Aw, iris_col, iris)
        over(Cw, Aw, (0.02, 0.02, 0.02), cov(r - idn.iris_r * 0.42, aa) * sclera)
        cl = np.sqrt((xs - ix + idn.iris_r * 0.35) ** 2 + (ys - iy + idn.iris_r * 0.35) ** 2)
        over(Cw, Aw, (1.0, 1.0, 1.0), cov(cl - idn.iris_r * 0.2, aa) * sclera * 0.85)
        lid_t = 0.006 + 0.004 * (1 - male)
        lid = cov(np.abs(eye_sd + lid_t * 0.5) - lid_t * 0.5, aa) * smooth(0.2 * idn.eye_h, -0.2 * idn.eye_h, dy - cy_e)
        over(Cw, Aw, (0.08, 0.05, 0.04), lid * 0.9)
        Cw *= (1.0 - 0.1 * np.exp(-((dx / idn.eye_w) ** 2 + ((dy - idn.eye_h * 1.15) / 0.008) ** 2)))[..., None]

    # --- brows
    brow = np.array(idn.brow_rgb, _F)
    for (ex, ey), sg in zip(eye_centres(idn, st), (-1.0, 1.0)):
        bx = ex + sg * 0.012
        by = ey - idn.eye_h - idn.brow_dy * 0.6
        w = window(x, y, bx - idn.brow_w * 1.1, bx + idn.brow_w * 1.1, by - 0.05, by + 0.03)
        if w is None:
            continue
        xs, ys = x[w], y[w]
        u = (xs - bx) * sg / idn.brow_w
        arc = by - idn.brow_arch * (1.0 - u * u) + 0.01 * u
        th = idn.brow_t * (1.0 - 0.55 * np.clip(u, 0, 1) ** 2) * 0.5
        sd_b = np.maximum(np.abs(ys - arc) - th, (np.abs(u) - 1.0) * idn.brow_w)
        over(C[w], A[w], brow[None, None, :] * (0.9 + 0.2 * strands[w][..., None]), cov(sd_b, aa) * 0.92)

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
    w = window(x, y, -cap_a - 0.02, cap_a + 0.02, -0.02 - cap_b - 0.02, max(hc, hs) + 0.03)
    if w is not None:
        xs, ys = x[w], y[w]
        hairline = hc + (hs - hc) * np.clip(np.abs(xs) / (a * 0.95), 0.0, 1.0) ** 2.5
        if idn.fringe:
            hairline = hairline + 0.012 * np.sin(xs * 60.0 + 1.0)
        sd_cap = np.maximum(ell_sd(xs, ys, 0.0, -0.02, cap_a, cap_b), ys - hairline)
        alpha = cov(sd_cap, aa)
        if style == 3:  # receding: sparse on top
            alpha = alpha * (1.0 - 0.5 * smooth(0.18, 0.05, np.abs(xs)) * smooth(-0.3, -0.4, ys))
        sheen = 0.2 * np.exp(-(((ys + b * 0.78) / 0.05) ** 2)) * (0.6 + 0.4 * strands[w])
        over(C[w], A[w], hair_alb[w] * (1.0 + sheen)[..., None], alpha)

    # --- glasses: rims, bridge, temples, faint lens tint with reflections
    if idn.glasses:
        gp = idn.glasses_p
        lw, lh = idn.eye_w * 1.55, idn.eye_w * 1.12
        t = 0.009
        ey0 = idn.eye_y
        w = window(x, y, -a * 1.05, a * 1.05, ey0 - lh - 0.03, ey0 + lh + 0.03)
        if w is not None:
            xs, ys = x[w], y[w]
            rim = np.zeros_like(xs)
            lens = np.zeros_like(xs)
            for ex, ey in eye_centres(idn, st):
                rr = (np.abs((xs - ex) / lw) ** gp + np.abs((ys - ey - 0.006) / lh) ** gp) ** (1.0 / gp)
                sd_l = (rr - 1.0) * lh
                rim = np.maximum(rim, cov(np.abs(sd_l) - t * 0.5, aa))
                lens = np.maximum(lens, cov(sd_l, aa))
            by = ey0 - 0.012
            inner_x = idn.eye_dx - lw * 0.95
            bridge = cov(np.maximum(np.abs(ys - by) - t * 0.45, np.abs(xs - yaw * 0.05) - inner_x), aa)
            outer = idn.eye_dx + lw * 0.95
            temple = cov(np.maximum(np.abs(ys - by + 0.004) - t * 0.4,
                                    np.maximum(outer - np.abs(xs - yaw * 0.05), np.abs(xs) - a * 1.02)), aa)
            refl = 0.25 * np.exp(-((((xs + ys * 0.8) % 0.1) - 0.05) / 0.012) ** 2)
            over(C[w], A[w], (0.75, 0.82, 0.9), lens * (0.1 + refl))
            over(C[w], A[w], np.array(idn.glasses_rgb, _F), np.maximum(np.maximum(rim, bridge), temple))

    if not shading:
        return C, A, np.ones_like(x)

    # --- shading: head ellipsoid normal + nose ridge, body cylinder; Lambert + specular
    lx, ly = st.light_x, st.light_y
    lz = math.sqrt(max(0.05, 1.0 - lx * lx - ly * ly))
    nx = x / (a * 1.15)
    nyy = (y + 0.02) / (b * 1.2)
    w = window(x, y, nose_x - idn.nose_w * 3.5, nose_x + idn.nose_w * 3.5, idn.eye_y - 0.02, ny_tip + 0.05)
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
    head = cov(ell_sd(x, y, 0.0, -0.03, a * 1.25, b * 1.18), aa * 6 + 0.03)
    lam = head * lam_h + (1.0 - head) * lam_b
    shade = st.ambient + (1.0 - st.ambient) * 1.1 * lam
    if wf is not None:  # Blinn specular on skin (forehead / nose tip / cheeks)
        hz = lz + 1.0
        hn = math.sqrt(lx * lx + ly * ly + hz * hz)
        spec = np.clip((nx[wf] * lx + nyy[wf] * ly + nz[wf] * hz) * inv[wf] / hn, 0.0, 1.0) ** 30 * face_cov[wf]
        C[wf] += (0.2 * spec)[..., None] * np.array([1.0, 0.97, 0.94], _F)
    return C, A, shade.astype(_F)
