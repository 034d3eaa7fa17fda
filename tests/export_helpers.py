"""A small export test model: TinyConfig with a four-conv backbone, so that exports take seconds."""
import keras

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
