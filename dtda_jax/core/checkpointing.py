"""Orbax checkpoints of one training stage: model/optimiser state plus the data iterator.

Orbax writes each step into a temporary directory and renames it when complete, so an
interrupted save never leaves a half-written checkpoint that a resume would pick up (and the
temporary directories an interrupted save leaves are removed when the stage starts again).
The last two checkpoints are kept. Each is saved with the sha256 of its state's arrays in its
metadata; a restore recomputes it, so a damaged checkpoint (a truncated or missing file,
flipped bytes) is found, set aside in `<directory>.damaged/` (never deleted) and the previous
one used instead.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any, Callable

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from dtda_jax.core import artifacts, distributed, faults
from dtda_jax.core.errors import UserError

KEEP = 2  # checkpoints kept per stage: the latest and one to fall back to
STEP_METADATA = "_CHECKPOINT_METADATA"  # orbax's per-step metadata (where the sha256 is kept)


class DamagedCheckpointError(UserError):
    """No checkpoint of a stage could be restored and verified."""


def state_digest(tree: Any) -> str:
    """sha256 over the leaves of a pytree: their paths, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class StageCheckpoints:
    """The latest checkpoints of one stage under `directory`, for automatic resume."""

    def __init__(self, directory: str, with_data: bool = True, keep: int = KEEP):
        self.directory = os.path.abspath(directory)
        self.with_data = with_data
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep), create=True,
            cleanup_tmp_directories=True, enable_async_checkpointing=False)
        # Naming the items' handlers (the data item's too when it is not restored, as predict and
        # export read a training checkpoint) lets orbax read a step without warning that it
        # "could not restore" them.
        handlers = {"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_iterator: grain.DatasetIterator | None = None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if self.with_data:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        faults.point("checkpoint_write")
        self.manager.save(step, args=ocp.args.Composite(**items), force=True,
                          custom_metadata={"state_sha256": state_digest(state)})
        self.manager.wait_until_finished()

    def delete(self, step: int) -> None:
        self.manager.delete(step)

    def restore(self, template: Any, data_iterator: grain.DatasetIterator | None = None,
                step: int | None = None, log: Callable[[str], None] = print) -> Any:
        """Restores `step` (default: the latest) into the template's structure and shardings
        (and the iterator, in place) and checks it against its sha256; DamagedCheckpointError
        names what is wrong. Checkpoints written before checksums existed (their metadata has
        none) are restored unverified, with a line saying so."""
        step = self.latest_step() if step is None else step
        where = os.path.join(self.directory, str(step))
        if not os.path.isfile(os.path.join(where, STEP_METADATA)):
            raise DamagedCheckpointError(f"{where} has no {STEP_METADATA}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        items = {"state": ocp.args.StandardRestore(abstract)}
        if self.with_data:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            expected = (self.manager.metadata(step).custom_metadata or {}).get("state_sha256")
            state = self.manager.restore(step, args=ocp.args.Composite(**items))["state"]
        except Exception as err:  # orbax, tensorstore, grain and JSON errors all mean "damaged"
            detail = " ".join(str(err).split())[:160] or type(err).__name__
            raise DamagedCheckpointError(f"{where} cannot be read ({type(err).__name__}: {detail})") from err
        if expected is None:
            log(f"[checkpoint] {where} predates state checksums: restored without verifying it")
        elif state_digest(state) != expected:
            raise DamagedCheckpointError(f"{where}: its arrays differ from the sha256 saved with them")
        return state

    def restore_latest(self, template: Any, data_iterator: grain.DatasetIterator | None = None,
                       log: Callable[[str], None] = print) -> Any | None:
        """The newest checkpoint that restores and verifies (None when there is none at all);
        damaged ones are set aside with a line each. DamagedCheckpointError when every
        checkpoint is damaged."""
        steps = self.all_steps()
        for step in reversed(steps):
            try:
                state = self.restore(template, data_iterator, step, log)
            except DamagedCheckpointError as err:
                log(f"[checkpoint] {err}; moved it to {self.set_aside(step)}")
                continue
            if step != steps[-1]:
                log(f"[checkpoint] resuming from the previous checkpoint, step {step}, instead")
            return state
        if steps:
            raise DamagedCheckpointError(
                f"none of the checkpoints of {self.directory} (steps {steps}) can be used; they were moved to "
                f"{self.directory}.damaged/. Rerun the same command to train this stage from its start.")
        return None

    def set_aside(self, step: int) -> str:
        """Moves a damaged step out of the way (kept for inspection) and forgets it."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        target = os.path.join(f"{self.directory}.damaged", f"{step}-{stamp}")
        artifacts.move(os.path.join(self.directory, str(step)), target)
        distributed.barrier(f"set aside {self.directory}/{step}")
        self.manager.reload()
        return target

    def close(self) -> None:
        self.manager.close()
