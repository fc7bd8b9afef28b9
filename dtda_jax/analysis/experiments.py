"""Ablation runner: variants x protocols x seeds, resumable, into Table II / III style tables.

    python -m dtda_jax.experiments --configs=configs/synthetic_to_kiosk.py,configs/synthetic_to_webcam.py \
        --variants=baseline,fr,fa,fr_fa,dtda,dat --seeds=0,1,2 --out=runs/ablation

Every (protocol, variant, seed) is an ordinary run in `<out>/<protocol>/<variant>/seed<k>`
(`python -m dtda_jax.main` would write the same files there). Rerunning the command skips
finished runs and resumes an interrupted one from its checkpoint, so a killed sweep loses at
most the steps since the last checkpoint. After the runs, `<out>/table.md` and
`<out>/table.json` hold, recomputed from every run's saved per-video scores, two conventions:
"paper" (threshold at the target's EER, the checkpoint best on the target) and "deployable"
(the last checkpoint, HTER = ACER at the threshold chosen on source-val, no target label
used); per variant and protocol HTER and AUC as mean +- standard deviation over seeds (sample
std, ddof=1; "n=1" when one seed), a 95% bootstrap interval over videos and seeds, and the
paired difference to the method's baseline variant with its interval
(dtda_jax/evaluation/intervals.py). `--report_only` rebuilds the tables from what has finished.
`--set train.num_steps=200` (repeatable) overrides a config field for the whole sweep.

Spreading a sweep over machines: `--list_cells` prints one command per run ("cell"), and
`--cell=K` runs cell K alone, so a SLURM job array (`--cell=$SLURM_ARRAY_TASK_ID`), GNU
parallel or any batch system runs the cells side by side on a shared `--out`. Two runners
never run the same cell: a cell whose workdir lock another live process holds is skipped
with a line saying so (the lock of `python -m dtda_jax.main`). The tables merge whatever
cells have finished and name the missing ones (`--report_only` once the array is done).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from typing import Sequence

import numpy as np

from dtda_jax import config as config_lib
from dtda_jax import methods
from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError
from dtda_jax.evaluation import intervals
from dtda_jax.evaluation.tables import markdown_table

# The variant every other one is compared with, per method (the first of these in the sweep).
BASELINES = tuple(methods.config_module(name).BASELINE_VARIANT for name in methods.NAMES)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    config_path: str
    variant: str
    seed: int

    @property
    def protocol(self) -> str:
        """The config file's name, e.g. "synthetic_to_kiosk"."""
        return os.path.splitext(os.path.basename(self.config_path))[0]

    def workdir(self, out: str) -> str:
        return os.path.join(out, self.protocol, self.variant, f"seed{self.seed}")


def parse_overrides(assignments: Sequence[str]) -> dict[str, object]:
    """["train.num_steps=200", "loss.temperature=2.0"] -> {field: Python value}."""
    return dict(config_lib.parse_assignment(a) for a in assignments)


def make_config(spec: RunSpec, overrides: dict[str, object]):
    """The run's config: the file at its variant, the seed, then the overrides (validated)."""
    config = config_lib.load_config_file(spec.config_path, spec.variant)
    config.seed = spec.seed
    for field, value in overrides.items():
        try:
            config_lib.set_field(config, field, value)
        except KeyError:
            raise UserError(f"--set {field}: the config has no field {field!r}.") from None
        except ValueError as err:
            raise UserError(f"--set {err}") from None
    config_lib.validate_config(config)
    return config


def is_finished(workdir: str) -> bool:
    return os.path.exists(os.path.join(workdir, "results.json"))


def finished_seeds(variant_folder: str) -> list[int]:
    """The seeds whose runs finished in `<out>/<protocol>/<variant>` (its `seed<k>` folders)."""
    return sorted(int(d[4:]) for d in os.listdir(variant_folder)
                  if d.startswith("seed") and is_finished(os.path.join(variant_folder, d)))


