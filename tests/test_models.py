"""Tests for dtda_jax.models: layouts, parameter counts, padding, BN, heads.

Full-size models are only shape-evaluated (``jax.eval_shape``); everything that
computes uses tiny widths / images. Numeric checks compare against independent
NumPy re-implementations of the PyTorch originals written in NCHW with
torch-layout (OIHW / (out, in)) weights, so a wrong padding, flatten order,
per-channel slope or eps shows up as an O(1) error.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dtda_jax.core import losses
from dtda_jax.models import (
    IRESNET_STAGES,
    DTDAStudent,
    PReLU,
    ResNet18Classifier,
    ResNet18Encoder,
    StarGANDiscriminator,
    batch_norm,
    conv,
    imagenet_normalize,
    iresnet,
    iresnet_output_size,
    max_pool_torch,
)

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------- helpers


def n_params(tree) -> int:
    return sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(tree))


def shapes(model, *args, **kwargs):
    """Variable shapes of ``model`` without computing anything."""
    return jax.eval_shape(lambda: model.init(KEY, *args, **kwargs))


def fast_init(model, *args, seed=0, **kwargs):
    """Random variables for ``model`` without running flax's (slow, per-shape
    compiled) initialisers: shapes from ``jax.eval_shape``, values from NumPy."""
    return randomize(shapes(model, *args, **kwargs), seed=seed)


_JITTED = {}


def run(model, variables, *args, **static):
    """``model.apply`` under ``jax.jit`` (one compile beats many eager op compiles
    on CPU); keyword arguments are static. Jitted functions are cached so that
    repeated calls with the same shapes do not recompile."""
    key = (model, repr(sorted(static.items())))
    if key not in _JITTED:
        _JITTED[key] = jax.jit(functools.partial(model.apply, **static))
    return _JITTED[key](variables, *args)


def torch_entries(variables) -> int:
    """state_dict entries implied by the flax tree (+ num_batches_tracked per BN)."""
    n_leaves = len(jax.tree_util.tree_leaves(variables))
    n_bn = len(jax.tree_util.tree_leaves(variables.get("batch_stats", {}))) // 2
    return n_leaves + n_bn


def flat(tree):
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def randomize(variables, seed=0):
    """Random params AND BN stats (positive var, scales away from 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for col, tree in variables.items():
        f = traverse_util.flatten_dict(tree)
        g = {}
        for k, v in f.items():
            name = k[-1]
            shp = v.shape
            if name == "var":
                a = rng.uniform(0.5, 1.5, shp)
            elif name == "scale":
                a = rng.uniform(0.5, 1.5, shp)
            elif name == "weight":  # PReLU slopes, distinct per channel
                a = rng.uniform(-0.5, 0.8, shp)
            elif name == "kernel":
                fan_in = int(np.prod(shp[:-1]))
                a = rng.normal(0.0, 1.0 / math.sqrt(fan_in), shp)
            else:  # bias, mean
                a = rng.normal(0.0, 0.2, shp)
            g[k] = jnp.asarray(a, jnp.float32)
        out[col] = traverse_util.unflatten_dict(g)
    return out


# NumPy / NCHW reference ops (PyTorch semantics) -------------------------------


def np_conv(x, w_oihw, stride=1, pad=0, bias=None):
    n, c, h, w = x.shape
    o, _, kh, kw = w_oihw.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
            out += np.einsum("nchw,oc->nohw", patch, w_oihw[:, :, i, j])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def np_bn(x, p, s, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    r = lambda a: np.asarray(a, np.float64).reshape(shape)
    return (x - r(s["mean"])) / np.sqrt(r(s["var"]) + eps) * r(p["scale"]) + r(p["bias"])


def np_prelu(x, w):
    w = np.asarray(w, np.float64).reshape(1, -1, 1, 1)
    return np.where(x >= 0, x, w * x)


def np_maxpool(x, k, s, p):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    ho = (h + 2 * p - k) // s + 1
    wo = (w + 2 * p - k) // s + 1
    out = np.full((n, c, ho, wo), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[:, :, i : i + s * ho : s, j : j + s * wo : s])
    return out


def oihw(kernel):
    return np.asarray(kernel, np.float64).transpose(3, 2, 0, 1)


def nchw(x):
    return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# Reference forwards of the PyTorch originals -----------------------------------


def ref_iresnet(v, x_nhwc, nchw_flatten=True):
    P, S = v["params"], v["batch_stats"]
    x = nchw(x_nhwc)
    x = np_conv(x, oihw(P["conv1"]["kernel"]), 1, 1)
    x = np_bn(x, P["bn1"], S["bn1"])
    x = np_prelu(x, P["prelu"]["weight"])
    for stage in range(1, 5):
        b = 0
        while f"layer{stage}_{b}" in P:
            name = f"layer{stage}_{b}"
            p, s = P[name], S[name]
            stride = 2 if b == 0 else 1
            y = np_bn(x, p["bn1"], s["bn1"])
            y = np_conv(y, oihw(p["conv1"]["kernel"]), 1, 1)
            y = np_bn(y, p["bn2"], s["bn2"])
            y = np_prelu(y, p["prelu"]["weight"])
            y = np_conv(y, oihw(p["conv2"]["kernel"]), stride, 1)
            y = np_bn(y, p["bn3"], s["bn3"])
            if "downsample_0" in p:
                sc = np_conv(x, oihw(p["downsample_0"]["kernel"]), stride, 0)
                sc = np_bn(sc, p["downsample_1"], s["downsample_1"])
            else:
                sc = x
            x = y + sc
            b += 1
    x = np_bn(x, P["bn2"], S["bn2"])
    if not nchw_flatten:  # a deliberately wrong (NHWC-order) flatten, for the sanity check
        x = x.transpose(0, 2, 3, 1)
    x = x.reshape(x.shape[0], -1)  # torch.flatten(x, 1) on NCHW
    w_torch = np.asarray(P["fc"]["kernel"], np.float64).T  # plain transpose
    x = x @ w_torch.T + np.asarray(P["fc"]["bias"], np.float64)
    return np_bn(x, P["features"], S["features"])


def ref_resnet18_encoder(P, S, x_nhwc):
    relu = lambda a: np.maximum(a, 0)
    x = nchw(x_nhwc)
    x = relu(np_bn(np_conv(x, oihw(P["conv1"]["kernel"]), 2, 3), P["bn1"], S["bn1"]))
    x = np_maxpool(x, 3, 2, 1)
    for stage in range(1, 5):
        for b in range(2):
            p, s = P[f"layer{stage}_{b}"], S[f"layer{stage}_{b}"]
            stride = 2 if (stage > 1 and b == 0) else 1
            y = relu(np_bn(np_conv(x, oihw(p["conv1"]["kernel"]), stride, 1), p["bn1"], s["bn1"]))
            y = np_bn(np_conv(y, oihw(p["conv2"]["kernel"]), 1, 1), p["bn2"], s["bn2"])
            if "downsample_0" in p:
                sc = np_bn(np_conv(x, oihw(p["downsample_0"]["kernel"]), stride, 0),
                           p["downsample_1"], s["downsample_1"])
            else:
                sc = x
            x = relu(y + sc)
    return x.mean(axis=(2, 3))


def ref_stargan(P, x_nhwc, repeat_num):
    x = nchw(x_nhwc)
    for i in range(repeat_num):
        p = P[f"main_{2 * i}"]
        x = np_conv(x, oihw(p["kernel"]), 2, 1, bias=np.asarray(p["bias"], np.float64))
        x = np.where(x >= 0, x, 0.01 * x)
    src = np_conv(x, oihw(P["conv1"]["kernel"]), 1, 1)
    cls = np_conv(x, oihw(P["conv2"]["kernel"]), 1, 0)
    return src.transpose(0, 2, 3, 1), cls.reshape(cls.shape[0], cls.shape[1])


# ----------------------------------------------------------------------------- expected sizes


def expected_resnet18_params(width=64, num_classes=1000, in_ch=3):
    bn = lambda c: 2 * c
    n = 7 * 7 * in_ch * width + bn(width)
    c_in = width
    for stage, mult in enumerate((1, 2, 4, 8)):
        c = width * mult
        for b in range(2):
            n += 9 * c_in * c + bn(c) + 9 * c * c + bn(c)
            if c_in != c or (stage > 0 and b == 0):
                n += c_in * c + bn(c)
            c_in = c
    return n + c_in * num_classes + num_classes


def expected_iresnet(stages, width=64, input_size=112, num_features=512):
    """(params, state_dict entries) of insightface IResNet from the architecture."""
    params, entries = 0, 0

    def bn(c):
        nonlocal params, entries
        params += 2 * c
        entries += 5  # weight, bias, running_mean, running_var, num_batches_tracked

    def conv_(k, ci, co, bias=False):
        nonlocal params, entries
        params += k * k * ci * co + (co if bias else 0)
        entries += 2 if bias else 1

    def prelu(c):
        nonlocal params, entries
        params += c
        entries += 1

    conv_(3, 3, width)
    bn(width)
    prelu(width)
    c_in = width
    for mult, nb in zip((1, 2, 4, 8), stages):
        c = width * mult
        for b in range(nb):
            bn(c_in)
            conv_(3, c_in, c)
            bn(c)
            prelu(c)
            conv_(3, c, c)
            bn(c)
            if b == 0:
                conv_(1, c_in, c)
                bn(c)
            c_in = c
    bn(c_in)
    s = input_size
    for _ in range(4):
        s = math.ceil(s / 2)
    params += c_in * s * s * num_features + num_features  # fc
    entries += 2
    bn(num_features)
    return params, entries


def expected_stargan_params(image_size=128, conv_dim=64, c_dim=5, repeat_num=6, in_ch=3):
    n, ci, co = 0, in_ch, conv_dim
    for _ in range(repeat_num):
        n += 16 * ci * co + co
        ci, co = co, co * 2
    k = image_size // 2**repeat_num
    return n + 9 * ci * 1 + k * k * ci * c_dim


# ----------------------------------------------------------------------------- param counts


def test_resnet18_classifier_param_count_matches_torchvision():
    v = shapes(ResNet18Classifier(num_classes=1000), jnp.zeros((1, 224, 224, 3)), train=False)
    assert n_params(v["params"]) == 11_689_512 == expected_resnet18_params()
    assert set(v["params"]) == {"encoder", "fc"}
    # torchvision resnet18 state_dict has 122 entries (incl. fc, num_batches_tracked).
    assert torch_entries(v) == 122
    p = flat(v["params"])
    assert p["encoder/conv1/kernel"].shape == (7, 7, 3, 64)
    assert p["encoder/layer2_0/downsample_0/kernel"].shape == (1, 1, 64, 128)
    assert "encoder/layer1_0/downsample_0/kernel" not in p
    assert p["fc/kernel"].shape == (512, 1000)


@pytest.mark.parametrize("arch,entries,millions", [("r18", 187, 24.0), ("r50", 475, 43.6)])
def test_iresnet_full_size_matches_checkpoints(arch, entries, millions):
    v = shapes(iresnet(arch), jnp.zeros((1, 112, 112, 3)))
    exp_params, exp_entries = expected_iresnet(IRESNET_STAGES[arch])
    got = n_params(v["params"])
    assert got == exp_params
    assert round(got / 1e6, 1) == millions
    assert torch_entries(v) == exp_entries == entries
    p = flat(v["params"])
    assert p["prelu/weight"].shape == (64,)
    assert p["layer1_0/prelu/weight"].shape == (64,)
    # layer1 block 0 also downsamples (stride 2, 64 -> 64).
    assert p["layer1_0/downsample_0/kernel"].shape == (1, 1, 64, 64)
    assert "layer1_1/downsample_0/kernel" not in p
    assert p["fc/kernel"].shape == (512 * 7 * 7, 512)
    assert p["features/scale"].shape == (512,)
    assert set(flat(v["batch_stats"])) >= {"features/mean", "features/var", "bn2/mean"}


def test_iresnet_table_sizes_for_all_archs():
    # Arithmetic only (no tracing): the table in teachers.md.
    table = {"r18": (187, 24.0), "r34": (331, 34.1), "r50": (475, 43.6),
             "r100": (925, 65.2), "r200": (1807, 118.8)}
    for arch, (entries, millions) in table.items():
        params, ent = expected_iresnet(IRESNET_STAGES[arch])
        assert ent == entries and round(params / 1e6, 1) == millions, arch


def test_stargan_full_size():
    v = shapes(StarGANDiscriminator(), jnp.zeros((1, 128, 128, 3)))
    exp = expected_stargan_params()
    assert n_params(v["params"]) == exp == 44_762_048
    assert round(exp / 1e6, 2) == 44.76
    assert torch_entries(v) == 14
    p = flat(v["params"])
    assert sorted(p) == sorted(
        [f"main_{i}/{w}" for i in range(0, 12, 2) for w in ("kernel", "bias")]
        + ["conv1/kernel", "conv2/kernel"]
    )
    assert p["main_10/kernel"].shape == (4, 4, 1024, 2048)
    assert p["conv1/kernel"].shape == (3, 3, 2048, 1)
    assert p["conv2/kernel"].shape == (2, 2, 2048, 5)


def torch_keys(variables):
    """The PyTorch state_dict keys the flax tree maps onto (the converter's rule)."""
    leaf_map = {("params", "kernel"): "weight", ("params", "scale"): "weight",
                ("params", "bias"): "bias", ("params", "weight"): "weight",
                ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}
    keys = set()
    for col, tree in variables.items():
        for path in traverse_util.flatten_dict(tree):
            mods = ".".join(re.sub(r"_(\d+)$", r".\1", m) for m in path[:-1])
            keys.add(f"{mods}.{leaf_map[(col, path[-1])]}")
            if col == "batch_stats" and path[-1] == "mean":
                keys.add(f"{mods}.num_batches_tracked")
    return keys


def _bn_keys(m):
    return {f"{m}.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                 "num_batches_tracked")}


def test_state_dict_keys_map_one_to_one():
    # IResNet r18: keys written out from the insightface module structure.
    exp = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias"}
    exp |= _bn_keys("bn1") | _bn_keys("bn2") | _bn_keys("features")
    for s in range(1, 5):
        for b in range(2):
            m = f"layer{s}.{b}"
            exp |= {f"{m}.conv1.weight", f"{m}.conv2.weight", f"{m}.prelu.weight"}
            exp |= _bn_keys(f"{m}.bn1") | _bn_keys(f"{m}.bn2") | _bn_keys(f"{m}.bn3")
            if b == 0:
                exp |= {f"{m}.downsample.0.weight"} | _bn_keys(f"{m}.downsample.1")
    assert torch_keys(shapes(iresnet("r18", width=2, input_size=32), jnp.zeros((1, 32, 32, 3)))) == exp
    # StarGAN D.
    exp = {f"main.{i}.{w}" for i in range(0, 12, 2) for w in ("weight", "bias")}
    exp |= {"conv1.weight", "conv2.weight"}
    d = StarGANDiscriminator(image_size=64, conv_dim=2)
    assert torch_keys(shapes(d, jnp.zeros((1, 64, 64, 3)))) == exp
    # torchvision resnet18 (encoder subtree = everything but fc).
    exp = {"conv1.weight"} | _bn_keys("bn1")
    for s in range(1, 5):
        for b in range(2):
            m = f"layer{s}.{b}"
            exp |= {f"{m}.conv1.weight", f"{m}.conv2.weight"}
            exp |= _bn_keys(f"{m}.bn1") | _bn_keys(f"{m}.bn2")
            if s > 1 and b == 0:
                exp |= {f"{m}.downsample.0.weight"} | _bn_keys(f"{m}.downsample.1")
    enc = ResNet18Encoder(width=4)
    assert torch_keys(shapes(enc, jnp.zeros((1, 32, 32, 3)), train=False)) == exp


def test_iresnet_factory_rejects_unknown_arch():
    with pytest.raises(ValueError, match="r18, r34, r50, r100, r200"):
        iresnet("r42")


# ----------------------------------------------------------------------------- shapes


def test_resnet18_encoder_shapes_and_feature_map():
    enc = ResNet18Encoder(width=8)
    x = jax.random.uniform(KEY, (2, 64, 64, 3))
    v = fast_init(enc, x, train=False)
    f = run(enc, v, x, train=False)
    assert f.shape == (2, 64)
    f2, fmap = run(enc, v, x, train=False, return_feature_map=True)
    assert fmap.shape == (2, 2, 2, 64)
    np.testing.assert_allclose(f2, f, rtol=1e-6)
    np.testing.assert_allclose(fmap.mean(axis=(1, 2)), f, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,sizes", [(32, (16, 8, 4, 2)), (112, (56, 28, 14, 7))])
def test_iresnet_tiny_shapes(size, sizes):
    model = iresnet("r18", width=2, input_size=size)
    x = jnp.zeros((2, size, size, 3))
    v = fast_init(model, x)
    out, inter = run(model, v, x, capture_intermediates=True, mutable=["intermediates"])
    assert out.shape == (2, 512)
    inter = inter["intermediates"]
    got = tuple(inter[f"layer{s}_0"]["__call__"][0].shape[1] for s in range(1, 5))
    assert got == sizes
    assert iresnet_output_size(size) == sizes[-1]
    assert v["params"]["fc"]["kernel"].shape == (16 * sizes[-1] ** 2, 512)
    with pytest.raises(ValueError, match="expects NHWC input"):
        run(model, v, jnp.zeros((1, size + 16, size + 16, 3)))


def test_stargan_shapes():
    d = StarGANDiscriminator(image_size=128, conv_dim=2, c_dim=5, repeat_num=6)
    x = jnp.zeros((3, 128, 128, 3))
    v = fast_init(d, x)
    src, cls = run(d, v, x)
    assert src.shape == (3, 2, 2, 1) and cls.shape == (3, 5)
    d64 = StarGANDiscriminator(image_size=64, conv_dim=2, repeat_num=6)
    x64 = jnp.zeros((1, 64, 64, 3))
    src, cls = run(d64, fast_init(d64, x64), x64)
    assert src.shape == (1, 1, 1, 1) and cls.shape == (1, 5)


def test_stargan_rejects_indivisible_image_size():
    d = StarGANDiscriminator(image_size=100, conv_dim=2, repeat_num=6)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*repeat_num"):
        d.init(KEY, jnp.zeros((1, 100, 100, 3)))


# ----------------------------------------------------------------------------- padding / pooling


def test_stride2_conv_uses_torch_padding_not_same():
    layer = conv(5, 3, stride=2, padding=1)
    x = jax.random.normal(KEY, (2, 8, 8, 4))
    v = layer.init(KEY, x)
    k = v["params"]["kernel"]
    ref = jax.lax.conv_general_dilated(
        x, k, window_strides=(2, 2), padding=[(1, 1), (1, 1)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    got = layer.apply(v, x)
    assert got.shape == (2, 4, 4, 5)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # And against a pure NumPy torch-semantics conv.
    np.testing.assert_allclose(nchw(got), np_conv(nchw(x), oihw(k), 2, 1), rtol=1e-4, atol=1e-4)
    # 'SAME' would pad (0, 1) here and give a different answer.
    same = jax.lax.conv_general_dilated(
        x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert not np.allclose(got, same, atol=1e-3)


def test_max_pool_pads_with_minus_inf():
    x = -1.0 - jax.random.uniform(KEY, (1, 8, 8, 2))  # all negative
    y = max_pool_torch(x, 3, 2, 1)
    assert y.shape == (1, 4, 4, 2)
    assert bool(jnp.all(y < 0))  # zero padding would give 0 at the borders
    np.testing.assert_allclose(nchw(y), np_maxpool(nchw(x), 3, 2, 1), rtol=1e-6)
    # Differentiable under jit (the attack and Grad-CAM differentiate through it).
    g = jax.jit(jax.grad(lambda z: max_pool_torch(z, 3, 2, 1).sum()))(x)
    assert float(g.sum()) == y.size


@pytest.mark.parametrize("shape, window, stride, padding", [
    ((2, 9, 9, 3), 3, 2, 1),  # the ResNet stem's pool, odd size
    ((2, 8, 10, 3), 3, 2, 1),
    ((1, 7, 7, 2), 2, 2, 0),
    ((1, 6, 6, 2), 3, 1, 1),
])
def test_max_pool_matches_torch_values_and_gradient_with_ties(shape, window, stride, padding):
    """Forward and gradient equal torch.nn.functional.max_pool2d's, also where a window holds
    several equal maxima (after a ReLU most windows tie at 0): PyTorch sends the gradient to
    the first maximum in row-major order, and so must we."""
    import torch

    rng = np.random.default_rng(sum(shape) + window)
    x = rng.integers(-2, 3, size=shape).astype(np.float32)  # few distinct values: many ties
    x = np.maximum(x, 0) if window == 3 else x
    cotangent = rng.normal(size=max_pool_torch(jnp.asarray(x), window, stride, padding).shape)
    y, vjp = jax.vjp(lambda z: max_pool_torch(z, window, stride, padding), jnp.asarray(x))
    (g,) = vjp(jnp.asarray(cotangent, jnp.float32))

    xt = torch.tensor(nchw(x), dtype=torch.float32, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, window, stride, padding)
    yt.backward(torch.tensor(nchw(cotangent), dtype=torch.float32))
    np.testing.assert_array_equal(nchw(y), yt.detach().numpy())
    np.testing.assert_allclose(nchw(g), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- PReLU


def test_prelu_per_channel():
    m = PReLU()
    x = -jnp.ones((2, 3, 3, 4))
    v = m.init(KEY, x)
    assert v["params"]["weight"].shape == (4,)
    np.testing.assert_allclose(v["params"]["weight"], 0.25)
    w = jnp.array([0.1, 0.2, -0.3, 0.4])
    y = m.apply({"params": {"weight": w}}, x)
    np.testing.assert_allclose(y[0, 0, 0], -w, rtol=1e-6)
    assert len(set(np.asarray(y[0, 0, 0]).tolist())) == 4  # one distinct slope per channel
    # positive inputs pass through unchanged
    np.testing.assert_allclose(m.apply({"params": {"weight": w}}, -x), -x)


# ----------------------------------------------------------------------------- numeric ports


def test_iresnet_matches_numpy_reference():
    model = iresnet("r18", width=4, input_size=32)
    x = jax.random.uniform(KEY, (2, 32, 32, 3), minval=-1, maxval=1)
    v = fast_init(model, x, seed=1)
    # Tiny running variances in the last BN (nothing downstream to blow up) make
    # the check sensitive to eps (1e-5, not MXNet's 2e-5).
    v["batch_stats"]["features"]["var"] = jnp.asarray(
        10.0 ** np.random.default_rng(5).uniform(-6, -4, (512,)), jnp.float32)
    got = run(model, v, x)
    ref = ref_iresnet(v, x)
    assert rel_err(got, ref) < 1e-4
    # Sanity: the check is sensitive to the flatten order (an NHWC flatten is far off).
    assert rel_err(got, ref_iresnet(v, x, nchw_flatten=False)) > 0.1


def test_resnet18_encoder_matches_numpy_reference():
    enc = ResNet18Encoder(width=4)
    x = jax.random.normal(KEY, (2, 64, 64, 3))
    v = fast_init(enc, x, train=False, seed=2)
    got = run(enc, v, x, train=False)
    ref = ref_resnet18_encoder(v["params"], v["batch_stats"], x)
    assert rel_err(got, ref) < 1e-4


def test_stargan_matches_numpy_reference():
    d = StarGANDiscriminator(image_size=32, conv_dim=2, c_dim=5, repeat_num=3)
    x = jax.random.uniform(KEY, (2, 32, 32, 3), minval=-1, maxval=1)
    v = fast_init(d, x, seed=3)
    src, cls = run(d, v, x)
    ref_src, ref_cls = ref_stargan(v["params"], x, 3)
    assert src.shape == (2, 4, 4, 1) and cls.shape == (2, 5)
    assert rel_err(src, ref_src) < 1e-4
    assert rel_err(cls, ref_cls) < 1e-4


def test_classifier_normalizes_inputs():
    x = jnp.full((1, 2, 2, 3), 0.5)
    y = imagenet_normalize(x)
    np.testing.assert_allclose(
        y[0, 0, 0], (0.5 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
        rtol=1e-6)
    clf = ResNet18Classifier(num_classes=3, width=4)
    xi = jax.random.uniform(KEY, (2, 32, 32, 3))
    v = fast_init(clf, xi, train=False)
    logits = run(clf, v, xi, train=False)
    assert logits.shape == (2, 3)
    f = run(
        ResNet18Encoder(width=4),
        {"params": v["params"]["encoder"], "batch_stats": v["batch_stats"]["encoder"]},
        imagenet_normalize(xi), train=False)
    p = v["params"]["fc"]
    np.testing.assert_allclose(logits, f @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- BatchNorm


def test_batch_norm_uses_torch_eps():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(0, 0.01, (2, 3, 3, 4)), jnp.float32)
    p = {"scale": jnp.asarray(rng.uniform(0.5, 1.5, 4), jnp.float32),
         "bias": jnp.asarray(rng.normal(0, 0.1, 4), jnp.float32)}
    s = {"mean": jnp.asarray(rng.normal(0, 0.01, 4), jnp.float32),
         "var": jnp.asarray([1e-6, 1e-5, 1e-4, 1.0], jnp.float32)}
    y = batch_norm(train=False).apply({"params": p, "batch_stats": s}, x)
    np.testing.assert_allclose(nchw(y), np_bn(nchw(x), p, s, eps=1e-5), rtol=1e-5, atol=1e-6)


def test_batchnorm_eval_uses_running_stats_and_train_updates_them():
    model = iresnet("r18", width=2, input_size=32)
    k1, k2, k3 = jax.random.split(KEY, 3)
    a = jax.random.normal(k1, (1, 32, 32, 3))
    b = jax.random.normal(k2, (3, 32, 32, 3))
    c = 5.0 * jax.random.normal(k3, (3, 32, 32, 3)) + 2.0
    v = fast_init(model, a, seed=4)
    # Eval: a sample's output does not depend on the rest of the batch.
    out_ab = run(model, v, jnp.concatenate([a, b]))
    out_ac = run(model, v, jnp.concatenate([a, c]))
    np.testing.assert_allclose(out_ab[0], out_ac[0], rtol=1e-4, atol=1e-5)
    out_aaaa = run(model, v, jnp.concatenate([a, a, a, a]))
    np.testing.assert_allclose(out_ab[0], out_aaaa[3], rtol=1e-4, atol=1e-5)
    # Train: batch statistics are used and batch_stats are updated (torch momentum 0.1).
    xb = jnp.concatenate([a, c])
    out_tr, upd = run(model, v, xb, train=True, mutable=["batch_stats"])
    assert not np.allclose(out_tr[0], out_ab[0], atol=1e-3)
    old = v["batch_stats"]["bn1"]["mean"]
    new = upd["batch_stats"]["bn1"]["mean"]
    stem = jax.lax.conv_general_dilated(
        xb, v["params"]["conv1"]["kernel"], (1, 1), [(1, 1), (1, 1)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(new, 0.9 * old + 0.1 * stem.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    changed = jax.tree_util.tree_map(lambda o, n: not np.allclose(o, n), v["batch_stats"], upd["batch_stats"])
    assert all(jax.tree_util.tree_leaves(changed))


# ----------------------------------------------------------------------------- student


def test_student_outputs_and_input_gradient():
    model = DTDAStudent(width=4, num_classes=2, fr_dim=512, fa_dim=5)
    x = jax.random.uniform(KEY, (2, 64, 64, 3))
    v = fast_init(model, x, train=False)
    assert set(v["params"]) == {"encoder", "cls_head", "fr_head", "fa_head"}
    out = run(model, v, x, train=False)
    assert set(out) == {"features", "cls_logits", "fr_embedding", "fa_logits"}
    assert out["features"].shape == (2, 32)
    assert out["cls_logits"].shape == (2, 2)
    assert out["fr_embedding"].shape == (2, 512)
    assert out["fa_logits"].shape == (2, 5)

    # Gradient of the live/spoof logit w.r.t. the input (needed by the attack).
    def score(xx):
        return run(model, v, xx, train=False)["cls_logits"][:, 1].sum()

    g = jax.jit(jax.grad(score))(x)
    assert g.shape == x.shape
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0

    # Feature-map split (Grad-CAM) is consistent with the full forward.
    out_fm = run(model, v, x, train=False, return_feature_map=True)
    assert out_fm["feature_map"].shape == (2, 2, 2, 32)
    heads = run(model, v, out_fm["feature_map"], method=DTDAStudent.from_feature_map)
    np.testing.assert_allclose(heads["cls_logits"], out["cls_logits"], rtol=1e-5, atol=1e-6)

    # Train mode runs and updates batch_stats.
    out_tr, upd = run(model, v, x, train=True, mutable=["batch_stats"])
    assert out_tr["cls_logits"].shape == (2, 2)
    assert "encoder" in upd["batch_stats"]


def test_student_domain_head_reverses_the_gradient_into_the_encoder():
    """With `num_domains` the domain head's loss trains the head normally and pushes the
    encoder the opposite way, scaled by grl_scale."""
    model = DTDAStudent(width=4, num_classes=2, fr_dim=8, fa_dim=5, num_domains=3)
    x = jax.random.uniform(KEY, (4, 32, 32, 3))
    v = fast_init(model, x, train=False)
    assert "domain_head" in v["params"]
    labels = jnp.array([0, 1, 2, 0])

    def domain_loss(params, scale):
        out = model.apply({**v, "params": params}, x, train=False, grl_scale=scale)
        return losses.cross_entropy(out["domain_logits"], labels)

    def plain_loss(params):  # the same head without reversal
        out = model.apply({**v, "params": params}, x, train=False)
        return losses.cross_entropy(model.apply({"params": params}, out["features"],
                                                method=lambda m, f: m.domain_head(f)), labels)

    reversed_grads = jax.jit(jax.grad(domain_loss))(v["params"], 0.25)
    plain = jax.jit(jax.grad(plain_loss))(v["params"])

    def assert_close(a, b):
        jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-7), a, b)

    assert_close(reversed_grads["domain_head"], plain["domain_head"])
    assert_close(reversed_grads["encoder"], jax.tree.map(lambda g: -0.25 * g, plain["encoder"]))
    assert not any(float(jnp.abs(g).max()) for g in jax.tree.leaves(reversed_grads["cls_head"]))


def test_bfloat16_compute_keeps_float32_params():
    model = DTDAStudent(width=4, dtype=jnp.bfloat16)
    x = jax.random.uniform(KEY, (1, 32, 32, 3))
    assert all(l.dtype == jnp.float32 for l in jax.tree_util.tree_leaves(shapes(model, x, train=False)))
    v = fast_init(model, x, train=False)
    out = run(model, v, x, train=False)
    assert out["cls_logits"].dtype == jnp.bfloat16
    m = iresnet("r18", width=2, input_size=32, dtype=jnp.bfloat16)
    xi = jnp.zeros((1, 32, 32, 3))
    assert all(l.dtype == jnp.float32 for l in jax.tree_util.tree_leaves(shapes(m, xi)))
    vi = fast_init(m, xi)
    assert run(m, vi, xi).shape == (1, 512)


@pytest.mark.parametrize("spatial, stride, pad, kernel", [
    (1, 1, 1, 3), (2, 1, 1, 3), (2, 2, 1, 3), (3, 1, 1, 3), (4, 2, 1, 3), (3, 2, 0, 2),
])
def test_small_spatial_matmul_conv_equals_lax_conv(spatial, stride, pad, kernel):
    """The im2col path (outputs <= 2x2) must be the same convolution, values and gradients."""
    from dtda_jax.models.layers import conv_general_dilated_small_spatial_as_matmul as conv_mm

    rng = np.random.default_rng(spatial * 10 + stride)
    x = jnp.asarray(rng.normal(size=(3, spatial, spatial, 8)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 8, 5)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")
    padding = ((pad, pad), (pad, pad))

    def reference(w, x):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=dn)

    def ported(w, x):
        return conv_mm(x, w, (stride, stride), padding, dimension_numbers=dn)

    np.testing.assert_allclose(ported(w, x), reference(w, x), rtol=1e-5, atol=1e-5)
    g_ref = jax.grad(lambda w, x: jnp.sum(reference(w, x) ** 2), argnums=(0, 1))(w, x)
    g_new = jax.grad(lambda w, x: jnp.sum(ported(w, x) ** 2), argnums=(0, 1))(w, x)
    for a, b in zip(g_new, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
