"""Videos: :func:`render_video` (live and attack scenes through the domain camera), :func:`contact_sheet`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from dtda_jax.data.synthetic.camera import capture
from dtda_jax.data.synthetic.domains import (ATTACK_TYPES, CUT_PHOTO, DOMAIN_PARAMS, DOMAINS, LIVE, REPLAY,
                                             DomainParams)
from dtda_jax.data.synthetic.face import FACE_SCALE, eye_centres, face_coords, render_person
from dtda_jax.data.synthetic.identity import IdentityParams, sample_identity
from dtda_jax.data.synthetic.media import print_medium, screen_emission
from dtda_jax.data.synthetic.raster import bilinear, blur, cov, ell_sd, window
from dtda_jax.data.synthetic.scene import (
    apply_h,
    background,
    cast_shadow,
    live_states,
    medium_homographies,
    photo_state,
)

_F = np.float32


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
    pipeline: DomainParams | None = None,
) -> np.ndarray:
    """Renders one video: uint8 array (num_frames, image_size, image_size, 3).

    The video's randomness comes from ``np.random.default_rng([*seed, 2, video_id,
    domain, attack_type])`` only, so videos can be rendered in any order / in parallel.
    ``pipeline`` replaces the domain's parameters (e.g. a random capture pipeline,
    :func:`.domains.random_capture`); `domain` then only seeds the video's randomness.
    """
    d = _as_index(domain, DOMAINS)
    atk = _as_index(attack_type, ATTACK_TYPES)
    dom = DOMAIN_PARAMS[d] if pipeline is None else pipeline
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
    bg = background(dom.background, X, Y, rng)
    # scene illumination (colour, level, a gentle gradient from the key light) and the
    # lens vignetting of the camera (applied to everything the camera sees)
    illum_map = (np.array(dom.illum_rgb, _F) * vid["illum"])[None, None, :] * (
        1.0 + 0.1 * (dom.light_dir[0] * X + dom.light_dir[1] * Y))[..., None]
    vign = (1.0 - 0.5 * dom.vignette * (X * X + Y * Y))[..., None]
    live = live_states(rng, T, dom)
    frames = []

    if atk == LIVE:
        for st in live:
            C, A, shade = render_person(X, Y, aa, identity, st, detail_n=det_n)
            scene = bg * cast_shadow(X, Y, st, 0.3)[..., None] * (1 - A)[..., None] + C * shade[..., None]
            frames.append(capture(scene * illum_map * vign * st.light_int, dom, S, rng, vid))
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
        Hs = medium_homographies(rng, T, handheld=rng.uniform(0.3, 1.5), base_scale=(0.95, 1.15))
        src_states = live_states(rng, T, dom)  # the replayed recording has motion
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
        sbg = background(src_style, LX, LY, src_rng)
        glare = g_amp * np.exp(-(((X - gx) / gs[0]) ** 2 + ((Y - gy) / gs[1]) ** 2))
        for (Hinv, sm), sst in zip(Hs, src_states):
            C, A, shade = render_person(LX, LY, P, identity, sst, detail_n=det_n)
            shown = sbg * cast_shadow(LX, LY, sst, 0.2)[..., None] * (1 - A)[..., None] + C * shade[..., None]
            mx, my = apply_h(Hinv, X, Y)
            h_med = aa / sm
            ix = np.clip(np.floor((mx + half[0]) / P).astype(np.int32), 0, nx - 1)
            iy = np.clip(np.floor((my + half[1]) / P).astype(np.int32), 0, ny - 1)
            content = shown.reshape(-1, 3)[iy * nx + ix]
            emit = screen_emission(content, mx, my, h_med, dom, rv)
            screen_sd = np.maximum(np.abs(mx) - half[0], np.abs(my) - half[1])
            on_screen = cov(screen_sd, h_med)
            device = cov(screen_sd - bezel_w, h_med)
            rad_screen = emit + illum_map * (0.05 + glare[..., None])
            bezel = bezel_col * (1.0 + 0.6 * np.exp(-((screen_sd - bezel_w) / 0.01) ** 2))[..., None] * illum_map
            rad = env * (1 - device)[..., None] + bezel * (device - on_screen)[..., None] + rad_screen * on_screen[..., None]
            frames.append(capture(rad * vign, dom, S, rng, vid))
        return np.stack(frames)

    # print / cut photo: one photo, printed once, hand held in front of the camera
    photo = photo_state(rng)
    Hs = medium_homographies(rng, T, handheld=rng.uniform(0.5, 2.0), base_scale=(0.95, 1.12))
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
    pbg = background(src_style, PX, PY, src_rng)
    C, A, shade = render_person(PX, PY, g, identity, photo, detail_n=det_n)
    # printing softens the photo (ink spread, printer resolution): 0.3-0.9 output px
    photo_img = blur(pbg * (1 - A)[..., None] + C * shade[..., None], rng.uniform(0.3, 0.9) * ss / sm_mean)
    for (Hinv, sm), st in zip(Hs, live):
        mx, my = apply_h(Hinv, X, Y)
        mxb = mx * (1.0 + bend * mx * mx)  # paper bent around the vertical axis
        h_med = aa / sm
        content = bilinear(photo_img, (mxb + half[0]) / g - 0.5, (my + half[1]) / g - 0.5)
        refl = print_medium(content, mxb, my, h_med, dom, rv)
        paper_shade = (1.0 - 1.5 * bend * mx * mx + 0.04 * rng.normal()) * (1.0 + 0.05 * (mx * 0.3 - my * 0.2))
        paper_sd = np.maximum(np.abs(mx) - half[0], np.abs(my) - half[1])
        on_paper = cov(paper_sd, h_med)
        sheen = sheen_amp * np.exp(-((mx - sheen_xy[0]) ** 2 + (my - sheen_xy[1]) ** 2) / 0.5)
        rad_paper = refl * paper_shade[..., None] + sheen[..., None]
        if atk == CUT_PHOTO:
            # Eye holes cut in the photo; the wearer's live face behind it is aligned
            # with the printed eyes, so the real eyes (which blink) show through.
            wearer = dataclasses.replace(photo, eye_open=st.eye_open, gaze_x=st.gaze_x, gaze_y=st.gaze_y,
                                         light_x=st.light_x, light_y=st.light_y, ambient=st.ambient)
            fx, fy, fs = face_coords(mxb, my, photo)
            hw, hh = identity.eye_w * 1.3, identity.eye_h * 1.7
            for ex, ey in eye_centres(identity, photo):
                w = window(fx, fy, ex - hw - 0.03, ex + hw + 0.03, ey - hh - 0.03, ey + hh + 0.03)
                if w is None:
                    continue
                sd_h = ell_sd(fx[w], fy[w], ex, ey, hw, hh)
                hole = cov(sd_h, h_med / fs)
                rim = np.exp(-(((sd_h - 0.005) / 0.006) ** 2)) * (1.0 - hole)
                Cl, _, shl = render_person(mxb[w], my[w], h_med, identity, wearer, detail_n=det_n)
                live_rad = Cl * shl[..., None] * 0.9  # in the photo's shadow
                rp = rad_paper[w]
                rp *= (1.0 - hole)[..., None] * (1.0 - 0.35 * rim)[..., None]
                rp += live_rad * hole[..., None]
        rad = env * (1 - on_paper)[..., None] + rad_paper * illum_map * on_paper[..., None]
        frames.append(capture(rad * vign * st.light_int, dom, S, rng, vid))
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
