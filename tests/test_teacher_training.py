"""The project's own teachers: face corpus, ArcFace / attribute training, quality, checkpoints.

Tiny shapes throughout (r18 at width 4 and a 4-channel StarGAN D on 32 px faces, a few
steps): one shared training run (`trained` fixture) serves the loss, loading, cache and
report tests.
"""

import dataclasses
import json
import math
import os
import shutil

import jax
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dtda_jax.core import artifacts, xla_cpu
from dtda_jax.core.loop import StopAt
from dtda_jax.data.synthetic import benchmark as synthetic_fas
from dtda_jax.data.synthetic import face_corpus as fc
from dtda_jax.evaluation import face_quality
from dtda_jax.methods.dtda import stages
from dtda_jax.teachers import frozen as teachers
from dtda_jax.teachers import training as tt
from dtda_jax.weights import store
from tests.conftest import TINY_DATA, tiny_config

TINY_CORPUS = fc.CorpusSettings(image_size=32, seed=0, train_identities=5, heldout_identities=3,
                                videos_per_identity=2, frames_per_video=2, capture="random")


def tiny_settings():
    s = tt.default_teacher_training_config()
    s.corpus.update(dict(image_size=0, train_identities=5, heldout_identities=3,
                         videos_per_identity=2, frames_per_video=2))
    s.fr.update(dict(steps=16, batch_size=8, warmup_steps=2, learning_rate=3e-3))
    s.fa.update(dict(steps=16, batch_size=8, warmup_steps=2, learning_rate=3e-3))
    s.eval.batch_size = 16
    s.log_every = 8
    return s


# ------------------------------------------------------------------------------------ ArcFace

def test_arcface_logits_match_hand_computed_values_in_both_branches():
    s, m = 64.0, 0.5
    embeddings = np.array([[1.0, 0.0, 0.0], [-1.0, -0.5, 0.0]], np.float32)
    weight = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    labels = np.array([0, 0])
    got = np.asarray(tt.arcface_logits(embeddings, weight, labels, s, m))

    # Row 0: theta = pi/4, theta + m < pi: cos(theta + m).
    # Row 1: cos theta = -1.5 / (sqrt(1.25) sqrt(2)) = -0.94868, theta = 2.82 > pi - m:
    # insightface's fallback cos theta - sin(pi - m) * m (not cos(theta + m) = -0.98399).
    c1 = -1.5 / (math.sqrt(1.25) * math.sqrt(2.0))
    want = np.array([
        [s * math.cos(math.pi / 4 + m), 0.0, 0.0],
        [s * (c1 - math.sin(math.pi - m) * m), s * -0.5 / math.sqrt(1.25), 0.0],
    ])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert abs(want[1, 0] - s * math.cos(math.acos(c1) + m)) > 5.0  # the branch matters


def test_arcface_loss_gradient_is_finite_when_an_embedding_sits_on_its_centre():
    weight = np.eye(3, dtype=np.float32)
    embeddings = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)  # cos = 1 exactly
    grads = jax.jit(jax.grad(lambda e: tt.arcface_loss(e, weight, np.array([0, 1]))[0]))(embeddings)
    assert np.all(np.isfinite(np.asarray(grads)))


def test_batch_indices_are_seeded_epochs():
    idx = tt.batch_indices(10, 3, 7, seed=1)
    assert idx.shape == (7, 3)
    for epoch in range(2):  # 3 full batches per epoch: 9 distinct images each
        assert len(set(idx[3 * epoch:3 * epoch + 3].ravel())) == 9
    np.testing.assert_array_equal(idx, tt.batch_indices(10, 3, 7, seed=1))
    assert not np.array_equal(idx, tt.batch_indices(10, 3, 7, seed=2))
    with pytest.raises(ValueError, match="exceeds the 2 training images"):
        tt.batch_indices(2, 3, 1, seed=0)


# ------------------------------------------------------------------------------------ corpus

