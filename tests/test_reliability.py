"""What survives what, with real processes and real signals (README, "Outputs and resuming").

Every run here is `python -m dtda_jax.main` (or tools/train_teachers.py) in a subprocess on a
tiny config. Kills are real: SIGKILL / SIGTERM / SIGINT sent to the process, by the parent or
by the process itself at a named point (DTDA_JAX_FAULT, dtda_jax/core/faults.py) so they land
between an evaluation and its checkpoint, inside a checkpoint write, and so on. After every
sequence of kills the resumed run must end with the files of an uninterrupted run: the same
eval.jsonl, best.json, best checkpoint, results.json, scores/ and latest parameters, and every
log (metrics.jsonl, TensorBoard events) holding each step once.
"""

import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 12 steps of the baseline student, a checkpoint every 2 steps and an evaluation every 4.
CONFIG = '''
from tests.conftest import tiny_config


def get_config(variant="baseline"):
    c = tiny_config({data_dir!r}, variant)
    c.train.num_steps, c.train.log_every, c.train.checkpoint_every, c.train.eval_every = 12, 2, 2, 4
    return c
'''


def environment(fault="", env=None):
    # Every program in the session's compilation cache, however fast it compiles: each
    # subprocess then only looks its programs up.
    return {**os.environ, "PYTHONPATH": ROOT, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **(env or {}),
            "DTDA_JAX_FAULT": fault}


def run(args, fault="", env=None):
    """A command of the project in a subprocess (the repository as working directory)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment(fault, env), capture_output=True,
                          text=True, timeout=300)


def start(config_file, workdir, **pipes):
    """`python -m dtda_jax.main` started in the background."""
    return subprocess.Popen([sys.executable, "-m", "dtda_jax.main", f"--config={config_file}", f"--workdir={workdir}"],
                            cwd=ROOT, env=environment(), text=True, **pipes)


@pytest.fixture(scope="module")
def config_file(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "tiny_run.py"
    path.write_text(CONFIG.format(data_dir=str(data_dir)))
    return str(path)


def main(config_file, workdir, *flags, fault=""):
    return run(["-m", "dtda_jax.main", f"--config={config_file}", f"--workdir={workdir}", *flags], fault)


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory):
    """An uninterrupted run."""
    workdir = str(tmp_path_factory.mktemp("reference") / "run")
    done = main(config_file, workdir)
    assert done.returncode == 0, done.stderr
    return workdir


# ---------------------------------------------------------------------------------------------
# Comparing a resumed run with the uninterrupted one


def restored_arrays(directory):
    """{step: flat arrays of its state} of an Orbax stage directory, read as numpy without a
    template (so also checkpoints written by the processes of a multi-process job)."""
    import jax

    manager = ocp.CheckpointManager(directory)
    out = {}
    for step in manager.all_steps():
        path = os.path.join(directory, str(step), "state")
        checkpointer = ocp.PyTreeCheckpointer()
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                checkpointer.metadata(path).item_metadata.tree)
        tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
        out[step] = [np.asarray(x) for x in jax.tree.leaves(tree)]
    manager.close()
    return out


def tensorboard_points(workdir):
    """(tag, step) of every scalar in the run's TensorBoard event files (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    points = []
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.*")):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            points += [(v.tag, event.step) for v in event.summary.value]
    return points


def assert_same_as_uninterrupted(workdir, reference):
    for name in ("eval.jsonl", "best.json"):
        assert open(os.path.join(workdir, name)).read() == open(os.path.join(reference, name)).read(), name
    got, want = (json.load(open(os.path.join(d, "results.json"))) for d in (workdir, reference))
    got.pop("wall_time_s_this_process"), want.pop("wall_time_s_this_process")
    assert got == want
    assert sorted(os.listdir(os.path.join(workdir, "scores"))) == sorted(os.listdir(os.path.join(reference, "scores")))
    for name in os.listdir(os.path.join(reference, "scores")):
        with np.load(os.path.join(workdir, "scores", name)) as a, np.load(os.path.join(reference, "scores", name)) as b:
            assert all(np.array_equal(a[k], b[k]) for k in b.files), name
    for stage in ("student", "student_best"):
        a, b = (restored_arrays(os.path.join(d, "checkpoints", stage)) for d in (workdir, reference))
        last = max(b)
        assert max(a) == last, stage
        assert all(np.array_equal(x, y) for x, y in zip(a[last], b[last], strict=True)), stage
    records = [(r["stage"], r["step"]) for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))]
    assert len(records) == len(set(records)), "metrics.jsonl repeats a step"
    points = tensorboard_points(workdir)
    assert points and len(points) == len(set(points)), "a TensorBoard scalar repeats a step"
    leftovers = glob.glob(os.path.join(workdir, "checkpoints", "*", "*tmp*"))
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------
# Kills at chosen points, SIGTERM, and kills at random moments