def run_all(specs: Sequence[RunSpec], out: str, overrides: dict[str, object]) -> None:
    """Runs (or resumes) every spec in turn, skipping finished ones and ones another process is
    running, with progress lines."""
    from dtda_jax import train  # jax starts here, after argument errors had their chance
    from dtda_jax.config import records
    from dtda_jax.core.lock import LockHeld

    configs = [make_config(spec, overrides) for spec in specs]  # every error before any work
    for spec, config in zip(specs, configs):  # a finished run must be one of this sweep
        records.check_same_config(config, spec.workdir(out))
    todo = [(s, c) for s, c in zip(specs, configs) if not is_finished(s.workdir(out))]
    print(f"[experiments] {len(specs)} runs, {len(specs) - len(todo)} already finished, "
          f"{len(todo)} to go -> {os.path.abspath(out)}", flush=True)
    start = time.perf_counter()
    for i, (spec, config) in enumerate(todo):
        elapsed = time.perf_counter() - start
        eta = f", ETA {(elapsed / i) * (len(todo) - i) / 60:.0f} min" if i else ""
        print(f"\n[experiments] run {i + 1}/{len(todo)}: {spec.protocol} {spec.variant} seed "
              f"{spec.seed}{eta}", flush=True)
        try:
            train.train_and_evaluate(config, spec.workdir(out))
        except LockHeld as err:  # another runner of the sweep has this cell
            print(f"[experiments] skipped: {err}", flush=True)


# ---------------------------------------------------------------------------------------------
# Tables


def run_scores(workdir: str, results: dict, selection: str) -> intervals.RunScores:
    try:
        return intervals.saved_run_scores(workdir, results, selection)
    except FileNotFoundError as err:
        raise UserError(f"{workdir}: no saved per-video scores of its {selection} checkpoint "
                        f"({err.filename}), which the tables need; the run predates them or lost them: "
                        "delete its folder and rerun the sweep to retrain it.") from None


CONVENTION_CHECKPOINT = {"paper": "best_on_target", "deployable": "last"}


def collect(specs: Sequence[RunSpec], out: str, replicates: int = intervals.DEFAULT_REPLICATES) -> dict:
    """Per protocol and variant, both conventions: HTER/AUC mean +- std over seeds, their 95%
    bootstrap intervals over videos and seeds, and the paired difference to the method's
    baseline variant; the policies the runs used and the runs not finished yet."""
    finished: dict[tuple[str, str], dict[int, dict]] = {}
    policies, missing = set(), []
    for spec in specs:
        workdir = spec.workdir(out)
        if not is_finished(workdir):
            missing.append(os.path.relpath(workdir, out))
            continue
        results = artifacts.read_json(os.path.join(workdir, "results.json"))
        finished.setdefault((spec.protocol, spec.variant), {})[spec.seed] = {
            c: run_scores(workdir, results, checkpoint) for c, checkpoint in CONVENTION_CHECKPOINT.items()}
        policies.add((results["threshold_policy"], results["selection"], results["video_reduce"]))
    protocols = list(dict.fromkeys(s.protocol for s in specs))
    variants = list(dict.fromkeys(s.variant for s in specs))
    baseline = next((v for v in variants if v in BASELINES), None)
    table = {"protocols": protocols, "variants": variants, "baseline": baseline, "cells": [],
             "average": [], "resolution": {}, "replicates": replicates, "level": intervals.LEVEL}
    for protocol in protocols:
        present = [v for v in variants if (protocol, v) in finished]
        if not present:
            continue
        # The pairing needs the same seeds in every variant: the seeds all of them finished.
        seeds = sorted(set.intersection(*(set(finished[protocol, v]) for v in present)))
        if not seeds:
            continue
        base = baseline if baseline in present else None
        compared = {c: intervals.compare({v: [finished[protocol, v][k][c] for k in seeds] for v in present},
                                         c, base, replicates=replicates)
                    for c in intervals.CONVENTIONS}
        table["resolution"][protocol] = {c: intervals.resolution(compared[c]) for c in intervals.CONVENTIONS}
        for v in present:
            table["cells"].append({"protocol": protocol, "variant": v, "seeds": seeds,
                                   **{c: compared[c][v] for c in intervals.CONVENTIONS}})
    for variant in variants:  # the mean over protocols, only where every protocol finished
        per_protocol = [c for c in table["cells"] if c["variant"] == variant]
        if len(per_protocol) == len(protocols) and len(protocols) > 1:
            table["average"].append({"variant": variant, **{
                c: {m: float(np.mean([cell[c][m]["mean"] for cell in per_protocol])) for m in intervals.METRICS}
                for c in intervals.CONVENTIONS}})
    table["policies"] = [{"threshold_policy": t, "selection": s, "video_reduce": r}
                         for t, s, r in sorted(policies)]
    table["runs"], table["missing"] = len(specs), missing
    return table


