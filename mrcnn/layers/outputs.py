"""Small named layers that pick parts of other layers' outputs."""
import keras


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


class FirstROIs(keras.layers.Layer):
    """Keep the first ``count`` ROIs of each image.

    DetectionTargetLayer puts the positive ROIs first, at most int(T * ROI_POSITIVE_RATIO)
    of them; the mask loss only looks at positives, so the training graph runs the mask
    head on those rows alone.

    Input: [batch, T, ...] any dtype. Output: [batch, count, ...] same dtype.
    """

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        self.count = int(count)

    def call(self, values):
        return values[:, :self.count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(input_shape[2:])

    def compute_output_spec(self, values):
        return keras.KerasTensor(self.compute_output_shape(values.shape), dtype=values.dtype)

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config
