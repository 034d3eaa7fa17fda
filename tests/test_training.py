"""train(): loss accounting across stages, checkpoints, resumption, NaN guard, convergence."""
import math
import os

import numpy as np
import pytest

from mrcnn.config import LOSS_NAMES
from mrcnn.model import MaskRCNN
from tests.conftest import TinyConfig
from tests.synthetic import BlobDataset


class TrainConfig(TinyConfig):
    NUM_CLASSES = 3
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    LOSS_WEIGHTS = {"rpn_class_loss": 1.0, "rpn_bbox_loss": 0.5, "mrcnn_class_loss": 2.0,
                    "mrcnn_bbox_loss": 1.0, "mrcnn_mask_loss": 3.0}


def _check_total(history, config, prefix=""):
    """loss == sum_i w_i * L_i + weight_decay, epoch by epoch."""
    logs = history.history
    for epoch in range(len(logs[prefix + "loss"])):
        expected = sum(config.LOSS_WEIGHTS[name] * logs[prefix + name][epoch] for name in LOSS_NAMES)
        expected += logs[prefix + "weight_decay"][epoch]
        assert math.isclose(logs[prefix + "loss"][epoch], expected, rel_tol=1e-4, abs_tol=1e-5), \
            (epoch, logs)


def test_two_stages_no_double_counting_then_resume(tmp_path):
    config = TrainConfig()
    dataset = BlobDataset(count=4, empty_every=4)
    model = MaskRCNN("training", config, str(tmp_path))
    first = model.train(dataset, dataset, learning_rate=0.01, epochs=1, layers="heads", verbose=0)
    assert first.epoch == [0]
    _check_total(first, config)
    # Heads only: the backbone's kernels carry no trainable weight decay.
    heads_decay = first.history["weight_decay"][0]

    second = model.train(dataset, dataset, learning_rate=0.001, epochs=2, layers="all", verbose=0)
    assert second.epoch == [1]
    _check_total(second, config)
    _check_total(second, config, prefix="val_")
    assert second.history["weight_decay"][0] > heads_decay  # the backbone now counts
    assert model.epoch == 2
    log_dir = model.log_dir
    assert sorted(f for f in os.listdir(log_dir) if f.endswith(".h5")) == [
        "mask_rcnn_tiny_0001.h5", "mask_rcnn_tiny_0002.h5"]

    # A fresh process-like start: find the last checkpoint and continue at epoch 3.
    resumed = MaskRCNN("training", TrainConfig(), str(tmp_path))
    last = resumed.find_last()
    assert last == os.path.join(log_dir, "mask_rcnn_tiny_0002.h5")
    resumed.load_weights(last, by_name=True)
    assert resumed.epoch == 2 and resumed.log_dir == log_dir
    third = resumed.train(dataset, None, learning_rate=0.001, epochs=3, layers="all", verbose=0)
    assert third.epoch == [2]
    assert os.path.isfile(os.path.join(log_dir, "mask_rcnn_tiny_0003.h5"))
    # Asking for an epoch already reached trains nothing.
    assert resumed.train(dataset, None, learning_rate=0.001, epochs=3, layers="all") is None


def test_nan_loss_stops_training_and_keeps_last_checkpoint(tmp_path):
    config = TrainConfig()
    config.VALIDATION_STEPS = 0
    dataset = BlobDataset(count=2)
    model = MaskRCNN("training", config, str(tmp_path))
    model.train(dataset, None, learning_rate=0.001, epochs=1, layers="heads", verbose=0)
    good = os.path.join(model.log_dir, "mask_rcnn_tiny_0001.h5")
    assert os.path.isfile(good)
    size = os.path.getsize(good)
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.full_like(kernel, np.nan), bias])
    with pytest.raises(FloatingPointError, match=r"mrcnn_class_loss.*image ids \[\d"):
        model.train(dataset, None, learning_rate=0.001, epochs=2, layers="heads", verbose=0)
    assert not os.path.exists(os.path.join(model.log_dir, "mask_rcnn_tiny_0002.h5"))
    assert os.path.getsize(good) == size


