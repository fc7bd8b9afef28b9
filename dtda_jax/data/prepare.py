"""Command line of tools/prepare_fas.py: one dataset download -> a prepared tfds dataset.

    python tools/prepare_fas.py --dataset=oulu_npu --manual_dir=/data/OULU-NPU [--data_dir=data]

Defaults are those of the protocol configs (`dtda_jax.config.common`'s data section, 256x256), so
a prepared dataset is found by `python -m dtda_jax.main --config=configs/<protocol>.py`
without further flags. Rerunning after an interruption resumes (finished videos are cached).
Exit status 2 with a message for a wrong --manual_dir or setting.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from dtda_jax.config import common
from dtda_jax.core.errors import UserError


def parse_args(argv: Sequence[str] | None):
    d = common.common_config("dtda").data
    r = d.real
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=common.REAL_DATASETS)
    p.add_argument("--manual_dir", required=True, help="the unpacked official download")
    p.add_argument("--data_dir", default=d.data_dir, help="tfds data_dir (config.data.data_dir)")
    p.add_argument("--image_size", type=int, default=d.image_size, help="face crop size in pixels")
    p.add_argument("--frame_policy", default=r.frame_policy, choices=common.FRAME_POLICIES,
                   help="which frames of a video become samples (ssdg: 6 and 6+N//2)")
    p.add_argument("--frame_every_k", type=int, default=r.frame_every_k)
    p.add_argument("--frame_num_random", type=int, default=r.frame_num_random)
    p.add_argument("--frame_seed", type=int, default=r.frame_seed)
    p.add_argument("--face_mode", default=r.face_mode, choices=common.FACE_MODES,
                   help="crop: MTCNN box + margin; align: 5-landmark similarity transform")
    p.add_argument("--face_margin", type=float, default=r.face_margin)
    p.add_argument("--face_min_size", type=int, default=r.face_min_size)
    p.add_argument("--face_detect_max_side", type=int, default=r.face_detect_max_side)
    p.add_argument("--face_max_fallback_offset", type=int, default=r.face_max_fallback_offset)
    p.add_argument("--celeba_spoof_protocol", default=r.celeba_spoof_protocol,
                   choices=common.CELEBA_SPOOF_PROTOCOLS)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from dtda_jax.core.cli import run_command

    args = parse_args(argv)
    return run_command("prepare_fas", lambda: prepare(args), debug=args.debug, stop_on_signals=True)


def prepare(args) -> None:
    from dtda_jax.data import real_fas
    from dtda_jax.data.face_extraction import FaceSettings, FrameSettings

    try:
        frames = FrameSettings(policy=args.frame_policy, every_k=args.frame_every_k,
                               num_random=args.frame_num_random, seed=args.frame_seed)
        face = FaceSettings(size=args.image_size, mode=args.face_mode, margin=args.face_margin,
                            min_face_size=args.face_min_size, detect_max_side=args.face_detect_max_side,
                            max_fallback_offset=args.face_max_fallback_offset)
    except ValueError as err:  # the settings' own checks name the bad value
        raise UserError(str(err)) from None
    real_fas.prepare(args.dataset, args.manual_dir, args.data_dir, frames, face, args.celeba_spoof_protocol)
