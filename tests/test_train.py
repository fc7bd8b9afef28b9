"""End-to-end behaviour of the training run on a tiny built-in benchmark.

Covers: a full DTDA run writes results and flags random teachers; resume after interruption
(in either stage) gives the same parameters as an uninterrupted run; the step gives the same
result on 1 and 2 devices; NaN stops the run naming the step; bad config values and a
missing dataset give clear errors.
"""

import json
import os
import pathlib
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dtda_jax import config as config_lib
from dtda_jax import train
from dtda_jax.config import records
from dtda_jax.core import loop, optim
from dtda_jax.core.sharding import check_batch_divisible, make_mesh, put_batch, replicated
from dtda_jax.core.state import image_model_init, init_state, rng_key
from dtda_jax.data import pipeline
from dtda_jax.methods.dtda import stages
from dtda_jax.teachers.frozen import init_teacher_variables
from tests.conftest import tiny_config


def latest_params(workdir, stage="student"):
    directory = os.path.join(workdir, "checkpoints", stage)
    step = ocp.CheckpointManager(directory).latest_step()
    with warnings.catch_warnings():  # no template on purpose: the raw saved arrays are compared
        warnings.filterwarnings("ignore", message="Sharding info not provided")
        tree = ocp.PyTreeCheckpointer().restore(os.path.join(directory, str(step), "state"))
    return step, tree


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_full_dtda_run_writes_results(dtda_run):
    workdir, results = dtda_run
    run = pathlib.Path(workdir)
    saved = json.loads((run / "results.json").read_text())
    assert saved["variant"] == "dtda"
    assert saved["teachers"]["fr"]["random_init"] and saved["teachers"]["fa"]["random_init"]
    reported = saved["reported"]
    assert 0.0 <= reported["hter"] <= 1.0 and 0.0 <= reported["auc"] <= 1.0
    assert reported["threshold_policy"] == "target_eer"
    assert saved["by_selection"]["last"]["step"] == 6
    assert results["reported"] == reported
    # Each checkpoint's bootstrap intervals over the videos, from its saved scores.
    from dtda_jax.evaluation import intervals

    assert set(saved["intervals"]) == set(saved["by_selection"])
    for selection in saved["by_selection"]:
        run_scores = intervals.saved_run_scores(workdir, saved, selection)
        paper, deployable = (intervals.video_interval(run_scores, c) for c in ("paper", "deployable"))
        assert saved["intervals"][selection] == {"auc": list(paper["auc"]), "hter_target_eer": list(paper["hter"]),
                                  "acer_source_val_threshold": list(deployable["hter"])}
    # The domain classifier was trained first, and the attack lowered its accuracy.
    dc = saved["domain_classifier"]
    assert dc["source_val_domain_acc_attacked"] <= dc["source_val_domain_acc_clean"]
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    student = [l for l in lines if l["stage"] == "student"]
    assert [l["step"] for l in student] == [2, 4, 6]
    assert {"loss", "loss_fas", "loss_fr", "loss_fa", "attack_linf_255"} <= set(student[0])
    assert all(abs(l["attack_linf_255"] - 4.0) < 1e-3 for l in student)
    assert os.listdir(run / "tensorboard")
    # Each evaluation's per-video scores are kept; they reproduce its AUC (scikit-learn).
    from sklearn.metrics import roc_auc_score

    assert sorted(os.listdir(run / "scores")) == ["step_0000003.npz", "step_0000006.npz"]
    with np.load(run / "scores" / "step_0000006.npz") as scores:
        assert roc_auc_score(scores["target_labels"], scores["target_scores"]) == pytest.approx(
            saved["by_selection"]["last"]["auc"], abs=1e-9)
        assert len(scores["target_labels"]) == reported["num_live"] + reported["num_spoof"]


