"""mrcnn.ops: the graph twins against their NumPy versions in mrcnn.utils / mrcnn.data."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn import data, ops, utils


def random_boxes(rng, n, size=100.0, min_side=1.0):
    """[n, (y1, x1, y2, x2)] float32 boxes with sides >= min_side."""
    y1x1 = rng.uniform(0, size, (n, 2))
    hw = rng.uniform(min_side, size / 2, (n, 2))
    return np.concatenate([y1x1, y1x1 + hw], axis=1).astype(np.float32)


# ------------------------------------------------------------------ deltas
def test_apply_box_deltas_parity(rng):
    boxes = random_boxes(rng, 50)
    deltas = rng.normal(0, 0.5, (50, 4)).astype(np.float32)
    got = ops.apply_box_deltas_graph(tf.constant(boxes), tf.constant(deltas)).numpy()
    np.testing.assert_allclose(got, utils.apply_box_deltas(boxes, deltas), rtol=1e-5, atol=1e-3)


def test_apply_box_deltas_hand_values_and_leading_dims():
    # Box 10x20 centred at (15, 20); move by half its height and width, double both sides.
    boxes = np.array([[10, 10, 20, 30]], np.float32)
    deltas = np.array([[0.5, 0.5, np.log(2), np.log(2)]], np.float32)
    expected = np.array([[10, 10, 30, 50]], np.float32)  # centre (20, 30), size 20 x 40
    got = ops.apply_box_deltas_graph(boxes, deltas).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # [batch, N, 4] with the same rows gives the same answer on every row.
    got3 = ops.apply_box_deltas_graph(np.tile(boxes, (2, 3, 1)), np.tile(deltas, (2, 3, 1))).numpy()
    assert got3.shape == (2, 3, 4)
    np.testing.assert_allclose(got3, np.tile(expected, (2, 3, 1)), atol=1e-5)


def test_box_refinement_parity_and_round_trip(rng):
    boxes = random_boxes(rng, 40)
    gt = random_boxes(rng, 40)
    got = ops.box_refinement_graph(boxes, gt).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, utils.box_refinement(boxes, gt), rtol=1e-4, atol=1e-5)
    back = ops.apply_box_deltas_graph(boxes, got).numpy()
    np.testing.assert_allclose(back, gt, rtol=1e-5, atol=1e-3)


def test_box_refinement_hand_values():
    box = np.array([[0, 0, 10, 10]], np.float32)
    gt = np.array([[5, 0, 25, 5]], np.float32)  # centre (15, 2.5), size 20 x 5
    np.testing.assert_allclose(ops.box_refinement_graph(box, gt).numpy(),
                               [[1.0, -0.25, np.log(2.0), np.log(0.5)]], atol=1e-6)


# ------------------------------------------------------------------ clip / IoU
def test_clip_boxes_single_window():
    boxes = np.array([[-5, 2, 50, 8], [1, 1, 2, 2], [30, 30, 40, 40]], np.float32)
    window = np.array([0, 0, 20, 10], np.float32)
    expected = np.array([[0, 2, 20, 8], [1, 1, 2, 2], [20, 10, 20, 10]], np.float32)
    np.testing.assert_array_equal(ops.clip_boxes_graph(boxes, window).numpy(), expected)


def test_clip_boxes_batch_window_broadcasts_per_image():
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0]] * 2, [[0.0, 0.0, 1.0, 1.0]] * 2], np.float32)
    window = np.array([[0.1, 0.2, 0.9, 0.8], [0.0, 0.25, 1.0, 0.75]], np.float32)
    got = ops.clip_boxes_graph(boxes, window).numpy()
    np.testing.assert_allclose(got[0], [[0.1, 0.2, 0.9, 0.8]] * 2)
    np.testing.assert_allclose(got[1], [[0.0, 0.25, 1.0, 0.75]] * 2)


def test_overlaps_hand_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    # No +1: half overlap is 50 / 150.
    np.testing.assert_allclose(ops.overlaps_graph(a, b).numpy(), [[1.0, 1 / 3, 0.0, 0.25]],
                               rtol=1e-6)


def test_overlaps_zero_area_pair_is_zero_not_nan():
    zero = np.zeros((1, 4), np.float32)
    got = ops.overlaps_graph(zero, zero).numpy()
    np.testing.assert_array_equal(got, [[0.0]])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_overlaps_parity_property(n1, n2, seed):
    rng = np.random.default_rng(seed)
    b1, b2 = random_boxes(rng, n1), random_boxes(rng, n2)
    got = ops.overlaps_graph(b1, b2).numpy()
    assert got.shape == (n1, n2)
    np.testing.assert_allclose(got, utils.compute_overlaps(b1, b2), atol=1e-5)


# ------------------------------------------------------------------ normalization
def test_norm_denorm_parity(rng):
    boxes = np.array([[0, 0, 128, 96], [10, 20, 50, 90]], np.float32)
    shape = (128, 96)
    normed = ops.norm_boxes_graph(boxes, shape).numpy()
    np.testing.assert_allclose(normed, utils.norm_boxes(boxes, shape), atol=1e-6)
    np.testing.assert_allclose(normed[0], [0, 0, 1, 1], atol=1e-6)
    denormed = ops.denorm_boxes_graph(normed, shape).numpy()
    assert denormed.dtype == np.int32
    np.testing.assert_array_equal(denormed, utils.denorm_boxes(normed, shape))
    np.testing.assert_array_equal(denormed, boxes.astype(np.int32))
    # Random normalized boxes: same rounding (half to even) as the NumPy twin.
    rand = rng.uniform(0, 1, (100, 4)).astype(np.float32)
    np.testing.assert_array_equal(ops.denorm_boxes_graph(rand, (64, 80)).numpy(),
                                  utils.denorm_boxes(rand, (64, 80)))


def test_norm_boxes_per_image_shape():
    boxes = np.array([[[0, 0, 11, 21]], [[0, 0, 41, 11]]], np.float32)
    shapes = tf.constant([[11, 21], [41, 11]])
    np.testing.assert_allclose(ops.norm_boxes_graph(boxes, shapes).numpy(),
                               [[[0, 0, 1, 1]], [[0, 0, 1, 1]]], atol=1e-6)


def test_trim_zeros_parity():
    boxes = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 5]], np.float32)
    trimmed, non_zeros = ops.trim_zeros_graph(boxes)
    np.testing.assert_array_equal(trimmed.numpy(), utils.trim_zeros(boxes))
    np.testing.assert_array_equal(non_zeros.numpy(), [False, True, False, True])


def test_parse_image_meta_parity():
    rows = np.stack([
        data.compose_image_meta(7, (480, 640, 3), (128, 128, 3), (16, 0, 112, 128), 0.2, [1, 1, 0, 1]),
        data.compose_image_meta(9, (100, 50, 3), (128, 128, 3), (0, 32, 128, 96), 1.28, [1, 0, 1, 1]),
    ]).astype(np.float32)
    got = ops.parse_image_meta_graph(tf.constant(rows))
    want = data.parse_image_meta(rows)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-6, err_msg=key)


# ------------------------------------------------------------------ anchors
@pytest.mark.parametrize("anchor_stride", [1, 2])
def test_generate_pyramid_anchors_parity(anchor_stride):
    scales = (8, 16, 32, 64, 128)
    ratios = [0.5, 1, 2]
    shapes = [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]
    strides = [4, 8, 16, 32, 64]
    got = ops.generate_pyramid_anchors_graph(scales, ratios, shapes, strides, anchor_stride).numpy()
    want = utils.generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    assert got.shape == want.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


def test_generate_anchors_hand_values_and_order():
    # 1 x 2 cells, stride 4: centres (0, 0) then (0, 4); ratio 1 then 4 (w = 2h).
    got = ops.generate_anchors_graph(8, [1, 4], (1, 2), 4, 1).numpy()
    expected = np.array([
        [-4, -4, 4, 4], [-2, -8, 2, 8],
        [-4, 0, 4, 8], [-2, -4, 2, 12],
    ], np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_generate_anchors_several_scales_parity():
    got = ops.generate_anchors_graph([8, 16], [0.5, 1, 2], (3, 5), 8, 2).numpy()
    np.testing.assert_allclose(got, utils.generate_anchors([8, 16], [0.5, 1, 2], (3, 5), 8, 2),
                               atol=1e-4)


def test_generate_pyramid_anchors_dynamic_shapes():
    """Feature map sizes known only at run time (tensors inside a tf.function)."""
    scales, ratios, strides = (8, 16), [0.5, 1, 2], [4, 8]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1]),
                                  tf.TensorSpec([None, None, None, 1])])
    def anchors_for(p2, p3):
        return ops.generate_pyramid_anchors_graph(
            scales, ratios, [tf.shape(p2)[1:3], tf.shape(p3)[1:3]], strides, 1)

    got = anchors_for(tf.zeros((1, 6, 10, 1)), tf.zeros((1, 3, 5, 1))).numpy()
    want = utils.generate_pyramid_anchors(scales, ratios, [(6, 10), (3, 5)], strides, 1)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_generate_pyramid_anchors_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="2, 1 and 2"):
        ops.generate_pyramid_anchors_graph((8, 16), [1], [(4, 4)], [4, 8], 1)


def test_apply_box_deltas_graph_traced_is_eager():
    """Traced box refinement is bit for bit the eager one: grappler's arithmetic optimizer once
    regrouped y1 + 0.5 h + dy h, moving proposals by an ulp (150 of coffee's 256), which
    changed detect()'s detections on 3 of 32 photos against the same model called eagerly."""
    from mrcnn.ops import apply_box_deltas_graph
    rng = np.random.default_rng(5)
    y1x1 = rng.uniform(-0.2, 0.9, (4, 500, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0, 0.6, (4, 500, 2))], -1)
    boxes = boxes.astype(np.float32)
    deltas = (rng.normal(size=(4, 500, 4)) * [0.1, 0.1, 0.2, 0.2]).astype(np.float32)
    traced = tf.function(apply_box_deltas_graph)
    np.testing.assert_array_equal(traced(boxes, deltas).numpy(),
                                  np.asarray(apply_box_deltas_graph(boxes, deltas)))
