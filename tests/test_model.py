"""MaskRCNN inference: graph shapes, detect(), a hand-constructed model, weights, logs."""
import os
import warnings

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.model import MaskRCNN
from tests.conftest import TinyConfig


class InferConfig(TinyConfig):
    IMAGES_PER_GPU = 2
    DETECTION_MIN_CONFIDENCE = 0.5


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return MaskRCNN("inference", InferConfig(), str(tmp_path_factory.mktemp("logs")))


def test_inference_graph_outputs(model):
    config = model.config
    km = model.keras_model
    assert [t.name for t in km.inputs] == ["input_image", "input_image_meta"]
    images = np.zeros((2, 128, 128, 3), np.float32)
    metas = np.zeros((2, config.IMAGE_META_SIZE), np.float32)
    metas[:, 4:7] = [128, 128, 3]
    metas[:, 7:11] = [0, 0, 128, 128]
    outputs = [np.asarray(o) for o in km([images, metas], training=False)]
    detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rois, rpn_class, rpn_bbox = outputs
    n_anchors = sum(int(np.ceil(128 / s)) ** 2 for s in config.BACKBONE_STRIDES) * 3
    assert detections.shape == (2, config.DETECTION_MAX_INSTANCES, 6)
    assert mrcnn_class.shape == (2, config.POST_NMS_ROIS_INFERENCE, config.NUM_CLASSES)
    assert mrcnn_bbox.shape == (2, config.POST_NMS_ROIS_INFERENCE, config.NUM_CLASSES, 4)
    assert mrcnn_mask.shape == (2, config.DETECTION_MAX_INSTANCES, 14, 14, config.NUM_CLASSES)
    assert rois.shape == (2, config.POST_NMS_ROIS_INFERENCE, 4)
    assert rpn_class.shape == (2, n_anchors, 2)
    assert rpn_bbox.shape == (2, n_anchors, 4)
    for array in outputs:
        assert array.dtype == np.float32
    np.testing.assert_allclose(mrcnn_class.sum(-1), 1.0, atol=1e-4)
    assert rois.min() >= 0.0 and rois.max() <= 1.0


def test_detect_any_number_of_images_and_conversions(model, rng):
    rgb = rng.integers(0, 255, (100, 140, 3), dtype=np.uint8)
    gray = rng.integers(0, 255, (90, 60), dtype=np.uint8)
    rgba = rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)
    with pytest.warns(UserWarning, match="grayscale"):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            results = model.detect([rgb, gray, rgba])
    assert len(results) == 3  # two batches of BATCH_SIZE=2, the last one padded
    for result, image in zip(results, [rgb, gray, rgba]):
        n = len(result["class_ids"])
        assert result["rois"].shape == (n, 4) and result["rois"].dtype == np.int32
        assert result["scores"].shape == (n,)
        assert result["masks"].shape == image.shape[:2] + (n,)
        assert result["masks"].dtype == bool


def test_detect_rejects_bad_images(model):
    with pytest.raises(ValueError, match="shape"):
        model.detect([np.zeros((10, 10, 5), np.uint8)])
    with pytest.raises(ValueError, match="non-empty list"):
        model.detect([])


def test_mode_and_config_errors(tmp_path):
    with pytest.raises(ValueError, match="mode.*'predict'"):
        MaskRCNN("predict", InferConfig(), str(tmp_path))
    bad = InferConfig()
    bad.NUM_CLASSES = 1
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        MaskRCNN("inference", bad, str(tmp_path))


def _set_hand_weights(km, fg_class):
    """Zero every weight; biases make ratio-1 anchors the only confident proposals,
    class ``fg_class`` score 0.9, zero box deltas, and masks 1 everywhere for fg_class."""
    for layer in km.layers:
        inner = getattr(layer, "layers", None) or [layer]
        for sub in inner:
            values = []
            for w in sub.weights:
                v = np.zeros(w.shape, w.dtype)
                if "moving_variance" in w.path or w.path.endswith("gamma"):
                    v[:] = 1.0
                values.append(v)
            if values:
                sub.set_weights(values)
    rpn = km.get_layer("rpn_model")
    cls_raw = rpn.get_layer("rpn_class_raw")
    kernel, bias = cls_raw.get_weights()
    # channels are (anchor, [bg, fg]) for the 3 ratios [0.5, 1, 2]: only ratio 1 is foreground.
    bias[:] = np.array([5, -5, -5, 5, 5, -5], np.float32)
    cls_raw.set_weights([kernel, bias])
    logits = km.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    k = len(bias)
    # softmax gives fg_class probability 0.9 and the rest share 0.1 equally.
    bias[:] = np.log(0.1 / (k - 1))
    bias[fg_class] = np.log(0.9)
    logits.set_weights([kernel, bias])
    mask = km.get_layer("mrcnn_mask")
    kernel, bias = mask.get_weights()
    bias[:] = -10.0
    bias[fg_class] = 10.0
    mask.set_weights([kernel, bias])