def test_corpus_is_deterministic_and_disjoint_from_the_benchmark():
    a = fc.render_face_corpus(TINY_CORPUS, log=lambda _: None)
    b = fc.render_face_corpus(TINY_CORPUS, log=lambda _: None)
    for split in fc.SPLITS:
        for field in ("images", "identity", "attributes", "domain", "video_id"):
            np.testing.assert_array_equal(getattr(a[split], field), getattr(b[split], field))
    train, held, cams = a["train"], a["heldout"], a["heldout_cameras"]
    assert len(train) == 5 * 4 and len(held) == 3 * 4 and len(cams) == 3 * 4 * 2
    assert [len(a[s]) for s in fc.SPLITS] == [TINY_CORPUS.num_frames(s) for s in fc.SPLITS]
    assert train.images.shape == (20, 32, 32, 3) and train.images.dtype == np.uint8
    assert not set(train.identity) & set(held.identity) and set(cams.identity) == set(held.identity)
    # Random capture: no benchmark camera in training; the held-out people through all four.
    assert set(np.r_[train.domain, held.domain]) == {fc.RANDOM_CAPTURE}
    assert sorted(cams.domain[::2]) == sorted(np.tile(np.arange(4), 3))
    labels, k = train.class_labels()
    assert k == 5 and set(labels) == set(range(5))
    cameras = fc.render_face_corpus(dataclasses.replace(TINY_CORPUS, capture="benchmark_cameras"),
                                    log=lambda _: None)
    assert set(np.unique(np.r_[cameras["train"].domain, cameras["heldout"].domain])) == {0, 1, 2, 3}
    np.testing.assert_array_equal(cameras["heldout_cameras"].images, cams.images)  # the same people

    ids = np.r_[train.identity, held.identity]
    videos = np.r_[train.video_id, held.video_id, cams.video_id]
    assert len(set(videos)) == len(set(train.video_id)) + len(set(held.video_id)) + len(set(cams.video_id))
    for cfg in (synthetic_fas.SyntheticFasConfig(image_size=64, seed=0),
                synthetic_fas.SyntheticFasConfig(image_size=32, seed=0, **TINY_DATA)):
        plan = synthetic_fas.dataset_plan(cfg)
        assert not set(ids) & {v.identity for v in plan}
        assert not set(videos) & {v.video_id for v in plan}
        fc.check_disjoint_from_benchmark(ids, videos, plan)
    clash = [synthetic_fas.VideoSpec(0, int(ids[0]), 0, "train", 0)]
    with pytest.raises(ValueError, match="shares identity ids"):
        fc.check_disjoint_from_benchmark(ids, videos, clash)


