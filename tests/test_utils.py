"""Tests of mrcnn.utils: boxes, masks, anchors, resizing and evaluation (NumPy only)."""
import math
import sys

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn import utils

SQ2 = math.sqrt(2.0)


def _rect_mask(shape, *rects):
    """[H, W, N] bool with one filled rectangle (y1, x1, y2, x2 exclusive) per instance."""
    mask = np.zeros(tuple(shape) + (len(rects),), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(rects):
        mask[y1:y2, x1:x2, i] = True
    return mask


def test_import_does_not_load_tensorflow():
    # utils must stay NumPy-only at import (other modules import it early).
    import subprocess
    code = "import sys, mrcnn.utils; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ----------------------------------------------------------------------------- boxes
def test_compute_iou_hand_computed():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[5, 5, 15, 15],     # inter 5*5=25, union 175 -> 1/7
                      [0, 0, 10, 5],      # inter 50, union 100 -> 0.5
                      [20, 20, 30, 30],   # disjoint -> 0
                      [0, 0, 10, 10]])    # identical -> 1
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = utils.compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1 / 7, 0.5, 0.0, 1.0])


def test_compute_overlaps_hand_computed():
    boxes1 = np.array([[0, 0, 10, 10], [0, 0, 4, 4]])
    boxes2 = np.array([[5, 5, 15, 15], [0, 0, 2, 8], [2, 2, 4, 4]])
    # [0,0,4,4] vs [0,0,2,8]: inter 2*4=8, union 16+16-8=24 -> 1/3
    # [0,0,4,4] vs [2,2,4,4]: inter 4, union 16 -> 0.25
    # [0,0,10,10] vs [0,0,2,8]: inter 16, union 100 -> 0.16 ; vs [2,2,4,4]: 4/100
    expected = [[1 / 7, 0.16, 0.04], [0.0, 1 / 3, 0.25]]
    overlaps = utils.compute_overlaps(boxes1, boxes2)
    assert overlaps.shape == (2, 3)
    np.testing.assert_allclose(overlaps, expected)


def test_compute_overlaps_masks_hand_computed_and_empty():
    m1 = _rect_mask((6, 6), (0, 0, 2, 2), (0, 0, 6, 6))
    m2 = _rect_mask((6, 6), (0, 0, 2, 4), (4, 4, 6, 6))
    # 4 px vs 8 px sharing 4 -> 0.5; 4 vs other 4 disjoint -> 0; 36 vs 8 -> 8/36; 36 vs 4 -> 4/36
    np.testing.assert_allclose(utils.compute_overlaps_masks(m1, m2), [[0.5, 0.0], [8 / 36, 4 / 36]])
    empty = np.zeros((6, 6, 0), dtype=bool)
    assert utils.compute_overlaps_masks(m1, empty).shape == (2, 0)
    assert utils.compute_overlaps_masks(empty, m2).shape == (0, 2)


def test_extract_bboxes_exclusive_and_empty():
    mask = np.zeros((8, 9, 2), dtype=bool)
    mask[2, 3, 0] = True
    mask[4, 7, 0] = True  # rows 2..4, cols 3..7 -> (2, 3, 5, 8)
    boxes = utils.extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 8], [0, 0, 0, 0]])


def test_non_max_suppression_hand_example():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]])
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    # 1 kept (0.9); 3 vs 1: inter 9*4=36, union 50+100-36=114 -> 0.32 kept;
    # 0 vs 1: 81/119 = 0.68 > 0.5 dropped; 2 disjoint kept.
    keep = utils.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [1, 3, 2])


def test_box_refinement_inverts_apply_box_deltas():
    boxes = np.array([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 5.0, 5.0]])
    gt = np.array([[12.0, 18.0, 60.0, 45.0], [1.0, 2.0, 3.0, 9.0]])
    deltas = utils.box_refinement(boxes, gt)
    assert deltas.dtype == np.float32
    # first box: h 40, w 20, centre (30, 30); gt h 48, w 27, centre (36, 31.5)
    np.testing.assert_allclose(deltas[0], [6 / 40, 1.5 / 20, math.log(48 / 40), math.log(27 / 20)],
                               rtol=1e-6)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), gt, atol=1e-4)


