"""PyTorch -> Flax conversion of the teachers and the ImageNet ResNet-18, against PyTorch.

The PyTorch modules in torch_reference.py follow the released architectures; they get
random weights that expose porting bugs (random BN statistics and scales, per-channel PReLU
slopes, biases), are saved the way the originals were saved, converted with the tools, and
compared on the same inputs: fp32 relative error <= 1e-5 and cosine >= 0.99999 per sample.
"""

import json
import os
import pathlib

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="conversion tests need the `convert` extra (torch)")

from dtda_jax import train  # noqa: E402
from dtda_jax.core import artifacts  # noqa: E402
from dtda_jax.core.state import rng_key  # noqa: E402
from dtda_jax.methods.dtda import stages  # noqa: E402
from dtda_jax.models import (ResNet18Classifier, ResNet18Encoder, StarGANDiscriminator,  # noqa: E402
                             imagenet_normalize, iresnet)
from dtda_jax.teachers.frozen import init_teacher_variables, teacher_input  # noqa: E402
from dtda_jax.weights import converters, store, torch_state as conversion  # noqa: E402
from dtda_jax.weights.torch_state import ConversionError, UnsafeCheckpointError  # noqa: E402
from tests import torch_reference as ref  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

# The released checkpoints' state_dict sizes (shared/reference/teachers.md).
IRESNET_ENTRIES = {"r18": 187, "r34": 331, "r50": 475, "r100": 925, "r200": 1807}
IRESNET_PARAMS = {"r18": 24_025_600, "r50": 43_590_848}


def per_sample_errors(flax_out, torch_out):
    """Max relative L2 error and min cosine over the samples of a batch."""
    a = np.asarray(flax_out, np.float64).reshape(len(flax_out), -1)
    b = np.asarray(torch_out, np.float64).reshape(len(torch_out), -1)
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return rel.max(), cos.min()


def assert_matches(flax_out, torch_out):
    rel, cos = per_sample_errors(flax_out, torch_out)
    assert rel <= 1e-5 and cos >= 0.99999, f"relative error {rel:.3g}, cosine {cos:.8f}"


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def save(state_dict, path, legacy=False, prefix=""):
    state_dict = {prefix + k: v for k, v in state_dict.items()}
    torch.save(state_dict, path, _use_new_zipfile_serialization=not legacy)
    return str(path)


# --------------------------------------------------------------------------- numeric equivalence

@pytest.mark.parametrize("arch", ["r18", "r50"])
def test_arcface_iresnet_matches_pytorch(arch, tmp_path):
    module = ref.randomize(ref.IResNet(ref.IRESNET_LAYERS[arch]), seed=1)
    assert len(module.state_dict()) == IRESNET_ENTRIES[arch]
    source = save(module.state_dict(), tmp_path / "backbone.pth")
    manifest = converters.convert_arcface(source, str(tmp_path / "out"))
    assert manifest["architecture"] == {"arch": arch, "width": 64, "num_features": 512,
                                        "input_size": 112}
    assert manifest["num_params"] == IRESNET_PARAMS[arch]
    assert manifest["source_keys"] == IRESNET_ENTRIES[arch]
    assert manifest["source_sha256"] == artifacts.file_sha256(source)

    x = np.random.default_rng(0).uniform(-1, 1, (3, 112, 112, 3)).astype(np.float32)
    with torch.no_grad():
        expected = module(nchw(x)).numpy()
    variables, _ = store.load_converted(str(tmp_path / "out"),
                                        converters.arcface_template(manifest["architecture"]),
                                        kind=converters.KIND_ARCFACE)
    got = jax.jit(lambda v, x: iresnet(arch).apply(v, x, train=False))(variables, x)
    assert_matches(got, expected)


