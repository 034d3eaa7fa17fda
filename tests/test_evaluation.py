"""mrcnn.evaluation: per-image mask mAP of a model, weight copying, and the mAP callback."""
import os
import types

import h5py
import keras
import numpy as np
import pytest

from mrcnn import evaluation, utils
from mrcnn.dataset import Dataset
from mrcnn.evaluation import (MAP50_LOG_KEY, MAP_LOG_KEY, MeanAPCallback, copy_weights_by_name,
                              evaluate_dataset)
from tests.synthetic import BlobDataset


class FakeModel:
    """detect() answers from a function of the image index; records the batch sizes."""

    def __init__(self, dataset, answer, batch_size=2, resize_mode="square"):
        self.config = types.SimpleNamespace(BATCH_SIZE=batch_size, IMAGE_RESIZE_MODE=resize_mode)
        self.dataset = dataset
        self.answer = answer
        self.batches = []

    def detect(self, images, verbose=0):
        self.batches.append(len(images))
        out = []
        for image in images:
            # Find which dataset image this is (images are distinct in BlobDataset).
            image_id = next(i for i in self.dataset.image_ids
                            if np.array_equal(self.dataset.load_image(i), image))
            out.append(self.answer(image_id, image))
        return out


def _ground_truth_answer(dataset):
    def answer(image_id, image):
        masks, class_ids = dataset.load_mask(image_id)
        keep = class_ids > 0
        masks, class_ids = masks[..., keep], class_ids[keep]
        return {"rois": utils.extract_bboxes(masks), "class_ids": class_ids,
                "scores": np.ones(len(class_ids), np.float32), "masks": masks}
    return answer


def _nothing(image_id, image):
    return {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros((0,), np.int32),
            "scores": np.zeros((0,), np.float32),
            "masks": np.zeros(image.shape[:2] + (0,), bool)}


def test_perfect_model_scores_one_and_skips_images_without_objects():
    dataset = BlobDataset(count=7, empty_every=4, seed=5)   # image 3 has no object
    model = FakeModel(dataset, _ground_truth_answer(dataset), batch_size=3)
    result = evaluate_dataset(model, dataset)
    assert result["mAP50"] == 1.0
    assert result["mAP"] == 1.0
    assert result["images"] == 6
    assert result["skipped"] == [3]
    assert [p["image_id"] for p in result["per_image"]] == [0, 1, 2, 4, 5, 6]
    # Batches of BATCH_SIZE images; image 3 (no ground truth) is not sent to detect.
    assert model.batches == [3, 2, 1]


def test_empty_predictions_score_zero_and_limit():
    dataset = BlobDataset(count=5, seed=2)
    result = evaluate_dataset(FakeModel(dataset, _nothing), dataset, limit=3)
    assert result["mAP50"] == 0.0 and result["mAP"] == 0.0
    assert result["images"] == 3
    assert all(p["detections"] == 0 for p in result["per_image"])


class _TwoSquares(Dataset):
    """One 40x40 image with two squares of class 1 and one crowd region (class -1)."""

    def __init__(self):
        super().__init__()
        self.add_class("t", 1, "square")
        self.add_image("t", image_id=0, path=None)
        self.prepare()

    def load_image(self, image_id):
        return np.zeros((40, 40, 3), np.uint8)

    def load_mask(self, image_id):
        masks = np.zeros((40, 40, 3), bool)
        masks[2:12, 2:12, 0] = True
        masks[20:30, 20:30, 1] = True
        masks[30:40, 0:10, 2] = True
        return masks, np.array([1, 1, -1], np.int32)


def test_hand_computed_ap_with_a_false_positive_and_crowd_excluded():
    dataset = _TwoSquares()

    def answer(image_id, image):
        masks = np.zeros((40, 40, 2), bool)
        masks[2:12, 2:12, 0] = True          # matches gt 0 exactly (score 0.5)
        masks[30:40, 0:10, 1] = True         # covers the crowd only: a false positive (0.9)
        return {"rois": utils.extract_bboxes(masks), "class_ids": np.array([1, 1]),
                "scores": np.array([0.5, 0.9]), "masks": masks}

    result = evaluate_dataset(FakeModel(dataset, answer), dataset)
    # By score: FP (precision 0), then TP (precision 1/2, recall 1/2); the second gt is
    # missed. Interpolated precision at recall 0.5 is 0.5 -> AP = 0.5 * 0.5.
    assert result["mAP50"] == pytest.approx(0.25)
    assert result["mAP"] == pytest.approx(0.25)          # the TP is exact at every IoU
    assert result["per_image"][0]["gt"] == 2              # the crowd is not ground truth