def test_box_refinement_zero_area_raises():
    with pytest.raises(ValueError, match=r"box 1 has zero area: \[5\.0, 5\.0, 5\.0, 9\.0\]"):
        utils.box_refinement(np.array([[0, 0, 4, 4], [5, 5, 5, 9]]), np.array([[0, 0, 4, 4]] * 2))


def test_norm_denorm_round_trip():
    boxes = np.array([[10, 20, 50, 60], [0, 0, 100, 200]])
    norm = utils.norm_boxes(boxes, (100, 200, 3))
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[0], [10 / 99, 20 / 199, 49 / 99, 59 / 199], rtol=1e-6)
    np.testing.assert_allclose(norm[1], [0, 0, 1, 1], rtol=1e-6)
    back = utils.denorm_boxes(norm, (100, 200))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, boxes)


def test_trim_zeros():
    x = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 5]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 0, 5]])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        utils.trim_zeros(np.zeros(4))


_box = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 25), st.integers(0, 25)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=60, deadline=None)
@given(st.lists(_box, min_size=1, max_size=6), st.lists(_box, min_size=1, max_size=6))
def test_overlaps_symmetric_and_bounded(a, b):
    a, b = np.array(a, dtype=float), np.array(b, dtype=float)
    ab = utils.compute_overlaps(a, b)
    np.testing.assert_allclose(ab, utils.compute_overlaps(b, a).T)
    assert np.all(ab >= 0) and np.all(ab <= 1 + 1e-12)
    self_iou = np.diag(utils.compute_overlaps(a, a))
    positive = (a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])
    np.testing.assert_allclose(self_iou[positive], 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(_box, min_size=1, max_size=12), st.floats(0.1, 0.9), st.randoms())
def test_nms_properties(boxes, threshold, random):
    boxes = np.array(boxes, dtype=float)
    scores = np.array(random.sample(range(1000), len(boxes)), dtype=float)
    keep = utils.non_max_suppression(boxes, scores, threshold)
    assert keep[0] == np.argmax(scores)
    assert np.all(np.diff(scores[keep]) < 0)
    overlaps = utils.compute_overlaps(boxes[keep], boxes[keep])
    np.fill_diagonal(overlaps, 0)
    assert np.all(overlaps <= threshold)
    # every dropped box overlaps a kept box with a higher score above the threshold
    for i in set(range(len(boxes))) - set(keep.tolist()):
        iou = utils.compute_overlaps(boxes[[i]], boxes[keep])[0]
        assert np.any((iou > threshold) & (scores[keep] > scores[i]))


# ----------------------------------------------------------------------------- masks
def test_minimize_expand_hand_example():
    mask = _rect_mask((20, 30), (4, 6, 12, 22))
    bbox = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(bbox, mask, (8, 8))
    assert mini.shape == (8, 8, 1) and mini.dtype == bool and mini.all()
    back = utils.expand_mask(bbox, mini, (20, 30, 3))
    assert back.dtype == bool
    np.testing.assert_array_equal(back, mask)


def test_minimize_mask_zero_area_box_raises():
    mask = _rect_mask((10, 10), (1, 1, 5, 5), (0, 0, 0, 0))
    bbox = np.array([[1, 1, 5, 5], [3, 4, 3, 8]])
    with pytest.raises(ValueError, match=r"instance 1 has a zero-area box \[3, 4, 3, 8\]"):
        utils.minimize_mask(bbox, mask, (4, 4))


@settings(max_examples=25, deadline=None)
@given(st.integers(16, 48), st.integers(16, 48), st.integers(8, 15), st.integers(8, 15))
def test_minimize_expand_round_trip_property(cy, cx, ry, rx):
    yy, xx = np.mgrid[:64, :64]
    blob = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)[..., None]
    bbox = utils.extract_bboxes(blob)
    back = utils.expand_mask(bbox, utils.minimize_mask(bbox, blob, (28, 28)), (64, 64))
    assert utils.compute_overlaps_masks(blob, back)[0, 0] > 0.8


