"""Writing a file so readers see the old version or the whole new one, never half of it."""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any, Callable


def write_atomically(path: str, write: Callable[[IO], None], *, binary: bool) -> None:
    """Calls `write(f)` on a temporary file beside `path`, then renames it onto `path`; on any
    error (Ctrl-C included) the temporary file is removed and `path` is untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomically(path: str, payload: Any) -> None:
    """`payload` as indented JSON, written with :func:`write_atomically`."""
    write_atomically(path, lambda f: json.dump(payload, f, indent=2), binary=False)