def test_shifted_mask_counts_only_at_low_iou():
    dataset = _TwoSquares()

    def answer(image_id, image):
        masks = np.zeros((40, 40, 2), bool)
        masks[2:12, 2:12, 0] = True
        masks[20:30, 22:32, 1] = True        # IoU 80 / 120 = 0.667 with gt 1
        return {"rois": utils.extract_bboxes(masks), "class_ids": np.array([1, 1]),
                "scores": np.array([0.9, 0.8]), "masks": masks}

    result = evaluate_dataset(FakeModel(dataset, answer), dataset)
    assert result["mAP50"] == pytest.approx(1.0)
    # Thresholds 0.50, 0.55, 0.60, 0.65 see two hits (AP 1); 0.70..0.95 one hit (AP 0.5).
    assert result["mAP"] == pytest.approx((4 * 1.0 + 6 * 0.5) / 10)


def test_evaluate_dataset_input_errors():
    dataset = BlobDataset(count=2)
    model = FakeModel(dataset, _nothing)
    with pytest.raises(ValueError, match=r"image_ids \[7\]"):
        evaluate_dataset(model, dataset, image_ids=[0, 7])
    with pytest.raises(ValueError, match="limit.*0"):
        evaluate_dataset(model, dataset, limit=0)
    with pytest.raises(TypeError, match="detect"):
        evaluate_dataset(object(), dataset)
    bad = FakeModel(dataset, lambda i, image: {"rois": np.zeros((1, 4))})
    with pytest.raises(ValueError, match=r"lacks \['class_ids', 'scores', 'masks'\]"):
        evaluate_dataset(bad, dataset)


# ----------------------------------------------------------------------------- weights copy
def _small_model(seed, extra=False):
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="mrcnn_a")(inputs)
    x = keras.layers.Dense(2, name="rpn_b")(x)
    if extra:
        x = keras.layers.Dense(2, name="only_here")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])
    return model


def test_copy_weights_by_name():
    source, target = _small_model(0, extra=True), _small_model(1)
    names = copy_weights_by_name(source, target)
    assert names == ["mrcnn_a", "rpn_b"]
    for name in names:
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="lacks the weighted layers \\['only_here'\\]"):
        copy_weights_by_name(_small_model(2), _small_model(3, extra=True))


# ----------------------------------------------------------------------------- callback
def test_callback_logs_and_keeps_best_checkpoint(tmp_path):
    dataset = BlobDataset(count=4)
    train_keras = _small_model(0)
    inference = types.SimpleNamespace(keras_model=_small_model(1))
    owner = types.SimpleNamespace(config=types.SimpleNamespace(NAME="Blobs"),
                                  log_dir=str(tmp_path / "blobs20240101T0000"),
                                  model_dir=str(tmp_path))
    scores = iter([0.2, 0.5, 0.4])
    calls = []

    def fake_evaluate(model, ds, image_ids=None, limit=None):
        calls.append((model, list(image_ids)))
        # The inference weights are the training weights of this epoch.
        np.testing.assert_array_equal(model.keras_model.get_layer("mrcnn_a").get_weights()[1],
                                      train_keras.get_layer("mrcnn_a").get_weights()[1])
        value = next(scores)
        return {"mAP": value, "mAP50": value + 0.1, "images": len(image_ids)}

    callback = MeanAPCallback(owner, dataset, limit=2, keep_best=True, inference_model=inference,
                              evaluate_fn=fake_evaluate, verbose=0)
    callback.set_model(train_keras)
    callback.set_params({"epochs": 3})
    callback.on_train_begin()
    best = os.path.join(owner.log_dir, "mask_rcnn_blobs_best.h5")
    for epoch in range(3):
        layer = train_keras.get_layer("mrcnn_a")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.full_like(bias, epoch + 1)])   # mark the epoch
        logs = {"loss": 1.0}
        callback.on_epoch_end(epoch, logs)
        assert logs[MAP_LOG_KEY] == [0.2, 0.5, 0.4][epoch]
        assert logs[MAP50_LOG_KEY] == pytest.approx([0.3, 0.6, 0.5][epoch])
        with h5py.File(best, "r") as f:
            saved_bias = f["mrcnn_a/mrcnn_a/bias:0"][()]
        # Best after epochs 1 and 2; epoch 3 (0.4 < 0.5) leaves the epoch-2 weights.
        np.testing.assert_array_equal(saved_bias, np.full(4, min(epoch + 1, 2)))
    assert [c[1] for c in calls] == [[0, 1]] * 3
    assert callback.best == 0.5 and callback.best_path == best
    assert callback.history == [(1, 0.2, pytest.approx(0.3)), (2, 0.5, pytest.approx(0.6)),
                                (3, 0.4, pytest.approx(0.5))]
    assert sorted(os.listdir(owner.log_dir)) == ["mask_rcnn_blobs_best.h5"]   # no temp files


