"""Every file a run or a cache writes, through one writer.

Whole files (JSON, text, npz, figures) are written to a temporary file beside their path and
renamed onto it, so a reader (or a resumed run) sees the old version or the complete new one,
never half of it; a directory (a converted checkpoint) is filled beside its path and renamed
likewise. Log lines (JSON lines) are appended with one write call each. Caches that
depend on settings are named by a digest of those settings (:func:`settings_name`).

In a multi-process job only the primary process writes (dtda_jax.core.distributed switches
the others' writer off): they compute the same files, so writing them once is enough, and
two processes renaming onto one path would race.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import IO, Any, Callable, Mapping

import numpy as np

_writer = {"enabled": True}


def set_writer(enabled: bool) -> None:
    """Whether this process writes files (False on the non-primary processes of a job)."""
    _writer["enabled"] = enabled


def writes_files() -> bool:
    return _writer["enabled"]


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str, write: Callable[[IO], None], *, binary: bool) -> None:
    """Calls `write(f)` on a temporary file beside `path`, then renames it onto `path`; on any
    error (Ctrl-C included) the temporary file is removed and `path` is untouched."""
    if not writes_files():
        return
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


def write_directory_atomically(path: str, fill: Callable[[str], None]) -> None:
    """Calls `fill(staging)` on an empty directory beside `path`, then renames it to `path`
    (which must not exist); on any error the staging directory is removed."""
    if not writes_files():
        return
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=parent)
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the directory from other users
        fill(staging)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path: str, payload: Any) -> None:
    """`payload` as indented JSON (the format of results.json, best.json, manifests)."""
    write_atomically(path, lambda f: json.dump(payload, f, indent=2), binary=False)


def write_text(path: str, text: str) -> None:
    write_atomically(path, lambda f: f.write(text), binary=False)


def write_npz(path: str, **arrays: np.ndarray) -> None:
    write_atomically(path, lambda f: np.savez(f, **arrays), binary=True)


def remove(path: str) -> None:
    """Deletes a file or a directory tree (one that may be absent)."""
    if not writes_files():
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def move(path: str, target: str) -> None:
    """Moves `path` to `target`, creating the target's folder."""
    if not writes_files():
        return
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    shutil.move(path, target)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
    """Appends `record` as one JSON line, in a single write (metrics.jsonl, eval.jsonl)."""
    if not writes_files():
        return
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records of a JSON-lines file ([] when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def settings_digest(settings: Any) -> str:
    """12 hex digits of the sha256 of `settings` as sorted JSON: the same settings, the same name."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def settings_name(prefix: str, settings: Any) -> str:
    """"<prefix>_<settings digest>": the directory name of a cache entry built from `settings`."""
    return f"{prefix}_{settings_digest(settings)}"


def cached_json(path: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """The JSON at `path`, or `compute()` written there first; and whether it was computed."""
    if os.path.exists(path):
        return read_json(path), False
    payload = compute()
    write_json(path, payload)
    return payload, True
