"""Small box layers shared by the training and inference graphs: NormBoxes and PyramidAnchors."""
import logging

import keras
import numpy as np
from keras import ops

from mrcnn.ops import generate_pyramid_anchors_graph, norm_boxes_graph

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(keras.layers.Layer):
    """Pixel boxes -> normalized boxes, using the dynamic height and width of an image tensor.

    Inputs: [boxes, image]
        boxes: [batch, N, (y1, x1, y2, x2)] pixels (y2, x2 exclusive), any numeric dtype.
        image: [batch, H, W, C], only its shape is used.

    Output: [batch, N, (y1, x1, y2, x2)] float32, normalized
    (``(boxes - [0, 0, 1, 1]) / [H - 1, W - 1, H - 1, W - 1]``).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        boxes, image = inputs
        return norm_boxes_graph(boxes, ops.shape(image)[1:3])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidAnchors(keras.layers.Layer):
    """Normalized anchors of every pyramid level, computed in the graph from the feature map shapes.

    The anchors always match the RPN outputs because they are derived from the same feature maps,
    whatever the image size. Equal to
    ``utils.norm_boxes(utils.generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride),
    (H, W))``.

    Args:
        scales: one anchor scale (pixels) per level, e.g. (32, 64, 128, 256, 512).
        ratios: width / height ratios at every level, e.g. [0.5, 1, 2].
        strides: one feature stride (pixels) per level, e.g. [4, 8, 16, 32, 64].
        anchor_stride: int, anchors at every ``anchor_stride``-th feature map cell.

    Inputs: [image, P2, P3, P4, P5, P6] (one feature map per entry of ``scales``)
        image: [batch, H, W, C], only its shape is used (H, W normalize the anchors).
        Pk: [batch, Hk, Wk, channels], only their shapes are used.

    Output: [batch, num_anchors, (y1, x1, y2, x2)] float32, normalized, the same anchors for
    every image.
    """

    def __init__(self, scales, ratios, strides, anchor_stride=1, name="anchors", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        self.scales = [float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        self.strides = [int(s) for s in strides]
        self.anchor_stride = int(anchor_stride)
        if len(self.scales) != len(self.strides):
            raise ValueError(
                f"scales and strides need one entry per pyramid level, got scales={scales!r} "
                f"and strides={strides!r}")
        if not self.ratios or min(self.ratios) <= 0:
            raise ValueError(f"ratios must be positive numbers, got {ratios!r}")
        if self.anchor_stride < 1:
            raise ValueError(f"anchor_stride must be >= 1, got {anchor_stride!r}")

    def call(self, inputs):
        image, *features = inputs
        if len(features) != len(self.scales):
            raise ValueError(
                f"PyramidAnchors expects the image and {len(self.scales)} feature maps, "
                f"got {len(features)} feature maps")
        shapes = [ops.shape(f)[1:3] for f in features]
        anchors = generate_pyramid_anchors_graph(
            self.scales, self.ratios, shapes, self.strides, self.anchor_stride)
        anchors = norm_boxes_graph(anchors, ops.shape(image)[1:3])
        batch = ops.shape(image)[0]
        return ops.broadcast_to(ops.expand_dims(anchors, 0), (batch, ops.shape(anchors)[0], 4))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        total = 0
        for shape in input_shape[1:]:
            h, w = shape[1], shape[2]
            if h is None or w is None:
                return (batch, None, 4)
            cells = int(np.ceil(h / self.anchor_stride)) * int(np.ceil(w / self.anchor_stride))
            total += cells * len(self.ratios)
        return (batch, total, 4)

    def get_config(self):
        config = super().get_config()
        config.update({
            "scales": self.scales,
            "ratios": self.ratios,
            "strides": self.strides,
            "anchor_stride": self.anchor_stride,
        })
        return config
