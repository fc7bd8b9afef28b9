"""KDFAS: the token Gram loss (hand value, invariances), the ViT (against PyTorch, timm's
parameter counts), its configs, and tiny end-to-end runs (teacher cache, every ablation row,
resume equals an uninterrupted run)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dtda_jax import config as config_lib
from dtda_jax import train
from dtda_jax.analysis import experiments, figures
from dtda_jax.core.sharding import make_mesh
from dtda_jax.core.state import image_model_init, init_state, parameter_count, rng_key
from dtda_jax.deploy import export, runtime
from dtda_jax.inference import predict
from dtda_jax.inference.scoring import live_probability
from dtda_jax.methods.kdfas import config as kdfas_config
from dtda_jax.methods.kdfas import losses, stages, steps
from dtda_jax.models.vit import EncoderBlock, VisionTransformer
from dtda_jax.weights import store
from tests.conftest import tiny_config
from tests.test_train import assert_trees_close, latest_params


def test_gram_loss_matches_hand_computed_value():
    # Teacher: 3 tokens of width 2. Centred over the tokens: (0,-1), (-1,0), (1,1); normalised,
    # their cosines are G_12 = 0 and G_13 = G_23 = -1/sqrt(2).
    teacher = jnp.array([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    # Student: 3 tokens of width 3, the unit vectors. Centred: (2,-1,-1)/3 and permutations,
    # every pair has cosine -1/2.
    student = jnp.eye(3)[None]
    np.testing.assert_allclose(losses.token_gram(teacher)[0], [[1, 0, -2 ** -0.5], [0, 1, -2 ** -0.5],
                                                               [-2 ** -0.5, -2 ** -0.5, 1]], atol=1e-6)
    # Mean over the 9 entries: the diagonals agree; (1,2) twice (1/2)^2, the other four
    # entries (1/sqrt(2) - 1/2)^2.
    expected = (2 * 0.25 + 4 * (2 ** -0.5 - 0.5) ** 2) / 9
    assert float(losses.gram_distillation_loss(teacher, student)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.0746192, rel=1e-5)


def test_gram_loss_ignores_width_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(2, 5, 4)).astype(np.float32)
    embed = np.linalg.qr(rng.normal(size=(7, 7)))[0][:4]  # 4 -> 7, orthonormal rows
    student = 3.0 * teacher @ embed + rng.normal(size=(2, 1, 7))
    assert float(losses.gram_distillation_loss(teacher, student)) < 1e-10
    other = rng.normal(size=(2, 5, 7)).astype(np.float32)
    assert float(losses.gram_distillation_loss(teacher, other)) > 0.05
    grad_t, grad_s = jax.grad(losses.gram_distillation_loss, argnums=(0, 1))(jnp.asarray(teacher),
                                                                             jnp.asarray(other))
    assert not np.any(np.asarray(grad_t)) and np.all(np.isfinite(grad_s)) and np.any(np.asarray(grad_s))
    with pytest.raises(ValueError, match="token count"):
        losses.gram_distillation_loss(teacher, other[:, :4])


def test_stage_pairing():
    assert steps.stage_blocks(24, 4) == (6, 12, 18, 24)
    assert steps.stage_blocks(12, 4) == (3, 6, 9, 12)
    assert steps.stage_blocks(6, 3) == (2, 4, 6)


def test_encoder_block_matches_pytorch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    width, heads, mlp = 16, 4, 32
    ref = torch.nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu",
                                           layer_norm_eps=1e-6, batch_first=True, norm_first=True).eval()
    for p in ref.parameters():  # LayerNorm/bias defaults are 1/0: randomise so every weight counts
        torch.nn.init.normal_(p, std=0.3)
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    hd = width // heads
    w_q, w_k, w_v = np.split(sd["self_attn.in_proj_weight"], 3)
    b_q, b_k, b_v = np.split(sd["self_attn.in_proj_bias"], 3)
    proj = lambda w, b: {"kernel": w.T.reshape(width, heads, hd), "bias": b.reshape(heads, hd)}
    params = {
        "norm1": {"scale": sd["norm1.weight"], "bias": sd["norm1.bias"]},
        "norm2": {"scale": sd["norm2.weight"], "bias": sd["norm2.bias"]},
        "attention": {"query": proj(w_q, b_q), "key": proj(w_k, b_k), "value": proj(w_v, b_v),
                      "out": {"kernel": sd["self_attn.out_proj.weight"].T.reshape(heads, hd, width),
                              "bias": sd["self_attn.out_proj.bias"]}},
        "mlp_fc1": {"kernel": sd["linear1.weight"].T, "bias": sd["linear1.bias"]},
        "mlp_fc2": {"kernel": sd["linear2.weight"].T, "bias": sd["linear2.bias"]},
    }
    x = np.random.default_rng(1).normal(size=(2, 7, width)).astype(np.float32)
    block = EncoderBlock(num_heads=heads, mlp_dim=mlp)
    ours = block.apply({"params": params}, jnp.asarray(x))
    with torch.no_grad():
        theirs = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size, image, expected", [
    # timm vit_base_patch16_224 / vit_large_patch16_224 (86,567,656 / 304,326,632 parameters
    # with their 1000-class heads), with 2-class heads instead.
    (kdfas_config.vit_config(16, 768, 12, 12), 224, 86_567_656 - 769_000 + 1_538),
    (kdfas_config.vit_config(16, 1024, 24, 16), 224, 304_326_632 - 1_025_000 + 2_050),
])
def test_vit_sizes_match_timm(size, image, expected):
    model = stages.make_vit(size, "float32")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, image, image, 3))))
    assert parameter_count(shapes["params"]) == expected


def test_vit_returns_requested_blocks():
    model = VisionTransformer(patch_size=4, width=8, depth=3, num_heads=2, mlp_dim=16)
    x = jnp.zeros((2, 8, 8, 3))
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)  # rbg: fast to compile on CPU
    out = jax.jit(lambda v, x: model.apply(v, x, return_blocks=(3, 1)))(variables, x)
    assert out["cls_logits"].shape == (2, 2) and [t.shape for t in out["block_tokens"]] == [(2, 5, 8)] * 2
    with pytest.raises(ValueError, match="numbered 1..3"):
        model.apply(variables, x, return_blocks=(4,))


def demo_config(variant="kdfas"):
    return config_lib.load_config_file("configs/kdfas_synthetic_to_kiosk.py", variant)


def test_kdfas_configs_and_variants():
    for variant in kdfas_config.VARIANTS:
        c = demo_config(variant)
        config_lib.validate_config(c)
        assert c.method.name == "kdfas" and config_lib.variant_name(c) == variant
    with pytest.raises(ValueError, match="Unknown KDFAS variant 'dtda'"):
        demo_config("dtda")
    for key in config_lib.PAPER_PROTOCOLS:
        c = config_lib.load_config_file(f"configs/kdfas_{key}.py", "kd_decision")
        config_lib.validate_config(c)
        assert (c.data.image_size, c.kdfas.teacher.width, c.kdfas.student.depth) == (224, 1024, 12)
    args = experiments.parse_args(["--configs=configs/kdfas_synthetic_to_kiosk.py",
                                   "--variants=kd_teacher,kdfas", "--seeds=0"])
    assert [s.variant for s in experiments.build_specs(args)] == ["kd_teacher", "kdfas"]


@pytest.mark.parametrize("field, value, message", [
    ("data.image_size", 60, "multiple of kdfas.teacher.patch_size"),
    ("kdfas.num_stages", 4, "must divide both depths"),
    ("kdfas.student.num_heads", 5, "divisible by the number of heads"),
    ("kdfas.student.patch_size", 4, "same patches"),
    ("kdfas.report", "both", "must be one of"),
    ("method.use_domain_attack", True, "not a field of kdfas configs"),
])
def test_bad_kdfas_values_are_named(field, value, message):
    c = demo_config()
    section, key = field.rsplit(".", 1)
    node = c
    for part in section.split("."):
        node = node[part]
    node[key] = value  # DTDA's switch is no KDFAS field: assigning adds it, validation refuses it
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate_config(c)


def test_teacher_cache_key_follows_teacher_settings_only(tmp_path):
    c = demo_config()
    base = stages.teacher_directory(c)
    c.kdfas.student.width, c.kdfas.lambda_feature, c.train.num_steps = 64, 3.0, 10
    c.data.eval_batch_size = 7
    assert stages.teacher_directory(c) == base  # student-side settings share the teacher
    for field, value in (("seed", 1), ("kdfas.teacher.depth", 3), ("kdfas.teacher_optim.learning_rate", 0.1),
                         ("data.source_domains", ("studio", "webcam"))):
        other = demo_config()
        config_lib.set_field(other, field, value)
        assert stages.teacher_directory(other) != base, field


def tiny_kdfas_config(data_dir, teacher_dir, variant="kdfas"):
    """tiny_config's data and loop with a KDFAS section of 2-block ViTs."""
    dtda = tiny_config(data_dir)
    c = kdfas_config.default_config()
    config_lib.apply_variant(c, variant)
    for section in ("data", "train", "eval"):
        c[section] = dtda[section]
    k = c.kdfas
    k.teacher = kdfas_config.vit_config(8, 16, 2, 2)
    k.student = kdfas_config.vit_config(8, 8, 2, 2)
    k.num_stages = 2
    k.teacher_num_steps = 4
    k.teacher_optim.warmup_steps = k.student_optim.warmup_steps = 1
    k.teacher_optim.learning_rate = k.student_optim.learning_rate = 1e-2
    k.teacher_dir = str(teacher_dir)
    return c