def test_domain_adversarial_training_baseline(data_dir, tmp_path):
    """The "dat" variant trains a gradient-reversal domain head and no attack."""
    config = tiny_config(data_dir, "dat")
    config.train.num_steps, config.train.checkpoint_every, config.train.eval_every = 4, 2, 2
    train.train_and_evaluate(config, str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["variant"] == "dat" and saved["domain_classifier"] is None
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    student = [l for l in lines if l["stage"] == "student"]
    assert {"loss_domain", "domain_acc", "loss_fr", "loss_fa"} <= set(student[0])
    assert "attack_linf_255" not in student[0]
    for l in student:  # the total is Eq. 9 plus the weighted domain term
        expected = l["loss_fas"] + l["loss_fr"] + l["loss_fa"] + 0.1 * l["loss_domain"]
        assert l["loss"] == pytest.approx(expected, rel=1e-5)


def test_resume_equals_uninterrupted(data_dir, dtda_run, tmp_path):
    config = tiny_config(data_dir)
    straight = dtda_run[0]
    resumed = str(tmp_path / "resumed")
    # Interrupted once inside the domain-classifier stage and once inside the student stage.
    assert train.train_and_evaluate(config, resumed, stop_after=3) is None
    assert train.train_and_evaluate(config, resumed, stop_after=4 + 3) is None
    assert latest_params(resumed)[0] == 3
    train.train_and_evaluate(config, resumed)
    for stage in ("domain_classifier", "student"):
        step_a, a = latest_params(straight, stage)
        step_b, b = latest_params(resumed, stage)
        assert step_a == step_b
        assert_trees_close(a, b)
    straight = json.loads((pathlib.Path(straight) / "results.json").read_text())
    again = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert straight["reported"]["auc"] == pytest.approx(again["reported"]["auc"], abs=1e-6)


def test_same_seed_reproduces(data_dir, dtda_run, tmp_path):
    workdir, a = dtda_run
    b = train.train_and_evaluate(tiny_config(data_dir), str(tmp_path / "b"))
    assert a["reported"] == b["reported"]
    assert_trees_close(latest_params(workdir)[1], latest_params(str(tmp_path / "b"))[1], rtol=0, atol=0)


def test_step_independent_of_device_count(data_dir):
    assert jax.device_count() >= 2, "conftest sets two host devices"
    config = tiny_config(data_dir)
    config.method.use_domain_attack = False  # the attack is covered; keep the step small
    protocol = pipeline.load_protocol(config)
    iterator = pipeline.balanced_train_iterator(
        protocol.train, protocol.domain_names, 3, 2, seed=0, num_steps=2, flip=True,
        crop_padding=0.0625)
    batches = [next(iterator), next(iterator)]
    teachers = stages.make_teachers(config)
    frozen = init_teacher_variables(teachers, rng_key(2), config.teachers)
    student = stages.make_student(config, teachers)
    schedule = optim.learning_rate_schedule(config.optim.learning_rate, 2)
    tx = optim.make_optimizer("sgd", schedule, momentum=0.9, weight_decay=5e-4)
    finals = []
    for n in (1, 2):
        mesh = make_mesh(n)
        state = init_state(image_model_init(student, 32), tx, rng_key(0), mesh)
        step = stages.student_step(config, student, tx, schedule, teachers, None, mesh)
        fr = jax.device_put(frozen, replicated(mesh))
        for batch in batches:
            state, metrics = step(state, fr, put_batch(batch, mesh))
        if n == 2:
            assert len(state.params["cls_head"]["kernel"].sharding.device_set) == 2
        finals.append(jax.device_get(state))
    assert_trees_close(finals[0].params, finals[1].params, rtol=1e-5, atol=1e-5)
    assert_trees_close(finals[0].batch_stats, finals[1].batch_stats, rtol=1e-5, atol=1e-5)


def test_nan_loss_stops_naming_the_step(data_dir, tmp_path):
    config = tiny_config(data_dir, "baseline")
    config.optim.learning_rate = 1e30
    with pytest.raises(loop.NonFiniteLossError, match=r"at step \d+"):
        train.train_and_evaluate(config, str(tmp_path / "nan"))


def test_resume_with_other_config_is_refused(data_dir, tmp_path):
    config = tiny_config(data_dir, "baseline")
    train.train_and_evaluate(config, str(tmp_path / "run"), stop_after=2)
    config.optim.learning_rate = 0.5
    with pytest.raises(config_lib.ConfigError, match="optim.learning_rate"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_config_recorded_before_a_field_existed_still_resumes(data_dir, tmp_path):
    """A config.json without a field added later counts as that field's default."""
    config = tiny_config(data_dir, "dtda")
    recorded = json.loads(config.to_json())
    del recorded["method"]["use_grl_domain_head"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    (tmp_path / "checkpoints" / "student" / "3").mkdir(parents=True)  # a run that trained
    records.check_same_config(config, str(tmp_path))
    config.method.use_grl_domain_head = True
    with pytest.raises(config_lib.ConfigError, match="method.use_grl_domain_head: False -> True"):
        records.check_same_config(config, str(tmp_path))


@pytest.mark.parametrize("field, value, message", [
    ("data.image_size", 50, "multiple of 32"),
    ("data.target_domain", "studio", "also a source domain"),
    ("eval.threshold_policy", "oracle", "target_eer"),
    ("eval.selection", "best", "best_on_target"),
    ("teachers.fr_arch", "r42", "r18"),
    ("attack.epsilon", 0.0, "must be > 0"),
    ("optim.schedule", "linear", "cosine"),
    ("teachers.fa_image_size", 40, "divisible"),
])
def test_bad_config_values_are_named(data_dir, field, value, message):
    config = tiny_config(data_dir)
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(config_lib.ConfigError, match=f"config.{field}.*{message}"):
        config_lib.validate_config(config)


def test_unknown_domain_and_missing_dataset(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.data.target_domain = "moon"
    with pytest.raises(ValueError, match="unknown domain.*moon"):
        pipeline.load_protocol(config)
    config = tiny_config(tmp_path / "empty")
    config.data.generate_if_missing = False
    with pytest.raises(FileNotFoundError, match="generate_if_missing"):
        pipeline.load_protocol(config)


def test_batch_not_divisible_by_devices():
    # Every balanced batch is even, so 2 host devices always divide it; 4 devices may not.
    four_devices = type("Mesh", (), {"size": 4})()
    with pytest.raises(config_lib.ConfigError, match="samples_per_group.*multiple of 4"):
        check_batch_divisible(3 * 2 * 1, four_devices, "data.samples_per_group")
    check_batch_divisible(3 * 2 * 2, four_devices, "data.samples_per_group")
