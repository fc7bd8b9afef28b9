"""Scanning the fake copies of the official dataset trees: splits, labels, attack types, errors."""

import collections
import json
import logging
import os
import re
import shutil

import pytest
from PIL import Image

from dtda_jax.data import layouts
from tests import fake_fas_trees


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    builders = {"oulu_npu": fake_fas_trees.make_oulu_npu, "casia_fasd": fake_fas_trees.make_casia_fasd,
                "replay_attack": fake_fas_trees.make_replay_attack, "msu_mfsd": fake_fas_trees.make_msu_mfsd,
                "celeba_spoof": fake_fas_trees.make_celeba_spoof}
    return {name: build(str(tmp_path_factory.mktemp(name))) for name, build in builders.items()}


def counts(entries):
    return collections.Counter((e.split, e.label, e.attack_type) for e in entries)


def check_common(entries, dataset, root):
    keys = [e.key for e in entries]
    assert keys == sorted(set(keys))
    for e in entries:
        assert e.dataset == dataset and e.split in layouts.SPLITS[dataset] and e.attack_type in layouts.ATTACK_TYPES
        assert e.label == int(e.attack_type == "live")
        assert os.path.isabs(e.path) and os.path.isfile(e.path)
        assert e.path == os.path.join(os.path.abspath(root), *e.key.split("/"))


def test_oulu_npu(trees, caplog):
    with caplog.at_level(logging.WARNING):
        entries = layouts.scan_oulu_npu(trees["oulu_npu"])
    assert not caplog.records  # the eye-location .txt files and Protocols/ are ignored silently
    check_common(entries, "oulu_npu", trees["oulu_npu"])
    for split in ("train", "dev", "test"):  # 2 users x 2 phones x 1 session
        assert {k[1:]: v for k, v in counts(entries).items() if k[0] == split} == {
            (1, "live"): 4, (0, "print"): 8, (0, "replay"): 8}
    assert sorted({(e.split, e.subject) for e in entries}) == [
        ("dev", 21), ("dev", 22), ("test", 36), ("test", 37), ("train", 1), ("train", 2)]
    assert {e.sensor for e in entries} == {"phone1", "phone2"} and {e.session for e in entries} == {1}
    for e in entries:  # the official rule: file 1 is real; 2-3 print, 4-5 replay
        file = int(e.key[-5])
        assert e.label == (file == 1) and e.attack_type == {1: "live", 2: "print", 3: "print"}.get(file, "replay")
        assert e.is_video and e.sensor == f"phone{e.key.split('/')[1][0]}"


def test_casia_fasd(trees):
    entries = layouts.scan("casia_fasd", trees["casia_fasd"])
    check_common(entries, "casia_fasd", trees["casia_fasd"])
    for split in ("train", "test"):  # 2 subjects x (3 real + 9 attacks)
        assert {k[1:]: v for k, v in counts(entries).items() if k[0] == split} == {
            (1, "live"): 6, (0, "warped_photo"): 6, (0, "cut_photo"): 6, (0, "replay"): 6}
    assert sorted({(e.split, e.subject) for e in entries}) == [("test", 21), ("test", 22), ("train", 1), ("train", 2)]
    by_name = {e.key.split("/")[-1]: e for e in entries if e.split == "train" and e.subject == 1}
    assert [by_name[n].sensor for n in ("1.avi", "2.avi", "HR_1.avi", "7.avi", "8.avi", "HR_4.avi")] == [
        "low", "normal", "high", "low", "normal", "high"]
    assert {n for n, e in by_name.items() if e.label == 1} == {"1.avi", "2.avi", "HR_1.avi"}


def test_replay_attack(trees):
    entries = layouts.scan_replay_attack(trees["replay_attack"])
    check_common(entries, "replay_attack", trees["replay_attack"])
    assert not any(e.key.startswith("enroll/") for e in entries)
    for split in ("train", "dev", "test"):  # 2 clients x (2 real, 1 print, 2 screen)
        assert {k[1:]: v for k, v in counts(entries).items() if k[0] == split} == {
            (1, "live"): 4, (0, "print"): 2, (0, "replay"): 4}
    assert sorted({(e.split, e.subject) for e in entries}) == [
        ("dev", 3), ("dev", 5), ("test", 9), ("test", 11), ("train", 1), ("train", 2)]
    assert {e.sensor for e in entries} == {"webcam"} and {e.session for e in entries} == {1}
    assert all(("/real/" in e.key) == (e.label == 1) for e in entries)


