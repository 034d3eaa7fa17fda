"""Tests of mrcnn.targets: load_image_gt, build_rpn_targets, random ROIs and head targets."""
import math

import albumentations as A
import numpy as np
import pytest

from mrcnn import targets, utils


# --------------------------------------------------------------------------- dataset
class RectDataset(utils.Dataset):
    """Two 32 x 64 images: one with two rectangles (classes 1 and 2), one with no objects."""

    def __init__(self, channels=3, mask_shape=None):
        super().__init__()
        self.channels = channels
        self.mask_shape = mask_shape
        self.add_class("rects", 1, "a")
        self.add_class("rects", 2, "b")
        self.add_image("rects", 0, None, rects=[(1, (4, 8, 12, 24)), (2, (16, 40, 28, 60))])
        self.add_image("rects", 1, None, rects=[])
        self.prepare()

    def load_image(self, image_id):
        image = np.full((32, 64, self.channels), 40, dtype=np.uint8)
        for class_id, (y1, x1, y2, x2) in self.image_info[image_id]["rects"]:
            image[y1:y2, x1:x2] = 100 * class_id
        return image

    def load_mask(self, image_id):
        rects = self.image_info[image_id]["rects"]
        if not rects:
            return np.zeros((0, 0, 0), bool), np.zeros((0,), np.int32)
        mask = np.zeros(self.mask_shape or (32, 64, len(rects)), bool)
        for i, (_, (y1, x1, y2, x2)) in enumerate(rects):
            mask[y1:y2, x1:x2, i] = True
        return mask, np.array([c for c, _ in rects], np.int32)


# 32 x 64 -> scale min(128 / 32, 128 / 64) = 2 -> 64 x 128, padded by 32 rows top and bottom.
EXPECTED_BOXES = np.array([[32 + 8, 16, 32 + 24, 48], [32 + 32, 80, 32 + 56, 120]])


def test_load_image_gt_shapes_boxes_and_meta(tiny_config):
    image, meta, class_ids, bbox, mask = targets.load_image_gt(RectDataset(), tiny_config, 0)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(class_ids, [1, 2])
    assert class_ids.dtype == np.int32 and bbox.dtype == np.int32
    np.testing.assert_array_equal(bbox, EXPECTED_BOXES)
    assert mask.shape == (128, 128, 2) and mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(axis=(0, 1)), [16 * 32, 24 * 40])
    # bilinear image resize: the rectangle's interior keeps its value (edges blend)
    assert np.all(image[41:55, 17:47] == 100) and np.all(image[:32] == 0)
    # [image_id, original shape, molded shape, window, scale, active class ids (4)]
    np.testing.assert_array_equal(
        meta, [0, 32, 64, 3, 128, 128, 3, 32, 0, 96, 128, 2.0, 1, 1, 1, 0])


def test_load_image_gt_mini_masks(tiny_config):
    _, _, _, bbox, mask = targets.load_image_gt(RectDataset(), tiny_config, 0, use_mini_mask=True)
    assert mask.shape == (28, 28, 2)
    assert mask.all()   # rectangles fill their boxes
    np.testing.assert_array_equal(bbox, EXPECTED_BOXES)


@pytest.mark.parametrize("mini", [False, True])
def test_load_image_gt_image_without_objects(tiny_config, mini):
    image, meta, class_ids, bbox, mask = targets.load_image_gt(
        RectDataset(), tiny_config, 1, use_mini_mask=mini)
    assert image.shape == (128, 128, 3)
    assert class_ids.shape == (0,) and bbox.shape == (0, 4)
    assert mask.shape == ((28, 28, 0) if mini else (128, 128, 0))
    assert meta[0] == 1


def test_albumentations_horizontal_flip_moves_boxes(tiny_config):
    image, _, class_ids, bbox, mask = targets.load_image_gt(
        RectDataset(), tiny_config, 0, augmentation=A.HorizontalFlip(p=1.0))
    # x -> 128 - x: (40, 16, 56, 48) -> (40, 80, 56, 112); (64, 80, 88, 120) -> (64, 8, 88, 48)
    np.testing.assert_array_equal(bbox, [[40, 80, 56, 112], [64, 8, 88, 48]])
    np.testing.assert_array_equal(class_ids, [1, 2])
    assert np.all(image[41:55, 81:111] == 100)
    assert mask[40:56, 80:112, 0].all() and mask[:, :, 0].sum() == 16 * 32
    # no objects: the transform is called without masks
    image, _, ids, _, _ = targets.load_image_gt(RectDataset(), tiny_config, 1,
                                                augmentation=A.HorizontalFlip(p=1.0))
    assert ids.shape == (0,)


