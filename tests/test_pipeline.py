"""The input pipeline: exact balanced batches, determinism, resumable iterator, evaluation order."""

import collections

import jax
import numpy as np
import pytest

from dtda_jax.data import augmentation, pipeline
from dtda_jax.core.sharding import make_mesh
from dtda_jax.evaluation.fas import sharded_frame_scores

DOMAIN_NAMES = ("a", "b", "c")


def fake_frames(group_sizes, image_size=8, interleave_seed=None):
    """A FrameSet over an in-memory source; `group_sizes[(domain, label)]` frames per group.

    Each image is constant and encodes the frame's position, so tests can see which frame
    landed where (also after augmentation, which only moves pixels). Frames are stored group
    after group, or, with `interleave_seed`, in a seeded random order that mixes the groups
    (so that reading the right group's frames in the wrong order shows up as a wrong label).
    """
    order = [g for g, n in sorted(group_sizes.items()) for _ in range(n)]  # each frame's group
    if interleave_seed is not None:
        order = [order[i] for i in np.random.default_rng(interleave_seed).permutation(len(order))]
    records, domain, label = [], [], []
    for value, (d, l) in enumerate(order):
        records.append({"image": np.full((image_size, image_size, 3), value % 256, np.uint8)})
        domain.append(d)
        label.append(l)
    n = len(records)
    return pipeline.FrameSet(sources=(records,), source_id=np.zeros(n, np.int32),
                             record=np.arange(n), domain=np.array(domain, np.int32),
                             label=np.array(label, np.int32), video=np.arange(n) // 2)


# Uneven groups, as in real protocols (more spoof than live, domains of different sizes).
SIZES = {(0, 0): 7, (0, 1): 3, (1, 0): 5, (1, 1): 4, (2, 0): 9, (2, 1): 2}


def test_every_batch_is_exactly_balanced():
    frames = fake_frames(SIZES)
    groups = pipeline.group_members(frames, 3, DOMAIN_NAMES)
    for step in range(25):
        positions = pipeline.balanced_batch_positions(groups, 4, seed=0, step=step)
        counts = collections.Counter(zip(frames.domain[positions], frames.label[positions]))
        assert counts == {g: 4 for g in SIZES}


def test_each_group_is_seen_once_per_epoch():
    frames = fake_frames(SIZES)
    groups = pipeline.group_members(frames, 3, DOMAIN_NAMES)
    spg, steps = 3, 21  # 63 draws per group: whole epochs of every group size above
    drawn = np.stack([pipeline.balanced_batch_positions(groups, spg, seed=1, step=s)
                      for s in range(steps)])
    for g, members in enumerate(groups):
        sequence = drawn[:, g * spg:(g + 1) * spg].reshape(-1)
        n = members.size
        for epoch in range(len(sequence) // n):
            assert sorted(sequence[epoch * n:(epoch + 1) * n]) == sorted(members)


def test_batches_depend_only_on_seed_and_step():
    groups = pipeline.group_members(fake_frames(SIZES), 3, DOMAIN_NAMES)
    a = pipeline.balanced_batch_positions(groups, 4, seed=5, step=11)
    b = pipeline.balanced_batch_positions(groups, 4, seed=5, step=11)
    c = pipeline.balanced_batch_positions(groups, 4, seed=6, step=11)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_missing_group_is_named():
    sizes = dict(SIZES)
    del sizes[(1, 1)]
    with pytest.raises(ValueError, match="Source domain 'b' has no live frames"):
        pipeline.group_members(fake_frames(sizes), 3, DOMAIN_NAMES)


def test_process_shards_make_up_the_global_batch():
    """Augmented included: a frame's flip and crop do not depend on the number of processes."""
    frames = fake_frames(SIZES)
    for record in frames.sources[0]:  # pixels that flips and crops move
        record["image"] = record["image"] + np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    groups = tuple(pipeline.group_members(frames, 3, DOMAIN_NAMES))
    make = lambda index, count: pipeline.BalancedBatches(frames, groups, 4, seed=2, flip=True,
                                                         crop_padding=0.25, process_index=index,
                                                         process_count=count)
    whole = make(0, 1)(3)
    halves = [make(i, 2)(3) for i in range(2)]
    assert sorted(whole) == ["domain", "flip", "image", "label", "shift"]
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


def test_iterator_resumes_from_saved_state():
    frames = fake_frames(SIZES)
    make = lambda: pipeline.balanced_train_iterator(frames, DOMAIN_NAMES, 3, 2, seed=0, num_steps=10,
                                                    flip=True, crop_padding=0.25)
    straight = [next(it) for it in [make()] for _ in range(10)]
    first = make()
    for _ in range(4):
        next(first)
    state = first.get_state()
    resumed = make()
    resumed.set_state(state)
    for expected in straight[4:]:
        got = next(resumed)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    with pytest.raises(StopIteration):
        next(resumed)


def reference_augmentation(images, flips, shifts):
    """Flip with [:, ::-1], then crop np.pad(..., mode="reflect") at offset shift + pad: the
    host-side augmentation the pipeline applied before it moved into the step (any pad >=
    the largest shift crops the same pixels)."""
    pad = int(np.abs(shifts).max())
    out = images.copy()
    out[flips] = out[flips, :, ::-1]
    padded = np.pad(out, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    for i, (dy, dx) in enumerate(shifts + pad):
        out[i] = padded[i, dy:dy + h, dx:dx + w]
    return out


@pytest.mark.parametrize("size, crop_padding", [(16, 0.125), (64, 0.0625), (64, 0.49), (8, 0.0)])
def test_step_augmentation_equals_flip_then_reflect_pad_and_crop(size, crop_padding):
    rng = np.random.default_rng(size)
    images = rng.integers(0, 256, size=(40, size, size + 3, 3), dtype=np.uint8)
    pad = augmentation.pad_pixels(crop_padding, size)
    draws = augmentation.draws(seed=1, step=2, n=len(images), flip=True, pad=pad)
    assert draws["flip"].any() and not draws["flip"].all()
    assert np.abs(draws["shift"]).max() == pad
    got = jax.jit(augmentation.apply)({"image": images, **draws})
    np.testing.assert_array_equal(np.asarray(got), reference_augmentation(images, draws["flip"], draws["shift"]))
    np.testing.assert_array_equal(augmentation.draws(1, 2, len(images), True, pad)["shift"], draws["shift"])
    assert augmentation.draws(1, 2, 4, flip=False, pad=0) == {}
    np.testing.assert_array_equal(augmentation.apply({"image": images}), images)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, 64])
def test_eval_batches_cover_every_frame_in_order(batch_size):
    """Evaluation reads every frame once, in order (`sharded_frame_scores`, as the evaluator
    calls it), and the scorer hands the model full batches only (padded), whose first rows are
    the real frames."""
    frames = fake_frames(SIZES)
    seen_shapes = []

    def score(_, batch):
        seen_shapes.append({k: v.shape[0] for k, v in batch.items()})
        return np.stack([batch["image"][:, 0, 0, 0], batch["domain"], batch["label"]], axis=1)

    out = sharded_frame_scores(score, None, frames, batch_size, make_mesh(1), keys=("domain", "label"))
    assert all(set(shapes.values()) == {batch_size} for shapes in seen_shapes)
    assert out[:, 0].tolist() == list(range(len(frames)))
    assert out[:, 1].tolist() == frames.domain.tolist() and out[:, 2].tolist() == frames.label.tolist()
