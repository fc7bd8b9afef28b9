"""Are the own teachers capture-invariant? Both kinds of teachers on the same unseen people,
through capture pipelines they never saw and through the benchmark's cameras.

    python tools/teacher_invariance.py [--cache=data/teachers]

Trains what the cache lacks (the demo teachers of configs/synthetic.py, corpus through the
benchmark's four cameras, and the capture-diverse ones of
configs/synthetic_to_kiosk_capture_teachers.py), then evaluates each on the capture-diverse
corpus' held-out people (ids no teacher trained on): (a) each video through its own random
capture pipeline, (b) once through each benchmark camera. Face recognition: verification AUC
and TAR@FAR=1e-2 (every genuine pair is across pipelines / cameras); attributes: mean accuracy.
A capture-invariant teacher scores (a) about as well as (b), and (b) without having seen
those cameras.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from dtda_jax import config as config_lib
from dtda_jax.core.cli import run_command
from dtda_jax.data.synthetic import face_corpus
from dtda_jax.teachers import frozen, training
from dtda_jax.weights import store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEACHERS = {"benchmark cameras": "configs/synthetic.py",
            "capture-diverse": "configs/synthetic_to_kiosk_capture_teachers.py"}
HELDOUT = {"random pipelines": "heldout", "benchmark cameras": "heldout_cameras"}


def evaluate(cache: str) -> dict:
    configs = {k: config_lib.load_config_file(os.path.join(ROOT, path)) for k, path in TEACHERS.items()}
    diverse = configs["capture-diverse"]
    settings = diverse.teachers.own_training
    corpus, _ = face_corpus.load_face_corpus(os.path.join(cache, "corpus"),
                                             training.corpus_settings(diverse, settings))
    table = {}
    for kind, config in configs.items():
        paths = training.ensure_trained_teachers(config, cache, config.teachers.own_training)
        for name, path in paths.items():
            teacher = training.teacher_module(config, name)
            variables, _ = store.load_converted(path, None, kind=frozen.TEACHER_KINDS[name])
            for capture, split in HELDOUT.items():
                if name == "fr":
                    q = training.evaluate_fr(teacher, variables, corpus[split], settings)["trained"]
                    figures = {"verification AUC": q["auc"], "TAR@FAR=1e-2": q["tar_at_far_1e-02"]}
                else:
                    q = training.evaluate_fa(teacher, variables, corpus[split], corpus["train"].attributes,
                                             settings)["trained"]
                    figures = {"attribute accuracy": q["mean_accuracy"]}
                for metric, value in figures.items():
                    table.setdefault(f"{name} {metric}", {}).setdefault(kind, {})[capture] = value
    return table


def report(args) -> None:
    table = evaluate(args.cache)
    print("\n| teacher metric | teachers trained on | " + " | ".join(f"held-out people, {c}" for c in HELDOUT) + " |")
    print("|---|---|" + "---|" * len(HELDOUT))
    for metric, rows in table.items():
        for kind, cells in rows.items():
            print(f"| {metric} | {kind} | " + " | ".join(f"{cells[c]:.3f}" for c in HELDOUT) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.join(ROOT, "data", "teachers"))
    parser.add_argument("--json", default=None, help="also write the table here")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args()
    return run_command("teacher_invariance", lambda: report(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
