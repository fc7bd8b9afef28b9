"""Video decoding round trips, frame sampling policies and the no-face fallback order."""

import os

import numpy as np
import pytest

from dtda_jax.data import video
from tests import fake_fas_trees


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One 9-frame moving-face video per container the fake trees use, and the frames written."""
    root = tmp_path_factory.mktemp("videos")
    scene = fake_fas_trees._Scene("roundtrip", 0, "live", "high", 240, 180)
    frames = [scene.frame(t) for t in range(9)]
    frames[4][:20, :20] = (255, 0, 0)  # pure red corner: catches BGR/RGB swaps
    paths = {}
    for ext in (".avi", ".mov", ".mp4"):
        paths[ext] = str(root / f"clip{ext}")
        fake_fas_trees._write_video(paths[ext], frames)
    return paths, frames


@pytest.mark.parametrize("ext", [".avi", ".mov", ".mp4"])
def test_round_trip_every_container(written, ext):
    paths, frames = written
    decoded, count = video.read_video(paths[ext])
    assert count == len(frames) and sorted(decoded) == list(range(len(frames)))
    for t, frame in decoded.items():
        assert frame.dtype == np.uint8 and frame.shape == frames[t].shape
        errors = [np.abs(frame.astype(int) - f.astype(int)).mean() for f in frames]
        assert errors[t] < 6.0 and int(np.argmin(errors)) == t  # the right frame, in order
    red = decoded[4][2:18, 2:18].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_keep_filter_holds_only_kept_frames(written):
    paths, frames = written
    decoded, count = video.read_video(paths[".avi"], keep=lambda i: i in (0, 4, 8))
    assert count == len(frames) and sorted(decoded) == [0, 4, 8]
    decoded, count = video.read_video(paths[".mov"], keep=lambda i: False)
    assert decoded == {} and count == len(frames)


def test_unreadable_files_raise_with_the_path(tmp_path):
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    for path in (tmp_path / "missing.avi", garbage, empty, text):
        with pytest.raises(video.VideoReadError, match=str(path)):
            video.read_video(str(path))


def test_fake_tree_edge_cases_decode_as_intended(tmp_path):
    bad, dark, gap = ("scene01/real/real_client002_android_SD_scene01.mp4",
                      "scene01/real/real_client002_laptop_SD_scene01.mov",
                      "scene01/attack/attack_client002_laptop_SD_ipad_video_scene01.mov")
    root = fake_fas_trees.make_msu_mfsd(str(tmp_path), clients=(2,), num_frames=7, corrupt=(bad,),
                                        no_face_video=(dark,), no_face_frames={gap: (1, 2)})
    with pytest.raises(video.VideoReadError):
        video.read_video(os.path.join(root, bad))
    frames, count = video.read_video(os.path.join(root, gap))
    assert count == 7
    # Without a face a frame is just the smooth background: far less detail than with one.
    detail = [np.abs(np.diff(frames[t].astype(int), axis=1)).mean() for t in range(7)]
    assert max(detail[1], detail[2]) < 0.6 * min(detail[0], detail[3])
    dark_frames, _ = video.read_video(os.path.join(root, dark))
    assert all(np.abs(np.diff(f.astype(int), axis=1)).mean() < min(detail[0], detail[3]) for f in dark_frames.values())
    with pytest.raises(ValueError, match="not files of this fake tree"):
        fake_fas_trees.make_msu_mfsd(str(tmp_path / "x"), clients=(2,), corrupt=("scene01/real/typo.mp4",))


def test_sampling_policies():
    assert video.sample_frame_indices(4, "all") == [0, 1, 2, 3]
    assert video.sample_frame_indices(7, "every_k", every_k=3) == [0, 3, 6]
    assert video.sample_frame_indices(11, "every_k") == [0, 5, 10]
    assert video.sample_frame_indices(100, "ssdg") == [6, 56]
    assert video.sample_frame_indices(13, "ssdg") == [6, 12]


@pytest.mark.parametrize("num_frames, expected", [(1, [0]), (2, [0, 1]), (3, [1, 2]), (7, [3, 6]), (12, [5, 11])])
def test_ssdg_frames_on_short_videos(num_frames, expected):
    assert video.sample_frame_indices(num_frames, "ssdg") == expected


def test_every_policy_stays_in_range_without_duplicates():
    for num_frames in range(1, 40):
        for policy in video.FRAME_POLICIES:
            frames = video.sample_frame_indices(num_frames, policy, num_random=3, key=f"v{num_frames}")
            assert frames == sorted(set(frames)) and frames and all(0 <= i < num_frames for i in frames)


def test_random_frames_are_deterministic_per_seed_and_key():
    pick = lambda **kw: video.sample_frame_indices(300, "random", num_random=4, **kw)  # noqa: E731
    assert pick(key="a/1.avi") == pick(key="a/1.avi")
    assert len(set(pick(key="a/1.avi"))) == 4
    assert pick(key="a/1.avi") != pick(key="a/2.avi")
    assert pick(key="a/1.avi", seed=0) != pick(key="a/1.avi", seed=1)
    assert video.sample_frame_indices(3, "random", num_random=5, key="k") == [0, 1, 2]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_frames=5, policy="middle"), "expected one of"),
    (dict(num_frames=0, policy="all"), "num_frames"),
    (dict(num_frames=5, policy="every_k", every_k=0), "every_k"),
    (dict(num_frames=5, policy="random", num_random=0), "num_random"),
])
def test_bad_sampling_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        video.sample_frame_indices(**kwargs)


def test_neighbour_order():
    assert video.neighbour_order(5, 10, 2) == [6, 4, 7, 3]
    assert video.neighbour_order(0, 10, 3) == [1, 2, 3]
    assert video.neighbour_order(9, 10, 2) == [8, 7]
    assert video.neighbour_order(1, 3, 5) == [2, 0]
    assert video.neighbour_order(0, 1, 4) == [] == video.neighbour_order(3, 10, 0)
    with pytest.raises(ValueError):
        video.neighbour_order(10, 10, 2)
