"""Converted checkpoints: the on-disk format every pretrained or trained-here weight uses.

A converted checkpoint is a directory that configs point at:

    OUT/manifest.json   kind, architecture, source file and its sha256, shapes, tool version
    OUT/variables/      Orbax checkpoint of {"params": ..., "batch_stats": ...}

Writers: the converters of released PyTorch checkpoints (:mod:`dtda_jax.weights.converters`)
and the project's own teacher training (:mod:`dtda_jax.teachers.training`). Readers check
the kind and the architecture against the config before anything is restored.
"""

from __future__ import annotations

import datetime
import os
import shutil
from typing import Any, Mapping

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from dtda_jax.core import artifacts
from dtda_jax.core.errors import UserError

MANIFEST = "manifest.json"
VARIABLES = "variables"
FORMAT_VERSION = 1

# The kinds of model a converted checkpoint can hold (manifest "kind").
KIND_ARCFACE = "arcface_iresnet"
KIND_STARGAN = "stargan_discriminator"
KIND_RESNET18 = "torchvision_resnet18"
KIND_VIT = "timm_vit"


class WeightsError(UserError, ValueError):
    """A converted checkpoint of the wrong kind or architecture for where the config uses it."""


class MissingWeightsError(UserError, FileNotFoundError):
    """A configured converted checkpoint does not exist (or is not one)."""


def _shapes(variables: Mapping[str, Any]) -> dict[str, list[int]]:
    return {"/".join(p): list(np.shape(v)) for p, v in flatten_dict(variables).items()}


def _local_checkpointer():
    """An Orbax checkpointer of this process alone: converted weights are whole numpy trees that
    one process writes (the primary) or each process reads for itself, with no barrier across
    the processes of a job."""
    import orbax.checkpoint as ocp

    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me}))


def save_converted(out_dir: str, variables: Mapping[str, Any], *, kind: str,
                   architecture: Mapping[str, Any], source: str, extra: Mapping[str, Any] | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    """Writes OUT/variables (Orbax) and OUT/manifest.json atomically: a crash leaves no OUT."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it.")
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "architecture": dict(architecture),
        "source_file": os.path.abspath(source),
        "source_sha256": artifacts.file_sha256(source),
        "num_params": int(sum(np.size(v) for v in jax.tree.leaves(variables.get("params", {})))),
        "shapes": _shapes(variables),
        "converted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(dict(extra) if extra else {}),
    }

    def fill(staging: str) -> None:
        checkpointer = _local_checkpointer()
        checkpointer.save(os.path.join(staging, VARIABLES), jax.tree.map(np.asarray, dict(variables)))
        checkpointer.wait_until_finished()
        artifacts.write_json(os.path.join(staging, MANIFEST), manifest)
        if os.path.exists(out_dir):  # --overwrite: the old one goes only once the new one is complete
            shutil.rmtree(out_dir)

    artifacts.write_directory_atomically(out_dir, fill)
    return manifest


def read_manifest(path: str) -> dict[str, Any]:
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest_path) or not os.path.isdir(os.path.join(path, VARIABLES)):
        raise MissingWeightsError(
            f"{path!r} is not a converted checkpoint (expected {MANIFEST} and {VARIABLES}/ in it). "
            "Create it with the scripts in tools/ (see README, 'Real teachers').")
    return artifacts.read_json(manifest_path)


def check_converted(path: str, kind: str, field: str = "") -> dict[str, Any]:
    """The manifest of a converted checkpoint, after checking it holds a `kind` model."""
    where = f" (set by {field})" if field else ""
    try:
        manifest = read_manifest(path)
    except MissingWeightsError as err:
        raise MissingWeightsError(f"{err}{where}") from None
    if manifest.get("kind") != kind:
        raise WeightsError(f"{path!r}{where} holds a converted {manifest.get('kind')!r}, but a {kind!r} "
                           "is needed there; check which checkpoint the config points at.")
    return manifest


def load_converted(path: str, template: Any | None, *, kind: str,
                   architecture: Mapping[str, Any] | None = None,
                   config_fields: Mapping[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores converted variables; checks kind and architecture.

    `template` (shapes/dtypes, e.g. from `jax.eval_shape`) fixes the structure to restore
    into; None takes it from the manifest.

    `architecture` is what the config asks for; every entry must equal the manifest's, and a
    mismatch names the config field to change (`config_fields` maps entry -> field).
    """
    manifest = check_converted(path, kind)
    wrong = {k: (v, manifest["architecture"].get(k)) for k, v in (architecture or {}).items()
             if manifest["architecture"].get(k) != v}
    if wrong:
        fields = config_fields or {}
        fixes = ", ".join(f"{fields.get(k, k)}={got!r} (config has {want!r})"
                          for k, (want, got) in wrong.items())
        raise WeightsError(f"{path!r} was converted from a different architecture; set {fixes}.")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    if template is None:  # the manifest's shapes (all converted variables are float32)
        template = unflatten_dict({tuple(k.split("/")): jax.ShapeDtypeStruct(tuple(v), np.float32)
                                  for k, v in manifest["shapes"].items()})
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=device), template)
    variables = _local_checkpointer().restore(os.path.join(os.path.abspath(path), VARIABLES),
                                                   abstract)
    return variables, manifest
