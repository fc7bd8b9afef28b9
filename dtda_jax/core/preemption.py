"""SIGTERM and SIGINT: stop cleanly, where nothing is lost.

Clusters preempt with SIGTERM, people press Ctrl-C. The commands call `install()`. A first
signal during training lets the current step finish; the stage loop then checkpoints that
step and raises `Preempted`, which the command reports in one line (where it stopped, how to
resume) before exiting with 128 + the signal number. Outside a training loop (data
preparation, setup) nothing is half-done, since every file is written atomically, so
`Preempted` is raised at once. A second signal exits immediately.
"""

from __future__ import annotations

import contextlib
import os
import signal

from dtda_jax.core.errors import UserError

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state = {"signal": None, "loops": 0}


class Preempted(UserError):
    """The run was stopped by a signal; what was done is saved."""

    def __init__(self, signum: int, where: str = ""):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}{f' {where}' if where else ''}. Rerun the same command to resume.")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _handler(signum, frame) -> None:
    if _state["signal"] is not None:
        os._exit(128 + signum)  # the second signal: at once
    _state["signal"] = signum
    if not _state["loops"]:
        raise Preempted(signum)


def install() -> None:
    """Routes SIGTERM and SIGINT through this module (from a command's main thread)."""
    _state["signal"] = None
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def requested() -> int | None:
    """The signal received so far, if any."""
    return _state["signal"]


@contextlib.contextmanager
def deferred():
    """While inside, a first signal only marks the request; the loop acts on it between steps."""
    _state["loops"] += 1
    try:
        yield
    finally:
        _state["loops"] -= 1
