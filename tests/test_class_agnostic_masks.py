"""Config.CLASS_AGNOSTIC_MASKS: one mask channel per ROI in the head, the loss and detect()."""
import math

import numpy as np
import pytest

from mrcnn import losses
from mrcnn.model import MaskRCNN
from tests.conftest import TinyConfig


class AgnosticConfig(TinyConfig):
    CLASS_AGNOSTIC_MASKS = True
    IMAGES_PER_GPU = 1


def test_config_default_and_validation():
    assert TinyConfig().CLASS_AGNOSTIC_MASKS is False
    assert AgnosticConfig().to_dict()["CLASS_AGNOSTIC_MASKS"] is True

    class Bad(TinyConfig):
        CLASS_AGNOSTIC_MASKS = 1

    with pytest.raises(ValueError, match="CLASS_AGNOSTIC_MASKS must be True or False, got 1"):
        Bad()


def test_mask_loss_uses_the_one_channel_for_every_class(rng):
    target_ids = np.array([[2, 1, 0, 3]], np.int32)
    target = (rng.random((1, 4, 3, 3)) > 0.5).astype(np.float32)
    agnostic = rng.uniform(0.05, 0.95, (1, 4, 3, 3, 1)).astype(np.float32)
    per_class = np.full((1, 4, 3, 3, 4), 0.5, np.float32)
    for roi, class_id in enumerate(target_ids[0]):
        per_class[0, roi, :, :, class_id] = agnostic[0, roi, :, :, 0]
    got = float(losses.mrcnn_mask_loss(target, target_ids, agnostic))
    np.testing.assert_allclose(got, float(losses.mrcnn_mask_loss(target, target_ids, per_class)),
                               rtol=1e-6)
    p, t = agnostic[0, :2].astype(np.float64), target[0, :2]
    p = np.concatenate([p[..., 0], agnostic[0, 3:, :, :, 0]])   # the positive ROIs 0, 1, 3
    t = np.concatenate([t, target[0, 3:]])
    expected = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert math.isfinite(got)


def test_unmold_detections_takes_channel_zero():
    detections = np.zeros((3, 6), np.float32)
    detections[0] = [0.0, 0.0, 0.5, 0.5, 3, 0.9]
    detections[1] = [0.5, 0.5, 1.0, 1.0, 2, 0.8]
    masks = np.zeros((3, 4, 4, 1), np.float32)
    masks[0, :2, :, 0] = 1.0                      # top half of the first box
    masks[1, :, :, 0] = 1.0
    boxes, class_ids, scores, full = MaskRCNN.unmold_detections(
        None, detections, masks, (8, 8, 3), (8, 8, 3), (0, 0, 8, 8))
    np.testing.assert_array_equal(class_ids, [3, 2])
    expected = np.zeros((8, 8, 2), bool)
    expected[0:2, 0:4, 0] = True
    expected[4:8, 4:8, 1] = True
    np.testing.assert_array_equal(full, expected)


@pytest.mark.parametrize("agnostic, channels", [(False, TinyConfig.NUM_CLASSES), (True, 1)])
def test_mask_head_output_channels(agnostic, channels):
    import keras

    from mrcnn.graph import mask_head

    config = AgnosticConfig() if agnostic else TinyConfig()
    depth = config.TOP_DOWN_PYRAMID_SIZE
    maps = [keras.Input((128 // s, 128 // s, depth), batch_size=1) for s in (4, 8, 16, 32)]
    rois = keras.Input((None, 4), batch_size=1)
    meta = keras.Input((config.IMAGE_META_SIZE,), batch_size=1)
    masks = mask_head(rois, meta, maps, config)
    assert tuple(masks.shape[2:]) == (14, 14, channels)


@pytest.mark.slow
def test_graphs_have_one_mask_channel(tmp_path, rng):
    inference = MaskRCNN("inference", AgnosticConfig(), str(tmp_path))
    kernel = inference.keras_model.get_layer("mrcnn_mask").get_weights()[0]
    assert kernel.shape == (1, 1, AgnosticConfig.MASK_HEAD_FILTERS, 1)
    image = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    result = inference.detect([image])[0]
    assert result["masks"].shape[:2] == (100, 120)
    assert result["masks"].shape[-1] == len(result["class_ids"])
    training = MaskRCNN("training", AgnosticConfig(), str(tmp_path))
    assert training.keras_model.get_layer("mrcnn_mask").output.shape[-1] == 1