def test_kills_and_sigterm_at_any_point_end_as_the_uninterrupted_run(config_file, reference, tmp_path):
    """One workdir through a sequence of stops, each followed by a restart: SIGKILL in the
    middle of the stage, between an evaluation's eval.jsonl line and its best checkpoint,
    between the best checkpoint and best.json, after an evaluation before its step's
    checkpoint, inside a checkpoint write, SIGTERM (finishes the step, checkpoints it, one
    line, exit status 143), and two SIGKILLs from outside at random moments."""
    workdir = str(tmp_path / "run")
    for fault in ("student:step@3:KILL", "student:evaluated@1:KILL", "student:best_saved@1:KILL",
                  "student:before_commit@2:KILL", "checkpoint_write@2:KILL+2"):
        done = main(config_file, workdir, fault=fault)
        assert done.returncode == -signal.SIGKILL, (fault, done.stderr[-2000:])
    lines = done.stdout.splitlines()
    assert any(line.startswith("[lock] taking over") and "ended without releasing it" in line for line in lines)
    done = main(config_file, workdir, fault="student:step@2:TERM")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    stopped = [line for line in done.stderr.splitlines() if "stopped by SIGTERM" in line]
    assert len(stopped) == 1 and "(checkpoint saved). Rerun the same command to resume." in stopped[0]
    assert "Traceback" not in done.stderr
    rng = np.random.default_rng(0)
    for _ in range(2):  # kills from outside at random moments
        process = start(config_file, workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = main(config_file, workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_as_uninterrupted(workdir, reference)


def test_sigint_is_one_line_and_a_second_signal_stops_at_once(config_file, tmp_path):
    workdir = str(tmp_path / "run")

    def started():
        process = start(config_file, workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for line in process.stdout:  # training has started
            if line.startswith("[student] step"):
                return process
        raise AssertionError(process.stderr.read())

    process = started()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    messages = [line for line in err.splitlines() if not line[:1] in "WI" or line.startswith("[")]
    assert len([m for m in messages if "stopped by SIGINT" in m]) == 1 and "Traceback" not in err
    process = started()
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)  # the second one: no checkpoint, at once
    process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints


@pytest.fixture(scope="module")
def interrupted(config_file, tmp_path_factory):
    """A run stopped by SIGTERM after step 7: checkpoints of steps 6 and 7."""
    workdir = str(tmp_path_factory.mktemp("interrupted") / "run")
    done = main(config_file, workdir, fault="student:step@7:TERM")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "student"))) == ["6", "7"]
    return workdir


