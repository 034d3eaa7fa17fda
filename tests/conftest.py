"""Shared fixtures: a tiny configuration that builds and runs fast on 2 CPU cores."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from mrcnn.config import Config

SHARED_DATA = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data")


class TinyConfig(Config):
    """128 px images, few ROIs, narrow heads: for graph tests, not for accuracy."""

    NAME = "tiny"
    BACKBONE = "resnet50"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 4
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 256
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    TRAIN_ROIS_PER_IMAGE = 32
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    POOL_SIZE = 7
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]
    MINI_MASK_SHAPE = (28, 28)
    MAX_GT_INSTANCES = 10
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.5
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1


@pytest.fixture
def tiny_config():
    """A fresh TinyConfig instance."""
    return TinyConfig()


@pytest.fixture
def shared_data():
    """Path to ../shared/data, or skip when the checkout has none beside it."""
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip(f"real data folder {path} is absent (it lives beside the checkout as ../shared/data)")
    return path


@pytest.fixture
def rng():
    """A seeded NumPy generator."""
    return np.random.default_rng(1234)