def test_stargan_discriminator_matches_pytorch_legacy_format(tmp_path):
    module = ref.randomize(ref.StarGANDiscriminator(), seed=2)
    assert len(module.state_dict()) == 14
    # 200000-D.ckpt dates from PyTorch 0.4: the legacy (non-zip) serialisation.
    source = save(module.state_dict(), tmp_path / "200000-D.ckpt", legacy=True)
    with open(source, "rb") as f:
        assert f.read(2) != b"PK"  # really not a zip file
    manifest = converters.convert_stargan(source, str(tmp_path / "out"))
    assert manifest["architecture"] == {"image_size": 128, "conv_dim": 64, "c_dim": 5,
                                        "repeat_num": 6}
    assert manifest["num_params"] == 44_762_048

    x = np.random.default_rng(1).uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32)
    with torch.no_grad():
        patch, logits = module(nchw(x))
    variables, _ = store.load_converted(str(tmp_path / "out"), None,
                                        kind=converters.KIND_STARGAN)
    got_patch, got_logits = StarGANDiscriminator().apply(variables, x)
    assert_matches(np.asarray(got_patch).transpose(0, 3, 1, 2), patch.numpy())
    assert_matches(got_logits, logits.numpy())


@pytest.mark.parametrize("config", [(256, 64, 5, 6), (64, 16, 3, 5)])
def test_stargan_sizes_are_inferred(config, tmp_path):
    image_size, conv_dim, c_dim, repeat_num = config
    module = ref.randomize(ref.StarGANDiscriminator(image_size, conv_dim, c_dim, repeat_num), 3)
    source = save(module.state_dict(), tmp_path / "D.ckpt")
    manifest = converters.convert_stargan(source, str(tmp_path / "out"))
    assert manifest["architecture"] == dict(image_size=image_size, conv_dim=conv_dim, c_dim=c_dim,
                                            repeat_num=repeat_num)


def test_resnet18_matches_pytorch_with_dataparallel_prefix(tmp_path):
    module = ref.randomize(ref.ResNet18(), seed=4)
    source = save(module.state_dict(), tmp_path / "resnet18.pth", prefix="module.")
    manifest = converters.convert_resnet18(source, str(tmp_path / "out"))
    assert manifest["architecture"] == {"width": 64, "num_classes": 1000}
    assert manifest["num_params"] == 11_689_512

    x = np.random.default_rng(2).uniform(0, 1, (3, 96, 96, 3)).astype(np.float32)
    # torchvision's ImageNet normalisation, written out (the Flax model applies it itself).
    mean = np.array((0.485, 0.456, 0.406), np.float32)
    std = np.array((0.229, 0.224, 0.225), np.float32)
    with torch.no_grad():
        features = module.features(nchw((x - mean) / std))
        logits = module.fc(features)
    variables, _ = store.load_converted(str(tmp_path / "out"), None,
                                        kind=converters.KIND_RESNET18)
    model = ResNet18Classifier(num_classes=1000)
    assert_matches(model.apply(variables, x, train=False), logits.numpy())
    got_features = ResNet18Encoder().apply(
        {k: v["encoder"] for k, v in variables.items()}, imagenet_normalize(x), train=False)
    assert_matches(got_features, features.numpy())


@pytest.mark.parametrize("arch", ["r34", "r100", "r200"])
def test_deep_iresnets_key_and_shape_accounting(arch, tmp_path):
    """Narrow copies (width 8) keep every key and the depth; the arch is inferred from them."""
    module = ref.IResNet(ref.IRESNET_LAYERS[arch], width=8)
    assert len(module.state_dict()) == IRESNET_ENTRIES[arch]
    source = save(module.state_dict(), tmp_path / "backbone.pth")
    manifest = converters.convert_arcface(source, str(tmp_path / "out"))
    assert manifest["architecture"]["arch"] == arch
    assert manifest["source_keys"] == IRESNET_ENTRIES[arch]
    expected = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
    assert len(manifest["shapes"]) == len(expected)


# --------------------------------------------------------------------------- errors

@pytest.fixture(scope="module")
def r18_state():
    return {k: v.numpy() for k, v in ref.IResNet(ref.IRESNET_LAYERS["r18"], width=8).state_dict().items()}


def r18_template():
    return converters.arcface_template({"arch": "r18", "width": 8, "num_features": 512,
                                        "input_size": 112})