def test_callback_every_and_last_epoch(tmp_path):
    dataset = BlobDataset(count=2)
    owner = types.SimpleNamespace(config=types.SimpleNamespace(NAME="x"), log_dir=str(tmp_path),
                                  model_dir=str(tmp_path))
    seen = []

    def fake_evaluate(model, ds, image_ids=None, limit=None):
        return {"mAP": 0.0, "mAP50": 0.0}

    callback = MeanAPCallback(owner, dataset, every=2, inference_model=types.SimpleNamespace(),
                              evaluate_fn=fake_evaluate)
    callback.set_params({"epochs": 5})
    callback.on_train_begin()
    for epoch in range(5):
        logs = {}
        callback.on_epoch_end(epoch, logs)
        seen.append(MAP_LOG_KEY in logs)
    assert seen == [False, True, False, True, True]        # epochs 2, 4 and the last one
    assert not os.listdir(tmp_path)                        # keep_best off: nothing saved
    with pytest.raises(ValueError, match="monitor.*'val_loss'"):
        MeanAPCallback(owner, dataset, monitor="val_loss")
    with pytest.raises(ValueError, match="every.*0"):
        MeanAPCallback(owner, dataset, every=0)


@pytest.mark.slow
def test_callback_inside_train_with_a_real_model(tmp_path):
    """One epoch of a tiny model: History gets val_mask_mAP and the best file is written."""
    from mrcnn.model import MaskRCNN
    from tests.test_training import TrainConfig

    config = TrainConfig()
    config.VALIDATION_STEPS = 0
    dataset = BlobDataset(count=2)
    model = MaskRCNN("training", config, str(tmp_path))
    callback = MeanAPCallback(model, dataset, limit=2, keep_best=True, verbose=0)
    history = model.train(dataset, None, learning_rate=0.001, epochs=1, layers="heads",
                          custom_callbacks=[callback], verbose=0)
    assert len(history.history[MAP_LOG_KEY]) == 1
    assert 0.0 <= history.history[MAP_LOG_KEY][0] <= 1.0
    assert os.path.isfile(os.path.join(model.log_dir, "mask_rcnn_tiny_best.h5"))
    # The inference copy holds the trained weights.
    name = "mrcnn_class_logits"
    np.testing.assert_array_equal(
        callback.inference_model.keras_model.get_layer(name).get_weights()[0],
        model.keras_model.get_layer(name).get_weights()[0])


# ----------------------------------------------------------------------------- DSB2018 metric
def _boxes_to_masks(shape, *boxes):
    """[H, W, N] bool masks, one filled (y1, x1, y2, x2) box each (exclusive ends)."""
    masks = np.zeros(tuple(shape) + (len(boxes),), dtype=bool)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, k] = True
    return masks


DSB_GT = _boxes_to_masks((40, 40), (0, 0, 10, 10), (0, 20, 10, 30), (20, 0, 30, 10),
                         (20, 20, 30, 30))


