"""A trained run's deployment threshold, chosen on its held-out source-val videos.

Every evaluation saves the per-video scores it measured (`<workdir>/scores/step_*.npz`: the
target's and source-val's labels and scores). The operating point of a checkpoint is fitted
on that step's source-val scores only, so no target label is used; the target's rates at the
same threshold are reported for information (what the model does on the unseen domain).
Numpy only: `predict --bundle` and the bundle's own checks need no JAX.
"""

from __future__ import annotations

import os

import numpy as np

from dtda_jax.core.errors import UserError
from dtda_jax.evaluation import metrics

DEFAULT_POINT = "eer"


def scores_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, "scores", f"step_{step:07d}.npz")


def rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    r = metrics.error_rates(labels, scores, threshold)
    return {"apcer": r["apcer"], "bpcer": r["bpcer"], "acer": r["acer"],
            "num_live": int(np.sum(labels == 1)), "num_spoof": int(np.sum(labels == 0))}


def choose(workdir: str, step: int, point: str = DEFAULT_POINT) -> dict:
    """The operating point `point` (see `metrics.parse_operating_point`) of the checkpoint at
    `step`: its threshold and the APCER / BPCER / ACER it gives on source-val and the target."""
    path = scores_path(workdir, step)
    if not os.path.isfile(path):
        try:
            kind, value = metrics.parse_operating_point(point)
        except ValueError as err:
            raise UserError(str(err)) from None
        if kind == "fixed":
            return {"point": point, "threshold": value, "chosen_on": "given", "step": step,
                    "source_val": None, "target": None}
        raise UserError(f"{workdir} has no saved evaluation of step {step} ({path} is missing), so no "
                        "source-val scores to choose a threshold on: use the checkpoint of an "
                        "evaluation step (--checkpoint=best, or a run whose last step was evaluated), "
                        "or give the threshold (fixed=T).")
    with np.load(path) as saved:
        source = saved["source_val_labels"], saved["source_val_scores"]
        target = saved["target_labels"], saved["target_scores"]
    try:
        threshold = metrics.operating_threshold(*source, point)
    except ValueError as err:
        raise UserError(f"cannot choose operating point {point!r} on {path}: {err}") from None
    return {"point": point, "threshold": threshold, "chosen_on": "source_val", "step": step,
            "source_val": rates(*source, threshold), "target": rates(*target, threshold)}


def describe(op: dict) -> str:
    """One line: the point, its threshold and its rates (percent)."""
    def text(r: dict | None) -> str:
        if r is None:
            return "not measured (no saved evaluation of this step)"
        return (f"APCER {100 * r['apcer']:.2f}% BPCER {100 * r['bpcer']:.2f}% ACER {100 * r['acer']:.2f}% "
                f"({r['num_live']} live, {r['num_spoof']} spoof videos)")
    where = "chosen on source-val" if op["chosen_on"] == "source_val" else "given"
    return (f"operating point {op['point']} {where} (step {op['step']}): threshold "
            f"{op['threshold']:.6g}; source-val {text(op['source_val'])}; target, for information, "
            f"{text(op['target'])}")
