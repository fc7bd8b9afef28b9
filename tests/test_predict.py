"""`python -m dtda_jax.predict` on a tiny trained run.

Covers: scores equal `live_probability` on the same crops with the checkpoint's own
parameters (synthetic whole-image path and the MTCNN path, images and videos); best vs latest
checkpoint and their thresholds; a real photo gives the box `Detector` gives; `--all_faces`
orders faces largest first; a video's score is the mean of its frame scores; corrupt files and
faceless images are reported with reasons and the exit status follows them; JSON output matches
the printed numbers; a missing input, workdir, config or checkpoint, or a checkpoint that does
not fit its config, stop with a message naming it.
"""

import functools
import json
import os
import re
import shutil

import cv2
import jax
import numpy as np
import pytest

from dtda_jax import train
from dtda_jax.data import face_extraction, pipeline, video as video_lib
from dtda_jax.inference import predict
from dtda_jax.inference.scoring import live_probability
from dtda_jax.methods.dtda import method as dtda_method
from tests import real_photos
from tests.conftest import tiny_config
from tests.test_train import latest_params

FACE_SIZE = 256  # detection size of the run (data.real.face_detect_max_side); photos are 512 px


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    """A 4-step baseline run evaluated at steps 2 and 4; with this seed and learning rate step 2
    is the best checkpoint, so best and latest hold different parameters."""
    config = tiny_config(data_dir, "baseline")
    config.optim.learning_rate = 0.05
    config.train.num_steps, config.train.checkpoint_every, config.train.eval_every = 4, 2, 2
    config.data.real.face_detect_max_side = FACE_SIZE  # what --detect uses on this run
    workdir = str(tmp_path_factory.mktemp("predict") / "run")
    train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "best.json")) as f:
        assert json.load(f)["step"] == 2, "the fixture needs best (step 2) != latest (step 4)"
    return workdir


@pytest.fixture(scope="module")
def run(run_dir):
    return predict.load_run(run_dir)


@pytest.fixture(scope="module")
def detector(run):
    detector, _, _ = predict.face_source(run.config, detect=True)
    return detector


def write_image(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def write_video(path, frames):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def media(run, tmp_path_factory):
    """Inputs: synthetic-benchmark frames (PNG, lossless), real photos, a face video, broken files."""
    root = tmp_path_factory.mktemp("inputs")
    target = pipeline.load_protocol(run.config).target
    frames = target.read_images(range(6))
    synthetic = root / "synthetic"
    synthetic.mkdir()
    astronaut = real_photos.astronaut()
    head = astronaut[10:240, 120:320]  # head and shoulders, 230x200
    two = np.full((512, 512, 3), 90, np.uint8)  # two astronauts, the left one larger
    two[100:330, 20:220] = head
    two[130:302, 300:450] = cv2.resize(head, (150, 172), interpolation=cv2.INTER_AREA)
    ramp = np.linspace(0, 255, 512, dtype=np.float32)
    empty = np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1).astype(np.uint8)  # no face anywhere
    (root / "corrupt.jpg").write_bytes(b"not an image" * 100)
    (root / "corrupt.mp4").write_bytes(b"not a video" * 100)
    return {
        "frames": frames,
        "synthetic": [write_image(synthetic / f"f{i}.png", f) for i, f in enumerate(frames[:4])],
        "synthetic_dir": str(synthetic),
        "synthetic_video": write_video(root / "synthetic.avi", list(frames[:3])),
        "astronaut": write_image(root / "astronaut.png", astronaut),
        "two_faces": write_image(root / "two_faces.png", two),
        "no_face": write_image(root / "no_face.png", empty),
        "face_video": write_video(root / "face.avi", [np.roll(astronaut, 6 * t, axis=1)[::2, ::2]
                                                      for t in range(6)]),
        "corrupt_image": str(root / "corrupt.jpg"),
        "corrupt_video": str(root / "corrupt.mp4"),
    }