def test_dsb2018_thresholds_are_half_to_095():
    assert evaluation.DSB2018_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
                                             0.95)


def test_dsb2018_perfect():
    counts = evaluation.dsb2018_counts(DSB_GT, DSB_GT[..., ::-1])
    np.testing.assert_array_equal(counts, [[4, 0, 0]] * 10)
    assert evaluation.dsb2018_score(DSB_GT, DSB_GT) == 1.0


def test_dsb2018_one_miss():
    counts = evaluation.dsb2018_counts(DSB_GT, DSB_GT[..., :3])
    np.testing.assert_array_equal(counts, [[3, 0, 1]] * 10)
    assert evaluation.dsb2018_score(DSB_GT, DSB_GT[..., :3]) == 0.75


def test_dsb2018_one_false_positive():
    pred = np.concatenate([DSB_GT, _boxes_to_masks((40, 40), (32, 32, 36, 36))], axis=-1)
    np.testing.assert_array_equal(evaluation.dsb2018_counts(DSB_GT, pred), [[4, 1, 0]] * 10)
    assert evaluation.dsb2018_score(DSB_GT, pred) == 0.8


def test_dsb2018_split_nucleus():
    # Nucleus 0 (100 px) predicted as two pieces: its first 63 pixels in raster order
    # (IoU 0.63, a match at 0.5, 0.55, 0.6) and the other 37 (IoU 0.37, never).
    first = np.zeros((40, 40), dtype=bool)
    first.ravel()[np.flatnonzero(DSB_GT[..., 0].ravel())[:63]] = True
    pieces = np.stack([first, DSB_GT[..., 0] & ~first], axis=-1)
    pred = np.concatenate([pieces, DSB_GT[..., 1:]], axis=-1)
    counts = evaluation.dsb2018_counts(DSB_GT, pred)
    np.testing.assert_array_equal(counts, [[4, 1, 0]] * 3 + [[3, 2, 1]] * 7)
    # (3 * 4/5 + 7 * 3/6) / 10
    assert evaluation.dsb2018_score(DSB_GT, pred) == pytest.approx(0.59, abs=1e-12)


def test_dsb2018_iou_must_exceed_the_threshold():
    # IoU exactly 0.5 (50 of 100 px) is no match at 0.5; IoU 0.8 matches up to 0.75.
    pred = DSB_GT.copy()
    pred[5:, :, 0] = False                       # 50 px of nucleus 0
    pred[8:, 20:30, 1] = False                   # 80 px of nucleus 1
    counts = evaluation.dsb2018_counts(DSB_GT, pred)
    np.testing.assert_array_equal(counts[:, 0], [3] * 6 + [2] * 4)
    np.testing.assert_array_equal(counts[:, 1], counts[:, 2])
    assert evaluation.dsb2018_score(DSB_GT, pred) == pytest.approx(
        (6 * 3 / 5 + 4 * 2 / 6) / 10, abs=1e-12)


def test_dsb2018_one_to_one_with_a_duplicate_prediction():
    pred = np.concatenate([DSB_GT, DSB_GT[..., :1]], axis=-1)   # nucleus 0 predicted twice
    np.testing.assert_array_equal(evaluation.dsb2018_counts(DSB_GT, pred), [[4, 1, 0]] * 10)


def test_dsb2018_empty_cases_and_mean_over_images():
    empty = np.zeros((40, 40, 0), dtype=bool)
    assert evaluation.dsb2018_score(empty, empty) == 1.0
    assert evaluation.dsb2018_score(DSB_GT, empty) == 0.0
    assert evaluation.dsb2018_score(empty, DSB_GT) == 0.0
    result = evaluation.dsb2018_metric([(DSB_GT, DSB_GT), (DSB_GT, DSB_GT[..., :3])])
    assert result == {"score": 0.875, "per_image": [1.0, 0.75]}
    with pytest.raises(ValueError, match="at least one"):
        evaluation.dsb2018_metric([])
    with pytest.raises(ValueError, match=r"pred_masks must be \[40, 40, N\]"):
        evaluation.dsb2018_score(DSB_GT, np.zeros((30, 40, 1), bool))
