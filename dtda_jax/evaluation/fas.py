"""Cross-domain evaluation of a live/spoof model during training: the FAS evaluator hook.

Every `train.eval_every` steps (and at the last step) the evaluator scores the protocol's
target frames and held-out source frames with the model's live probability, reduces them per
video, computes the metrics at the configured threshold policy and records them:
`scores/step_*.npz` (per-video labels and scores, for ROC curves), `eval.jsonl` (one line
per evaluation), metrics.jsonl / TensorBoard ("eval"), and, when the evaluation is the best on
the target so far, the `checkpoints/<stage>_best` checkpoint and `best.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import numpy as np

from dtda_jax.core import artifacts, faults
from dtda_jax.core.checkpointing import StageCheckpoints
from dtda_jax.core.logs import MetricWriter, say
from dtda_jax.core.loop import Hook
from dtda_jax.core.sharding import process_rows, put_batch
from dtda_jax.core.state import TrainState
from dtda_jax.data import pipeline
from dtda_jax.evaluation import metrics
from dtda_jax.inference.scoring import score_batches


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How evaluations are scored (the run's `eval` section and its evaluation batch size)."""

    threshold_policy: str
    fixed_threshold: float
    fpr_targets: tuple[float, ...]
    video_reduce: str
    batch_size: int

    @classmethod
    def from_config(cls, config) -> "EvalSettings":
        e = config.eval
        return cls(threshold_policy=e.threshold_policy, fixed_threshold=e.fixed_threshold,
                   fpr_targets=tuple(e.fpr_targets), video_reduce=e.video_reduce,
                   batch_size=config.data.eval_batch_size)


