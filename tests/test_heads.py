"""RPN, box/class head, mask head and the per-ROI fold/unfold layers."""
import keras
import numpy as np
import pytest

from mrcnn.heads import build_rpn_model, fpn_classifier_head, fpn_mask_head
from mrcnn.layers.norm import BatchNorm, GroupNorm
from mrcnn.layers.per_roi import FlattenROIs, UnflattenROIs, WindowConv2D
from mrcnn.weights import weight_names
from tests.h5_layout import layout_path_or_skip, parse_layout, weighted

EPS = 1e-3


def randomize(model, rng, scale=0.3):
    values = {}
    for layer in model.layers:
        arrays = []
        for var in layer.weights:
            a = rng.standard_normal(tuple(var.shape)).astype(np.float32) * scale
            if var.name == "moving_variance":
                a = np.abs(a) + 0.5
            var.assign(a)
            arrays.append(a.astype(np.float64))
        if arrays:
            values[layer.name] = arrays
    return values


# ---------------------------------------------------------------- RPN

def test_rpn_model_weight_order_and_shapes():
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=256)
    assert rpn.name == "rpn_model"
    assert rpn.inputs[0].name == "input_rpn_feature_map"
    got = list(zip(weight_names(rpn), [tuple(w.shape) for w in rpn.weights]))
    assert got == [
        ("rpn_conv_shared/kernel:0", (3, 3, 256, 512)), ("rpn_conv_shared/bias:0", (512,)),
        ("rpn_class_raw/kernel:0", (1, 1, 512, 6)), ("rpn_class_raw/bias:0", (6,)),
        ("rpn_bbox_pred/kernel:0", (1, 1, 512, 12)), ("rpn_bbox_pred/bias:0", (12,)),
    ]
    expected = weighted(parse_layout(layout_path_or_skip()))["rpn_model"]
    assert got == expected


def test_rpn_outputs_follow_row_col_anchor_order(rng):
    rpn = build_rpn_model(1, 3, 8)
    randomize(rpn, rng)
    probe = keras.Model(rpn.input, [rpn.get_layer("rpn_class_raw").output, rpn.get_layer("rpn_bbox_pred").output])
    fmap = rng.standard_normal((2, 4, 5, 8)).astype(np.float32)
    logits, probs, bbox = [t.numpy() for t in rpn(fmap)]
    raw_class, raw_bbox = [t.numpy() for t in probe(fmap)]
    assert logits.shape == probs.shape == (2, 60, 2) and bbox.shape == (2, 60, 4)
    for b, r, c, a in [(0, 0, 0, 0), (0, 0, 0, 2), (1, 0, 1, 0), (1, 3, 4, 2), (0, 2, 3, 1)]:
        i = (r * 5 + c) * 3 + a
        np.testing.assert_array_equal(logits[b, i], raw_class[b, r, c, 2 * a:2 * a + 2])
        np.testing.assert_array_equal(bbox[b, i], raw_bbox[b, r, c, 4 * a:4 * a + 4])
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(-1, keepdims=True), rtol=1e-5)


def test_rpn_anchor_stride_two_and_dynamic_size():
    rpn = build_rpn_model(2, 3, 8)
    logits, probs, bbox = rpn(np.zeros((1, 6, 7, 8), np.float32))
    assert tuple(logits.shape) == (1, 3 * 4 * 3, 2) and tuple(bbox.shape) == (1, 36, 4)
    logits, _, _ = rpn(np.zeros((1, 2, 2, 8), np.float32))  # same model, other size
    assert tuple(logits.shape) == (1, 3, 2)


def test_rpn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="anchors_per_location.*0"):
        build_rpn_model(1, 0, 256)
    with pytest.raises(ValueError, match="anchor_stride.*1.5"):
        build_rpn_model(1.5, 3, 256)


# ---------------------------------------------------------------- heads

def build_heads(num_rois=3, pool=7, mask_pool=14, channels=256, num_classes=81, fc=1024, norm="batch"):
    pc = keras.Input((num_rois, pool, pool, channels), name="pooled_classifier")
    pm = keras.Input((num_rois, mask_pool, mask_pool, channels), name="pooled_mask")
    logits, probs, bbox = fpn_classifier_head(pc, num_classes, False, fc, norm=norm)
    masks = fpn_mask_head(pm, num_classes, False, norm=norm)
    return keras.Model([pc, pm], [logits, probs, bbox, masks])


