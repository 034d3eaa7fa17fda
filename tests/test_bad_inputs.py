"""Bad inputs across the public surface: each ends in an exception of the right type whose
message names the value, or, where the input is still usable, in a named warning.

Most cases need no network graph (the checks run before it); one module-scoped tiny
inference model runs detect() on the usable cases, one tiny training model checks train().
"""
import io
import json
import os
import warnings

import h5py
import numpy as np
import pytest
import skimage.io
from PIL import Image

from mrcnn import inputs
from mrcnn.config import Config, ConfigWarning
from mrcnn.dataset import Dataset, read_rgb_image
from tests.conftest import TinyConfig


class OneConfig(TinyConfig):
    IMAGES_PER_GPU = 1


class NoResizeConfig(TinyConfig):
    IMAGE_RESIZE_MODE = "none"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from mrcnn.model import MaskRCNN
    return MaskRCNN("inference", OneConfig(), str(tmp_path_factory.mktemp("logs")))


def _photo(rng, h=96, w=128):
    return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)


# --------------------------------------------------------------------------- detect() images
def test_float_image_in_0_1_is_scaled_with_a_warning(model, rng):
    image = _photo(rng)
    with pytest.warns(inputs.ImageRangeWarning, match=r"image 0 is float32 with values in "
                                                      r"\[0, 1\] .*multiplied by 255"):
        result = model.detect([image.astype(np.float32) / 255])[0]
    assert set(result) == {"rois", "class_ids", "scores", "masks"}
    # Same molded input as the uint8 image: the same detections.
    with pytest.warns(inputs.ImageRangeWarning):
        scaled = model._check_images([image.astype(np.float32) / 255])[0]
    np.testing.assert_allclose(scaled, image, atol=1e-3)


def test_uint16_image_is_scaled_with_a_warning():
    image = np.full((8, 8, 3), 65535, np.uint16)
    with pytest.warns(inputs.ImageRangeWarning, match=r"image 3 is uint16 \(max 65535\)"):
        out = inputs.check_image(image, "image 3")
    assert out.dtype == np.uint8 and out.max() == 255


@pytest.mark.parametrize("image, error, message", [
    (np.ones((8, 8, 3), bool), ValueError, "image 0 has dtype bool"),
    (np.where(np.eye(8)[..., None], np.nan, 0.5).repeat(3, -1), ValueError,
     "image 0 holds 24 NaN or infinite values"),
    (np.full((8, 8, 3), -123.7, np.float32), ValueError,
     r"image 0 \(float32\) has values in \[-123.7, -123.7\], outside 0..255.*detect_molded"),
    (np.full((8, 8, 3), 300, np.int32), ValueError, r"has values in \[300, 300\], outside 0..255"),
    (np.full((8, 8, 3), "a"), TypeError, "image 0 has dtype <U1"),
    (np.zeros((8, 8, 5), np.uint8), ValueError, r"image 0 has shape \(8, 8, 5\); expected \[H, W, 3\]"),
    (np.zeros((1, 10, 3), np.uint8), ValueError, r"image 0 is too small: shape \(1, 10, 3\)"),
])
def test_unusable_images_raise(model, image, error, message):
    with pytest.raises(error, match=message):
        model.detect([image])


def test_no_images(model):
    with pytest.raises(ValueError, match="images must be a non-empty list"):
        model.detect([])


@pytest.mark.parametrize("shape, message", [
    ((2, 2, 3), r"image 0 of shape \(2, 2, 3\) becomes \(128, 128\) pixels after resizing "
                r"\(upscaled 64x\)"),
    ((2000, 40, 3), r"image 0 of shape \(2000, 40, 3\) becomes \(128, 3\) pixels after "
                    r"resizing \(shorter side below 8 pixels\)"),
])
def test_tiny_and_thin_images_warn(model, shape, message):
    with pytest.warns(inputs.ImageSizeWarning, match=message):
        model.mold_inputs([np.zeros(shape, np.uint8)])


