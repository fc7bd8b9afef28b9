"""What every command does with errors: a user's mistake (UserError) becomes one line naming
the problem and the fix, with exit status 2; a stop by SIGTERM/SIGINT its line and 128 + the
signal; anything else is a bug and keeps its traceback. `--debug` shows tracebacks always."""

from __future__ import annotations

import sys
from typing import Callable

from dtda_jax.core import preemption
from dtda_jax.core.errors import UserError


def run_command(name: str, body: Callable[[], int | None], debug: bool = False,
                stop_on_signals: bool = False) -> int:
    """Runs a command's body and returns its exit status. `stop_on_signals` makes SIGTERM and
    SIGINT stop a training command cleanly (dtda_jax.core.preemption)."""
    if stop_on_signals:
        preemption.install()
    try:
        status = body()
    except preemption.Preempted as err:
        print(f"{name}: {err}", file=sys.stderr, flush=True)
        return err.exit_status
    except UserError as err:
        if debug:
            raise
        print(f"{name}: {err}", file=sys.stderr, flush=True)
        return 2
    return 0 if status is None else status
