"""Config: defaults, derived values, validation messages."""
import numpy as np
import pytest

from mrcnn.config import Config


def make(**overrides):
    """A Config subclass with the given class attributes, instantiated."""
    cls = type("TestConfig", (Config,), dict(overrides))
    return cls()


def test_defaults_match_reference():
    config = Config()
    assert config.BACKBONE == "resnet101"
    assert config.BATCH_SIZE == 2
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [1024, 1024, 3])
    assert config.IMAGE_META_SIZE == 12 + 1
    np.testing.assert_allclose(config.MEAN_PIXEL, [123.7, 116.8, 103.9], rtol=1e-6)
    assert config.POST_NMS_ROIS_INFERENCE == 1000
    assert config.MINI_MASK_SHAPE == (56, 56)
    assert set(config.LOSS_WEIGHTS) == {"rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                                        "mrcnn_bbox_loss", "mrcnn_mask_loss"}


def test_derived_values():
    config = make(GPU_COUNT=2, IMAGES_PER_GPU=3, NUM_CLASSES=81, IMAGE_RESIZE_MODE="crop",
                  IMAGE_MIN_DIM=512)
    assert config.BATCH_SIZE == 6
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [512, 512, 3])
    assert config.IMAGE_META_SIZE == 93


def test_to_dict_is_plain_and_display_prints(capsys):
    config = make(NAME="x", NUM_CLASSES=3)
    d = config.to_dict()
    assert d["NAME"] == "x"
    assert d["MEAN_PIXEL"] == pytest.approx([123.7, 116.8, 103.9], rel=1e-6)
    assert isinstance(d["MEAN_PIXEL"], list)
    config.display()
    out = capsys.readouterr().out
    assert "NUM_CLASSES" in out and "IMAGE_META_SIZE" in out


@pytest.mark.parametrize("attrs, match", [
    ({"IMAGE_MAX_DIM": 1000}, "IMAGE_MAX_DIM.*1000"),
    ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 500}, "IMAGE_MIN_DIM.*500"),
    ({"IMAGE_RESIZE_MODE": "stretch"}, "IMAGE_RESIZE_MODE.*stretch"),
    ({"BACKBONE": "resnet18x"}, "BACKBONE.*resnet18x"),
    ({"MEAN_PIXEL": [1.0, 2.0]}, "MEAN_PIXEL.*IMAGE_CHANNEL_COUNT"),
    ({"IMAGE_CHANNEL_COUNT": 4}, "MEAN_PIXEL"),
    ({"RPN_ANCHOR_RATIOS": [0.5, -1, 2]}, "RPN_ANCHOR_RATIOS"),
    ({"RPN_NMS_THRESHOLD": 1.5}, "RPN_NMS_THRESHOLD.*1.5"),
    ({"DETECTION_MIN_CONFIDENCE": -0.1}, "DETECTION_MIN_CONFIDENCE.*-0.1"),
    ({"DETECTION_NMS_THRESHOLD": 2}, "DETECTION_NMS_THRESHOLD.*2"),
    ({"ROI_POSITIVE_RATIO": 0.0}, "ROI_POSITIVE_RATIO.*0.0"),
    ({"IMAGES_PER_GPU": 0}, "IMAGES_PER_GPU.*0"),
    ({"GPU_COUNT": 1.5}, "GPU_COUNT.*1.5"),
    ({"RPN_ANCHOR_SCALES": (32, 64)}, "RPN_ANCHOR_SCALES"),
    ({"MASK_SHAPE": [56, 56]}, "MASK_SHAPE.*56"),
    ({"BBOX_STD_DEV": [0.1, 0.1, 0.2]}, "BBOX_STD_DEV"),
    ({"LOSS_WEIGHTS": {"mask_loss": 1.0}}, "LOSS_WEIGHTS.*mask_loss"),
    ({"LEARNING_RATE": 0}, "LEARNING_RATE.*0"),
    ({"IMAGE_MIN_DIM": 2048}, "IMAGE_MIN_DIM.*2048"),
    ({"NORMALIZATION": "layer"}, "NORMALIZATION.*layer"),
    ({"MASK_HEAD_FILTERS": 0}, "MASK_HEAD_FILTERS.*0"),
    ({"RPN_CONV_FILTERS": 2.5}, "RPN_CONV_FILTERS.*2.5"),
    ({"ROI_ALIGN_MODE": "bilinear"}, "ROI_ALIGN_MODE.*bilinear"),
])
def test_bad_values_raise_naming_them(attrs, match):
    with pytest.raises(ValueError, match=match):
        make(**attrs)


def test_num_classes_checked_when_a_model_is_built():
    config = Config()  # NUM_CLASSES=1 is the base default and allowed here
    with pytest.raises(ValueError, match="NUM_CLASSES.*1"):
        config.validate_for_model()
    make(NUM_CLASSES=2).validate_for_model()


def test_num_classes_changed_after_construction_is_caught():
    config = make(NUM_CLASSES=3)
    config.NUM_CLASSES = 5
    with pytest.raises(ValueError, match="IMAGE_META_SIZE"):
        config.validate_for_model()


def test_callable_backbone_accepted():
    def backbone(image, stage5=True, train_bn=False):
        return []
    config = make(BACKBONE=backbone)
    assert config.to_dict()["BACKBONE"] == "backbone"


def test_pad64_and_none_modes_skip_fixed_size_check():
    make(IMAGE_RESIZE_MODE="pad64", IMAGE_MAX_DIM=1000)
    make(IMAGE_RESIZE_MODE="none", IMAGE_MAX_DIM=1000)


def test_resize_and_nms_methods_default_to_matterport_and_are_checked():
    config = Config()
    assert config.IMAGE_RESIZE_METHOD == "exact" and config.NMS_METHOD == "standard"

    class Fast(Config):
        IMAGE_RESIZE_METHOD = "opencv"
        NMS_METHOD = "combined"

    Fast()
    for name, value in (("IMAGE_RESIZE_METHOD", "bilinear"), ("NMS_METHOD", "fast")):
        bad = type("Bad", (Config,), {name: value})
        with pytest.raises(ValueError, match=rf"{name} must be one of .*'{value}'"):
            bad()
