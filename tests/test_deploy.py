"""Deployment: `python -m dtda_jax.export` bundles, `predict --bundle` without JAX, `--stream`.

Covers: the JAX -> ONNX translation (dynamic batch; the 256-px-class layers: pads, strided
slices, tiny-output convolutions as matmuls, max pooling; an unknown primitive is named);
a tiny trained run exported: ONNX Runtime and the reloaded StableHLO equal the JAX student on
real face crops (nine photos) at batch 1 and 7 (relative 1e-5), the StableHLO reloads in a process with JAX
alone; the manifest records the run's face settings, the checkpoint's sha256 and an operating
point fitted on source-val; `predict --bundle` in a process where importing JAX fails gives the
faces and scores of `predict --workdir` on photos and a video; damaged or mismatched bundles,
an existing --out and an unevaluated checkpoint are refused with one line and exit 2, leaving
nothing behind; `--stream` on a video file written here scores each frame as predict does
(whole-frame search on every frame, or tracked near the last face: the default),
smooths and prints one line per second; a camera that cannot be opened is a clear error.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtda_jax import train
from dtda_jax.core import artifacts
from dtda_jax.deploy import export, onnx_graph, operating_point, runtime
from dtda_jax.evaluation import metrics
from dtda_jax.inference import predict, stream
from tests import real_photos
from tests.conftest import tiny_config

# predict's command line in a Python where importing JAX (or Flax, Optax, Orbax) fails.
WITHOUT_JAX = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "orbax"):
            raise ImportError("this process may not import " + name)
sys.meta_path.insert(0, Refuse())
sys.argv = ["predict"] + sys.argv[1:]
runpy.run_module("dtda_jax.predict", run_name="__main__")
"""


def predict_without_jax(*args):
    return subprocess.run([sys.executable, "-c", WITHOUT_JAX, *args], capture_output=True, text=True,
                          timeout=300)


def ort_run(model, **inputs):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


# ------------------------------------------------------------------------------ the translation


def test_translation_has_a_dynamic_batch_and_the_students_layers():
    """A DTDA student whose last stage has 2x2 outputs (convolutions computed as matmuls), at
    three batch sizes from one graph; a ViT; a shape-polymorphic P-Net canvas."""
    from dtda_jax import methods
    from dtda_jax.inference.scoring import live_probability
    from tests.test_kdfas import tiny_kdfas_config

    rng = np.random.default_rng(0)
    for config in (tiny_config("unused"), tiny_kdfas_config("unused", "unused")):
        config.data.image_size = 64
        model, _ = methods.training_module(config.method.name).scored_model(config)
        variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
        fn = lambda x: live_probability(variables, x, model=model)  # noqa: E731
        (batch,) = jax.export.symbolic_shape("batch")
        graph = onnx_graph.to_onnx(fn, [jax.ShapeDtypeStruct((batch, 64, 64, 3), jnp.uint8)], ["image"], ["p"])
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        for n in (1, 3, 8):
            images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
            np.testing.assert_allclose(ort_run(graph, image=images)[0], fn(images), rtol=1e-5, atol=1e-7)
    (fn, specs) = export.mtcnn_functions()["pnet"]
    graph = onnx_graph.to_onnx(fn, specs, ["canvas", "valid"], ["offsets", "probs"])
    for shape in ((1, 64, 96), (2, 96, 64)):
        canvas = rng.normal(size=(*shape, 3)).astype(np.float32)
        valid = np.zeros((shape[1] - 2, shape[2] - 2), bool)
        valid[:40, :50] = True  # a level of 42 x 52 pixels in the corner
        got, want = ort_run(graph, canvas=canvas, valid=valid), fn(canvas, valid)
        inside = (slice(None), slice(0, 15), slice(0, 20))  # windows that lie inside the level
        for g, x in zip(got, want):
            np.testing.assert_allclose(g[inside], np.asarray(x)[inside], rtol=1e-4, atol=1e-6)


def test_a_primitive_without_translation_is_named():
    with pytest.raises(onnx_graph.ExportError, match="'cumsum' has no ONNX translation"):
        onnx_graph.to_onnx(lambda x: jnp.cumsum(x, axis=0), [jax.ShapeDtypeStruct((4,), jnp.float32)],
                           ["x"], ["y"])


# ------------------------------------------------------------------------------ operating points


