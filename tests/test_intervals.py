"""Bootstrap intervals and paired differences (dtda_jax/evaluation/intervals.py): the vectorised
metrics against the evaluator's own, the statistics against direct computation, and the
intervals' coverage on simulated experiments."""

import numpy as np
import pytest

from dtda_jax.evaluation import intervals as I
from dtda_jax.evaluation import metrics as M


def random_scores(rng, n, rows, tied):
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)  # both classes
    scores = rng.integers(0, 5, (rows, n)) / 4 if tied else rng.random((rows, n))
    return labels, scores


@pytest.mark.parametrize("tied", [False, True])
def test_vectorised_metrics_equal_the_evaluators(tied):
    rng = np.random.default_rng(1)
    for _ in range(60):
        labels, scores = random_scores(rng, int(rng.integers(3, 50)), 4, tied)
        eer, threshold = I.eer_points(labels, scores)
        auc = I.auc_rows(labels, scores)
        given = rng.random(4)
        acer = I.acer_at(labels, scores, given)
        for r in range(4):
            assert (eer[r], threshold[r]) == M.equal_error_rate(labels, scores[r])
            assert auc[r] == pytest.approx(M.roc_auc(labels, scores[r]), abs=1e-12)
            assert acer[r] == M.error_rates(labels, scores[r], given[r])["acer"]


def make_run(rng, n_live, n_spoof, separation, n_source=None):
    """A run's per-video scores: live ~ N(separation, 1), spoof ~ N(0, 1); the source-val set
    the same with `n_source` videos per class."""
    def scores(n_l, n_s):
        labels = np.r_[np.ones(n_l, int), np.zeros(n_s, int)]
        return labels, np.r_[rng.normal(separation, 1, n_l), rng.normal(0, 1, n_s)]

    t = scores(n_live, n_spoof)
    s = scores(n_source or n_live, n_source or n_spoof)
    return I.RunScores(t[0], t[1], s[0], s[1])


def test_compare_means_diffs_and_pairing():
    rng = np.random.default_rng(0)
    base = [make_run(rng, 20, 40, 1.0) for _ in range(3)]
    better = [I.RunScores(r.target_labels, r.target_scores + 3.0 * r.target_labels, r.source_labels,
                          r.source_scores + 3.0 * r.source_labels) for r in base]
    out = I.compare({"baseline": base, "same": list(base), "better": better}, "deployable", "baseline",
                    replicates=500)
    for variant, runs in (("baseline", base), ("better", better)):
        per_run = [I.run_metrics(r, "deployable") for r in runs]
        for m in I.METRICS:
            values = [p[m][0] for p in per_run]
            e = out[variant][m]
            assert e["mean"] == pytest.approx(np.mean(values)) and e["std"] == pytest.approx(np.std(values, ddof=1))
            assert e["low"] <= e["mean"] <= e["high"] and e["n"] == 3
    assert out["baseline"]["diff"] is None
    # The same runs: every replicate's difference is exactly 0 (same seeds, same videos drawn).
    same = out["same"]["diff"]
    assert all(same[m] == {"mean": 0.0, "low": 0.0, "high": 0.0, "established": False} for m in I.METRICS)
    # Far better separated scores: HTER down, AUC up, both established.
    assert out["better"]["diff"]["hter"]["high"] < 0 and out["better"]["diff"]["hter"]["established"]
    assert out["better"]["diff"]["auc"]["low"] > 0 and out["better"]["diff"]["auc"]["established"]
    assert I.resolution(out) == pytest.approx(np.median(
        [(out[v]["diff"]["hter"]["high"] - out[v]["diff"]["hter"]["low"]) / 2 for v in ("same", "better")]))
    # Paper convention: HTER is the target's EER.
    paper = I.compare({"baseline": base}, "paper", None, replicates=50)
    assert paper["baseline"]["hter"]["mean"] == pytest.approx(
        np.mean([M.equal_error_rate(r.target_labels, r.target_scores)[0] for r in base]))


def test_compare_refuses_unpaired_runs():
    rng = np.random.default_rng(0)
    a, b = make_run(rng, 10, 20, 1.0), make_run(rng, 10, 20, 1.0)
    with pytest.raises(ValueError, match="same, non-zero number of seeds"):
        I.compare({"baseline": [a, b], "x": [a]}, "paper", "baseline")
    with pytest.raises(ValueError, match="scored different videos"):
        I.compare({"baseline": [a], "x": [make_run(rng, 11, 19, 1.0)]}, "paper", "baseline")
    with pytest.raises(ValueError, match="unknown convention"):
        I.run_metrics(a, "target")


def test_intervals_cover_the_truth_about_95_percent():
    """Simulated experiments with a known truth: per seed a random shift of the live scores
    (training noise), per video normal noise. The 95% interval of the mean over 5 seeds must
    cover the true mean AUC in roughly 95% of experiments (percentile bootstrap with few seeds
    is a little narrow; ignoring the seed draw covered 80 of 120, ignoring the video draw 95)."""
    rng = np.random.default_rng(3)
    n_live, n_spoof, truth_sep, seed_sd = 30, 60, 1.2, 0.4
    # The true mean AUC of a run: E over seed shifts of Phi((sep + shift) / sqrt(2)).
    from math import erf

    shifts = truth_sep + seed_sd * np.random.default_rng(99).standard_normal(20_000)
    true_auc = float(np.mean([0.5 * (1 + erf(x / 2)) for x in shifts]))
    covered = 0
    experiments = 120
    for _ in range(experiments):
        runs = [make_run(rng, n_live, n_spoof, truth_sep + seed_sd * rng.standard_normal()) for _ in range(5)]
        auc = I.compare({"v": runs}, "paper", None, replicates=400, seed=int(rng.integers(1 << 30)))["v"]["auc"]
        covered += auc["low"] <= true_auc <= auc["high"]
    assert 0.85 <= covered / experiments <= 0.99, covered  # 114 of 120 here


def test_video_interval_of_one_run():
    rng = np.random.default_rng(5)
    run = make_run(rng, 20, 40, 1.5)
    got = I.video_interval(run, "deployable", replicates=300, seed=1)
    point = I.run_metrics(run, "deployable")
    for m in I.METRICS:
        assert got[m][0] <= point[m][0] <= got[m][1] and got[m][0] < got[m][1]
    assert got == I.video_interval(run, "deployable", replicates=300, seed=1)  # deterministic