def test_20000_x_20_image_is_refused(model):
    with pytest.raises(ValueError, match=r"image 0 of shape \(20000, 20, 3\) becomes \(128, 0\) "
                                         "pixels after resizing: nothing is left to detect on"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # skimage divides by the 0 width
            model.detect([np.zeros((20000, 20, 3), np.uint8)])


@pytest.mark.parametrize("image, message", [
    (np.zeros((64, 64), np.uint8), r"image 0 is grayscale \(64, 64\): converted to RGB"),
    (np.zeros((64, 64, 4), np.uint8), r"image 0 is RGBA \(64, 64, 4\): alpha channel dropped"),
])
def test_grayscale_and_rgba_warn_by_name(image, message):
    with pytest.warns(inputs.ImageChannelsWarning, match=message):
        assert inputs.check_image(image, "image 0").shape == (64, 64, 3)


def test_mixed_sizes_without_resizing(tmp_path):
    from mrcnn.model import MaskRCNN
    model = MaskRCNN.__new__(MaskRCNN)   # mold_inputs needs only the config
    model.config = NoResizeConfig()
    with pytest.raises(ValueError, match=r"molded images differ in shape \[\(64, 64, 3\), "
                                         r"\(128, 64, 3\)\]"):
        model.mold_inputs([np.zeros((64, 64, 3), np.uint8), np.zeros((128, 64, 3), np.uint8)])


# --------------------------------------------------------------------------- training data
class _Data(Dataset):
    """One 64 x 64 image; load_image and load_mask return what the test sets."""

    def __init__(self, image, masks, class_ids):
        super().__init__()
        self.add_class("t", 1, "thing")
        self.add_image("t", image_id="a", path="a.png")
        self.prepare()
        self.image, self.masks, self.class_ids = image, masks, class_ids

    def load_image(self, image_id):
        return self.image

    def load_mask(self, image_id):
        return self.masks, self.class_ids

    def image_reference(self, image_id):
        return "a.png"


def _gt(image=None, masks=None, class_ids=None, config=None):
    from mrcnn.targets import load_image_gt
    image = np.full((64, 64, 3), 100, np.uint8) if image is None else image
    if masks is None:
        masks = np.zeros((64, 64, 1), bool)
        masks[10:20, 10:20, 0] = True
    class_ids = np.ones(masks.shape[-1], np.int32) if class_ids is None else class_ids
    return load_image_gt(_Data(image, masks, class_ids), config or TinyConfig(), 0)


def test_dataset_with_float_images_warns_when_training():
    with pytest.warns(inputs.ImageRangeWarning, match=r"image 0 \(a.png\) is float64 with values"):
        image = _gt(image=np.full((64, 64, 3), 0.5))[0]
    assert image.max() == pytest.approx(127.5)


@pytest.mark.parametrize("masks, class_ids, message", [
    (np.full((64, 64, 1), np.nan), None, "image 0: load_mask returned masks with 4096 NaN"),
    (np.ones((32, 64, 1), bool), None, r"image 0: mask must be \[H, W, N\] with H, W = \(64, 64\)"),
    (np.ones((64, 64, 2), bool), np.ones(3, np.int32),
     r"image 0: class_ids shape \(3,\) does not match the 2 instances"),
    (np.ones((64, 64, 1), bool), np.array([1.5]), r"image 0: class_ids must be integers, got \[1.5\]"),
])
def test_bad_masks_raise(masks, class_ids, message):
    with pytest.raises(ValueError, match=message):
        _gt(masks=masks, class_ids=class_ids)


def test_zero_area_mask_is_dropped_with_a_warning():
    masks = np.zeros((64, 64, 2), bool)
    masks[5:15, 5:15, 1] = True
    with pytest.warns(inputs.InstanceWarning, match=r"instance\(s\) \[0\] of load_mask have "
                                                    r"empty masks \(zero area\): dropped"):
        class_ids = _gt(masks=masks)[2]
    assert class_ids.tolist() == [1]


def test_more_instances_than_max_gt_instances_says_what_is_dropped():
    from mrcnn.data import AnchorCache, build_batch
    config = TinyConfig()
    masks = np.zeros((64, 64, 12), bool)
    for k in range(12):
        masks[k * 5:k * 5 + 4, 0:8, k] = True
    dataset = _Data(np.full((64, 64, 3), 100, np.uint8), masks, np.ones(12, np.int32))
    with pytest.warns(inputs.InstanceWarning, match="image 0 has 12 instances, more than "
                                                    "MAX_GT_INSTANCES=10: a random 10 of them "
                                                    "are trained on at this step and 2 dropped"):
        build_batch(dataset, config, [0], AnchorCache(config), np.random.default_rng(0))


# --------------------------------------------------------------------------- image files
def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def test_corrupt_truncated_and_empty_image_files(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buffer, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[:100])
    for path in (corrupt, empty, truncated):
        with pytest.raises(ValueError, match=f"could not read image '{path}'"):
            read_rgb_image(str(path))
    with pytest.raises(FileNotFoundError, match="image file not found: '/no/such.png'"):
        read_rgb_image("/no/such.png")


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path)       # pure red in CMYK
    image = read_rgb_image(str(path))
    assert image.shape == (8, 16, 3) and image.dtype == np.uint8
    assert image[..., 0].min() > 200 and image[..., 1:].max() < 60


