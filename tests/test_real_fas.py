"""Preparing the real datasets from fake copies of their downloads, and a protocol run on them.

The fake trees (tests/fake_fas_trees.py) have each dataset's real directory and file naming
and short videos of real face photos; preparation runs the real pipeline on them: layout scan,
video decoding, the JAX MTCNN, crops, the face cache and the tfds builders. Crops are 32 px and
detection runs at 256 px (the frames are 240x180) to keep the suite fast.
"""

import collections
import json
import os

import numpy as np
import pytest

from dtda_jax import train
from dtda_jax.data import prepare
from dtda_jax.data import face_extraction, layouts, pipeline, real_fas, video
from dtda_jax.data.face_extraction import FaceSettings, FrameSettings
from dtda_jax.faces import mtcnn
from tests import fake_fas_trees

FRAMES = FrameSettings()  # the SSDG frames
FACE = FaceSettings(size=32, detect_max_side=256)
VIDEO_DATASETS = {"oulu_npu": fake_fas_trees.make_oulu_npu, "casia_fasd": fake_fas_trees.make_casia_fasd,
                  "replay_attack": fake_fas_trees.make_replay_attack, "msu_mfsd": fake_fas_trees.make_msu_mfsd}
# Small OULU-NPU trees for the edge cases: 1 user per split, 2 phones x 5 files = 30 videos.
SMALL_OULU = {"users": {"Train_files": (1,), "Dev_files": (21,), "Test_files": (36,)}}
HIDDEN = "Train_files/1_1_01_1.avi"  # its sampled frames show no face
NO_FACE = "Train_files/1_1_01_2.avi"  # no frame shows a face
CORRUPT = "Dev_files/2_1_21_4.avi"  # not a video


@pytest.fixture(scope="session")
def detector():
    """One MTCNN for every test that detects directly (its jitted nets compile once)."""
    return face_extraction.Detector(FACE, mtcnn.MTCNN(min_face_size=FACE.min_face_size))


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("real_data")


@pytest.fixture(scope="session")
def prepared(real_data_dir):
    """O, C, I and M fake downloads, each prepared into real_data_dir: {dataset: (manual_dir, builder)}."""
    data_dir, out = real_data_dir, {}
    for name, make in VIDEO_DATASETS.items():
        root = make(str(data_dir.parent / f"download_{name}"))
        out[name] = root, real_fas.prepare(name, root, data_dir, FRAMES, FACE)
    return out


def records(builder, split):
    source = builder.as_data_source(split=split)
    return [source[i] for i in range(len(source))]


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("dataset", sorted(VIDEO_DATASETS))
def test_records_follow_the_official_layout(prepared, dataset):
    root, builder = prepared[dataset]
    entries = {e.key: e for e in layouts.scan(dataset, root)}
    video_ids = {key: i for i, key in enumerate(sorted(entries))}
    report = builder.info.metadata["preparation_report"]
    assert report["ok"] == report["total"] == len(entries) and not report["no_face"] and not report["unreadable"]
    assert set(builder.info.splits) == set(layouts.SPLITS[dataset])
    frames_of = collections.defaultdict(list)
    for split in builder.info.splits:
        rows = records(builder, split)
        assert {text(r["video_key"]) for r in rows} == {k for k, e in entries.items() if e.split == split}
        for r in rows:
            e = entries[text(r["video_key"])]
            assert r["domain"] == layouts.DATASETS.index(dataset)
            assert r["label"] == e.label and layouts.ATTACK_TYPES[r["attack_type"]] == e.attack_type
            assert (r["subject"], r["session"], text(r["sensor"])) == (e.subject, e.session, e.sensor)
            assert r["video_id"] == video_ids[e.key]
            assert r["num_frames"] == fake_fas_trees.NUM_FRAMES and r["source_frame"] == r["frame_index"]
            assert r["face_score"] > 0.9
            image = pipeline.decode_image(r["image"])
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and image.std() > 5
            frames_of[e.key].append(int(r["frame_index"]))
    expected = video.sample_frame_indices(fake_fas_trees.NUM_FRAMES, "ssdg", key="")
    assert expected == [4, 9]  # SSDG's 6 and 6 + N//2, moved earlier to fit a 10-frame video
    assert all(sorted(f) == expected for f in frames_of.values())
    assert report["crops"] == 2 * len(entries)


def test_live_and_spoof_labels_per_dataset(prepared):
    """The official label rules, as counted from the prepared records (train split)."""
    counted = {}
    for dataset, (_, builder) in prepared.items():
        rows = records(builder, "train")
        counted[dataset] = collections.Counter((int(r["label"]), layouts.ATTACK_TYPES[r["attack_type"]])
                                               for r in rows)
    # 2 frames per video; OULU: 2 users x 2 phones x (1 live, 2 print, 2 replay) videos
    assert counted["oulu_npu"] == {(1, "live"): 8, (0, "print"): 16, (0, "replay"): 16}
    assert counted["casia_fasd"] == {(1, "live"): 12, (0, "warped_photo"): 12, (0, "cut_photo"): 12,
                                     (0, "replay"): 12}
    assert counted["replay_attack"] == {(1, "live"): 8, (0, "print"): 4, (0, "replay"): 8}
    assert counted["msu_mfsd"] == {(1, "live"): 8, (0, "print"): 8, (0, "replay"): 16}


