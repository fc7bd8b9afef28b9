"""Run outputs at the edge of the library: JSON-lines metrics, TensorBoard scalars, progress."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping, Sequence

from tensorboardX import SummaryWriter

from dtda_jax.core import artifacts


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


class MetricWriter:
    """Appends one JSON object per record to `metrics.jsonl`; mirrors scalars to TensorBoard.

    metrics.jsonl is the record; the TensorBoard events are rebuilt from it when a resumed
    stage drops the records of steps it will redo (`drop_after`), so both hold each step once.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, "tensorboard")
        self.enabled = artifacts.writes_files()  # only the primary process of a job logs
        self.tensorboard = SummaryWriter(self.tensorboard_dir) if self.enabled else None

    def write(self, stage: str, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"stage": stage, "step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        artifacts.append_jsonl(self.path, record)
        self._scalars(record)
        self.tensorboard.flush()

    def _scalars(self, record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                self.tensorboard.add_scalar(f"{record['stage']}/{key}", value, record["step"])

    def drop_after(self, step: int, stages: Sequence[str]) -> None:
        """Forgets the records of `stages` after `step` (a resumed stage redoes those steps)."""
        if not self.enabled:
            return
        records = artifacts.read_jsonl(self.path)
        kept = [r for r in records if not (r["stage"] in stages and r["step"] > step)]
        if len(kept) == len(records):
            return
        artifacts.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.tensorboard.close()
        artifacts.remove(self.tensorboard_dir)
        self.tensorboard = SummaryWriter(self.tensorboard_dir)
        for record in kept:
            self._scalars(record)
        self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()


def say(line: str) -> None:
    """Prints a progress line at once (logs are often redirected to a file)."""
    print(line, flush=True)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Images/s and ETA from the steps done since this process started (compile excluded)."""

    def __init__(self, stage: str, total_steps: int, global_batch: int, start_step: int):
        self.stage, self.total, self.batch = stage, total_steps, global_batch
        self.t0, self.step0 = None, start_step

    def line(self, step: int, metrics: Mapping[str, float]) -> str:
        now = time.perf_counter()
        if self.t0 is None:  # the first logged step includes compilation: time from here on
            self.t0, self.step0 = now, step
            speed, eta = "compiling", "?"
        else:
            rate = (step - self.step0) / max(now - self.t0, 1e-9)
            speed = f"{rate * self.batch:.1f} img/s"
            eta = format_duration((self.total - step) / max(rate, 1e-9))
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        return f"[{self.stage}] step {step}/{self.total} | {shown} | {speed} | ETA {eta}"
