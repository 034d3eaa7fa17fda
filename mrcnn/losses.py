"""The five Mask R-CNN training losses as pure functions of tensors.

Every function takes batched tensors (first axis = images), computes in float32
whatever the input dtype (so a mixed precision policy does not degrade the
loss), and returns a float32 scalar. Divisors are clamped to at least 1 and
masked terms are multiplied by 0 rather than dropped, so a batch with nothing
to learn from gives exactly 0.0 with finite (zero) gradients, and the graph
stays connected to the predictions.

The names match the loss outputs and metrics of matterport/Mask_RCNN:
``rpn_class_loss``, ``rpn_bbox_loss``, ``mrcnn_class_loss``,
``mrcnn_bbox_loss``, ``mrcnn_mask_loss``; and ``mrcnn_keypoint_loss`` for Keypoint R-CNN.
"""
import logging

from keras import ops

logger = logging.getLogger(__name__)

__all__ = [
    "smooth_l1",
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
    "mrcnn_keypoint_loss",
    "LOSS_FUNCTIONS",
]


def _f32(x):
    return ops.cast(x, "float32")


def _safe_mean(total, count):
    """total / max(count, 1): both scalars; count a float32 number of terms."""
    return total / ops.maximum(count, 1.0)


def smooth_l1(y_true, y_pred):
    """Element-wise smooth L1 (Huber with delta 1).

    y_true, y_pred: tensors of the same (broadcastable) shape, any float dtype.

    Returns: float32 tensor of that shape, ``0.5 * d**2`` where ``|d| < 1`` and
    ``|d| - 0.5`` elsewhere, with ``d = y_true - y_pred``.
    """
    diff = ops.abs(_f32(y_true) - _f32(y_pred))
    small = _f32(ops.less(diff, 1.0))
    return small * 0.5 * ops.square(diff) + (1.0 - small) * (diff - 0.5)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor classifier loss (object vs background).

    rpn_match: [batch, anchors, 1] int (or float) anchor labels: 1 positive,
        -1 negative, 0 neutral (ignored).
    rpn_class_logits: [batch, anchors, 2] logits, (background, foreground).

    Returns: float32 scalar, the mean sparse softmax cross-entropy over the
    non-neutral anchors of the whole batch (target 1 for positives, 0 for
    negatives); 0.0 when every anchor is neutral.
    """
    match = ops.squeeze(rpn_match, axis=-1)
    labels = ops.cast(ops.equal(match, 1), "int32")
    used = _f32(ops.not_equal(match, 0))
    ce = ops.sparse_categorical_crossentropy(labels, _f32(rpn_class_logits), from_logits=True)
    return _safe_mean(ops.sum(ce * used), ops.sum(used))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Anchor box refinement loss.

    target_bbox: [batch, max_positives, (dy, dx, log(dh), log(dw))] float, the
        refinement targets of each image's positive anchors, packed in anchor
        order (row i belongs to the i-th positive anchor), zero padded. This is
        the ``rpn_bbox`` array of :func:`mrcnn.targets.build_rpn_targets`.
    rpn_match: [batch, anchors, 1] int anchor labels (1 positive, -1 negative, 0 neutral).
    rpn_bbox: [batch, anchors, (dy, dx, log(dh), log(dw))] predicted deltas.

    Returns: float32 scalar, smooth L1 between each positive anchor's prediction
    and its target row, averaged over positives x 4 coordinates (the mean of the
    per-coordinate losses, as matterport); 0.0 without positives. Positive
    anchors ranked beyond ``max_positives`` in their image have no target row
    and are ignored.
    """
    target_bbox = _f32(target_bbox)
    max_rows = ops.shape(target_bbox)[1]
    positive = ops.cast(ops.equal(ops.squeeze(rpn_match, axis=-1), 1), "int32")   # [B, A]
    # Rank of each positive anchor among its image's positives: 0, 1, 2, ...
    rank = ops.cumsum(positive, axis=1) - 1
    has_row = ops.logical_and(ops.equal(positive, 1), ops.less(rank, max_rows))
    rank = ops.clip(rank, 0, max_rows - 1)
    matched = ops.take_along_axis(target_bbox, ops.expand_dims(rank, -1), axis=1)  # [B, A, 4]
    weight = ops.expand_dims(_f32(has_row), -1)
    loss = smooth_l1(matched, rpn_bbox) * weight
    return _safe_mean(ops.sum(loss), 4.0 * ops.sum(weight))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier head loss.

    target_class_ids: [batch, num_rois] int class ids (0 = background, also on
        zero-padded ROIs, which count as background examples like matterport).
    pred_class_logits: [batch, num_rois, num_classes] logits.
    active_class_ids: [batch, num_classes] 1 for classes of the image's source
        dataset, 0 otherwise (from the image meta).

    Returns: float32 scalar, the sparse softmax cross-entropy of the ROIs whose
    predicted (arg-max) class is active in their image, summed and divided by
    the number of such ROIs (matterport semantics); 0.0 when there are none.
    """
    logits = _f32(pred_class_logits)
    labels = ops.cast(target_class_ids, "int32")
    pred_ids = ops.argmax(logits, axis=-1)                                        # [B, N]
    active = _f32(active_class_ids)
    pred_active = ops.take_along_axis(active, ops.cast(pred_ids, "int32"), axis=1)  # [B, N]
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return _safe_mean(ops.sum(ce * pred_active), ops.sum(pred_active))


def _true_class_index(target_class_ids, rank):
    """[B, N] class ids -> int32 index of shape [B, N, 1, ..., 1] (rank dims in all)."""
    index = ops.maximum(ops.cast(target_class_ids, "int32"), 0)
    for _ in range(rank - 2):
        index = ops.expand_dims(index, -1)
    return index


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Box head refinement loss.

    target_bbox: [batch, num_rois, (dy, dx, log(dh), log(dw))] float targets
        (already divided by BBOX_STD_DEV).
    target_class_ids: [batch, num_rois] int class ids; > 0 marks a positive ROI.
    pred_bbox: [batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))] deltas.

    Returns: float32 scalar, smooth L1 between the true class's predicted deltas
    and the target on positive ROIs, averaged over positives x 4 coordinates
    (matterport); 0.0 without positives.
    """
    index = ops.expand_dims(_true_class_index(target_class_ids, 3), -1)       # [B, N, 1, 1]
    pred = ops.squeeze(ops.take_along_axis(_f32(pred_bbox), index, axis=2), axis=2)  # [B, N, 4]
    positive = ops.expand_dims(_f32(ops.greater(target_class_ids, 0)), -1)   # [B, N, 1]
    loss = smooth_l1(target_bbox, pred) * positive
    return _safe_mean(ops.sum(loss), 4.0 * ops.sum(positive))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Mask head loss.

    target_masks: [batch, num_rois, height, width] float (or bool) in {0, 1}.
    target_class_ids: [batch, num_rois] int class ids; > 0 marks a positive ROI.
    pred_masks: [batch, num_rois, height, width, num_classes] float sigmoid
        probabilities; a static last dimension of 1 is a class-agnostic head
        (``Config.CLASS_AGNOSTIC_MASKS``) whose one channel serves every class.

    Returns: float32 scalar, the per-pixel binary cross-entropy between the
    target and the true class's mask channel (channel 0 of a class-agnostic
    head), averaged over the pixels of the positive ROIs; 0.0 without positives.
    """
    pred_masks = _f32(pred_masks)
    if pred_masks.shape[-1] == 1:  # class-agnostic: one mask per ROI
        pred = pred_masks[..., 0]                                               # [B, N, h, w]
    else:
        index = _true_class_index(target_class_ids, 5)                          # [B, N, 1, 1, 1]
        pred = ops.squeeze(ops.take_along_axis(pred_masks, index, axis=4), axis=4)
    target = _f32(target_masks)
    bce = ops.binary_crossentropy(target, pred, from_logits=False)
    positive = _f32(ops.greater(target_class_ids, 0))                           # [B, N]
    loss = bce * positive[:, :, None, None]
    pixels = _f32(ops.shape(target)[2] * ops.shape(target)[3])
    return _safe_mean(ops.sum(loss), ops.sum(positive) * pixels)


def mrcnn_keypoint_loss(target_keypoints, keypoint_weights, pred_logits):
    """Keypoint head loss (He et al. 2017, section 5).

    target_keypoints: [batch, num_rois, K] int, the target cell ``row * m + col`` of each
        keypoint in its ROI's m x m heatmap (DetectionTargetLayer).
    keypoint_weights: [batch, num_rois, K] float (or bool), 1 for labelled keypoints inside
        positive ROIs, 0 for the others (their cell is ignored).
    pred_logits: [batch, num_rois, m, m, K] heatmap logits of the keypoint head.

    Returns: float32 scalar, the softmax cross-entropy over the m * m cells of each weighted
    keypoint's heatmap, averaged over the weighted keypoints of the batch (Detectron2's
    normalization); 0.0 when no keypoint is weighted.
    """
    logits = _f32(pred_logits)
    shape = ops.shape(logits)
    # [B, N, m, m, K] -> [B, N, K, m * m]: one distribution per keypoint.
    logits = ops.reshape(ops.transpose(logits, (0, 1, 4, 2, 3)),
                         (shape[0], shape[1], shape[4], shape[2] * shape[3]))
    labels = ops.cast(target_keypoints, "int32")
    weights = _f32(keypoint_weights)
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)   # [B, N, K]
    return _safe_mean(ops.sum(ce * weights), ops.sum(weights))


# Loss name (the model's output / metric name) -> function: the five Mask R-CNN losses.
# mrcnn_keypoint_loss joins them only in keypoint models (MaskRCNNTrainer).
LOSS_FUNCTIONS = {
    "rpn_class_loss": rpn_class_loss,
    "rpn_bbox_loss": rpn_bbox_loss,
    "mrcnn_class_loss": mrcnn_class_loss,
    "mrcnn_bbox_loss": mrcnn_bbox_loss,
    "mrcnn_mask_loss": mrcnn_mask_loss,
}
