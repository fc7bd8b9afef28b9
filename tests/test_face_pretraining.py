"""Backbones pre-trained on the face corpus: training, the cache, resuming, and runs that start
from them (a KDFAS ViT, DTDA's ResNet-18 encoder).

Tiny shapes (2-block ViTs, a width-4 ResNet-18, 32 px faces, 5 + 3 people, 16 steps): one
shared ViT pre-training (`pretrained` fixture) serves the loss, loading, cache and run tests.
"""

import copy
import json
import os
import shutil

import jax
import numpy as np
import pytest

from dtda_jax import config as config_lib
from dtda_jax import train
from dtda_jax.core.loop import StopAt
from dtda_jax.core.sharding import make_mesh
from dtda_jax.core.state import image_model_init, init_state, rng_key
from dtda_jax.methods.dtda import config as dtda_config
from dtda_jax.methods.kdfas import config as kdfas_config
from dtda_jax.methods.kdfas import stages
from dtda_jax.teachers import pretraining
from dtda_jax.teachers.settings import face_pretraining_config
from dtda_jax.weights import store
from tests.conftest import tiny_config
from tests.test_kdfas import tiny_kdfas_config
from tests.test_teacher_training import fast_compile


def tiny_pretraining():
    s = face_pretraining_config()
    s.corpus.update(dict(train_identities=5, heldout_identities=3, videos_per_identity=2, frames_per_video=2))
    s.update(dict(steps=16, batch_size=8, warmup_steps=2, learning_rate=1e-2, log_every=8, checkpoint_every=8))
    s.eval.batch_size = 16
    return s


def pretraining_config(data_dir, cache, variant="kd_student"):
    config = tiny_kdfas_config(data_dir, cache / "kdfas_teachers", variant)
    kdfas_config.use_face_pretraining(config, tiny_pretraining())
    config.kdfas.pretrained_dir = str(cache)
    return config


def student_target(config):
    (target,) = stages.face_pretraining_targets(config)
    assert target.field == "kdfas.student.init_checkpoint"
    return target