def mesh_batch_size(batch_size: int, mesh) -> int:
    """`batch_size` rounded up to a multiple of the device count (the batch is sharded)."""
    return -(-batch_size // mesh.size) * mesh.size


def sharded_frame_scores(score_fn: Callable, variables: Any, frames, batch_size: int, mesh,
                         keys: tuple[str, ...] = ()) -> np.ndarray:
    """`score_fn(variables, batch)` of every frame, in frame order: each batch of frame positions
    is sharded over the mesh, each process reading and scoring only its rows, and the scores
    are gathered on every process. The batch is the images, or a dict with `keys` too."""
    batch_size = mesh_batch_size(batch_size, mesh)

    def place(positions):
        batch = pipeline.read_frames(frames, process_rows(positions), keys)
        return put_batch(batch, mesh) if keys else put_batch({"image": batch}, mesh)["image"]

    return score_batches(score_fn, variables, pipeline.position_batches(len(frames), batch_size), batch_size,
                         place=place)


def frame_scores(score_fn: Callable, variables: Any, frames, batch_size: int, mesh) -> np.ndarray:
    """The live/spoof model's `score_fn(variables, images)` of every frame, in frame order."""
    return sharded_frame_scores(score_fn, variables, frames, batch_size, mesh)


def video_level(frames, scores: np.ndarray, reduce: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-video labels, per-video scores) of a frame set's frame scores."""
    video_scores, labels, _ = metrics.aggregate_by_video(scores, frames.label, frames.video, reduce=reduce)
    return labels, video_scores


def evaluate_model(score_fn: Callable, variables: Any, protocol, settings: EvalSettings,
                   mesh) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Cross-domain metrics on the target videos (and source-val AUC), as plain floats, and
    the per-video labels and scores they came from."""
    target, source_val = (
        video_level(frames, frame_scores(score_fn, variables, frames, settings.batch_size, mesh),
                    settings.video_reduce)
        for frames in (protocol.target, protocol.source_val))
    result = metrics.evaluate(*target, threshold_policy=settings.threshold_policy, source_val=source_val,
                              fixed_threshold=settings.fixed_threshold, fpr_targets=settings.fpr_targets)
    result["source_val_auc"] = metrics.roc_auc(*source_val)
    scores = {"target_labels": target[0], "target_scores": target[1],
              "source_val_labels": source_val[0], "source_val_scores": source_val[1]}
    return result, scores


def is_better(new: dict, best: dict | None) -> bool:
    """Best-on-target selection: lower HTER, then higher AUC; the first evaluation is the best."""
    if best is None:
        return True
    return (new["hter"], -new["auc"]) < (best["hter"], -best["auc"])


class FasEvaluator:
    """The evaluation hook of a live/spoof stage whose files live in `directory`.

    At an evaluation step it writes, in this order, scores/step_*.npz, the eval.jsonl line,
    the "eval" metrics and, when the evaluation is the best on the target so far, the best
    checkpoint and best.json; the stage loop then saves the step's latest checkpoint. A
    resumed stage calls `resume(step)` first, which forgets everything recorded after the
    step it restarts from, so the redone evaluations are written once and "best" is what an
    uninterrupted run has at that step.
    """

    def __init__(self, *, stage: str, directory: str, score_fn: Callable, protocol, settings: EvalSettings,
                 mesh, writer: MetricWriter, log: Callable[[str], None] = say):
        self.stage, self.score_fn, self.protocol = stage, score_fn, protocol
        self.settings, self.mesh, self.writer, self.log = settings, mesh, writer, log
        self.eval_path = os.path.join(directory, "eval.jsonl")
        self.best_path = os.path.join(directory, "best.json")
        self.scores_dir = os.path.join(directory, "scores")
        self.best_checkpoints = StageCheckpoints(os.path.join(directory, "checkpoints", f"{stage}_best"),
                                                 with_data=False)
        self.best = artifacts.read_json(self.best_path) if os.path.exists(self.best_path) else None

    def hook(self, every: int) -> Hook:
        return Hook(every, self, resume=self.resume, records=("eval",))

    def evaluate(self, step: int, state: TrainState) -> dict[str, Any]:
        """Evaluates `state` and records the result (scores, eval.jsonl, metrics, console)."""
        result, scores = evaluate_model(self.score_fn, state.variables, self.protocol, self.settings, self.mesh)
        result["step"] = step
        artifacts.write_npz(self._scores_path(step), **scores)
        artifacts.append_jsonl(self.eval_path, result)
        self.writer.write("eval", step, {k: v for k, v in result.items() if k != "threshold_policy"})
        self.log(f"[eval {self.stage}] step {step}: target HTER {100 * result['hter']:.2f}% "
                 f"({result['threshold_policy']}) AUC {100 * result['auc']:.2f}% "
                 f"| source-val AUC {100 * result['source_val_auc']:.2f}%")
        return result

    def __call__(self, step: int, state: TrainState) -> None:
        """Evaluates and keeps the state as the best checkpoint when it is the best so far."""
        result = self.evaluate(step, state)
        faults.point(f"{self.stage}:evaluated")
        if is_better(result, self.best):
            self.best = result
            self.best_checkpoints.save(step, state)
            faults.point(f"{self.stage}:best_saved")
            artifacts.write_json(self.best_path, result)

    def resume(self, step: int) -> None:
        """Forgets the evaluations after `step` (eval.jsonl lines, scores, best checkpoints)
        and rebuilds "best" from the ones before."""
        evaluations = artifacts.read_jsonl(self.eval_path)
        kept = [e for e in evaluations if e["step"] <= step]
        if len(kept) < len(evaluations):
            artifacts.write_text(self.eval_path, "".join(json.dumps(e) + "\n" for e in kept))
        if os.path.isdir(self.scores_dir):
            for name in os.listdir(self.scores_dir):
                if name.startswith("step_") and int(name[5:12]) > step:
                    artifacts.remove(os.path.join(self.scores_dir, name))
        for saved in self.best_checkpoints.all_steps():
            if saved > step:
                self.best_checkpoints.delete(saved)
        self.best = None
        for e in kept:
            if is_better(e, self.best):
                self.best = e
        if self.best is None:
            artifacts.remove(self.best_path)
        elif self.best != (artifacts.read_json(self.best_path) if os.path.exists(self.best_path) else None):
            artifacts.write_json(self.best_path, self.best)

    def last(self, step: int, state: TrainState) -> dict[str, Any]:
        """The evaluation of the final `step` (recorded, or made now)."""
        recorded = [e for e in artifacts.read_jsonl(self.eval_path) if e["step"] == step]
        return recorded[-1] if recorded else self.evaluate(step, state)

    def _scores_path(self, step: int) -> str:
        return os.path.join(self.scores_dir, f"step_{step:07d}.npz")

    def close(self) -> None:
        self.best_checkpoints.close()