def test_16_bit_png_is_read_as_8_bit(tmp_path):
    path = str(tmp_path / "deep.png")
    skimage.io.imsave(path, np.full((8, 8), 65535, np.uint16), check_contrast=False)
    image = read_rgb_image(path)
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3) and image.min() == 255


# --------------------------------------------------------------------------- COCO JSON
def _coco(tmp_path, annotations, images=None, categories=None):
    images = images if images is not None else [{"id": 1, "file_name": "a.png", "height": 64,
                                                 "width": 64}]
    _png(tmp_path / "a.png", np.zeros((64, 64, 3), np.uint8))
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories or [{"id": 1, "name": "thing"}]}))
    return str(path)


def _ann(ann_id, segmentation, category_id=1, iscrowd=0):
    return {"id": ann_id, "image_id": 1, "category_id": category_id, "iscrowd": iscrowd,
            "segmentation": segmentation, "area": 100.0, "bbox": [0, 0, 10, 10]}


def test_empty_coco_json(tmp_path):
    from mrcnn.coco import CocoDataset
    path = tmp_path / "empty.json"
    path.write_text("")
    with pytest.raises(ValueError, match=f"COCO annotation file '{path}' is empty"):
        CocoDataset().load_coco(str(path), str(tmp_path))


@pytest.mark.parametrize("annotation, logged", [
    (_ann(7, [[1, 1, 20, 1, 20, 20]], category_id=99), "annotation 7 has unknown category id 99"),
    (_ann(8, [[1, 1, 20, 1]]), "annotation 8 (image 1)"),
])
def test_coco_annotations_that_cannot_be_used_are_skipped_by_name(tmp_path, caplog,
                                                                   annotation, logged):
    from mrcnn.coco import CocoDataset
    dataset = CocoDataset()
    with caplog.at_level("WARNING", logger="mrcnn.coco"):
        dataset.load_coco(_coco(tmp_path, [annotation]), str(tmp_path))
    assert logged in caplog.text and "skipped" in caplog.text


def test_coco_polygon_outside_the_image_gives_no_instance(tmp_path, caplog):
    from mrcnn.coco import CocoDataset
    dataset = CocoDataset()
    with caplog.at_level("WARNING", logger="mrcnn.coco"):
        dataset.load_coco(_coco(tmp_path, [_ann(9, [[100, 100, 140, 100, 140, 140]])]),
                          str(tmp_path))
        dataset.prepare()
        masks, class_ids = dataset.load_mask(0)
    assert masks.shape[-1] == 0 and class_ids.shape == (0,)
    assert "annotation 9" in caplog.text


def test_coco_crowd_only_image_has_only_negative_ids(tmp_path):
    from mrcnn.coco import CocoDataset
    dataset = CocoDataset()
    dataset.load_coco(_coco(tmp_path, [_ann(3, [[1, 1, 30, 1, 30, 30, 1, 30]], iscrowd=1)]),
                      str(tmp_path))
    dataset.prepare()
    _, class_ids = dataset.load_mask(0)
    assert class_ids.tolist() == [-1]


