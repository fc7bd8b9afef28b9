"""Rendering speed of the built-in benchmark, per domain and attack type.

    python benchmarks/render_speed.py [--sizes 64 256] [--frames 4]

Prints milliseconds per frame; multiply by the dataset's frame count (1,040 for the default
config) to estimate a build.
"""

import argparse
import time

from dtda_jax.data import synthetic


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--frames", type=int, default=4, help="frames per rendered video")
    args = parser.parse_args()
    identity = synthetic.sample_identity(0, 0, 1)
    synthetic.render_video(0, 0, identity, 0, 0, 1, args.sizes[0])  # warm caches
    print(f"{'size':>5}  {'domain':<8} " + "  ".join(f"{a:>10}" for a in synthetic.ATTACK_TYPES)
          + "   (ms per frame)")
    for size in args.sizes:
        for domain in synthetic.DOMAINS:
            cells = []
            for attack in range(len(synthetic.ATTACK_TYPES)):
                start = time.perf_counter()
                synthetic.render_video(0, 1 + attack, identity, domain, attack, args.frames, size)
                cells.append(1000 * (time.perf_counter() - start) / args.frames)
            print(f"{size:>5}  {domain:<8} " + "  ".join(f"{c:>10.1f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
