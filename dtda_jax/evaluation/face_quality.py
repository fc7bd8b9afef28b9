"""Face-quality metrics of the own teachers: verification of face embeddings (AUC, TAR@FAR,
LFW-style k-fold accuracy) and per-attribute accuracy / AUC against the majority floor.
Pure numpy; scikit-learn is the test oracle."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dtda_jax.evaluation import metrics


def best_threshold_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy of ``score >= t`` (same pair = 1) and that accuracy.

    Candidates lie between consecutive distinct scores (midpoints), plus below / above them all
    (min - 1, max + 1); ties go to the lowest threshold.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order]
    uniq, first = np.unique(s, return_index=True)
    pos_before = np.r_[0, np.cumsum(y)][first]  # positives scoring below uniq[k]
    neg_before = first - pos_before
    n_pos = int(y.sum())
    # Accept score >= uniq[k]: positives from k on are right, negatives below k are right.
    acc = np.r_[(n_pos - pos_before) + neg_before, len(y) - n_pos] / len(y)
    thresholds = np.r_[uniq[0] - 1.0, (uniq[:-1] + uniq[1:]) / 2, uniq[-1] + 1.0]
    k = int(np.argmax(acc))
    return float(thresholds[k]), float(acc[k])


def kfold_threshold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: int = 10,
                             seed: int = 0) -> dict[str, float]:
    """LFW-style accuracy: per fold, the best threshold of the other folds applied to it.

    Folds are a seeded random partition of the pairs. Returns mean and std over folds (and
    the mean threshold).
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    if len(scores) < folds:
        raise ValueError(f"{len(scores)} pairs cannot be split into {folds} folds.")
    fold = np.empty(len(scores), np.int64)
    fold[np.random.default_rng([seed, 13]).permutation(len(scores))] = np.arange(len(scores)) % folds
    accs, thresholds = [], []
    for f in range(folds):
        t, _ = best_threshold_accuracy(scores[fold != f], labels[fold != f])
        held = fold == f
        accs.append(np.mean((scores[held] >= t) == (labels[held] == 1)))
        thresholds.append(t)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "threshold": float(np.mean(thresholds))}


def verification_metrics(embeddings: np.ndarray, identity: np.ndarray, *,
                         max_negative_pairs: int = 50_000, folds: int = 10,
                         seed: int = 0) -> dict[str, Any]:
    """Face verification quality of embeddings (one row per image) of labelled identities.

    Score = cosine similarity of the L2-normalised embeddings. Pairs: every same-identity pair
    (genuine) and every different-identity pair, or a seeded sample of `max_negative_pairs` of
    them (impostors). AUC and TAR@FAR use them all (TAR@FAR=f only with >= 1/f impostor
    pairs, else None); the 10-fold accuracy uses a balanced set (all genuine pairs and as many
    sampled impostor pairs, or the reverse when impostors are fewer), as LFW does.
    """
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    identity = np.asarray(identity)
    i, j = np.triu_indices(len(e), 1)
    same = identity[i] == identity[j]
    rng = np.random.default_rng([seed, 17])
    pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("verification needs at least one same-identity and one different-"
                         f"identity pair; got {len(pos)} and {len(neg)}.")
    if len(neg) > max_negative_pairs:
        neg = np.sort(rng.choice(neg, max_negative_pairs, replace=False))
    scores = np.einsum("nd,nd->n", e[i], e[j])
    labels = np.r_[np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)]
    all_scores = np.r_[scores[pos], scores[neg]]
    out: dict[str, Any] = {"genuine_pairs": int(len(pos)), "impostor_pairs": int(len(neg)),
                           "auc": metrics.roc_auc(labels, all_scores)}
    for far in (1e-2, 1e-3):
        out[f"tar_at_far_{far:.0e}"] = (metrics.tpr_at_fpr(labels, all_scores, far)
                                        if len(neg) >= round(1 / far) else None)
    n = min(len(pos), len(neg))
    bal_pos = np.sort(rng.choice(len(pos), n, replace=False))
    bal_neg = np.sort(rng.choice(len(neg), n, replace=False))
    bal = kfold_threshold_accuracy(np.r_[scores[pos][bal_pos], scores[neg][bal_neg]],
                                   np.r_[np.ones(n), np.zeros(n)], folds=folds, seed=seed)
    out.update({f"{folds}fold_{k}": v for k, v in bal.items()})
    out[f"{folds}fold_pairs"] = 2 * n
    out["mean_genuine_cosine"] = float(scores[pos].mean())
    out["mean_impostor_cosine"] = float(scores[neg].mean())
    return out


def attribute_metrics(logits: np.ndarray, attributes: np.ndarray, names: Sequence[str],
                      reference_attributes: np.ndarray | None = None) -> dict[str, Any]:
    """Per-attribute accuracy of ``logit > 0`` and AUC, with their means; and the accuracy of
    always predicting the majority value of `reference_attributes` (the training labels), the
    floor a useful attribute teacher must clear."""
    logits, attributes = np.asarray(logits, np.float64), np.asarray(attributes, np.int64)
    reference = attributes if reference_attributes is None else np.asarray(reference_attributes)
    out: dict[str, Any] = {"accuracy": {}, "auc": {}, "majority_accuracy": {}}
    for k, name in enumerate(names):
        y = attributes[:, k]
        out["accuracy"][name] = float(np.mean((logits[:, k] > 0) == (y == 1)))
        both = 0 < y.sum() < len(y)
        out["auc"][name] = metrics.roc_auc(y, logits[:, k]) if both else None
        majority = int(np.mean(reference[:, k]) >= 0.5)
        out["majority_accuracy"][name] = float(np.mean(y == majority))
    for key in ("accuracy", "auc", "majority_accuracy"):
        values = [v for v in out[key].values() if v is not None]
        out[f"mean_{key}"] = float(np.mean(values)) if values else None
    return out