def test_crops_are_centred_on_the_face(prepared, detector):
    """Re-detecting on larger crops of the same frames finds one face, centred, filling the
    square up to the margin."""
    big = face_extraction.Detector(FaceSettings(size=128, detect_max_side=256), detector.mtcnn)
    for dataset, (root, _) in prepared.items():
        entries = layouts.scan(dataset, root)
        for entry in (entries[0], entries[-1]):
            faces = face_extraction.extract_video(entry, FRAMES, big)
            for crop, found in zip(faces.crops, detector.mtcnn.detect(list(faces.crops))):
                assert len(found) >= 1, entry.key
                box = found.boxes[int(np.argmax(found.scores))]
                centre = (box[:2] + box[2:]) / 2
                assert np.abs(centre - 64).max() < 0.15 * 128, (entry.key, box)
                side = max(box[2] - box[0], box[3] - box[1])
                assert 0.6 * 128 / 1.2 < side < 1.25 * 128 / 1.2, (entry.key, box)


def test_fallback_frames_no_face_and_corrupt_videos(tmp_path):
    root = fake_fas_trees.make_oulu_npu(str(tmp_path / "oulu"), **SMALL_OULU, corrupt=[CORRUPT],
                                        no_face_frames={HIDDEN: [4, 9]}, no_face_video=[NO_FACE])
    builder = real_fas.prepare("oulu_npu", root, tmp_path / "data", FRAMES, FACE)
    report = builder.info.metadata["preparation_report"]
    assert report["total"] == 30 and report["ok"] == 28
    assert report["no_face"] == [NO_FACE]
    assert [k for k, _ in report["unreadable"]] == [CORRUPT]
    assert "cannot open" in report["unreadable"][0][1]
    assert report["fallback_videos"] == [HIDDEN] and report["fallback_crops"] == 2
    assert json.loads(open(os.path.join(builder.cache_dir, "report.json")).read()) == report
    keys = [text(r["video_key"]) for s in builder.info.splits for r in records(builder, s)]
    assert NO_FACE not in keys and CORRUPT not in keys and len(keys) == 2 * 28
    hidden = sorted(((r["frame_index"], r["source_frame"]) for r in records(builder, "train")
                     if text(r["video_key"]) == HIDDEN))
    # Frames 4 and 9 have no face: the nearest frames with one, index + 1 tried first, are 5 and 8.
    assert hidden == [(4, 5), (9, 8)]