def test_operating_points_keep_their_rate_and_are_the_extreme_threshold():
    rng = np.random.default_rng(1)
    for _ in range(100):
        labels = np.r_[0, 1, rng.integers(0, 2, rng.integers(2, 60))]
        scores = np.round(rng.random(len(labels)), rng.integers(1, 3)).astype(np.float32)  # ties
        # Every distinct decision: at each score, and above all of them.
        candidates = [*np.unique(scores), np.nextafter(scores.max(), np.float32(np.inf))]
        rates = [metrics.error_rates(labels, scores, c) for c in candidates]
        for rate in (0.0, 0.05, 0.2, 0.5):
            t = metrics.operating_threshold(labels, scores, f"bpcer={100 * rate:g}%")
            got = metrics.error_rates(labels, scores, t)
            assert got["bpcer"] <= rate and got["apcer"] == min(r["apcer"] for r in rates if r["bpcer"] <= rate)
            t = metrics.operating_threshold(labels, scores, f"apcer={100 * rate:g}%")
            got = metrics.error_rates(labels, scores, t)
            assert got["apcer"] <= rate and got["bpcer"] == min(r["bpcer"] for r in rates if r["apcer"] <= rate)
            assert ((scores >= np.float32(t)) == (scores >= t)).all()  # the same in float32
        assert metrics.operating_threshold(labels, scores, "eer") == metrics.equal_error_rate(labels, scores)[1]
    assert metrics.operating_threshold([0, 1], [0.2, 0.9], "fixed=0.25") == 0.25
    for bad in ("bpcer=5", "apcer=100%", "median", "fixed=x"):
        with pytest.raises(ValueError, match="operating point must be one of"):
            metrics.parse_operating_point(bad)


# ------------------------------------------------------------------------------ a trained run


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    """4 baseline steps, evaluated at 2 and 4 (so the latest checkpoint has saved scores)."""
    config = tiny_config(data_dir, "baseline")
    config.train.num_steps, config.train.checkpoint_every, config.train.eval_every = 4, 2, 2
    config.data.real.face_detect_max_side = 256  # --detect's working size: photos are ~512 px
    workdir = str(tmp_path_factory.mktemp("deploy") / "run")
    train.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bundles") / "bundle")
    export.export_bundle(run_dir, out, log=lambda line: None)
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for name, image in [*real_photos.portraits().items(), ("astronaut", real_photos.astronaut()),
                        ("newton", real_photos.newton()), ("gauss", real_photos.gauss())]:
        paths.append(str(root / f"{name}.png"))
        cv2.imwrite(paths[-1], cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    """3 s of 640x480 at 10 frames/s: the astronaut moving right, then 5 frames without a face."""
    path = str(tmp_path_factory.mktemp("video") / "face.avi")
    head = cv2.resize(real_photos.astronaut(), (400, 400))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for t in range(30):
        frame = np.full((480, 640, 3), 70, np.uint8)
        if t < 25:
            frame[40:440, 40 + 6 * t:440 + 6 * t] = head
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def real_face_crops(run_dir, photos):
    """The run's MTCNN crops of every face of the photos (JAX path)."""
    run = predict.load_run(run_dir, "latest")
    detector, _, _ = predict.face_source(run.config, detect=True)
    return np.concatenate([predict.extract_faces(p, detector, None, all_faces=True).crops for p in photos])


def test_onnx_and_stablehlo_equal_the_jax_student_on_real_face_crops(run_dir, bundle, photos, tmp_path):
    crops = real_face_crops(run_dir, photos)
    assert len(crops) == 9  # one face in each photo
    run = predict.load_run(run_dir, "latest")
    opened = runtime.open_bundle(bundle)
    for batch in (crops[:1], crops[:7]):
        want = predict.score_crops(run.score_fn, run.variables, batch, 8)
        np.testing.assert_allclose(opened.score(batch), want, rtol=1e-5, atol=0)
        reloaded = jax.export.deserialize(bytearray(open(os.path.join(bundle, "model.stablehlo"), "rb").read()))
        np.testing.assert_allclose(reloaded.call(batch), want, rtol=1e-5, atol=0)
    # The StableHLO needs JAX only: a fresh process that never imports dtda_jax.
    np.save(tmp_path / "crops.npy", crops[:7])
    code = ("import sys, jax, numpy as np; e = jax.export.deserialize(bytearray(open(sys.argv[1], 'rb').read())); "
            "np.save(sys.argv[3], np.asarray(e.call(np.load(sys.argv[2])))); "
            "assert not any(m.startswith('dtda_jax') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code, os.path.join(bundle, "model.stablehlo"), str(tmp_path / "crops.npy"),
                    str(tmp_path / "out.npy")], check=True, cwd=tmp_path, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), opened.score(crops[:7]), rtol=1e-5)


