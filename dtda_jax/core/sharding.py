"""The data-parallel mesh: the batch is sharded over a 1-D `data` axis, the state replicated.

BatchNorm statistics and gradients are then computed over the global batch, so a step's
result does not depend on the number of devices or processes.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from dtda_jax.core.errors import ConfigError


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D data-parallel mesh over the first `num_devices` devices (default: all)."""
    devices = jax.devices()[:num_devices] if num_devices else jax.devices()
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree, mesh):
    """`tree` copied onto every device of the mesh. Its arrays go through the host: arrays
    committed to one device (restored weights) cannot be sent to other processes' devices
    directly, while host values given identically by every process can."""
    return jax.device_put(jax.device_get(tree), replicated(mesh))


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def process_slice(global_size: int, process_index: int, process_count: int) -> slice:
    """Process `process_index`'s rows of a global batch of `global_size`: the devices of the
    1-D mesh are ordered by process, so process i feeds the i-th contiguous block (what
    `put_batch` expects)."""
    local = global_size // process_count
    return slice(process_index * local, (process_index + 1) * local)


def process_rows(global_rows: np.ndarray) -> np.ndarray:
    """This process's share of a global batch's rows."""
    return global_rows[process_slice(len(global_rows), jax.process_index(), jax.process_count())]


def to_host(array: jax.Array) -> np.ndarray:
    """A (possibly sharded over several processes) array as one numpy array on every process."""
    if getattr(array, "is_fully_addressable", True):
        return np.asarray(jax.device_get(array))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def put_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Process-local numpy batch -> global arrays sharded over the data axis (arrays that
    already are global, e.g. images gathered on the devices, pass as they are)."""
    sharding = batch_sharded(mesh)
    return {k: v if isinstance(v, jax.Array) else jax.make_array_from_process_local_data(sharding, v)
            for k, v in batch.items()}


def check_batch_divisible(global_batch: int, mesh, field: str) -> None:
    if global_batch % mesh.size:
        raise ConfigError(
            f"config.{field}: the global batch of {global_batch} does not split evenly over "
            f"{mesh.size} devices; choose a value that makes it a multiple of {mesh.size}.")
