"""Keypoint R-CNN on the data side and its loss: targets, decoding, resizing, flipping."""
import numpy as np
import pytest

from mrcnn import keypoints as kp
from mrcnn import losses
from mrcnn.config import Config


# ----------------------------------------------------------------------------- targets
def test_keypoint_targets_border_outside_invisible():
    # ROI x in [10, 66), y in [20, 48): 56 px wide (1 px a cell), 28 px high (0.5 px a cell).
    rois = np.array([[20.0, 10.0, 48.0, 66.0]])
    keypoints = np.array([[
        [10.0, 20.0, 2],      # centre of the ROI's first pixel: x + 0.5 = 10.5 -> col 0, row 1
        [65.5, 47.5, 2],      # on the far corner (x + 0.5 = x2, y + 0.5 = y2): last cell
        [9.4, 30.0, 2],       # left of the ROI (x + 0.5 = 9.9 < 10): outside
        [30.0, 30.0, 0],      # not labelled
        [30.0, 30.0, 1],      # labelled, occluded: still a target (COCO v = 1)
        [-0.5, 19.5, 2],      # exactly on the near corner (x + 0.5 = x1): cell 0
    ]])
    cells, weights = kp.keypoint_targets(rois, keypoints, 56)
    np.testing.assert_array_equal(weights, [[1, 1, 0, 0, 1, 0]])
    # x=30 -> col floor(20.5) = 20; y=30 -> row floor(10.5 * 2) = 21.
    np.testing.assert_array_equal(cells, [[1 * 56 + 0, 55 * 56 + 55, 0, 0, 21 * 56 + 20, 0]])


def test_keypoint_targets_near_corner_and_empty_roi():
    rois = np.array([[0.0, 0.0, 8.0, 8.0], [5.0, 5.0, 5.0, 9.0]])
    keypoints = np.array([[[-0.5, -0.5, 2]], [[6.0, 5.0, 2]]])
    cells, weights = kp.keypoint_targets(rois, keypoints, 4)
    np.testing.assert_array_equal(weights, [[1], [0]])      # empty ROI: nothing to learn
    np.testing.assert_array_equal(cells, [[0], [0]])


def test_decoding_is_the_cell_centre_and_inverts_the_encoding():
    m, k = 4, 2
    heatmaps = np.zeros((1, m, m, k), np.float32)
    heatmaps[0, 1, 2, 0] = 10.0                 # keypoint 0 at row 1, col 2
    heatmaps[0, 3, 0, 1] = 10.0                 # keypoint 1 at row 3, col 0
    rois = np.array([[10.0, 20.0, 18.0, 28.0]])  # 8 x 8 px: 2 px a cell
    decoded = kp.heatmaps_to_keypoints(heatmaps, rois)
    # Cell centre in box units: x1 + (col + 0.5) * 2; minus 0.5 for pixel-index units.
    np.testing.assert_allclose(decoded[0, :, :2], [[20 + 5 - 0.5, 10 + 3 - 0.5],
                                                   [20 + 1 - 0.5, 10 + 7 - 0.5]])
    expected_score = np.exp(10.0) / (np.exp(10.0) + m * m - 1)
    np.testing.assert_allclose(decoded[0, :, 2], [expected_score] * 2, rtol=1e-6)
    # Encoding the decoded keypoints gives their cells back.
    decoded[..., 2] = 2
    cells, weights = kp.keypoint_targets(rois, decoded, m)
    np.testing.assert_array_equal(cells, [[1 * m + 2, 3 * m + 0]])
    np.testing.assert_array_equal(weights, [[1, 1]])


