"""Export test helpers: a small model (TinyConfig with a four-conv backbone, so that exports
take seconds) and a runner of traced functions on ai_edge_litert."""
import keras
import pytest

from tests.conftest import TinyConfig


def small_backbone(input_image, stage5=True, train_bn=False):
    """C1..C5 at strides 2..32 from one stride-2 conv each (a callable BACKBONE)."""
    x = input_image
    stages = []
    for i, filters in enumerate((8, 16, 16, 32, 32), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                                name=f"small_backbone_c{i}")(x)
        stages.append(x)
    return stages


class ExportConfig(TinyConfig):
    """TinyConfig at batch 1 with the small backbone; 128 px square molding."""

    NAME = "export"
    IMAGES_PER_GPU = 1
    BACKBONE = staticmethod(small_backbone)
    DETECTION_MIN_CONFIDENCE = 0.3


def litert_function(function, input_signature):
    """``function`` converted to TFLite builtins and run by ai_edge_litert (no Flex delegate).

    Returns ``run(*arrays) -> first output`` (inputs in signature order, resized per call, so
    None dimensions may change between calls). Skips the test without the [litert] extra.
    """
    import tensorflow as tf
    litert = pytest.importorskip("ai_edge_litert.interpreter",
                                 reason="LiteRT check needs the [litert] extra (ai-edge-litert)")
    concrete = tf.function(function, input_signature=input_signature).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    interpreter = litert.Interpreter(model_content=converter.convert())
    inputs = interpreter.get_input_details()

    def run(*arrays):
        for detail, value in zip(inputs, arrays):
            interpreter.resize_tensor_input(detail["index"], value.shape)
        interpreter.allocate_tensors()
        for detail, value in zip(inputs, arrays):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run