def test_wrong_arch_is_named_with_the_right_one(tmp_path):
    source = save(ref.IResNet(ref.IRESNET_LAYERS["r18"], width=8).state_dict(), tmp_path / "b.pth")
    with pytest.raises(ConversionError, match="blocks per stage are those of r18. Use --arch r18"):
        converters.convert_arcface(source, str(tmp_path / "out"), arch="r50")
    assert not (tmp_path / "out").exists()


def test_missing_unexpected_and_misshaped_keys_are_named(r18_state):
    state = dict(r18_state)
    del state["layer2.1.prelu.weight"]
    state["head.extra.weight"] = np.zeros(3, np.float32)
    state["fc.bias"] = np.zeros(7, np.float32)
    with pytest.raises(ConversionError) as err:
        conversion.state_dict_to_variables(state, r18_template(), hint="The keys look like r18.")
    message = str(err.value)
    assert "params/layer2_1/prelu/weight" in message  # missing
    assert "head.extra.weight" in message  # unexpected
    assert "fc.bias: checkpoint (7,)" in message and "model wants (512,)" in message
    assert message.endswith("The keys look like r18.")


def test_every_key_is_consumed_exactly_once(r18_state):
    variables = conversion.state_dict_to_variables(r18_state, r18_template())
    leaves = jax.tree.leaves(variables)
    used = [k for k in r18_state if not k.endswith("num_batches_tracked")]
    assert len(leaves) == len(used)
    assert sum(v.size for v in leaves) == sum(r18_state[k].size for k in used)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "model.pth"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ConversionError, match="does not hold a state_dict"):
        conversion.load_torch_state_dict(str(path))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises((ConversionError, UnsafeCheckpointError), match="garbage.pth"):
        conversion.load_torch_state_dict(str(tmp_path / "garbage.pth"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        conversion.load_torch_state_dict(str(tmp_path / "nowhere.pth"))


class _Payload:
    """Unpickling this runs `pathlib.Path(marker).touch()`: the attack a .pth can carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    state = ref.StarGANDiscriminator(64, 8, 5, 5).state_dict()
    torch.save({**state, "payload": _Payload(str(marker))}, tmp_path / "D.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="refused without loading"):
        conversion.load_torch_state_dict(str(tmp_path / "D.ckpt"))
    # The command line says so and exits 2, leaving no output behind.
    with pytest.raises(SystemExit) as exit_info:
        converters.run_tool(converters.KIND_STARGAN,
                            [str(tmp_path / "D.ckpt"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_output_is_not_overwritten_by_accident(tmp_path):
    source = save(ref.StarGANDiscriminator(64, 8, 5, 5).state_dict(), tmp_path / "D.ckpt")
    converters.run_tool(converters.KIND_STARGAN, [source, "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        converters.run_tool(converters.KIND_STARGAN, [source, "--out", str(tmp_path / "out")])
    converters.run_tool(converters.KIND_STARGAN,
                        [source, "--out", str(tmp_path / "out"), "--overwrite"])
    assert sorted(os.listdir(tmp_path)) == ["D.ckpt", "out"]  # no staging directories left
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["kind"] == converters.KIND_STARGAN


# --------------------------------------------------------------------------- teacher preprocessing

@pytest.mark.parametrize("size", [112, 128])
def test_teacher_input_resizes_like_pytorch_and_maps_to_signed_range(size):
    """A 256 crop in [0, 1] -> the teacher's size with antialiased bilinear, then [-1, 1]."""
    x = np.random.default_rng(size).uniform(0, 1, (2, 256, 256, 3)).astype(np.float32)
    got = np.asarray(jax.jit(teacher_input, static_argnums=1)(x, size))
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(nchw(x), size=(size, size), mode="bilinear",
                                                  align_corners=False, antialias=True)
    expected = ((resized - 0.5) / 0.5).numpy().transpose(0, 2, 3, 1)
    assert got.shape == (2, size, size, 3)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # Black and white map to the ends of the teachers' training range.
    extremes = np.stack([np.zeros((256, 256, 3), np.float32), np.ones((256, 256, 3), np.float32)])
    np.testing.assert_allclose(teacher_input(extremes, size)[:, :, :, 0].reshape(2, -1).mean(1),
                               [-1.0, 1.0], atol=1e-6)


# --------------------------------------------------------------------------- a run that uses them

def convert_tiny_weights(root):
    """Narrow converted teachers and ResNet-18 matching tiny_config's architecture."""
    paths = {}
    fr = ref.randomize(ref.IResNet(ref.IRESNET_LAYERS["r18"], width=4, input_size=32), 5)
    paths["fr"] = str(root / "fr")
    converters.convert_arcface(save(fr.state_dict(), root / "fr.pth"), paths["fr"])
    fa = ref.randomize(ref.StarGANDiscriminator(32, 4, 5, 5), 6)
    paths["fa"] = str(root / "fa")
    converters.convert_stargan(save(fa.state_dict(), root / "fa.ckpt", legacy=True), paths["fa"])
    resnet = ref.randomize(ref.ResNet18(width=4), 7)
    paths["resnet18"] = str(root / "resnet18")
    converters.convert_resnet18(save(resnet.state_dict(), root / "resnet18.pth"), paths["resnet18"])
    return paths, fr


def test_run_uses_converted_teachers_and_imagenet_init(data_dir, tmp_path, capsys):
    paths, fr_module = convert_tiny_weights(tmp_path)
    config = tiny_config(data_dir)
    config.teachers.fr_checkpoint = paths["fr"]
    config.teachers.fa_checkpoint = paths["fa"]
    config.model.init_checkpoint = paths["resnet18"]
    config.domain_classifier.init_checkpoint = paths["resnet18"]
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    log = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" not in log
    assert f"loaded converted arcface_iresnet from {paths['fr']}" in log
    assert f"loaded converted stargan_discriminator from {paths['fa']}" in log
    assert f"[model] encoder initialised from {paths['resnet18']} (source " in log
    assert f"[domain_classifier] encoder initialised from {paths['resnet18']} (source " in log
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert not saved["teachers"]["fr"]["random_init"]
    assert saved["teachers"]["fr"]["source_sha256"] == artifacts.file_sha256(str(tmp_path / "fr.pth"))
    assert saved["student_encoder_init"]["source_file"] == str(tmp_path / "resnet18.pth")

    # The loaded FR teacher gives the PyTorch module's embedding on the run's input pipeline.
    teachers = stages.make_teachers(config)
    variables = init_teacher_variables(teachers, rng_key(0), config.teachers)
    x = np.random.default_rng(3).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = fr_module(nchw((x - 0.5) / 0.5)).numpy()
    assert_matches(teachers["fr"].logits(variables["fr"], x), expected)


def test_config_that_disagrees_with_the_checkpoint_names_the_field(data_dir, tmp_path):
    paths, _ = convert_tiny_weights(tmp_path)
    config = tiny_config(data_dir)
    config.teachers.fr_checkpoint = paths["fr"]
    config.teachers.fr_arch = "r34"
    with pytest.raises(ValueError, match="config.teachers.fr_arch='r18'"):
        init_teacher_variables(stages.make_teachers(config), rng_key(0), config.teachers)
    # Checked before any work: no workdir is created.
    config = tiny_config(data_dir)
    config.model.init_checkpoint = paths["fr"]
    with pytest.raises(ValueError, match=r"\(set by config.model.init_checkpoint\) holds a "
                                         "converted 'arcface_iresnet'"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    config = tiny_config(data_dir)
    config.teachers.fa_checkpoint = str(tmp_path / "not-converted")
    with pytest.raises(FileNotFoundError, match="set by config.teachers.fa_checkpoint"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    # A width-8 student cannot take the width-4 ResNet-18 (checked before the state is touched).
    config.model.init_checkpoint, config.model.width = paths["resnet18"], 8
    with pytest.raises(ValueError, match="set config.model.width=4"):
        stages.encoder_init(config, "model", None, None)(None)