def test_corpus_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    splits, path = fc.load_face_corpus(str(tmp_path), TINY_CORPUS, log=lambda _: None)
    assert os.path.basename(path) == fc.corpus_filename(TINY_CORPUS) and os.listdir(tmp_path) == [
        os.path.basename(path)]

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again although the cache file exists")

    monkeypatch.setattr(fc, "render_face_corpus", no_render)
    again, _ = fc.load_face_corpus(str(tmp_path), TINY_CORPUS)
    np.testing.assert_array_equal(again["heldout"].images, splits["heldout"].images)

    # A write that fails half-way leaves neither the file nor its temporary behind.
    other = fc.CorpusSettings(**{**TINY_CORPUS.__dict__, "seed": 1, "train_identities": 2,
                                 "heldout_identities": 2, "videos_per_identity": 1})
    monkeypatch.undo()

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(fc.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        fc.load_face_corpus(str(tmp_path), other, log=lambda _: None)
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_random_capture_pipelines_are_new_cameras():
    """Every random pipeline differs from each benchmark domain at least as required (about as
    much as the domains differ from each other), from the others, and per video id only."""
    from dtda_jax.data.synthetic import domains as D

    plan = [v for v in fc.corpus_plan(TINY_CORPUS) if v.domain == fc.RANDOM_CAPTURE]
    pipelines = [fc.video_pipeline(TINY_CORPUS, v) for v in plan]
    for p in pipelines:
        assert min(D.capture_distance(p, d) for d in D.DOMAIN_PARAMS) >= D.MIN_CAPTURE_DISTANCE
    between_domains = [D.capture_distance(a, b) for i, a in enumerate(D.DOMAIN_PARAMS) for b in D.DOMAIN_PARAMS[i + 1:]]
    assert D.MIN_CAPTURE_DISTANCE < min(between_domains)
    assert len({p.jpeg_quality for p in pipelines}) > len(pipelines) // 2
    assert fc.video_pipeline(TINY_CORPUS, plan[3]) == pipelines[3]
    low, high = D.capture_ranges()
    for p in pipelines:
        v = np.concatenate([np.atleast_1d(getattr(p, f)) for f in D.CAPTURE_FIELDS]).astype(float)
        assert np.all((v >= low - 0.5) & (v <= high + 0.5))  # jpeg quality is rounded
    assert fc.video_pipeline(TINY_CORPUS, fc.corpus_plan(TINY_CORPUS)[-1]) is None  # a benchmark camera


def test_corpus_settings_errors_are_clear():
    with pytest.raises(ValueError, match="capture must be one of"):
        fc.CorpusSettings(capture="webcam")
    with pytest.raises(ValueError, match="heldout_identities must be >= 2"):
        fc.CorpusSettings(heldout_identities=1)
    with pytest.raises(ValueError, match="at least 2 images"):
        fc.CorpusSettings(videos_per_identity=1, frames_per_video=1)


# ------------------------------------------------------------------------------------ metrics

def test_verification_metrics_match_sklearn_on_a_toy_set():
    rng = np.random.default_rng(0)
    identity = np.repeat(np.arange(4), 3)
    centres = rng.normal(size=(4, 8))
    emb = centres[identity] + 0.9 * rng.normal(size=(12, 8))
    out = face_quality.verification_metrics(emb, identity, folds=2)

    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(12, 1)
    same = (identity[i] == identity[j]).astype(int)
    cos = (e[i] * e[j]).sum(1)
    assert out["genuine_pairs"] == 4 * 3 and out["impostor_pairs"] == 66 - 12
    assert out["auc"] == pytest.approx(roc_auc_score(same, cos), abs=1e-12)
    assert 0.5 < out["auc"] < 1.0  # informative but imperfect: a real test of the pairing
    assert out["tar_at_far_1e-02"] is None and out["tar_at_far_1e-03"] is None  # 54 impostors

    capped = face_quality.verification_metrics(emb, identity, max_negative_pairs=20, folds=2)
    assert capped["impostor_pairs"] == 20 and capped["2fold_pairs"] == 2 * 12


def test_best_threshold_accuracy_matches_brute_force_and_folds_generalise():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=40), 1)  # ties on purpose
    labels = (scores + rng.normal(scale=0.8, size=40) > 0).astype(int)
    t, acc = face_quality.best_threshold_accuracy(scores, labels)
    brute = max(np.mean((scores >= c) == (labels == 1)) for c in np.r_[scores, np.inf])
    assert acc == pytest.approx(brute) and np.mean((scores >= t) == (labels == 1)) == pytest.approx(acc)

    separable = face_quality.kfold_threshold_accuracy(np.r_[np.ones(20), -np.ones(20)],
                                                      np.r_[np.ones(20), np.zeros(20)], folds=10)
    assert separable["accuracy"] == 1.0
    noise = face_quality.kfold_threshold_accuracy(rng.normal(size=400), rng.integers(0, 2, 400), folds=10)
    assert 0.35 < noise["accuracy"] < 0.65


def test_attribute_metrics_and_majority_floor():
    logits = np.array([[2.0, -1.0], [-1.0, -1.0], [1.0, 3.0], [-2.0, 1.0]])
    attrs = np.array([[1, 0], [0, 0], [0, 1], [0, 1]])
    reference = np.array([[1, 1], [1, 1], [0, 1]])  # training labels: majority a=1, b=1
    out = face_quality.attribute_metrics(logits, attrs, ["a", "b"], reference_attributes=reference)
    assert out["accuracy"] == {"a": 0.75, "b": 1.0} and out["mean_accuracy"] == 0.875
    assert out["auc"]["b"] == 1.0 and out["majority_accuracy"] == {"a": 0.25, "b": 0.5}


# ------------------------------------------------------------------------------------ training

def fast_compile(mp):
    """XLA:CPU without backend optimisation: compiles the tiny training steps ~25% faster; they
    run in milliseconds either way."""
    mp.setattr(xla_cpu, "compiler_options",
               lambda options: {**options, "xla_backend_optimization_level": 0})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("teachers")
    config = tiny_config(cache / "no_benchmark_needed")
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        fast_compile(mp)
        paths = tt.ensure_trained_teachers(config, str(cache), tiny_settings(), log=lines.append)
    return config, str(cache), paths, lines


def _report(path):
    with open(path + ".report.json") as f:
        return json.load(f)


def test_tiny_training_lowers_both_losses(trained):
    _, _, paths, lines = trained
    for name in ("fr", "fa"):
        losses = [h["loss"] for h in _report(paths[name])["history"]]
        assert len(losses) == 16
        assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), (name, losses)
    assert any("[teacher fr] step 16/16" in line for line in lines)