def damage(step_dir, kind):
    state = os.path.join(step_dir, "state")
    largest = max(glob.glob(os.path.join(state, "ocdbt.process_0", "d", "*")), key=os.path.getsize)
    if kind == "truncated file":
        with open(largest, "r+b") as f:
            f.truncate(os.path.getsize(largest) // 2)
    elif kind == "flipped bytes":
        with open(largest, "r+b") as f:
            f.seek(os.path.getsize(largest) // 2)
            chunk = f.read(16)
            f.seek(os.path.getsize(largest) // 2)
            f.write(bytes(b ^ 0xFF for b in chunk))
    elif kind == "missing metadata file":
        os.remove(os.path.join(state, "_METADATA"))
    elif kind == "emptied manifest":
        open(os.path.join(state, "manifest.ocdbt"), "w").close()
    elif kind == "missing iterator file":
        os.remove(os.path.join(step_dir, "data", "process_0-of-1.json"))
    elif kind == "missing step metadata":
        os.remove(os.path.join(step_dir, "_CHECKPOINT_METADATA"))


@pytest.mark.parametrize("kind", ["truncated file", "flipped bytes", "missing metadata file", "emptied manifest",
                                  "missing iterator file", "missing step metadata"])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_previous_one_used(
        kind, interrupted, config_file, reference, tmp_path, capsys):
    """Resumed in this process (the damage is in the files; the kills above are the processes')."""
    from dtda_jax import train
    from dtda_jax.config import load_config_file

    workdir = str(tmp_path / "run")
    shutil.copytree(interrupted, workdir)
    damage(os.path.join(workdir, "checkpoints", "student", "7"), kind)
    capsys.readouterr()
    train.train_and_evaluate(load_config_file(config_file), workdir)
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if line.startswith("[checkpoint]")]
    assert len(said) == 2 and "checkpoints/student/7" in said[0] and "moved it to" in said[0], said
    assert said[1] == "[checkpoint] resuming from the previous checkpoint, step 6, instead"
    assert "[student] resumed from step 6" in out
    assert os.listdir(os.path.join(workdir, "checkpoints", "student.damaged"))[0].startswith("7-")
    assert_same_as_uninterrupted(workdir, reference)


def test_no_usable_checkpoint_is_one_message_with_the_fix(interrupted, config_file, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(interrupted, workdir)
    damage(os.path.join(workdir, "checkpoints", "student", "7"), "flipped bytes")
    damage(os.path.join(workdir, "checkpoints", "student", "6"), "missing iterator file")
    done = main(config_file, workdir)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("main:")]
    assert "none of the checkpoints" in message and "Rerun the same command to train this stage" in message
    done = main(config_file, workdir)  # as it says: the stage trains from its start
    assert done.returncode == 0, done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# Two runs on one workdir; a run that never trained


def test_a_second_run_on_a_workdir_in_use_is_refused(config_file, tmp_path):
    workdir = str(tmp_path / "run")
    first = start(config_file, workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in first.stdout:
        if line.startswith("[student] step"):
            break
    first.send_signal(signal.SIGSTOP)  # holding the lock, frozen
    try:
        second = main(config_file, workdir)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"is in use by another run: PID {first.pid} on host {socket.gethostname()}" in second.stderr
    first.communicate(timeout=120)
    assert first.returncode == 0


def test_a_run_that_stopped_before_training_does_not_block_its_corrected_retry(config_file, data_dir, tmp_path):
    """The dataset is not where the config says: one line with the fix, no config.json; the
    corrected command then runs in the same workdir. A config.json of a run that never
    trained is replaced (with a line), not compared."""
    workdir = str(tmp_path / "run")
    done = main(config_file, workdir, f"--config.data.data_dir={tmp_path / 'empty'}",
                "--config.data.generate_if_missing=False")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is not in config.data.data_dir" in done.stderr and "generate_if_missing=True" in done.stderr
    assert not os.path.exists(os.path.join(workdir, "config.json"))
    with open(os.path.join(workdir, "config.json"), "w") as f:  # as versions before this one left it
        json.dump({"seed": 5, "method": {"name": "dtda"}}, f)
    done = main(config_file, workdir, "--config.train.num_steps=2")
    assert done.returncode == 0, done.stderr[-2000:]
    (replaced,) = [line for line in done.stdout.splitlines() if line.startswith("[run] replacing")]
    assert replaced.startswith("[run] replacing the config.json of a run that never trained (") and \
        "seed: 5 -> 0" in replaced


# ---------------------------------------------------------------------------------------------
# Command-line mistakes: one line naming the problem and the fix, exit status 2, no traceback


def one_line_error(done, prefix):
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    (line,) = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
    return line


@pytest.mark.parametrize("flags, message", [
    (["--config.train.num_stepz=5"], "has no field train.num_stepz; did you mean train.num_steps"),
    (["--config.data.image_size=50"], "config.data.image_size: must be a multiple of 32"),
    (["--config.train.num_steps=abc"], "--config.train.num_steps=abc"),
    (["extra"], "unexpected arguments ['extra']"),
])
def test_main_answers_config_mistakes_in_one_line(flags, message, config_file, tmp_path):
    line = one_line_error(main(config_file, str(tmp_path / "run"), *flags), "main:")
    assert message in line


def test_main_answers_file_mistakes_in_one_line(config_file, reference, tmp_path):
    line = one_line_error(run(["-m", "dtda_jax.main", f"--config={tmp_path / 'nope.py'}"]), "main:")
    assert "no such config file" in line
    (tmp_path / "file").write_text("")
    line = one_line_error(main(config_file, str(tmp_path / "file")), "main:")
    assert "cannot use" in line and "choose a writable folder" in line
    line = one_line_error(main(config_file, "/proc/no/such/dir"), "main:")
    assert "cannot use /proc/no/such/dir" in line
    line = one_line_error(main(config_file, reference, "--config.optim.learning_rate=0.5"), "main:")
    assert "holds a run started with a different config (optim.learning_rate: 0.01 -> 0.5)" in line


@pytest.mark.parametrize("argv, prefix, message", [
    (["-m", "dtda_jax.predict", "--workdir", "/no/run", "/no/photo.png"], "predict:",
     "no such file or folder: /no/photo.png"),
    (["-m", "dtda_jax.experiments", "--configs=configs/nope.py"], "experiments:", "--configs: no such file"),
    (["-m", "dtda_jax.figures", "--sweep=/no/sweep"], "figures:", "--sweep /no/sweep does not exist"),
    (["tools/prepare_fas.py", "--dataset=casia_fasd", "--manual_dir=/no/casia"], "prepare_fas:", "does not exist"),
    (["tools/train_teachers.py", "--config=configs/synthetic.py", "--out=/tmp/unused", "--set", "fr.stepz=1"],
     "train_teachers:", "unknown teacher training setting 'fr.stepz'"),
    (["tools/convert_arcface.py", "/no/backbone.pth", "--out=/tmp/unused"], "error:", "does not exist"),
])
def test_every_command_answers_a_mistake_in_one_line(argv, prefix, message):
    assert message in one_line_error(run(argv), prefix)


def test_converters_without_torch_and_pickled_objects_are_one_line(tmp_path):
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    (tmp_path / "D.ckpt").write_bytes(b"x")
    done = run(["tools/convert_stargan.py", str(tmp_path / "D.ckpt"), "--out", str(tmp_path / "out")],
               env={"PYTHONPATH": f"{tmp_path / 'no_torch'}:{ROOT}"})
    line = one_line_error(done, "error:")
    assert "needs torch, which is not installed: pip install torch==2.13.0" in line
    torch = pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"main.0.weight": torch.zeros(1), "extra": Payload()}, tmp_path / "evil.ckpt")
    line = one_line_error(run(["tools/convert_stargan.py", str(tmp_path / "evil.ckpt"), "--out",
                               str(tmp_path / "out")]), "error:")
    assert "refused without loading them" in line and "Unsupported global" in line
    assert "weights_only" not in line and "ran" not in line.split("Detail")[0]


def test_teacher_training_killed_resumes_to_the_same_teacher(config_file, tmp_path):
    """tools/train_teachers.py killed in the middle of the attribute teacher's training resumes
    from its last stage checkpoint and saves the teacher an uninterrupted training saves."""
    settings = ["--set", "corpus.train_identities=5", "--set", "corpus.heldout_identities=3",
                "--set", "corpus.videos_per_identity=2", "--set", "corpus.frames_per_video=2",
                "--set", "fa.steps=12", "--set", "fa.batch_size=8", "--set", "fa.warmup_steps=2",
                "--set", "checkpoint_every=4", "--set", "log_every=4", "--set", "eval.batch_size=16"]

    def train(out, fault=""):
        return run(["tools/train_teachers.py", f"--config={config_file}", f"--out={out}", "--teachers=fa",
                    *settings], fault)

    straight = train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = train(tmp_path / "resumed", fault="teacher fa:step@6:KILL")
    assert killed.returncode == -signal.SIGKILL
    resumed = train(tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[teacher fa] resumed from step 4" in resumed.stdout
    (a,), (b,) = (glob.glob(str(tmp_path / d / "fa_stargan_*[!n]")) for d in ("straight", "resumed"))
    assert os.path.basename(a) == os.path.basename(b)
    for x, y in zip(*(restored_variables(p) for p in (a, b)), strict=True):
        np.testing.assert_array_equal(x, y)
    history = [json.load(open(p + ".report.json"))["history"] for p in (a, b)]
    assert history[0] == history[1] and [h["step"] for h in history[1]] == list(range(1, 13))


def restored_variables(path):
    import jax

    tree = ocp.StandardCheckpointer().restore(os.path.join(path, "variables"))
    return [np.asarray(x) for x in jax.tree.leaves(tree)]
