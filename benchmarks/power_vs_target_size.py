"""How the sweep's resolution depends on the number of target videos, with the same trained models.

    python benchmarks/power_vs_target_size.py --sweep=runs/power --people=160 [--sizes=20,40,80,160]

The intervals of `python -m dtda_jax.experiments` mix two sources of spread: seeds (training)
and the particular target videos (evaluation). This separates them without training again:
every finished run of the sweep (its best and last checkpoints) scores the held-out domain of
a second, larger benchmark (benchmark seed 1: new people, the same domains, `--people` test
people per domain), and the sweep's intervals are recomputed on nested subsets of its people
(each person: one live and the domain's spoof videos). Deployable thresholds come from each
run's own saved source-val scores, as in the tables. Prints, per target size: videos, each
variant's HTER mean +- std over seeds with its 95% interval half-width, and the resolution
(median half-width of the paired differences' intervals), in both conventions.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from dtda_jax.analysis import experiments, figures
from dtda_jax.core import artifacts
from dtda_jax.data import pipeline
from dtda_jax.evaluation import intervals, metrics
from dtda_jax.inference import predict
from dtda_jax.inference.scoring import chunks, score_batches

CHECKPOINTS = {"paper": ("best", "best_on_target"), "deployable": ("latest", "last")}


def larger_target(config, people: int):
    """The protocol's held-out domain in benchmark seed 1 with `people` + 1 people."""
    c = config.copy_and_resolve_references()
    c.data.synthetic_seed = 1
    c.data.synthetic_overrides = dict(train_identities_per_domain=1, test_identities_per_domain=people,
                                      frames_per_video=int(config.data.synthetic_overrides.get("frames_per_video", 4)))
    return pipeline.load_protocol(c).target


def video_scores(run, target) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) per video (in video id order) of the target frames scored by the run."""
    images = target.read_images(np.arange(len(target)))
    frames = score_batches(run.score_fn, run.variables, chunks(images, 128), 128)
    scores, labels, _ = metrics.aggregate_by_video(frames, target.label, target.video, reduce=run.video_reduce)
    return labels, scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", required=True)
    p.add_argument("--people", type=int, default=160, help="test people per domain of the larger benchmark")
    p.add_argument("--sizes", default="20,40,80,160", help="nested target sizes (people) to report")
    p.add_argument("--replicates", type=int, default=2000)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for protocol, variants in figures.sweep_layout(args.sweep).items():
        folders = {v: os.path.join(args.sweep, protocol, v) for v in variants}
        seeds = sorted(set.intersection(*(set(experiments.finished_seeds(f)) for f in folders.values())))
        baseline = next((v for v in variants if v in experiments.BASELINES), None)
        target, runs = None, {c: {v: [] for v in variants} for c in CHECKPOINTS}
        for v in variants:
            for seed in seeds:
                workdir = os.path.join(folders[v], f"seed{seed}")
                results = artifacts.read_json(os.path.join(workdir, "results.json"))
                for convention, (checkpoint, selection) in CHECKPOINTS.items():
                    run = predict.load_run(workdir, checkpoint)
                    if target is None:
                        target = larger_target(run.config, args.people)
                    labels, scores = video_scores(run, target)
                    saved = intervals.saved_run_scores(workdir, results, selection)
                    runs[convention][v].append(intervals.RunScores(labels, scores, saved.source_labels,
                                                                   saved.source_scores))
                print(f"[power] scored {protocol} {v} seed {seed}", flush=True)
        labels = runs["paper"][variants[0]][0].target_labels
        rng = np.random.default_rng(0)
        live_order, spoof_order = (rng.permutation(np.flatnonzero(labels == k)) for k in (1, 0))
        spoof_per_person = len(spoof_order) / len(live_order)
        print(f"\n{protocol}: {len(seeds)} seeds, HTER % mean +- std [95% half-width]; resolution = "
              "median half-width of the paired differences to the baseline")
        for people in sizes:
            keep = np.sort(np.r_[live_order[:people], spoof_order[:int(round(people * spoof_per_person))]])
            row = [f"{people:4d} people ({len(keep)} videos)"]
            for convention in CHECKPOINTS:
                subset = {v: [intervals.RunScores(r.target_labels[keep], r.target_scores[keep], r.source_labels,
                                                  r.source_scores) for r in rs]
                          for v, rs in runs[convention].items()}
                out = intervals.compare(subset, convention, baseline, replicates=args.replicates)
                cells = [f"{v} {100 * e['hter']['mean']:.2f} +- {100 * e['hter']['std']:.2f} "
                         f"[{100 * (e['hter']['high'] - e['hter']['low']) / 2:.2f}]" for v, e in out.items()]
                res = intervals.resolution(out)
                row.append(f"{convention}: " + ", ".join(cells) + (f", resolution {100 * res:.2f}" if res else ""))
            print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
