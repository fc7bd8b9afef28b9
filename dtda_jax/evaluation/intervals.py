"""95% bootstrap intervals over videos and seeds, and paired differences between variants.

Why: on a benchmark of a few dozen target videos, a seed's HTER moves in steps of one video's
weight, and seeds differ by as much as the variants do; a table of means alone cannot say
which orderings are real. Each replicate here draws the seeds with replacement and,
independently, the target and source-val videos with replacement within each class (so every
replicate has the original numbers of live and spoof videos). Every run of a protocol scores
the same videos, so one video draw serves every drawn seed and every variant; a paired
difference (variant minus baseline) therefore keeps both pairings, by seed and by video. The
replicate's statistic is the mean over its drawn seeds of the per-run metric; the interval is
the 2.5th-97.5th percentile over replicates. A difference is "established" when its interval
excludes 0.

Conventions (`CONVENTIONS`): "paper" is the literature's (threshold at the target's own EER,
so HTER = target EER, on the checkpoint chosen on the target); "deployable" is a user's (the
last checkpoint, threshold at the source-val EER, then the target's ACER). The checkpoint
choice is taken as the runs made it; only the threshold is refitted on each replicate's videos.

The metrics are vectorised over replicates and agree exactly with `metrics.equal_error_rate`,
`metrics.error_rates` and `metrics.roc_auc` (tests/test_intervals.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

CONVENTIONS = ("paper", "deployable")
METRICS = ("hter", "auc")
DEFAULT_REPLICATES = 2000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class RunScores:
    """Per-video labels (1 = live) and live scores of one run's checkpoint: target and source-val."""

    target_labels: np.ndarray
    target_scores: np.ndarray
    source_labels: np.ndarray
    source_scores: np.ndarray


def saved_run_scores(workdir: str, results: Mapping, selection: str) -> RunScores:
    """The per-video scores a finished run saved for its checkpoint `selection` ("best_on_target"
    or "last"): `scores/step_*.npz` of the reported model (results.json's `scores_dir`, the
    workdir unless the model lives elsewhere). FileNotFoundError when they are gone."""
    from dtda_jax.deploy.operating_point import scores_path

    step = results["by_selection"][selection]["step"]
    with np.load(scores_path(os.path.join(workdir, results.get("scores_dir", ".")), step)) as saved:
        return RunScores(saved["target_labels"], saved["target_scores"],
                         saved["source_val_labels"], saved["source_val_scores"])


# ---------------------------------------------------------------------------------------------
# Metrics of many resampled score sets at once: rows are replicates, the labels are shared.


def _descending(labels: np.ndarray, scores: np.ndarray):
    """Each row sorted by descending score: (scores, is_live, cumulative live, cumulative
    spoof, is_last_of_its_tie)."""
    scores = np.asarray(scores, np.float64)
    live = np.asarray(labels) == 1
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_live = live[order]
    is_last = np.ones_like(sorted_live)
    is_last[:, :-1] = sorted_scores[:, :-1] > sorted_scores[:, 1:]
    return sorted_scores, sorted_live, np.cumsum(sorted_live, axis=1), np.cumsum(~sorted_live, axis=1), is_last


def eer_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(EER, threshold) of every row of `scores` (replicates x videos) with the shared `labels`,
    by the rule of `metrics.equal_error_rate`: the ROC point with the smallest |FPR - FNR| in
    integer arithmetic, the highest threshold among ties, EER = (FPR + FNR) / 2."""
    live = np.asarray(labels) == 1
    n_live, n_spoof = int(live.sum()), int((~live).sum())
    sorted_scores, _, tps, fps, is_point = _descending(labels, scores)
    rows = len(sorted_scores)
    # A ROC point ("accept score >= t") sits at the last video of a run of equal scores; the
    # first point accepts nothing.
    fps = np.concatenate([np.zeros((rows, 1), np.int64), fps], axis=1)
    fns = n_live - np.concatenate([np.zeros((rows, 1), np.int64), tps], axis=1)
    gap = np.abs(fps * n_live - fns * n_spoof)
    gap[:, 1:][~is_point] = np.iinfo(np.int64).max
    best = np.argmin(gap, axis=1)  # the first minimum: the highest threshold
    pick = np.arange(rows)
    eer = (fps[pick, best] / n_spoof + fns[pick, best] / n_live) / 2.0
    above_all = np.nextafter(sorted_scores[:, 0], np.inf)  # finite stand-in for +inf
    threshold = np.where(best == 0, above_all, sorted_scores[pick, np.maximum(best - 1, 0)])
    return eer, threshold


def acer_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """ACER (= HTER) of every row when `score >= threshold` of the row is accepted as live."""
    live = np.asarray(labels) == 1
    accepted = np.asarray(scores) >= np.asarray(thresholds)[:, None]
    return (accepted[:, ~live].mean(axis=1) + (~accepted[:, live]).mean(axis=1)) / 2.0


def auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of every row (the trapezoid under the ROC): the mean over spoof videos of the
    fraction of live videos scored above it, a tied live video counting one half."""
    live = np.asarray(labels) == 1
    n_live, n_spoof = int(live.sum()), int((~live).sum())
    _, sorted_live, tps, _, is_last = _descending(labels, scores)
    n = sorted_live.shape[1]
    position = np.broadcast_to(np.arange(n), sorted_live.shape)
    is_first = np.ones_like(is_last)
    is_first[:, 1:] = is_last[:, :-1]
    first = np.maximum.accumulate(np.where(is_first, position, 0), axis=1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(is_last, position, n), axis=1), axis=1), axis=1)
    live_before = np.take_along_axis(tps - sorted_live, first, axis=1)  # above the tie group
    live_tied = np.take_along_axis(tps, last, axis=1) - live_before
    credit = np.where(sorted_live, 0.0, live_before + 0.5 * live_tied)
    return credit.sum(axis=1) / (n_live * n_spoof)


