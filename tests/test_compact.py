"""mrcnn.compact: the compact from-scratch model the synthetic samples share."""
import numpy as np
import pytest

from mrcnn import compact


class _Tiny(compact.CompactConfig):
    NAME = "tiny"
    NUM_CLASSES = 3


class _SmallTiny(compact.SmallCompactConfig, _Tiny):
    pass


def test_small_variant_sizes_win_over_the_dataset_config():
    config = _SmallTiny()
    assert config.BACKBONE is compact.small_backbone
    assert (config.NAME, config.NUM_CLASSES) == ("tiny", 3)
    assert (config.IMAGES_PER_GPU, config.TOP_DOWN_PYRAMID_SIZE, config.MASK_SHAPE) == (2, 32, [14, 14])
    assert (config.DETECTION_MIN_CONFIDENCE, config.STEPS_PER_EPOCH) == (0.3, 2)
    full = _Tiny()
    assert full.BACKBONE is compact.compact_backbone
    assert (full.IMAGES_PER_GPU, full.TOP_DOWN_PYRAMID_SIZE, full.MASK_SHAPE) == (8, 128, [28, 28])


def test_inference_config():
    config = compact.inference_config(_Tiny)
    assert type(config).__name__ == "Inference_Tiny"
    assert (config.IMAGES_PER_GPU, config.BATCH_SIZE, config.NAME) == (1, 1, "tiny")
    with pytest.raises(TypeError, match="Config subclass, got 'tiny'"):
        compact.inference_config("tiny")


def test_learning_rate_curve():
    rates = [compact.learning_rate_at(s, 0.02, 1000, 100) for s in (0, 50, 100, 1000, 5000)]
    np.testing.assert_allclose(rates, [0.002, 0.011, 0.02, 0.0002, 0.0002])


def test_distinct_color_golden_and_distance():
    rng = np.random.default_rng(0)
    colors = [compact.distinct_color(rng, [(0, 0, 0)]) for _ in range(3)]
    # Golden values of samples/shapes.py's _distinct_color before it moved here.
    assert colors == [(217, 163, 130), (69, 78, 10), (208, 166, 233)]
    # No colour is 1000 away from anything: after 100 tries, the complement of the first.
    assert compact.distinct_color(rng, [(10, 20, 30)], min_distance=1000) == (245, 235, 225)


def test_compact_backbone_layer_names():
    import keras

    image = keras.Input((128, 128, 3))
    stages = compact.compact_backbone(image, stage5=False)
    assert stages[-1] is None
    assert [tuple(s.shape[1:]) for s in stages[:4]] == [(64, 64, 32), (32, 32, 64), (16, 16, 96),
                                                        (8, 8, 128)]
    names = {layer.name for layer in keras.Model(image, stages[:4]).layers}
    assert {"conv1", "bn_conv1", "res2a_branch1", "bn4a_branch2b", "res4a_out"} <= names