def test_unmold_mask_hand_example():
    small = np.zeros((4, 4), dtype=np.float32)
    small[:, :2] = 1.0
    # Bilinear 4 -> 8 (skimage, constant border): columns become
    # [.75, 1, 1, .75, .25, 0, 0, 0] (corners .56), so the first four columns are >= 0.5.
    full = utils.unmold_mask(small, (2, 2, 10, 10), (12, 12, 3))
    expected = np.zeros((12, 12), dtype=bool)
    expected[2:10, 2:6] = True
    assert full.dtype == bool
    np.testing.assert_array_equal(full, expected)
    # a box hanging over the border keeps only its inside part
    clipped = utils.unmold_mask(np.ones((4, 4)), (8, 8, 16, 16), (12, 12))
    assert clipped[8:, 8:].all() and clipped.sum() == 16


def test_unmold_mask_writes_into_a_channel_of_a_stack():
    small = np.zeros((4, 4), dtype=np.float32)
    small[:, :2] = 1.0
    stack = np.zeros((12, 12, 3), dtype=bool)
    returned = utils.unmold_mask(small, (2, 2, 10, 10), (12, 12, 3), out=stack[:, :, 1])
    assert np.shares_memory(returned, stack)
    np.testing.assert_array_equal(stack[:, :, 1], utils.unmold_mask(small, (2, 2, 10, 10), (12, 12)))
    assert not stack[:, :, 0].any() and not stack[:, :, 2].any()
    with pytest.raises(ValueError, match=r"out must be a \(12, 12\) bool array, got \(12, 11\) bool"):
        utils.unmold_mask(small, (2, 2, 10, 10), (12, 12), out=np.zeros((12, 11), bool))


# ----------------------------------------------------------------------------- anchors
def test_generate_anchors_2x2_hand_written():
    anchors = utils.generate_anchors(32, [0.5, 1, 2], (2, 2), 16, 1)
    a, b = 16 * SQ2, 8 * SQ2  # half-height / half-width of ratio 0.5 (h = 32/sqrt(.5))
    expected = []
    for cy, cx in [(0, 0), (0, 16), (16, 0), (16, 16)]:  # row-major cells, no half-stride
        expected += [[cy - a, cx - b, cy + a, cx + b],        # ratio 0.5: tall
                     [cy - 16, cx - 16, cy + 16, cx + 16],    # ratio 1
                     [cy - b, cx - a, cy + b, cx + a]]        # ratio 2: wide
    np.testing.assert_allclose(anchors, expected, rtol=1e-12, atol=1e-12)


def test_generate_anchors_two_scales_order_and_stride():
    anchors = utils.generate_anchors([8, 16], [1, 4], (3, 3), 4, 2)
    # anchor_stride 2 on 3x3 -> cells rows {0, 2}, cols {0, 2}; 4 combos each
    assert anchors.shape == (16, 4)
    # meshgrid(scales, ratios) flattened: (8, r1), (16, r1), (8, r4), (16, r4)
    np.testing.assert_allclose(anchors[:4], [[-4, -4, 4, 4], [-8, -8, 8, 8],
                                             [-2, -8, 2, 8], [-4, -16, 4, 16]])
    np.testing.assert_allclose(anchors[4], [-4, 4, 4, 12])  # second cell centre (0, 8)


def test_pyramid_anchor_count(tiny_config):
    shapes = utils.compute_backbone_shapes(tiny_config, tiny_config.IMAGE_SHAPE)
    np.testing.assert_array_equal(shapes, [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]])
    anchors = utils.generate_pyramid_anchors(
        tiny_config.RPN_ANCHOR_SCALES, tiny_config.RPN_ANCHOR_RATIOS, shapes,
        tiny_config.BACKBONE_STRIDES, tiny_config.RPN_ANCHOR_STRIDE)
    assert anchors.shape == ((1024 + 256 + 64 + 16 + 4) * 3, 4)
    # the last level uses the last scale (128) with stride 64: first anchor ratio 0.5
    np.testing.assert_allclose(anchors[-12], [-64 * SQ2, -32 * SQ2, 64 * SQ2, 32 * SQ2])
    with pytest.raises(ValueError, match="2 scales"):
        utils.generate_pyramid_anchors([8, 16], [1], shapes, [4] * 5, 1)


