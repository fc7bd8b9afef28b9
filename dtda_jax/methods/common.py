"""What every method's stages are built from: the run context and the evaluated live/spoof
stage (the one loop with the FAS evaluator hook)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax

from dtda_jax.core.checkpointing import StageCheckpoints
from dtda_jax.core.logs import MetricWriter
from dtda_jax.core.loop import Stage, StopAt, run_stage
from dtda_jax.core.sharding import check_batch_divisible
from dtda_jax.core.state import TrainState
from dtda_jax.data import pipeline
from dtda_jax.data.device_frames import DeviceFrameBatches
from dtda_jax.evaluation.fas import EvalSettings, FasEvaluator
from dtda_jax.inference.scoring import jit_live_probability


@dataclasses.dataclass
class RunContext:
    """One run: its config, workdir, device mesh, protocol data, metrics writer, and when to stop."""

    config: Any
    workdir: str
    mesh: Any
    protocol: pipeline.Protocol
    writer: MetricWriter
    stop: StopAt

    def global_batch(self, samples_per_group: int, field: str) -> int:
        """Images per step of balanced batches (`field` sets `samples_per_group`)."""
        size = self.protocol.num_source_domains * 2 * samples_per_group
        check_batch_divisible(size, self.mesh, field)
        return size

    def source_batches(self, samples_per_group: int, seed: int, num_steps: int):
        """Balanced (domain x live/spoof) training batches of the source domains, with the
        config's augmentation, this process's share of each global batch."""
        d, p = self.config.data, self.protocol
        on_device = d.frame_store == "device"
        batches = pipeline.balanced_train_iterator(
            p.train, p.domain_names, p.num_source_domains, samples_per_group, seed=seed,
            num_steps=num_steps, flip=d.augment_flip, crop_padding=d.augment_crop_padding,
            process_index=jax.process_index(), process_count=jax.process_count(), frames_on_device=on_device)
        return DeviceFrameBatches(batches, p.train, self.mesh) if on_device else batches

    def stage(self, name: str, num_steps: int, global_batch: int, nan_advice: str) -> Stage:
        t = self.config.train
        return Stage(name=name, num_steps=num_steps, global_batch=global_batch, log_every=t.log_every,
                     checkpoint_every=t.checkpoint_every, nan_advice=nan_advice)


def train_live_spoof_stage(ctx: RunContext, stage: Stage, *, directory: str, model, state: TrainState,
                           step_fn: Callable, batches, writer: MetricWriter,
                           init: Callable[[TrainState], TrainState] | None = None
                           ) -> tuple[TrainState, dict, dict] | None:
    """Trains a live/spoof model (`model(x)["cls_logits"]`) through the loop, evaluated on the
    target every `train.eval_every` steps and at the end; returns (state, best-on-target
    evaluation, last evaluation), or None when the run was stopped early.

    Files under `directory`: checkpoints/<stage> (latest, for resume), checkpoints/<stage>_best,
    best.json, eval.jsonl and scores/ (see dtda_jax/evaluation/fas.py).
    """
    latest = StageCheckpoints(os.path.join(directory, "checkpoints", stage.name))
    evaluator = FasEvaluator(stage=stage.name, directory=directory, score_fn=jit_live_probability(model),
                             protocol=ctx.protocol, settings=EvalSettings.from_config(ctx.config),
                             mesh=ctx.mesh, writer=writer)
    try:
        state, finished = run_stage(stage, state, step_fn, batches, ctx.mesh, latest, writer, init=init,
                                    hooks=[evaluator.hook(ctx.config.train.eval_every)], stop=ctx.stop)
        return (state, evaluator.best, evaluator.last(stage.num_steps, state)) if finished else None
    finally:
        latest.close()
        evaluator.close()
