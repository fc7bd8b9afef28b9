"""A run's config.json: recorded when the run starts, compared when it resumes.

A recorded config is read as the current code reads configs: fields added since it was
written take their defaults (the behaviour before they existed), older layouts are migrated
by their method (`migrate`), and fields the code no longer has (e.g. the other method's
sections that versions before the one-loop redesign recorded in every config) are ignored.
"""

from __future__ import annotations

import json
import os

import ml_collections

from dtda_jax import methods
from dtda_jax.config.common import flatten, with_defaults
from dtda_jax.core import artifacts
from dtda_jax.core.errors import ConfigError

CONFIG_FILE = "config.json"
# Fields a resumed run may change: they do not alter what was computed so far.
RESUMABLE_CHANGES = ("train.log_every", "train.eval_every", "train.checkpoint_every",
                     "data.eval_batch_size", "data.frame_store")


def recorded_config(saved: dict) -> dict:
    """A config.json's contents as the current code reads them (see the module docstring)."""
    module = methods.config_module(saved.get("method", {}).get("name", "dtda"))
    # The defaults as JSON has them (tuples become lists), like the recorded fields and the
    # current config they are compared with.
    return with_defaults(module.migrate(saved), json.loads(module.default_config().to_json()))


def read_recorded_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with."""
    return ml_collections.ConfigDict(recorded_config(artifacts.read_json(os.path.join(workdir, CONFIG_FILE))))


def config_changes(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """"field: recorded -> current" for every field that differs from the workdir's
    config.json (none when there is no config.json)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return []
    current = flatten(json.loads(config.to_json()))
    previous = flatten(recorded_config(artifacts.read_json(path)))
    changed = sorted(k for k in current if previous.get(k) != current[k] and k not in RESUMABLE_CHANGES)
    return [f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed]


def never_trained(workdir: str) -> bool:
    """True when no stage of the run in `workdir` saved a checkpoint and it wrote no results:
    a run that stopped before any work (e.g. its dataset was not prepared yet)."""
    if os.path.exists(os.path.join(workdir, "results.json")):
        return False
    root = os.path.join(workdir, "checkpoints")
    stages = [os.path.join(root, d) for d in os.listdir(root)] if os.path.isdir(root) else []
    return not any(entry.isdigit() for stage in stages if os.path.isdir(stage) for entry in os.listdir(stage))


def check_same_config(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """ConfigError listing the fields that differ from the workdir's config.json, unless the run
    there never trained (its config may then be replaced); returns those differences."""
    changes = config_changes(config, workdir)
    if changes and not never_trained(workdir):
        raise ConfigError(
            f"{workdir} holds a run started with a different config ({', '.join(changes)}). Resume it "
            "with the same config, or start a new run in a fresh --workdir.")
    return changes


def record_config(config: ml_collections.ConfigDict, workdir: str, log=print) -> None:
    """Writes config.json when the run starts training; refuses to resume a workdir that was
    started with another config (one that never trained is replaced, with a line saying so)."""
    changes = check_same_config(config, workdir)
    if changes:
        log(f"[run] replacing the config.json of a run that never trained ({', '.join(changes)})")
    artifacts.write_json(os.path.join(workdir, CONFIG_FILE), json.loads(config.to_json()))
