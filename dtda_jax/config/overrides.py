"""Config files and field overrides: loading `get_config(*args)` of a file, FIELD=VALUE
assignments (`--set` of the runner and of teacher training)."""

from __future__ import annotations

import ast
import importlib.util
import os
from types import ModuleType
from typing import Any

import ml_collections

from dtda_jax.core.errors import ConfigError

# Subtrees whose fields are free-form (checked where they are used): `--set` may add keys there.
FREE_FORM_FIELDS = ("data.synthetic_overrides",)


def load_module(path: str) -> ModuleType:
    """Imports a config file by its path (config files are not a package)."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_base(config_file: str, base: str) -> ModuleType:
    """The base config `base` (a path relative to `config_file`'s folder) that a config file
    builds on, e.g. `load_base(__file__, "base/dtda_real.py")`."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), base))


def load_config_file(path: str, *args: str) -> ml_collections.ConfigDict:
    """`get_config(*args)` of a config file such as configs/synthetic.py (as --config=path:arg);
    ConfigError naming the file when it fails."""
    try:
        return load_module(path).get_config(*args)
    except ConfigError:
        raise
    except Exception as err:  # the config file's own code: an unknown variant, a typo, an import
        raise ConfigError(f"{path}{':' + ','.join(args) if args else ''}: {type(err).__name__}: {err}") from err


def parse_assignment(assignment: str, example: str = "train.num_steps=200") -> tuple[str, Any]:
    """"train.num_steps=200" -> ("train.num_steps", 200): the value read as a Python literal,
    or kept as text when it is not one (a bare word such as cosine)."""
    field, sep, text = assignment.partition("=")
    if not sep or not field.strip():
        raise ValueError(f"--set {assignment!r}: expected FIELD=VALUE, e.g. {example}.")
    try:
        return field.strip(), ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return field.strip(), text.strip()


def set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    """`config.<field> = value` for a dotted field such as "train.num_steps" (or a new key of a
    free-form subtree, e.g. "data.synthetic_overrides.test_identities_per_domain"). KeyError when the
    config has no such field (the caller names it); ValueError when the value's type does
    not fit the field."""
    *parents, key = field.split(".")
    node = config
    for part in parents:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(field)
        node = node[part]
    free_form = ".".join(parents) in FREE_FORM_FIELDS
    if not isinstance(node, ml_collections.ConfigDict) or (key not in node and not free_form):
        raise KeyError(field)
    try:
        node[key] = value
    except TypeError as err:
        raise ValueError(f"{field}: {err}") from None
