"""The decoded-frame store: the same images as decoding, written once, never read half-written."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from dtda_jax.data import frame_store, pipeline
from tests.conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Frames:
    """A data source of `n` (8, 8, 3) frames whose pixels encode their index."""

    def __init__(self, n, delay_s=0.0, odd_one=None):
        self.n, self.delay_s, self.odd_one = n, delay_s, odd_one

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(self.delay_s)
        size = 9 if i == self.odd_one else 8
        return {"image": np.full((size, 8, 3), i % 251, np.uint8) + np.arange(3, dtype=np.uint8)}


def expected(n):
    return np.stack([Frames(n)[i]["image"] for i in range(n)])


def test_store_holds_every_frame_and_pickles_as_its_path(tmp_path):
    path = str(tmp_path / "decoded_frames" / "train.npy")
    store = frame_store.decoded_frames(Frames(600), path, "test train", np.asarray)
    np.testing.assert_array_equal(store.array, expected(600))
    rows = np.array([599, 0, 17, 17, 300])
    np.testing.assert_array_equal(store.take(rows), expected(600)[rows])
    blob = pickle.dumps(store)
    assert len(blob) < 500  # the path, not the frames
    np.testing.assert_array_equal(pickle.loads(blob).take(rows), expected(600)[rows])
    assert os.listdir(tmp_path / "decoded_frames") == ["train.npy"]


def test_a_store_that_does_not_match_its_source_is_written_again(tmp_path, capsys):
    path = str(tmp_path / "train.npy")
    np.save(path, np.zeros((3, 8, 8, 3), np.uint8))
    store = frame_store.decoded_frames(Frames(5), path, "test train", np.asarray)
    assert "holds 3 frames, its dataset 5; decoding test train again" in capsys.readouterr().out
    np.testing.assert_array_equal(store.array, expected(5))
    with open(path, "wb") as f:
        f.write(b"not an array")
    np.testing.assert_array_equal(frame_store.decoded_frames(Frames(5), path, "x", np.asarray).array, expected(5))


def test_no_space_or_frames_of_different_sizes_leave_nothing_behind(tmp_path, monkeypatch):
    path = str(tmp_path / "train.npy")
    with pytest.raises(pipeline.DataError, match="frames of different sizes cannot be stored together"):
        frame_store.decoded_frames(Frames(300, odd_one=280), path, "test train", np.asarray)
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(frame_store.shutil, "disk_usage", lambda _: types.SimpleNamespace(free=100))
    with pytest.raises(pipeline.DataError, match=r"needs 0\.00 GB .* has 0\.00 GB free: .*frame_store='encoded'"):
        frame_store.decoded_frames(Frames(5), path, "test train", np.asarray)
    assert os.listdir(tmp_path) == []


def test_a_build_killed_with_sigkill_leaves_no_store_and_the_next_build_is_whole(tmp_path):
    """A real process killed mid-write (SIGKILL: no cleanup runs) leaves only its partial file,
    which no reader opens; the next build removes it and writes the whole store."""
    path = str(tmp_path / "train.npy")
    script = textwrap.dedent(f"""
        import numpy as np
        from dtda_jax.data import frame_store
        from tests.test_frame_store import Frames
        frame_store.decoded_frames(Frames(3000, delay_s=0.004), {path!r}, "slow", np.asarray)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 60
    while not [f for f in os.listdir(tmp_path) if ".partial-" in f]:
        assert proc.poll() is None and time.time() < deadline, "the build ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and ".partial-" in left[0] and not os.path.exists(path)
    store = frame_store.decoded_frames(Frames(3000), path, "slow", np.asarray)
    np.testing.assert_array_equal(store.array, expected(3000))
    assert os.listdir(tmp_path) == ["train.npy"]


