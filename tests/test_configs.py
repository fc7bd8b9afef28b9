"""Every shipped config loads, validates and names a sensible protocol; CLI helpers."""

import glob
import importlib.util
import os

import pytest

from dtda_jax import config_lib
from dtda_jax.data.render import DOMAINS
from dtda_jax.main import default_workdir

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def load_config_file(path, *args):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


def test_there_are_configs():
    assert len(CONFIG_FILES) >= 5


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
@pytest.mark.parametrize("variant", sorted(config_lib.VARIANTS))
def test_config_validates_for_every_variant(path, variant):
    config = load_config_file(path, variant)
    config_lib.validate_config(config)
    assert config_lib.variant_name(config) == variant
    assert config.data.target_domain not in config.data.source_domains


def test_leave_one_domain_out_covers_every_domain():
    targets = {}
    for domain in DOMAINS:
        config = load_config_file(os.path.join(CONFIG_DIR, f"synthetic_to_{domain}.py"))
        targets[domain] = config
        assert sorted((*config.data.source_domains, config.data.target_domain)) == sorted(DOMAINS)
        assert config.data.target_domain == domain
    demo = load_config_file(os.path.join(CONFIG_DIR, "synthetic.py"))
    assert demo.to_dict() == targets["kiosk"].to_dict()


def test_unknown_variant_and_domain_are_named():
    with pytest.raises(ValueError, match="Unknown variant 'dtdaa'"):
        config_lib.synthetic_demo_config("kiosk", "dtdaa")
    with pytest.raises(ValueError, match="Unknown target domain 'mobile'"):
        config_lib.synthetic_demo_config("mobile")


@pytest.mark.parametrize("argument, expected", [
    ("configs/synthetic.py", os.path.join("runs", "synthetic")),
    ("configs/synthetic.py:baseline", os.path.join("runs", "synthetic_baseline")),
    ("/abs/path/synthetic_to_webcam.py:fr", os.path.join("runs", "synthetic_to_webcam_fr")),
])
def test_default_workdir(argument, expected):
    assert default_workdir(argument) == expected
