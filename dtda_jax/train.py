"""`train_and_evaluate(config, workdir)`: one run of any method, top to bottom.

config -> validation and the run record (config.json) -> device mesh -> the protocol's data
-> the method's stages (found by `config.method.name` in dtda_jax.methods; each stage goes
through the one loop of dtda_jax/core/loop.py, evaluated by dtda_jax/evaluation/fas.py) ->
results.json and the results table. `dtda_jax.main` is its command line.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections

from dtda_jax import config as config_lib
from dtda_jax import methods
from dtda_jax.config import records
from dtda_jax.core import artifacts, distributed
from dtda_jax.core.logs import MetricWriter, format_duration
from dtda_jax.core.loop import StopAt
from dtda_jax.core.sharding import make_mesh
from dtda_jax.data import pipeline
from dtda_jax.evaluation import intervals
from dtda_jax.evaluation.tables import format_results_table
from dtda_jax.methods.common import RunContext

RESULT_COLUMNS = ("protocol", "variant", "selection", "num_live", "num_spoof", "auc", "eer", "hter",
                  "tpr@fpr=0.01", "source_val_auc", "deploy_apcer", "deploy_bpcer", "deploy_acer")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, stop_after: int | None = None,
                       num_devices: int | None = None) -> dict | None:
    """Runs (or resumes) every stage of the config's method in `workdir`; returns the results.

    `stop_after` ends the run once it has done that many steps, its stages counted in order
    (what a preemption at that moment does; the tests resume from there), and then returns
    None.
    """
    config_lib.validate_config(config)
    method = methods.training_module(config.method.name)
    method.check_weight_files(config)
    with distributed.primary_lock(workdir, "run"):
        records.check_same_config(config, workdir)  # a changed config is refused before any work
        t_start = time.perf_counter()
        variant = config_lib.variant_name(config)
        print(f"[run] workdir={os.path.abspath(workdir)} method={config.method.name} variant={variant} "
              f"{describe_devices()}", flush=True)
        with distributed.primary_first("data"):  # the primary generates a missing built-in benchmark
            protocol = pipeline.load_protocol(config)
        records.record_config(config, workdir)  # recorded once the run can start training
        ctx = RunContext(config=config, workdir=workdir, mesh=make_mesh(num_devices), protocol=protocol,
                         writer=MetricWriter(workdir), stop=StopAt(stop_after))
        try:
            outcome = method.train(ctx)
        finally:
            ctx.writer.close()
        if outcome is None:
            return None
        return report(config, workdir, method, ctx.protocol, outcome, variant, t_start)


def describe_devices() -> str:
    if not distributed.multi_process():
        return f"devices={jax.devices()}"
    return (f"processes={jax.process_count()} devices={jax.device_count()} "
            f"({jax.local_device_count()} per process, {jax.devices()[0].platform})")


def report(config, workdir: str, method, protocol, outcome, variant: str, t_start: float) -> dict:
    """results.json, the results table and the models' origins of a finished run."""
    by_selection, details = outcome
    e = config.eval
    results = {
        "protocol": protocol.name,
        "variant": variant,
        "method": config_lib.switches(config),
        "selection": e.selection,
        "threshold_policy": e.threshold_policy,
        "video_reduce": e.video_reduce,
        "reported": by_selection[e.selection],
        "by_selection": by_selection,
        **details,
        "wall_time_s_this_process": time.perf_counter() - t_start,
    }
    if artifacts.writes_files():  # the process that saved the scores
        results["intervals"] = {selection: video_intervals(intervals.saved_run_scores(workdir, results, selection))
                                for selection in by_selection}
    path = os.path.join(workdir, "results.json")
    artifacts.write_json(path, results)
    print_results(results)
    method.describe_models(results)
    print(f"[run] done in {format_duration(time.perf_counter() - t_start)}; results in "
          f"{os.path.abspath(path)}", flush=True)
    return results


def video_intervals(run: intervals.RunScores) -> dict[str, list[float]]:
    """A checkpoint's 95% bootstrap intervals over the target's (and source-val's) videos:
    AUC, HTER at the target's EER, ACER at the source-val EER threshold."""
    paper, deployable = (intervals.video_interval(run, c) for c in ("paper", "deployable"))
    return {"auc": list(paper["auc"]), "hter_target_eer": list(paper["hter"]),
            "acer_source_val_threshold": list(deployable["hter"])}


def print_results(results: dict) -> None:
    rows = [{"protocol": results["protocol"], "variant": results["variant"],
             "selection": f"{selection}@{r['step']}", **r}
            for selection, r in results["by_selection"].items()]
    print("\n" + format_results_table(rows, RESULT_COLUMNS), flush=True)
    print(f"HTER threshold policy: {results['threshold_policy']}; scores are per video "
          f"({results['video_reduce']} of frame live probabilities); reported selection: "
          f"{results['selection']}.", flush=True)
    print("(src-val thr): the target's APCER / BPCER / ACER at the threshold chosen on the source "
          "domains' held-out videos (their EER), no target label used: what a deployed model does "
          "on the unseen domain (python -m dtda_jax.export picks its operating point the same way).",
          flush=True)
    print("Conventions: paper (the literature's) = AUC and HTER%(target_eer) of the best_on_target "
          "row; deployable = AUC and ACER%(src-val thr) of the last row.", flush=True)
    level = round(100 * intervals.LEVEL)
    for selection, i in results.get("intervals", {}).items():  # only the process that wrote the scores
        step = results["by_selection"][selection]["step"]
        print(f"{level}% bootstrap interval over the videos, {selection}@{step}: AUC "
              f"{_span(i['auc'])}, HTER at the target EER {_span(i['hter_target_eer'])}, ACER at the "
              f"src-val thr {_span(i['acer_source_val_threshold'])}", flush=True)


def _span(interval) -> str:
    return f"[{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"
