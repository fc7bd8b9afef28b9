"""The package's layering (docs/architecture.md), read from the source: the library core imports
no method, no method imports another, configs and a bundle's scoring path load without jax,
and nothing outside the methods dispatches on a method's name."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dtda_jax"
METHODS = ("dtda", "kdfas")


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every dtda_jax module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.startswith("dtda_jax")}


def files_under(folder: str) -> list[pathlib.Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["core", "config", "data", "models", "faces", "weights", "evaluation",
                                    "inference", "teachers", "deploy"])
def test_library_packages_import_no_method(folder):
    """Only the registry's lookups reach a method (dtda_jax.methods.config_module /
    training_module), never an import of a method's code."""
    for path in files_under(folder):
        leaked = {m for m in imported_modules(path) if m.startswith("dtda_jax.methods.")}
        assert not leaked, f"{path.relative_to(PACKAGE)} imports {leaked}"


@pytest.mark.parametrize("method", METHODS)
def test_no_method_imports_another(method):
    others = [m for m in METHODS if m != method]
    for path in files_under(f"methods/{method}"):
        leaked = {m for m in imported_modules(path) for o in others if m.startswith(f"dtda_jax.methods.{o}")}
        assert not leaked, f"{path.relative_to(PACKAGE)} imports {leaked}"


def test_core_imports_only_core_config_and_weights():
    allowed = ("dtda_jax.core", "dtda_jax.config.common", "dtda_jax.weights.store")
    for path in files_under("core"):
        for module in imported_modules(path):
            parent_of_allowed = any(a.startswith(module + ".") for a in allowed)
            assert module.startswith(allowed) or parent_of_allowed, f"{path.relative_to(PACKAGE)} imports {module}"


def test_nothing_outside_the_methods_dispatches_on_a_method_name():
    """predict, figures, the runner and train find a method through the registry."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "methods" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = {c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)}
                assert not names & set(METHODS), f"{path.relative_to(PACKAGE)}:{node.lineno} compares with {names}"


def loaded_packages(code: str, packages: tuple[str, ...]) -> list[str]:
    """The modules of `packages` that running `code` in a fresh interpreter loads."""
    script = (code + "\nimport sys\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r}))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    return eval(out.stdout)  # noqa: S307 - our own print of a list of names


def test_configs_and_their_validation_load_without_jax():
    """Every config error is reported before jax starts (the runner checks a whole sweep first)."""
    code = ("import glob\n"
            "from dtda_jax import config\n"
            "for path in glob.glob('configs/*.py'):\n"
            "    config.validate_config(config.load_config_file(path, *(['high'] if 'p2' in path else [])))")
    assert loaded_packages(code, ("jax", "flax", "optax", "orbax")) == []


def test_a_bundles_scoring_path_loads_without_jax():
    """`predict --bundle` and `--stream` run with numpy, OpenCV and ONNX Runtime alone (the
    bundle's README installs only those and dtda-jax without its dependencies)."""
    code = ("from dtda_jax.inference import predict, stream\n"
            "from dtda_jax.deploy import runtime, operating_point\n"
            "from dtda_jax.faces import mtcnn, crop")
    assert loaded_packages(code, ("jax", "flax", "optax", "orbax", "PIL", "grain", "tensorflow_datasets",
                                  "ml_collections", "absl", "etils", "tensorboardX", "onnx")) == []