def test_hand_constructed_model_detects_square_anchors(tmp_path):
    model = MaskRCNN("inference", InferConfig(), str(tmp_path))
    _set_hand_weights(model.keras_model, fg_class=2)
    image = np.full((128, 128, 3), 120, np.uint8)
    result = model.detect([image])[0]
    n = len(result["class_ids"])
    assert n > 0
    np.testing.assert_array_equal(result["class_ids"], np.full(n, 2))
    np.testing.assert_allclose(result["scores"], 0.9, atol=1e-5)
    boxes = result["rois"]
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # Only ratio-1 anchors are proposals and the deltas are zero: detections are square
    # anchors (clipped at the image border) of the configured scales.
    anchors = utils.generate_pyramid_anchors(
        model.config.RPN_ANCHOR_SCALES, [1], utils.compute_backbone_shapes(model.config, (128, 128)),
        model.config.BACKBONE_STRIDES, 1)
    clipped = np.clip(anchors, 0, 127)
    expected = {tuple(np.round(b).astype(int)) for b in clipped}
    for box in boxes:
        y1, x1, y2, x2 = box
        assert any(abs(y1 - e[0]) <= 1 and abs(x1 - e[1]) <= 1 and abs(y2 - e[2]) <= 1
                   and abs(x2 - e[3]) <= 1 for e in expected), box
    assert np.all(heights > 0) and np.all(widths > 0)
    # Per-class NMS at 0.3: no two detections overlap more, in the normalized frame where NMS
    # runs (all scores tie at 0.9; in pixels, with exclusive y2/x2, a kept pair can reach 1/3).
    det = model.run_graph([image], ["mrcnn_detection"])["mrcnn_detection"][0]
    normalized = det[det[:, 5] > 0, :4].astype(np.float64)
    assert len(normalized) == n
    overlaps = utils.compute_overlaps(normalized, normalized)
    np.fill_diagonal(overlaps, 0)
    assert overlaps.max() <= model.config.DETECTION_NMS_THRESHOLD + 1e-6
    # Mask logits +10 for the class: each mask fills its box exactly.
    for i in range(n):
        y1, x1, y2, x2 = boxes[i]
        m = result["masks"][..., i]
        assert m[y1:y2, x1:x2].all()
        assert m.sum() == (y2 - y1) * (x2 - x1)


def test_run_graph_named_outputs(model, rng):
    image = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    out = model.run_graph([image, image], [("proposals", "ROI"), "rpn_class",
                                           ("det", "mrcnn_detection"), "res4f_out"])
    assert list(out) == ["proposals", "rpn_class", "det", "res4f_out"]
    assert out["proposals"].shape == (2, model.config.POST_NMS_ROIS_INFERENCE, 4)
    assert out["det"].shape == (2, model.config.DETECTION_MAX_INSTANCES, 6)
    assert out["res4f_out"].shape == (2, 8, 8, 1024)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.run_graph([image], ["nope"])