def test_protocol_frames_read_from_the_store_equal_decoded_frames(data_dir):
    """The built-in benchmark's three frame sets, read through the stores (the default) and
    decoded at every read: the same images at every position."""
    decoded = pipeline.load_protocol(tiny_config(data_dir))
    config = tiny_config(data_dir)
    config.data.frame_store = "encoded"
    encoded = pipeline.load_protocol(config)
    for name in ("train", "source_val", "target"):
        a, b = getattr(decoded, name), getattr(encoded, name)
        assert len(a.decoded) == len(a.sources) and b.decoded == ()
        positions = np.random.default_rng(0).permutation(len(a))
        np.testing.assert_array_equal(a.read_images(positions), b.read_images(positions))
        assert all(os.path.dirname(s.path).endswith(frame_store.STORE_DIR) for s in a.decoded)


def test_an_empty_split_has_no_store_and_the_others_read(tmp_path):
    """A split whose videos were all skipped in preparation is empty: nothing to store."""
    records = [{"image": np.full((8, 8, 3), i, np.uint8), "domain": 0, "label": i % 2, "video_id": i}
               for i in range(4)]
    frames = pipeline._frame_set([[], records], [{0: 0}, {0: 0}],
                                 [(str(tmp_path / "empty.npy"), "empty"), (str(tmp_path / "four.npy"), "four")])
    assert frames.decoded[0] is None and os.listdir(tmp_path) == ["four.npy"]
    np.testing.assert_array_equal(frames.read_images([3, 0]), np.stack([records[3]["image"], records[0]["image"]]))


def test_a_run_with_its_training_frames_on_the_devices_is_the_same_run(data_dir, dtda_run, tmp_path):
    """data.frame_store = "device": batches leave the host as frame positions, their images are
    gathered on the (two) devices; every logged loss, evaluation and result is the one of the
    uninterrupted default run (decoded-frame store), exactly."""
    from dtda_jax import train
    from dtda_jax.core import artifacts

    config = tiny_config(data_dir)
    config.data.frame_store = "device"
    workdir = str(tmp_path / "run")
    results = train.train_and_evaluate(config, workdir)
    reference_dir, reference = dtda_run
    for name in ("metrics.jsonl", "eval.jsonl"):
        got, want = (artifacts.read_jsonl(os.path.join(d, name)) for d in (workdir, reference_dir))
        strip = lambda records: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s", "time")}
                                 for r in records]
        assert strip(got) == strip(want), name
    assert results["by_selection"] == reference["by_selection"]


def test_device_frame_batches_resume_from_a_checkpoint(tmp_path):
    """The device-gathered batches checkpoint as their position: restored from a stage
    checkpoint, they continue with the batches of the uninterrupted iterator, and their
    images are the frames at the batch's positions with the host pipeline's draws."""
    from dtda_jax.core.checkpointing import StageCheckpoints
    from dtda_jax.core.sharding import make_mesh
    from dtda_jax.data.device_frames import DeviceFrameBatches
    from tests.test_pipeline import DOMAIN_NAMES, SIZES, fake_frames

    frames, mesh = fake_frames(SIZES, interleave_seed=3), make_mesh(2)

    def make(on_device):
        it = pipeline.balanced_train_iterator(frames, DOMAIN_NAMES, 3, 2, seed=4, num_steps=8, flip=True,
                                              crop_padding=0.25, frames_on_device=on_device)
        return DeviceFrameBatches(it, frames, mesh) if on_device else it

    host = list(make(False))
    first = make(True)
    for expected in host[:3]:
        got = next(first)
        assert "frame" not in got
        for key, value in expected.items():
            np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)
    checkpoints = StageCheckpoints(str(tmp_path / "checkpoints"))
    state = {"x": np.zeros(2, np.float32)}
    checkpoints.save(3, state, first)
    resumed = make(True)
    checkpoints.restore(state, resumed)
    checkpoints.close()
    rest = [np.asarray(b["image"]) for b in resumed]
    assert len(rest) == 5
    for got, expected in zip(rest, host[3:]):
        np.testing.assert_array_equal(got, expected["image"])