def test_manifest_records_the_run_and_a_source_val_operating_point(run_dir, bundle):
    m = runtime.read_manifest(bundle)
    run = predict.load_run(run_dir, "latest")
    from dtda_jax.data import pipeline

    _, face = pipeline.real_settings(run.config.data)
    assert {k: m["faces"][k] for k in ("size", "mode", "margin", "min_face_size", "detect_max_side")} == {
        "size": 32, "mode": face.mode, "margin": face.margin, "min_face_size": face.min_face_size,
        "detect_max_side": 256}
    assert m["faces"]["detect"] is False  # a synthetic-benchmark run: its frames are face crops
    assert m["source"]["step"] == 4 and m["source"]["checkpoint"] == "latest"
    assert m["source"]["checkpoint_sha256"] == export.directory_sha256(
        os.path.join(run_dir, "checkpoints", "student", "4"))
    op = m["operating_point"]
    assert op == json.loads(json.dumps(operating_point.choose(run_dir, 4, "eer")))
    with np.load(os.path.join(run_dir, "scores", "step_0000004.npz")) as saved:
        source = saved["source_val_labels"], saved["source_val_scores"]
        target = saved["target_labels"], saved["target_scores"]
    assert op["threshold"] == metrics.equal_error_rate(*source)[1] != metrics.equal_error_rate(*target)[1]
    assert op["target"]["acer"] == metrics.error_rates(*target, op["threshold"])["acer"]
    results = json.loads(open(os.path.join(run_dir, "results.json")).read())["by_selection"]["last"]
    assert results["deploy_threshold"] == op["threshold"] and results["deploy_acer"] == op["target"]["acer"]
    assert max(m["checks"]["max_relative_difference"].values()) <= 1e-5
    assert "python -m dtda_jax.predict --bundle" in open(os.path.join(bundle, "README.md")).read()


def test_bundle_scores_like_the_run_without_jax(run_dir, bundle, photos, face_video, tmp_path):
    inputs = [*photos, face_video, "--detect", "--all_faces"]
    blocked = predict_without_jax(f"--workdir={run_dir}", *inputs)
    assert blocked.returncode != 0 and "may not import jax" in blocked.stderr  # the guard works
    ours = predict_without_jax(f"--bundle={bundle}", f"--json={tmp_path / 'b.json'}", *inputs)
    assert ours.returncode == 0, ours.stderr
    predict.main([f"--workdir={run_dir}", "--checkpoint=latest", f"--json={tmp_path / 'j.json'}", *inputs])
    got, want = (json.loads((tmp_path / name).read_text()) for name in ("b.json", "j.json"))
    assert got["threshold"] == want["threshold"] and "source-val" in got["threshold_origin"]
    assert len(got["results"]) == len(want["results"]) == len(photos) + 1
    for g, w in zip(got["results"], want["results"]):
        assert len(g["faces"]) == len(w["faces"]) >= 1, g["path"]
        np.testing.assert_allclose([f["box"] for f in g["faces"]], [f["box"] for f in w["faces"]], atol=0.01)
        np.testing.assert_allclose([f["live_probability"] for f in g["faces"]],
                                   [f["live_probability"] for f in w["faces"]], rtol=1e-4)
    assert sum(len(r["faces"]) for r in got["results"]) == 9 + 25


def test_damaged_and_mismatched_bundles_are_refused(bundle, photos, tmp_path):
    def refused(folder, change):
        copy = str(tmp_path / folder)
        shutil.copytree(bundle, copy)
        change(copy)
        result = predict_without_jax(f"--bundle={copy}", photos[0])
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        return result.stderr

    def flip_byte(path):
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 1
        open(path, "wb").write(data)

    def swap_model(folder):  # another model's file, with a manifest that matches its bytes
        shutil.copy(os.path.join(folder, "mtcnn_rnet.onnx"), os.path.join(folder, "model.onnx"))
        m = json.load(open(os.path.join(folder, "bundle.json")))
        m["files"]["model.onnx"]["sha256"] = artifacts.file_sha256(os.path.join(folder, "model.onnx"))
        json.dump(m, open(os.path.join(folder, "bundle.json"), "w"))

    assert "model.onnx does not have the sha256" in refused("flipped", lambda f: flip_byte(f"{f}/model.onnx"))
    assert "mtcnn_pnet.onnx is missing" in refused("missing", lambda f: os.remove(f"{f}/mtcnn_pnet.onnx"))
    assert "belongs to another model" in refused("swapped", swap_model)
    assert "cannot be read as JSON" in refused("json", lambda f: open(f"{f}/bundle.json", "w").write("{"))
    assert "no bundle.json" in refused("none", lambda f: os.remove(f"{f}/bundle.json"))
    result = predict_without_jax(f"--bundle={tmp_path / 'nowhere'}", photos[0])
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_export_refuses_an_existing_out_and_an_unevaluated_checkpoint(run_dir, bundle, tmp_path, capsys):
    assert export.main([f"--workdir={run_dir}", f"--out={bundle}"]) == 2
    assert "exists; bundles are never overwritten" in capsys.readouterr().err
    unevaluated = tmp_path / "run"
    shutil.copytree(run_dir, unevaluated)
    os.remove(unevaluated / "scores" / "step_0000004.npz")
    assert export.main([f"--workdir={unevaluated}", f"--out={tmp_path / 'b'}"]) == 2
    assert "no saved evaluation of step 4" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nothing half-written
    # A failing self-check leaves no bundle and no staging folder either.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "MAX_RELATIVE_DIFFERENCE", -1.0)
        assert export.main([f"--workdir={run_dir}", f"--out={tmp_path / 'c'}"]) == 2
    assert "differs from JAX" in capsys.readouterr().err and sorted(os.listdir(tmp_path)) == ["run"]
    # Without the export extra installed: one line naming it.
    with pytest.MonkeyPatch.context() as patch:
        real = importlib.util.find_spec
        patch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
        assert export.main([f"--workdir={run_dir}", f"--out={tmp_path / 'd'}"]) == 2
    assert 'needs onnx, not installed: pip install -c constraints.txt -e ".[export]"' in capsys.readouterr().err


