"""The built-in benchmark's leave-one-domain-out protocol, shared by the DTDA and KDFAS demo
configs (configs/base/dtda_synthetic.py, kdfas_synthetic.py).

Three generated domains -> the held-out fourth at 64 x 64. The benchmark is sized for
statistical power: 16 train + 24 test people per domain (the builder's registered default
has 12 + 8), so the held-out domain (all its frames) has 40 live and 80 (studio 120) spoof
videos and source-val (the sources' test people) 72 live and 168-192 spoof videos, and one
video moves the target HTER by at most 1.25 points.
"""

DOMAINS = ("studio", "webcam", "phone", "kiosk")  # dtda_jax/data/synthetic/domains.py
BENCHMARK_SIZE = dict(train_identities_per_domain=16, test_identities_per_domain=24, frames_per_video=4)


def set_protocol(c, target: str) -> None:
    """The config's data section: the benchmark at its demo size, `target` held out."""
    if target not in DOMAINS:
        raise ValueError(f"Unknown target domain {target!r}; the built-in benchmark has {DOMAINS}.")
    c.data.dataset = "synthetic_fas"
    c.data.source_domains = tuple(d for d in DOMAINS if d != target)
    c.data.target_domain = target
    c.data.image_size = 64
    c.data.synthetic_overrides = dict(BENCHMARK_SIZE)
