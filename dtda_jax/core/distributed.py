"""Multi-process runs on JAX's distributed runtime: joining the job and agreeing across it.

Every process of a job runs the same command. `initialize` joins them (explicit flags, or what
JAX detects under SLURM, Open MPI and on TPU pods); from then on `jax.devices()` lists every
process's devices, the data-parallel mesh spans them all, each process feeds its slice of
every global batch and the jitted steps run as one program. Process 0 is the primary: it
alone writes files (`dtda_jax.core.artifacts`), logs and takes locks; Orbax checkpoints are
written by all processes together, as Orbax's multi-host API expects. Every decision that
changes what the processes run next (a stage's starting step, a stop, a cache to fill) is
made from the same inputs on every process, or made by the primary and broadcast.

The workdir and the caches must be on a filesystem every process sees (as Orbax needs).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable

import jax
import numpy as np

from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError


def cluster_detected() -> str | None:
    """The launcher JAX can read the job's layout from, when this process is one of several."""
    env = os.environ
    if int(env.get("SLURM_NTASKS", env.get("SLURM_STEP_NUM_TASKS", "1")) or 1) > 1 and "SLURM_PROCID" in env:
        return "SLURM"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "Open MPI"
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return "TPU pod"
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins the job's processes before anything else touches JAX; a no-op for a single
    process. Explicit values win over detection; all three or none must be given."""
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise UserError("--coordinator_address, --num_processes and --process_id go together: give all "
                        "three (or none, where JAX detects the job: SLURM, Open MPI, TPU pods).")
    if all(given):
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise UserError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                            f"(--num_processes={num_processes}).")
        if num_processes == 1:
            return
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                      process_id=process_id)
    elif cluster_detected():
        kwargs = {}
    else:
        return
    # CPU devices of different processes talk through gloo (GPUs use NCCL, TPUs their ICI).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    if jax.process_index() != 0:
        artifacts.set_writer(False)
        # One console, the primary's: this process's standard output goes nowhere (its errors
        # still reach stderr).
        sys.stdout.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def is_primary() -> bool:
    return jax.process_index() == 0


def multi_process() -> bool:
    return jax.process_count() > 1


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier `name`."""
    if multi_process():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast_from_primary(value: int) -> int:
    """The primary's `value` on every process (an int: a flag, a status, a step)."""
    if not multi_process():
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def largest(value: int) -> int:
    """The largest of the processes' `value`s, on every process (e.g. a signal number, 0 = none)."""
    if not multi_process():
        return value
    from jax.experimental import multihost_utils

    return int(np.asarray(multihost_utils.process_allgather(np.int32(value))).max())


@contextlib.contextmanager
def primary_first(name: str):
    """The primary runs the body first (e.g. fills a cache), then the others run it (and find
    the cache filled)."""
    if not is_primary():
        barrier(f"{name}:primary done")
    yield
    if is_primary():
        barrier(f"{name}:primary done")


class PrimaryFailed(UserError):
    """The primary process refused or failed a step every process needed (its output says why)."""


def on_primary(name: str, fn: Callable[[], Any]) -> Any:
    """`fn()` (a lock, a check) on the primary alone; the others wait for it, and stop with
    PrimaryFailed when it raised, so that no process is left waiting in a collective.
    Returns fn's result on the primary, None elsewhere."""
    if not multi_process():
        return fn()
    result = None
    if is_primary():
        try:
            result = fn()
        except BaseException:
            broadcast_from_primary(1)
            raise
        broadcast_from_primary(0)
    elif broadcast_from_primary(0):
        raise PrimaryFailed(f"process 0 stopped at {name}; its output says why.")
    return result


@contextlib.contextmanager
def primary_lock(directory: str, what: str, wait: bool = False, log=print):
    """`directory_lock` held by the primary for the whole job (the job is one run). Every
    process leaves the body together, once the primary's writes under the lock are done."""
    from dtda_jax.core.lock import directory_lock

    with contextlib.ExitStack() as stack:
        on_primary(f"the lock of {directory}",
                   lambda: stack.enter_context(directory_lock(directory, what, wait=wait, log=log)))
        yield
        barrier(f"the lock of {directory}: done")
