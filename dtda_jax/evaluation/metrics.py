"""Face anti-spoofing metrics in pure numpy.

Conventions (binding for the whole project, see ``fas-protocols.md``, "Scores and metrics"):

* label ``1`` = live (bona fide), ``0`` = spoof (attack);
* score = live probability: higher means "more live";
* a sample is ACCEPTED as live when ``score >= threshold``.

Hence, at a threshold ``t``:

* APCER = FAR = FPR = fraction of spoofs with ``score >= t`` (attacks let through);
* BPCER = FRR = FNR = 1 - TPR = fraction of live samples with ``score < t`` (real users rejected);
* ACER = HTER = (APCER + BPCER) / 2.

The library deliberately has no scikit-learn dependency; scikit-learn is only the test oracle
(``roc_curve`` / ``roc_auc`` reproduce it exactly, ties included).

Which threshold an HTER is computed at is the crux of DG FAS comparisons, so it is a named policy
(:data:`THRESHOLD_POLICIES`) that :func:`evaluate` records next to every HTER:

* ``"target_eer"``: EER threshold of the target test scores themselves ("idealized"; SSDG, FLIP, SSAN,
  SAFAS, IADG ... and DTDA's tables). HTER is then ~ the target EER.
* ``"source_val_eer"``: EER threshold of held-out source validation scores ("realistic"; DBMNet, Idiap).
* ``"fixed"``: a given value, e.g. 0.5.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "THRESHOLD_POLICIES",
    "DEFAULT_FPR_TARGETS",
    "aggregate_by_video",
    "roc_curve",
    "roc_auc",
    "equal_error_rate",
    "error_rates",
    "tpr_at_fpr",
    "select_threshold",
    "parse_operating_point",
    "operating_threshold",
    "evaluate",
]

THRESHOLD_POLICIES = ("target_eer", "source_val_eer", "fixed")
DEFAULT_FPR_TARGETS = (1e-2, 5e-3, 1e-3)
VIDEO_REDUCTIONS = ("mean", "first", "median")


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    return arr


def _check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """Labels as an int64 array of 0 (spoof) / 1 (live); anything else is an error."""
    arr = _as_1d(labels, name)
    if arr.size and not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric 0 (spoof) / 1 (live), got dtype {arr.dtype}")
    arr_f = arr.astype(np.float64)
    bad = ~((arr_f == 0) | (arr_f == 1))
    if np.any(bad):
        found = np.unique(arr[bad])[:5]
        raise ValueError(
            f"{name} must only contain 0 (spoof) and 1 (live); found other values, e.g. {found.tolist()}"
        )
    return arr_f.astype(np.int64)


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Scores as a finite float64 array (live probabilities, higher = more live)."""
    arr = _as_1d(scores, name)
    if arr.size and not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} must be finite; {n_bad} of {arr.size} values are NaN or inf")
    return arr


