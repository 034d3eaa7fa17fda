"""Keypoint R-CNN in the graphs: target layer parity, default graphs unchanged, a training
step, detect() decoding, and loading matterport weights into a keypoint model."""
import numpy as np
import pytest

from mrcnn import keypoints as kp
from mrcnn import utils
from mrcnn.layers.detection_target import DetectionTargetLayer
from mrcnn.model import MaskRCNN
from tests.conftest import TinyConfig

KEYPOINT_NAMES = ("apex", "left", "right")


class TinyKeypointConfig(TinyConfig):
    NAME = "tinykp"
    KEYPOINT_NAMES = KEYPOINT_NAMES
    KEYPOINT_FLIP_MAP = (("left", "right"),)
    KEYPOINT_POOL_SIZE = 7
    KEYPOINT_MASK_SHAPE = 28
    KEYPOINT_HEAD_CONVS = 2
    KEYPOINT_HEAD_FILTERS = 16


def _is_keypoint_layer(name):
    return "keypoint" in name


def _weighted(model):
    """{layer name: [weight shapes]} of the layers with weights."""
    return {layer.name: [tuple(w.shape) for w in layer.weights]
            for layer in model.keras_model.layers if layer.weights}


# ----------------------------------------------------------------------------- targets
def test_detection_target_layer_keypoints_match_numpy():
    h = w = 128
    gt_boxes_px = np.array([[10, 20, 60, 90], [70, 5, 120, 45]], np.float32)
    rng = np.random.default_rng(3)
    gt_keypoints = np.zeros((1, 3, 3, 3), np.float32)      # M = 3 (one padding row), K = 3
    for g, (y1, x1, y2, x2) in enumerate(gt_boxes_px):
        gt_keypoints[0, g, :, 0] = rng.uniform(x1 - 8, x2 + 8, 3)
        gt_keypoints[0, g, :, 1] = rng.uniform(y1 - 8, y2 + 8, 3)
        gt_keypoints[0, g, :, 2] = [2, 1, 0]
    # A keypoint exactly on the far border of box 0 (x + 0.5 = x2, y + 0.5 = y2).
    gt_keypoints[0, 0, 0] = [89.5, 59.5, 2]
    # Proposals: the gt boxes themselves and slightly shifted copies (IoU > 0.5).
    proposals_px = np.concatenate([gt_boxes_px, gt_boxes_px + [2, -3, 2, -3]])
    proposals = utils.norm_boxes(proposals_px, (h, w))[None]
    gt_boxes = utils.norm_boxes(gt_boxes_px, (h, w))[None]
    gt_boxes = np.concatenate([gt_boxes, np.zeros((1, 1, 4), np.float32)], axis=1)
    gt_class_ids = np.array([[1, 2, 0]], np.int32)
    gt_masks = np.ones((1, 8, 8, 3), bool)
    meta = np.zeros((1, 12 + 4), np.float32)
    meta[0, 4:7] = [h, w, 3]
    layer = DetectionTargetLayer(train_rois_per_image=6, roi_positive_ratio=1.0,
                                 bbox_std_dev=[0.1, 0.1, 0.2, 0.2], mask_shape=[4, 4],
                                 use_mini_mask=True, seed=1, num_keypoints=3,
                                 keypoint_heatmap_size=56)
    rois, class_ids, _, _, cells, weights = [np.asarray(t) for t in layer(
        [proposals, gt_class_ids, gt_boxes, gt_masks, gt_keypoints, meta])]
    assert int(np.sum(class_ids > 0)) == 4
    for row in range(4):
        roi_px = rois[0, row] * [h - 1, w - 1, h - 1, w - 1] + [0, 0, 1, 1]
        gt = int(np.argmax(utils.compute_overlaps(np.round(roi_px)[None], gt_boxes_px)[0]))
        expected_cells, expected_weights = kp.keypoint_targets(
            roi_px[None], gt_keypoints[0, gt][None], 56)
        np.testing.assert_array_equal(cells[0, row], expected_cells[0])
        np.testing.assert_array_equal(weights[0, row], expected_weights[0])
    # The gt box 0 row keeps its border keypoint in the last cell.
    exact = [r for r in range(4) if np.allclose(
        rois[0, r] * [h - 1, w - 1, h - 1, w - 1] + [0, 0, 1, 1], gt_boxes_px[0], atol=1e-3)]
    assert len(exact) == 1
    assert cells[0, exact[0], 0] == 56 * 56 - 1 and weights[0, exact[0], 0] == 1
    np.testing.assert_array_equal(weights[0, 4:], 0)          # padding rows
    assert layer.get_config()["num_keypoints"] == 3


