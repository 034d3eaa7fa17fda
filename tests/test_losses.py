"""Tests of mrcnn.losses: hand-computed values, empty cases, gradients, dtypes."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import losses

LN2, LN3 = math.log(2.0), math.log(3.0)


def _value(x):
    return float(np.asarray(x))


# ----------------------------------------------------------------- smooth_l1
def test_smooth_l1_both_branches():
    # |d| = 0.5 -> 0.5 * 0.25 = 0.125; |d| = 1 -> 1 - 0.5 = 0.5; |d| = 3 -> 2.5; d = 0 -> 0
    out = losses.smooth_l1(np.array([0.0, 0.0, 3.0, 2.0]), np.array([0.5, -1.0, 0.0, 2.0]))
    np.testing.assert_allclose(np.asarray(out), [0.125, 0.5, 2.5, 0.0], rtol=1e-6)


# ------------------------------------------------------------ rpn_class_loss
def _rpn_class_inputs():
    rpn_match = np.array([[[1], [-1], [0]]], dtype=np.int32)
    logits = np.array([[[0.0, 0.0], [0.0, LN3], [5.0, -5.0]]], dtype=np.float32)
    return rpn_match, logits


def test_rpn_class_loss_value():
    rpn_match, logits = _rpn_class_inputs()
    # anchor 0 positive, logits (0, 0): p(fg) = 1/2 -> CE = ln 2
    # anchor 1 negative, logits (0, ln 3): p(bg) = 1/(1+3) = 1/4 -> CE = ln 4 = 2 ln 2
    # anchor 2 neutral: ignored.  mean = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2
    loss = losses.rpn_class_loss(rpn_match, logits)
    assert loss.dtype == "float32"
    np.testing.assert_allclose(_value(loss), 1.5 * LN2, rtol=1e-6)


def test_rpn_class_loss_averages_over_the_batch():
    rpn_match, logits = _rpn_class_inputs()
    # image 1: one negative anchor with logits (0, 0) -> CE ln 2; three used anchors in all
    match2 = np.concatenate([rpn_match, [[[0], [0], [-1]]]]).astype(np.int32)
    logits2 = np.concatenate([logits, [[[9.0, 1.0], [3.0, 3.0], [0.0, 0.0]]]]).astype(np.float32)
    loss = losses.rpn_class_loss(match2, logits2)
    np.testing.assert_allclose(_value(loss), (LN2 + 2 * LN2 + LN2) / 3, rtol=1e-6)


# ------------------------------------------------------------- rpn_bbox_loss
def _rpn_bbox_inputs():
    # image 0: anchors 0 and 2 positive -> target rows 0 and 1; image 1: anchor 1 -> row 0.
    rpn_match = np.array([[[1], [0], [1], [-1]],
                          [[0], [1], [0], [0]]], dtype=np.int32)
    target = np.zeros((2, 3, 4), np.float32)
    target[0, 1] = [0, 0, 0, 1]
    target[1, 1] = [7, 7, 7, 7]          # never used: image 1 has one positive
    pred = np.full((2, 4, 4), 9.0, np.float32)   # non-positive anchors: ignored garbage
    pred[0, 0] = [0.5, 0, 0, 0]
    pred[0, 2] = [0, 0, 3, 0]
    pred[1, 1] = [0, 0, 0, 0.2]
    return target, rpn_match, pred


def test_rpn_bbox_loss_value():
    target, rpn_match, pred = _rpn_bbox_inputs()
    # image 0 anchor 0 vs row 0: d = (0.5, 0, 0, 0) -> 0.5 * 0.25 = 0.125
    # image 0 anchor 2 vs row 1: d = (0, 0, 3, -1) -> 2.5 + 0.5 = 3.0
    # image 1 anchor 1 vs its own row 0: d = (0, 0, 0, 0.2) -> 0.5 * 0.04 = 0.02
    # 3 positives x 4 coordinates: (0.125 + 3.0 + 0.02) / 12 = 3.145 / 12
    loss = losses.rpn_bbox_loss(target, rpn_match, pred)
    np.testing.assert_allclose(_value(loss), 3.145 / 12, rtol=1e-6)


def test_rpn_bbox_loss_ignores_positives_without_target_row():
    # 3 positives but only 2 target rows: the third positive (anchor 2) is ignored.
    rpn_match = np.array([[[1], [1], [1]]], np.int32)
    target = np.array([[[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    pred = np.array([[[0.5, 0, 0, 0], [0, 0, 0, 0], [100, 100, 100, 100]]], np.float32)
    # (0.125 + 0) / (2 * 4)
    np.testing.assert_allclose(_value(losses.rpn_bbox_loss(target, rpn_match, pred)),
                               0.125 / 8, rtol=1e-6)


def test_rpn_bbox_loss_in_graph_with_unknown_shapes():
    target, rpn_match, pred = _rpn_bbox_inputs()
    fn = tf.function(losses.rpn_bbox_loss, input_signature=[
        tf.TensorSpec([None, None, 4], tf.float32),
        tf.TensorSpec([None, None, 1], tf.int32),
        tf.TensorSpec([None, None, 4], tf.float32)])
    np.testing.assert_allclose(_value(fn(target, rpn_match, pred)), 3.145 / 12, rtol=1e-6)


# ---------------------------------------------------------- mrcnn_class_loss
def test_mrcnn_class_loss_value():
    target_ids = np.array([[1, 0, 0]], np.int32)
    logits = np.array([[[0.0, 0.0, 0.0],       # arg-max 0 (active), target 1: CE = ln 3
                        [0.0, 0.0, 10.0],      # arg-max 2 (inactive): zeroed, not counted
                        [0.0, LN3, 0.0]]],     # arg-max 1 (active), target 0: p = 1/5 -> ln 5
                      np.float32)
    active = np.array([[1, 1, 0]], np.int32)
    # (ln 3 + ln 5) / 2 active predictions
    loss = losses.mrcnn_class_loss(target_ids, logits, active)
    np.testing.assert_allclose(_value(loss), math.log(15.0) / 2, rtol=1e-6)


# ----------------------------------------------------------- mrcnn_bbox_loss
def test_mrcnn_bbox_loss_value():
    target_ids = np.array([[2, 0, 1]], np.int32)
    target = np.array([[[0, 0, 0, 0], [5, 5, 5, 5], [0, 0, 0, -0.5]]], np.float32)
    pred = np.full((1, 3, 3, 4), 50.0, np.float32)      # other classes: garbage
    pred[0, 0, 2] = [1.5, 0, 0, 0]                       # d = 1.5 -> 1.0
    pred[0, 2, 1] = [0, 0.5, 0, 0]                       # d = 0.5, 0.5 -> 0.125 + 0.125
    # (1.0 + 0.25) / (2 positives * 4) = 0.15625
    loss = losses.mrcnn_bbox_loss(target, target_ids, pred)
    np.testing.assert_allclose(_value(loss), 0.15625, rtol=1e-6)


# ----------------------------------------------------------- mrcnn_mask_loss
def test_mrcnn_mask_loss_value():
    target_ids = np.array([[1, 0]], np.int32)
    target = np.array([[[[1, 0], [0, 1]], [[1, 1], [1, 1]]]], np.float32)
    pred = np.full((1, 2, 2, 2, 2), 0.01, np.float32)    # background ROI / class 0: garbage
    pred[0, 0, :, :, 1] = [[0.8, 0.2], [0.5, 0.9]]
    # -ln 0.8, -ln(1 - 0.2), -ln(1 - 0.5), -ln 0.9 averaged over the 4 pixels
    expected = (2 * math.log(1.25) + LN2 + math.log(10 / 9)) / 4
    loss = losses.mrcnn_mask_loss(target, target_ids, pred)
    np.testing.assert_allclose(_value(loss), expected, rtol=1e-5)


def test_mrcnn_mask_loss_in_graph_with_unknown_shapes():
    target_ids = np.array([[1, 0]], np.int32)
    target = np.ones((1, 2, 3, 3), np.float32)
    pred = np.full((1, 2, 3, 3, 2), 0.5, np.float32)
    fn = tf.function(losses.mrcnn_mask_loss, input_signature=[
        tf.TensorSpec([None, None, None, None], tf.float32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None, None, None, None], tf.float32)])
    np.testing.assert_allclose(_value(fn(target, target_ids, pred)), LN2, rtol=1e-5)


# ------------------------------------------------- nothing positive: exact 0
def _empty_cases():
    """(name, fixed args, index of the prediction argument) with nothing to learn."""
    return {
        "rpn_class_loss": ([np.zeros((2, 5, 1), np.int32), np.ones((2, 5, 2), np.float32)], 1),
        "rpn_bbox_loss": ([np.ones((2, 3, 4), np.float32), np.full((2, 5, 1), -1, np.int32),
                           np.ones((2, 5, 4), np.float32)], 2),
        # every predicted class inactive
        "mrcnn_class_loss": ([np.zeros((2, 3), np.int32), np.ones((2, 3, 4), np.float32),
                              np.zeros((2, 4), np.int32)], 1),
        # all background ROIs
        "mrcnn_bbox_loss": ([np.ones((2, 3, 4), np.float32), np.zeros((2, 3), np.int32),
                             np.ones((2, 3, 4, 4), np.float32)], 2),
        "mrcnn_mask_loss": ([np.ones((2, 3, 4, 4), np.float32), np.zeros((2, 3), np.int32),
                             np.full((2, 3, 4, 4, 4), 0.3, np.float32)], 2),
    }


@pytest.mark.parametrize("name", sorted(losses.LOSS_FUNCTIONS))
def test_nothing_to_learn_gives_exact_zero_and_finite_gradients(name):
    args, pred_index = _empty_cases()[name]
    pred = tf.constant(args[pred_index])
    with tf.GradientTape() as tape:
        tape.watch(pred)
        call_args = list(args)
        call_args[pred_index] = pred
        loss = losses.LOSS_FUNCTIONS[name](*call_args)
    grad = tape.gradient(loss, pred)
    assert _value(loss) == 0.0
    assert grad is not None, "graph must stay connected to the prediction"
    np.testing.assert_array_equal(grad.numpy(), np.zeros_like(args[pred_index]))


def test_gradients_flow_to_positive_predictions_only():
    target_ids = np.array([[1, 0]], np.int32)
    target = np.zeros((1, 2, 4), np.float32)
    pred = tf.constant(np.full((1, 2, 2, 4), 0.5, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(pred)
        loss = losses.mrcnn_bbox_loss(target, target_ids, pred)
    grad = tape.gradient(loss, pred).numpy()
    # d/dp of 0.5 p^2 / 4 = p / 4 = 0.125 on ROI 0, class 1; zero elsewhere
    expected = np.zeros((1, 2, 2, 4), np.float32)
    expected[0, 0, 1] = 0.125
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


# -------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_low_precision_inputs_give_float32(dtype):
    rpn_match, logits = _rpn_class_inputs()
    loss = losses.rpn_class_loss(rpn_match, tf.constant(logits, dtype))
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(_value(loss), 1.5 * LN2, rtol=1e-2)

    target, match, pred = _rpn_bbox_inputs()
    loss = losses.rpn_bbox_loss(tf.constant(target, dtype), match, tf.constant(pred, dtype))
    assert loss.dtype == tf.float32

    ids = np.array([[1, 0]], np.int32)
    masks = np.ones((1, 2, 2, 2), np.float32)
    pm = np.full((1, 2, 2, 2, 2), 0.5, np.float32)
    loss = losses.mrcnn_mask_loss(tf.constant(masks, dtype), ids, tf.constant(pm, dtype))
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(_value(loss), LN2, rtol=1e-2)

    loss = losses.mrcnn_bbox_loss(tf.constant(np.zeros((1, 2, 4)), dtype), ids,
                                  tf.constant(np.zeros((1, 2, 2, 4)), dtype))
    assert loss.dtype == tf.float32
    loss = losses.mrcnn_class_loss(ids, tf.constant(np.zeros((1, 2, 2)), dtype), np.ones((1, 2)))
    assert loss.dtype == tf.float32


def test_loss_functions_names():
    assert list(losses.LOSS_FUNCTIONS) == ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                                           "mrcnn_bbox_loss", "mrcnn_mask_loss"]
