"""Tests of the synthetic multi-domain FAS benchmark (renderer + TFDS builder)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dtda_jax.data import synthetic
from dtda_jax.data.synthetic import ATTACK_TYPES, ATTRIBUTES, DOMAIN_PARAMS, DOMAINS, benchmark
from dtda_jax.data.synthetic.benchmark import SyntheticFasConfig, dataset_plan, prepare_synthetic_fas

SIZE = 32
MAIN = dict(image_size=SIZE, seed=0, train_identities_per_domain=6, test_identities_per_domain=4,
            frames_per_video=2)
TINY = dict(image_size=SIZE, train_identities_per_domain=1, test_identities_per_domain=1, frames_per_video=2)


def _load(builder, split: str) -> dict[str, np.ndarray]:
    src = builder.as_data_source(split=split)
    recs = [src[i] for i in range(len(src))]
    out = {k: np.stack([np.asarray(r[k]) for r in recs]) for k in recs[0]}
    order = np.lexsort((out["frame_index"], out["video_id"]))
    return {k: v[order] for k, v in out.items()}


def _features(images: np.ndarray) -> np.ndarray:
    """Cheap per-image colour / contrast / noise / sharpness statistics."""
    x = images.astype(np.float32) / 255.0
    lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = (4 * lum[:, 1:-1, 1:-1] - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1]
           - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:])
    sat = x.max(-1) - x.min(-1)
    n = len(x)
    return np.concatenate([
        x.mean((1, 2)), x.std((1, 2)),
        np.log(lap.std((1, 2)) + 1e-4)[:, None],
        np.log(np.abs(np.diff(lum, axis=2)).mean((1, 2)) + 1e-4)[:, None],
        sat.mean((1, 2))[:, None],
        np.percentile(lum.reshape(n, -1), [2, 50, 98], axis=1).T,
        x[:, :4].mean((1, 2)) - x[:, SIZE // 3:2 * SIZE // 3, SIZE // 3:2 * SIZE // 3].mean((1, 2)),
    ], axis=1)


@pytest.fixture(scope="module")
def main_ds(tmp_path_factory):
    builder = prepare_synthetic_fas(str(tmp_path_factory.mktemp("fas_main")), **MAIN)
    return builder, _load(builder, "train"), _load(builder, "test")


# --------------------------------------------------------------------------- API


def test_constants_and_domain_table():
    assert ATTRIBUTES == ("black_hair", "blond_hair", "brown_hair", "male", "young")
    assert ATTACK_TYPES == ("live", "print", "replay", "cut_photo")
    assert len(DOMAINS) == 4 and all(d.islower() for d in DOMAINS)
    assert benchmark.DOMAINS == DOMAINS
    mixes = {p.attack_mix for p in DOMAIN_PARAMS}
    assert len(mixes) == 4, "every domain has its own attack mix"
    for p in DOMAIN_PARAMS:
        assert 0 not in p.attack_mix and len(p.attack_mix) >= 2
    with pytest.raises(dataclasses_frozen_error()):
        DOMAIN_PARAMS[0].jpeg_quality = 1  # type: ignore[misc]
    assert "attack_mix" in synthetic.domain_table()


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_config_names_encode_size_seed_and_counts(tmp_path):
    assert SyntheticFasConfig().name == "size64_seed0"
    assert SyntheticFasConfig(image_size=256, seed=3).name == "size256_seed3"
    assert SyntheticFasConfig(**MAIN).name == "size32_seed0_tr6_te4_f2"
    # a fresh config object equal to a registered one is accepted (nothing is built here)
    b = benchmark.SyntheticFas(data_dir=str(tmp_path), config=SyntheticFasConfig())
    assert b.builder_config.name == "size64_seed0" and not b.is_prepared()
    assert b.info.features["image"].shape == (64, 64, 3)


def test_identity_sampling():
    a = synthetic.sample_identity(5, 17)
    assert a == synthetic.sample_identity(5, 17)
    assert a != synthetic.sample_identity(5, 18)
    attrs = np.array([synthetic.sample_identity(0, i).attributes for i in range(200)])
    assert set(np.unique(attrs)) <= {0, 1}
    assert (attrs[:, :3].sum(1) <= 1).all(), "hair colour attributes are one-hot or none"
    for j in range(5):  # every attribute occurs both ways
        assert 0.05 < attrs[:, j].mean() < 0.95


def test_render_is_order_independent():
    idn0, idn1 = synthetic.sample_identity(1, 0, 0), synthetic.sample_identity(1, 1, 2)
    a = synthetic.render_video(1, 10, idn0, 0, "print", 2, 24)
    b = synthetic.render_video(1, 11, idn1, "phone", 2, 2, 24)
    b2 = synthetic.render_video(1, 11, idn1, "phone", 2, 2, 24)
    a2 = synthetic.render_video(1, 10, idn0, 0, "print", 2, 24)
    assert a.dtype == np.uint8 and a.shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)


def test_render_256():
    idn = synthetic.sample_identity(0, 3, 1)
    synthetic.render_video(0, 0, idn, 1, 0, 1, 256)  # warm caches
    for atk in range(4):
        v = synthetic.render_video(0, 1 + atk, idn, 1, atk, 1, 256)
        assert v.shape == (1, 256, 256, 3) and v.dtype == np.uint8
        assert 20 < v.mean() < 235 and v.std() > 10, ATTACK_TYPES[atk]


# --------------------------------------------------------------------------- builder


def test_deterministic_builds(tmp_path, capsys):
    b1 = prepare_synthetic_fas(str(tmp_path / "a"), seed=3, **TINY)
    b2 = prepare_synthetic_fas(str(tmp_path / "b"), seed=3, **TINY)
    b3 = prepare_synthetic_fas(str(tmp_path / "c"), seed=4, **TINY)
    for split in ("train", "test"):
        x1, x2, x3 = _load(b1, split), _load(b2, split), _load(b3, split)
        for k in x1:
            np.testing.assert_array_equal(x1[k], x2[k])
        assert x1["image"].tobytes() == x2["image"].tobytes()
        assert not np.array_equal(x1["image"], x3["image"])
        np.testing.assert_array_equal(x1["label"], x3["label"])  # same plan, other pixels
    # second call: no rebuild, just opens the files
    capsys.readouterr()
    again = prepare_synthetic_fas(str(tmp_path / "a"), seed=3, **TINY)
    assert "building" not in capsys.readouterr().out
    assert again.is_prepared()
    np.testing.assert_array_equal(_load(again, "test")["image"], _load(b1, "test")["image"])


def test_interrupted_build_recovers(tmp_path, monkeypatch):
    data_dir = str(tmp_path)
    cfg = SyntheticFasConfig(seed=5, **TINY)
    real = benchmark.render_video
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(benchmark, "render_video", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare_synthetic_fas(data_dir, seed=5, **TINY)
    monkeypatch.setattr(benchmark, "render_video", real)
    config_dir = os.path.join(data_dir, "synthetic_fas", cfg.name)
    assert not os.path.exists(os.path.join(config_dir, "1.0.0")), "no half-written dataset"
    # a build killed hard leaves a temporary directory behind: it is cleaned up
    os.makedirs(os.path.join(config_dir, "incomplete.ABC123_1.0.0"))
    builder = prepare_synthetic_fas(data_dir, seed=5, **TINY)
    assert sorted(os.listdir(config_dir)) == ["1.0.0"]
    n = len(dataset_plan(cfg)) * cfg.frames_per_video
    assert len(builder.as_data_source(split="train")) + len(builder.as_data_source(split="test")) == n


def test_tfds_data_source_by_config(main_ds):
    import tensorflow_datasets as tfds

    builder, train, _ = main_ds
    src = tfds.data_source("synthetic_fas", split="train", data_dir=os.path.dirname(
        os.path.dirname(os.path.dirname(os.fspath(builder.data_path)))),
        builder_kwargs={"config": builder.builder_config}, download=False)
    assert len(src) == len(train["label"])
    rec = src[0]
    assert rec["image"].shape == (SIZE, SIZE, 3) and rec["image"].dtype == np.uint8
    assert rec["attributes"].shape == (5,)
    md = builder.info.metadata
    assert list(md["domains"]) == list(DOMAINS)
    assert list(md["attack_types"]) == list(ATTACK_TYPES)
    assert list(md["attributes"]) == list(ATTRIBUTES)


def test_labels_and_splits(main_ds):
    builder, train, test = main_ds
    cfg = builder.builder_config
    T = cfg.frames_per_video
    both = {k: np.concatenate([train[k], test[k]]) for k in train}
    split = np.array(["train"] * len(train["label"]) + ["test"] * len(test["label"]))
    assert ((both["label"] == 1) == (both["attack_type"] == 0)).all()
    assert set(np.unique(both["attributes"])) <= {0, 1}
    for d, p in enumerate(DOMAIN_PARAMS):
        for s in ("train", "test"):
            m = (both["domain"] == d) & (split == s)
            assert set(both["label"][m]) == {0, 1}
            assert set(both["attack_type"][m]) == {0, *p.attack_mix}
    tr_ids, te_ids = set(train["identity"]), set(test["identity"])
    assert not tr_ids & te_ids, "subject-disjoint splits"
    assert len(tr_ids) == 4 * cfg.train_identities_per_domain
    assert len(te_ids) == 4 * cfg.test_identities_per_domain
    for i in tr_ids | te_ids:  # an identity lives in one domain, with fixed attributes
        m = both["identity"] == i
        assert len(set(both["domain"][m])) == 1
        assert (both["attributes"][m] == both["attributes"][m][0]).all()
    vids = np.unique(both["video_id"])
    assert len(vids) == len(dataset_plan(cfg)) and len(both["label"]) == len(vids) * T
    for v in vids:
        m = both["video_id"] == v
        assert sorted(both["frame_index"][m]) == list(range(T))
        for k in ("identity", "domain", "label", "attack_type"):
            assert len(set(both[k][m])) == 1
        assert len(set(split[m])) == 1


def test_frames_of_a_video_are_similar(main_ds):
    _, train, _ = main_ds
    img = train["image"].astype(np.float32)
    f0 = train["frame_index"] == 0
    f1 = train["frame_index"] == 1
    within = np.abs(img[f0] - img[f1]).mean((1, 2, 3))  # same video, consecutive frames
    assert (within > 0.5).all(), "frames differ (pose / expression / noise)"
    a = img[f0]
    dom, atk, ident = train["domain"][f0], train["attack_type"][f0], train["identity"][f0]
    between = []
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            if dom[i] == dom[j] and atk[i] == atk[j] and ident[i] != ident[j]:
                between.append(np.abs(a[i] - a[j]).mean())
    assert np.median(within) < 0.5 * np.median(between), (np.median(within), np.median(between))


def test_domain_is_a_strong_signal(main_ds):
    _, train, test = main_ds
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(_features(train["image"]), train["domain"])
    acc = (clf.predict(_features(test["image"])) == test["domain"]).mean()  # held-out subjects
    assert acc > 0.8, acc  # chance: 0.25


def test_live_vs_spoof_is_learnable_in_domain(main_ds):
    _, train, test = main_ds
    onehot = lambda d: np.eye(4)[d]  # noqa: E731
    xtr = np.concatenate([_features(train["image"]), onehot(train["domain"])], 1)
    xte = np.concatenate([_features(test["image"]), onehot(test["domain"])], 1)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    clf.fit(xtr, train["label"])
    p, y = clf.predict(xte), test["label"]
    hter = 0.5 * ((p[y == 1] == 0).mean() + (p[y == 0] == 1).mean())
    assert hter < 0.35, hter  # chance: 0.5