def test_default_target_layer_config_has_no_keypoint_keys():
    layer = DetectionTargetLayer(train_rois_per_image=4, roi_positive_ratio=0.5,
                                 bbox_std_dev=[0.1, 0.1, 0.2, 0.2], mask_shape=[4, 4],
                                 use_mini_mask=True)
    assert "num_keypoints" not in layer.get_config()
    with pytest.raises(ValueError, match="num_keypoints must be an integer >= 0, got -1"):
        DetectionTargetLayer(4, 0.5, [0.1, 0.1, 0.2, 0.2], [4, 4], True, num_keypoints=-1)


# ----------------------------------------------------------------------------- graphs
@pytest.fixture(scope="module")
def inference_models(tmp_path_factory):
    logs = str(tmp_path_factory.mktemp("logs"))
    config = type("C", (TinyKeypointConfig,), {"DETECTION_MIN_CONFIDENCE": 0.0,
                                                "IMAGES_PER_GPU": 1})()
    plain = type("P", (TinyConfig,), {"IMAGES_PER_GPU": 1})()
    return MaskRCNN("inference", plain, logs), MaskRCNN("inference", config, logs)


def test_default_inference_graph_is_the_keypoint_graph_without_the_head(inference_models):
    plain, keypoint = inference_models
    plain_layers = [layer.name for layer in plain.keras_model.layers]
    keypoint_layers = [layer.name for layer in keypoint.keras_model.layers]
    assert not [n for n in plain_layers if _is_keypoint_layer(n)]
    assert [n for n in keypoint_layers if not _is_keypoint_layer(n)] == plain_layers
    plain_weights, keypoint_weights = _weighted(plain), _weighted(keypoint)
    assert {n: s for n, s in keypoint_weights.items() if not _is_keypoint_layer(n)} == plain_weights
    assert sorted(n for n in keypoint_weights if _is_keypoint_layer(n)) == [
        "mrcnn_keypoint_conv1", "mrcnn_keypoint_conv2", "mrcnn_keypoint_deconv"]
    assert len(plain.keras_model.outputs) == 7 and len(keypoint.keras_model.outputs) == 8
    assert tuple(keypoint.keras_model.outputs[7].shape[1:]) == (10, 28, 28, 3)


def test_detect_returns_keypoints_inside_their_boxes(inference_models):
    _, model = inference_models
    # Random weights predict background: make class 1 win so that there are detections.
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 0, np.array([0.0, 10.0, 0.0, 0.0], np.float32)])
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    result = model.detect([image])[0]
    n = len(result["class_ids"])
    assert n > 0
    keypoints = result["keypoints"]
    assert keypoints.shape == (n, 3, 3) and keypoints.dtype == np.float32
    # Decoding by hand: the graph's heatmaps, the NumPy decoder, the window and scale.
    molded, metas, windows = model.mold_inputs([image])
    outputs = model.keras_model.predict([molded, metas], verbose=0)
    boxes = outputs[0][0, :n, :4] * [127, 127, 127, 127] + [0, 0, 1, 1]
    scale = float(metas[0, 11])
    expected = kp.unmold_keypoints(kp.heatmaps_to_keypoints(outputs[7][0, :n], boxes), windows[0], scale)
    np.testing.assert_allclose(keypoints, expected, atol=1e-3)
    rois = result["rois"]
    assert np.all(keypoints[..., 0] >= rois[:, None, 1] - 1.5)
    assert np.all(keypoints[..., 0] <= rois[:, None, 3] + 0.5)
    assert np.all((keypoints[..., 2] > 0) & (keypoints[..., 2] <= 1))


