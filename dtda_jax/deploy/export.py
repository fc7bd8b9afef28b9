"""A trained run's student as a deployment bundle (ONNX, StableHLO, MTCNN, operating point).

    python -m dtda_jax.export --workdir=runs/oci_to_m --out=bundles/oci_to_m
        [--checkpoint=latest|best] [--operating_point=eer|bpcer=5%|apcer=1%|fixed=0.5]

The bundle (dtda_jax/deploy/runtime.py describes its files) scores photos and videos with
ONNX Runtime, numpy and OpenCV alone: `python -m dtda_jax.predict --bundle=BUNDLE files...`.

* The student's graph is the run's own scorer, `inference.scoring.live_probability`, traced
  with the checkpoint's parameters and translated primitive by primitive
  (dtda_jax/deploy/onnx_graph.py): uint8 NHWC RGB face crops of the run's image size in, the
  live probability out, the /255 scaling inside; the batch is dynamic. model.stablehlo is the
  same function serialised by `jax.export` for CPU and CUDA.
* The default checkpoint is `latest`: `best` was chosen on the target's labels, which a
  deployment does not have (use it to compare with the literature's numbers).
* The threshold is chosen on the run's held-out source-val videos at the named operating
  point (deploy/operating_point.py); no target label is used.
* Before the bundle is written, ONNX Runtime and the reloaded StableHLO are checked against
  JAX on check images (batch 1 and 8); the measured largest relative difference is stored in
  bundle.json and a difference above 1e-4 stops the export.
The bundle folder is written whole or not at all, and an existing folder is never replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import importlib.util
import json
import os
import sys
from typing import Sequence

import numpy as np

from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError
from dtda_jax.deploy import operating_point, runtime

MAX_RELATIVE_DIFFERENCE = 1e-4  # refuse to write a bundle whose runtimes disagree more than this
CHECK_BATCHES = (1, 8)


def directory_sha256(directory: str) -> str:
    """One digest of every file under `directory` (relative paths and contents, sorted)."""
    digest = hashlib.sha256()
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, directory).encode() + b"\0")
            digest.update(artifacts.file_sha256(path).encode())
    return digest.hexdigest()


def check_images(size: int, n: int, seed: int = 0) -> np.ndarray:
    """Deterministic uint8 images with smooth structure and noise (not face crops: the tests
    check real face crops; this is the export's own self-check)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    import cv2

    smooth = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse])
    noise = rng.normal(0, 12, (n, size, size, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: the error relative to the output's scale (a per-element
    ratio would blow up on outputs near zero)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def student_function(run):
    """(fn, input spec): the run's scorer with its parameters bound, for a dynamic batch."""
    import jax
    import jax.numpy as jnp

    from dtda_jax import methods
    from dtda_jax.inference.scoring import live_probability

    model, _ = methods.training_module(run.config.method.name).scored_model(run.config)
    variables = jax.device_get(run.variables)
    size = int(run.config.data.image_size)
    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
    return functools.partial(live_probability, variables, model=model), spec


def mtcnn_functions():
    """{net: (fn, input specs)} of MTCNN's nets with their weights bound; P-Net takes a canvas
    whose sides are multiples of mtcnn.CANVAS_QUANTUM, as the cascade packs it."""
    import jax
    import jax.numpy as jnp

    from dtda_jax.faces import mtcnn, mtcnn_nets

    weights = mtcnn_nets.load_mtcnn_weights()
    q = mtcnn.CANVAS_QUANTUM
    batch, h, w = jax.export.symbolic_shape("batch, h, w")
    specs = {"pnet": (jax.ShapeDtypeStruct((batch, q * h, q * w, 3), jnp.float32),
                      jax.ShapeDtypeStruct((q * h - 2, q * w - 2), jnp.bool_)),
             "rnet": (jax.ShapeDtypeStruct((batch, 24, 24, 3), jnp.float32),),
             "onet": (jax.ShapeDtypeStruct((batch, 48, 48, 3), jnp.float32),)}
    return {name: (functools.partial(mtcnn_nets.APPLY[name], weights[name]), specs[name])
            for name in specs}


def export_stablehlo(fn, spec) -> tuple[bytes, list[str]]:
    """`fn` serialised by jax.export for CPU and CUDA (for this platform alone if a
    multi-platform lowering is not available), and the platforms it runs on."""
    import jax

    try:
        exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda"))(spec)
    except Exception:  # noqa: BLE001 - a jaxlib without the CUDA lowering
        exported = jax.export.export(jax.jit(fn))(spec)
    return bytes(exported.serialize()), list(exported.platforms)


def check_student(onnx_path: str, stablehlo_bytes: bytes, fn, size: int) -> dict:
    """The largest relative difference of ONNX Runtime and the reloaded StableHLO to JAX."""
    import jax

    session = runtime._session(onnx_path, None)
    reloaded = jax.export.deserialize(bytearray(stablehlo_bytes))
    worst = {"onnxruntime": 0.0, "stablehlo": 0.0}
    for n in CHECK_BATCHES:
        images = check_images(size, n, seed=n)
        want = np.asarray(jax.jit(fn)(images))
        worst["onnxruntime"] = max(worst["onnxruntime"], relative_difference(
            session.run(None, {runtime.STUDENT_INPUT: images})[0], want))
        worst["stablehlo"] = max(worst["stablehlo"], relative_difference(reloaded.call(images), want))
    for name, value in worst.items():
        if not value <= MAX_RELATIVE_DIFFERENCE:
            raise UserError(f"the exported student's {name} output differs from JAX by {value:.3g} "
                            f"(relative; the limit is {MAX_RELATIVE_DIFFERENCE:g}): the bundle was not "
                            "written. This is a bug of the exporter; please report it with the run's "
                            "config.json.")
    return {"images": "export self-check images (check_images), batches " + "/".join(map(str, CHECK_BATCHES)),
            "max_relative_difference": worst}


def describe_student(config) -> str:
    from dtda_jax import methods

    return methods.training_module(config.method.name).describe_scored_model(config)


def manifest(run, op: dict, face, frames, detect: bool, files: dict, checks: dict) -> dict:
    import jax

    from dtda_jax.config import records

    c = run.config
    size = int(c.data.image_size)
    checkpoint_dir = os.path.join(run.workdir, "checkpoints",
                                  {"best": "student_best", "latest": "student"}[run.checkpoint], str(run.step))
    return {
        "format": runtime.FORMAT, "version": runtime.VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "exported_with": {"dtda_jax": _version(), "jax": jax.__version__},
        "model": {
            "method": c.method.name,
            "architecture": describe_student(c),
            "input": {"name": runtime.STUDENT_INPUT, "layout": "NHWC", "dtype": "uint8", "color": "RGB",
                      "shape": ["batch", size, size, 3], "value_range": [0, 255]},
            "output": {"name": runtime.STUDENT_OUTPUT, "shape": ["batch"], "dtype": "float32",
                       "meaning": "live probability (softmax of the live/spoof head, class 1 = live)"},
            "preprocessing": (f"inside the graph: uint8 -> float32 / 255. Outside: a face crop resized "
                              f"to {size}x{size} as `faces` says (the crop training saw)."),
        },
        "faces": {"detect": detect, **dataclasses.asdict(face), "detector": "MTCNN (thresholds 0.6/0.7/0.7, "
                  "scale factor 0.709) on the frame resized to detect_max_side on its longer side",
                  "note": ("the run trained on the built-in benchmark's frames, which are face crops: "
                           "detection is off by default (predict --detect turns it on)") if not detect else ""},
        "videos": {"frames": dataclasses.asdict(frames), "frames_tag": frames.tag(),
                   "video_reduce": c.eval.video_reduce},
        "operating_point": op,
        "source": {"workdir": run.workdir, "protocol": f"{'&'.join(c.data.source_domains)} -> "
                   f"{c.data.target_domain}", "dataset": c.data.dataset, "checkpoint": run.checkpoint,
                   "step": run.step, "checkpoint_sha256": directory_sha256(checkpoint_dir),
                   "config_sha256": artifacts.file_sha256(os.path.join(run.workdir, records.CONFIG_FILE))},
        "checks": checks,
        "files": files,
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dtda-jax")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def bundle_readme(m: dict) -> str:
    size = m["model"]["input"]["shape"][1]
    op = m["operating_point"]
    video_reduce = m["videos"]["video_reduce"]
    return f"""# dtda-jax deployment bundle

{m['model']['architecture']}, trained by dtda-jax on {m['source']['protocol']}
({m['source']['dataset']}), {m['source']['checkpoint']} checkpoint, step {m['source']['step']}.
bundle.json has every detail and the sha256 of each file.

## Score photos and videos (numpy, OpenCV and ONNX Runtime; JAX is not needed)

    pip install numpy opencv-python-headless onnxruntime
    pip install --no-deps /path/to/dtda-jax       # the project's source tree, without JAX & co.
    python -m dtda_jax.predict --bundle=THIS_FOLDER photo.jpg clip.mp4
    python -m dtda_jax.predict --bundle=THIS_FOLDER --stream=0          # camera 0, or a video file

Faces are found and cropped as the training data was (`faces` in bundle.json); a video's
score is the {video_reduce} of its frames' scores.

## Use model.onnx directly

- input `{m['model']['input']['name']}`: uint8, NHWC, RGB, shape (batch, {size}, {size}, 3), values
  0..255; the /255 scaling is inside the graph.
- output `{m['model']['output']['name']}`: float32 (batch,), the live probability.
- The input must be a face crop made like training's: {_face_text(m['faces'])}.
- Decide live when live_probability >= {op['threshold']:.6g} ({op['point']}, chosen on the
  training run's held-out source-domain videos, not on any test data). Videos: the
  {m['videos']['video_reduce']} of the frame probabilities.

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx")
live = session.run(None, {{"image": crops_uint8_nhwc}})[0] >= {op['threshold']:.6g}
```

model.stablehlo is the same function for JAX (no dtda-jax needed):
`jax.export.deserialize(open("model.stablehlo", "rb").read()).call(crops_uint8_nhwc)`.
"""


def _face_text(f: dict) -> str:
    how = "square crop around MTCNN's box" if f["mode"] == "crop" else "5-landmark similarity alignment"
    text = (f"{how}, margin {f['margin']:g}, resized to {f['size']}x{f['size']} (MTCNN faces >= "
            f"{f['min_face_size']} px on the frame resized to {f['detect_max_side']} px)")
    return text if f["detect"] else f"the whole frame resized to {f['size']}x{f['size']} ({f['note']})"


def export_bundle(workdir: str, out: str, checkpoint: str = "latest", point: str = operating_point.DEFAULT_POINT,
                  log=print) -> dict:
    """Writes the bundle of `workdir`'s student to `out` (which must not exist); returns bundle.json."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:  # onnxruntime checks the exported graph
        raise UserError(f"python -m dtda_jax.export needs {' and '.join(missing)}, not installed: "
                        "pip install -c constraints.txt -e \".[export]\"")
    import onnx

    from dtda_jax.data import pipeline
    from dtda_jax.deploy.onnx_graph import to_onnx
    from dtda_jax.inference import predict

    out = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(out):
        raise UserError(f"--out {out} exists; bundles are never overwritten: remove it or choose "
                        "another --out.")
    run = predict.load_run(workdir, checkpoint)
    op = operating_point.choose(run.workdir, run.step, point)
    log(f"[export] {run.workdir}: {run.checkpoint} checkpoint, step {run.step}")
    log(f"[export] {operating_point.describe(op)}")
    detector, frames, _ = predict.face_source(run.config)
    detect = isinstance(detector, predict.FaceDetector)
    _, face = pipeline.real_settings(run.config.data)  # also what --detect uses on synthetic runs
    fn, spec = student_function(run)
    size = int(run.config.data.image_size)

    def fill(staging: str) -> None:
        student = to_onnx(fn, [spec], [runtime.STUDENT_INPUT], [runtime.STUDENT_OUTPUT],
                          doc=describe_student(run.config))
        onnx.save(student, os.path.join(staging, runtime.STUDENT_ONNX))
        stablehlo, platforms = export_stablehlo(fn, spec)
        with open(os.path.join(staging, runtime.STUDENT_STABLEHLO), "wb") as f:
            f.write(stablehlo)
        log(f"[export] student: {runtime.STUDENT_ONNX} ({len(student.graph.node)} ONNX nodes), "
            f"{runtime.STUDENT_STABLEHLO} (for {', '.join(platforms)})")
        checks = check_student(os.path.join(staging, runtime.STUDENT_ONNX), stablehlo, fn, size)
        worst = checks["max_relative_difference"]
        log(f"[export] checked against JAX: ONNX Runtime {worst['onnxruntime']:.2g}, StableHLO "
            f"{worst['stablehlo']:.2g} (largest relative difference, batches 1 and 8)")
        for name, (net, specs) in mtcnn_functions().items():
            inputs, outputs = runtime.NET_IO[name]
            onnx.save(to_onnx(net, specs, inputs, outputs, doc=f"MTCNN {name}"),
                      os.path.join(staging, runtime.MTCNN_ONNX[name]))
        files = {name: {"sha256": artifacts.file_sha256(os.path.join(staging, name)),
                        "bytes": os.path.getsize(os.path.join(staging, name))}
                 for name in sorted(os.listdir(staging))}
        m = manifest(run, op, face, frames, detect, files, {**checks, "stablehlo_platforms": platforms})
        with open(os.path.join(staging, runtime.BUNDLE_FILE), "w") as f:
            json.dump(m, f, indent=2)
        with open(os.path.join(staging, "README.md"), "w") as f:
            f.write(bundle_readme(m))

    artifacts.write_directory_atomically(out, fill)
    runtime.read_manifest(out)  # what predict will check
    log(f"[export] bundle written to {out}")
    return artifacts.read_json(os.path.join(out, runtime.BUNDLE_FILE))


def parse_args(argv: Sequence[str] | None):
    p = argparse.ArgumentParser(prog="python -m dtda_jax.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a training run's workdir")
    p.add_argument("--out", required=True, help="the bundle folder to write (must not exist)")
    p.add_argument("--checkpoint", default="latest", choices=("latest", "best"),
                   help="latest (default): the end of training; best: chosen on the target's labels")
    p.add_argument("--operating_point", default=operating_point.DEFAULT_POINT,
                   help="eer (default), bpcer=X%% (at most X%% of live faces rejected), apcer=X%% "
                        "(at most X%% of attacks accepted) or fixed=T; chosen on source-val videos")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    from dtda_jax.evaluation import metrics

    try:
        metrics.parse_operating_point(args.operating_point)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from dtda_jax.core.cli import run_command

    args = parse_args(argv)
    return run_command("export", lambda: export_bundle(args.workdir, args.out, args.checkpoint,
                                                       args.operating_point) and 0, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
