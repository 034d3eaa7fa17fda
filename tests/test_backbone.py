"""ResNet backbone, FPN and normalization layers: names, shapes against the
matterport layout, and NumPy references for one block and the FPN."""
import keras
import numpy as np
import pytest

from mrcnn.backbone import bottleneck_block, build_fpn, resnet_graph
from mrcnn.layers.norm import BatchNorm, GroupNorm, fit_groups, norm_layer
from mrcnn.weights import weight_names
from tests.h5_layout import build_layout_model, expand_to_resnet101, layout_path_or_skip, parse_layout, weighted

EPS = 1e-3  # Keras / matterport BatchNormalization epsilon


def model_layout(model):
    """{layer_name: [(weight_name, shape)]} of the weighted layers of a model."""
    return {
        layer.name: list(zip(weight_names(layer), [tuple(w.shape) for w in layer.weights]))
        for layer in model.layers
        if layer.weights
    }


@pytest.fixture(scope="module")
def resnet50_model():
    return build_layout_model("resnet50")


@pytest.fixture(scope="module")
def resnet101_model():
    return build_layout_model("resnet101")


def test_resnet50_matches_reference_layout(resnet50_model):
    expected = weighted(parse_layout(layout_path_or_skip()))
    got = model_layout(resnet50_model)
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    for name, weights in expected.items():
        assert got[name] == weights, name
    assert len(got) == 131
    assert sum(int(np.prod(s)) for ws in got.values() for _, s in ws) == 45088120


def test_resnet101_matches_reference_layout_with_blocks_g_to_w(resnet101_model):
    expected = weighted(expand_to_resnet101(parse_layout(layout_path_or_skip())))
    got = model_layout(resnet101_model)
    assert set(got) == set(expected)
    for name, weights in expected.items():
        assert got[name] == weights, name
    stage4 = sorted({n[4] for n in got if n.startswith("res4") and n.endswith("_branch2a")})
    assert "".join(stage4) == "abcdefghijklmnopqrstuvw"


def test_backbone_and_fpn_output_shapes(resnet50_model):
    shapes = [tuple(t.shape) for t in resnet50_model.outputs[:5]]
    assert shapes == [(None, 16, 16, 256), (None, 8, 8, 256), (None, 4, 4, 256),
                      (None, 2, 2, 256), (None, 1, 1, 256)]
    named = {n: tuple(resnet50_model.get_layer(n).output.shape) for n in
             ("pool1", "res2c_out", "res3d_out", "res4f_out", "res5c_out")}
    assert named == {"pool1": (None, 16, 16, 64), "res2c_out": (None, 16, 16, 256),
                     "res3d_out": (None, 8, 8, 512), "res4f_out": (None, 4, 4, 1024),
                     "res5c_out": (None, 2, 2, 2048)}


def test_conv_block_strides_sit_in_first_1x1_conv(resnet50_model):
    get = resnet50_model.get_layer
    assert get("conv1").strides == (2, 2) and get("conv1").use_bias
    assert get("res2a_branch2a").strides == (1, 1) and get("res2a_branch1").strides == (1, 1)
    for stage in (3, 4, 5):
        assert get(f"res{stage}a_branch2a").strides == (2, 2)
        assert get(f"res{stage}a_branch1").strides == (2, 2)
        assert get(f"res{stage}a_branch2b").strides == (1, 1)
        assert get(f"res{stage}a_branch2b").padding == "same"
    assert all(layer.use_bias for layer in resnet50_model.layers if isinstance(layer, keras.layers.Conv2D))


def test_batchnorm_layers_frozen_when_train_bn_false(resnet50_model):
    bns = [layer for layer in resnet50_model.layers if isinstance(layer, BatchNorm)]
    assert len(bns) == 53 + 6  # backbone + two classifier BN + four mask BN
    assert all(bn.frozen for bn in bns)


def test_unknown_architecture_and_norm_raise():
    image = keras.Input((64, 64, 3))
    with pytest.raises(ValueError, match="resnet152"):
        resnet_graph(image, "resnet152")
    with pytest.raises(ValueError, match="'layer'"):
        resnet_graph(image, "resnet50", norm="layer")


def test_stage5_false_returns_none():
    image = keras.Input((64, 64, 3))
    c1, c2, c3, c4, c5 = resnet_graph(image, "resnet50", stage5=False)
    assert c5 is None
    assert tuple(c4.shape) == (None, 4, 4, 1024)
    assert tuple(c1.shape) == (None, 16, 16, 64)


# ---------------------------------------------------------------- NumPy references