@pytest.fixture(scope="module")
def reference(run, run_dir):
    """{checkpoint directory: crops -> `live_probability` with the parameters read straight
    from its files}; one jitted program (crops padded to 4)."""
    student, _ = dtda_method.scored_model(run.config)
    score = jax.jit(functools.partial(live_probability, model=student))

    def scorer(stage):
        _, state = latest_params(run_dir, stage)
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}

        def scores(crops):
            padded = np.concatenate([crops, np.repeat(crops[-1:], 4 - len(crops), axis=0)])
            return np.asarray(score(variables, padded))[:len(crops)]
        return scores

    return {stage: scorer(stage) for stage in ("student_best", "student")}


def face_scores(records):
    return np.array([f["live_probability"] for r in records for f in r["faces"]])


def test_scores_equal_live_probability_on_the_same_crops(run, media, reference):
    detector, frames, note = predict.face_source(run.config)
    assert isinstance(detector, predict.WholeImage) and "synthetic-benchmark run" in note
    records = list(predict.predict(run, media["synthetic"], detector, frames, 0.5, batch_size=3))
    assert [r["path"] for r in records] == media["synthetic"]
    assert all(r["faces"][0]["box"] == [0, 0, 32, 32] for r in records)
    expected = reference["student_best"](media["frames"][:4])
    np.testing.assert_allclose(face_scores(records), expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(expected) > 0.05  # a model whose scores differ, so the comparison means something
    assert all(f["decision"] == ("live" if f["live_probability"] >= 0.5 else "spoof")
               for r in records for f in r["faces"])


def test_best_and_latest_checkpoints(run, run_dir, media, reference, tmp_path):
    latest = predict.load_run(run_dir, "latest")
    assert (run.checkpoint, run.step, latest.checkpoint, latest.step) == ("best", 2, "latest", 4)
    crops = media["frames"][:4]
    for loaded, stage in ((run, "student_best"), (latest, "student")):
        np.testing.assert_allclose(predict.score_crops(loaded.score_fn, loaded.variables, crops, 4),
                                   reference[stage](crops), rtol=1e-5, atol=1e-6)
    # Each checkpoint's threshold is the source-val EER of its own evaluation, not the target's.
    with open(os.path.join(run_dir, "results.json")) as f:
        by_selection = json.load(f)["by_selection"]
    for loaded, selection in ((run, "best_on_target"), (latest, "last")):
        threshold, origin = predict.default_threshold(loaded)
        assert threshold == by_selection[selection]["deploy_threshold"] != by_selection[selection]["threshold"]
        assert by_selection[selection]["threshold_policy"] == "target_eer"
        assert origin.startswith(f"operating point eer chosen on source-val (step {loaded.step})")
    # A checkpoint directory names the run and the checkpoint.
    assert predict.load_run(os.path.join(run_dir, "checkpoints", "student")).step == 4
    # Without a best checkpoint, auto falls back to latest; asking for best says what to do.
    copy = str(tmp_path / "no_best")
    shutil.copytree(run_dir, copy)
    shutil.rmtree(os.path.join(copy, "checkpoints", "student_best"))
    assert predict.load_run(copy).checkpoint == "latest"
    with pytest.raises(predict.PredictError, match="no best checkpoint.*--checkpoint=latest"):
        predict.load_run(copy, "best")


def test_real_photo_goes_through_the_runs_mtcnn_crop(run, media, detector, reference):
    assert detector.settings == pipeline.real_settings(run.config.data)[1]
    assert detector.settings.detect_max_side == FACE_SIZE and detector.settings.size == 32
    (record,) = predict.predict(run, [media["astronaut"]], detector, face_extraction.FrameSettings(), 0.5)
    (face,) = record["faces"]
    image = face_extraction.read_image(media["astronaut"])
    plain = face_extraction.Detector(detector.settings, mtcnn=detector.mtcnn)
    ((box, landmarks, _),) = plain.largest_faces([image])
    np.testing.assert_allclose(face["box"], box, rtol=1e-6)
    x1, y1, x2, y2 = face["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 50 < (y1 + y2) / 2 < 200  # the astronaut's face
    crop = face_extraction.face_crop(image, box, landmarks, detector.settings)
    expected = reference["student_best"](crop[None])
    np.testing.assert_allclose(face["live_probability"], expected[0], rtol=1e-5, atol=1e-6)


def test_all_faces_lists_every_face_largest_first(run, media, detector):
    frames = face_extraction.FrameSettings()
    (one,) = predict.predict(run, [media["two_faces"]], detector, frames, 0.5)
    (every,) = predict.predict(run, [media["two_faces"]], detector, frames, 0.5, all_faces=True)
    assert len(one["faces"]) == 1 and len(every["faces"]) == 2
    assert every["faces"][0]["box"] == one["faces"][0]["box"]
    assert every["faces"][0]["live_probability"] == pytest.approx(one["faces"][0]["live_probability"],
                                                                  rel=1e-5)  # batch of 2 vs 1
    (ax1, _, ax2, _), (bx1, _, bx2, _) = (f["box"] for f in every["faces"])
    assert ax2 < 260 < bx1 and ax2 - ax1 > bx2 - bx1  # left (larger) face first


def test_video_score_is_the_mean_of_its_frame_scores(run, media, detector, reference):
    frames = predict.parse_frames("every2")
    (record,) = predict.predict(run, [media["face_video"]], detector, frames, 0.5)
    assert record["kind"] == "video" and record["num_frames"] == 6
    assert [f["frame"] for f in record["faces"]] == [0, 2, 4]
    scores = face_scores([record])
    assert record["video"]["live_probability"] == pytest.approx(scores.mean(), abs=1e-12)
    assert record["video"]["reduce"] == run.config.eval.video_reduce == "mean"
    # The boxes and crops are those of the decoded frames, as preparation makes them.
    decoded, _ = video_lib.read_video(media["face_video"])
    plain = face_extraction.Detector(detector.settings, mtcnn=detector.mtcnn)
    hits = plain.largest_faces([decoded[i] for i in (0, 2, 4)])
    for face, (box, _, _) in zip(record["faces"], hits):
        np.testing.assert_allclose(face["box"], box, rtol=1e-6)
    assert record["faces"][0]["box"][0] < record["faces"][2]["box"][0]  # the face moves right
    crops = np.stack([face_extraction.face_crop(decoded[i], b, lm, detector.settings)
                      for i, (b, lm, _) in zip((0, 2, 4), hits)])
    np.testing.assert_allclose(scores, reference["student_best"](crops),
                               rtol=1e-5, atol=1e-6)
    # Synthetic runs score every frame of a video, whole.
    detector, frames, _ = predict.face_source(run.config)
    (whole,) = predict.predict(run, [media["synthetic_video"]], detector, frames, 0.5)
    assert [f["frame"] for f in whole["faces"]] == [0, 1, 2]
    assert whole["video"]["live_probability"] == pytest.approx(face_scores([whole]).mean(), abs=1e-12)
    assert predict.video_score(np.array([0.1, 0.9, 0.2]), "median") == pytest.approx(0.2)


LINE = re.compile(r"^(?P<path>\S+)  (?:face \d+/\d+|frame (?P<frame>\d+)|VIDEO \(.*\))  "
                  r"(?:box \[(?P<box>[^]]*)\]  )?live (?P<p>\S+)  (?P<decision>live|spoof)$")


def printed_scores(text):
    """(path, frame or 'video', probability, decision) of every printed score line."""
    rows = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            where = "video" if "VIDEO" in line else int(m["frame"] or 0)
            rows.append((m["path"], where, float(m["p"]), m["decision"]))
    return rows


def test_json_matches_the_printed_numbers(run_dir, media, tmp_path, capsys):
    out = tmp_path / "out.json"
    inputs = [media["synthetic_dir"], media["synthetic_video"], media["corrupt_image"]]
    assert predict.main(["--workdir", run_dir, "--json", str(out), *inputs]) == 0
    printed = printed_scores(capsys.readouterr().out)
    report = json.loads(out.read_text())
    assert (report["checkpoint"], report["step"], report["summary"]["scored"]) == ("best", 2, 5)
    from_json = []
    for r in report["results"]:
        for f in r.get("faces", []):
            from_json.append((r["path"], f["frame"], f["live_probability"], f["decision"]))
        if "video" in r:
            from_json.append((r["path"], "video", r["video"]["live_probability"], r["video"]["decision"]))
    assert len(printed) == len(from_json) == 4 + 3 + 1
    for (path, where, p, d), (jpath, jwhere, jp, jd) in zip(printed, from_json):
        assert (path, where, d) == (jpath, jwhere, jd)
        assert p == pytest.approx(jp, abs=5e-5, rel=5e-3)
    # `--json -` puts only JSON on stdout.
    assert predict.main(["--workdir", run_dir, "--json", "-", media["synthetic"][0]]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["summary"]["scored"] == 1 and "[predict]" in captured.err


def test_failures_are_reported_with_reasons_and_set_the_exit_status(run_dir, media, capsys, tmp_path):
    out = tmp_path / "fail.json"
    broken = [media["corrupt_image"], media["corrupt_video"]]
    assert predict.main(["--workdir", run_dir, "--json", str(out), *broken]) == 2
    text = capsys.readouterr().out
    assert f"{media['corrupt_image']}  UNREADABLE: " in text and "not a decodable image" in text
    assert f"{media['corrupt_video']}  UNREADABLE: " in text and "cannot open it" in text
    results = json.loads(out.read_text())["results"]
    assert [(r["status"], bool(r["reason"])) for r in results] == [("unreadable", True)] * 2
    assert predict.main(["--workdir", run_dir, "--detect", media["no_face"]]) == 2
    assert f"{media['no_face']}  NO FACE: no face found" in capsys.readouterr().out
    # One scored input is enough for success.
    assert predict.main(["--workdir", run_dir, *broken, media["synthetic"][0]]) == 0
    assert "1 of 3 inputs scored; 2 unreadable" in capsys.readouterr().out
    # A missing input stops before anything is loaded.
    missing = str(tmp_path / "nowhere.png")
    assert predict.main(["--workdir", run_dir, media["synthetic"][0], missing]) == 2
    assert f"no such file or folder: {missing}" in capsys.readouterr().err


def test_bad_workdirs_are_named(run_dir, media, tmp_path, capsys):
    image = media["synthetic"][0]

    def error(workdir, *extra):
        assert predict.main(["--workdir", str(workdir), *extra, image]) == 2
        return capsys.readouterr().err

    assert "does not exist" in error(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in error(tmp_path / "empty")
    fresh = tmp_path / "fresh"  # a run that has not saved a checkpoint yet
    fresh.mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), fresh / "config.json")
    assert "has no student checkpoint" in error(fresh)
    edited = tmp_path / "edited"
    shutil.copytree(run_dir, edited)
    config = json.loads((edited / "config.json").read_text())
    config["model"]["width"] = 8
    (edited / "config.json").write_text(json.dumps(config))
    message = error(edited)
    assert "does not match the run's config.json" in message and "params/" in message
    # A run recorded before a config field existed loads with the field's default.
    config["model"]["width"] = 4
    del config["model"]["dtype"]
    (edited / "config.json").write_text(json.dumps(config))
    assert predict.load_run(str(edited)).config.model.dtype == "float32"
    latest_dir = os.path.join(run_dir, "checkpoints", "student")
    assert "names the latest checkpoint but --checkpoint=best" in error(latest_dir, "--checkpoint=best")
