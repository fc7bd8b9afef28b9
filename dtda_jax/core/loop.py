"""The one stage loop every training stage runs through.

A stage (DTDA's domain classifier and student, KDFAS's teacher and student, the own face
recognition and attribute teachers) is a jitted step function, a checkpointable iterator of
batches and a `Stage` description. `run_stage` resumes it from its newest usable checkpoint (or
initialises it), runs it to its step count with progress lines, metrics.jsonl / TensorBoard
records and a NaN/Inf guard, checkpoints it, and calls its hooks (evaluation, best
checkpoint) on the states it checkpoints. A kill at any moment loses at most the steps since
the last checkpoint, and the resumed stage ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterator, Sequence

import jax
import numpy as np

from dtda_jax.core import distributed, faults, preemption, xla_cpu
from dtda_jax.core.checkpointing import StageCheckpoints
from dtda_jax.core.logs import MetricWriter, Progress, say
from dtda_jax.core.sharding import batch_sharded, put_batch, replicated
from dtda_jax.core.state import TrainState


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/Inf; raised before a bad state can be checkpointed."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """What the loop needs to know about a stage besides its step function and data."""

    name: str  # log prefix, metrics.jsonl "stage", checkpoints/<name>
    num_steps: int
    global_batch: int  # images per step (progress: images/s)
    log_every: int
    checkpoint_every: int
    # Write every step's metrics to metrics.jsonl, not only the means at log points (the own
    # teachers' training reports keep the whole history).
    every_step_records: bool = False
    # The NaN/Inf message's advice: the fields to change.
    nan_advice: str = "Lower the learning rate, enable gradient clipping or check the input data."


@dataclasses.dataclass(frozen=True)
class Hook:
    """`fn(step, state)` on the state of every `every`-th step and of the last, just before that
    state is checkpointed: the hook's files and the checkpoint form one unit, since a kill
    before the checkpoint makes the resumed stage redo both. `resume(step)` (when the stage
    starts, with the step it starts from) forgets what the hook recorded after that step;
    `records` are the metrics.jsonl stages it writes."""

    every: int
    fn: Callable[[int, TrainState], None]
    resume: Callable[[int], None] | None = None
    records: tuple[str, ...] = ()


class StopAt:
    """Ends a run once it has done `steps` steps, the stages counted one after the other: what a
    preempted job does at that moment (None: never). Tests interrupt runs with it and resume."""

    def __init__(self, steps: int | None = None):
        self.left = steps

    def stage_end(self, num_steps: int) -> int:
        """The step at which the next stage of `num_steps` steps has to stop."""
        return num_steps if self.left is None else min(num_steps, self.left)

    def after_stage(self, num_steps: int) -> None:
        if self.left is not None:
            self.left = max(self.left - num_steps, 0)


def jit_train_step(step_fn: Callable, mesh, with_frozen: bool) -> Callable:
    """Jits `step_fn(state, [frozen,] batch) -> (state, metrics)` with the state replicated
    (and donated), the frozen variables replicated and the batch sharded over the devices."""
    repl, data = replicated(mesh), batch_sharded(mesh)
    in_shardings = (repl, repl, data) if with_frozen else (repl, data)
    return jax.jit(step_fn, in_shardings=in_shardings, out_shardings=(repl, repl), donate_argnums=0,
                   compiler_options=xla_cpu.compiler_options(xla_cpu.TRAINING))


def first_nonfinite(history: Sequence[tuple[int, dict]]) -> int | None:
    for step, m in history:
        if not math.isfinite(float(m["loss"])):
            return step
    return None


def stop_signal(at_log: bool) -> int | None:
    """The SIGTERM/SIGINT that asks to stop after this step, if any. One process checks every
    step; the processes of a job agree at log points (they must stop at the same step, even
    when only some of them got the signal, and log points already wait for the device), so
    they stop within `log_every` steps."""
    if not distributed.multi_process():
        return preemption.requested()
    return (distributed.largest(preemption.requested() or 0) or None) if at_log else None


def run_stage(stage: Stage, state: TrainState, step_fn: Callable[[TrainState, dict], tuple],
              batches: Iterator[dict[str, np.ndarray]], mesh, checkpoints: StageCheckpoints,
              writer: MetricWriter, *, init: Callable[[TrainState], TrainState] | None = None,
              hooks: Sequence[Hook] = (), stop: StopAt | None = None,
              log: Callable[[str], None] = say) -> tuple[TrainState, bool]:
    """Resumes or initialises the stage, runs it, returns (state, whether it finished).

    `state` is the fresh state; the newest checkpoint that restores and verifies (state and
    iterator position) replaces it when there is one, else `init` (e.g. ImageNet weights) may.
    Records of steps after the starting step (left by a run that was killed before its next
    checkpoint) are dropped, so every log holds each step once. Metrics stay on the device
    between log points (no per-step host sync); at each log point the losses of every step
    since the last one are checked, so a NaN/Inf is reported with the exact step, before any
    checkpoint of that state is written. A SIGTERM/SIGINT (dtda_jax.core.preemption) ends the
    stage after the current step (a multi-process job: at the next log point) with a checkpoint
    of it, then raises Preempted.
    """
    stop = stop or StopAt()
    restored = checkpoints.restore_latest(state, batches, log)
    if restored is not None:
        state = restored
        done = int(state.step)
        log(f"[{stage.name}] resumed from step {done}" if done < stage.num_steps else
            f"[{stage.name}] already trained ({done} steps), restored")
    elif init is not None:
        state = init(state)
    step = int(jax.device_get(state.step))
    writer.drop_after(step, (stage.name, *(r for hook in hooks for r in hook.records)))
    for hook in hooks:
        if hook.resume is not None:
            hook.resume(step)
    end = max(stop.stage_end(stage.num_steps), step)
    progress = Progress(stage.name, stage.num_steps, stage.global_batch, step)
    pending: list[tuple[int, dict]] = []
    with preemption.deferred():
        while step < end:
            state, metrics = step_fn(state, put_batch(next(batches), mesh))
            step += 1
            faults.point(f"{stage.name}:step")
            pending.append((step, metrics))
            at_log = step % stage.log_every == 0 or step == end
            signum = stop_signal(at_log)
            signalled = signum is not None
            at_log = at_log or signalled
            at_checkpoint = step % stage.checkpoint_every == 0 or step == end or signalled
            if not (at_log or at_checkpoint):
                continue
            history = jax.device_get(pending)
            pending = []
            bad = first_nonfinite(history)
            if bad is not None:
                latest = checkpoints.latest_step()
                saved = (f"the latest checkpoint, step {latest} (its state is checked against its sha256 when "
                         f"restored), is in {checkpoints.directory}" if latest is not None else
                         "no checkpoint of this stage was saved yet")
                raise NonFiniteLossError(
                    f"[{stage.name}] the loss became {history[bad - history[0][0]][1]['loss']} at step {bad}. "
                    f"The run stopped before saving that state; {saved}. {stage.nan_advice}")
            if stage.every_step_records:
                for s, m in history:
                    writer.write(stage.name, s, m)
            if at_log:
                means = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
                log(progress.line(step, means))
                if not stage.every_step_records:
                    writer.write(stage.name, step, means)
            if at_checkpoint:
                for hook in hooks:
                    if step % hook.every == 0 or step == stage.num_steps:
                        hook.fn(step, state)
                faults.point(f"{stage.name}:before_commit")
                checkpoints.save(step, state, batches)
                faults.point(f"{stage.name}:committed")
            if signalled:
                raise preemption.Preempted(signum,
                                           f"at {stage.name} step {step} of {stage.num_steps} (checkpoint saved)")
    stop.after_stage(stage.num_steps)
    return state, step >= stage.num_steps