def write_tables(specs: Sequence[RunSpec], out: str) -> dict:
    table = collect(specs, out)
    artifacts.write_json(os.path.join(out, "table.json"), table)
    artifacts.write_text(os.path.join(out, "table.md"), markdown_table(table))
    return table


# ---------------------------------------------------------------------------------------------
# Command line


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dtda_jax.experiments",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", required=True, help="comma-separated config files (the protocols)")
    p.add_argument("--variants", default="baseline,fr,fa,fr_fa,dtda,dat",
                   help="comma-separated ablation variants of the configs' method: "
                        + "; ".join(f"{name}: {', '.join(methods.config_module(name).VARIANTS)}"
                                    for name in methods.NAMES))
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--out", default="runs/ablation", help="sweep folder")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="config override for every run, e.g. train.num_steps=200")
    p.add_argument("--report_only", action="store_true", help="only rebuild the tables")
    p.add_argument("--list_cells", action="store_true",
                   help="print one command per run (cell) of the sweep, for a job array, and exit")
    p.add_argument("--cell", type=int, default=None, metavar="K",
                   help="run only cell K (0-based, the order of --list_cells); no tables")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p.parse_args(argv)


def build_specs(args: argparse.Namespace) -> list[RunSpec]:
    configs, variants = _split(args.configs), _split(args.variants)
    missing = [c for c in configs if not os.path.isfile(c)]
    if missing:
        raise ValueError(f"--configs: no such file {missing}; the protocol configs are in configs/.")
    known = methods.all_variants()
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; choose from " + "; ".join(
            f"{sorted(methods.config_module(name).VARIANTS)} ({name})" for name in methods.NAMES) + ".")
    try:
        seeds = [int(s) for s in _split(args.seeds)]
    except ValueError:
        raise ValueError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2.") from None
    if not (configs and variants and seeds):
        raise ValueError("--configs, --variants and --seeds each need at least one value.")
    # Seed-major: a sweep stopped early has every variant at the first seeds, not some variants
    # at all seeds.
    return [RunSpec(c, v, s) for s in seeds for c in configs for v in variants]


def main(argv: Sequence[str] | None = None) -> int:
    from dtda_jax.core.cli import run_command

    args = parse_args(argv)
    return run_command("experiments", lambda: sweep(args), debug=args.debug, stop_on_signals=True)


def cell_commands(args: argparse.Namespace, specs: Sequence[RunSpec]) -> list[str]:
    """One shell command per cell: this sweep's arguments plus `--cell=K`."""
    base = ["python", "-m", "dtda_jax.experiments", f"--configs={args.configs}", f"--variants={args.variants}",
            f"--seeds={args.seeds}", f"--out={args.out}", *(f"--set={a}" for a in args.set)]
    return [f"{shlex.join([*base, f'--cell={k}'])}  # {s.protocol} {s.variant} seed {s.seed}"
            for k, s in enumerate(specs)]


def sweep(args: argparse.Namespace) -> int:
    try:
        specs = build_specs(args)
        overrides = parse_overrides(args.set)
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.list_cells:
        print("\n".join(cell_commands(args, specs)), flush=True)
        return 0
    if args.cell is not None:
        if not 0 <= args.cell < len(specs):
            raise UserError(f"--cell={args.cell}: this sweep has cells 0 to {len(specs) - 1} "
                            "(python -m dtda_jax.experiments ... --list_cells lists them).")
        run_all([specs[args.cell]], args.out, overrides)
        print("[experiments] cell done; `--report_only` with the same arguments merges the tables", flush=True)
        return 0
    if not args.report_only:
        run_all(specs, args.out, overrides)
    table = write_tables(specs, args.out)
    print("\n" + markdown_table(table), flush=True)
    if table["missing"]:
        print(f"[experiments] {len(table['missing'])} of {table['runs']} runs not finished, not in the "
              f"tables: {', '.join(table['missing'])}", flush=True)
    print(f"[experiments] tables in {os.path.abspath(os.path.join(args.out, 'table.md'))} and table.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
