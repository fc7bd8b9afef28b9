"""Command-line entry point: `python -m dtda_jax.main --config=configs/synthetic.py [--workdir=DIR]`.

Any config field can be overridden, e.g. `--config.train.num_steps=100`. A config file may
take a variant argument, e.g. `--config=configs/synthetic.py:baseline` (see README).
Without --workdir the run goes to `runs/<config name>[_<argument>]`. Rerunning the same
command in the same workdir resumes where the run stopped. Every process of a multi-process
job runs the same command (with --coordinator_address, --num_processes and --process_id
where JAX does not detect the job; see README, "Several GPUs and clusters").

A mistake (a misspelt field, a bad value, a missing file or dataset, a workdir in use or
started with another config) is answered with one line naming it and the fix, and exit
status 2; `--verbosity=1` shows the traceback too. SIGTERM or Ctrl-C stops the run after the
current step with a checkpoint of it (exit status 143 or 130); a second signal stops at once.
"""

import difflib
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Path to a config file (get_config()).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results "
                    "(default: runs/<config name>[_<config argument>]).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 of a multi-process job "
                    "(with --num_processes and --process_id; not needed where JAX detects the job: "
                    "SLURM, Open MPI, TPU pods).")
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process job.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process job, 0..num_processes-1.")
flags.mark_flags_as_required(["config"])


def default_workdir(config_argument: str) -> str:
    """`configs/synthetic.py:baseline` -> `runs/synthetic_baseline`."""
    path, _, arg = config_argument.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", f"{name}_{arg}" if arg else name)


def fail(message: str) -> None:
    print(f"main: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def config_argument(argv) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def unknown_field_message(argv, argument: str) -> str | None:
    """For the first `--config.<field>=` override naming a field the config lacks: that field
    and the nearest ones it has."""
    from dtda_jax.config import common, load_config_file

    path, _, arg = argument.partition(":")
    known = list(common.flatten(load_config_file(path, *([arg] if arg else [])).to_dict()))
    for flag in argv:
        field = flag[2:].partition("=")[0].removeprefix("config.") if flag.startswith("--config.") else None
        if field is not None and field not in known:
            close = difflib.get_close_matches(field, known, n=3, cutoff=0.6)
            hint = (f"; did you mean {' or '.join(close)}?" if close else
                    "; see the config file for the fields it has.")
            return f"--config.{field}: {path} has no field {field}{hint}"
    return None


def last_error_line(text: str) -> str:
    """The exception line at the end of a message that embeds a traceback (config loading)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors[-1] if errors else lines[-1]) if lines else str(text)


def parse_flags(argv):
    """absl's flag parsing, with user mistakes answered in one line (exit status 2)."""
    argument = config_argument(argv)
    if argument is not None:
        path = argument.partition(":")[0]
        if not os.path.isfile(path):
            fail(f"--config={argument}: no such config file {path}; the configs are in configs/.")
    try:
        return flags.FLAGS(argv)
    except (flags.UnrecognizedFlagError, AttributeError, KeyError) as err:
        # ml_collections reports a misspelt --config.<field> as one of these.
        message = unknown_field_message(argv, argument) if argument is not None else None
        fail(message or f"{last_error_line(err)}; see --help.")
    except flags.Error as err:
        fail(last_error_line(err))


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; every setting is a --config.<field>=<value> flag.")
    debug = flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 1
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    from dtda_jax import train  # imported after flag parsing: jax starts up here
    from dtda_jax.core import distributed, preemption
    from dtda_jax.core.errors import UserError

    workdir = flags.FLAGS.workdir or default_workdir(
        config_flags.get_config_filename(flags.FLAGS["config"]))
    try:
        distributed.initialize(flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id)
        preemption.install()  # after joining: JAX's runtime installs a SIGTERM handler of its own
        train.train_and_evaluate(flags.FLAGS.config, workdir)
    except preemption.Preempted as err:
        print(f"[run] {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_status)
    except UserError as err:
        if debug:
            raise
        fail(str(err))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