def test_heads_match_reference_layout_shapes():
    layout = weighted(parse_layout(layout_path_or_skip()))
    model = build_heads()
    got = {layer.name: list(zip(weight_names(layer), [tuple(w.shape) for w in layer.weights]))
           for layer in model.layers if layer.weights}
    expected = {n: w for n, w in layout.items() if n.startswith("mrcnn_")}
    assert got == expected
    assert [tuple(t.shape) for t in model.outputs] == [(None, 3, 81), (None, 3, 81), (None, 3, 81, 4),
                                                       (None, 3, 28, 28, 81)]
    names = [layer.name for layer in model.layers]
    assert {"pool_squeeze", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask_deconv"} <= set(names)
    assert model.get_layer("mrcnn_mask_deconv").kernel.shape == (2, 2, 256, 256)
    assert all(isinstance(model.get_layer(f"mrcnn_mask_bn{i}"), BatchNorm) for i in range(1, 5))


def test_classifier_head_matches_numpy(rng):
    n, p, ch, k, fc = 3, 4, 5, 4, 6
    pooled = keras.Input((n, p, p, ch))
    model = keras.Model(pooled, list(fpn_classifier_head(pooled, k, train_bn=False, fc_layers_size=fc)))
    w = randomize(model, rng)
    x = rng.standard_normal((2, n, p, p, ch)).astype(np.float32)
    logits, probs, bbox = [t.numpy() for t in model(x, training=True)]

    def bn(v, g, b, m, var):
        return (v - m) / np.sqrt(var + EPS) * g + b

    flat = x.reshape(2, n, -1).astype(np.float64)
    h = np.maximum(bn(flat @ w["mrcnn_class_conv1"][0].reshape(-1, fc) + w["mrcnn_class_conv1"][1],
                      *w["mrcnn_class_bn1"]), 0)
    h = np.maximum(bn(h @ w["mrcnn_class_conv2"][0].reshape(fc, fc) + w["mrcnn_class_conv2"][1],
                      *w["mrcnn_class_bn2"]), 0)
    exp_logits = h @ w["mrcnn_class_logits"][0] + w["mrcnn_class_logits"][1]
    exp_bbox = (h @ w["mrcnn_bbox_fc"][0] + w["mrcnn_bbox_fc"][1]).reshape(2, n, k, 4)
    np.testing.assert_allclose(logits, exp_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bbox, exp_bbox, rtol=1e-4, atol=1e-4)
    e = np.exp(exp_logits - exp_logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_mask_head_keeps_rois_independent(rng):
    n, p, k = 3, 4, 2
    pooled = keras.Input((n, p, p, 8))
    model = keras.Model(pooled, fpn_mask_head(pooled, k, train_bn=False))
    randomize(model, rng)
    x = rng.standard_normal((2, n, p, p, 8)).astype(np.float32)
    out = model(x).numpy()
    assert out.shape == (2, n, 2 * p, 2 * p, k)
    assert out.min() >= 0.0 and out.max() <= 1.0
    x2 = x.copy()
    x2[1, 2] += 3.0
    out2 = model(x2).numpy()
    changed = np.abs(out2 - out).reshape(2, n, -1).max(-1) > 1e-6
    np.testing.assert_array_equal(changed, [[False, False, False], [False, False, True]])
    # Each ROI alone gives the same mask as in the batch.
    single = model(np.repeat(x[1:2, 2:3], n, axis=1)).numpy()
    np.testing.assert_allclose(single[0, 0], out[1, 2], rtol=1e-5, atol=1e-6)


def test_box_head_needs_static_roi_count_mask_head_does_not(rng):
    pooled = keras.Input((None, 7, 7, 8))
    with pytest.raises(ValueError, match="static num_rois"):
        fpn_classifier_head(pooled, 4, False, 16)
    with pytest.raises(ValueError, match="static pool and channels"):
        fpn_mask_head(keras.Input((None, 7, None, 8)), 4, False)
    # The inference graph runs the mask head on a run-time number of detections.
    model = keras.Model(pooled, fpn_mask_head(pooled, 4, False, filters=8))
    assert tuple(model.output.shape) == (None, None, 14, 14, 4)
    for rois in (1, 5):
        x = rng.standard_normal((2, rois, 7, 7, 8)).astype(np.float32)
        out = model(x).numpy()
        assert out.shape == (2, rois, 14, 14, 4)
    np.testing.assert_allclose(model(x[:, :2]).numpy(), out[:, :2], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_classes.*0"):
        fpn_mask_head(keras.Input((2, 7, 7, 8)), 0, False)


def test_group_norm_heads_keep_names():
    model = build_heads(num_rois=2, channels=8, num_classes=4, fc=64, norm="group")
    gns = sorted(layer.name for layer in model.layers if isinstance(layer, GroupNorm))
    assert gns == ["mrcnn_class_bn1", "mrcnn_class_bn2"] + [f"mrcnn_mask_bn{i}" for i in range(1, 5)]
    assert model.get_layer("mrcnn_class_bn1").groups == 32
    assert not any(isinstance(layer, BatchNorm) for layer in model.layers)


# ---------------------------------------------------------------- fold / unfold

def test_flatten_unflatten_round_trip_and_order(rng):
    x = rng.standard_normal((2, 3, 4, 4, 5)).astype(np.float32)
    flat = FlattenROIs()(x).numpy()
    assert flat.shape == (6, 4, 4, 5)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(flat[i * 3 + j], x[i, j])
    np.testing.assert_array_equal(UnflattenROIs(3)(flat).numpy(), x)


def test_fold_layers_in_a_model_with_dynamic_batch(rng):
    inputs = keras.Input((3, 2, 5))
    flat = FlattenROIs(name="fold")(inputs)
    out = UnflattenROIs(3, name="unfold")(flat)
    assert tuple(flat.shape) == (None, 2, 5) and tuple(out.shape) == (None, 3, 2, 5)
    model = keras.Model(inputs, out)
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, 2, 5)).astype(np.float32)
        np.testing.assert_array_equal(model(x).numpy(), x)
    assert FlattenROIs().compute_output_shape((2, 3, 7, 7, 8)) == (6, 7, 7, 8)
    assert UnflattenROIs(3).compute_output_shape((6, 7, 7, 8)) == (2, 3, 7, 7, 8)


def test_unflatten_config_and_validation():
    layer = UnflattenROIs(5, name="unfold")
    clone = UnflattenROIs.from_config(layer.get_config())
    assert clone.num_rois == 5 and clone.name == "unfold"
    assert UnflattenROIs.from_config(UnflattenROIs(None).get_config()).num_rois is None
    with pytest.raises(ValueError, match="num_rois.*0"):
        UnflattenROIs(0)


def test_unflatten_with_a_run_time_roi_count(rng):
    x = rng.standard_normal((2, 3, 4, 4, 5)).astype(np.float32)
    flat = FlattenROIs()(x)
    out = UnflattenROIs(None)([flat, x]).numpy()
    np.testing.assert_array_equal(out, x)
    assert UnflattenROIs(None).compute_output_shape([(None, 4, 4, 5), (2, None, 4, 4, 5)]) == (2, None, 4, 4, 5)


def test_window_conv_equals_conv2d_forward_and_backward(rng):
    import tensorflow as tf
    x = rng.normal(size=(6, 3, 3, 5)).astype(np.float32)
    window = WindowConv2D(4, (3, 3), activation="relu", name="mrcnn_class_conv1")
    conv = keras.layers.Conv2D(4, (3, 3), activation="relu")
    window.build(x.shape)
    conv.build(x.shape)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in conv.get_weights()]
    window.set_weights(weights)
    conv.set_weights(weights)
    assert [w.shape for w in window.get_weights()] == [(3, 3, 5, 4), (4,)]
    grads = []
    for layer in (window, conv):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(y * tf.range(4, dtype=tf.float32))
        grads.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, [xt] + layer.trainable_weights)])
    assert grads[0][0].shape == (6, 1, 1, 4)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Another input size falls back to the convolution.
    bigger = rng.normal(size=(2, 5, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(window(bigger)), np.asarray(conv(bigger)), rtol=1e-5, atol=1e-5)
    assert WindowConv2D.from_config(window.get_config()).kernel_size == (3, 3)