def test_trained_teachers_load_like_converted_ones(trained, capsys):
    config, _, paths, _ = trained
    config = tiny_config("unused")
    config.teachers.fr_checkpoint, config.teachers.fa_checkpoint = paths["fr"], paths["fa"]
    made = stages.make_teachers(config)
    loaded = teachers.init_teacher_variables(made, jax.random.key(0), config.teachers)
    out = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" not in out and out.count("loaded converted") == 2
    for name, kind in teachers.TEACHER_KINDS.items():
        manifest = store.read_manifest(paths[name])
        assert manifest["kind"] == kind
        assert manifest["source_sha256"] == artifacts.file_sha256(paths[name] + ".report.json")
        assert manifest["quality"] == _report(paths[name])["quality"]
        assert manifest["trained_by"]["tool"] == "dtda_jax.teachers.training"
        assert jax.tree.structure(loaded[name]) == jax.tree.structure(
            jax.eval_shape(made[name].init, jax.random.key(0)))
        direct, _ = store.load_converted(paths[name], None, kind=kind)
        for a, b in zip(jax.tree.leaves(loaded[name]), jax.tree.leaves(direct), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert store.read_manifest(paths["fr"])["architecture"] == {
        "arch": "r18", "width": 4, "num_features": 512, "input_size": 32}
    assert store.read_manifest(paths["fa"])["architecture"] == {
        "image_size": 32, "conv_dim": 4, "c_dim": 5, "repeat_num": 5}
    fr_quality = store.read_manifest(paths["fr"])["quality"]
    assert set(fr_quality) == {"protocol", "trained", "random_init", "benchmark_cameras"}
    assert 0.0 <= fr_quality["trained"]["auc"] <= 1.0
    assert set(fr_quality["benchmark_cameras"]) == {"protocol", "trained", "random_init"}

    config.teachers.fr_width = 8
    with pytest.raises(ValueError, match=r"config.teachers.fr_width=4 \(config has 8\)"):
        teachers.init_teacher_variables(stages.make_teachers(config), jax.random.key(0), config.teachers)


def test_fa_trains_the_attribute_path_and_leaves_the_real_fake_head_at_init(trained):
    config, _, paths, _ = trained
    teacher = tt.teacher_module(config, "fa")
    init = tt._init_variables(teacher, tt.init_key(tiny_settings().seed, 2))["params"]
    saved, _ = store.load_converted(paths["fa"], None, kind=teachers.TEACHER_KINDS["fa"])
    np.testing.assert_array_equal(np.asarray(saved["params"]["conv1"]["kernel"]),
                                  np.asarray(init["conv1"]["kernel"]))
    for name in ("main_0", "conv2"):
        assert not np.allclose(saved["params"][name]["kernel"], init[name]["kernel"])


def test_second_call_reuses_the_cache_and_names_follow_the_architecture(trained, monkeypatch):
    config, cache, paths, _ = trained

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the cache holds the teacher")

    monkeypatch.setattr(tt, "train_teacher", no_training)
    stamp = os.path.getmtime(os.path.join(paths["fr"], "manifest.json"))
    lines = []
    assert tt.ensure_trained_teachers(config, cache, tiny_settings(), log=lines.append) == paths
    assert sum("reusing" in line for line in lines) == 2
    assert os.path.getmtime(os.path.join(paths["fr"], "manifest.json")) == stamp

    s = tiny_settings()
    other = tiny_config("elsewhere", variant="baseline")  # data dir and variant do not matter
    other.train.num_steps = 123
    assert tt.teacher_cache_name(other, "fr", s) == os.path.basename(paths["fr"])
    other.teachers.fr_width = 8
    assert tt.teacher_cache_name(other, "fr", s) != os.path.basename(paths["fr"])
    assert tt.teacher_cache_name(other, "fa", s) == os.path.basename(paths["fa"])
    s.fa.steps = 3
    assert tt.teacher_cache_name(other, "fa", s) != os.path.basename(paths["fa"])


def test_interrupted_training_resumes_to_the_same_teacher(trained, tmp_path, monkeypatch):
    """The own teachers train through the stage loop: stopped after 5 of 16 steps, the next call
    resumes from that checkpoint and saves the teacher an uninterrupted training saved."""
    config, cache, paths, _ = trained
    shutil.copytree(os.path.join(cache, "corpus"), tmp_path / "corpus")  # rendered once
    fast_compile(monkeypatch)
    lines = []
    assert tt.ensure_trained_teachers(config, str(tmp_path), tiny_settings(), names=("fr",),
                                      log=lines.append, stop=StopAt(5)) is None
    name = os.path.basename(paths["fr"])
    assert any("[teacher fr] step 5/16" in line for line in lines)
    assert os.listdir(tmp_path / f"{name}.training" / "checkpoints") == ["5"]
    assert not (tmp_path / name).exists()
    lines.clear()
    resumed = tt.ensure_trained_teachers(config, str(tmp_path), tiny_settings(), names=("fr",), log=lines.append)
    assert "[teacher fr] resumed from step 5" in lines
    assert not (tmp_path / f"{name}.training").exists()  # removed once the teacher is saved
    a, _ = store.load_converted(paths["fr"], None, kind=teachers.TEACHER_KINDS["fr"])
    b, _ = store.load_converted(resumed["fr"], None, kind=teachers.TEACHER_KINDS["fr"])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    assert [h["step"] for h in _report(resumed["fr"])["history"]] == list(range(1, 17))
    assert _report(resumed["fr"])["history"] == _report(paths["fr"])["history"]


def test_interrupted_save_leaves_no_checkpoint_and_the_next_call_trains(trained, monkeypatch):
    config, cache, _, _ = trained
    s = tiny_settings()
    s.seed = 1  # a new teacher to train, with the same compiled programs
    target = os.path.join(cache, tt.teacher_cache_name(config, "fa", s))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    fast_compile(monkeypatch)
    with monkeypatch.context() as mp:
        mp.setattr(store.os, "rename", crash)  # the checkpoint's final rename
        with pytest.raises(KeyboardInterrupt):
            tt.ensure_trained_teachers(config, cache, s, names=("fa",), log=lambda _: None)
    assert not os.path.exists(target)
    assert not [e for e in os.listdir(cache) if e.startswith(".")]  # no staging / temp files
    assert tt.ensure_trained_teachers(config, cache, s, names=("fa",), log=lambda _: None) == {"fa": target}
    store.check_converted(target, teachers.TEACHER_KINDS["fa"])


def test_settings_errors_and_overrides():
    s = tt.default_teacher_training_config()
    tt._apply_override(s, "fr.steps=7")
    tt._apply_override(s, "fa.learning_rate=0.01")
    assert s.fr.steps == 7 and s.fa.learning_rate == 0.01
    with pytest.raises(ValueError, match="unknown teacher training setting"):
        tt._apply_override(s, "fr.stepz=7")
    s.fr.optimizer = "lamb"
    with pytest.raises(ValueError, match="fr.optimizer must be one of"):
        tt.ensure_trained_teachers(tiny_config("x"), "unused", s)


def test_a_run_with_own_teachers_distils_from_the_cached_ones(trained, data_dir, tmp_path, capsys):
    """teachers.own_teachers: the run points its empty checkpoint fields at the trained
    teachers (here already cached, so nothing is trained), records their provenance and keeps
    the recorded config free of machine-specific paths."""
    from dtda_jax import train
    from dtda_jax.methods.dtda import config as dtda_config

    _, cache, paths, _ = trained
    config = tiny_config(data_dir)
    dtda_config.use_own_teachers(config, tiny_settings())
    config.teachers.own_teachers_dir = cache  # the run's programs are dtda_run's (tiny_config)
    workdir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        fast_compile(mp)
        mp.setattr(tt, "train_teacher", lambda *a, **k: pytest.fail("the cache holds both"))
        results = train.train_and_evaluate(config, str(workdir))
    out = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" not in out
    auc = _report(paths["fr"])["quality"]["trained"]["auc"]
    assert f"fr quality on held-out identities: verification AUC {auc:.3f}" in out
    for name in ("fr", "fa"):
        used = results["teachers"][name]
        assert used["origin"] == paths[name] and not used["random_init"]
        assert used["quality"] == _report(paths[name])["quality"]
        assert f"teacher {name} <- {paths[name]}" in out
    with open(workdir / "config.json") as f:
        recorded = json.load(f)["teachers"]
    assert recorded["fr_checkpoint"] == recorded["fa_checkpoint"] == ""
    assert recorded["own_teachers"] is True