def _check_binary(labels: Any, scores: Any, *, need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (labels, scores) pair; by default require both classes (ROC/EER/HTER need them)."""
    y = _check_labels(labels)
    s = _check_scores(scores)
    if y.shape != s.shape:
        raise ValueError(
            f"labels and scores must have the same length, got {y.shape[0]} and {s.shape[0]}"
        )
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    if need_both:
        n_live = int(np.sum(y == 1))
        n_spoof = int(y.size - n_live)
        if n_live == 0 or n_spoof == 0:
            raise ValueError(
                "both classes are needed (1 = live, 0 = spoof), got "
                f"{n_live} live and {n_spoof} spoof samples; the metric is undefined with one class"
            )
    return y, s


def _check_threshold(threshold: Any, name: str = "threshold") -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {threshold!r}") from err
    if math.isnan(t):
        raise ValueError(f"{name} must not be NaN")
    return t


# --------------------------------------------------------------------------------------------------
# Video-level aggregation
# --------------------------------------------------------------------------------------------------


def aggregate_by_video(
    frame_scores: Any,
    frame_labels: Any,
    video_ids: Any,
    reduce: str = "mean",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video scores from per-frame scores.

    FAS protocols score VIDEOS, not frames: the SSDG lineage (SSDG, FLIP, IADG, DGUA; DTDA follows
    SSDG) averages the live probabilities of a video's test frames (``reduce="mean"``, the default);
    SAFAS / GD-FAS use a single frame (``"first"`` = the first frame of the video in input order);
    ``"median"`` is a robust alternative.

    Returns ``(video_scores, video_labels, unique_video_ids)``, ordered by sorted video id.
    Raises ``ValueError`` if the frames of one video carry different labels (a data bug that would
    silently corrupt the metrics) or for an unknown ``reduce``.
    """
    if reduce not in VIDEO_REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; valid: {', '.join(VIDEO_REDUCTIONS)}")
    labels, scores = _check_binary(frame_labels, frame_scores, need_both=False)
    ids = _as_1d(video_ids, "video_ids")
    if ids.shape != scores.shape:
        raise ValueError(
            f"video_ids must have one entry per frame, got {ids.shape[0]} ids for {scores.shape[0]} frames"
        )

    unique_ids, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_videos = unique_ids.shape[0]
    order = np.argsort(inverse, kind="stable")  # frames grouped by video, input order kept inside
    sorted_inv = inverse[order]
    starts = np.flatnonzero(np.r_[True, sorted_inv[1:] != sorted_inv[:-1]])

    lab_sorted = labels[order]
    lab_min = np.minimum.reduceat(lab_sorted, starts)
    lab_max = np.maximum.reduceat(lab_sorted, starts)
    mixed = lab_min != lab_max
    if np.any(mixed):
        bad = unique_ids[mixed][:5].tolist()
        raise ValueError(
            f"{int(mixed.sum())} video(s) have frames with different labels, e.g. {bad}; "
            "every frame of a video must share its label"
        )
    video_labels = lab_min.astype(np.int64)

    if reduce == "mean":
        counts = np.bincount(inverse, minlength=n_videos)
        video_scores = np.bincount(inverse, weights=scores, minlength=n_videos) / counts
    elif reduce == "first":
        video_scores = scores[order][starts]
    else:  # median
        groups = np.split(scores[order], starts[1:])
        video_scores = np.array([np.median(g) for g in groups], dtype=np.float64)
    return video_scores.astype(np.float64), video_labels, unique_ids


# --------------------------------------------------------------------------------------------------
# ROC, AUC, EER
# --------------------------------------------------------------------------------------------------


def _binary_clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false/true positive counts at each distinct score, highest score first.

    Same algorithm as scikit-learn's ``_binary_clf_curve``: a stable descending sort, then one point
    per distinct score value, so tied scores are crossed together (that is what makes the ROC and the
    AUC count ties as 1/2).
    """
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    distinct = np.flatnonzero(np.diff(s_sorted))
    idx = np.r_[distinct, y_sorted.size - 1]
    tps = np.cumsum(y_sorted, dtype=np.float64)[idx]
    fps = 1.0 + idx - tps
    return fps, tps, s_sorted[idx]


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with live (1) as the positive class; ``(fpr, tpr, thresholds)``.

    Identical to ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``: one point per
    distinct score in decreasing order (``fpr[i]``/``tpr[i]`` are the rates of ``score >= thresholds[i]``),
    preceded by the ``(0, 0, inf)`` point where nothing is accepted. Keeping every point (no
    ``drop_intermediate``) matters for EER and TPR@FPR, which read individual points.
    Raises ``ValueError`` when a class is missing (the rates would be 0/0).
    """
    y, s = _check_binary(labels, scores)
    fps, tps, thr = _binary_clf_curve(y, s)
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (threshold-free; ``sklearn.metrics.roc_auc_score`` in every FAS repo).

    Trapezoidal area over the full ROC, so a tied (live, spoof) pair counts 1/2, exactly as
    scikit-learn. Raises ``ValueError`` naming the class counts when only one class is present.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def _finite_threshold(threshold: float, scores: np.ndarray) -> float:
    """Replace the ROC's leading ``+inf`` ("accept nothing") by the smallest float above every score.

    ``nextafter(max(scores), inf)`` accepts no sample under ``score >= t``, so it reproduces that ROC
    point while staying finite (JSON-friendly, usable as a deployable threshold).
    """
    if np.isfinite(threshold):
        return float(threshold)
    return float(np.nextafter(np.max(scores), np.inf))


def equal_error_rate(labels: Any, scores: Any) -> tuple[float, float]:
    """Equal error rate and its threshold, ``(eer, threshold)``.

    Choice made here: among all ROC points (every distinct score, see :func:`roc_curve`) take the one
    minimising ``|FPR - FNR|`` (FNR = 1 - TPR; the same criterion as the sklearn-based repos'
    ``|tpr + fpr - 1|``, but compared in exact integer arithmetic so that exactly tied gaps are not
    broken by float rounding noise), ties broken towards the HIGHEST threshold (like SSDG, which keeps
    the last minimum of an ascending scan), and report ``EER = (FPR + FNR) / 2`` at that point. On finite data
    FPR and FNR rarely coincide exactly, so averaging is the unbiased point estimate.

    Other repos give slightly different numbers: SSDG scans 10,001 thresholds on [0, 1] (a grid, not
    the data's scores) and TFace interpolates the ROC with ``brentq``; the differences are of the
    order of one sample's weight (1/N_live or 1/N_spoof).

    The returned threshold is always finite and reproduces the point's FPR/FNR exactly when passed to
    :func:`error_rates` (``score >= threshold``): it is the score value of that ROC point, or, for the
    leading "accept nothing" point, the next float above the maximum score.
    """
    y, s = _check_binary(labels, scores)
    fps, tps, thr = _binary_clf_curve(y, s)
    n_live = int(tps[-1])
    n_spoof = int(fps[-1])
    fps = np.r_[0, fps].astype(np.int64)
    fns = n_live - np.r_[0, tps].astype(np.int64)
    thr = np.r_[np.inf, thr]
    # |FPR - FNR| * n_live * n_spoof in exact integers: float rates would break exact ties between ROC
    # points by rounding noise, making the chosen point (and so the EER) depend on it.
    gap = np.abs(fps * n_live - fns * n_spoof)
    i = int(np.argmin(gap))  # first minimum = highest threshold
    eer = (fps[i] / n_spoof + fns[i] / n_live) / 2.0
    return float(eer), _finite_threshold(thr[i], s)


# --------------------------------------------------------------------------------------------------
# Rates at a threshold
# --------------------------------------------------------------------------------------------------


def error_rates(labels: Any, scores: Any, threshold: float) -> dict[str, float]:
    """Error rates when samples with ``score >= threshold`` are accepted as live.

    Returns plain floats: ``apcer`` (spoofs accepted) = ``far``; ``bpcer`` (live rejected) = ``frr``;
    ``acer`` = ``hter`` = their mean. Both names are kept because ISO/IEC 30107-3 papers (CelebA-Spoof)
    say APCER/BPCER/ACER while the DG tables say FAR/FRR/HTER for the same quantities.
    Both classes must be present (a rate over an empty class is undefined).
    """
    y, s = _check_binary(labels, scores)
    t = _check_threshold(threshold)
    accepted = s >= t
    live = y == 1
    apcer = float(np.mean(accepted[~live]))
    bpcer = float(np.mean(~accepted[live]))
    acer = (apcer + bpcer) / 2.0
    return {"apcer": apcer, "bpcer": bpcer, "acer": acer, "far": apcer, "frr": bpcer, "hter": acer}


def tpr_at_fpr(labels: Any, scores: Any, target_fpr: float) -> float:
    """TPR (live accepted) at FPR (spoofs accepted) <= ``target_fpr``.

    The CelebA-Spoof / FLIP convention: the largest TPR among ROC points whose FPR does not exceed the
    target (no interpolation; the ``(0, 0)`` point always qualifies, so the result is >= 0).
    """
    t = _check_threshold(target_fpr, "target_fpr")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr!r}")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.max(tpr[fpr <= t]))


