"""DTDA as a plug-in (see dtda_jax/methods/__init__.py): its run, from the domain classifier to
the results, and the student that predict and figures use."""

from __future__ import annotations

import os
from typing import Any

from dtda_jax.core.state import rng_key
from dtda_jax.methods.common import RunContext
from dtda_jax.methods.dtda import stages
from dtda_jax.teachers import frozen as frozen_teachers
from dtda_jax.weights import store
from dtda_jax.weights.store import KIND_RESNET18


def check_weight_files(config) -> None:
    """Fails before any training if a configured converted checkpoint is missing or the wrong kind."""
    m = config.method
    wanted = [(config.model.init_checkpoint, KIND_RESNET18, "config.model.init_checkpoint")]
    if m.use_domain_attack:
        wanted.append((config.domain_classifier.init_checkpoint, KIND_RESNET18,
                       "config.domain_classifier.init_checkpoint"))
    for name in stages.teacher_names(config):
        wanted.append((config.teachers[f"{name}_checkpoint"], frozen_teachers.TEACHER_KINDS[name],
                       f"config.teachers.{name}_checkpoint"))
    for path, kind, field in wanted:
        if path:
            store.check_converted(path, kind, field)


face_pretraining_targets = stages.face_pretraining_targets


def weights_provenance(path: str) -> dict[str, Any]:
    """Where a run's pretrained weights came from, as recorded in results.json."""
    if not path:
        return {"origin": frozen_teachers.RANDOM_INIT}
    manifest = store.read_manifest(path)
    return {"origin": os.path.abspath(path), "kind": manifest["kind"],
            "source_file": manifest["source_file"], "source_sha256": manifest["source_sha256"],
            "architecture": manifest["architecture"],
            **{k: manifest[k] for k in ("trained_by", "quality") if k in manifest}}  # own teachers


def train(ctx: RunContext) -> tuple[dict, dict] | None:
    """Domain classifier (when the attack is on) -> teachers -> student; the student's
    evaluations by selection and what else results.json records, or None when the run was
    stopped early."""
    config = ctx.config
    domain_model, frozen, domain_report = None, {}, None
    if config.method.use_domain_attack:
        outcome = stages.train_domain_classifier(ctx)
        if outcome is None:
            return None
        domain_model, frozen["domain"], domain_report = outcome

    config = stages.with_own_teachers(ctx)
    if config is not None:
        config = stages.with_face_pretrained_encoder(ctx, config)
    if config is None:
        return None
    teachers = stages.make_teachers(config)
    frozen.update(frozen_teachers.init_teacher_variables(teachers, rng_key(config.seed + 2), config.teachers))
    outcome = stages.train_student(ctx, config, teachers, frozen, domain_model)
    if outcome is None:
        return None
    _, best_eval, last_eval = outcome
    return {"best_on_target": best_eval, "last": last_eval}, {
        "teachers": {name: {"model": type(t.model).__name__, "random_init": t.origin == frozen_teachers.RANDOM_INIT,
                            **weights_provenance("" if t.origin == frozen_teachers.RANDOM_INIT else t.origin)}
                     for name, t in teachers.items()},
        "domain_classifier": domain_report,
        "student_encoder_init": weights_provenance(config.model.init_checkpoint),
        "domain_classifier_encoder_init": (weights_provenance(config.domain_classifier.init_checkpoint)
                                           if config.method.use_domain_attack else None),
    }


def scored_model(config):
    """(student, optimiser): the model and state layout of `checkpoints/student`."""
    return stages.make_student(config, stages.make_teachers(config)), stages.student_optimizer(config)[0]


def describe_scored_model(config) -> str:
    return f"DTDA multi-task ResNet-18 student (width {config.model.width}), live/spoof head"


def feature_model(config):
    """The ResNet-18 student whose features and last feature map the figures show."""
    return scored_model(config)[0]


def describe_models(results: dict) -> None:
    """Where a DTDA run's teachers and encoder initialisations came from."""
    used = {f"teacher {n}": t for n, t in results["teachers"].items()}
    used["student encoder"] = results["student_encoder_init"]
    if results["domain_classifier_encoder_init"] is not None:
        used["domain-classifier encoder"] = results["domain_classifier_encoder_init"]
    print("Weights: " + "; ".join(
        f"{name} <- {w['origin'] if 'trained_by' in w else w.get('source_file', w['origin'])}"
        for name, w in used.items()), flush=True)
    random_teachers = [n for n, t in results["teachers"].items() if t["random_init"]]
    if random_teachers:
        print(f"NOTE: teacher(s) {random_teachers} were randomly initialised (no converted checkpoint).",
              flush=True)