def test_compute_backbone_shapes_ceil_and_callable(tiny_config):
    shapes = utils.compute_backbone_shapes(tiny_config, (100, 130, 3))
    np.testing.assert_array_equal(shapes, [[25, 33], [13, 17], [7, 9], [4, 5], [2, 3]])
    tiny_config.COMPUTE_BACKBONE_SHAPE = lambda shape: [[shape[0] // 10, 1]]
    np.testing.assert_array_equal(utils.compute_backbone_shapes(tiny_config, (100, 130)), [[10, 1]])


# ----------------------------------------------------------------------------- resizing
def test_resize_image_none():
    image = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    out, window, scale, padding, crop = utils.resize_image(image, 64, 128, mode="none")
    assert out is image and window == (0, 0, 5, 7) and scale == 1 and crop is None
    assert padding == [(0, 0), (0, 0), (0, 0)]


def test_resize_image_square():
    image = np.full((50, 100, 3), 200, dtype=np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=80, max_dim=128)
    # min_dim asks 80/50 = 1.6, long side 160 > 128, so scale = 128/100 -> 64 x 128
    assert scale == pytest.approx(1.28)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert window == (32, 0, 96, 128)
    assert padding == [(32, 32), (0, 0), (0, 0)] and crop is None
    assert out[:32].max() == 0 and out[96:].max() == 0 and out[40:90].min() == 200


def test_resize_image_square_awkward_scale_and_min_scale():
    image = np.zeros((33, 47, 3), dtype=np.float32)
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=100, max_dim=150)
    # scale 100/33 -> round(33*s)=100, round(47*s)=142 -> padded to 150
    assert out.dtype == np.float32 and out.shape == (150, 150, 3)
    assert window == (25, 4, 125, 146) and padding == [(25, 25), (4, 4), (0, 0)]
    _, _, scale2, _, _ = utils.resize_image(image, min_dim=10, max_dim=200, min_scale=2)
    assert scale2 == 2


def test_resize_image_pad64():
    image = np.ones((100, 150, 3), dtype=np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, mode="pad64")
    assert scale == 1 and out.shape == (128, 192, 3) and out.dtype == np.uint8
    assert padding == [(14, 14), (21, 21), (0, 0)] and window == (14, 21, 114, 171)
    with pytest.raises(ValueError, match="multiple of 64, got 100"):
        utils.resize_image(image, min_dim=100, mode="pad64")


def test_resize_image_crop_uses_rng():
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3)).astype(np.uint8)
    out, window, scale, padding, crop = utils.resize_image(
        image, min_dim=64, mode="crop", rng=np.random.default_rng(5))
    # scale 64/60 -> 64 x 85, crop 64x64 at y = 0 and x in [0, 21]
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and window == (0, 0, 64, 64)
    assert crop[0] == 0 and 0 <= crop[1] <= 21 and crop[2:] == (64, 64)
    assert crop == utils.resize_image(image, min_dim=64, mode="crop",
                                      rng=np.random.default_rng(5))[4]
    full, full_window = utils.resize_image(image, min_dim=64, mode="pad64")[:2]
    assert full_window == (0, 21, 64, 106)  # the same 64 x 85 resize, padded to 128 wide
    x0 = full_window[1] + crop[1]
    np.testing.assert_array_equal(out, full[:, x0:x0 + 64])


def test_resize_image_unknown_mode():
    with pytest.raises(ValueError, match="'bogus'"):
        utils.resize_image(np.zeros((4, 4, 3)), 4, 4, mode="bogus")


def test_resize_accepts_bool():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    out = utils.resize(mask, (8, 8))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, np.kron(mask, np.ones((2, 2), dtype=bool)))


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 70), st.integers(5, 70), st.sampled_from(["square", "pad64", "crop"]),
       st.integers(0, 10))
