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


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def put_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Process-local numpy batch -> global arrays sharded over the data axis."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def check_batch_divisible(global_batch: int, mesh, field: str) -> None:
    if global_batch % mesh.size:
        raise ConfigError(
            f"config.{field}: the global batch of {global_batch} does not split evenly over "
            f"{mesh.size} devices; choose a value that makes it a multiple of {mesh.size}.")
