"""Every shipped config loads, validates and names a sensible protocol; CLI helpers."""

import glob
import json
import os

import pytest

from dtda_jax import config as config_lib
from dtda_jax.config import common, records
from dtda_jax.config.common import flatten
from dtda_jax.data.synthetic import DOMAINS
from dtda_jax.main import default_workdir
from dtda_jax.methods.dtda import config as dtda_config
from dtda_jax.methods.kdfas import config as kdfas_config

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def test_there_are_configs():
    assert len(CONFIG_FILES) >= 5


def variants_of(path):
    """The ablation rows a config file takes: KDFAS's for configs/kdfas_*.py, else DTDA's."""
    kdfas = os.path.basename(path).startswith("kdfas_")
    return sorted(kdfas_config.VARIANTS if kdfas else dtda_config.VARIANTS)


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
    ("data.frame_store", "memmap", "data.frame_store: must be one of \\('decoded', 'encoded', 'device'\\), got 'memmap'"),
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

    assert common.REAL_DATASETS == layouts.DATASETS
    assert common.CELEBA_SPOOF_PROTOCOLS == layouts.CELEBA_SPOOF_PROTOCOLS


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
    base = config_lib.load_base(os.path.join(CONFIG_DIR, "synthetic.py"), "base/dtda_synthetic.py")
    with pytest.raises(ValueError, match="Unknown variant 'dtdaa'"):
        base.get_config("kiosk", "dtdaa")
    with pytest.raises(ValueError, match="Unknown target domain 'mobile'"):
        base.get_config("mobile")


@pytest.mark.parametrize("argument, expected", [
    ("configs/synthetic.py", os.path.join("runs", "synthetic")),
    ("configs/synthetic.py:baseline", os.path.join("runs", "synthetic_baseline")),
    ("/abs/path/synthetic_to_webcam.py:fr", os.path.join("runs", "synthetic_to_webcam_fr")),
])
def test_default_workdir(argument, expected):
    assert default_workdir(argument) == expected


def test_demo_configs_train_their_own_teachers_and_bad_settings_are_named():
    demo = config_lib.load_config_file(os.path.join(CONFIG_DIR, "synthetic.py"))
    assert demo.teachers.own_teachers and not demo.teachers.fr_checkpoint
    assert not dtda_config.default_config().teachers.own_teachers  # real protocols: converted teachers
    demo.teachers.own_training.fr.steps = 0
    with pytest.raises(config_lib.ConfigError,
                       match=r"config.teachers.own_training: .*fr.steps must be >= 1"):
        config_lib.validate_config(demo)
    demo.teachers.own_teachers = False  # the settings are unused then
    config_lib.validate_config(demo)


def test_a_run_recorded_before_own_teachers_existed_resumes_with_random_teachers():
    recorded = config_lib.load_config_file(os.path.join(CONFIG_DIR, "synthetic.py")).to_dict()
    for field in ("own_teachers", "own_teachers_dir", "own_training"):
        del recorded["teachers"][field]
    merged = records.recorded_config(recorded)
    assert merged["teachers"]["own_teachers"] is False
    assert "own_training" not in merged["teachers"]  # only configs that train their own teachers have it


def test_assignments_and_set_field():
    """The FIELD=VALUE parser and setter behind `--set` of the runner and of teacher training."""
    assert config_lib.parse_assignment("data.source_domains=('a', 'b')") == ("data.source_domains", ("a", "b"))
    assert config_lib.parse_assignment("optim.schedule= cosine") == ("optim.schedule", "cosine")
    with pytest.raises(ValueError, match="expected FIELD=VALUE, e.g. fr.steps=100"):
        config_lib.parse_assignment("fr.steps", example="fr.steps=100")
    c = dtda_config.default_config()
    config_lib.set_field(c, "train.num_steps", 5)
    assert c.train.num_steps == 5
    for field in ("nope.x", "seed.x", "train.nope"):
        with pytest.raises(KeyError):
            config_lib.set_field(c, field, 1)
    with pytest.raises(ValueError, match="train.num_steps"):
        config_lib.set_field(c, "train.num_steps", "abc")
    # A free-form subtree takes new keys (the runner's --set of the benchmark's size); a wrong
    # one is named by validation.
    config_lib.set_field(c, "data.synthetic_overrides.test_identities_per_domain", 3)
    assert c.data.synthetic_overrides.test_identities_per_domain == 3
    config_lib.validate_config(c)
    config_lib.set_field(c, "data.synthetic_overrides.test_identities", 3)
    with pytest.raises(config_lib.ConfigError, match=r"data.synthetic_overrides.*test_identities"):
        config_lib.validate_config(c)


def test_synthetic_count_fields_are_the_benchmarks():
    from dtda_jax.config.common import SYNTHETIC_COUNTS
    from dtda_jax.data.synthetic import benchmark

    assert set(SYNTHETIC_COUNTS) == set(benchmark._DEFAULTS)


# ---------------------------------------------------------------------------------- run records

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")