def test_predict_defaults_to_the_source_val_operating_point(run_dir, photos, capsys):
    assert predict.main([f"--workdir={run_dir}", "--checkpoint=latest", "--operating_point=bpcer=10%",
                         photos[0], "--detect"]) == 0
    out = capsys.readouterr().out
    op = operating_point.choose(run_dir, 4, "bpcer=10%")
    assert f"threshold {predict.format_probability(op['threshold'])}: operating point bpcer=10% chosen on " \
           "source-val (step 4)" in out
    assert op["source_val"]["bpcer"] <= 0.10


# ------------------------------------------------------------------------------ streaming


def test_stream_scores_each_frame_as_predict_does(run_dir, bundle, face_video, tmp_path):
    def streamed(*extra):
        result = predict_without_jax(f"--bundle={bundle}", f"--stream={face_video}", "--detect", "--window=mean4",
                                     f"--json={tmp_path / 's.json'}", *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout, json.loads((tmp_path / "s.json").read_text())["records"]

    out, records = streamed("--redetect=1")  # every whole frame searched, as predict does
    lines = [line for line in out.splitlines() if line.startswith("[stream] t=")]
    assert len(lines) == 3 and "frames/s" in lines[0] and lines[-1].endswith("(last frame)")
    assert "no face on this frame" in lines[-1]
    assert len(records) == 30 and [r["box"] is not None for r in records] == [True] * 25 + [False] * 5
    predict.main([f"--workdir={run_dir}", "--checkpoint=latest", "--detect", "--frames=all",
                  f"--json={tmp_path / 'p.json'}", face_video])
    faces = json.loads((tmp_path / "p.json").read_text())["results"][0]["faces"]
    assert [f["frame"] for f in faces] == list(range(25))
    scores = np.array([r["live_probability"] for r in records[:25]])
    np.testing.assert_allclose(scores, [f["live_probability"] for f in faces], rtol=1e-4)
    np.testing.assert_allclose([r["box"] for r in records[:25]], [f["box"] for f in faces], atol=0.01)
    smoothed = [np.mean(scores[max(0, i - 3):i + 1]) for i in range(25)]
    np.testing.assert_allclose([r["smoothed"] for r in records[:25]], smoothed, rtol=1e-6)
    assert all(r["smoothed"] == records[24]["smoothed"] for r in records[25:])  # held without a face

    # Tracked (the default): searched near the last face only, the same boxes and scores.
    _, tracked = streamed()
    assert [r["box"] is not None for r in tracked] == [True] * 25 + [False] * 5
    np.testing.assert_allclose([r["box"] for r in tracked[:25]], [f["box"] for f in faces], atol=0.01)
    np.testing.assert_allclose([r["live_probability"] for r in tracked[:25]], scores, rtol=1e-4)


def test_stream_smoothing_and_bad_sources():
    ema = stream.Smoother("ema0.5")
    assert [ema.update(s) for s in (1.0, 0.0, 1.0)] == [1.0, 0.5, 0.75]
    for bad in ("ema0", "ema1.5", "mean0", "median3"):
        with pytest.raises(ValueError, match="--window must be"):
            stream.parse_window(bad)
    with pytest.raises(stream.UserError, match="camera 9 cannot be opened"):
        stream.open_capture("9")
    with pytest.raises(stream.UserError, match="no such video file"):
        stream.open_capture("/nonexistent.mp4")
