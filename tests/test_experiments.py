"""The ablation runner: a resumable sweep and its tables, checked against the runs' own results."""

import json
import os

import numpy as np
import pytest

from dtda_jax import train
from dtda_jax.analysis import experiments

PROTOCOL_FILE = '''
from tests.conftest import tiny_config


def get_config(variant="dtda"):
    c = tiny_config({data_dir!r}, variant)
    c.train.num_steps, c.train.log_every, c.train.checkpoint_every, c.train.eval_every = 2, 1, 1, 1
    return c
'''


@pytest.fixture(scope="module")
def sweep(data_dir, tmp_path_factory):
    """A finished 1 protocol x 2 variants x 2 seeds sweep: (argv, out)."""
    root = tmp_path_factory.mktemp("sweep")
    config_path = root / "tiny_protocol.py"
    config_path.write_text(PROTOCOL_FILE.format(data_dir=str(data_dir)))
    out = root / "out"
    argv = [f"--configs={config_path}", "--variants=baseline,dat", "--seeds=0,1", f"--out={out}"]
    assert experiments.main(argv) == 0
    return argv, out


def test_tables_are_the_mean_and_std_of_the_runs(sweep):
    _, out = sweep
    table = json.loads((out / "table.json").read_text())
    assert table["protocols"] == ["tiny_protocol"] and table["variants"] == ["baseline", "dat"]
    assert table["policies"] == [{"threshold_policy": "target_eer", "selection": "best_on_target",
                                  "video_reduce": "mean"}]
    assert table["baseline"] == "baseline"

    def runs(variant):
        return [json.loads((out / "tiny_protocol" / variant / f"seed{s}" / "results.json").read_text())
                for s in (0, 1)]

    # Recomputed from the saved scores, both conventions equal what the runs reported: the
    # paper's (target EER, best on target) and the deployable one (the last checkpoint at the
    # source-val threshold).
    def figures(results):
        return {("paper", "hter"): [r["by_selection"]["best_on_target"]["hter"] for r in results],
                ("paper", "auc"): [r["by_selection"]["best_on_target"]["auc"] for r in results],
                ("deployable", "hter"): [r["by_selection"]["last"]["deploy_acer"] for r in results],
                ("deployable", "auc"): [r["by_selection"]["last"]["auc"] for r in results]}

    cells = {c["variant"]: c for c in table["cells"]}
    base = figures(runs("baseline"))
    for variant, cell in cells.items():
        assert cell["seeds"] == [0, 1]
        for (convention, metric), values in figures(runs(variant)).items():
            entry = cell[convention][metric]
            assert entry["mean"] == pytest.approx(np.mean(values), abs=1e-12)
            assert entry["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert entry["n"] == 2 and entry["low"] <= entry["high"]
            diff = cell[convention]["diff"]
            if variant == "baseline":
                assert diff is None
            else:  # paired by seed
                paired = np.mean(np.subtract(values, base[convention, metric]))
                assert diff[metric]["mean"] == pytest.approx(paired, abs=1e-12)
                assert diff[metric]["low"] <= diff[metric]["high"]
    assert set(table["resolution"]["tiny_protocol"]) == {"paper", "deployable"}
    markdown = (out / "table.md").read_text()
    assert "HTER threshold `target_eer`, model selection `best_on_target`" in markdown
    dat = cells["dat"]
    paper = markdown[markdown.index("Paper convention"):markdown.index("Deployable convention")]
    assert f"| dat | {100 * dat['paper']['hter']['mean']:.2f} +- {100 * dat['paper']['hter']['std']:.2f} /" in paper
    deployable = markdown[markdown.index("Deployable convention"):markdown.index("bootstrap intervals")]
    assert f"| dat | {100 * dat['deployable']['hter']['mean']:.2f} +- " in deployable
    intervals_part = markdown[markdown.index("bootstrap intervals"):]
    h = dat["deployable"]["hter"]
    assert f"[{100 * h['low']:.2f}, {100 * h['high']:.2f}]" in intervals_part
    assert "paired difference to `baseline`" in intervals_part and "| baseline |" in intervals_part


def test_a_run_without_its_scores_is_named(sweep, tmp_path, capsys):
    """A finished run whose per-video scores are gone cannot enter the tables: one line."""
    import shutil

    argv, out = sweep
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "tiny_protocol" / "dat" / "seed1" / "scores")
    moved = [a if not a.startswith("--out=") else f"--out={copy}" for a in argv]
    assert experiments.main([*moved, "--report_only"]) == 2
    err = capsys.readouterr().err
    assert "dat/seed1: no saved per-video scores" in err and "rerun the sweep" in err
    # ... and the figures' ROC of that run names the missing file.
    from dtda_jax.analysis import figures

    with pytest.raises(figures.MissingRunError, match=r"scores/step_\d{7}\.npz is missing"):
        figures.reported_roc(str(copy / "tiny_protocol" / "dat" / "seed1"))
    fpr, tpr, auc = figures.reported_roc(str(copy / "tiny_protocol" / "dat" / "seed0"))
    assert fpr[0] == 0 and tpr[-1] == 1 and 0 <= auc <= 1


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(sweep, monkeypatch, capsys):
    argv, out = sweep
    interrupted = out / "tiny_protocol" / "dat" / "seed1"
    kept = json.loads((interrupted / "results.json").read_text())
    os.remove(interrupted / "results.json")  # as if killed after its last checkpoint
    calls = []
    real = train.train_and_evaluate
    monkeypatch.setattr(train, "train_and_evaluate", lambda c, w: calls.append(w) or real(c, w))
    assert experiments.main(argv) == 0
    assert calls == [str(interrupted)]
    printed = capsys.readouterr().out
    assert "4 runs, 3 already finished, 1 to go" in printed and "[student] already trained (2 steps), restored" in printed
    assert json.loads((interrupted / "results.json").read_text())["reported"] == kept["reported"]