def test_train_input_errors(tmp_path):
    model = MaskRCNN("training", TrainConfig(), str(tmp_path))
    dataset = BlobDataset(count=2)
    with pytest.raises(ValueError, match="layers.*'\\('"):
        model.train(dataset, None, 0.001, 1, layers="(")
    with pytest.raises(ValueError, match="epochs.*0"):
        model.train(dataset, None, 0.001, 0, layers="heads")
    inference = MaskRCNN("inference", TrainConfig(), str(tmp_path))
    with pytest.raises(ValueError, match="mode='training'"):
        inference.train(dataset, None, 0.001, 1, layers="heads")


@pytest.mark.slow
def test_small_model_learns_shapes(tmp_path):
    """Every loss falls (the total at least 3x from the first batch) and the trained weights
    then find and segment the objects. Uses the shapes sample's compact model."""
    import keras

    from mrcnn import utils
    from samples.shapes import ShapesConfig, lr_schedule_callback, make_dataset

    class LearnConfig(ShapesConfig):
        STEPS_PER_EPOCH = 50
        VALIDATION_STEPS = 0

    class FirstBatch(keras.callbacks.Callback):
        first = None

        def on_train_batch_end(self, batch, logs=None):
            if FirstBatch.first is None:
                FirstBatch.first = dict(logs)

    keras.utils.set_random_seed(0)
    config = LearnConfig()
    dataset = make_dataset(400, seed=1)
    model = MaskRCNN("training", config, str(tmp_path))
    total = 4 * config.STEPS_PER_EPOCH
    history = model.train(dataset, None, learning_rate=config.LEARNING_RATE, epochs=4, layers="all",
                          custom_callbacks=[FirstBatch(), lr_schedule_callback(
                              config.LEARNING_RATE, total, warmup_steps=20, first_step=0)],
                          verbose=0)
    logs = history.history
    assert logs["loss"][-1] < FirstBatch.first["loss"] / 3, (FirstBatch.first, logs["loss"])
    for name in LOSS_NAMES:
        assert logs[name][-1] < logs[name][0], (name, logs[name])

    inference = MaskRCNN("inference", config, str(tmp_path))
    inference.load_weights(model.find_last())
    found = 0
    for image_id in dataset.image_ids[:4]:
        result = inference.detect([dataset.load_image(image_id)])[0]
        gt_masks, gt_ids = dataset.load_mask(image_id)
        if len(result["class_ids"]):
            overlaps = utils.compute_overlaps_masks(result["masks"], gt_masks)
            found += int(np.sum(overlaps.max(axis=0) > 0.5))
    assert found >= 4, found


def test_positives_fit_in_the_mask_head_rows(tmp_path):
    """The mask head runs on the first int(T * ratio) ROIs: no positive may sit beyond them."""
    from mrcnn.data import AnchorCache, build_batch

    config = TrainConfig()
    config.USE_RPN_ROIS = False  # feed proposals that hit the objects
    dataset = BlobDataset(count=2, max_objects=3)
    model = MaskRCNN("training", config, str(tmp_path))
    arrays = build_batch(dataset, config, list(dataset.image_ids), AnchorCache(config),
                         np.random.default_rng(0))
    gt_boxes = arrays[5]  # [B, MAX_GT, 4] pixels, zero padded
    proposals = np.zeros((2, config.POST_NMS_ROIS_TRAINING, 4), np.float32)
    proposals[:, :config.MAX_GT_INSTANCES] = gt_boxes
    proposals[:, config.MAX_GT_INSTANCES:2 * config.MAX_GT_INSTANCES] = gt_boxes + 1
    outputs = model.keras_model(arrays + [proposals], training=False)
    count = max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))
    ids = np.asarray(outputs["target_class_ids"])
    assert ids.shape == (2, config.TRAIN_ROIS_PER_IMAGE)
    assert np.all((ids[:, :count] > 0).sum(axis=1) >= 2)
    assert not np.any(ids[:, count:] > 0)
    np.testing.assert_array_equal(np.asarray(outputs["mask_class_ids"]), ids[:, :count])
    assert np.asarray(outputs["mrcnn_mask"]).shape == (2, count, 14, 14, config.NUM_CLASSES)
    assert np.asarray(outputs["target_mask"]).shape == (2, count, 14, 14)
