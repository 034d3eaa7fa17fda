"""DetectionLayer: refined, per-class NMS'd final detections for a batch (inference graph)."""
import logging

import keras
import numpy as np
from keras import ops

from mrcnn import backend
from mrcnn.ops import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph
from mrcnn.ops import parse_image_meta_graph

logger = logging.getLogger(__name__)

DETECTION_NMS_METHODS = ("standard", "combined", "graph")


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Turn classified ROIs into final detections: refine, clip, threshold, per-class NMS, top-k.

    Args:
        max_instances: int, detections returned per image (DETECTION_MAX_INSTANCES).
        min_confidence: float in [0, 1], ROIs whose best class score is below it are dropped
            (DETECTION_MIN_CONFIDENCE).
        nms_threshold: float in [0, 1], per-class NMS IoU threshold (DETECTION_NMS_THRESHOLD).
        bbox_std_dev: 4 floats, the deltas are multiplied by it (BBOX_STD_DEV).
        nms_method: "standard" (default): matterport's per-class tf.image.non_max_suppression
            and final top-k, equal scores in ROI index order (mrcnn.backend.tensorflow
            ._refine_one). "combined": one tf.image.combined_non_max_suppression for the
            batch, which orders equal scores differently (other detections when scores tie;
            the same otherwise). "graph": the same detections as "standard" from
            mrcnn.backend.tensorflow.nms_graph (plain tensor ops instead of the NMS kernel),
            for runtimes whose NMS kernel differs (TFLite). On the JAX backend "standard"
            and "graph" are one static-shape greedy NMS with the same rows.

    Inputs: [rois, mrcnn_class, mrcnn_bbox, image_meta]
        rois: [batch, N, (y1, x1, y2, x2)] float32, normalized (zero rows are padding).
        mrcnn_class: [batch, N, num_classes] float, class probabilities.
        mrcnn_bbox: [batch, N, num_classes, (dy, dx, log(dh), log(dw))] float, divided by the
            std dev.
        image_meta: [batch, 12 + NUM_CLASSES], see mrcnn.data.compose_image_meta; its window and
            image_shape give the clip window.

    Output: [batch, max_instances, (y1, x1, y2, x2, class_id, score)] float32, boxes normalized
    and clipped to the image window, rows sorted by score, zero rows at the end. For each ROI only
    its arg-max class is considered; background (class 0) and all-zero (padding) ROIs are never
    returned.
    """

    def __init__(self, max_instances, min_confidence, nms_threshold,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), nms_method="standard",
                 name="mrcnn_detection", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        if int(max_instances) < 1:
            raise ValueError(f"max_instances must be >= 1, got {max_instances!r}")
        for arg, value in (("min_confidence", min_confidence), ("nms_threshold", nms_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{arg} must be in [0, 1], got {value!r}")
        std = np.asarray(bbox_std_dev, dtype=np.float32).reshape(-1)
        if std.shape != (4,):
            raise ValueError(f"bbox_std_dev must be 4 numbers, got {bbox_std_dev!r}")
        if nms_method not in DETECTION_NMS_METHODS:
            raise ValueError(f"nms_method must be one of {DETECTION_NMS_METHODS}, "
                             f"got {nms_method!r}")
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = [float(v) for v in std]
        self.nms_method = nms_method
        # TensorFlow's NMS has data-dependent shapes: keep Keras' jit_compile="auto" from
        # compiling the model with XLA there (the JAX backend's shapes are static).
        self.supports_jit = not backend.get().DYNAMIC_SHAPES

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        rois = ops.cast(rois, "float32")
        probs = ops.cast(probs, "float32")
        deltas = ops.cast(deltas, "float32")
        num_classes = ops.shape(probs)[-1]

        # Best class of each ROI, its score and its class-specific deltas.
        seam = backend.get()
        class_ids = seam.argmax_int32(probs)  # [B, N]
        scores = ops.max(probs, axis=-1)  # [B, N]
        class_deltas = seam.batch_gather(deltas, class_ids, batch_dims=2)  # [B, N, 4]
        class_deltas = class_deltas * ops.convert_to_tensor(
            np.array(self.bbox_std_dev, dtype=np.float32))
        boxes = apply_box_deltas_graph(rois, class_deltas)

        # Clip to the real image inside the padded, molded image.
        meta = parse_image_meta_graph(image_meta)
        window = norm_boxes_graph(meta["window"], meta["image_shape"][:, :2])  # [B, 4]
        boxes = clip_boxes_graph(boxes, window)

        # Zero rows of ``rois`` are the proposal layer's padding, never detections.
        real_roi = ops.sum(ops.abs(rois), axis=-1) > 0
        keep = (class_ids > 0) & (scores >= self.min_confidence) & real_roi  # [B, N]
        # Per-class NMS and the final top-k: the backend's (mrcnn.backend), matterport's rows.
        return seam.detection_nms(boxes, class_ids, scores, keep, num_classes,
                                  self.max_instances, self.nms_threshold, self.nms_method)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.max_instances, 6)

    def get_config(self):
        config = super().get_config()
        config.update({
            "max_instances": self.max_instances,
            "min_confidence": self.min_confidence,
            "nms_threshold": self.nms_threshold,
            "bbox_std_dev": self.bbox_std_dev,
            "nms_method": self.nms_method,
        })
        return config