def test_a_changed_sweep_is_refused_before_any_work(sweep, monkeypatch, capsys):
    argv, _ = sweep
    monkeypatch.setattr(train, "train_and_evaluate", None)  # must not be reached
    assert experiments.main([*argv, "--set", "loss.temperature=2.0"]) == 2
    assert "loss.temperature: 4.0 -> 2.0" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--variants=dtda,best"], "unknown ['best']"),
    (["--seeds=0,one"], "comma-separated integers"),
    (["--set", "train.steps=3"], "no field 'train.steps'"),
    (["--set", "train.num_steps=0"], "train.num_steps: must be >= 1"),
])
def test_bad_arguments_are_named(sweep, args, message, capsys):
    argv, _ = sweep
    assert experiments.main([*argv, *args]) == 2
    assert message in capsys.readouterr().err


def test_cells_for_a_job_array(sweep, tmp_path, capsys):
    """--list_cells prints one command per run; --cell=K runs that run alone (as a job array's
    task would), a cell another process is running is skipped, and the tables merge the
    finished cells and name the missing ones."""
    argv, _ = sweep
    out = tmp_path / "array"
    argv = [a for a in argv if not a.startswith("--out=")] + [f"--out={out}"]
    assert experiments.main([*argv, "--list_cells"]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(commands) == 4 and all(f"--cell={k}" in c for k, c in enumerate(commands))
    assert commands[3].endswith("# tiny_protocol dat seed 1") and not out.exists()
    assert experiments.main([*argv, "--cell=3"]) == 0
    assert sorted(p.parent.name + "/" + p.parent.parent.name
                  for p in out.rglob("results.json")) == ["seed1/dat"]
    from dtda_jax.core.lock import directory_lock
    busy = out / "tiny_protocol" / "baseline" / "seed0"
    with directory_lock(str(busy), "run"):  # another runner holds cell 0
        assert experiments.main([*argv, "--cell=0"]) == 0
    assert "skipped:" in capsys.readouterr().out and not (busy / "results.json").exists()
    assert experiments.main([*argv, "--report_only"]) == 0
    printed = capsys.readouterr().out
    assert "3 of 4 runs not finished, not in the tables: tiny_protocol/baseline/seed0" in printed
    table = json.loads((out / "table.json").read_text())
    assert table["missing"] == ["tiny_protocol/baseline/seed0", "tiny_protocol/dat/seed0",
                                "tiny_protocol/baseline/seed1"]
    assert [c["variant"] for c in table["cells"]] == ["dat"] and "Not finished" in (out / "table.md").read_text()
    assert experiments.main([*argv, "--cell=4"]) == 2
    assert "cells 0 to 3" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert experiments.main([f"--configs={tmp_path / 'nope.py'}", f"--out={tmp_path}"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_parse_overrides():
    assert experiments.parse_overrides(["train.num_steps=200", "optim.schedule=cosine",
                                        "data.source_domains=('a', 'b')"]) == {
        "train.num_steps": 200, "optim.schedule": "cosine", "data.source_domains": ("a", "b")}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        experiments.parse_overrides(["train.num_steps"])


def test_figures_of_the_sweep(sweep, tmp_path, capsys):
    from PIL import Image

    from dtda_jax.analysis import figures

    _, out = sweep
    assert figures.main([f"--sweep={out}", "--before=baseline", "--after=dat", "--per_group=3",
                         "--num_faces=2", f"--out={tmp_path}"]) == 0
    for name in ("roc", "tsne", "grad_cam"):
        with Image.open(tmp_path / f"{name}_tiny_protocol.png") as image:
            assert image.width > 300 and image.height > 200
    # The ROC is the one behind the reported AUC.
    workdir = out / "tiny_protocol" / "dat" / "seed0"
    fpr, tpr, auc = figures.reported_roc(str(workdir))
    reported = json.loads((workdir / "results.json").read_text())["reported"]
    assert auc == pytest.approx(reported["auc"], abs=1e-12) and fpr[0] == 0 and tpr[-1] == 1
    assert figures.main([f"--sweep={out}", "--after=dtda", f"--out={tmp_path}"]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_domain_probe_of_the_sweep(sweep, capsys):
    """`python -m dtda_jax.probe` probes every finished run's last checkpoint: per variant and
    seed a balanced accuracy, the paired difference to the baseline in the markdown."""
    from dtda_jax.analysis import domain_probe

    _, out = sweep
    assert domain_probe.main([f"--sweep={out}"]) == 0
    table = json.loads((out / "domain_probe.json").read_text())
    assert table["baseline"] == "baseline"
    runs = table["protocols"]["tiny_protocol"]
    assert set(runs) == {"baseline", "dat"} and all(set(r) == {"0", "1"} for r in runs.values())
    for r in (r for variant in runs.values() for r in variant.values()):
        assert 0.0 <= r["student"] <= 1.0 and 0.0 <= r["pixels"] <= 1.0 and r["domains"] == 4
    text = (out / "domain_probe.md").read_text()
    dat = [runs["dat"][s]["student"] - runs["baseline"][s]["student"] for s in ("0", "1")]
    assert "| tiny_protocol | dat | 2 | " in text and f"{100 * np.mean(dat):+.1f} +- " in text
    assert "[probe] tiny_protocol dat seed 1" in capsys.readouterr().out
