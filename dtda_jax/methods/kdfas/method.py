"""KDFAS as a plug-in (see dtda_jax/methods/__init__.py): the cached teacher, then the student
unless the variant reports the teacher alone; the student that predict scores."""

from __future__ import annotations

import dataclasses
import os

from dtda_jax.core.errors import UserError
from dtda_jax.core.state import parameter_count
from dtda_jax.methods.common import RunContext
from dtda_jax.methods.kdfas import stages


def check_weight_files(config) -> None:
    stages.check_init_checkpoints(config)


face_pretraining_targets = stages.face_pretraining_targets


def train(ctx: RunContext) -> tuple[dict, dict] | None:
    """The teacher (from its cache when trained), then the student; the reported model's
    evaluations by selection (the teacher's for `kd_teacher`) and the models' descriptions."""
    config = stages.with_pretrained_vits(ctx)
    if config is None:
        return None
    ctx = dataclasses.replace(ctx, config=config)
    k = config.kdfas
    global_batch = ctx.global_batch(config.data.samples_per_group, "data.samples_per_group")
    teacher_info, teacher, teacher_variables = None, None, {}
    if "teacher" in stages.roles_in_use(config):
        outcome = stages.train_teacher(ctx, global_batch)
        if outcome is None:
            return None
        directory, teacher, teacher_variables, best_eval, last_eval = outcome
        teacher_info = {"directory": directory, "architecture": k.teacher.to_dict(),
                        "parameters": parameter_count(teacher_variables["params"]),
                        "steps": k.teacher_num_steps,
                        "by_selection": {"best_on_target": best_eval, "last": last_eval}}
        print(f"[teacher] ViT {k.teacher.depth} blocks x {k.teacher.width}: "
              f"{teacher_info['parameters']:,} parameters; target AUC {100 * last_eval['auc']:.2f}% "
              f"at its last step {last_eval['step']}", flush=True)
    student_info = None
    if k.report == "student":
        outcome = stages.train_student(ctx, global_batch, teacher, teacher_variables)
        if outcome is None:
            return None
        state, best_eval, last_eval = outcome
        distils = k.use_decision_kd or k.use_feature_kd
        student_info = {"architecture": k.student.to_dict(), "parameters": parameter_count(state.params),
                        "distilled_from": teacher_info["directory"] if distils else None}
    details = {"teacher": teacher_info, "student": student_info}
    if k.report == "teacher":  # the reported evaluations' scores/ are in the teacher's cache
        details["scores_dir"] = os.path.relpath(teacher_info["directory"], ctx.workdir)
    return {"best_on_target": best_eval, "last": last_eval}, details


def scored_model(config):
    """(student, optimiser): the model and state layout of `checkpoints/student`."""
    if config.kdfas.report == "teacher":
        raise UserError("this is a KDFAS teacher-alone run (variant kd_teacher); it trains no student. "
                        "Score with a KDFAS run that trains one.")
    student, tx, _ = stages.student_and_optimizer(config)
    return student, tx


def describe_scored_model(config) -> str:
    v = config.kdfas.student
    return f"KDFAS ViT student ({v.depth} blocks, width {v.width}, patch {v.patch_size})"


def feature_model(config):
    raise UserError("t-SNE and Grad-CAM read DTDA's ResNet-18 student; this is a KDFAS run (ROC curves "
                    "come from any run's scores).")


def describe_models(results: dict) -> None:
    """Which model the reported numbers belong to, and the sizes."""
    parts = []
    for role in ("teacher", "student"):
        info = results[role]
        if info is not None:
            a = info["architecture"]
            parts.append(f"{role} ViT {a['depth']} blocks x {a['width']} (patch {a['patch_size']}, "
                         f"{info['parameters']:,} parameters)")
    reported = "the teacher alone" if results["student"] is None else "the student"
    print(f"KDFAS: {'; '.join(parts)}. Reported: {reported}.", flush=True)
