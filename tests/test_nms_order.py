"""NMS keeps matterport's order when scores tie: ProposalLayer, DetectionLayer, a saturated RPN.

matterport runs tf.image.non_max_suppression (equal scores: lower index first) per image for
the proposals, per class for the detections, and orders the final detections with
tf.math.top_k over the kept ROI indices sorted ascending. The references below make those
library calls themselves; the layers must give the same rows, in the same order, exactly.
"""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import data
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.proposal import ProposalLayer
from mrcnn.ops import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph
from tests.conftest import TinyConfig

NUM_CLASSES = 4


def _proposals_matterport(probs, deltas, anchors, proposal_count, nms_threshold, pre_nms_limit,
                          std):
    """matterport's ProposalLayer, one image at a time, with its TensorFlow calls."""
    out = np.zeros((probs.shape[0], proposal_count, 4), np.float32)
    for b in range(probs.shape[0]):
        scores = tf.constant(probs[b, :, 1])
        k = min(pre_nms_limit, scores.shape[0])
        ix = tf.math.top_k(scores, k, sorted=True).indices
        boxes = apply_box_deltas_graph(tf.gather(anchors[b], ix), tf.gather(deltas[b], ix) * std)
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)
        keep = tf.image.non_max_suppression(boxes, tf.gather(scores, ix), proposal_count,
                                            nms_threshold)
        kept = tf.gather(boxes, keep).numpy()
        out[b, :len(kept)] = kept
    return out


def _tied_rpn_outputs(rng, batch, num_anchors):
    """Overlapping anchors on a coarse grid, every foreground probability exactly 1.0."""
    yx = rng.integers(0, 12, (batch, num_anchors, 2)) / 16
    hw = rng.integers(2, 5, (batch, num_anchors, 2)) / 16
    anchors = np.concatenate([yx, yx + hw], axis=-1).astype(np.float32)
    probs = np.zeros((batch, num_anchors, 2), np.float32)
    probs[..., 1] = 1.0
    probs[:, ::7, 1] = np.float32(0.75)  # a few lower scores among the ties
    probs[..., 0] = 1.0 - probs[..., 1]
    deltas = (rng.integers(-2, 3, (batch, num_anchors, 4)) / 8).astype(np.float32)
    return probs, deltas, anchors


def test_proposal_layer_keeps_tied_scores_in_index_order(rng):
    probs, deltas, anchors = _tied_rpn_outputs(rng, 2, 400)
    std = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    layer = ProposalLayer(proposal_count=60, nms_threshold=0.7, pre_nms_limit=300,
                          rpn_bbox_std_dev=std)
    assert layer.nms_method == "standard"
    got = np.asarray(layer([probs, deltas, anchors]))
    want = _proposals_matterport(probs, deltas, anchors, 60, 0.7, 300, std)
    assert (np.abs(want).sum(-1) > 0).sum() > 60  # real proposals in both images
    np.testing.assert_array_equal(got, want)
    # The faster "combined" NMS visits equal scores in another order: other proposals.
    combined = ProposalLayer(proposal_count=60, nms_threshold=0.7, pre_nms_limit=300,
                             rpn_bbox_std_dev=std, nms_method="combined")
    assert not np.array_equal(np.asarray(combined([probs, deltas, anchors])), want)


def _detections_matterport(rois, probs, deltas, window, max_instances, min_confidence,
                           nms_threshold, std):
    """matterport's refine_detections_graph for one image (its TensorFlow calls, in order)."""
    class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
    indices = tf.stack([tf.range(probs.shape[0]), class_ids], axis=1)
    class_scores = tf.gather_nd(probs, indices)
    refined = apply_box_deltas_graph(rois, tf.gather_nd(deltas, indices) * std)
    refined = clip_boxes_graph(refined, window)
    keep = tf.where(class_ids > 0)[:, 0]
    if min_confidence:
        conf = tf.where(class_scores >= min_confidence)[:, 0]
        keep = tf.sparse.to_dense(tf.sets.intersection(keep[None], conf[None]))[0]
    pre_ids, pre_rois = tf.gather(class_ids, keep), tf.gather(refined, keep)
    pre_scores = tf.gather(class_scores, keep)
    nms_keep = []
    for class_id in tf.unique(pre_ids)[0].numpy():
        ixs = tf.where(pre_ids == class_id)[:, 0]
        sel = tf.image.non_max_suppression(tf.gather(pre_rois, ixs), tf.gather(pre_scores, ixs),
                                           max_output_size=max_instances,
                                           iou_threshold=nms_threshold)
        nms_keep.extend(tf.gather(keep, tf.gather(ixs, sel)).numpy().tolist())
    keep = tf.sparse.to_dense(tf.sets.intersection(
        keep[None], tf.constant(nms_keep, tf.int64)[None]))[0]
    kept_scores = tf.gather(class_scores, keep)
    top = tf.math.top_k(kept_scores, k=min(int(kept_scores.shape[0]), max_instances)).indices
    keep = tf.gather(keep, top)
    rows = tf.concat([tf.gather(refined, keep),
                      tf.cast(tf.gather(class_ids, keep), tf.float32)[:, None],
                      tf.gather(class_scores, keep)[:, None]], axis=1).numpy()
    out = np.zeros((max_instances, 6), np.float32)
    out[:len(rows)] = rows
    return out


