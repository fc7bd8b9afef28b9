"""Orbax checkpoints of one training stage: model/optimiser state plus the data iterator.

Orbax writes each step into a temporary directory and renames it when complete, so an
interrupted save never leaves a half-written checkpoint that a resume would pick up.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class StageCheckpoints:
    """Latest checkpoint(s) of one stage under `directory`, for automatic resume."""

    def __init__(self, directory: str, max_to_keep: int = 1, with_data: bool = True):
        self.directory = os.path.abspath(directory)
        self.with_data = with_data
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: grain.DatasetIterator | None = None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if self.with_data:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(self, template: Any, data_iterator: grain.DatasetIterator | None = None,
                step: int | None = None) -> Any:
        """Restores into the template's structure and shardings (and the iterator, in place)."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        items = {"state": ocp.args.StandardRestore(abstract)}
        if self.with_data:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def close(self) -> None:
        self.manager.close()