def conv2d_np(x, kernel, bias, stride=1, padding="valid"):
    """NHWC conv with an HWIO kernel (odd kernel for "same")."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h = (x.shape[1] - kh) // stride + 1
    w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride, :]
            out += patch @ kernel[i, j]
    return out + bias


def bn_np(x, gamma, beta, mean, var):
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def randomize(model, rng):
    """Random weights (positive moving variances); returns {layer: [arrays]}."""
    values = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = []
        for var in layer.weights:
            a = rng.standard_normal(tuple(var.shape)).astype(np.float32) * 0.5
            if var.name == "moving_variance":
                a = np.abs(a) + 0.5
            var.assign(a)
            arrays.append(a.astype(np.float64))
        values[layer.name] = arrays
    return values


@pytest.mark.parametrize("strides", [None, 2])
def test_bottleneck_block_matches_numpy(strides, rng):
    channels_in = 8
    filters = (2, 3, 8) if strides is None else (2, 3, 6)
    inputs = keras.Input((4, 4, channels_in))
    out = bottleneck_block(inputs, 3, filters, stage=9, block="a", strides=strides)
    model = keras.Model(inputs, out)
    w = randomize(model, rng)
    x = rng.standard_normal((2, 4, 4, channels_in)).astype(np.float32)

    s = strides or 1
    y = np.maximum(bn_np(conv2d_np(x, *w["res9a_branch2a"], stride=s), *w["bn9a_branch2a"]), 0)
    y = np.maximum(bn_np(conv2d_np(y, *w["res9a_branch2b"], padding="same"), *w["bn9a_branch2b"]), 0)
    y = bn_np(conv2d_np(y, *w["res9a_branch2c"]), *w["bn9a_branch2c"])
    if strides is None:
        shortcut = x
    else:
        shortcut = bn_np(conv2d_np(x, *w["res9a_branch1"], stride=s), *w["bn9a_branch1"])
    expected = np.maximum(y + shortcut, 0)

    got = model(x, training=True).numpy()  # frozen BN: training=True changes nothing
    assert got.shape == expected.shape == ((2, 4, 4, 8) if strides is None else (2, 2, 2, 6))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert model.layers[-1].name == "res9a_out"


def test_fpn_matches_numpy(rng):
    sizes, chans = (16, 8, 4, 2), (3, 4, 5, 6)
    inputs = [keras.Input((s, s, c), name=f"c{k}") for k, s, c in zip(range(2, 6), sizes, chans)]
    pyramid = build_fpn(*inputs, pyramid_size=4)
    p4add = keras.Model(inputs, pyramid)
    model = keras.Model(inputs, pyramid + [p4add.get_layer("fpn_p4add").output])
    w = randomize(model, rng)
    c = [rng.standard_normal((1, s, s, ch)).astype(np.float32) for s, ch in zip(sizes, chans)]
    p2, p3, p4, p5, p6, p4_sum = [t.numpy() for t in model(c)]

    def up(t):
        return t.repeat(2, axis=1).repeat(2, axis=2)

    m5 = conv2d_np(c[3], *w["fpn_c5p5"])
    m4 = up(m5) + conv2d_np(c[2], *w["fpn_c4p4"])
    m3 = up(m4) + conv2d_np(c[1], *w["fpn_c3p3"])
    m2 = up(m3) + conv2d_np(c[0], *w["fpn_c2p2"])
    np.testing.assert_allclose(p4_sum, m4, rtol=1e-4, atol=1e-4)
    for got, m, name in ((p2, m2, "fpn_p2"), (p3, m3, "fpn_p3"), (p4, m4, "fpn_p4"), (p5, m5, "fpn_p5")):
        np.testing.assert_allclose(got, conv2d_np(m, *w[name], padding="same"), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(p6, p5[:, ::2, ::2, :])
    assert p6.shape == (1, 1, 1, 4)


def test_fpn_rejects_bad_pyramid_size():
    c = [keras.Input((8, 8, 4)) for _ in range(4)]
    with pytest.raises(ValueError, match="pyramid_size.*0"):
        build_fpn(*c, pyramid_size=0)


# ---------------------------------------------------------------- normalization

def _bn_with_stats(frozen, channels=3):
    bn = BatchNorm(frozen=frozen, name="bn_test")
    bn.build((None, channels))
    bn.gamma.assign([1.0, 2.0, 0.5])
    bn.beta.assign([0.0, 1.0, -1.0])
    bn.moving_mean.assign([10.0, -5.0, 2.0])
    bn.moving_variance.assign([4.0, 1.0, 9.0])
    return bn


def test_frozen_batchnorm_uses_moving_statistics_even_when_training():
    bn = _bn_with_stats(frozen=True)
    x = np.array([[1.0, 3.0, 0.0], [5.0, -1.0, 4.0], [0.0, 2.0, 2.0]], np.float32)
    expected = (x - [10.0, -5.0, 2.0]) / np.sqrt(np.array([4.0, 1.0, 9.0]) + EPS) * [1.0, 2.0, 0.5] + [0, 1, -1]
    np.testing.assert_allclose(bn(x, training=True).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(bn(x, training=False).numpy(), expected, rtol=1e-6)
    batch_stats = (x - x.mean(0)) / np.sqrt(x.var(0) + EPS) * [1.0, 2.0, 0.5] + [0, 1, -1]
    assert not np.allclose(expected, batch_stats, atol=0.1)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), [10.0, -5.0, 2.0])  # no update
    np.testing.assert_array_equal(bn.moving_variance.numpy(), [4.0, 1.0, 9.0])


def test_unfrozen_batchnorm_uses_batch_statistics_when_training():
    bn = _bn_with_stats(frozen=False)
    x = np.array([[1.0, 3.0, 0.0], [5.0, -1.0, 4.0], [0.0, 2.0, 2.0]], np.float32)
    mean, var = x.mean(0), x.var(0)
    expected = (x - mean) / np.sqrt(var + EPS) * [1.0, 2.0, 0.5] + [0, 1, -1]
    np.testing.assert_allclose(bn(x, training=True).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.99 * np.array([10.0, -5.0, 2.0]) + 0.01 * mean, rtol=1e-6)
    # In inference mode the (updated) moving statistics are used.
    mm, mv = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    inference = (x - mm) / np.sqrt(mv + EPS) * [1.0, 2.0, 0.5] + [0, 1, -1]
    np.testing.assert_allclose(bn(x, training=False).numpy(), inference, rtol=1e-5)
    assert not np.allclose(inference, expected, atol=0.1)


def test_batchnorm_config_round_trip_and_validation():
    bn = BatchNorm(frozen=True, name="bn_x", epsilon=1e-3)
    clone = BatchNorm.from_config(bn.get_config())
    assert clone.frozen is True and clone.name == "bn_x"
    with pytest.raises(TypeError, match="'yes'"):
        BatchNorm(frozen="yes")


def test_norm_layer_kinds():
    assert norm_layer("batch", "bn_a", train_bn=False).frozen is True
    assert norm_layer("batch", "bn_b", train_bn=True).frozen is False
    assert norm_layer("batch", "bn_c", train_bn=None).frozen is False
    gn = norm_layer("group", "bn_d", groups=4)
    assert isinstance(gn, GroupNorm) and gn.name == "bn_d"
    gn.build((None, 5, 5, 6))
    assert gn.groups == 3  # largest divisor of 6 not above 4
    assert [w.name for w in gn.weights] == ["gamma", "beta"]
    assert GroupNorm.from_config(gn.get_config()).max_groups == 4
    with pytest.raises(ValueError, match="'instance'"):
        norm_layer("instance", "bn_e")


@pytest.mark.parametrize("max_groups,channels,expected", [(32, 256, 32), (32, 64, 32), (32, 6, 6),
                                                          (4, 6, 3), (32, 1024, 32), (5, 7, 1)])
def test_fit_groups(max_groups, channels, expected):
    assert fit_groups(max_groups, channels) == expected


def test_group_norm_block_keeps_bn_names(rng):
    inputs = keras.Input((4, 4, 64))
    out = bottleneck_block(inputs, 3, (64, 64, 64), stage=2, block="b", norm="group", gn_groups=32)
    model = keras.Model(inputs, out)
    norms = {layer.name: layer for layer in model.layers if isinstance(layer, GroupNorm)}
    assert sorted(norms) == ["bn2b_branch2a", "bn2b_branch2b", "bn2b_branch2c"]
    assert all(layer.groups == 32 for layer in norms.values())
    # Group norm normalizes each sample on its own: batch composition does not matter.
    x = rng.standard_normal((3, 4, 4, 64)).astype(np.float32)
    np.testing.assert_allclose(model(x[:1]).numpy(), model(x).numpy()[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frozen,training", [(True, True), (True, False), (False, False)])
def test_fused_inference_path_matches_keras_batchnorm(frozen, training, rng):
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32) * 3 + 1
    bn = BatchNorm(frozen=frozen)
    ref = keras.layers.BatchNormalization()
    bn.build(x.shape)
    ref.build(x.shape)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        value = rng.standard_normal(6).astype(np.float32)
        value = np.abs(value) + 0.5 if name == "moving_variance" else value
        getattr(bn, name).assign(value)
        getattr(ref, name).assign(value)
    np.testing.assert_allclose(bn(x, training=training).numpy(), ref(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_frozen_batchnorm_has_gradients_for_input_gamma_beta(rng):
    import tensorflow as tf

    bn = BatchNorm(frozen=True)
    x = tf.constant(rng.standard_normal((2, 3, 3, 4)).astype(np.float32))
    bn.build(x.shape)
    bn.moving_variance.assign(np.full(4, 4.0, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(bn(x, training=True) * 2.0)
    dx, dgamma, dbeta = tape.gradient(y, [x, bn.gamma, bn.beta])
    np.testing.assert_allclose(dx.numpy(), np.full(x.shape, 2.0 / np.sqrt(4.0 + EPS)), rtol=1e-5)
    np.testing.assert_allclose(dbeta.numpy(), np.full(4, 2.0 * 18), rtol=1e-5)
    np.testing.assert_allclose(dgamma.numpy(), 2.0 * x.numpy().sum((0, 1, 2)) / np.sqrt(4.0 + EPS), rtol=1e-4)


def test_frozen_batchnorm_under_mixed_precision(rng):
    bn = BatchNorm(frozen=True, dtype="mixed_float16")
    x = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    bn.build(x.shape)
    bn.moving_mean.assign([1.0, 2.0, 3.0])
    out = bn(x, training=True)
    assert out.dtype == "float16" and bn.gamma.dtype == "float32"
    np.testing.assert_allclose(out.numpy().astype(np.float32), (x - [1, 2, 3]) / np.sqrt(1 + EPS), atol=2e-3)
