"""A deployment bundle opened with ONNX Runtime and numpy alone (this module imports no JAX).

A bundle is the folder `python -m dtda_jax.export` writes:

    bundle.json        what the model is, how faces are found and cropped, the operating point,
                       where it came from, and the sha256 of every file below
    model.onnx         the student: uint8 NHWC face crops -> live probability, batch dynamic
    model.stablehlo    the same function serialised by `jax.export` (reload with JAX alone)
    mtcnn_pnet.onnx, mtcnn_rnet.onnx, mtcnn_onet.onnx   MTCNN's nets (also for a synthetic run: --detect)
    README.md          for someone who has only the bundle

`open_bundle` checks the folder before anything runs: every file bundle.json lists is present
and has its recorded sha256, and the models' inputs and outputs are the ones bundle.json
describes; a damaged or mismatched bundle is refused with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError
from dtda_jax.faces.mtcnn import MTCNN, Nets

BUNDLE_FILE = "bundle.json"
FORMAT = "dtda-jax-bundle"
VERSION = 1
STUDENT_ONNX = "model.onnx"
STUDENT_STABLEHLO = "model.stablehlo"
MTCNN_ONNX = {"pnet": "mtcnn_pnet.onnx", "rnet": "mtcnn_rnet.onnx", "onet": "mtcnn_onet.onnx"}
STUDENT_INPUT, STUDENT_OUTPUT = "image", "live_probability"
NET_IO = {"pnet": (("canvas", "valid"), ("offsets", "face_probability")),
          "rnet": (("crops",), ("offsets", "probs")),
          "onet": (("crops",), ("offsets", "landmarks", "probs"))}


class BundleError(UserError):
    """A bundle that cannot be used; the message says what is wrong and what to do."""


def read_manifest(directory: str) -> dict:
    """bundle.json of `directory`, after checking that every file it lists is intact."""
    directory = os.path.abspath(os.path.expanduser(directory))
    path = os.path.join(directory, BUNDLE_FILE)
    if not os.path.isdir(directory):
        raise BundleError(f"--bundle {directory} does not exist; pass the folder "
                          "`python -m dtda_jax.export --out=...` wrote.")
    if not os.path.isfile(path):
        raise BundleError(f"{directory} has no {BUNDLE_FILE}: it is not a bundle written by "
                          "`python -m dtda_jax.export` (or the file was removed; export again).")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise BundleError(f"{path} cannot be read as JSON ({err}); export the bundle again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a dtda-jax bundle manifest (no format {FORMAT!r}); "
                          "export the bundle again.")
    if manifest.get("version") != VERSION:
        raise BundleError(f"{path} is bundle version {manifest.get('version')}, this dtda-jax reads "
                          f"version {VERSION}: export the run again with this version.")
    for name, entry in manifest.get("files", {}).items():
        file = os.path.join(directory, name)
        if not os.path.isfile(file):
            raise BundleError(f"{directory}: {name} is missing (bundle.json lists it); copy the "
                              "whole bundle folder, or export again.")
        if artifacts.file_sha256(file) != entry["sha256"]:
            raise BundleError(f"{directory}: {name} does not have the sha256 bundle.json records "
                              "(damaged, or replaced by another model's file); export again.")
    manifest["directory"] = directory
    return manifest


def _session(path: str, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise BundleError("scoring a bundle needs ONNX Runtime: pip install onnxruntime") from None

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # A bundle runs four sessions in turn; idle threads that spin keep the cores from the next
    # one (the 640x480 stream ran at 5.1 frames/s with spinning, 9.8 without, on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise BundleError(f"{path} cannot be loaded by ONNX Runtime ({str(err).splitlines()[0]}); "
                          "export the bundle again.") from None


def _check_io(session, path: str, inputs, outputs) -> None:
    have = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if have != (list(inputs), list(outputs)):
        raise BundleError(f"{path} has inputs {have[0]} and outputs {have[1]}, not the "
                          f"{list(inputs)} -> {list(outputs)} bundle.json describes: the file "
                          "belongs to another model; export the bundle again.")


def onnx_nets(directory: str, threads: int | None = None) -> Nets:
    """MTCNN's nets as ONNX Runtime sessions, called like the jitted Flax nets."""
    calls = []
    for name, file in MTCNN_ONNX.items():
        path = os.path.join(directory, file)
        session = _session(path, threads)
        inputs, outputs = NET_IO[name]
        _check_io(session, path, inputs, outputs)
        calls.append(lambda *arrays, s=session, names=inputs: tuple(s.run(None, dict(zip(names, arrays)))))
    return Nets(*calls)


@dataclasses.dataclass
class Bundle:
    """An opened bundle: the manifest, the student's session and the MTCNN nets (if any)."""

    manifest: dict
    student: Any  # onnxruntime.InferenceSession
    nets: Nets | None

    def score(self, crops: np.ndarray) -> np.ndarray:
        """Live probabilities of uint8 face crops (n, S, S, 3)."""
        if len(crops) == 0:
            return np.zeros(0, np.float32)
        return self.student.run(None, {STUDENT_INPUT: np.ascontiguousarray(crops, np.uint8)})[0]

    def mtcnn(self, min_face_size: float) -> MTCNN:
        if self.nets is None:
            raise BundleError(f"{self.manifest['directory']} has no MTCNN nets (its run took inputs "
                              "as face crops); score face crops with --no_detect.")
        return MTCNN(min_face_size=min_face_size, nets=self.nets)


def open_bundle(directory: str, threads: int | None = None) -> Bundle:
    """The checked bundle in `directory`, ready to score (see the module docstring)."""
    manifest = read_manifest(directory)
    directory = manifest["directory"]
    files = manifest["files"]
    if STUDENT_ONNX not in files:
        raise BundleError(f"{directory}/bundle.json lists no {STUDENT_ONNX}; export the bundle again.")
    path = os.path.join(directory, STUDENT_ONNX)
    student = _session(path, threads)
    _check_io(student, path, [STUDENT_INPUT], [STUDENT_OUTPUT])
    shape = student.get_inputs()[0].shape
    if list(shape[1:]) != list(manifest["model"]["input"]["shape"][1:]):
        raise BundleError(f"{path} takes images of shape {shape}, bundle.json says "
                          f"{manifest['model']['input']['shape']}: export the bundle again.")
    nets = onnx_nets(directory, threads) if all(f in files for f in MTCNN_ONNX.values()) else None
    return Bundle(manifest=manifest, student=student, nets=nets)