def test_msu_mfsd(trees):
    entries = layouts.scan_msu_mfsd(trees["msu_mfsd"])
    check_common(entries, "msu_mfsd", trees["msu_mfsd"])
    for split in ("train", "test"):  # 2 clients x 2 devices x (1 real, 2 screens, 1 print)
        assert {k[1:]: v for k, v in counts(entries).items() if k[0] == split} == {
            (1, "live"): 4, (0, "replay"): 8, (0, "print"): 4}
    assert sorted({(e.split, e.subject) for e in entries}) == [("test", 1), ("test", 13), ("train", 2), ("train", 3)]
    assert {e.sensor for e in entries} == {"android", "laptop"}
    assert {os.path.splitext(e.key)[1] for e in entries if e.sensor == "laptop"} == {".mov"}


def test_misnamed_videos_are_reported_not_dropped_silently(trees, tmp_path, caplog):
    root = shutil.copytree(trees["msu_mfsd"], tmp_path / "msu")
    (root / "scene01" / "real" / "real_client004_android_SD_scene01.mp4").write_bytes(b"x")  # in no list
    (root / "scene01" / "real" / "copy of real_client002_android_SD_scene01.mp4").write_bytes(b"x")
    (root / "scene01" / "real" / "README.txt").write_text("not a video")
    with caplog.at_level(logging.WARNING):
        entries = layouts.scan("msu_mfsd", str(root))
    assert len(entries) == 32
    [record] = caplog.records
    assert "ignored 2 video files" in record.getMessage() and "copy of real_client002" in record.getMessage()


def test_oulu_user_in_the_wrong_split_is_reported(trees, tmp_path, caplog):
    root = shutil.copytree(trees["oulu_npu"], tmp_path / "oulu")
    os.rename(root / "Train_files" / "1_1_01_1.avi", root / "Dev_files" / "1_1_01_1.avi")
    with caplog.at_level(logging.WARNING):
        entries = layouts.scan_oulu_npu(str(root))
    assert len(entries) == 59 and "Dev_files/1_1_01_1.avi" in caplog.text


def test_celeba_spoof_protocol_1(trees):
    root = trees["celeba_spoof"]
    entries = layouts.scan_celeba_spoof(root, "p1")
    check_common(entries, "celeba_spoof", root)
    listed = {}
    for split in ("train", "test"):
        with open(os.path.join(root, "metas", "intra_test", f"{split}_label.json")) as f:
            listed.update({k: (split, v) for k, v in json.load(f).items()})
    assert sorted(listed) == [e.key for e in entries]
    for e in entries:
        split, vector = listed[e.key]
        assert e.split == split == e.key.split("/")[1] and e.subject == int(e.key.split("/")[2])
        assert e.label == (vector[43] == 0) == ("/live/" in e.key)  # index 43: 0 means live
        assert e.attack_type == ("live" if e.label else fake_fas_trees.CELEBA_SPOOF_CODES[vector[40]])
        assert e.attributes == tuple(vector[:40]) and not e.is_video and e.sensor == "" and e.session == -1
        x1, y1, x2, y2 = e.bbox
        assert 0 <= x1 < x2 and 0 <= y1 < y2
    assert {e.attack_type for e in entries} == set(layouts.ATTACK_TYPES) - {"replay", "warped_photo", "cut_photo"}
    assert collections.Counter(e.split for e in entries) == {"train": 12, "test": 8}


def test_celeba_spoof_boxes_are_in_image_pixels(trees):
    root = trees["celeba_spoof"]
    entry = next(e for e in layouts.scan_celeba_spoof(root) if e.key.endswith(".png"))
    with Image.open(entry.path) as image:
        width, height = image.size
    with open(entry.path[:-4] + "_BB.txt") as f:
        x, y, w, h, _ = map(float, f.read().split())
    assert entry.bbox == pytest.approx((x * width / 224, y * height / 224, (x + w) * width / 224,
                                        (y + h) * height / 224))


def test_celeba_spoof_protocol_2_splits_by_list(trees):
    root = trees["celeba_spoof"]
    for quality in ("low", "middle", "high"):
        entries = layouts.scan("celeba_spoof", root, protocol=f"p2_{quality}")
        with open(os.path.join(root, "metas", "protocol2", f"test_on_{quality}_quality_device", "test_label.json")) as f:
            test_keys = set(json.load(f))
        assert {e.key for e in entries if e.split == "test"} == test_keys
        assert any(e.split == "train" and e.key.startswith("Data/test/") for e in entries)
        assert len(entries) == 20