def test_round_trip_error_is_at_most_half_a_cell():
    rng = np.random.default_rng(0)
    rois = np.array([[3.0, 7.0, 40.0, 30.0]] * 200)
    points = np.stack([rng.uniform(6.5, 29.5, 200), rng.uniform(2.5, 39.5, 200),
                       np.full(200, 2.0)], axis=-1)[:, None]
    cells, weights = kp.keypoint_targets(rois, points, 56)
    assert weights.min() == 1
    heatmaps = np.zeros((200, 56, 56, 1), np.float32)
    heatmaps[np.arange(200), cells[:, 0] // 56, cells[:, 0] % 56, 0] = 1.0
    decoded = kp.heatmaps_to_keypoints(heatmaps, rois)
    assert np.abs(decoded[:, 0, 0] - points[:, 0, 0]).max() <= 23 / 56 / 2 + 1e-9
    assert np.abs(decoded[:, 0, 1] - points[:, 0, 1]).max() <= 37 / 56 / 2 + 1e-9


# ----------------------------------------------------------------------------- resizing
def test_resize_and_unmold_keypoints_are_inverse():
    keypoints = np.array([[[0.0, 0.0, 2], [9.0, 4.0, 1]]], np.float32)
    padding = [(3, 3), (0, 0), (0, 0)]
    resized = kp.resize_keypoints(keypoints, 2.0, padding)
    # Pixel 0 of the original covers [0, 1): its centre 0.5 -> 1.0 -> pixel index 0.5.
    np.testing.assert_allclose(resized, [[[0.5, 3.5, 2], [18.5, 11.5, 1]]])
    back = kp.unmold_keypoints(resized, window=(3, 0, 23, 20), scale=2.0)
    np.testing.assert_allclose(back, keypoints)


def test_resize_keypoints_crop_hides_keypoints_outside():
    keypoints = np.array([[[5.0, 5.0, 2], [50.0, 5.0, 2]]], np.float32)
    resized = kp.resize_keypoints(keypoints, 1.0, [(0, 0), (0, 0), (0, 0)], crop=(0, 2, 20, 20))
    np.testing.assert_allclose(resized, [[[3.0, 5.0, 2], [48.0, 5.0, 0]]])


def test_flip_keypoints_mirrors_and_swaps_pairs():
    keypoints = np.array([[[1.0, 2.0, 2], [3.0, 4.0, 1], [5.0, 6.0, 2]]], np.float32)
    flipped = kp.flip_keypoints(keypoints, width=10, flip_pairs=[(1, 2)])
    np.testing.assert_allclose(flipped, [[[8.0, 2.0, 2], [4.0, 6.0, 2], [6.0, 4.0, 1]]])


def test_horizontal_flip_flips_image_mask_and_keypoints():
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    mask = np.zeros((2, 4, 1), bool)
    mask[0, 0, 0] = True
    keypoints = np.array([[[0.0, 0.0, 2], [3.0, 1.0, 2]]], np.float32)
    out_image, out_mask, out_kps = kp.HorizontalFlip(p=1.0)(
        image, mask, keypoints, [(0, 1)], np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    assert out_mask[0, 3, 0] and out_mask.sum() == 1
    np.testing.assert_allclose(out_kps, [[[0.0, 1.0, 2], [3.0, 0.0, 2]]])
    with pytest.raises(ValueError, match="p must be in"):
        kp.HorizontalFlip(p=1.5)


def test_check_keypoints_shape_and_none():
    np.testing.assert_array_equal(kp.check_keypoints(None, 2, 3), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"image 7: load_keypoints must return \[N=2, K=3, 3\]"):
        kp.check_keypoints(np.zeros((2, 4, 3)), 2, 3, image_id=7)


# ----------------------------------------------------------------------------- loss
def test_keypoint_loss_on_hand_made_heatmaps():
    m = 2
    logits = np.zeros((1, 2, m, m, 2), np.float32)       # [B, N, m, m, K]
    logits[0, 0, 0, 1, 0] = np.log(3.0)                  # ROI 0, kp 0: cell 1 has p = 3/6
    logits[0, 0, 1, 1, 1] = 5.0                          # ROI 0, kp 1 (not weighted)
    targets = np.array([[[1, 3], [2, 0]]])               # cells row * m + col
    weights = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    loss = float(losses.mrcnn_keypoint_loss(targets, weights, logits))
    # ROI 0 kp 0: -log(3/6); ROI 1 kp 0: uniform, -log(1/4). Mean over the 2 weighted.
    np.testing.assert_allclose(loss, (np.log(2.0) + np.log(4.0)) / 2, rtol=1e-6)


def test_keypoint_loss_is_zero_without_weighted_keypoints():
    logits = np.random.default_rng(0).normal(size=(2, 3, 4, 4, 2)).astype(np.float32)
    loss = losses.mrcnn_keypoint_loss(np.zeros((2, 3, 2), np.int32), np.zeros((2, 3, 2)), logits)
    assert float(loss) == 0.0


# ----------------------------------------------------------------------------- config
def test_config_keypoint_defaults_and_checks():
    config = Config()
    assert config.KEYPOINT_NAMES == () and config.KEYPOINT_MASK_SHAPE == 56
    assert config.KEYPOINT_POOL_SIZE == 14
    bad = [({"KEYPOINT_NAMES": ("a", "a")}, "KEYPOINT_NAMES must be unique"),
           ({"KEYPOINT_NAMES": "ab"}, "KEYPOINT_NAMES must be a sequence"),
           ({"KEYPOINT_MASK_SHAPE": 28}, "KEYPOINT_MASK_SHAPE must be 4 \\* KEYPOINT_POOL_SIZE"),
           ({"KEYPOINT_NAMES": ("a", "b"), "KEYPOINT_FLIP_MAP": (("a", "c"),)},
            "KEYPOINT_FLIP_MAP must hold pairs"),
           ({"LOSS_WEIGHTS": {"mrcnn_keypoint_los": 1.0}}, "unknown losses")]
    for attrs, message in bad:
        with pytest.raises(ValueError, match=message):
            type("C", (Config,), attrs)()
    weighted = type("C", (Config,), {"LOSS_WEIGHTS": {"mrcnn_keypoint_loss": 0.5}})()
    assert weighted.LOSS_WEIGHTS["mrcnn_keypoint_loss"] == 0.5
