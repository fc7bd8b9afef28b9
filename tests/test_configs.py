"""Every shipped config loads, validates and names a sensible protocol; CLI helpers."""

import glob
import os

import pytest

from dtda_jax import config_lib
from dtda_jax.data.render import DOMAINS
from dtda_jax.main import default_workdir

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def test_there_are_configs():
    assert len(CONFIG_FILES) >= 5


def variants_of(path):
    """The ablation rows a config file takes: KDFAS's for configs/kdfas_*.py, else DTDA's."""
    kdfas = os.path.basename(path).startswith("kdfas_")
    return sorted(config_lib.KDFAS_VARIANTS if kdfas else config_lib.VARIANTS)


@pytest.mark.parametrize("path, variant", [(p, v) for p in CONFIG_FILES for v in variants_of(p)],
                         ids=lambda x: os.path.basename(x))
def test_config_validates_for_every_variant(path, variant):
    argument = f"high,{variant}" if path.endswith("celeba_spoof_p2.py") else variant
    config = config_lib.load_config_file(path, argument)
    config_lib.validate_config(config)
    if config.data.target_domain in config.data.source_domains:  # CelebA-Spoof, one domain
        assert config.data.source_domains == ("celeba_spoof",)
        assert not config.method.use_domain_attack  # the attack needs >= 2 domains
        expected = "fr_fa" if variant in ("dtda", "dat") else variant
        assert config_lib.variant_name(config) == expected
    else:
        assert config_lib.variant_name(config) == variant


@pytest.mark.parametrize("name", sorted(config_lib.PAPER_PROTOCOLS))
def test_paper_protocol_configs(name):
    """One file per protocol of the paper, at its settings: 256 px, batch 96, SGD 0.1, real
    teachers and ImageNet initialisation, the SSDG split convention."""
    config = config_lib.load_config_file(os.path.join(CONFIG_DIR, f"{name}.py"))
    sources, target = config_lib.PAPER_PROTOCOLS[name]
    letters = {"oulu_npu": "o", "casia_fasd": "c", "replay_attack": "i", "msu_mfsd": "m"}
    assert name == "".join(letters[s] for s in sources) + "_to_" + letters[target]
    assert (config.data.dataset, config.data.source_domains, config.data.target_domain) == \
        ("real_fas", sources, target)
    assert config.data.image_size == 256 and config.data.split_convention == "ssdg"
    assert 2 * len(sources) * config.data.samples_per_group == 96
    assert (config.optim.learning_rate, config.optim.momentum, config.optim.weight_decay) == (0.1, 0.9, 5e-4)
    assert config.teachers.fr_checkpoint and config.teachers.fa_checkpoint and config.model.init_checkpoint
    doc = open(os.path.join(CONFIG_DIR, f"{name}.py")).read()
    assert f"--config=configs/{name}.py" in doc and "HTER" in doc and "AUC" in doc


def test_celeba_spoof_p2_takes_a_sensor_group():
    path = os.path.join(CONFIG_DIR, "celeba_spoof_p2.py")
    assert config_lib.load_config_file(path, "middle").data.real.celeba_spoof_protocol == "p2_middle"
    assert config_lib.variant_name(config_lib.load_config_file(path, "low,baseline")) == "baseline"
    with pytest.raises(ValueError, match="low, middle or high"):
        config_lib.load_config_file(path, "medium")


@pytest.mark.parametrize("field, value, message", [
    ("data.target_domain", "oulu_npu", "only a one-dataset protocol"),
    ("data.source_domains", ("oulu_npu", "casia", "msu_mfsd"), "unknown dataset"),
    ("data.split_convention", "ssan", "split_convention: must be one of"),
    ("data.real.frame_policy", "every", "frame_policy: must be one of"),
    ("data.real.face_mode", "warp", "face_mode: must be one of"),
    ("data.real.celeba_spoof_protocol", "p3", "celeba_spoof_protocol"),
    ("data.dataset", "oulu", "data.dataset: must be one of"),
])
def test_bad_real_data_values_are_named(field, value, message):
    config = config_lib.load_config_file(os.path.join(CONFIG_DIR, "ocm_to_i.py"))
    section, key = field.rsplit(".", 1)
    node = config
    for part in section.split("."):
        node = node[part]
    node[key] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate_config(config)


def test_intra_dataset_refuses_source_val_threshold():
    config = config_lib.load_config_file(os.path.join(CONFIG_DIR, "celeba_spoof_p1.py"))
    config.eval.threshold_policy = "source_val_eer"
    with pytest.raises(config_lib.ConfigError, match="intra-dataset"):
        config_lib.validate_config(config)


def test_real_dataset_names_match_the_data_package():
    from dtda_jax.data import layouts

    assert config_lib.REAL_DATASETS == layouts.DATASETS
    assert config_lib.CELEBA_SPOOF_PROTOCOLS == layouts.CELEBA_SPOOF_PROTOCOLS


def test_leave_one_domain_out_covers_every_domain():
    targets = {}
    for domain in DOMAINS:
        config = config_lib.load_config_file(os.path.join(CONFIG_DIR, f"synthetic_to_{domain}.py"))
        targets[domain] = config
        assert sorted((*config.data.source_domains, config.data.target_domain)) == sorted(DOMAINS)
        assert config.data.target_domain == domain
    demo = config_lib.load_config_file(os.path.join(CONFIG_DIR, "synthetic.py"))
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


def test_demo_configs_train_their_own_teachers_and_bad_settings_are_named():
    demo = config_lib.synthetic_demo_config("kiosk")
    assert demo.teachers.own_teachers and not demo.teachers.fr_checkpoint
    assert not config_lib.base_config().teachers.own_teachers  # real protocols: converted teachers
    demo.teachers.own_training.fr.steps = 0
    with pytest.raises(config_lib.ConfigError,
                       match=r"config.teachers.own_training: .*fr.steps must be >= 1"):
        config_lib.validate_config(demo)
    demo.teachers.own_teachers = False  # the settings are unused then
    config_lib.validate_config(demo)


def test_a_run_recorded_before_own_teachers_existed_resumes_with_random_teachers():
    recorded = config_lib.synthetic_demo_config("kiosk").to_dict()
    for field in ("own_teachers", "own_teachers_dir", "own_training"):
        del recorded["teachers"][field]
    merged = config_lib.with_defaults(recorded)
    assert merged["teachers"]["own_teachers"] is False
    assert merged["teachers"]["own_training"]["fr"]["steps"] >= 1


def test_assignments_and_set_field():
    """The FIELD=VALUE parser and setter behind `--set` of the runner and of teacher training."""
    assert config_lib.parse_assignment("data.source_domains=('a', 'b')") == ("data.source_domains", ("a", "b"))
    assert config_lib.parse_assignment("optim.schedule= cosine") == ("optim.schedule", "cosine")
    with pytest.raises(ValueError, match="expected FIELD=VALUE, e.g. fr.steps=100"):
        config_lib.parse_assignment("fr.steps", example="fr.steps=100")
    c = config_lib.base_config()
    config_lib.set_field(c, "train.num_steps", 5)
    assert c.train.num_steps == 5
    for field in ("nope.x", "seed.x", "train.nope"):
        with pytest.raises(KeyError):
            config_lib.set_field(c, field, 1)
    with pytest.raises(ValueError, match="train.num_steps"):
        config_lib.set_field(c, "train.num_steps", "abc")
