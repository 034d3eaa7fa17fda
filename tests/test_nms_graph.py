"""mrcnn.ops.nms_graph: tf.image.non_max_suppression in plain tensor ops, and the "graph" NMS
method of ProposalLayer / DetectionLayer that exports to LiteRT use (#13).

TFLite's own NMS kernel visits equal scores in heap order and selects a zero-area box again
and again; nms_graph must give TensorFlow's indices exactly, in every runtime.
"""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import data
from mrcnn.config import Config
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.proposal import ProposalLayer
from mrcnn.ops import nms_graph
from tests.export_helpers import litert_function
from tests.test_nms_order import NUM_CLASSES, _tied_rpn_outputs

THRESHOLDS = (0.3, 0.5, 0.7, 1 / 3)


def _hard_case(rng, n):
    """Boxes on a coarse grid (exact IoU ties at the thresholds, duplicates, zero-area boxes)
    with scores from six values (ties)."""
    yx = rng.integers(0, 8, (n, 2))
    hw = rng.integers(0, 6, (n, 2))  # 0: a zero-area box
    boxes = (np.concatenate([yx, yx + hw], 1) / 8).astype(np.float32)
    scores = (rng.integers(0, 6, n) / 5).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("tile", [4, 256])
def test_nms_graph_is_tf_nms_on_ties_and_zero_area_boxes(tile):
    # tile 4: many tiles, selections carried from tile to tile, the cut at max_output_size
    # falling inside a tile.
    rng = np.random.default_rng(0)
    traced = {t: tf.function(lambda b, s, t=t: nms_graph(b, s, 20, t, tile=tile),
                             input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None])])
              for t in THRESHOLDS}
    zero_area_kept = 0
    for trial in range(120):
        boxes, scores = _hard_case(rng, int(rng.integers(1, 60)))
        threshold = THRESHOLDS[trial % len(THRESHOLDS)]
        want = tf.image.non_max_suppression(boxes, scores, 20, threshold).numpy()
        if tile == 256:  # eager while loops are slow; tile 4 runs the same ops traced
            np.testing.assert_array_equal(
                nms_graph(boxes, scores, 20, threshold, tile=tile).numpy(), want)
        np.testing.assert_array_equal(traced[threshold](boxes, scores).numpy(), want)
        area = (boxes[want, 2] - boxes[want, 0]) * (boxes[want, 3] - boxes[want, 1])
        zero_area_kept += int((area == 0).sum())
    assert zero_area_kept > 50  # the cases exercise zero-area boxes


def test_nms_graph_iou_at_the_threshold_is_kept_as_tf_keeps_it():
    # IoU = 0.046875 / 0.15625 = 0.3 exactly: TF suppresses only IoU > threshold.
    boxes = np.array([[0.125, 0.125, 0.25, 0.625], [0.125, 0.125, 0.5, 0.5]], np.float32)
    scores = np.array([0.8, 0.8], np.float32)
    for threshold, want in ((0.3, [0, 1]), (np.nextafter(np.float32(0.3), 0), [0])):
        np.testing.assert_array_equal(tf.image.non_max_suppression(boxes, scores, 5, threshold),
                                      want)
        np.testing.assert_array_equal(nms_graph(boxes, scores, 5, threshold), want)


def test_nms_graph_edge_cases():
    empty = nms_graph(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 5, 0.5)
    assert empty.shape == (0,) and empty.dtype == tf.int32
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    scores = np.array([0.5, 0.9, 0.1], np.float32)
    np.testing.assert_array_equal(nms_graph(boxes, scores, 5, 0.5), [1, 2])
    np.testing.assert_array_equal(nms_graph(boxes, scores, 1, 0.5), [1])
    for tile in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"tile must be an integer >= 1, got {tile!r}"):
            nms_graph(boxes, scores, 5, 0.5, tile=tile)
    # Flipped corners are canonicalised, as TF does.
    np.testing.assert_array_equal(nms_graph(boxes[:, [2, 3, 0, 1]], scores, 5, 0.5),
                                  tf.image.non_max_suppression(boxes[:, [2, 3, 0, 1]], scores,
                                                               5, 0.5))


def test_nms_graph_on_litert_is_tf_nms():
    """The reason for nms_graph: on ai_edge_litert it still gives TF's indices."""
    run = litert_function(lambda b, s: nms_graph(b, s, 20, 0.3, tile=16),
                          [tf.TensorSpec([None, 4]), tf.TensorSpec([None])])
    rng = np.random.default_rng(1)
    for _ in range(40):
        boxes, scores = _hard_case(rng, int(rng.integers(1, 60)))
        got = run(boxes, scores)
        np.testing.assert_array_equal(got, tf.image.non_max_suppression(boxes, scores, 20, 0.3))


def test_proposal_layer_graph_nms_equals_standard(rng):
    probs, deltas, anchors = _tied_rpn_outputs(rng, 2, 400)
    layers = [ProposalLayer(proposal_count=60, nms_threshold=0.7, pre_nms_limit=300,
                            nms_method=method) for method in ("standard", "graph")]
    standard, graph = (np.asarray(layer([probs, deltas, anchors])) for layer in layers)
    assert (np.abs(standard).sum(-1) > 0).sum() > 60
    np.testing.assert_array_equal(graph, standard)
    assert ProposalLayer.from_config(layers[1].get_config()).nms_method == "graph"


def test_detection_layer_graph_nms_equals_standard(rng):
    batch, n = 2, 120
    yx = rng.integers(0, 10, (batch, n, 2)) / 16
    hw = rng.integers(0, 6, (batch, n, 2)) / 16  # some zero-area ROIs
    rois = np.concatenate([yx, yx + hw], -1).astype(np.float32)
    class_ids = rng.integers(0, NUM_CLASSES, (batch, n))
    scores = np.where(rng.random((batch, n)) < 0.8, 0.9, 0.8).astype(np.float32)
    probs = np.repeat(((1 - scores) / (NUM_CLASSES - 1))[..., None], NUM_CLASSES, -1)
    np.put_along_axis(probs, class_ids[..., None], scores[..., None], -1)
    deltas = np.zeros((batch, n, NUM_CLASSES, 4), np.float32)
    meta = np.stack([data.compose_image_meta(i, (128, 128, 3), (128, 128, 3), (0, 0, 128, 128),
                                             1.0, [1] * NUM_CLASSES) for i in range(batch)])
    inputs = [rois, probs.astype(np.float32), deltas, meta.astype(np.float32)]
    standard, graph = (np.asarray(DetectionLayer(12, 0.7, 0.3, nms_method=m)(inputs))
                       for m in ("standard", "graph"))
    assert (standard[..., 5] > 0).sum() == 24
    np.testing.assert_array_equal(graph, standard)


def test_config_accepts_graph_nms():
    config = type("C", (Config,), {"NAME": "c", "NMS_METHOD": "graph"})()
    assert config.NMS_METHOD == "graph"
    with pytest.raises(ValueError, match="'fast'"):
        type("C", (Config,), {"NAME": "c", "NMS_METHOD": "fast"})()