def test_celeba_spoof_unusable_rows_and_contradictions(tmp_path, caplog):
    missing, no_box, corrupt = "Data/train/101/spoof/000002.png", "Data/train/101/live/000001.jpg", \
        "Data/test/201/spoof/000014.png"
    root = fake_fas_trees.make_celeba_spoof(str(tmp_path), missing=(missing,), no_box=(no_box,), corrupt=(corrupt,))
    label_file = os.path.join(root, "metas", "intra_test", "train_label.json")
    with open(label_file) as f:
        rows = json.load(f)
    rows["Data/train/102/live/000005.jpg"][43] = 1  # live folder, spoof label (the real data has such rows)
    rows["Data/train/102/live/000005.jpg"][40] = 9
    rows["Data/train/103/spoof/000010.png"][40] = 0  # a spoof without a spoof type
    with open(label_file, "w") as f:
        json.dump(rows, f)
    with caplog.at_level(logging.WARNING):
        entries = {e.key: e for e in layouts.scan_celeba_spoof(root)}
    assert len(entries) == 17 and missing not in entries and corrupt not in entries
    assert entries[no_box].bbox is None
    flipped = entries["Data/train/102/live/000005.jpg"]
    assert flipped.label == 0 and flipped.attack_type == "phone"
    assert "1 listed images sit in a live/spoof folder that contradicts" in caplog.text
    assert "ignored 3 label-file rows" in caplog.text and missing in caplog.text


@pytest.mark.parametrize("dataset, expected", [
    ("oulu_npu", "Train_files/, Dev_files/ or Test_files/"), ("casia_fasd", "train_release/ or test_release/"),
    ("replay_attack", "train/, devel/ or test/"), ("msu_mfsd", "scene01/"), ("celeba_spoof", "Data/ and metas/")])
def test_wrong_root_names_what_is_expected(trees, tmp_path, dataset, expected):
    wrong = trees["casia_fasd"] if dataset != "casia_fasd" else trees["oulu_npu"]
    with pytest.raises(layouts.DatasetLayoutError, match=re.escape(f"no {expected} under")):
        layouts.scan(dataset, wrong)
    with pytest.raises(layouts.DatasetLayoutError, match="does not exist or is not a directory"):
        layouts.scan(dataset, str(tmp_path / "absent"))


def test_root_one_level_too_high_gets_a_hint(trees, tmp_path):
    parent = tmp_path / "downloads"
    shutil.copytree(trees["replay_attack"], parent / "replayattack")
    with pytest.raises(layouts.DatasetLayoutError, match="replayattack: point there instead"):
        layouts.scan_replay_attack(str(parent))


def test_missing_pieces(trees, tmp_path, caplog):
    root = shutil.copytree(trees["msu_mfsd"], tmp_path / "msu")
    os.remove(root / "test_sub_list.txt")
    with pytest.raises(layouts.DatasetLayoutError, match="test_sub_list.txt is missing"):
        layouts.scan_msu_mfsd(str(root))
    root = shutil.copytree(trees["oulu_npu"], tmp_path / "oulu")
    shutil.rmtree(root / "Dev_files")
    with caplog.at_level(logging.WARNING):
        assert {e.split for e in layouts.scan_oulu_npu(str(root))} == {"train", "test"}
    assert "no Dev_files/" in caplog.text
    empty = tmp_path / "empty"
    (empty / "train_release").mkdir(parents=True)
    with pytest.raises(layouts.DatasetLayoutError, match="found no usable file"):
        layouts.scan_casia_fasd(str(empty))
    root = shutil.copytree(trees["celeba_spoof"], tmp_path / "celeba")
    shutil.rmtree(root / "metas" / "protocol2" / "test_on_low_quality_device")
    with pytest.raises(layouts.DatasetLayoutError, match="test_on_low_quality_device.train_label.json is missing"):
        layouts.scan_celeba_spoof(str(root), "p2_low")


def test_bad_names():
    with pytest.raises(ValueError, match="expected one of"):
        layouts.scan("siw", "/tmp")
    with pytest.raises(ValueError, match="p2_low"):
        layouts.scan_celeba_spoof("/tmp", "p3")
    assert set(layouts.SPLITS) == set(layouts.DATASETS) and layouts.ATTACK_TYPES[0] == "live"