# What changed in the demo configs since 31615d3 on purpose: the benchmark's size (issue 19,
# explicit in data.synthetic_overrides).
RESIZED = ["data.synthetic_overrides.frames_per_video: None -> 4",
           "data.synthetic_overrides.test_identities_per_domain: None -> 24",
           "data.synthetic_overrides.train_identities_per_domain: None -> 16"]
# ... and the KDFAS demo's face pre-training of its ViTs (issue 19, part 4).
FACE_PRETRAINED = sorted(RESIZED + ["kdfas.pretrain_on_faces: False -> True"] + [
    f"kdfas.face_pretraining.{k}: None -> {v!r}"
    for k, v in flatten(json.loads(kdfas_config.face_pretraining_config().to_json())).items()])


@pytest.mark.parametrize("recorded, config_file, changes", [
    ("config_31615d3_synthetic.json", "synthetic.py", RESIZED),
    ("config_31615d3_kdfas_synthetic_to_kiosk.json", "kdfas_synthetic_to_kiosk.py", FACE_PRETRAINED),
    ("config_31615d3_ocm_to_i.json", "ocm_to_i.py", []),
])
def test_runs_recorded_before_the_one_loop_redesign_resume(recorded, config_file, changes, tmp_path):
    """config.json files written by 31615d3 (every method's sections in every config, the ViTs'
    dtype in DTDA's `model`) are read field by field: only the changes made on purpose since
    then differ (those runs are refused rather than resumed on other data)."""
    (tmp_path / "config.json").write_text(open(os.path.join(DATA_DIR, recorded)).read())
    (tmp_path / "results.json").write_text("{}")  # a run that trained
    config = config_lib.load_config_file(os.path.join(CONFIG_DIR, config_file))
    assert records.config_changes(config, str(tmp_path)) == changes
    config.seed = 1  # a real change is still refused
    with pytest.raises(config_lib.ConfigError, match="seed: 0 -> 1"):
        records.check_same_config(config, str(tmp_path))


def test_a_recorded_config_without_a_list_field_takes_its_default(tmp_path):
    """Defaults fill missing fields as config.json stores them (tuples as lists)."""
    config = config_lib.load_config_file(os.path.join(CONFIG_DIR, "synthetic.py"))
    recorded = json.loads(config.to_json())
    del recorded["eval"]["fpr_targets"], recorded["optim"]["step_boundaries"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    assert records.config_changes(config, str(tmp_path)) == []


def with_new_default(monkeypatch, module, section, field, value):
    """`module.default_config()` with one more field, as a later version might add."""
    original = module.default_config

    def default_config():
        c = original()
        c[section][field] = value
        return c

    monkeypatch.setattr(module, "default_config", default_config)


@pytest.mark.parametrize("changed, other", [(dtda_config, kdfas_config), (kdfas_config, dtda_config)])
def test_a_default_added_to_one_method_never_blocks_the_other_methods_workdirs(changed, other, monkeypatch,
                                                                               tmp_path):
    files = {dtda_config: "synthetic.py", kdfas_config: "kdfas_synthetic_to_kiosk.py"}
    for module in (changed, other):
        workdir = tmp_path / module.NAME
        workdir.mkdir()
        records.record_config(config_lib.load_config_file(os.path.join(CONFIG_DIR, files[module])), str(workdir))
    section = "loss" if changed is dtda_config else "kdfas"
    with_new_default(monkeypatch, changed, section, "new_weight", 0.5)
    for module in (changed, other):  # both resume: the new field takes its default
        config = config_lib.load_config_file(os.path.join(CONFIG_DIR, files[module]))
        assert ("new_weight" in config.get(section, {})) == (module is changed)
        assert records.config_changes(config, str(tmp_path / module.NAME)) == []
    config = config_lib.load_config_file(os.path.join(CONFIG_DIR, files[changed]))
    config[section].new_weight = 0.7  # a non-default value of the new field is a change
    assert records.config_changes(config, str(tmp_path / changed.NAME)) == [
        f"{section}.new_weight: 0.5 -> 0.7"]


def test_configs_hold_only_their_methods_fields():
    """A DTDA run records no KDFAS field and no teacher-training settings it does not use; a
    KDFAS run none of DTDA's; a field of the other method is refused by name."""
    dtda = config_lib.load_config_file(os.path.join(CONFIG_DIR, "ocm_to_i.py"))
    kdfas = config_lib.load_config_file(os.path.join(CONFIG_DIR, "kdfas_synthetic_to_kiosk.py"))
    assert "kdfas" not in dtda and "own_training" not in dtda.teachers
    assert not {"teachers", "attack", "domain_classifier", "loss", "optim", "model"} & set(kdfas)
    assert set(kdfas.method) == {"name"}
    dtda.kdfas = kdfas.kdfas
    with pytest.raises(config_lib.ConfigError, match=r"config.kdfas.\S+: not a field of dtda configs"):
        config_lib.validate_config(dtda)