def test_interrupted_preparation_resumes_to_the_same_dataset(tmp_path, monkeypatch):
    root = fake_fas_trees.make_oulu_npu(str(tmp_path / "oulu"), **SMALL_OULU)
    straight = real_fas.prepare("oulu_npu", root, tmp_path / "straight", FRAMES, FACE)

    calls = []
    extract = face_extraction.extract_video

    def interrupted(*args, **kwargs):
        if len(calls) == 7:
            raise KeyboardInterrupt
        calls.append(1)
        return extract(*args, **kwargs)

    monkeypatch.setattr(face_extraction, "extract_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        real_fas.prepare("oulu_npu", root, tmp_path / "resumed", FRAMES, FACE)
    first = real_fas.get_builder("oulu_npu", tmp_path / "resumed", FRAMES, FACE)
    assert not first.is_prepared()
    cached = [f for _, _, files in os.walk(first.cache_dir) for f in files]
    assert sorted(os.path.splitext(f)[1] for f in cached) == [".npz"] * 7  # nothing half-written

    monkeypatch.setattr(face_extraction, "extract_video", extract)
    resumed = real_fas.prepare("oulu_npu", root, tmp_path / "resumed", FRAMES, FACE)
    assert resumed.info.metadata["preparation_report"]["cached"] == 7
    for split in ("train", "dev", "test"):
        a, b = records(straight, split), records(resumed, split)
        assert len(a) == len(b) == 20
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    # A third call only opens the prepared dataset.
    monkeypatch.setattr(face_extraction, "extract_video", None)
    assert real_fas.prepare("oulu_npu", root, tmp_path / "resumed", FRAMES, FACE).is_prepared()


def test_celeba_spoof_images_labels_and_box_fallback(tmp_path):
    keys = {"no_face": "Data/train/101/spoof/000002.png", "both": "Data/train/102/spoof/000006.png",
            "corrupt": "Data/test/201/spoof/000014.png"}
    root = fake_fas_trees.make_celeba_spoof(str(tmp_path / "celeba"), no_face=[keys["no_face"], keys["both"]],
                                            no_box=[keys["both"]], corrupt=[keys["corrupt"]])
    builder = real_fas.prepare("celeba_spoof", root, tmp_path / "data", FRAMES, FACE)
    report = builder.info.metadata["preparation_report"]
    entries = {e.key: e for e in layouts.scan("celeba_spoof", root)}
    assert keys["corrupt"] not in entries  # unreadable images are left out by the scan already
    assert report["total"] == len(entries) == 19 and report["no_face"] == [keys["both"]]
    assert report["fallback_videos"] == [keys["no_face"]]  # cropped at its official _BB.txt box
    rows = {text(r["video_key"]): r for s in ("train", "test") for r in records(builder, s)}
    assert set(rows) == set(entries) - {keys["both"]}
    for key, r in rows.items():
        e = entries[key]
        assert r["label"] == e.label and layouts.ATTACK_TYPES[r["attack_type"]] == e.attack_type
        np.testing.assert_array_equal(r["attributes"], e.attributes)
        assert pipeline.decode_image(r["image"]).shape == (32, 32, 3)
        assert (r["face_score"] == 0) == (key == keys["no_face"])
    assert sum(r["label"] for r in rows.values()) == 5  # one live image per subject


def test_cli_errors_name_the_problem(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert prepare.main(["--dataset=casia_fasd", f"--manual_dir={missing}", f"--data_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "CASIA-FASD" in err
    (tmp_path / "empty").mkdir()
    assert prepare.main(["--dataset=oulu_npu", f"--manual_dir={tmp_path / 'empty'}",
                         f"--data_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "no Train_files/, Dev_files/ or Test_files/ under" in err and "OULU-NPU" in err
    assert prepare.main(["--dataset=oulu_npu", f"--manual_dir={tmp_path}", "--image_size=8"]) == 2
    assert "face size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare.main(["--dataset=oulu", f"--manual_dir={tmp_path}"])


def protocol_config(data_dir, variant="dtda"):
    """configs/ocm_to_i.py at test size: 32 px, tiny nets, random teachers, a few steps."""
    from configs import ocm_to_i

    c = ocm_to_i.get_config(variant)
    c.data.data_dir = str(data_dir)
    c.data.image_size = 32
    c.data.real.face_detect_max_side = FACE.detect_max_side
    c.data.samples_per_group = 2
    c.data.eval_batch_size = 16
    c.model.width = c.domain_classifier.width = 4
    c.model.init_checkpoint = c.domain_classifier.init_checkpoint = ""
    c.domain_classifier.num_steps = 3
    t = c.teachers
    t.fr_arch, t.fr_width, t.fr_input_size, t.fr_checkpoint = "r18", 4, 32, ""
    t.fa_image_size, t.fa_conv_dim, t.fa_repeat_num, t.fa_checkpoint = 32, 4, 5, ""
    c.optim.learning_rate = 0.01
    c.train.num_steps, c.train.log_every, c.train.checkpoint_every, c.train.eval_every = 4, 2, 2, 2
    return c


def test_protocol_config_runs_end_to_end(prepared, real_data_dir, tmp_path):
    data_dir = real_data_dir
    config = protocol_config(data_dir)
    protocol = pipeline.load_protocol(config)
    assert protocol.domain_names == ("oulu_npu", "casia_fasd", "msu_mfsd", "replay_attack")
    # ssdg: sources O, C, M train on train + test (40 + 40, 48 + 48, 32 + 32 frames); the target
    # Replay-Attack is evaluated on train + test (20 + 20); of the sources only OULU has a dev
    # split for held-out source data (40 frames).
    assert len(protocol.train) == 80 + 96 + 64 and len(protocol.target) == 40
    assert len(protocol.source_val) == 40 and set(protocol.source_val.domain) == {0}
    assert set(protocol.target.domain) == {3} and set(protocol.train.domain) == {0, 1, 2}
    # The decoded-frame stores (one per dataset split) hold the stored PNG crops' pixels.
    encoded_config = protocol_config(data_dir)
    encoded_config.data.frame_store = "encoded"
    encoded = pipeline.load_protocol(encoded_config)
    for stored, decoded_each_read in ((protocol.train, encoded.train), (protocol.target, encoded.target)):
        assert len(stored.decoded) == len(stored.sources) > 1
        positions = np.random.default_rng(0).permutation(len(stored))
        np.testing.assert_array_equal(stored.read_images(positions), decoded_each_read.read_images(positions))
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["reported"] == results["reported"]
    assert 0.0 <= saved["reported"]["hter"] <= 1.0 and 0.0 <= saved["reported"]["auc"] <= 1.0
    assert saved["by_selection"]["last"]["step"] == 4
    official = protocol_config(data_dir)
    official.data.split_convention = "official"
    protocol = pipeline.load_protocol(official)
    assert len(protocol.train) == 40 + 48 + 32 and len(protocol.target) == 20  # train / test only


def test_unprepared_dataset_prints_the_prepare_command(tmp_path):
    config = protocol_config(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        pipeline.load_protocol(config)
    message = str(err.value)
    assert "python tools/prepare_fas.py --dataset=oulu_npu --manual_dir=/path/to/oulu_npu" in message
    assert f"--data_dir={tmp_path}" in message and "--image_size=32" in message
    assert "--face_detect_max_side=256" in message and "--face_min_size" not in message
    assert "licence agreement" in message