def test_detection_layer_keeps_tied_scores_in_matterport_order(rng):
    batch, n = 2, 120
    yx = rng.integers(0, 10, (batch, n, 2)) / 16
    rois = np.concatenate([yx, yx + rng.integers(2, 6, (batch, n, 2)) / 16], -1).astype(np.float32)
    class_ids = rng.integers(0, NUM_CLASSES, (batch, n))
    scores = np.where(rng.random((batch, n)) < 0.8, 0.9, 0.8).astype(np.float32)  # ties
    probs = np.full((batch, n, NUM_CLASSES), 0.0, np.float32)
    for b in range(batch):
        probs[b] = (1 - scores[b][:, None]) / (NUM_CLASSES - 1)
        probs[b, np.arange(n), class_ids[b]] = scores[b]
    deltas = (rng.integers(-2, 3, (batch, n, NUM_CLASSES, 4)) / 8).astype(np.float32)
    meta = np.stack([data.compose_image_meta(i, (128, 128, 3), (128, 128, 3), w, 1.0,
                                             [1] * NUM_CLASSES)
                     for i, w in enumerate([(0, 0, 128, 128), (16, 0, 112, 128)])])
    meta = meta.astype(np.float32)
    std = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    layer = DetectionLayer(max_instances=12, min_confidence=0.7, nms_threshold=0.3,
                           bbox_std_dev=std)
    got = np.asarray(layer([rois, probs, deltas, meta]))
    parsed = data.parse_image_meta(meta)
    for b in range(batch):
        window = norm_boxes_graph(tf.constant(parsed["window"][b], tf.float32),
                                  tf.constant(parsed["image_shape"][b, :2], tf.float32))
        want = _detections_matterport(tf.constant(rois[b]), tf.constant(probs[b]),
                                      tf.constant(deltas[b]), window, 12, 0.7, 0.3, std)
        assert (want[:, 5] > 0).sum() == 12
        np.testing.assert_array_equal(got[b], want)


def test_detection_layer_nms_method_option():
    rois = np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.8, 0.8]]], np.float32)
    probs = np.array([[[0.1, 0.9, 0, 0], [0.2, 0, 0.8, 0]]], np.float32)
    deltas = np.zeros((1, 2, NUM_CLASSES, 4), np.float32)
    meta = data.compose_image_meta(0, (128, 128, 3), (128, 128, 3), (0, 0, 128, 128), 1.0,
                                   [1] * NUM_CLASSES)[None].astype(np.float32)
    outs = [np.asarray(DetectionLayer(3, 0.5, 0.3, nms_method=m)([rois, probs, deltas, meta]))
            for m in ("standard", "combined")]
    np.testing.assert_allclose(outs[0][0], [[0.1, 0.1, 0.4, 0.4, 1, 0.9],
                                            [0.5, 0.5, 0.8, 0.8, 2, 0.8], [0] * 6], atol=1e-6)
    np.testing.assert_array_equal(outs[0], outs[1])
    layer = DetectionLayer(3, 0.5, 0.3, nms_method="combined")
    assert DetectionLayer.from_config(layer.get_config()).nms_method == "combined"
    with pytest.raises(ValueError, match="'fast'"):
        DetectionLayer(3, 0.5, 0.3, nms_method="fast")


class SaturatedConfig(TinyConfig):
    IMAGES_PER_GPU = 1
    PRE_NMS_LIMIT = 400


def test_saturated_rpn_model_proposals_are_tf_nms(tmp_path):
    """A model whose RPN gives exactly 1.0 to every anchor: proposals are NMS's, in its order."""
    from mrcnn.model import MaskRCNN

    config = SaturatedConfig()
    model = MaskRCNN("inference", config, str(tmp_path))
    rpn = model.keras_model.get_layer("rpn_model")
    cls_raw = rpn.get_layer("rpn_class_raw")
    kernel, bias = cls_raw.get_weights()
    bias[0::2], bias[1::2] = -60.0, 60.0  # softmax (bg, fg) -> (0, 1.0) in float32
    cls_raw.set_weights([np.zeros_like(kernel), bias])
    image = np.random.default_rng(5).integers(0, 255, (128, 128, 3)).astype(np.uint8)
    out = model.run_graph([image], ["ROI", "rpn_class", "rpn_bbox", "anchors"])
    assert (out["rpn_class"][0, :, 1] == 1.0).sum() >= config.PRE_NMS_LIMIT
    std = np.array(config.RPN_BBOX_STD_DEV, np.float32)
    want = _proposals_matterport(out["rpn_class"], out["rpn_bbox"], out["anchors"],
                                 config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD,
                                 config.PRE_NMS_LIMIT, std)
    np.testing.assert_array_equal(out["ROI"], want)