# --------------------------------------------------------------------------------------------------
# Threshold policies and the one-call evaluation
# --------------------------------------------------------------------------------------------------


def _unpack_source_val(source_val: Any) -> tuple[Any, Any]:
    if isinstance(source_val, Mapping):
        try:
            return source_val["labels"], source_val["scores"]
        except KeyError as err:
            raise ValueError("source_val mapping needs keys 'labels' and 'scores'") from err
    try:
        src_labels, src_scores = source_val
    except (TypeError, ValueError) as err:
        raise ValueError(
            "source_val must be a (labels, scores) pair or a mapping with 'labels' and 'scores'"
        ) from err
    return src_labels, src_scores


def select_threshold(
    policy: str,
    target_labels: Any = None,
    target_scores: Any = None,
    source_val: Any = None,
    fixed_threshold: float = 0.5,
) -> float:
    """The decision threshold under a named policy (see :data:`THRESHOLD_POLICIES`).

    * ``"target_eer"``: EER threshold of the target scores themselves -- the community's "idealized"
      DG convention used by DTDA's tables; it peeks at target labels, so HTER ~= target EER.
    * ``"source_val_eer"``: EER threshold of held-out SOURCE validation scores, ``source_val =
      (labels, scores)`` -- the "realistic" protocol (no target labels used).
    * ``"fixed"``: ``fixed_threshold`` as given (e.g. 0.5 on a probability).
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(
            f"unknown threshold policy {policy!r}; valid: {', '.join(THRESHOLD_POLICIES)}"
        )
    if policy == "target_eer":
        if target_labels is None or target_scores is None:
            raise ValueError("threshold policy 'target_eer' needs target_labels and target_scores")
        return equal_error_rate(target_labels, target_scores)[1]
    if policy == "source_val_eer":
        if source_val is None:
            raise ValueError(
                "threshold policy 'source_val_eer' needs source_val=(labels, scores) "
                "from a held-out source validation set"
            )
        src_labels, src_scores = _unpack_source_val(source_val)
        return equal_error_rate(src_labels, src_scores)[1]
    return _check_threshold(fixed_threshold, "fixed_threshold")


# --------------------------------------------------------------------------------------------------
# Operating points: a deployment threshold chosen on held-out source data
# --------------------------------------------------------------------------------------------------

OPERATING_POINTS = ("eer", "bpcer=X%", "apcer=X%", "fixed=T")


def parse_operating_point(spec: str) -> tuple[str, float | None]:
    """``"eer"`` -> ("eer", None); ``"bpcer=5%"`` -> ("bpcer", 0.05); ``"apcer=1%"`` ->
    ("apcer", 0.01); ``"fixed=0.5"`` -> ("fixed", 0.5). Rates are given in percent."""
    text = str(spec).strip().lower()
    if text == "eer":
        return "eer", None
    name, _, value = text.partition("=")
    try:
        if name in ("bpcer", "apcer") and value.endswith("%"):
            rate = float(value[:-1]) / 100.0
            if 0.0 <= rate < 1.0:
                return name, rate
        elif name == "fixed":
            return "fixed", _check_threshold(float(value))
    except ValueError:
        pass
    raise ValueError(f"operating point must be one of {', '.join(OPERATING_POINTS)} (e.g. eer, "
                     f"bpcer=5%, apcer=1%, fixed=0.5; rates in percent, below 100%), got {spec!r}")


def operating_threshold(labels: Any, scores: Any, spec: str) -> float:
    """The threshold of operating point `spec` (:func:`parse_operating_point`) on these scores.

    * ``eer``: the EER threshold (:func:`equal_error_rate`).
    * ``bpcer=X%``: at most X% of the live samples rejected, and as many attacks as possible:
      the live score below which the allowed number of live samples lies.
    * ``apcer=X%``: at most X% of the attacks accepted, and as few live samples rejected as
      possible: halfway from the highest attack score that must be rejected to the next score
      above it (a score itself would accept that attack).
    * ``fixed=T``: T.
    The rate a threshold gives on these scores is at most X% by construction (ties included),
    also when the scores are compared in float32.
    """
    kind, value = parse_operating_point(spec)
    if kind == "fixed":
        return float(value)
    y, s = _check_binary(labels, scores)
    if kind == "eer":
        return equal_error_rate(y, s)[1]
    if kind == "bpcer":  # live with score < t are rejected; at most floor(X * n) of them may be
        live = np.sort(s[y == 1])
        return float(live[int(math.floor(value * len(live) + 1e-9))])
    spoof = np.sort(s[y == 0])[::-1]  # spoofs with score >= t are accepted
    rejected = spoof[int(math.floor(value * len(spoof) + 1e-9))]  # the highest that must be
    above = s[s > rejected]
    if not len(above):
        return float(np.nextafter(np.float32(rejected), np.float32(np.inf)))
    t = (float(rejected) + float(above.min())) / 2
    return t if np.float32(t) > np.float32(rejected) else float(above.min())


def _tpr_key(target: float) -> str:
    return f"tpr@fpr={target:g}"


def evaluate(
    labels: Any,
    scores: Any,
    *,
    threshold_policy: str = "target_eer",
    source_val: Any = None,
    fixed_threshold: float = 0.5,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> dict[str, Any]:
    """All FAS metrics for one test set, as a JSON-serialisable dict of plain Python numbers.

    Keys: ``auc``, ``eer``, ``eer_threshold`` (threshold-free / target-EER quantities); ``threshold``
    and ``threshold_policy`` (which threshold the rates below use -- always reported, since HTERs under
    different policies are not comparable); ``hter``, ``apcer``, ``bpcer``, ``acer``, ``far``, ``frr``
    at that threshold; ``tpr@fpr=<t>`` for each of ``fpr_targets``; ``num_live``, ``num_spoof``.
    Rates are fractions in [0, 1] (multiply by 100 for the papers' percentages).

    With ``source_val``, also the deployable figures whatever the policy: ``deploy_threshold``
    (the source-val EER threshold, chosen without target labels) and the target's
    ``deploy_apcer``, ``deploy_bpcer``, ``deploy_acer`` at it.
    """
    y, s = _check_binary(labels, scores)
    if threshold_policy not in THRESHOLD_POLICIES:
        raise ValueError(
            f"unknown threshold policy {threshold_policy!r}; valid: {', '.join(THRESHOLD_POLICIES)}"
        )
    eer, eer_thr = equal_error_rate(y, s)
    if threshold_policy == "target_eer":
        threshold = eer_thr  # same computation; avoid redoing it
    else:
        threshold = select_threshold(
            threshold_policy, y, s, source_val=source_val, fixed_threshold=fixed_threshold
        )
    rates = error_rates(y, s, threshold)
    out: dict[str, Any] = {
        "auc": roc_auc(y, s),
        "eer": eer,
        "eer_threshold": eer_thr,
        "hter": rates["hter"],
        "threshold": float(threshold),
        "threshold_policy": threshold_policy,
        "apcer": rates["apcer"],
        "bpcer": rates["bpcer"],
        "acer": rates["acer"],
        "far": rates["far"],
        "frr": rates["frr"],
    }
    for t in fpr_targets:
        out[_tpr_key(float(t))] = tpr_at_fpr(y, s, float(t))
    out["num_live"] = int(np.sum(y == 1))
    out["num_spoof"] = int(np.sum(y == 0))
    if source_val is not None:
        deploy = select_threshold("source_val_eer", source_val=source_val)
        rates = error_rates(y, s, deploy)
        out["deploy_threshold"] = float(deploy)
        out.update({f"deploy_{k}": rates[k] for k in ("apcer", "bpcer", "acer")})
    return out
