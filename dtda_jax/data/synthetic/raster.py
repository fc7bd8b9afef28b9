"""Drawing primitives: smoothstep, signed distances, coverage, compositing, textures, resampling, blur."""

from __future__ import annotations

import functools
import math

import numpy as np

_F = np.float32


def smooth(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of x from edge e0 (0) to edge e1 (1); e1 < e0 gives a falling step."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ell_sd(x, y, cx, cy, a, b):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    px = (x - cx) / a
    py = (y - cy) / b
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt((px / a) ** 2 + (py / b) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def cov(sd, aa):
    """Anti-aliased coverage of the region sd < 0 for a pixel of size aa."""
    return np.clip(0.5 - sd / aa, 0.0, 1.0)


def over(C, A, col, alpha):
    """In-place premultiplied 'over' of a layer (colour (3,) or (...,3), alpha) onto
    C, A (which may be views of a window of the full arrays)."""
    a = alpha[..., None]
    C *= 1.0 - a
    C += np.asarray(col, _F) * a
    A *= 1.0 - alpha
    A += alpha


def paint(img, col, alpha):
    """In-place alpha blend of colour ``col`` onto an (..., 3) image; returns the image."""
    a = alpha[..., None]
    img *= 1.0 - a
    img += np.asarray(col, _F) * a
    return img


def sample_tex(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def window(x, y, x0, x1, y0, y1):
    """Pixel window where the (face) coordinates fall inside [x0, x1] x [y0, y1]."""
    return _bbox((x > x0) & (x < x1) & (y > y0) & (y < y1))


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


def resize(img: np.ndarray, n_out: int, kind: str) -> np.ndarray:
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


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
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


def box_stripe(x: np.ndarray, period: float, start: float, width: float, h: float) -> np.ndarray:
    """Box-filtered (footprint h) periodic indicator of [start, start+width) mod period."""

    def cum(t):
        n = np.floor(t / period)
        r = t - n * period
        return n * width + np.clip(r - start, 0.0, width)

    return ((cum(x + 0.5 * h) - cum(x - 0.5 * h)) / h).astype(_F)
