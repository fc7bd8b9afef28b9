"""Tests for dtda_jax.evaluation.metrics, with scikit-learn as the oracle (label 1 = live)."""

import json
from fractions import Fraction

import numpy as np
import pytest

sk_metrics = pytest.importorskip("sklearn.metrics")

from dtda_jax.evaluation import metrics as M  # noqa: E402
from dtda_jax.evaluation.tables import format_results_table  # noqa: E402

SEEDS = (0, 1, 2)
# (n_live, n_spoof): balanced, spoof-heavy (like OULU/CASIA 1:2, 1:3), live-heavy, tiny.
SIZES = ((200, 200), (50, 400), (300, 30), (3, 5))


def _random_case(seed, n_live, n_spoof, kind):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_live, int), np.zeros(n_spoof, int)]
    if kind == "random":
        scores = rng.uniform(size=labels.size)
    elif kind == "overlap":  # informative but overlapping
        scores = 1 / (1 + np.exp(-(rng.normal(size=labels.size) + 1.5 * (2 * labels - 1))))
    elif kind == "tied":  # heavy ties: one decimal
        scores = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.size) + (2 * labels - 1)))), 1)
    elif kind == "separable":
        scores = np.where(labels == 1, rng.uniform(0.6, 1, labels.size), rng.uniform(0, 0.4, labels.size))
    elif kind == "inverted":
        scores = np.where(labels == 1, rng.uniform(0, 0.4, labels.size), rng.uniform(0.6, 1, labels.size))
    else:
        raise AssertionError(kind)
    perm = rng.permutation(labels.size)
    return labels[perm], scores[perm]


KINDS = ("random", "overlap", "tied", "separable", "inverted")
CASES = [(seed, size, kind) for seed in SEEDS for size in SIZES for kind in KINDS]


