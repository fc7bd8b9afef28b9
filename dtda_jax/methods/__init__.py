"""Training methods as plug-ins, found by `config.method.name`.

Each method is a package `dtda_jax.methods.<name>` with two entry modules:

* `config` (imports no jax): `default_config()` (the shared sections of
  `dtda_jax.config.common` plus the method's own), its ablation `VARIANTS` (name -> switch
  values), `DEFAULT_VARIANT`, `SWITCHES` (the section holding the switches) and
  `VARIANT_LABEL`, `validate` (its own sections), `migrate` (older config.json layouts) and
  `OPTIONAL_FIELDS` (sections a config may leave out);
* `method`: `train(ctx)` (its stages, returning the results dict or None when stopped early),
  `check_weight_files(config)`, `scored_model(config)` (the model and optimiser whose
  `checkpoints/student` state `predict` scores), `describe_scored_model(config)` (one line
  naming it, for exported bundles), `feature_model(config)` (the figures' student),
  `describe_models(results)` (the run's closing lines), `face_pretraining_targets(config,
  every_role)` (the networks its runs start from pre-trained on faces, for
  tools/pretrain_on_faces.py).

The rest of the framework (`train`, `predict`, `figures`, the experiment runner) reaches a
method only through `config_module` and `training_module`; a new method is a new package and
one line in `PACKAGES`. No method imports another.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dtda_jax.core.errors import ConfigError

PACKAGES = {"dtda": "dtda_jax.methods.dtda", "kdfas": "dtda_jax.methods.kdfas"}
NAMES = tuple(PACKAGES)


def _package(name: str) -> str:
    if name not in PACKAGES:
        raise ConfigError(f"config.method.name: must be one of {NAMES}, got {name!r}.")
    return PACKAGES[name]


def config_module(name: str) -> ModuleType:
    """The method's config module (no jax)."""
    return importlib.import_module(_package(name) + ".config")


def training_module(name: str) -> ModuleType:
    """The method's training and scoring module."""
    return importlib.import_module(_package(name) + ".method")


def all_variants() -> dict[str, str]:
    """{variant: method} over every method (variant names are unique across methods)."""
    return {v: name for name in NAMES for v in config_module(name).VARIANTS}