# --------------------------------------------------------------------------- weight files
def test_truncated_empty_and_foreign_h5(tmp_path, model):
    good = tmp_path / "good.h5"
    model.save_weights(str(good))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:4096])
    with pytest.raises(OSError, match=f"cannot read the weights file '{truncated}' "
                                      r"\(truncated or damaged\? 4096 bytes\)"):
        model.load_weights(str(truncated))
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=f"not an HDF5 weights file: '{empty}'"):
        model.load_weights(str(empty))
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.attrs["layer_names"] = [b"dense_1"]
        f.create_group("dense_1").attrs["weight_names"] = [b"dense_1/kernel:0"]
        f["dense_1"].create_dataset("dense_1/kernel:0", data=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=f"'{foreign}' does not hold the same weighted layers "
                                         "as the model"):
        model.load_weights(str(foreign))


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("attrs, message", [
    ({"IMAGE_MIN_DIM": 512, "IMAGE_MAX_DIM": 256}, r"IMAGE_MIN_DIM \(512\) must not exceed "
                                                   r"IMAGE_MAX_DIM \(256\)"),
    ({"TRAIN_ROIS_PER_IMAGE": 2, "ROI_POSITIVE_RATIO": 0.33},
     r"TRAIN_ROIS_PER_IMAGE \* ROI_POSITIVE_RATIO = 2 \* 0.33 < 1"),
    ({"MASK_SHAPE": [28, 28], "MASK_POOL_SIZE": 7}, r"MASK_SHAPE must be \[2 \* MASK_POOL_SIZE\]"),
    ({"LEARNING_RATE": float("nan")}, "LEARNING_RATE must be a positive number, got nan"),
])
def test_contradictory_configs(attrs, message):
    with pytest.raises(ValueError, match=message):
        type("C", (Config,), attrs)()


def test_mini_masks_coarser_than_mask_shape_warn():
    with pytest.warns(ConfigWarning, match=r"MINI_MASK_SHAPE \(14, 14\) is smaller than "
                                           r"MASK_SHAPE \(28, 28\)"):
        type("C", (Config,), {"MINI_MASK_SHAPE": (14, 14)})()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        Config()


# --------------------------------------------------------------------------- train()
@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from mrcnn.model import MaskRCNN
    return MaskRCNN("training", OneConfig(), str(tmp_path_factory.mktemp("train")))


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": "head"}, r"layers='head' matches no layer with weights, so nothing would train"),
    ({"layers": "heads", "learning_rate": float("nan")},
     "learning_rate must be a finite number > 0, got nan"),
    ({"layers": "heads", "learning_rate": -0.1}, "learning_rate must be a finite number > 0, "
                                                 "got -0.1"),
])
def test_train_refuses_before_any_step(trainer, kwargs, message):
    dataset = _Data(np.full((64, 64, 3), 100, np.uint8), np.ones((64, 64, 1), bool),
                    np.ones(1, np.int32))
    kwargs = {"learning_rate": 0.01, "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        trainer.train(dataset, None, **kwargs)
    assert not os.path.exists(trainer.log_dir)    # no checkpoint written


# --------------------------------------------------------------------------- weight files run no code
def test_keras_file_with_a_lambda_is_refused(tmp_path, model):
    """A .keras model carrying a Lambda (arbitrary Python) is refused by Keras' safe_mode,
    and MaskRCNN.load_weights never deserializes it: it is not an HDF5 weights file."""
    import keras
    inp = keras.Input((3,))
    out = keras.layers.Lambda(lambda x: x * 2, name="evil")(inp)
    path = str(tmp_path / "evil.keras")
    keras.Model(inp, out).save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(path)
    with pytest.raises(ValueError, match=f"not an HDF5 weights file: '{path}'"):
        model.load_weights(path)


def test_h5_loading_reads_arrays_only(tmp_path, model, monkeypatch):
    """A weights file that also carries a model config with a Lambda (as a Keras 2 full-model
    save does) loads its arrays without unpickling, unmarshalling or deserializing anything."""
    import marshal
    import pickle

    import keras
    path = str(tmp_path / "with_config.h5")
    model.save_weights(path)
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Lambda", "config": {
            "function": ["4wAAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMEAAAAfABTAKkBTqkAqQHaAXhyAgAAAHIC"
                         "AAAA+gE8bGFtYmRhPgEAAADzAAAAAA==", None, None]}})

    def refuse(*args, **kwargs):
        raise AssertionError("weight loading tried to run code from the file")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(marshal, "loads", refuse)
    monkeypatch.setattr(keras.saving, "deserialize_keras_object", refuse)
    monkeypatch.setattr(keras.models, "model_from_json", refuse)
    report = model.load_weights(path)
    assert report["missing_in_file"] == [] and len(report["loaded"]) > 10
