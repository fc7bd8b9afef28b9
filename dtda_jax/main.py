"""Command-line entry point: `python -m dtda_jax.main --config=configs/synthetic.py [--workdir=DIR]`.

Any config field can be overridden, e.g. `--config.train.num_steps=100`. A config file may
take a variant argument, e.g. `--config=configs/synthetic.py:baseline` (see README).
Without --workdir the run goes to `runs/<config name>[_<argument>]`. Rerunning the same
command in the same workdir resumes where the run stopped.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Path to a config file (get_config()).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results "
                    "(default: runs/<config name>[_<config argument>]).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_argument: str) -> str:
    """`configs/synthetic.py:baseline` -> `runs/synthetic_baseline`."""
    path, _, arg = config_argument.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", f"{name}_{arg}" if arg else name)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    from dtda_jax import train  # imported after flag parsing: jax starts up here

    workdir = flags.FLAGS.workdir or default_workdir(
        config_flags.get_config_filename(flags.FLAGS["config"]))
    train.train_and_evaluate(flags.FLAGS.config, workdir)


if __name__ == "__main__":
    app.run(main)
