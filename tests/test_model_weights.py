"""The full inference model against matterport's weight layout, and loading such files."""
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.model import MaskRCNN
from mrcnn.weights import weight_names
from tests.h5_layout import (expand_to_resnet101, layout_path_or_skip, parse_layout, weighted,
                             write_reference_h5)

HEADS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


class CocoLikeConfig(Config):
    NAME = "cocolike"
    BACKBONE = "resnet50"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    POST_NMS_ROIS_INFERENCE = 16
    DETECTION_MAX_INSTANCES = 4


def model_weights(model):
    """{layer name: [(weight name, shape, variable)]} over the model's weighted layers."""
    out = {}
    for layer in model.keras_model.layers:
        if layer.weights:
            names = weight_names(layer)
            out[layer.name] = [(n, tuple(w.shape), w) for n, w in zip(names, layer.weights)]
    return out


@pytest.fixture(scope="module")
def layout():
    return parse_layout(layout_path_or_skip())


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101"])
def test_layer_names_and_shapes_equal_reference(layout, backbone, tmp_path_factory):
    config = type("C", (CocoLikeConfig,), {"BACKBONE": backbone})()
    model = MaskRCNN("inference", config, str(tmp_path_factory.mktemp("logs")))
    reference = weighted(layout if backbone == "resnet50" else expand_to_resnet101(layout))
    ours = model_weights(model)
    assert sorted(ours) == sorted(reference)
    for name, weights in reference.items():
        assert [(n, tuple(s)) for n, s in weights] == [(n, s) for n, s, _ in ours[name]], name
    total = sum(int(np.prod(s)) for ws in reference.values() for _, s in ws)
    if backbone == "resnet50":
        assert total == 45088120  # the layout file's stated total
    assert total == sum(int(np.prod(s)) for ws in ours.values() for _, s, _ in ws)


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    return MaskRCNN("inference", CocoLikeConfig(), str(tmp_path_factory.mktemp("logs")))


def test_load_reference_h5_by_name(layout, r50, tmp_path):
    path = tmp_path / "mask_rcnn_coco_like.h5"
    values = write_reference_h5(str(path), layout, np.random.default_rng(7))
    report = r50.load_weights(str(path), by_name=True)
    assert not report["missing_in_file"]
    for name, weights in model_weights(r50).items():
        for (_, _, variable), expected in zip(weights, values[name]):
            np.testing.assert_array_equal(np.asarray(variable), expected)


def test_load_reference_h5_with_exclude_into_other_class_count(layout, tmp_path):
    path = tmp_path / "mask_rcnn_coco_like.h5"
    values = write_reference_h5(str(path), layout, np.random.default_rng(8))
    config = type("C", (CocoLikeConfig,), {"NUM_CLASSES": 5})()
    model = MaskRCNN("inference", config, str(tmp_path))
    before = {n: [np.asarray(v).copy() for _, _, v in ws] for n, ws in model_weights(model).items()}
    with pytest.raises(ValueError, match=r"mrcnn_class_logits.*\(1024, 81\).*\(1024, 5\)"):
        model.load_weights(str(path), by_name=True)
    report = model.load_weights(str(path), by_name=True, exclude=HEADS)
    assert sorted(report["excluded"]) == ["mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_mask"]
    for name, weights in model_weights(model).items():
        for k, (_, _, variable) in enumerate(weights):
            expected = before[name][k] if name in HEADS else values[name][k]
            np.testing.assert_array_equal(np.asarray(variable), expected)
    image = np.full((96, 128, 3), 100, np.uint8)
    result = model.detect([image])[0]
    assert result["masks"].shape[:2] == (96, 128)
