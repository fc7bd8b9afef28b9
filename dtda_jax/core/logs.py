"""Run outputs at the edge of the library: JSON-lines metrics, TensorBoard scalars, progress."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping

from tensorboardX import SummaryWriter

from dtda_jax.core import artifacts


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


class MetricWriter:
    """Appends one JSON object per record to `metrics.jsonl`; mirrors scalars to TensorBoard."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, stage: str, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"stage": stage, "step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        artifacts.append_jsonl(self.path, record)
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                self.tensorboard.add_scalar(f"{stage}/{key}", value, step)
        self.tensorboard.flush()

    def close(self) -> None:
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