def _brute_force_eer(labels, scores):
    """Independent EER: every unique score plus one above the max, scanned high to low."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, float)
    cands = np.r_[np.nextafter(scores.max(), np.inf), np.unique(scores)[::-1]]
    n_live, n_spoof = int((labels == 1).sum()), int((labels == 0).sum())
    best = None
    for t in cands:
        acc = scores >= t
        fp = int(acc[labels == 0].sum())
        fn = int((~acc[labels == 1]).sum())
        d = Fraction(abs(fp * n_live - fn * n_spoof), n_live * n_spoof)  # exact |FPR - FNR|
        if best is None or d < best[0]:
            best = (d, (fp / n_spoof + fn / n_live) / 2, t)
    return best


# ------------------------------------------------------------------------------------------ ROC / AUC


@pytest.mark.parametrize("seed,size,kind", CASES)
def test_roc_curve_and_auc_match_sklearn(seed, size, kind):
    labels, scores = _random_case(seed, *size, kind)
    fpr, tpr, thr = M.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thr = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr, sk_thr)
    assert thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0
    np.testing.assert_allclose(M.roc_auc(labels, scores), sk_metrics.roc_auc_score(labels, scores), atol=1e-12)


def test_auc_extremes_and_ties():
    y = np.array([1, 1, 0, 0])
    assert M.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert M.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert M.roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5  # every pair tied counts 1/2
    assert M.roc_auc([1, 0], [0.3, 0.3]) == 0.5
    assert isinstance(M.roc_auc(y, [0.9, 0.8, 0.2, 0.1]), float)


def test_float32_and_bool_inputs_match_sklearn():
    labels, scores = _random_case(5, 40, 60, "overlap")
    s32 = scores.astype(np.float32)
    np.testing.assert_allclose(M.roc_auc(labels.astype(bool), s32), sk_metrics.roc_auc_score(labels, s32))
    np.testing.assert_array_equal(M.roc_curve(labels, s32)[2], sk_metrics.roc_curve(labels, s32, drop_intermediate=False)[2])


def test_single_class_auc_raises_with_counts():
    with pytest.raises(ValueError, match=r"3 live and 0 spoof"):
        M.roc_auc([1, 1, 1], [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match=r"0 live and 2 spoof"):
        M.roc_auc([0, 0], [0.1, 0.5])


@pytest.mark.parametrize(
    "labels,scores,match",
    [
        ([[1, 0]], [[0.1, 0.2]], "1-d"),
        ([1, 0, 1], [0.1, 0.2], "same length"),
        ([1, 0], [0.1, np.nan], "finite"),
        ([1, 0], [0.1, np.inf], "finite"),
        ([1, 2], [0.1, 0.2], "only contain 0"),
        ([1, -1], [0.1, 0.2], "only contain 0"),
        (["a", "b"], [0.1, 0.2], "numeric"),
        ([], [], "empty"),
    ],
)
def test_input_validation(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        M.roc_curve(labels, scores)


# ------------------------------------------------------------------------------------------ EER


@pytest.mark.parametrize("seed,size,kind", CASES)
def test_eer_matches_brute_force_and_threshold_reproduces_rates(seed, size, kind):
    labels, scores = _random_case(seed, *size, kind)
    eer, thr = M.equal_error_rate(labels, scores)
    _, bf_eer, bf_thr = _brute_force_eer(labels, scores)
    np.testing.assert_allclose(eer, bf_eer, atol=1e-12)
    assert thr == bf_thr
    assert np.isfinite(thr)
    rates = M.error_rates(labels, scores, thr)
    np.testing.assert_allclose((rates["far"] + rates["frr"]) / 2, eer, atol=1e-12)
    # Same criterion as the sklearn-based repos' argmin |tpr + fpr - 1|: same minimal gap. (Their float
    # argmin may pick another point of an exactly tied gap by rounding noise; ours compares exactly.)
    fpr, tpr, _ = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(
        abs(rates["far"] - rates["frr"]), np.abs(tpr + fpr - 1).min(), atol=1e-12
    )


def test_eer_hand_example():
    # live 0.9 0.8 0.4 / spoof 0.7 0.3 0.2: at t=0.7 one spoof accepted (1/3) and one live rejected (1/3).
    eer, thr = M.equal_error_rate([1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
    assert eer == pytest.approx(1 / 3)
    assert thr == 0.7


def test_eer_separable_inverted_and_all_tied():
    y = [1, 1, 0, 0]
    assert M.equal_error_rate(y, [0.9, 0.8, 0.2, 0.1]) == (0.0, 0.8)  # highest threshold of the zero-error run
    eer, _ = M.equal_error_rate(y, [0.1, 0.2, 0.8, 0.9])
    assert eer == 1.0
    eer, thr = M.equal_error_rate(y, [0.5] * 4)  # only "accept none" / "accept all": never inf
    assert eer == 0.5 and np.isfinite(thr) and thr > 0.5
    r = M.error_rates(y, [0.5] * 4, thr)
    assert (r["far"], r["frr"]) == (0.0, 1.0)


# ------------------------------------------------------------------------------------------ error rates


def test_error_rates_hand_example():
    live = [0.9, 0.7, 0.4, 0.2]  # at 0.5: 2 of 4 rejected
    spoof = [0.8, 0.5, 0.3, 0.1, 0.05, 0.2]  # at 0.5: 0.8 and 0.5 (score == threshold) accepted: 2 of 6
    labels = [1] * 4 + [0] * 6
    r = M.error_rates(labels, live + spoof, 0.5)
    assert r["apcer"] == pytest.approx(2 / 6) and r["far"] == r["apcer"]
    assert r["bpcer"] == pytest.approx(2 / 4) and r["frr"] == r["bpcer"]
    assert r["acer"] == pytest.approx(5 / 12) and r["hter"] == r["acer"]
    assert all(type(v) is float for v in r.values())
    assert M.error_rates(labels, live + spoof, -np.inf)["apcer"] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        M.error_rates(labels, live + spoof, float("nan"))


# ------------------------------------------------------------------------------------------ TPR@FPR


@pytest.mark.parametrize("seed,size,kind", CASES[::2])
@pytest.mark.parametrize("target", (1e-2, 5e-3, 1e-3, 0.1, 0.0, 1.0))
def test_tpr_at_fpr_matches_sklearn_curve(seed, size, kind, target):
    labels, scores = _random_case(seed, *size, kind)
    fpr, tpr, _ = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    assert M.tpr_at_fpr(labels, scores, target) == pytest.approx(tpr[fpr <= target].max(), abs=1e-12)


def test_tpr_at_fpr_hand_example_and_range():
    # 100 spoofs, one of which (0.99) outranks every live sample; FPR=1% allows exactly that one.
    labels = np.r_[np.ones(10, int), np.zeros(100, int)]
    scores = np.r_[np.linspace(0.5, 0.95, 10), [0.99], np.full(99, 0.1)]
    assert M.tpr_at_fpr(labels, scores, 0.01) == 1.0
    assert M.tpr_at_fpr(labels, scores, 0.005) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.tpr_at_fpr(labels, scores, 1.5)


# ------------------------------------------------------------------------------------------ videos


def test_aggregate_by_video_mean_first_median():
    scores = [0.2, 0.4, 0.9, 0.1, 0.8, 0.7, 0.6]
    labels = [0, 0, 0, 1, 1, 1, 1]
    vids = ["b", "b", "b", "a", "c", "c", "c"]
    s, y, ids = M.aggregate_by_video(scores, labels, vids)
    assert ids.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(s, [0.1, 0.5, 0.7])
    assert y.tolist() == [1, 0, 1]
    s, _, _ = M.aggregate_by_video(scores, labels, vids, reduce="first")
    np.testing.assert_allclose(s, [0.1, 0.2, 0.8])
    s, _, _ = M.aggregate_by_video(scores, labels, vids, reduce="median")
    np.testing.assert_allclose(s, [0.1, 0.4, 0.7])
    s, y, ids = M.aggregate_by_video([0.3, 0.5], [1, 1], np.array([7, 7]))
    assert ids.tolist() == [7] and s.tolist() == [0.4] and y.tolist() == [1]


def test_aggregate_by_video_errors():
    with pytest.raises(ValueError, match="different labels"):
        M.aggregate_by_video([0.1, 0.2, 0.3], [1, 0, 0], ["v1", "v1", "v2"])
    with pytest.raises(ValueError, match="unknown reduce.*mean, first, median"):
        M.aggregate_by_video([0.1], [1], ["v"], reduce="max")
    with pytest.raises(ValueError, match="one entry per frame"):
        M.aggregate_by_video([0.1, 0.2], [1, 1], ["v"])


# ------------------------------------------------------------------------------------------ policies


def _target():
    return _random_case(11, 120, 240, "overlap")


def test_target_eer_policy_hter_is_target_eer():
    labels, scores = _target()
    res = M.evaluate(labels, scores, threshold_policy="target_eer")
    eer, thr = M.equal_error_rate(labels, scores)
    assert res["threshold"] == thr == res["eer_threshold"]
    assert res["hter"] == pytest.approx(eer, abs=1e-12)
    assert M.select_threshold("target_eer", labels, scores) == thr


def test_source_val_eer_policy_uses_source_threshold():
    # Separable source: the zero-error threshold run is [0.3, 0.6]; the EER threshold is its top, 0.6.
    src = ([1, 1, 1, 0, 0, 0], [0.6, 0.7, 0.9, 0.1, 0.2, 0.3])
    assert M.select_threshold("source_val_eer", None, None, source_val=src) == 0.6
    assert M.select_threshold("source_val_eer", source_val={"labels": src[0], "scores": src[1]}) == 0.6
    labels, scores = _target()
    res = M.evaluate(labels, scores, threshold_policy="source_val_eer", source_val=src)
    assert res["threshold"] == 0.6 and res["threshold_policy"] == "source_val_eer"
    expected = M.error_rates(labels, scores, 0.6)
    for k in ("hter", "apcer", "bpcer", "acer", "far", "frr"):
        assert res[k] == expected[k]
    assert res["eer_threshold"] != 0.6  # the target EER is still reported, threshold-free of the policy
    with pytest.raises(ValueError, match="source_val_eer"):
        M.evaluate(labels, scores, threshold_policy="source_val_eer")
    with pytest.raises(ValueError, match="source_val_eer"):
        M.select_threshold("source_val_eer", labels, scores)


def test_fixed_policy_and_unknown_policy():
    labels, scores = _target()
    res = M.evaluate(labels, scores, threshold_policy="fixed")
    assert res["threshold"] == 0.5
    assert res["hter"] == M.error_rates(labels, scores, 0.5)["hter"]
    assert M.select_threshold("fixed", fixed_threshold=0.3) == 0.3
    with pytest.raises(ValueError, match="target_eer, source_val_eer, fixed"):
        M.select_threshold("oracle", labels, scores)
    with pytest.raises(ValueError, match="target_eer, source_val_eer, fixed"):
        M.evaluate(labels, scores, threshold_policy="oracle")


# ------------------------------------------------------------------------------------------ evaluate / table


def test_evaluate_keys_values_and_json():
    labels, scores = _target()
    res = M.evaluate(labels, scores)
    expected_keys = {
        "auc", "eer", "eer_threshold", "hter", "threshold", "threshold_policy", "apcer", "bpcer",
        "acer", "far", "frr", "tpr@fpr=0.01", "tpr@fpr=0.005", "tpr@fpr=0.001", "num_live", "num_spoof",
    }
    assert set(res) == expected_keys
    assert res["auc"] == pytest.approx(sk_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert (res["num_live"], res["num_spoof"]) == (120, 240)
    for k, v in res.items():
        assert type(v) in (float, int, str), (k, type(v))
    assert json.loads(json.dumps(res, allow_nan=False)) == res
    res2 = M.evaluate(labels, scores, fpr_targets=(0.1,))
    assert "tpr@fpr=0.1" in res2 and "tpr@fpr=0.01" not in res2
    with pytest.raises(ValueError, match="1 live and 0 spoof"):
        M.evaluate([1], [0.5])


def test_format_results_table():
    labels, scores = _target()
    row = dict(M.evaluate(labels, scores), name="O&C&I->M")
    table = format_results_table([row, dict(row, name="O&M&I->C")])
    lines = table.splitlines()
    assert "HTER%(target_eer)" in lines[0] and "AUC%" in lines[0] and "TPR%@FPR=1%" in lines[0]
    assert len(lines) == 4 and lines[2].startswith("O&C&I->M")
    assert f"{row['auc'] * 100:.2f}" in lines[2] and f"{row['hter'] * 100:.2f}" in lines[2]
    # Mixed policies: the policy moves from the header into each HTER cell.
    fixed = dict(M.evaluate(labels, scores, threshold_policy="fixed"), name="fixed")
    table = format_results_table([row, fixed], columns=("name", "hter", "missing"))
    head, _, r1, r2 = table.splitlines()
    assert "HTER%" in head and "(" not in head
    assert r1.endswith("(target_eer)  -") and "(fixed)" in r2
