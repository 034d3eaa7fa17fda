"""Small named layers that pick parts of other layers' outputs."""
import keras
from keras import ops


class DetectionBoxes(keras.layers.Layer):
    """Takes the boxes out of DetectionLayer's rows.

    Input: detections [batch, num_detections, (y1, x1, y2, x2, class_id, score)] float32, normalized.
    Output: boxes [batch, num_detections, (y1, x1, y2, x2)] float32, normalized.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, detections):
        return detections[..., :4]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)