def test_resize_mask_matches_image_size(h, w, mode, seed):
    image = np.zeros((h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w, 2), dtype=bool)
    mask[h // 4:h // 2 + 1, w // 4:, 0] = True
    min_dim = 64 if mode != "square" else 37
    image_out, window, scale, padding, crop = utils.resize_image(
        image, min_dim=min_dim, max_dim=101, mode=mode, rng=np.random.default_rng(seed))
    mask_out = utils.resize_mask(mask, scale, padding, crop)
    assert mask_out.dtype == bool
    assert mask_out.shape == image_out.shape[:2] + (2,)
    assert not mask_out[..., 1].any()
    if mode != "crop":  # nothing is cut away: the instance is inside the window
        y1, x1, y2, x2 = utils.extract_bboxes(mask_out)[0]
        assert window[0] <= y1 and y2 <= window[2] and window[1] <= x1 and x2 <= window[3]


def test_resize_mask_awkward_scale_size_and_scipy_last_column():
    # 33 * (100/33) and 47 * (100/33) -> (100, 142), the size resize_image gives the image
    mask = np.ones((33, 47, 1), dtype=bool)
    out = utils.resize_mask(mask, 100 / 33, [(0, 0), (0, 0), (0, 0)])
    assert out.shape == (100, 142, 1)
    # scipy.ndimage.zoom (matterport's call) overshoots the last column by one ulp and fills
    # it with cval: we reproduce that, column 141 is empty.
    assert out[:, :141].all() and not out[:, 141].any()


# ----------------------------------------------------------------------------- evaluation
def _ap_example():
    """Two ground-truth instances and three detections (class 1) on a 10x10 image."""
    gt_masks = _rect_mask((10, 10), (0, 0, 5, 5), (5, 4, 10, 10))  # 25 px, 30 px
    gt_boxes = np.array([[0, 0, 5, 5], [5, 4, 10, 10], [0, 0, 0, 0]])  # + a padding row
    gt_class_ids = np.array([1, 1, 0])
    # given out of score order on purpose
    pred_masks = _rect_mask((10, 10), (5, 5, 10, 10), (0, 0, 5, 5), (0, 5, 5, 10))
    pred_boxes = np.array([[5, 5, 10, 10], [0, 0, 5, 5], [0, 5, 5, 10]])
    pred_class_ids = np.array([1, 1, 1])
    pred_scores = np.array([0.7, 0.9, 0.8])
    return (gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
            pred_masks)


def test_compute_matches_hand_example():
    gt_match, pred_match, overlaps = utils.compute_matches(*_ap_example())
    # sorted predictions: 0.9 (= gt 0, IoU 1), 0.8 (touches nothing), 0.7 (IoU 25/30 with gt 1)
    np.testing.assert_array_equal(pred_match, [0, -1, 1])
    np.testing.assert_array_equal(gt_match, [0, 2])
    np.testing.assert_allclose(overlaps, [[1, 0], [0, 0], [0, 25 / 30]])
    # other class: no match at all
    args = list(_ap_example())
    args[4] = np.array([2, 2, 2])
    assert np.all(utils.compute_matches(*args)[1] == -1)
    # predictions under score_threshold stay unmatched
    _, pred_match, _ = utils.compute_matches(*_ap_example(), score_threshold=0.75)
    np.testing.assert_array_equal(pred_match, [0, -1, -1])


def test_compute_ap_hand_example():
    # Sorted detections: TP, FP, TP with 2 ground truths.
    # precision = [1/1, 1/2, 2/3], recall = [1/2, 1/2, 2/2]
    # padded: p = [0, 1, .5, .667, 0], r = [0, .5, .5, 1, 1]
    # monotone from the right: p = [1, 1, .667, .667, 0]
    # recall changes at i = 1 (0 -> .5) and i = 3 (.5 -> 1): AP = .5 * 1 + .5 * 2/3 = 5/6
    m_ap, precisions, recalls, overlaps = utils.compute_ap(*_ap_example())
    assert m_ap == pytest.approx(5 / 6)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 0.5, 1, 1])
    # above IoU 25/30 the last detection becomes a FP: p = [1, 1, .5, 1/3, 0] -> AP = .5
    assert utils.compute_ap(*_ap_example(), iou_threshold=0.9)[0] == pytest.approx(0.5)