def test_weight_round_trip_gives_identical_detections(model, tmp_path, rng):
    path = str(tmp_path / "weights.h5")
    _set_hand_weights(model.keras_model, fg_class=3)
    model.save_weights(path)
    image = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    before = model.detect([image])[0]
    fresh = MaskRCNN("inference", InferConfig(), str(tmp_path))
    fresh.load_weights(path)
    after = fresh.detect([image])[0]
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(before[key], after[key])
    for a, b in zip(model.keras_model.weights, fresh.keras_model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_log_dir_and_find_last(tmp_path):
    model = MaskRCNN("inference", InferConfig(), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tiny"):
        model.find_last()
    run = tmp_path / "tiny20250102T0304"
    run.mkdir()
    for epoch in (1, 2, 3):
        (run / f"mask_rcnn_tiny_{epoch:04d}.h5").write_bytes(b"")
    (run / "mask_rcnn_tiny_best.h5").write_bytes(b"")  # kept by MeanAPCallback, not a resume point
    last = model.find_last()
    assert last == str(run / "mask_rcnn_tiny_0003.h5")
    model.set_log_dir(last)
    assert model.epoch == 3
    assert model.log_dir == str(run)
    assert model.checkpoint_path.format(epoch=4) == str(run / "mask_rcnn_tiny_0004.h5")
    model.set_log_dir()
    assert model.epoch == 0 and os.path.basename(model.log_dir).startswith("tiny")


def test_narrow_rpn_and_mask_head_options(tmp_path):
    config = type("Narrow", (InferConfig,), {"RPN_CONV_FILTERS": 64, "MASK_HEAD_FILTERS": 32})()
    km = MaskRCNN("inference", config, str(tmp_path)).keras_model
    rpn = km.get_layer("rpn_model")
    assert tuple(rpn.get_layer("rpn_conv_shared").weights[0].shape) == (3, 3, 32, 64)
    assert tuple(rpn.get_layer("rpn_class_raw").weights[0].shape) == (1, 1, 64, 6)
    assert tuple(km.get_layer("mrcnn_mask_conv1").weights[0].shape) == (3, 3, 32, 32)
    assert tuple(km.get_layer("mrcnn_mask_deconv").weights[0].shape) == (2, 2, 32, 32)
    assert tuple(km.get_layer("mrcnn_mask").weights[0].shape) == (1, 1, 32, config.NUM_CLASSES)


def test_gpu_count_beyond_visible_devices_is_refused(tmp_path):
    config = type("TwoGPUs", (InferConfig,), {"GPU_COUNT": 2, "IMAGES_PER_GPU": 1})()
    assert config.BATCH_SIZE == 2
    with pytest.raises(ValueError, match="GPU_COUNT=2 but 0 GPU"):
        MaskRCNN("inference", config, str(tmp_path))


def test_find_last_checkpoint_without_tensorflow_rules(tmp_path):
    from mrcnn.checkpoints import epoch_checkpoints, find_last_checkpoint

    assert find_last_checkpoint(str(tmp_path / "missing"), "tiny") is None
    old, new = tmp_path / "tiny20250101T0000", tmp_path / "tiny20250202T0000"
    old.mkdir()
    new.mkdir()
    (old / "mask_rcnn_tiny_0004.h5").write_bytes(b"")
    # The newest run died before its first epoch: fall back to the older one.
    (new / "mask_rcnn_tiny_best.h5").write_bytes(b"")
    (new / "detections.png").write_bytes(b"")
    assert epoch_checkpoints(str(new)) == []
    assert find_last_checkpoint(str(tmp_path), "TINY") == str(old / "mask_rcnn_tiny_0004.h5")


def test_detect_molded_matches_detect(tmp_path, rng):
    model = MaskRCNN("inference", InferConfig(), str(tmp_path))
    _set_hand_weights(model.keras_model, fg_class=1)
    images = [np.full((96, 128, 3), 90, np.uint8), np.full((128, 64, 3), 150, np.uint8),
              np.full((100, 100, 3), 30, np.uint8)]
    molded, metas, _ = model.mold_inputs(images)
    expected = model.detect(images)
    got = model.detect_molded(molded, metas)
    assert len(got) == 3
    for a, b, image in zip(expected, got, images):
        assert b["masks"].shape[:2] == image.shape[:2]
        for key in ("rois", "class_ids", "scores", "masks"):
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="molded_images"):
        model.detect_molded(molded[:2], metas)


def test_mask_head_runs_on_real_detections_and_matches_all_slots(model, rng, tmp_path):
    """Masks of the real detections equal the mask head run on every detection slot."""
    images = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    molded, metas, _ = model.mold_inputs(images)
    # More detection slots than ROIs, and a background logit pushed down so that every ROI
    # is a detection: some slots are real, the rest padding.

    class Roomy(InferConfig):
        DETECTION_MAX_INSTANCES = InferConfig.POST_NMS_ROIS_INFERENCE + 8
        DETECTION_MIN_CONFIDENCE = 0.0

    roomy = MaskRCNN("inference", Roomy(), str(tmp_path))
    roomy.keras_model.set_weights(model.keras_model.get_weights())
    logits = roomy.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    bias[0] = -20.0
    logits.set_weights([kernel, bias])
    km = roomy.keras_model
    detections, _, _, masks, _, _, _ = [np.asarray(o) for o in km([molded, metas], training=False)]
    counts = (detections[..., 4] > 0).sum(axis=1)
    n = int(counts.max())
    assert 0 < n < detections.shape[1], counts
    assert not masks[:, n:].any()
    boxes = roomy.run_graph(molded, ["mrcnn_detection_boxes"], image_metas=metas)["mrcnn_detection_boxes"]
    assert boxes.shape == (2, n, 4)

    # The same head, layer by layer, on all DETECTION_MAX_INSTANCES boxes.
    feats = roomy.run_graph(molded, ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"], image_metas=metas)
    x = km.get_layer("roi_align_mask")([detections[..., :4], metas] + list(feats.values()))
    slots = detections.shape[1]
    x = np.reshape(np.asarray(x), (2 * slots,) + tuple(x.shape[2:]))
    for i in range(1, 5):
        x = km.get_layer(f"mrcnn_mask_conv{i}")(x)
        x = km.get_layer(f"mrcnn_mask_bn{i}")(x, training=False)
        x = km.get_layer(f"mrcnn_mask_relu{i}")(x)
    x = km.get_layer("mrcnn_mask")(km.get_layer("mrcnn_mask_deconv")(x))
    full = np.reshape(np.asarray(x), (2, slots) + tuple(x.shape[1:]))
    for image in range(2):
        real = int(counts[image])
        np.testing.assert_allclose(masks[image, :real], full[image, :real], rtol=0, atol=1e-5)