class _FakeImgaugFlipud:
    """An imgaug-like augmenter: to_deterministic() and augment_image()."""

    def to_deterministic(self):
        return self

    def augment_image(self, image, hooks=None):
        return image[::-1].copy()


def test_imgaug_style_augmenter_flips_image_and_masks(tiny_config):
    image, _, _, bbox, mask = targets.load_image_gt(RectDataset(), tiny_config, 0,
                                                    augmentation=_FakeImgaugFlipud())
    # y -> 128 - y: (40, 16, 56, 48) -> (72, 16, 88, 48)
    np.testing.assert_array_equal(bbox[0], [72, 16, 88, 48])
    assert np.all(image[73:87, 17:47] == 100)
    assert mask[72:88, 16:48, 0].all()


def test_instances_emptied_by_augmentation_are_dropped(tiny_config):
    def erase_first(image, masks):
        return {"image": image, "masks": [np.zeros_like(masks[0])] + list(masks[1:])}

    _, _, class_ids, bbox, mask = targets.load_image_gt(RectDataset(), tiny_config, 0,
                                                        augmentation=erase_first)
    np.testing.assert_array_equal(class_ids, [2])
    np.testing.assert_array_equal(bbox, EXPECTED_BOXES[1:])
    assert mask.shape == (128, 128, 1)


def test_augmentation_that_changes_the_shape_is_refused(tiny_config):
    with pytest.raises(ValueError, match=r"image 0: augmentation must keep the shapes.*\(128, 128, 3\)"):
        targets.load_image_gt(RectDataset(), tiny_config, 0,
                              augmentation=A.Resize(height=64, width=64, p=1.0))


def test_mask_image_shape_mismatch_names_image_and_shapes(tiny_config):
    dataset = RectDataset(mask_shape=(30, 64, 2))
    with pytest.raises(ValueError, match=r"image 0: .*\(30, 64, 2\)"):
        targets.load_image_gt(dataset, tiny_config, 0)


def test_channel_count_mismatch_names_image_and_shape(tiny_config):
    with pytest.raises(ValueError, match=r"image 1: .*IMAGE_CHANNEL_COUNT=3.*\(32, 64, 4\)"):
        targets.load_image_gt(RectDataset(channels=4), tiny_config, 1)


@pytest.mark.parametrize("bad_id", [7, 4, 0, -4])
def test_load_mask_class_id_outside_num_classes_is_rejected(tiny_config, bad_id):
    # NUM_CLASSES = 4: ids 1..3 are valid, -1..-3 are crowds of those classes.
    dataset = RectDataset()
    dataset.load_image = lambda image_id: np.full((32, 64, 3), 40, np.uint8)
    dataset.image_info[0]["rects"] = [(1, (4, 8, 12, 24)), (bad_id, (16, 40, 28, 60))]
    with pytest.raises(ValueError, match=rf"image 0 .*class id {bad_id}, outside \[1, "
                                         r"NUM_CLASSES\), and NUM_CLASSES is 4"):
        targets.load_image_gt(dataset, tiny_config, 0)
    dataset.image_info[0]["rects"][1] = (-3, (16, 40, 28, 60))  # a crowd of class 3: valid
    assert targets.load_image_gt(dataset, tiny_config, 0)[2].tolist() == [1, -3]


def test_source_classes_beyond_num_classes(tiny_config):
    tiny_config.NUM_CLASSES = 2
    with pytest.raises(ValueError, match="NUM_CLASSES is 2"):
        targets.load_image_gt(RectDataset(), tiny_config, 0)


