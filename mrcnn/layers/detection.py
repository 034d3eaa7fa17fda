"""DetectionLayer: refined, per-class NMS'd final detections for a batch (inference graph)."""
import logging

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mrcnn.ops import apply_box_deltas_graph, clip_boxes_graph, nms_graph, norm_boxes_graph
from mrcnn.ops import parse_image_meta_graph

logger = logging.getLogger(__name__)

# Score given to the (ROI, class) pairs that must not come out of NMS: below the NMS score
# threshold, which is itself below any probability, so a min_confidence of 0 keeps score-0 ROIs.
_DROPPED_SCORE = -1.0
_NMS_SCORE_THRESHOLD = -0.5

DETECTION_NMS_METHODS = ("standard", "combined", "graph")


def _refine_one(boxes, class_ids, scores, keep_mask, max_instances, nms_threshold,
                nms=tf.image.non_max_suppression):
    """matterport's per-class NMS and final top-k on one image.

    boxes: [N, 4] float32 refined, clipped. class_ids: [N] int32 arg-max classes.
    scores: [N] float32. keep_mask: [N] bool, the candidates (class > 0, score >= threshold).
    nms: the NMS function (mrcnn.ops.nms_graph gives the same indices as the default).

    Returns [max_instances, 6] float32 (y1, x1, y2, x2, class_id, score), zero-padded.
    For each class present (tf.unique order), tf.image.non_max_suppression keeps up to
    max_instances of its candidates (equal scores: lower ROI index first); the union, sorted
    by ROI index, is cut to the max_instances best by tf.math.top_k (equal scores: lower ROI
    index first). The same calls as matterport's refine_detections_graph, so the same rows
    in the same order.
    """
    keep = tf.cast(tf.where(keep_mask)[:, 0], tf.int32)  # ascending ROI indices
    pre_classes = tf.gather(class_ids, keep)
    pre_boxes = tf.gather(boxes, keep)
    pre_scores = tf.gather(scores, keep)

    def one_class(class_id):
        ixs = tf.cast(tf.where(tf.equal(pre_classes, class_id))[:, 0], tf.int32)
        selected = nms(
            tf.gather(pre_boxes, ixs), tf.gather(pre_scores, ixs),
            max_output_size=max_instances, iou_threshold=nms_threshold)
        kept = tf.gather(keep, tf.gather(ixs, selected))
        return tf.pad(kept, [[0, max_instances - tf.shape(kept)[0]]], constant_values=-1)

    per_class = tf.map_fn(one_class, tf.unique(pre_classes)[0],
                          fn_output_signature=tf.TensorSpec([max_instances], tf.int32))
    nms_keep = tf.reshape(per_class, [-1])
    nms_keep = tf.sort(tf.boolean_mask(nms_keep, nms_keep > -1))
    kept_scores = tf.gather(scores, nms_keep)
    count = tf.minimum(tf.shape(kept_scores)[0], max_instances)
    final = tf.gather(nms_keep, tf.math.top_k(kept_scores, k=count, sorted=True).indices)
    detections = tf.concat([
        tf.gather(boxes, final),
        tf.cast(tf.gather(class_ids, final), tf.float32)[:, None],
        tf.gather(scores, final)[:, None]], axis=1)
    return tf.pad(detections, [[0, max_instances - count], [0, 0]])


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
            and final top-k, equal scores in ROI index order (see _refine_one). "combined":
            one tf.image.combined_non_max_suppression for the batch, which orders equal scores
            differently (other detections when scores tie; the same otherwise). "graph":
            the same detections as "standard" from mrcnn.ops.nms_graph (plain tensor ops
            instead of the NMS kernel), for runtimes whose NMS kernel differs (TFLite).

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
        # Data-dependent shapes (NMS / per-level partitions): keep Keras' jit_compile="auto"
        # from compiling the model with XLA.
        self.supports_jit = False

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        rois = ops.cast(rois, "float32")
        probs = ops.cast(probs, "float32")
        deltas = ops.cast(deltas, "float32")
        num_classes = ops.shape(probs)[-1]

        # Best class of each ROI, its score and its class-specific deltas.
        # tf.argmax, not keras.ops.argmax: Keras adds a negative-zero fix (Bitcast,
        # BitwiseAnd) that ONNX and TFLite cannot convert; probabilities are never -0.
        class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)  # [B, N]
        scores = ops.max(probs, axis=-1)  # [B, N]
        class_deltas = tf.gather(deltas, class_ids, batch_dims=2)  # [B, N, 4]
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
        if self.nms_method in ("standard", "graph"):
            max_instances, nms_threshold = self.max_instances, self.nms_threshold
            nms = nms_graph if self.nms_method == "graph" else tf.image.non_max_suppression

            def one_image(args):
                return _refine_one(*args, max_instances, nms_threshold, nms)

            return tf.map_fn(one_image, (boxes, class_ids, scores, keep),
                             fn_output_signature=tf.TensorSpec([max_instances, 6], tf.float32))

        # "combined": one score column per class, the ROI's score under its arg-max class
        # when kept, a below-threshold value everywhere else, so NMS runs per class.
        one_hot = ops.one_hot(class_ids, num_classes, dtype="float32") > 0.5  # [B, N, C]
        keep = ops.expand_dims(keep, -1) & one_hot
        class_scores = ops.where(keep, ops.expand_dims(scores, -1), _DROPPED_SCORE)

        nms_boxes, nms_scores, nms_classes, valid = tf.image.combined_non_max_suppression(
            ops.expand_dims(boxes, 2),  # [B, N, 1, 4]: the same box for every class
            class_scores,
            max_output_size_per_class=self.max_instances,
            max_total_size=self.max_instances,
            iou_threshold=self.nms_threshold,
            score_threshold=_NMS_SCORE_THRESHOLD,
            pad_per_class=False,
            clip_boxes=False,
        )
        detections = ops.concatenate(
            [nms_boxes, ops.expand_dims(nms_classes, -1), ops.expand_dims(nms_scores, -1)],
            axis=-1)  # [B, max_instances, 6]
        rows = ops.arange(self.max_instances, dtype="int32")
        real = ops.expand_dims(rows, 0) < ops.expand_dims(ops.cast(valid, "int32"), 1)
        return ops.where(ops.expand_dims(real, -1), detections, ops.zeros_like(detections))

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