def run_metrics(run: RunScores, convention: str, target_draw: np.ndarray | None = None,
                source_draw: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """HTER and AUC of one run under `convention`, for each row of the video draws (index
    arrays, replicates x videos); without draws, of the videos as they are (one row)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    t_draw = np.arange(len(run.target_labels))[None] if target_draw is None else target_draw
    t_labels, t_scores = run.target_labels[t_draw[0]], run.target_scores[t_draw]
    if convention == "paper":
        hter = eer_points(t_labels, t_scores)[0]
    else:
        s_draw = np.arange(len(run.source_labels))[None] if source_draw is None else source_draw
        threshold = eer_points(run.source_labels[s_draw[0]], run.source_scores[s_draw])[1]
        hter = acer_at(t_labels, t_scores, threshold)
    return {"hter": hter, "auc": auc_rows(t_labels, t_scores)}


# ---------------------------------------------------------------------------------------------
# Resampling


def stratified_draws(labels: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """replicates x videos indices, each row resampling the live and the spoof videos with
    replacement within their class; every row lists the classes in the same positions."""
    labels = np.asarray(labels)
    draws = np.empty((replicates, len(labels)), np.int64)
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls)
        draws[:, members] = rng.choice(members, size=(replicates, len(members)), replace=True)
    return draws


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _check_same_videos(runs: Sequence[RunScores]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if not (np.array_equal(run.target_labels, first.target_labels)
                and np.array_equal(run.source_labels, first.source_labels)):
            raise ValueError("the runs of a protocol scored different videos (their per-video labels "
                             "differ); intervals need one benchmark per protocol")


def compare(runs: Mapping[str, Sequence[RunScores]], convention: str, baseline: str | None,
            replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> dict[str, dict]:
    """Per variant: mean +- std over seeds, a bootstrap interval of the mean over videos and
    seeds, and (variants other than `baseline`) the paired difference to the baseline.

    `runs[variant][k]` is the run of the k-th seed; every variant lists the same seeds in the
    same order (the pairing). Returns {variant: {"hter": {mean, std, n, low, high}, "auc": ...,
    "diff": None or {"hter": {mean, low, high, established}, "auc": ...}}}; rates are fractions.
    """
    variants = list(runs)
    seeds = {len(r) for r in runs.values()}
    if len(seeds) != 1 or 0 in seeds:
        raise ValueError(f"every variant needs the same, non-zero number of seeds, got "
                         f"{ {v: len(r) for v, r in runs.items()} }")
    num_seeds = seeds.pop()
    all_runs = [r for v in variants for r in runs[v]]
    _check_same_videos(all_runs)
    rng = np.random.default_rng(seed)
    target_draw = stratified_draws(all_runs[0].target_labels, replicates, rng)
    source_draw = stratified_draws(all_runs[0].source_labels, replicates, rng)
    seed_draw = rng.integers(0, num_seeds, size=(replicates, num_seeds))

    point, boot = {}, {}
    for v in variants:
        per_seed = [run_metrics(r, convention) for r in runs[v]]
        point[v] = {m: np.array([p[m][0] for p in per_seed]) for m in METRICS}
        resampled = [run_metrics(r, convention, target_draw, source_draw) for r in runs[v]]
        by_seed = {m: np.stack([r[m] for r in resampled], axis=1) for m in METRICS}  # replicates x seeds
        boot[v] = {m: np.take_along_axis(by_seed[m], seed_draw, axis=1).mean(axis=1) for m in METRICS}

    out = {}
    for v in variants:
        entry = {}
        for m in METRICS:
            values = point[v][m]
            low, high = _interval(boot[v][m])
            entry[m] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if num_seeds > 1 else 0.0,
                        "n": num_seeds, "low": low, "high": high}
        entry["diff"] = None
        if baseline is not None and v != baseline:
            entry["diff"] = {}
            for m in METRICS:
                low, high = _interval(boot[v][m] - boot[baseline][m])
                entry["diff"][m] = {"mean": float((point[v][m] - point[baseline][m]).mean()),
                                    "low": low, "high": high, "established": bool(low > 0 or high < 0)}
        out[v] = entry
    return out


def video_interval(run: RunScores, convention: str, replicates: int = DEFAULT_REPLICATES,
                   seed: int = 0) -> dict[str, tuple[float, float]]:
    """One run's 95% interval of HTER and AUC over its videos (a run's own table): `compare`
    of a single seed."""
    alone = compare({"run": [run]}, convention, None, replicates=replicates, seed=seed)["run"]
    return {m: (alone[m]["low"], alone[m]["high"]) for m in METRICS}


def resolution(compared: Mapping[str, dict], metric: str = "hter") -> float | None:
    """The instrument's resolution: the median half-width of the paired differences' intervals,
    about the smallest difference to the baseline this sweep could call established."""
    widths = [(e["diff"][metric]["high"] - e["diff"][metric]["low"]) / 2
              for e in compared.values() if e["diff"]]
    return float(np.median(widths)) if widths else None
