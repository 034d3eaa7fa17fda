"""ProposalLayer: RPN scores and deltas + anchors -> the top proposals after NMS, batched."""
import logging

import keras
import numpy as np
from keras import ops

from mrcnn import backend
from mrcnn.ops import apply_box_deltas_graph

logger = logging.getLogger(__name__)

NMS_METHODS = ("standard", "combined", "padded", "graph")


def batched_nms(boxes, scores, max_output_size, iou_threshold, method="standard"):
    """Greedy NMS on every image of a batch, one class: the backend's (mrcnn.backend).

    boxes: [batch, N, (y1, x1, y2, x2)] float32, y1 <= y2 and x1 <= x2.
    scores: [batch, N] float32.
    max_output_size: int, rows kept per image.
    iou_threshold: float, a box whose IoU with a kept, higher scoring box exceeds it is dropped.
    method: "standard" (default, matterport's tf.image.non_max_suppression: among equal
        scores the lower index wins), "combined", "padded" or "graph" (TensorFlow; see
        mrcnn.backend.tensorflow.batched_nms). The JAX backend has "standard" and "graph",
        both the same greedy selections with static shapes.

    Returns: (boxes [batch, max_output_size, 4] float32, sorted by score and zero-padded,
    valid [batch] int32 count of real rows per image).
    """
    if method not in NMS_METHODS:
        raise ValueError(f"nms method must be one of {NMS_METHODS}, got {method!r}")
    return backend.get().batched_nms(boxes, scores, max_output_size, iou_threshold, method)


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Turn RPN outputs into region proposals: top scores, refine, clip, NMS, pad.

    Args:
        proposal_count: int, proposals returned per image (POST_NMS_ROIS_TRAINING / _INFERENCE).
        nms_threshold: float in [0, 1], the NMS IoU threshold (RPN_NMS_THRESHOLD).
        pre_nms_limit: int, anchors kept by score before refinement and NMS (PRE_NMS_LIMIT).
        rpn_bbox_std_dev: 4 floats, the deltas are multiplied by it (RPN_BBOX_STD_DEV).
        nms_method: "standard" (default, matterport's tf.image.non_max_suppression: ties in
            index order), "combined", "padded" or "graph"; see batched_nms.

    Inputs: [rpn_probs, rpn_bbox, anchors]
        rpn_probs: [batch, num_anchors, (bg, fg)] float, softmax probabilities.
        rpn_bbox: [batch, num_anchors, (dy, dx, log(dh), log(dw))] float, divided by the std dev.
        anchors: [batch, num_anchors, (y1, x1, y2, x2)] float32, normalized.

    Output: [batch, proposal_count, (y1, x1, y2, x2)] float32, normalized, clipped to [0, 1],
    sorted by foreground score, zero rows at the end when fewer boxes survive NMS.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit=6000,
                 rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), nms_method="standard", name="ROI",
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        if int(proposal_count) < 1:
            raise ValueError(f"proposal_count must be >= 1, got {proposal_count!r}")
        if int(pre_nms_limit) < 1:
            raise ValueError(f"pre_nms_limit must be >= 1, got {pre_nms_limit!r}")
        if not 0.0 <= float(nms_threshold) <= 1.0:
            raise ValueError(f"nms_threshold must be in [0, 1], got {nms_threshold!r}")
        std = np.asarray(rpn_bbox_std_dev, dtype=np.float32).reshape(-1)
        if std.shape != (4,):
            raise ValueError(f"rpn_bbox_std_dev must be 4 numbers, got {rpn_bbox_std_dev!r}")
        if nms_method not in NMS_METHODS:
            raise ValueError(f"nms_method must be one of {NMS_METHODS}, got {nms_method!r}")
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = [float(v) for v in std]
        self.nms_method = nms_method
        # TensorFlow's NMS has data-dependent shapes: keep Keras' jit_compile="auto" from
        # compiling the model with XLA there (the JAX backend's shapes are static).
        self.supports_jit = not backend.get().DYNAMIC_SHAPES

    def call(self, inputs):
        # Proposals are treated as constants (approximate joint training, as in the
        # paper): no gradient flows from the heads back through the box decoding/NMS.
        rpn_probs, rpn_bbox, anchors = [ops.stop_gradient(x) for x in inputs]
        scores = ops.cast(rpn_probs[..., 1], "float32")  # [B, A]
        deltas = ops.cast(rpn_bbox, "float32") * ops.convert_to_tensor(
            np.array(self.rpn_bbox_std_dev, dtype=np.float32))
        anchors = ops.cast(anchors, "float32")

        num_anchors = ops.shape(scores)[1]
        k = (min(self.pre_nms_limit, num_anchors) if isinstance(num_anchors, int)
             else ops.minimum(self.pre_nms_limit, num_anchors))
        seam = backend.get()
        scores, top = seam.top_k(scores, k)  # [B, k]
        deltas = seam.batch_gather(deltas, top)  # [B, k, 4]
        anchors = seam.batch_gather(anchors, top)

        boxes = apply_box_deltas_graph(anchors, deltas)
        boxes = ops.clip(boxes, 0.0, 1.0)
        proposals, _ = batched_nms(
            boxes, scores, self.proposal_count, self.nms_threshold, method=self.nms_method)
        return proposals

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update({
            "proposal_count": self.proposal_count,
            "nms_threshold": self.nms_threshold,
            "pre_nms_limit": self.pre_nms_limit,
            "rpn_bbox_std_dev": self.rpn_bbox_std_dev,
            "nms_method": self.nms_method,
        })
        return config