# ------------------------------------------------------------------ build_rpn_targets
GT_IDS = np.array([1, 2, -1], np.int32)
GT_BOXES = np.array([[0, 0, 10, 10], [100, 100, 108, 108], [200, 200, 220, 220]], np.int32)
ANCHORS = np.array([
    [0, 0, 10, 10],          # 0: IoU 1 with gt 0 -> positive
    [0, 0, 10, 12],          # 1: IoU 100/120 = 0.83 -> positive
    [0, 5, 10, 15],          # 2: IoU 50/150 = 0.33 -> neutral
    [20, 20, 30, 30],        # 3: IoU 0 -> negative
    [40, 40, 50, 50],        # 4: negative
    [0, 0, 10, 20],          # 5: IoU 0.5 -> neutral
    [100, 100, 110, 110],    # 6: IoU 64/100 with gt 1, best anchor of gt 1 (first of a tie) -> positive
    [98, 98, 108, 108],      # 7: IoU 0.64 too, second of the tie -> neutral
    [205, 205, 225, 225],    # 8: IoU 0 with gts, 225/575 with the crowd -> neutral
    [300, 300, 310, 310],    # 9: negative
], np.float64)


def test_rpn_targets_labels(tiny_config):
    match, rpn_bbox = targets.build_rpn_targets((128, 128, 3), ANCHORS, GT_IDS, GT_BOXES, tiny_config)
    np.testing.assert_array_equal(match, [1, 1, 0, -1, -1, 0, 1, 0, 0, -1])
    assert match.dtype == np.int32
    assert rpn_bbox.shape == (64, 4) and rpn_bbox.dtype == np.float32
    # anchor 1 (centre x 6, width 12) -> gt 0 (centre x 5, width 10):
    # dx = -1/12 / 0.1, dw = log(10/12) / 0.2; anchor 0 is exact: zeros
    np.testing.assert_allclose(rpn_bbox[0], [0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(rpn_bbox[1], [0, -1 / 12 / 0.1, 0, math.log(10 / 12) / 0.2], rtol=1e-5)
    assert not rpn_bbox[3:].any()


def test_rpn_deltas_reproduce_the_gt(tiny_config):
    match, rpn_bbox = targets.build_rpn_targets((128, 128, 3), ANCHORS, GT_IDS, GT_BOXES, tiny_config)
    positives = np.flatnonzero(match == 1)
    refined = utils.apply_box_deltas(ANCHORS[positives],
                                     rpn_bbox[:len(positives)] * tiny_config.RPN_BBOX_STD_DEV)
    np.testing.assert_allclose(refined, GT_BOXES[[0, 0, 1]], atol=1e-4)


def test_rpn_subsampling_counts(tiny_config, rng):
    tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE = 6
    anchors = np.concatenate([np.tile(GT_BOXES[:1], (10, 1)),                     # 10 positives
                              [[20 + 3 * i, 20, 30 + 3 * i, 30] for i in range(20)]])  # 20 negatives
    match, rpn_bbox = targets.build_rpn_targets((128, 128, 3), anchors, [1], GT_BOXES[:1],
                                                tiny_config, rng=rng)
    # half of 6 = 3 positives, 6 - 3 = 3 negatives
    assert np.sum(match == 1) == 3 and np.sum(match == -1) == 3
    assert np.all(match[:10] >= 0) and np.all(match[10:] <= 0)
    assert rpn_bbox.shape == (6, 4)
    np.testing.assert_allclose(rpn_bbox, 0, atol=1e-7)   # the positives are the gt box itself
    again, _ = targets.build_rpn_targets((128, 128, 3), anchors, [1], GT_BOXES[:1], tiny_config,
                                         rng=np.random.default_rng(1234))
    np.testing.assert_array_equal(match, again)          # same seed, same sample


def test_rpn_no_gt_gives_only_negatives(tiny_config):
    match, rpn_bbox = targets.build_rpn_targets((128, 128, 3), ANCHORS, np.zeros((0,), np.int32),
                                                np.zeros((0, 4), np.int32), tiny_config)
    np.testing.assert_array_equal(match, -np.ones(10))
    assert not rpn_bbox.any()
    tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE = 4
    match, _ = targets.build_rpn_targets((128, 128, 3), ANCHORS, [], np.zeros((0, 4)), tiny_config)
    assert np.sum(match == -1) == 4 and np.sum(match == 0) == 6


def test_rpn_crowd_only_image(tiny_config):
    match, _ = targets.build_rpn_targets((128, 128, 3), ANCHORS, [-1], GT_BOXES[2:], tiny_config)
    expected = -np.ones(10)
    expected[8] = 0          # touches the crowd box
    np.testing.assert_array_equal(match, expected)


def test_rpn_mismatched_gt_raises(tiny_config):
    with pytest.raises(ValueError, match="disagree"):
        targets.build_rpn_targets((128, 128, 3), ANCHORS, [1, 2], GT_BOXES[:1], tiny_config)


# ------------------------------------------------- generate_random_rois / detection targets
def test_generate_random_rois(rng):
    gt_boxes = np.array([[40, 30, 60, 50]])
    rois = targets.generate_random_rois((128, 128, 3), 50, [1], gt_boxes, rng=rng)
    assert rois.shape == (50, 4) and rois.dtype == np.int32
    assert np.all(rois[:, 2] - rois[:, 0] >= 1) and np.all(rois[:, 3] - rois[:, 1] >= 1)
    assert rois.min() >= 0 and rois[:, [2, 3]].max() <= 128
    # int(0.9 * 50 / 1) = 45 ROIs inside the gt box grown by its size: (20, 10, 80, 70)
    near = rois[:45]
    assert np.all(near[:, :2] >= [20, 10]) and np.all(near[:, 2:] <= [80, 70])
    # no gt: all anywhere
    assert targets.generate_random_rois((64, 32, 3), 7, [], np.zeros((0, 4)), rng=rng).shape == (7, 4)


@pytest.mark.parametrize("mini", [False, True])
def test_build_detection_targets(tiny_config, rng, mini):
    tiny_config.USE_MINI_MASK = mini
    dataset = RectDataset()
    _, _, class_ids, boxes, masks = targets.load_image_gt(dataset, tiny_config, 0, use_mini_mask=mini)
    rois = np.concatenate([boxes, targets.generate_random_rois((128, 128, 3), 100, class_ids, boxes,
                                                               rng=rng)])
    out_rois, ids, bboxes, tmasks = targets.build_detection_targets(rois, class_ids, boxes, masks,
                                                                    tiny_config, rng=rng)
    assert out_rois.shape == (32, 4) and ids.shape == (32,)
    assert bboxes.shape == (32, 4, 4) and tmasks.shape == (32, 14, 14, 4)
    positives = np.flatnonzero(ids > 0)
    assert 2 <= len(positives) <= int(32 * 0.33)
    overlaps = utils.compute_overlaps(out_rois, boxes)
    np.testing.assert_array_equal(overlaps.max(1) >= 0.5, ids > 0)
    for row in positives:
        gt = np.argmax(overlaps[row])
        assert ids[row] == class_ids[gt]
        refined = utils.apply_box_deltas(out_rois[row:row + 1],
                                         bboxes[row:row + 1, ids[row]] * tiny_config.BBOX_STD_DEV)
        np.testing.assert_allclose(refined[0], boxes[gt], atol=1e-3)
        other = [c for c in range(4) if c != ids[row]]
        assert not bboxes[row, other].any() and not tmasks[row, :, :, other].any()
        # rectangles fill their box: the crop of an ROI inside the box is all ones
        y1, x1, y2, x2 = out_rois[row]
        gy1, gx1, gy2, gx2 = boxes[gt]
        if y1 >= gy1 and x1 >= gx1 and y2 <= gy2 and x2 <= gx2:
            assert tmasks[row, :, :, ids[row]].all()
    assert not bboxes[ids == 0].any() and not tmasks[ids == 0].any()
    # the gt boxes themselves are ROIs: a positive equal to gt 0 has a full mask
    exact = [r for r in positives if np.array_equal(out_rois[r], boxes[0])]
    for row in exact:
        np.testing.assert_array_equal(tmasks[row, :, :, 1], 1.0)


def test_build_detection_targets_without_gt(tiny_config, rng):
    rois = targets.generate_random_rois((128, 128, 3), 10, [], np.zeros((0, 4)), rng=rng)
    out_rois, ids, bboxes, tmasks = targets.build_detection_targets(
        rois, np.zeros((0,), np.int32), np.zeros((0, 4), np.int32), np.zeros((28, 28, 0), bool),
        tiny_config, rng=rng)
    # 10 negatives, repeated to fill 32 rows
    assert out_rois.shape == (32, 4) and not ids.any() and not bboxes.any() and not tmasks.any()
    assert {tuple(r) for r in out_rois} == {tuple(r) for r in rois}
