"""Small named layers that pick parts of other layers' outputs."""
import keras
from keras import ops

from mrcnn import backend


@keras.saving.register_keras_serializable(package="mrcnn")
class ValidDetectionBoxes(keras.layers.Layer):
    """The boxes of DetectionLayer's real detections, for the mask head.

    DetectionLayer sorts each image's detections by score and zero-pads the rows after
    them (class_id 0). This layer keeps the first n rows of every image, n the largest
    count of real detections in the batch (at least 1), so that the mask head computes
    n masks per image instead of DETECTION_MAX_INSTANCES; ``PadROIs`` restores the slots.

    Input: detections [batch, D, (y1, x1, y2, x2, class_id, score)] float32, normalized.
    Output: boxes [batch, n, (y1, x1, y2, x2)] float32, normalized, 1 <= n <= D (dynamic;
    n = D on backends with static shapes only, JAX).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, detections):
        if not backend.get().DYNAMIC_SHAPES:
            # XLA (JAX) needs static shapes: all D rows go to the mask head.
            return detections[:, :, :4]
        real = ops.sum(ops.cast(detections[..., 4] > 0, "int32"), axis=1)  # [batch]
        count = ops.maximum(ops.max(real), 1)
        return detections[:, :count, :4]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)


class _FixedROICount(keras.layers.Layer):
    """Base of the layers whose output has exactly ``count`` rows on the ROI axis (axis 1).

    Args:
        count: int >= 1.
    """

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        self.count = int(count)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(input_shape[2:])

    def compute_output_spec(self, values):
        return keras.KerasTensor(self.compute_output_shape(values.shape), dtype=values.dtype)

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class PadROIs(_FixedROICount):
    """Zero-pad the ROI axis to ``count`` rows: the inverse of keeping the first rows.

    Args:
        count: int >= 1, the ROI rows of the output (e.g. DETECTION_MAX_INSTANCES).

    Input: [batch, n, ...] with n <= count (n may be dynamic). Output: [batch, count, ...],
    rows n.. all zero, same dtype.
    """

    def call(self, values):
        missing = self.count - ops.shape(values)[1]
        padding = [[0, 0], [0, missing]] + [[0, 0]] * (len(values.shape) - 2)
        padded = ops.pad(values, padding)
        trailing = tuple(values.shape[2:])
        if all(d is not None for d in trailing):
            padded = ops.reshape(padded, (-1, self.count) + trailing)
        return padded


@keras.saving.register_keras_serializable(package="mrcnn")
class FirstROIs(_FixedROICount):
    """Keep the first ``count`` ROIs of each image.

    DetectionTargetLayer puts the positive ROIs first, at most int(T * ROI_POSITIVE_RATIO)
    of them; the mask loss only looks at positives, so the training graph runs the mask
    head on those rows alone.

    Input: [batch, T, ...] any dtype. Output: [batch, count, ...] same dtype.
    """

    def call(self, values):
        return values[:, :self.count]