def test_compute_ap_range():
    assert utils.compute_ap_range(*_ap_example(), iou_thresholds=[0.5, 0.75, 0.9],
                                  verbose=0) == pytest.approx((5 / 6 + 5 / 6 + 0.5) / 3)
    # default 0.50:0.95:0.05 -> IoU 0.833 passes 0.50..0.80 (7 of 10 thresholds)
    assert utils.compute_ap_range(*_ap_example(), verbose=0) == pytest.approx(
        (7 * 5 / 6 + 3 * 0.5) / 10)


def test_compute_recall_hand_example():
    preds = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    gts = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [40, 40, 50, 50]])
    # pred 0 -> gt 0 (IoU 1), pred 1 -> gt 0 (IoU 0.5), pred 2 touches nothing
    recall, positive_ids = utils.compute_recall(preds, gts, 0.5)
    assert recall == pytest.approx(1 / 3)
    np.testing.assert_array_equal(positive_ids, [0, 1])
    recall, positive_ids = utils.compute_recall(preds, gts, 0.6)  # pred 1 (IoU 0.5) drops out
    np.testing.assert_array_equal(positive_ids, [0])
    assert recall == pytest.approx(1 / 3)
    recall, positive_ids = utils.compute_recall(preds[:0], gts, 0.5)
    assert recall == 0.0 and positive_ids.size == 0


# ----------------------------------------------------------------------------- graph helper
def test_batch_slice_stacks_per_item_results():
    tf = pytest.importorskip("tensorflow")
    x = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))
    y = tf.constant([1.0, 2.0, 3.0])
    summed, scaled = utils.batch_slice([x, y], lambda a, b: (tf.reduce_sum(a), a * b), 3,
                                       names=["s", "m"])
    np.testing.assert_allclose(summed.numpy(), [6, 22, 38])
    np.testing.assert_allclose(scaled.numpy(), np.arange(12).reshape(3, 4) * [[1], [2], [3]])
    single = utils.batch_slice(x, lambda a: a[:2], 3)
    assert tuple(single.shape) == (3, 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 40), st.integers(3, 40), st.floats(0.3, 3.5), st.booleans(),
       st.integers(0, 1000))
def test_resize_mask_equals_scipy_zoom_then_crop(h, w, scale, use_crop, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w, 3)) < 0.4
    expected = scipy.ndimage.zoom(mask, [scale, scale, 1], order=0)
    crop = None
    if use_crop:
        eh, ew = expected.shape[:2]
        ch, cw = int(rng.integers(1, eh + 1)), int(rng.integers(1, ew + 1))
        crop = (int(rng.integers(0, eh - ch + 1)), int(rng.integers(0, ew - cw + 1)), ch, cw)
        expected = expected[crop[0]:crop[0] + ch, crop[1]:crop[1] + cw]
    padding = [(1, 2), (0, 3), (0, 0)]
    out = utils.resize_mask(mask, scale, padding, crop)
    np.testing.assert_array_equal(out, np.pad(expected, padding))
    np.testing.assert_array_equal(utils.resize_mask(mask[..., 0], scale, padding, crop),
                                  np.pad(expected[..., 0], padding[:2]))


def test_resize_mask_keeps_hundreds_of_instances():
    # 329 nuclei in one DSB2018 image: OpenCV's resize crashed on > 128 channels
    mask = np.zeros((20, 30, 329), dtype=bool)
    mask[2:6, 3:9, :] = True
    mask[:, :, 7] = False
    out = utils.resize_mask(mask, 2.0, [(1, 1), (0, 0), (0, 0)])
    assert out.shape == (42, 60, 329)
    np.testing.assert_array_equal(out.sum(axis=(0, 1)), [96] * 7 + [0] + [96] * 321)
    np.testing.assert_array_equal(out[1:-1, :, 0], np.kron(mask[:, :, 0], np.ones((2, 2), bool)))


def test_resize_mask_with_no_instances_keeps_image_size():
    image = np.zeros((30, 50, 3), np.uint8)
    _, window, scale, padding, crop = utils.resize_image(image, min_dim=64, max_dim=64, mode="square")
    mask = utils.resize_mask(np.zeros((30, 50, 0), bool), scale, padding, crop)
    assert mask.shape == (64, 64, 0) and mask.dtype == bool
