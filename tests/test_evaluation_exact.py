"""utils.compute_matches / compute_ap / compute_ap_range / compute_recall equal matterport's
definitions on tied scores, tied IoUs and IoUs that sit on a threshold.

The references below follow matterport's utils step by step (float32 mask IoU by a dot
product, np.argsort(...)[::-1] orders, thresholds compared as they come, float32 recalls).
"""
import numpy as np

from mrcnn import utils


def _ref_overlaps_masks(masks1, masks2):
    m1 = np.reshape(masks1 > .5, (-1, masks1.shape[-1])).astype(np.float32)
    m2 = np.reshape(masks2 > .5, (-1, masks2.shape[-1])).astype(np.float32)
    area1, area2 = np.sum(m1, axis=0), np.sum(m2, axis=0)
    inter = np.dot(m1.T, m2)
    return inter / (area1[:, None] + area2[None, :] - inter)


def _ref_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
                 pred_masks, iou_threshold):
    indices = np.argsort(pred_scores)[::-1]
    pred_class_ids, pred_masks = pred_class_ids[indices], pred_masks[..., indices]
    overlaps = _ref_overlaps_masks(pred_masks, gt_masks)
    pred_match = -1 * np.ones([len(indices)])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    for i in range(len(indices)):
        for j in np.argsort(overlaps[i])[::-1]:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j], pred_match[i] = i, j
                break
    return gt_match, pred_match, overlaps


def _ref_ap(*args, iou_threshold):
    gt_match, pred_match, _ = _ref_matches(*args, iou_threshold)
    precisions = np.cumsum(pred_match > -1) / (np.arange(len(pred_match)) + 1)
    recalls = np.cumsum(pred_match > -1).astype(np.float32) / len(gt_match)
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = np.maximum(precisions[i], precisions[i + 1])
    indices = np.where(recalls[:-1] != recalls[1:])[0] + 1
    return np.sum((recalls[indices] - recalls[indices - 1]) * precisions[indices])


def _instances(rng, shape, count):
    """Blocky masks on a coarse grid (many equal IoUs), their boxes, classes 1..2."""
    masks = np.zeros(shape + (count,), bool)
    for i in range(count):
        y, x = rng.integers(0, shape[0] // 4 - 2) * 4, rng.integers(0, shape[1] // 4 - 2) * 4
        h, w = rng.integers(2, 5) * 4, rng.integers(2, 5) * 4
        masks[y:y + h, x:x + w, i] = True
    return utils.extract_bboxes(masks), rng.integers(1, 3, count), masks


def test_ap_equals_matterport_on_ties():
    rng = np.random.default_rng(21)
    for trial in range(12):
        gt_boxes, gt_ids, gt_masks = _instances(rng, (48, 48), int(rng.integers(3, 12)))
        pred_boxes, pred_ids, pred_masks = _instances(rng, (48, 48), int(rng.integers(20, 40)))
        scores = rng.choice([0.9, 0.8, 0.7], len(pred_ids)).astype(np.float32)  # ties
        args = (gt_boxes, gt_ids, gt_masks, pred_boxes, pred_ids, scores, pred_masks)
        for threshold in np.arange(0.5, 1.0, 0.05):
            gt_match, pred_match, overlaps = utils.compute_matches(*args,
                                                                   iou_threshold=threshold)
            want = _ref_matches(*args, threshold)
            np.testing.assert_array_equal(gt_match, want[0])
            np.testing.assert_array_equal(pred_match, want[1])
            np.testing.assert_array_equal(overlaps, want[2])
            assert utils.compute_ap(*args, iou_threshold=threshold)[0] == \
                _ref_ap(*args, iou_threshold=threshold)
        want_range = np.mean([_ref_ap(*args, iou_threshold=t)
                              for t in np.arange(0.5, 1.0, 0.05)])
        assert utils.compute_ap_range(*args, verbose=0) == want_range


def test_iou_on_a_threshold_compares_in_float32():
    # gt: 20 pixels; prediction: 17 of them -> IoU 17/20. float32(0.85) = 0.85000002 is not
    # below np.arange(0.5, 1.0, 0.05)[7] = 0.8500000000000002, so it matches there (float64
    # 17/20 = 0.84999999999999998 would not).
    gt = np.zeros((10, 10, 1), bool)
    gt[0:4, 0:5, 0] = True
    pred = gt.copy()
    pred[3, 2:5, 0] = False
    args = (utils.extract_bboxes(gt), np.array([1]), gt, utils.extract_bboxes(pred),
            np.array([1]), np.array([0.9], np.float32), pred)
    threshold = np.arange(0.5, 1.0, 0.05)[7]
    assert threshold > 0.85 and np.float32(17 / 20) >= threshold
    assert utils.compute_overlaps_masks(pred, gt)[0, 0] == np.float32(0.85)
    assert utils.compute_ap(*args, iou_threshold=threshold)[0] == 1.0
    # AP is 1 at 0.5..0.85 (8 thresholds) and 0 at 0.90, 0.95.
    assert utils.compute_ap_range(*args, verbose=0) == 0.8


def test_compute_recall_equals_matterport_in_box_dtype():
    rng = np.random.default_rng(4)
    for dtype in (np.int32, np.float32):
        pred = np.sort(rng.integers(0, 40, (30, 4)), axis=1)[:, [0, 1, 2, 3]].astype(dtype)
        pred = np.stack([pred[:, 0], pred[:, 1], pred[:, 0] + 5 + pred[:, 2] % 7,
                         pred[:, 1] + 5 + pred[:, 3] % 7], axis=1).astype(dtype)
        gt = pred[::3] + dtype(1)
        area1 = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
        area2 = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        overlaps = np.zeros((pred.shape[0], gt.shape[0]), dtype=np.result_type(pred, np.float32)
                            if dtype == np.float32 else np.float64)
        for i in range(gt.shape[0]):
            box = gt[i]
            y1, y2 = np.maximum(box[0], pred[:, 0]), np.minimum(box[2], pred[:, 2])
            x1, x2 = np.maximum(box[1], pred[:, 1]), np.minimum(box[3], pred[:, 3])
            inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
            overlaps[:, i] = inter / (area2[i] + area1 - inter)
        for iou in (0.5, 0.6400000000000001, np.float32(0.64)):
            positive = np.where(overlaps.max(axis=1) >= iou)[0]
            recall = len(set(overlaps.argmax(axis=1)[positive])) / gt.shape[0]
            got_recall, got_positive = utils.compute_recall(pred, gt, iou)
            assert got_recall == recall
            np.testing.assert_array_equal(got_positive, positive)
