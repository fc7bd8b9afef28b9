"""Configs: the shared sections (`common`), each method's own (dtda_jax/methods/<name>/config.py,
found through the method registry), validation, overrides (`overrides`) and the run record
(`records`). Imports no jax, so every config error is reported before anything heavy starts.
"""

from __future__ import annotations

import ml_collections

from dtda_jax import methods
from dtda_jax.config.common import PAPER_PROTOCOLS, common_config, flatten, validate_common
from dtda_jax.config.overrides import FREE_FORM_FIELDS, load_base, load_config_file, parse_assignment, set_field
from dtda_jax.core.errors import ConfigError

__all__ = ["ConfigError", "PAPER_PROTOCOLS", "common_config", "default_config", "validate_config",
           "apply_variant", "switches", "variant_name", "load_base", "load_config_file", "parse_assignment",
           "set_field"]


def default_config(method: str = "dtda") -> ml_collections.ConfigDict:
    """Every field of `method`'s configs with its default."""
    return methods.config_module(method).default_config()


def _is_under(field: str, prefixes) -> bool:
    return any(field == p or field.startswith(p + ".") for p in prefixes)


def check_fields(c: ml_collections.ConfigDict) -> None:
    """Refuses fields that are not part of the method's configs (another method's, or typos)."""
    module = methods.config_module(c.method.name)
    known = set(flatten(module.default_config().to_dict()))
    skip = (*FREE_FORM_FIELDS, *module.OPTIONAL_FIELDS)
    unknown = sorted(k for k in flatten(c.to_dict()) if k not in known and not _is_under(k, skip))
    if unknown:
        raise ConfigError(
            f"config.{unknown[0]}: not a field of {c.method.name} configs"
            f"{f' (nor {unknown[1:]})' if len(unknown) > 1 else ''}; it belongs to another method or "
            f"is misspelt. Start from the method's own config (dtda_jax.methods.{c.method.name}.config).")


def validate_config(c: ml_collections.ConfigDict) -> None:
    """Checks every value the run depends on before any work starts."""
    module = methods.config_module(c.method.name)
    check_fields(c)
    validate_common(c)
    module.validate(c)


def apply_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Sets the switches of `variant`, one of the config's method's ablation variants."""
    module = methods.config_module(c.method.name)
    if variant not in module.VARIANTS:
        raise ValueError(f"Unknown {module.VARIANT_LABEL} {variant!r}; choose one of {sorted(module.VARIANTS)}.")
    for key, value in module.VARIANTS[variant].items():
        c[module.SWITCHES][key] = value
    return c


def switches(c: ml_collections.ConfigDict) -> dict:
    """The method and its switches (what results.json records as "method")."""
    module = methods.config_module(c.method.name)
    section = c[module.SWITCHES]
    return {"name": c.method.name, **{k: section[k] for k in module.VARIANTS[module.DEFAULT_VARIANT]}}


def variant_name(c: ml_collections.ConfigDict) -> str:
    """The ablation variant the config's switches select, or 'custom'."""
    module = methods.config_module(c.method.name)
    chosen = {k: v for k, v in switches(c).items() if k != "name"}
    return next((name for name, preset in module.VARIANTS.items() if preset == chosen), "custom")