@pytest.mark.slow
def test_training_step_with_keypoints(tmp_path):
    from mrcnn.data import AnchorCache, build_batch, input_names
    from samples.keypoints import make_dataset

    dataset = make_dataset(2, seed=5)
    rng = np.random.default_rng(0)
    config = TinyKeypointConfig()
    arrays = build_batch(dataset, config, [0, 1], AnchorCache(config), rng,
                         augmentation=kp.HorizontalFlip(0.5))
    inputs = dict(zip(input_names(config), arrays))
    assert inputs["input_gt_keypoints"].shape == (2, config.MAX_GT_INSTANCES, 3, 3)
    count = int(np.sum(inputs["input_gt_class_ids"][0] > 0))
    assert np.all(inputs["input_gt_keypoints"][0, count:] == 0)
    assert np.all(inputs["input_gt_keypoints"][0, :count, :, 2] > 0)
    with pytest.raises(ValueError, match="only mrcnn.keypoints.HorizontalFlip"):
        build_batch(dataset, config, [0], AnchorCache(config), rng, augmentation=lambda **kw: kw)
    # Without the (untrained) RPN: random ROIs around the figures make positives, so the
    # keypoint loss has visible keypoints to learn from.
    roi_config = type("R", (TinyKeypointConfig,), {"USE_RPN_ROIS": False})()
    model = MaskRCNN("training", roi_config, str(tmp_path))
    arrays = build_batch(dataset, roi_config, [0, 1], AnchorCache(roi_config), rng,
                         random_rois=roi_config.POST_NMS_ROIS_TRAINING)
    assert [i.name for i in model.keras_model.inputs][-2:] == ["input_gt_keypoints", "input_roi"]
    model.compile(0.001, 0.9)
    logs = model.keras_model.train_on_batch(arrays, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["mrcnn_keypoint_loss"] > 0


def test_default_training_graph_is_the_keypoint_graph_without_the_head(tmp_path):
    plain = MaskRCNN("training", TinyConfig(), str(tmp_path))
    model = MaskRCNN("training", TinyKeypointConfig(), str(tmp_path))
    plain_names = [layer.name for layer in plain.keras_model.layers]
    names = [layer.name for layer in model.keras_model.layers]
    assert not [n for n in plain_names if _is_keypoint_layer(n)]
    # Same layers (the keypoint graph consumes input_image_meta earlier, so the order moves).
    assert sorted(n for n in names if not _is_keypoint_layer(n)) == sorted(plain_names)
    assert {n: w for n, w in _weighted(model).items() if not _is_keypoint_layer(n)} == _weighted(plain)
    assert sorted(plain.keras_model.output) == sorted(
        k for k in model.keras_model.output if "keypoint" not in k)


# ----------------------------------------------------------------------------- weights
def test_matterport_h5_loads_into_a_keypoint_model_with_the_head_at_init(tmp_path):
    from tests.h5_layout import layout_path_or_skip, parse_layout, write_reference_h5
    from tests.test_model_weights import CocoLikeConfig, model_weights

    layout = parse_layout(layout_path_or_skip())
    path = tmp_path / "mask_rcnn_coco_like.h5"
    values = write_reference_h5(str(path), layout, np.random.default_rng(9))
    config = type("K", (CocoLikeConfig,), {
        "KEYPOINT_NAMES": KEYPOINT_NAMES, "KEYPOINT_HEAD_CONVS": 2, "KEYPOINT_HEAD_FILTERS": 32})()
    model = MaskRCNN("inference", config, str(tmp_path))
    before = {n: [np.asarray(v).copy() for _, _, v in ws] for n, ws in model_weights(model).items()}
    report = model.load_weights(str(path), by_name=True)
    assert report["missing_in_file"] == ["mrcnn_keypoint_conv1", "mrcnn_keypoint_conv2",
                                         "mrcnn_keypoint_deconv"]
    assert not report["skipped_in_file"]
    for name, weights in model_weights(model).items():
        for k, (_, _, variable) in enumerate(weights):
            expected = before[name][k] if _is_keypoint_layer(name) else values[name][k]
            np.testing.assert_array_equal(np.asarray(variable), expected)
