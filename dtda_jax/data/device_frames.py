"""Training frames held on the devices: a batch leaves the host as frame positions.

`data.frame_store = "device"`: the source-train frames (read from the decoded-frame store) are
copied once onto every device of the mesh, and each training batch's images are gathered
there from its positions. The host's share of a batch is then the positions and the
augmentation's draws, independent of the image size, and no image crosses from the host to
a device during training: the host's memory bandwidth no longer limits how fast a GPU is fed
(benchmarks/input_pipeline_speed.py measures both ways). It costs every device the frames'
bytes (N x H x W x 3); evaluation still reads the host's store.
"""

from __future__ import annotations

import grain
import jax
import numpy as np

from dtda_jax.core.sharding import batch_sharded, put_batch, replicate


class DeviceFrameBatches(grain.DatasetIterator):
    """The batches of `parent` (with "frame": positions in `frames`) with their "image" rows
    gathered on the devices; checkpoints as `parent` does (its state is a position)."""

    def __init__(self, parent: grain.DatasetIterator, frames, mesh):
        super().__init__(parent)
        self._mesh = mesh
        self._images = replicate(frames.read_images(np.arange(len(frames))), mesh)
        self._gather = jax.jit(lambda images, rows: images[rows], out_shardings=batch_sharded(mesh))

    def __next__(self) -> dict:
        batch = dict(next(self._parent))
        rows = put_batch({"frame": batch.pop("frame")}, self._mesh)["frame"]
        return {**batch, "image": self._gather(self._images, rows)}

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state) -> None:
        self._parent.set_state(state)