def read_lines(path, stage):
    return [l for l in map(json.loads, path.read_text().splitlines()) if l["stage"] == stage]


def test_kdfas_rows_share_one_cached_teacher(data_dir, tmp_path, capsys):
    teachers = tmp_path / "teachers"
    # The runs sit where the runner puts them, so the figures command can read them as a sweep.
    run = {v: tmp_path / "sweep" / "tiny" / v / "seed0" for v in ("kdfas", "kd_teacher", "kd_student")}
    full = train.train_and_evaluate(tiny_kdfas_config(data_dir, teachers), str(run["kdfas"]))
    (teacher_dir,) = teachers.iterdir()
    assert full["teacher"]["directory"] == str(teacher_dir) and full["student"]["distilled_from"] == str(teacher_dir)
    assert full["variant"] == "kdfas" and 0 <= full["reported"]["auc"] <= 1
    for line in read_lines(run["kdfas"] / "metrics.jsonl", "student"):  # L = CE + KL + 10 * Gram
        assert line["loss"] == pytest.approx(line["loss_fas"] + line["loss_decision"]
                                             + 10.0 * line["loss_feature"], rel=1e-5)
        assert line["loss_feature"] == pytest.approx((line["loss_gram_stage1"] + line["loss_gram_stage2"]) / 2,
                                                     rel=1e-5)
    teacher_log = (teacher_dir / "metrics.jsonl").read_text()
    capsys.readouterr()

    alone = train.train_and_evaluate(tiny_kdfas_config(data_dir, teachers, "kd_teacher"), str(run["kd_teacher"]))
    assert "[teacher] already trained (4 steps), restored" in capsys.readouterr().out
    assert (teacher_dir / "metrics.jsonl").read_text() == teacher_log  # not trained again
    assert alone["student"] is None and alone["reported"] == full["teacher"]["by_selection"]["best_on_target"]

    # predict scores with a KDFAS run's student, and names the teacher-alone run's problem.
    config = tiny_kdfas_config(data_dir, teachers)
    loaded = predict.load_run(str(run["kdfas"]), "latest")
    crops = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    params = latest_params(str(run["kdfas"]))[1]["params"]
    expected = live_probability({"params": params}, jnp.asarray(crops),
                                model=stages.make_vit(config.kdfas.student, "float32"))
    np.testing.assert_allclose(predict.score_crops(loaded.score_fn, loaded.variables, crops, 4), expected,
                               rtol=1e-5, atol=1e-6)
    # ... and its student exports: ONNX Runtime gives the same scores.
    export.export_bundle(str(run["kdfas"]), str(tmp_path / "bundle"), log=lambda line: None)
    bundle = runtime.open_bundle(str(tmp_path / "bundle"))
    assert bundle.manifest["model"]["architecture"] == "KDFAS ViT student (2 blocks, width 8, patch 8)"
    np.testing.assert_allclose(bundle.score(crops), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(predict.PredictError, match="teacher-alone run"):
        predict.load_run(str(run["kd_teacher"]))
    with pytest.raises(ValueError, match="t-SNE and Grad-CAM read DTDA's"):
        figures.load_reported_student(str(run["kdfas"]))

    plain = train.train_and_evaluate(tiny_kdfas_config(data_dir, teachers, "kd_student"), str(run["kd_student"]))
    assert plain["teacher"] is None and plain["student"]["distilled_from"] is None
    line = read_lines(run["kd_student"] / "metrics.jsonl", "student")[0]
    assert "loss_decision" not in line and "loss_feature" not in line
    assert line["loss"] == pytest.approx(line["loss_fas"], rel=1e-6)
    assert len(list(teachers.iterdir())) == 1

    # Figures of a KDFAS sweep: the ROCs (the teacher-alone row's from the teacher's cache, the
    # curve behind its reported AUC), and one line saying why there is no t-SNE or Grad-CAM.
    capsys.readouterr()
    assert figures.main([f"--sweep={tmp_path / 'sweep'}", f"--out={tmp_path / 'figures'}"]) == 0
    assert "tiny: ROC only; t-SNE and Grad-CAM read DTDA's ResNet-18 student" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["roc_tiny.png"]
    assert figures.reported_roc(str(run["kd_teacher"]))[2] == pytest.approx(alone["reported"]["auc"], abs=1e-12)


def test_kdfas_resume_equals_uninterrupted(data_dir, tmp_path):
    # The same programs as test_kdfas_rows_share_one_cached_teacher: compiled once per session.
    config = tiny_kdfas_config(data_dir, tmp_path / "teachers_a")
    train.train_and_evaluate(config, str(tmp_path / "straight"))
    config = tiny_kdfas_config(data_dir, tmp_path / "teachers_b")
    resumed = str(tmp_path / "resumed")
    # Interrupted once inside the teacher stage and once inside the student stage.
    assert train.train_and_evaluate(config, resumed, stop_after=2) is None
    assert train.train_and_evaluate(config, resumed, stop_after=4 + 3) is None
    assert latest_params(resumed)[0] == 3
    again = train.train_and_evaluate(config, resumed)
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())
    (a_dir,), (b_dir,) = (tmp_path / "teachers_a").iterdir(), (tmp_path / "teachers_b").iterdir()
    assert a_dir.name == b_dir.name  # same settings, same cache name
    assert_trees_close(latest_params(str(a_dir), "teacher")[1], latest_params(str(b_dir), "teacher")[1])
    assert_trees_close(latest_params(str(tmp_path / "straight"))[1], latest_params(resumed)[1])
    assert math.isclose(straight["reported"]["auc"], again["reported"]["auc"], abs_tol=1e-6)


