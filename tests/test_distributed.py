"""Multi-process training on JAX's distributed runtime, with real processes on 127.0.0.1.

A job of 2 processes with 1 CPU device each (gloo collectives) must train, evaluate, train its
own teachers, checkpoint and resume exactly like 1 process with 2 devices: the same global
batches, the same sharded steps, every evaluation frame scored once, one set of files written
by process 0. The 2-process job here is stopped by a SIGTERM to one of its processes in the
middle of the student's training (they must agree on the step to stop at), restarted, and its files are
then compared with the uninterrupted 1-process run's. (A SIGKILL of every process is a resume
from the last checkpoint, which tests/test_reliability.py covers with one process.)
"""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.test_reliability import ROOT, environment, restored_arrays

# DTDA with own teachers (trained in the run, cached in the workdir), 6 student steps.
CONFIG = '''
from tests.conftest import tiny_config
from dtda_jax.methods.dtda import config as dtda_config
from dtda_jax.teachers.training import default_teacher_training_config


def get_config():
    c = tiny_config({data_dir!r}, "dtda")
    s = default_teacher_training_config()
    s.corpus.update(dict(image_size=0, train_identities=5, heldout_identities=3, videos_per_identity=2,
                         frames_per_video=2))
    for name in ("fr", "fa"):
        s[name].update(dict(steps=4, batch_size=8, warmup_steps=2, learning_rate=3e-3))
    s.eval.batch_size, s.log_every, s.checkpoint_every = 16, 2, 2
    dtda_config.use_own_teachers(c, s)
    c.train.num_steps, c.train.log_every, c.train.checkpoint_every, c.train.eval_every = 6, 3, 3, 3
    return c
'''


@pytest.fixture(scope="module")
def config_file(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("distributed") / "own_teachers_run.py"
    path.write_text(CONFIG.format(data_dir=str(data_dir)))
    return str(path)


def command(config_file, workdir, *flags):
    return [sys.executable, "-m", "dtda_jax.main", f"--config={config_file}", f"--workdir={workdir}",
            f"--config.teachers.own_teachers_dir={workdir}/teachers", *flags]


def one_process(config_file, workdir, devices=2):
    env = environment(env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    return subprocess.run(command(config_file, workdir), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_processes(config_file, workdir, faults=("", "")):
    """The job as 2 processes of 1 CPU device each (`faults[i]`: process i's DTDA_JAX_FAULT):
    [(return code, stdout, stderr)] per process."""
    address = f"127.0.0.1:{free_port()}"
    processes = [subprocess.Popen(command(config_file, workdir, f"--coordinator_address={address}",
                                          "--num_processes=2", f"--process_id={i}"),
                                  cwd=ROOT, env=environment(faults[i], {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    outcomes = []
    for p in processes:
        out, err = p.communicate(timeout=400)
        outcomes.append((p.returncode, out, err))
    return outcomes


@pytest.fixture(scope="module")
def single(config_file, tmp_path_factory):
    """The uninterrupted run: 1 process, 2 devices."""
    workdir = str(tmp_path_factory.mktemp("single") / "run")
    done = one_process(config_file, workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_a_preempted_two_process_job_ends_as_one_process_with_two_devices(config_file, single, tmp_path):
    workdir = str(tmp_path / "run")
    # SIGTERM reaches process 1 only, after student step 1: both processes agree at the next
    # log point and stop there (step 3) with a checkpoint.
    stopped = two_processes(config_file, workdir, faults=("", "student:step@1:TERM"))
    for code, _, err in stopped:
        assert code == 128 + signal.SIGTERM, err[-3000:]
        assert "stopped by SIGTERM at student step 3 of 6 (checkpoint saved)" in err
    finished = two_processes(config_file, workdir)
    assert [code for code, _, _ in finished] == [0, 0], finished[0][2][-3000:]
    primary, other = finished[0][1], finished[1][1]
    assert "[student] resumed from step 3" in primary
    assert "processes=2 devices=2 (1 per process, cpu)" in primary
    assert other == ""  # one console: the primary's

    # The resumed teacher training is the uninterrupted one.
    for name in ("fr", "fa"):
        got, want = (json.load(open(next(os.path.join(d, "teachers", f) for f in os.listdir(os.path.join(d, "teachers"))
                                          if f.startswith(f"{name}_") and f.endswith(".report.json"))))
                     for d in (workdir, single))
        assert [h["step"] for h in got["history"]] == list(range(1, 5)), name
        np.testing.assert_allclose([h["loss"] for h in got["history"]], [h["loss"] for h in want["history"]],
                                   rtol=1e-5, err_msg=name)
    # Evaluations, best checkpoint selection and results: the same, to float tolerance.
    got, want = ([json.loads(line) for line in open(os.path.join(d, "eval.jsonl"))] for d in (workdir, single))
    assert [e["step"] for e in got] == [e["step"] for e in want] == [3, 6]
    for a, b in zip(got, want):
        for key, value in b.items():
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, abs=1e-5), key
    assert json.load(open(os.path.join(workdir, "best.json")))["step"] == json.load(
        open(os.path.join(single, "best.json")))["step"]
    for name in sorted(os.listdir(os.path.join(single, "scores"))):
        with np.load(os.path.join(workdir, "scores", name)) as a, np.load(os.path.join(single, "scores", name)) as b:
            for key in b.files:
                np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=f"{name} {key}")
    for stage in ("domain_classifier", "student", "student_best"):
        a, b = (restored_arrays(os.path.join(d, "checkpoints", stage)) for d in (workdir, single))
        assert max(a) == max(b), stage
        for x, y in zip(a[max(a)], b[max(b)], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6, err_msg=stage)
    records = [(r["stage"], r["step"]) for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))]
    assert sorted(records) == sorted((r["stage"], r["step"]) for r in map(
        json.loads, open(os.path.join(single, "metrics.jsonl"))))  # each step once, written once
    got, want = (json.load(open(os.path.join(d, "results.json"))) for d in (workdir, single))
    for selection, r in want["by_selection"].items():
        assert got["by_selection"][selection]["step"] == r["step"]
        for key in ("auc", "hter", "eer", "acer", "source_val_auc"):
            assert got["by_selection"][selection][key] == pytest.approx(r[key], abs=1e-5), (selection, key)


def test_the_distributed_flags_go_together(config_file, tmp_path):
    done = subprocess.run(command(config_file, str(tmp_path / "run"), "--num_processes=2"), cwd=ROOT,
                          env=environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "main: --coordinator_address, --num_processes and --process_id go together: give all three (or none, "
        "where JAX detects the job: SLURM, Open MPI, TPU pods).")


@pytest.mark.parametrize("env, launcher", [
    ({}, None),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, None),  # a one-task SLURM job is one process
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "3"}, "SLURM"),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, "Open MPI"),
    ({"TPU_WORKER_HOSTNAMES": "t1,t2"}, "TPU pod"),
    ({"TPU_WORKER_HOSTNAMES": "t1"}, None),
])
def test_a_job_is_detected_only_where_there_are_several_processes(monkeypatch, env, launcher):
    from dtda_jax.core import distributed

    for name in ("SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE",
                 "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.cluster_detected() == launcher


def test_a_process_id_outside_the_job_is_refused():
    from dtda_jax.core import distributed
    from dtda_jax.core.errors import UserError

    with pytest.raises(UserError, match=r"--process_id=2 must be in 0..1 \(--num_processes=2\)"):
        distributed.initialize("127.0.0.1:1", 2, 2)