@pytest.fixture(scope="module")
def pretrained(data_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("pretrained")
    config = pretraining_config(data_dir, cache)
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        fast_compile(mp)
        path = pretraining.ensure_pretrained(config, student_target(config), log=lines.append)
    return config, cache, path, lines


def _report(path):
    with open(path + ".report.json") as f:
        return json.load(f)


def test_pretraining_lowers_both_losses_and_reports_quality(pretrained):
    _, _, path, lines = pretrained
    history = _report(path)["history"]
    assert [h["step"] for h in history] == list(range(1, 17))
    # Both heads learn (the attribute BCE starts near its floor, the majority rates: it drops less).
    for key, factor in (("loss_identity", 0.9), ("loss_attributes", 0.95)):
        values = [h[key] for h in history]
        assert np.mean(values[-3:]) < factor * np.mean(values[:3]), (key, values)
    for h in history:  # L = ArcFace + 1.0 x attribute BCE
        assert h["loss"] == pytest.approx(h["loss_identity"] + h["loss_attributes"], rel=1e-5)
    quality = store.read_manifest(path)["quality"]
    for split in ("heldout", "benchmark_cameras"):
        for init in ("trained", "random_init"):
            q = quality[split][init]
            assert 0 <= q["verification"]["auc"] <= 1 and len(q["attributes"]["accuracy"]) == 5
    assert any("[pretrain] step 16/16" in line for line in lines)
    assert any(line.startswith("[pretrain] vit2x8p8_in32_faces on held-out people") for line in lines)


def test_pretrained_vit_initialises_kdfas_like_a_converted_one(pretrained):
    config, _, path, _ = pretrained
    manifest = store.check_converted(path, store.KIND_VIT)
    assert manifest["architecture"] == {"patch_size": 8, "width": 8, "depth": 2, "num_heads": 2, "mlp_dim": 32,
                                        "image_size": 32}  # what tools/convert_vit.py writes
    saved, _ = store.load_converted(path, None, kind=store.KIND_VIT)
    assert "head" not in saved["params"]  # attribute logits are not live/spoof
    config = copy.deepcopy(config)
    config.kdfas.student.init_checkpoint = path
    student, tx, _ = stages.student_and_optimizer(config)
    mesh = make_mesh(1)
    fresh = init_state(image_model_init(student, 32), tx, rng_key(0), mesh)
    loaded = stages.vit_init(config, "student", tx, mesh)(fresh)
    for key, value in saved["params"].items():
        for a, b in zip(jax.tree.leaves(loaded.params[key]), jax.tree.leaves(value), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(loaded.params["head"]), jax.tree.leaves(fresh.params["head"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_second_call_reuses_the_cache_and_names_follow_the_settings(pretrained, monkeypatch):
    config, _, path, _ = pretrained

    def no_training(*args, **kwargs):
        raise AssertionError("pre-trained again although the cache holds the ViT")

    monkeypatch.setattr(pretraining, "pretrain", no_training)
    lines = []
    assert pretraining.ensure_pretrained(config, student_target(config), log=lines.append) == path
    assert lines == [f"[pretrain] reusing the pre-trained vit2x8p8_in32_faces {path}"]

    b = pretraining.vit_backbone(config.kdfas.student, 32)
    s = tiny_pretraining()
    assert pretraining.cache_name(b, s) == os.path.basename(path)
    s.eval.folds, s.checkpoint_every = 5, 3  # reporting and checkpointing change no weight
    assert pretraining.cache_name(b, s) == os.path.basename(path)
    for field, value in (("steps", 17), ("arcface_margin", 0.2), ("seed", 1), ("corpus.capture", "benchmark_cameras")):
        other = tiny_pretraining()
        config_lib.set_field(other, field, value)
        assert pretraining.cache_name(b, other) != os.path.basename(path), field
    assert pretraining.cache_name(pretraining.vit_backbone(config.kdfas.teacher, 32), s) != os.path.basename(path)
    assert pretraining.cache_name(pretraining.resnet18_backbone(4, 32), s).startswith("resnet18_w4_in32_faces_")


def test_interrupted_pretraining_resumes_to_the_same_vit(pretrained, tmp_path, monkeypatch):
    config, cache, path, _ = pretrained
    shutil.copytree(cache / "corpus", tmp_path / "corpus")  # rendered once
    config = copy.deepcopy(config)
    config.kdfas.pretrained_dir = str(tmp_path)
    fast_compile(monkeypatch)
    lines = []
    assert pretraining.ensure_pretrained(config, student_target(config), log=lines.append, stop=StopAt(5)) is None
    name = os.path.basename(path)
    assert os.listdir(tmp_path / f"{name}.training" / "checkpoints") == ["5"] and not (tmp_path / name).exists()
    lines.clear()
    resumed = pretraining.ensure_pretrained(config, student_target(config), log=lines.append)
    assert "[pretrain] resumed from step 5" in lines and not (tmp_path / f"{name}.training").exists()
    a, _ = store.load_converted(path, None, kind=store.KIND_VIT)
    b, _ = store.load_converted(resumed, None, kind=store.KIND_VIT)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    assert _report(resumed)["history"] == _report(path)["history"]


def test_a_kdfas_run_starts_from_the_pretrained_vit(pretrained, tmp_path, capsys):
    config, cache, path, _ = pretrained
    results = train.train_and_evaluate(pretraining_config(config.data.data_dir, cache), str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert f"[pretrain] reusing the pre-trained vit2x8p8_in32_faces {path}" in out
    assert f"[student] initialised from {path}" in out
    assert results["student"]["architecture"]["init_checkpoint"] == path
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["kdfas"]["student"]["init_checkpoint"] == ""  # found again from the settings on resume
    assert recorded["kdfas"]["pretrain_on_faces"] is True

    # Only the ViTs a variant trains are pre-trained; the teacher's cache key follows its init.
    assert stages.roles_in_use(pretraining_config(config.data.data_dir, cache, "kd_student")) == ("student",)
    assert stages.roles_in_use(pretraining_config(config.data.data_dir, cache, "kd_teacher")) == ("teacher",)
    assert stages.roles_in_use(pretraining_config(config.data.data_dir, cache, "kd_decision")) == ("teacher", "student")
    teacher_config = pretraining_config(config.data.data_dir, cache, "kdfas")
    random_init = stages.teacher_directory(teacher_config)
    teacher_config.kdfas.teacher.init_checkpoint = path  # any converted ViT: its sha256 is in the key
    assert stages.teacher_settings(teacher_config)["teacher_init_sha256"] == store.read_manifest(path)["source_sha256"]
    assert stages.teacher_directory(teacher_config) != random_init


@pytest.mark.parametrize("field, value, message", [
    ("kdfas.face_pretraining.steps", 0, "steps must be >= 1"),
    ("kdfas.face_pretraining.arcface_margin", 2.0, "arcface_margin in"),
    ("kdfas.face_pretraining.corpus.image_size", 48, "corpus.image_size must be 0: the corpus is rendered at"),
    ("kdfas.face_pretraining.corpus.capture", "webcam", "capture"),
])
def test_bad_pretraining_settings_are_named(field, value, message):
    for module, section in ((kdfas_config, "kdfas"), (dtda_config, "model")):
        config = module.default_config()
        module.use_face_pretraining(config)
        config_lib.set_field(config, field.replace("kdfas.", section + ".", 1), value)
        with pytest.raises(config_lib.ConfigError, match=f"config.{section}.face_pretraining: .*{message}"):
            config_lib.validate_config(config)
        missing = module.default_config()
        missing[section].pretrain_on_faces = True
        with pytest.raises(config_lib.ConfigError, match="pretrain_on_faces needs the pre-training settings"):
            config_lib.validate_config(missing)


def test_a_dtda_run_starts_from_the_face_pretrained_encoder(data_dir, tmp_path, capsys, monkeypatch):
    """The ResNet-18 backbone: pre-trained, saved as tools/convert_resnet18.py saves ImageNet
    weights, and loaded by the student's encoder initialisation; results.json says so."""
    config = tiny_config(data_dir, "baseline")
    dtda_config.use_face_pretraining(config, tiny_pretraining())
    config.model.pretrained_dir = str(tmp_path / "cache")
    fast_compile(monkeypatch)
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    out = capsys.readouterr().out
    (path,) = [str(p) for p in (tmp_path / "cache").iterdir() if p.name.startswith("resnet18_w4_in32_faces_")
               and p.is_dir()]
    assert f"[model] encoder initialised from {path} (source {path}.report.json" in out
    manifest = store.check_converted(path, store.KIND_RESNET18)
    assert manifest["architecture"] == {"width": 4}
    saved, _ = store.load_converted(path, None, kind=store.KIND_RESNET18)
    assert set(saved) == {"params", "batch_stats"} and set(saved["params"]) == {"encoder"}
    history = _report(path)["history"]
    assert np.mean([h["loss_identity"] for h in history[-3:]]) < 0.9 * np.mean([h["loss_identity"] for h in history[:3]])
    init = results["student_encoder_init"]
    assert init["origin"] == path and init["trained_by"]["tool"] == "dtda_jax.teachers.pretraining"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["init_checkpoint"] == ""


def test_the_tool_names_a_config_without_pretraining_and_a_wrong_field(capsys):
    assert pretraining.main(["--config=configs/synthetic.py"]) == 2
    assert "pre-trains nothing on faces (its pretrain_on_faces is off" in capsys.readouterr().err
    assert pretraining.main(["--config=configs/kdfas_synthetic_to_kiosk.py", "--set", "kdfas.face_pretraining.nope=1"]) == 2
    assert "kdfas.face_pretraining.nope" in capsys.readouterr().err
