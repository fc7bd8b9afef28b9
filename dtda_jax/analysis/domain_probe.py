"""A linear domain probe: how much of the capture domain a student's features still carry.

    python -m dtda_jax.probe --sweep=runs/teachers [--out=runs/teachers/domain_probe.md]

DTDA's claim is that distillation from face teachers and the domain attack move the student
toward domain-invariant features. The probe measures it directly: a ridge-regression
classifier of the four domains (the three sources and the held-out target) on the pooled
features of the student's last checkpoint (the deployable model), from LIVE frames only (a
spoof's domain is also given away by the domain's attack mix), trained on half of the people
and scored on the other half (every frame of a person on one side). Reported: balanced
accuracy over the domains (chance = 1 / domains); lower = more invariant. As a reference the
same probe on the raw pixels says how much domain the images themselves show.

For a sweep: per protocol and variant, mean +- std over seeds and the paired difference to the
baseline variant (same seeds), in `<sweep>/domain_probe.md` and `.json`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np

from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError

RIDGE = 1.0  # on standardised features; the probe is deliberately simple (linear, fixed strength)


# ---------------------------------------------------------------------------------------------
# Numerics (pure)


def person_halves(person: np.ndarray, seed: int = 0) -> np.ndarray:
    """A boolean mask of the frames of a seeded half of the people (the probe's training side)."""
    people = np.unique(person)
    chosen = np.random.default_rng([seed, 31]).permutation(people)[: len(people) // 2]
    return np.isin(person, chosen)


def ridge_probe_accuracy(features: np.ndarray, domain: np.ndarray, train: np.ndarray,
                         ridge: float = RIDGE) -> float:
    """Balanced accuracy on the frames outside `train` of a one-vs-all ridge classifier of
    `domain` fitted on the frames in `train` (features standardised on the training side; the
    intercept unpenalised; solved in whichever of the primal and dual forms is smaller)."""
    x = np.asarray(features, np.float64).reshape(len(features), -1)
    classes, y = np.unique(domain, return_inverse=True)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mean) / std  # zero mean on the training side: the intercept is the targets' mean
    targets = np.eye(len(classes))[y[train]]
    offset = targets.mean(0)
    zt, centred = z[train], targets - offset
    if zt.shape[1] <= zt.shape[0]:
        weights = np.linalg.solve(zt.T @ zt + ridge * np.eye(zt.shape[1]), zt.T @ centred)
    else:
        weights = zt.T @ np.linalg.solve(zt @ zt.T + ridge * np.eye(len(zt)), centred)
    predicted = np.argmax(z[~train] @ weights + offset, axis=1)
    truth = y[~train]
    return float(np.mean([np.mean(predicted[truth == k] == k) for k in range(len(classes)) if np.any(truth == k)]))


# ---------------------------------------------------------------------------------------------
# Runs (side effects: loading checkpoints and frames)


def live_frames(config):
    """(images, domain, person) of the live frames of the protocol's source-val and target sets."""
    from dtda_jax.data import pipeline

    data = pipeline.load_protocol(config)
    images, domains, people = [], [], []
    for frames in (data.source_val, data.target):
        live = np.flatnonzero(np.asarray(frames.label) == 1)
        images.append(frames.read_images(live))
        domains.append(np.asarray(frames.domain)[live])
        people.append(np.asarray(frames.video)[live])  # one live video per person
    return np.concatenate(images), np.concatenate(domains), np.concatenate(people)


def probe_run(workdir: str, frames_cache: dict) -> dict:
    """The probe's balanced accuracy on the last checkpoint of a finished run, and on pixels."""
    from dtda_jax import methods
    from dtda_jax.analysis import figures
    from dtda_jax.inference import predict

    run = predict.load_run(workdir, "latest")
    try:
        student = methods.training_module(run.config.method.name).feature_model(run.config)
    except UserError as err:
        raise UserError(f"{workdir}: the domain probe reads DTDA's ResNet-18 student: {err}") from None
    key = run.config.data.to_json()
    if key not in frames_cache:
        frames_cache[key] = live_frames(run.config)
    images, domain, person = frames_cache[key]
    train = person_halves(person)
    features = figures.pooled_features(student, run.variables, images)
    return {"student": ridge_probe_accuracy(features, domain, train),
            "pixels": ridge_probe_accuracy(images, domain, train),
            "domains": int(len(np.unique(domain))), "frames": int(len(images))}


def probe_sweep(sweep: str) -> dict:
    """Every finished run of a sweep probed; per protocol and variant the accuracies by seed."""
    from dtda_jax.analysis import experiments, figures

    table = {"protocols": {}, "baseline": None}
    cache: dict = {}
    for protocol, variants in figures.sweep_layout(sweep).items():
        table["baseline"] = table["baseline"] or next((v for v in variants if v in experiments.BASELINES), None)
        per_variant = {}
        for variant in variants:
            folder = os.path.join(sweep, protocol, variant)
            runs = {}
            for seed in experiments.finished_seeds(folder):
                runs[seed] = probe_run(os.path.join(folder, f"seed{seed}"), cache)
                print(f"[probe] {protocol} {variant} seed {seed}: domain probe balanced accuracy "
                      f"{100 * runs[seed]['student']:.1f}% (pixels {100 * runs[seed]['pixels']:.1f}%)",
                      flush=True)
            per_variant[variant] = runs
        table["protocols"][protocol] = per_variant
    return table


def markdown(table: dict) -> str:
    lines = ["Linear domain probe (ridge, live frames of the source-val and target people, trained on half "
             "of them, balanced accuracy on the other half; lower = fewer domain cues; last checkpoint). "
             "Mean +- std over seeds; diff: paired by seed to the baseline.", "",
             "| protocol | variant | seeds | student features % | diff to baseline | pixels % |",
             "|---|---|---|---|---|---|"]
    for protocol, variants in table["protocols"].items():
        base = variants.get(table["baseline"], {})
        for variant, runs in variants.items():
            if not runs:
                continue
            acc = np.array([r["student"] for r in runs.values()])
            pixels = np.mean([r["pixels"] for r in runs.values()])
            paired = [runs[s]["student"] - base[s]["student"] for s in runs if s in base]
            diff = ("-" if variant == table["baseline"] or not paired else
                    f"{100 * np.mean(paired):+.1f} +- {100 * np.std(paired, ddof=1) if len(paired) > 1 else 0:.1f}")
            spread = f" +- {100 * acc.std(ddof=1):.1f}" if len(acc) > 1 else ""
            lines.append(f"| {protocol} | {variant} | {len(acc)} | {100 * acc.mean():.1f}{spread} | {diff} | "
                         f"{100 * pixels:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dtda_jax.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", required=True, help="the --out folder of python -m dtda_jax.experiments")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    from dtda_jax.core.cli import run_command

    from dtda_jax.analysis import figures

    def body():
        figures.check_sweep_folder(args.sweep)
        table = probe_sweep(args.sweep)
        artifacts.write_json(os.path.join(args.sweep, "domain_probe.json"), table)
        text = markdown(table)
        artifacts.write_text(os.path.join(args.sweep, "domain_probe.md"), text)
        print("\n" + text, flush=True)

    return run_command("probe", body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
