"""One process at a time per workdir (or cache entry): a lock file held with flock.

The kernel releases an flock when its process dies, even by SIGKILL, so a lock is never left
stuck; the file records who holds it (PID, host, start time) so that a second run can say
whom it waits for, and a run that finds the record of a holder that died without releasing
says it takes over. (flock does not work across machines on every network filesystem: on
such storage give every run its own --workdir.)
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket

from dtda_jax.core.errors import UserError

LOCK_FILE = "run.lock"


class LockHeld(UserError):
    """Another live process holds the lock."""


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"pid": "?", "host": "?", "raw": text}


def _describe(h: dict) -> str:
    return f"PID {h.get('pid', '?')} on host {h.get('host', '?')} (since {h.get('since', '?')})"


@contextlib.contextmanager
def directory_lock(directory: str, what: str, wait: bool = False, log=print):
    """Holds `<directory>/run.lock` while inside. A held lock is refused at once with
    LockHeld (`wait=False`, a run's workdir) or waited for with a line saying so (`wait=True`,
    a shared cache entry that another run is filling)."""
    path = os.path.join(directory, LOCK_FILE)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:  # a file in the way, no permission, a read-only filesystem
        raise UserError(f"cannot use {directory}: {err.strerror or err} ({err.filename}); choose a "
                        "writable folder that is not a file.") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise LockHeld(f"{directory} is in use by another {what}: {_describe(holder)}. Wait for it "
                               "to finish (or stop it), or use another --workdir.") from None
            log(f"[lock] waiting for {_describe(holder)}, which holds {path}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        previous = _holder(fd)
        if previous:
            log(f"[lock] taking over {path} from {_describe(previous)}, which ended without releasing it")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released cleanly: the next holder has nothing to take over
    finally:
        os.close(fd)  # closing the descriptor releases the flock
