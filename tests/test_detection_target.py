"""Tests of DetectionTargetLayer: sampling ratio, crowds, mask/box targets, padding, no gt."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.layers.detection_target import DetectionTargetLayer, batched_overlaps
from mrcnn.ops import apply_box_deltas_graph, overlaps_graph

STD = [0.1, 0.1, 0.2, 0.2]


def _layer(t=32, ratio=0.33, mask_shape=(4, 4), mini=False, seed=7):
    return DetectionTargetLayer(train_rois_per_image=t, roi_positive_ratio=ratio, bbox_std_dev=STD,
                                mask_shape=mask_shape, use_mini_mask=mini, seed=seed)


def _run(layer, proposals, gt_ids, gt_boxes, gt_masks):
    outs = layer([np.asarray(proposals, np.float32), np.asarray(gt_ids, np.int32),
                  np.asarray(gt_boxes, np.float32), np.asarray(gt_masks)])
    return [np.asarray(o) for o in outs]


def _jitter(box, count, amount, rng):
    box = np.asarray(box, np.float32)
    return (box + rng.uniform(-amount, amount, size=(count, 4))).astype(np.float32)


def _iou(a, b):
    return overlaps_graph(np.asarray(a, np.float32), np.asarray(b, np.float32)).numpy()


def test_positive_share_and_padding(rng):
    gt_box = [0.2, 0.2, 0.6, 0.6]
    pos = _jitter(gt_box, 40, 0.02, rng)                       # IoU with gt > 0.8
    neg = _jitter([0.75, 0.75, 0.95, 0.95], 40, 0.02, rng)     # IoU with gt = 0
    zeros = np.zeros((10, 4), np.float32)
    img0 = np.concatenate([pos, neg, zeros])
    img1 = np.concatenate([pos[:3], neg, np.zeros((47, 4), np.float32)])   # only 3 positives
    proposals = np.stack([img0, img1])
    gt_ids = np.array([[2, 0], [3, 0]])
    gt_boxes = np.array([[gt_box, [0, 0, 0, 0]]] * 2, np.float32)
    masks = np.ones((2, 8, 8, 2), bool)
    rois, ids, deltas, tmasks = _run(_layer(t=32, ratio=0.33), proposals, gt_ids, gt_boxes, masks)

    assert rois.shape == (2, 32, 4) and ids.shape == (2, 32) and ids.dtype == np.int32
    assert deltas.shape == (2, 32, 4) and tmasks.shape == (2, 32, 4, 4) and tmasks.dtype == np.float32
    # image 0: int(32 * 0.33) = 10 positives, int(10 / 0.33) - 10 = 30 - 10 = 20 negatives, 2 pad rows
    np.testing.assert_array_equal(ids[0], [2] * 10 + [0] * 22)
    assert _iou(rois[0, :10], [gt_box]).min() >= 0.5
    assert _iou(rois[0, 10:30], [gt_box]).max() == 0.0
    assert np.all(np.abs(rois[0, :30]).sum(1) > 0)
    # image 1: 3 positives, int(3 / 0.33) - 3 = 9 - 3 = 6 negatives, 23 pad rows
    np.testing.assert_array_equal(ids[1], [3] * 3 + [0] * 29)
    assert np.all(np.abs(rois[1, :9]).sum(1) > 0)
    for b, used in ((0, 30), (1, 9)):
        assert not rois[b, used:].any() and not deltas[b, used:].any() and not tmasks[b, used:].any()
    # negatives carry no box or mask target
    assert not deltas[0, 10:].any() and not tmasks[0, 10:].any()
    # sampled rows are distinct proposals
    assert len({tuple(r) for r in rois[0, :30]}) == 30


def test_sampling_is_random_but_seeded(rng):
    gt_box = [0.2, 0.2, 0.6, 0.6]
    proposals = _jitter(gt_box, 30, 0.02, rng)[None]
    args = (proposals, [[1]], [[gt_box]], np.ones((1, 4, 4, 1), bool))
    first = _run(_layer(t=8, ratio=0.5, seed=3), *args)[0]
    again = _run(_layer(t=8, ratio=0.5, seed=3), *args)[0]
    np.testing.assert_array_equal(first, again)
    layer = _layer(t=8, ratio=0.5, seed=3)
    draws = {tuple(_run(layer, *args)[0][0, :4].ravel()) for _ in range(4)}
    assert len(draws) > 1, "successive calls must draw new samples"


def test_crowd_overlap_is_neither_positive_nor_negative():
    gt_box = [0.1, 0.1, 0.3, 0.3]
    crowd = [0.5, 0.5, 0.9, 0.9]
    near_crowd = [0.45, 0.45, 0.7, 0.7]         # IoU 0 with gt, > 0.001 with the crowd box
    far = [0.0, 0.6, 0.1, 0.9]                   # IoU 0 with both
    proposals = np.array([[gt_box, near_crowd, crowd, far, [0, 0, 0, 0]]], np.float32)
    gt_ids = [[1, -1]]
    gt_boxes = [[gt_box, crowd]]
    # T = 8, ratio 0.25: 1 positive -> int(1 / 0.25) - 1 = 3 negatives wanted, only "far" is one
    rois, ids, _, _ = _run(_layer(t=8, ratio=0.25), proposals, gt_ids, gt_boxes,
                           np.ones((1, 4, 4, 2), bool))
    np.testing.assert_allclose(rois[0, :2], [gt_box, far])
    np.testing.assert_array_equal(ids[0], [1, 0, 0, 0, 0, 0, 0, 0])
    assert not rois[0, 2:].any()


def test_full_mask_target_is_the_cropped_region(rng):
    # 16 x 16 image: normalized = pixel / 15. The gt mask lives in columns 0..13 -> box x2 = 13/15.
    mask = np.zeros((16, 16), bool)
    mask[:, :14] = rng.random((16, 14)) > 0.5
    gt_box = [0.0, 0.0, 1.0, 13 / 15]
    # ROI over pixel columns 0..7 (left part of the object): IoU = 7/13 >= 0.5.
    # Sampled at rows 0..15 and columns 0..7 exactly with a (16, 8) mask shape.
    roi = [0.0, 0.0, 1.0, 7 / 15]
    _, ids, _, tmasks = _run(_layer(t=4, ratio=0.5, mask_shape=(16, 8)), [[roi]], [[1]],
                             [[gt_box]], mask[None, :, :, None])
    assert ids[0, 0] == 1
    np.testing.assert_array_equal(tmasks[0, 0], mask[:, :8].astype(np.float32))


def test_mini_mask_target_is_the_cropped_region(rng):
    mini = rng.random((8, 8)) > 0.5
    gt_box = np.array([0.2, 0.3, 0.6, 0.7], np.float32)
    # The ROI covers the left 4/7 of the box: mini-mask columns 0..4 (IoU 4/7).
    roi = [0.2, 0.3, 0.6, 0.3 + 0.4 * 4 / 7]
    other = np.zeros((8, 8), bool)   # a second gt far away must not be picked
    _, ids, _, tmasks = _run(
        _layer(t=4, ratio=0.5, mask_shape=(8, 5), mini=True), [[roi]], [[1, 2]],
        [[gt_box, [0.8, 0.8, 0.9, 0.9]]], np.stack([mini, other], -1)[None])
    assert ids[0, 0] == 1
    np.testing.assert_array_equal(tmasks[0, 0], mini[:, :5].astype(np.float32))


def test_bbox_targets_reproduce_the_gt(rng):
    gt_boxes = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.4, 0.9, 0.8]], np.float32)
    proposals = np.concatenate([_jitter(gt_boxes[0], 5, 0.02, rng),
                                _jitter(gt_boxes[1], 5, 0.02, rng)])[None]
    rois, ids, deltas, _ = _run(_layer(t=10, ratio=1.0), proposals, [[1, 2]], gt_boxes[None],
                                np.ones((1, 4, 4, 2), bool))
    np.testing.assert_array_equal(np.sort(ids[0]), [1] * 5 + [2] * 5)
    refined = apply_box_deltas_graph(rois[0], deltas[0] * np.array(STD, np.float32)).numpy()
    np.testing.assert_allclose(refined, gt_boxes[ids[0] - 1], atol=1e-5)


def test_no_gt_gives_only_negatives_and_zero_targets():
    proposals = np.zeros((1, 8, 4), np.float32)
    proposals[0, :5] = [[0.1 * i, 0.1, 0.1 * i + 0.2, 0.3] for i in range(5)]
    rois, ids, deltas, tmasks = _run(_layer(t=8, ratio=0.33), proposals, [[0, 0]],
                                     np.zeros((1, 2, 4), np.float32), np.zeros((1, 4, 4, 2), bool))
    np.testing.assert_array_equal(ids, np.zeros((1, 8)))
    assert not deltas.any() and not tmasks.any()
    # all 5 real proposals are sampled as negatives, 3 padding rows
    np.testing.assert_allclose(rois[0, :5][np.argsort(rois[0, :5, 0])], proposals[0, :5], atol=1e-7)
    assert not rois[0, 5:].any()
    assert np.isfinite(deltas).all()


def test_graph_mode_with_unknown_sizes(rng):
    layer = _layer(t=6, ratio=0.5, mask_shape=(4, 4), mini=True)
    fn = tf.function(layer, input_signature=[[
        tf.TensorSpec([None, None, 4], tf.float32), tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None, 4], tf.float32), tf.TensorSpec([None, None, None, None], tf.bool)]])
    gt_box = [0.2, 0.2, 0.6, 0.6]
    # inside the gt box (a crop reaching outside the mini mask would read zeros there)
    inner = [np.add(gt_box, [d, d, -d, -d]) for d in (0.0, 0.01, 0.02, 0.03)]
    proposals = np.concatenate([inner, [[0.7, 0.7, 0.9, 0.9]]])[None]
    outs = fn([proposals.astype(np.float32), np.array([[1]], np.int32),
               np.array([[gt_box]], np.float32), np.ones((1, 6, 6, 1), bool)])
    ids = outs[1].numpy()
    # 3 positives (ratio cap int(6 * 0.5) = 3), int(3 / 0.5) - 3 = 3 negatives wanted, 1 available
    np.testing.assert_array_equal(ids[0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(outs[3].numpy()[0, :3], np.ones((3, 4, 4)))
    assert not outs[0].numpy()[0, 4:].any()


def test_config_and_output_shape():
    layer = _layer(t=12, ratio=0.25, mask_shape=(14, 14), mini=True, seed=5)
    config = layer.get_config()
    clone = DetectionTargetLayer.from_config(config)
    assert clone.get_config() == config
    assert config["train_rois_per_image"] == 12 and config["mask_shape"] == [14, 14]
    assert layer.dtype_policy.name == "float32"
    assert layer.compute_output_shape([(2, 50, 4), (2, 5), (2, 5, 4), (2, 28, 28, 5)]) == [
        (2, 12, 4), (2, 12), (2, 12, 4), (2, 12, 14, 14)]


@pytest.mark.parametrize("kwargs, match", [
    ({"train_rois_per_image": 0}, "train_rois_per_image"),
    ({"roi_positive_ratio": 1.5}, "roi_positive_ratio"),
    ({"bbox_std_dev": [0.1, 0.1]}, "bbox_std_dev"),
    ({"mask_shape": (14,)}, "mask_shape"),
])
def test_bad_arguments(kwargs, match):
    args = dict(train_rois_per_image=4, roi_positive_ratio=0.5, bbox_std_dev=STD,
                mask_shape=(4, 4), use_mini_mask=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DetectionTargetLayer(**args)


def test_batched_overlaps_matches_overlaps_graph(rng):
    a = np.sort(rng.random((2, 5, 4)).astype(np.float32).reshape(2, 5, 2, 2), axis=2).reshape(2, 5, 4)
    a = a[..., [0, 2, 1, 3]]
    b = np.concatenate([a[:, :3], np.zeros((2, 1, 4), np.float32)], axis=1)
    got = batched_overlaps(a, b).numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i], overlaps_graph(a[i], b[i]).numpy(), atol=1e-6)


def test_symbolic_outputs_have_the_right_dtypes():
    import keras
    inputs = [keras.Input((None, 4)), keras.Input((None,), dtype="int32"), keras.Input((None, 4)),
              keras.Input((28, 28, None), dtype="bool")]
    outs = _layer(t=8, ratio=0.25, mask_shape=(14, 14), mini=True)(inputs)
    assert [o.dtype for o in outs] == ["float32", "int32", "float32", "float32"]
    assert [tuple(o.shape) for o in outs] == [(None, 8, 4), (None, 8), (None, 8, 4), (None, 8, 14, 14)]


def test_ratio_with_no_positive_rows_gives_zero_masks():
    # int(2 * 0.25) = 0 positives allowed: everything sampled is negative
    rois, ids, deltas, tmasks = _run(_layer(t=2, ratio=0.25), [[[0.1, 0.1, 0.5, 0.5]]], [[1]],
                                     [[[0.1, 0.1, 0.5, 0.5]]], np.ones((1, 4, 4, 1), bool))
    assert not ids.any() and not tmasks.any() and tmasks.shape == (1, 2, 4, 4)