def timm_style_vit(torch, patch, width, depth, heads, image, classes=10):
    """A ViT with timm's key names and arithmetic (timm.models.vision_transformer: PatchEmbed,
    Block, Attention, Mlp; class-token pooling), random weights."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
            self.attn, self.mlp = nn.Module(), nn.Module()
            self.attn.qkv, self.attn.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.mlp.fc1, self.mlp.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            b, n, c = x.shape
            qkv = self.attn.qkv(self.norm1(x)).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
            x = x + self.attn.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
            return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Module()
            self.patch_embed.proj = nn.Conv2d(3, width, patch, patch)
            self.cls_token = nn.Parameter(torch.randn(1, 1, width))
            self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, width))
            self.blocks = nn.ModuleList(Block() for _ in range(depth))
            self.norm, self.head = nn.LayerNorm(width, eps=1e-6), nn.Linear(width, classes)

        def forward(self, x):  # NCHW in [-1, 1]
            x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            return self.norm(x)[:, 0]

    model = ViT().eval()
    for p in model.parameters():  # LayerNorm/bias defaults are 1/0: randomise so every weight counts
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_timm_vit_conversion_matches_pytorch_and_initialises_kdfas(data_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from dtda_jax.weights import converters

    torch.manual_seed(0)
    ref = timm_style_vit(torch, patch=8, width=16, depth=2, heads=2, image=32)
    torch.save(ref.state_dict(), tmp_path / "vit.pth")
    manifest = converters.convert_timm_vit(str(tmp_path / "vit.pth"), str(tmp_path / "vit"), num_heads=2)
    assert manifest["architecture"] == {"patch_size": 8, "width": 16, "depth": 2, "num_heads": 2,
                                        "mlp_dim": 64, "image_size": 32}
    variables, _ = store.load_converted(str(tmp_path / "vit"), None, kind="timm_vit")
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    model = VisionTransformer(patch_size=8, width=16, depth=2, num_heads=2, mlp_dim=64)
    ours = model.apply({"params": {**variables["params"], "head": {"kernel": jnp.zeros((16, 2)),
                                                                    "bias": jnp.zeros(2)}}}, jnp.asarray(x))
    with torch.no_grad():
        theirs = ref(torch.from_numpy(x).permute(0, 3, 1, 2) * 2 - 1).numpy()
    np.testing.assert_allclose(np.asarray(ours["features"]), theirs, rtol=1e-4, atol=1e-4)

    # Into a KDFAS student: everything but the head comes from the checkpoint.
    config = tiny_kdfas_config(data_dir, tmp_path / "teachers", "kd_student")
    config.kdfas.student = kdfas_config.vit_config(8, 16, 2, 2)
    config.kdfas.student.init_checkpoint = str(tmp_path / "vit")
    student, tx, _ = stages.student_and_optimizer(config)
    mesh = make_mesh(1)
    fresh = init_state(image_model_init(student, 32), tx, rng_key(0), mesh)
    loaded = stages.vit_init(config, "student", tx, mesh)(fresh)
    assert_trees_close({k: v for k, v in loaded.params.items() if k != "head"}, variables["params"], 0, 0)
    assert_trees_close(loaded.params["head"], fresh.params["head"], 0, 0)
    config.kdfas.student.width = 8
    with pytest.raises(ValueError, match="config.kdfas.student.width=16"):
        stages.vit_init(config, "student", tx, mesh)(fresh)
    config.kdfas.student.width, config.data.image_size = 16, 64
    with pytest.raises(config_lib.ConfigError, match="set config.data.image_size=32"):
        stages.vit_init(config, "student", tx, mesh)(fresh)

    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    state["blocks.0.ls1.gamma"] = np.ones(16, np.float32)  # LayerScale: another ViT variant
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "ls.pth")
    with pytest.raises(converters.ConversionError, match="blocks.0.ls1.gamma"):
        converters.convert_timm_vit(str(tmp_path / "ls.pth"), str(tmp_path / "ls"), num_heads=2)
    assert not (tmp_path / "ls").exists()
