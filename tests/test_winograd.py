"""Winograd F(4x4, 3x3): NumPy reference, graph version, WinogradConv2D, and the model switch."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.graph import use_winograd
from mrcnn.layers.conv import WinogradConv2D
from mrcnn.winograd import winograd_conv3x3, winograd_conv3x3_graph
from tests.conftest import TinyConfig


def direct_conv3x3(images, kernel):
    """Plain 3x3 "same" cross-correlation with zero padding, float64, by shifted sums."""
    images = np.asarray(images, np.float64)
    batch, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((batch, height, width, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + height, dx:dx + width] @ kernel[dy, dx]
    return out


SIZES = [(1, 1), (4, 4), (5, 7), (8, 3), (17, 23)]


@pytest.mark.parametrize("height,width", SIZES)
def test_numpy_winograd_equals_direct_convolution(rng, height, width):
    images = rng.normal(size=(2, height, width, 3))
    kernel = rng.normal(size=(3, 3, 3, 5))
    np.testing.assert_allclose(winograd_conv3x3(images, kernel), direct_conv3x3(images, kernel),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("height,width", SIZES)
def test_graph_winograd_matches_numpy_and_conv2d(rng, height, width):
    images = rng.normal(size=(2, height, width, 6)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 6, 4)).astype(np.float32)
    expected = winograd_conv3x3(images, kernel)
    got = winograd_conv3x3_graph(tf.constant(images), tf.constant(kernel)).numpy()
    assert got.shape == (2, height, width, 4) and got.dtype == np.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * scale)
    direct = tf.nn.conv2d(images, kernel, 1, "SAME").numpy()
    np.testing.assert_allclose(got, direct, rtol=0, atol=2e-5 * scale)


def test_graph_winograd_with_dynamic_shapes(rng):
    kernel = tf.constant(rng.normal(size=(3, 3, 4, 2)).astype(np.float32))
    conv = tf.function(lambda x: winograd_conv3x3_graph(x, kernel),
                       input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)])
    for shape in [(1, 9, 6, 4), (3, 16, 16, 4), (2, 2, 31, 4)]:
        images = rng.normal(size=shape).astype(np.float32)
        np.testing.assert_allclose(conv(images).numpy(), direct_conv3x3(images, kernel.numpy()),
                                   rtol=0, atol=1e-4)


@pytest.mark.parametrize("images_shape,kernel_shape,match", [
    ((1, 8, 8, 3), (5, 5, 3, 2), "kernel must be"),
    ((1, 8, 8, 3), (3, 3, 4, 2), "3 channels but the kernel expects 4"),
    ((8, 8, 3), (3, 3, 3, 2), "images must be"),
])
def test_winograd_rejects_wrong_shapes(images_shape, kernel_shape, match):
    with pytest.raises(ValueError, match=match):
        winograd_conv3x3(np.zeros(images_shape), np.zeros(kernel_shape))
    with pytest.raises(ValueError, match=match):
        winograd_conv3x3_graph(tf.zeros(images_shape), tf.zeros(kernel_shape))


def test_layer_chooses_winograd_only_where_it_pays():
    layer = WinogradConv2D(256, 3, padding="same", winograd=True)
    assert layer.uses_winograd((1, 16, 16, 256))
    assert layer.uses_winograd((None, 16, 40, 512))
    assert layer.uses_winograd((100, 14, 14, 256))  # the mask head's ROIs
    assert layer.uses_winograd((None, 14, 14, 256))  # ... when their count is dynamic
    assert not layer.uses_winograd((1, 12, 12, 256))  # fewer than 256 pixels
    assert not layer.uses_winograd((100, 4, 64, 256))  # thinner than 8 pixels
    assert not layer.uses_winograd((1, 32, 32, 128))  # too few input channels
    assert not layer.uses_winograd((1, None, 32, 256))  # size unknown
    assert not WinogradConv2D(128, 3, padding="same", winograd=True).uses_winograd((1, 32, 32, 256))
    assert not WinogradConv2D(256, 3, padding="same", winograd=False).uses_winograd((1, 32, 32, 256))
    assert not WinogradConv2D(256, 3, strides=2, padding="same", winograd=True).uses_winograd((1, 32, 32, 256))
    assert not WinogradConv2D(256, 3, padding="valid", winograd=True).uses_winograd((1, 32, 32, 256))
    assert not WinogradConv2D(256, 1, padding="same", winograd=True).uses_winograd((1, 32, 32, 256))
    assert not WinogradConv2D(256, 3, padding="same", winograd=True,
                              dtype="mixed_bfloat16").uses_winograd((1, 32, 32, 256))
    small = WinogradConv2D(8, 3, padding="same", winograd=True, winograd_min_channels=4,
                           winograd_min_size=4, winograd_min_pixels=16)
    assert small.uses_winograd((1, 4, 4, 8))
    assert not small.uses_winograd((1, 4, 3, 8))


def test_layer_equals_conv2d_with_the_same_weights(rng):
    images = rng.normal(size=(2, 19, 21, 16)).astype(np.float32)
    fast = WinogradConv2D(24, 3, padding="same", activation="relu", winograd=True,
                          winograd_min_channels=16, name="fpn_p2")
    plain = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="fpn_p2")
    fast.build(images.shape)
    plain.build(images.shape)
    kernel = rng.normal(size=(3, 3, 16, 24)).astype(np.float32) * 0.1
    bias = rng.normal(size=(24,)).astype(np.float32)
    fast.set_weights([kernel, bias])
    plain.set_weights([kernel, bias])
    assert fast.uses_winograd(images.shape)
    assert [w.shape for w in fast.weights] == [w.shape for w in plain.weights]
    want = plain(images).numpy()
    np.testing.assert_allclose(fast(images).numpy(), want, rtol=0, atol=2e-5 * np.abs(want).max())
    # Inside a traced function the static shape is known and the Winograd graph is used.
    traced = tf.function(lambda x: fast(x)).get_concrete_function(tf.TensorSpec(images.shape, tf.float32))
    op_types = {op.type for op in traced.graph.get_operations()}
    assert "BatchMatMulV2" in op_types and "Conv2D" not in op_types


def test_layer_config_round_trip_and_validation():
    layer = WinogradConv2D(32, 3, padding="same", winograd=True, winograd_min_channels=64,
                           winograd_min_size=4, winograd_min_pixels=100, name="rpn_conv_shared")
    clone = WinogradConv2D.from_config(layer.get_config())
    assert (clone.winograd, clone.winograd_min_channels, clone.winograd_min_size,
            clone.winograd_min_pixels) == (True, 64, 4, 100)
    assert clone.name == "rpn_conv_shared" and clone.filters == 32
    with pytest.raises(ValueError, match="winograd must be True or False, got 'yes'"):
        WinogradConv2D(8, 3, winograd="yes")
    with pytest.raises(ValueError, match="winograd_min_size must be a positive int, got 0"):
        WinogradConv2D(8, 3, winograd_min_size=0)
    with pytest.raises(ValueError, match="winograd_min_pixels must be a positive int, got 2.5"):
        WinogradConv2D(8, 3, winograd_min_pixels=2.5)


def test_config_switch_is_validated_and_auto_follows_dtype():
    with pytest.raises(ValueError, match="WINOGRAD_CONVS must be True, False or \"auto\", got 'on'"):
        class Bad(TinyConfig):
            WINOGRAD_CONVS = "on"
        Bad()

    class Auto(TinyConfig):
        WINOGRAD_CONVS = "auto"

    class AutoBf16(Auto):
        DTYPE_POLICY = "mixed_bfloat16"

    class Off(TinyConfig):
        WINOGRAD_CONVS = False

    on_cpu = not tf.config.list_physical_devices("GPU")
    assert use_winograd(Auto()) is on_cpu
    assert use_winograd(AutoBf16()) is False
    assert use_winograd(Off()) is False
    assert Config.WINOGRAD_CONVS == "auto"


class WideConfig(TinyConfig):
    """256 px, a 256-channel pyramid: FPN, RPN (P2-P4) and stage 4 take the Winograd path."""

    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256
    TOP_DOWN_PYRAMID_SIZE = 256


def test_inference_graph_with_winograd_matches_direct(tmp_path, rng):
    from mrcnn.model import MaskRCNN

    class On(WideConfig):
        WINOGRAD_CONVS = True

    class Off(WideConfig):
        WINOGRAD_CONVS = False

    fast = MaskRCNN("inference", On(), str(tmp_path))
    plain = MaskRCNN("inference", Off(), str(tmp_path))
    plain.keras_model.set_weights(fast.keras_model.get_weights())
    for name in ("fpn_p2", "res4a_branch2b", "mrcnn_mask_conv1"):
        assert type(fast.keras_model.get_layer(name)) is WinogradConv2D
        assert type(plain.keras_model.get_layer(name)) is keras.layers.Conv2D
    assert type(fast.keras_model.get_layer("rpn_model").get_layer("rpn_conv_shared")) is WinogradConv2D

    image = rng.integers(0, 255, size=(256, 256, 3)).astype(np.uint8)
    names = ["res4b_branch2b", "fpn_p2", "fpn_p3", "fpn_p5", "rpn_class", "rpn_bbox"]
    molded, metas, _ = fast.mold_inputs([image])
    got = fast.run_graph(molded, names, image_metas=metas)
    want = plain.run_graph(molded, names, image_metas=metas)
    for name in names:
        scale = np.abs(want[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-4 * scale, err_msg=name)


def test_training_graph_keeps_direct_convolutions(tmp_path):
    from mrcnn.model import MaskRCNN

    class On(WideConfig):
        WINOGRAD_CONVS = True

    model = MaskRCNN("training", On(), str(tmp_path))
    layers = model.get_trainable_layers()  # the RPN's layers included
    assert any(layer.name == "rpn_conv_shared" for layer in layers)
    assert not any(isinstance(layer, WinogradConv2D) for layer in layers)
