"""Decoded frames stored once: a data source's images as one memory-mapped uint8 .npy file.

Why: decoding one 256-px PNG crop costs ~1.4 ms of a core (~700 images/s), and one H200
would consume ~11,000 images/s of the full DTDA step. Reading rows of a memory-mapped array is a
copy from the page cache, so a training batch costs a gather instead of a decode per image
(benchmarks/input_pipeline_speed.py measures both). The file sits in the prepared dataset's
own directory (`<data_path>/decoded_frames/<split>.npy`), so deleting the prepared dataset
deletes it too; it is written under a temporary name and renamed when complete, so a killed
run never leaves a half-written store that a later run would read.
"""

from __future__ import annotations

import concurrent.futures
import glob
import math
import os
import shutil
import socket
import time

import numpy as np

STORE_DIR = "decoded_frames"
_CHUNK = 256  # frames decoded per round of the thread pool


class DecodedFrames:
    """The (N, H, W, 3) uint8 frames of one data source, memory-mapped on first use.

    It pickles as its path (a copy in another process reopens the file; the frames are not copied).
    """

    def __init__(self, path: str):
        self.path = path
        self._array: np.ndarray | None = None

    def __reduce__(self):
        return DecodedFrames, (self.path,)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def take(self, records: np.ndarray) -> np.ndarray:
        """The frames of `records` (positions in the data source), as an in-memory array."""
        return np.take(self.array, records, axis=0)


def store_path(data_path, split: str) -> str:
    return os.path.join(os.fspath(data_path), STORE_DIR, f"{split}.npy")


def decoded_frames(source, path: str, describe: str, decode) -> DecodedFrames:
    """The store of `source`'s images at `path`, written first if it is missing or does not
    match the source (`decode(record["image"])` gives a frame as RGB uint8)."""
    if os.path.exists(path):
        problem = _mismatch(path, len(source))
        if problem is None:
            return DecodedFrames(path)
        print(f"[data] {path} {problem}; decoding {describe} again", flush=True)
        os.remove(path)
    _write(source, path, describe, decode)
    return DecodedFrames(path)


def _mismatch(path: str, num_records: int) -> str | None:
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        return f"is not a readable .npy file ({err})"
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        return f"holds {array.dtype} {array.shape}, not (N, H, W, 3) uint8 frames"
    if array.shape[0] != num_records:
        return f"holds {array.shape[0]} frames, its dataset {num_records}"
    return None


def _write(source, path: str, describe: str, decode) -> None:
    from dtda_jax.data.pipeline import DataError

    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_partials(path)
    num = len(source)
    first = decode(source[0]["image"])
    shape = (num, *first.shape)
    needed, free = math.prod(shape), shutil.disk_usage(folder).free
    if needed > free:
        raise DataError(
            f"Storing the decoded frames of {describe} needs {needed / 1e9:.2f} GB in {folder}, which "
            f"has {free / 1e9:.2f} GB free: free space there, or set config.data.frame_store='encoded' "
            "(decode every batch's PNG/JPEG instead; slower, no extra disk).")
    partial = f"{path}.partial-{socket.gethostname()}-{os.getpid()}"
    print(f"[data] decoding {num} frames of {describe} once into {path} ({needed / 1e9:.2f} GB)",
          flush=True)
    start = last_report = time.perf_counter()
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        # cv2's PNG/JPEG decoding releases the GIL: threads decode in parallel.
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for first_row in range(0, num, _CHUNK):
                rows = range(first_row, min(first_row + _CHUNK, num))
                for row, image in zip(rows, pool.map(lambda r: decode(source[r]["image"]), rows)):
                    if image.shape != shape[1:]:
                        raise DataError(
                            f"Frame {row} of {describe} is {image.shape}, frame 0 {shape[1:]}: frames of "
                            "different sizes cannot be stored together; set config.data.frame_store="
                            "'encoded' or prepare the dataset again with one --image_size.")
                    out[row] = image
                if time.perf_counter() - last_report > 10:
                    last_report = time.perf_counter()
                    print(f"[data]   {rows.stop}/{num} frames ({rows.stop / (last_report - start):.0f}/s)",
                          flush=True)
        out.flush()
        del out
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def _remove_stale_partials(path: str) -> None:
    """Partial stores of this host's processes that are gone (e.g. killed with SIGKILL)."""
    prefix = f"{path}.partial-{socket.gethostname()}-"
    for partial in glob.glob(glob.escape(prefix) + "*"):
        pid = partial[len(prefix):]
        if pid.isdigit() and not _alive(int(pid)):
            os.remove(partial)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
