"""Graph box helpers: the in-graph twins of the NumPy functions in mrcnn/utils.py.

Each ``foo_graph`` here computes what ``utils.foo`` computes, on tensors, so that it can run
inside a Keras layer or a ``tf.function``. Box layout everywhere is (y1, x1, y2, x2); deltas are
(dy, dx, log(dh), log(dw)) relative to the box centre and size.

Everything is ``keras.ops``; what Keras has no op for comes from the backend seam (mrcnn.backend).
"""
import logging

import numpy as np
from keras import ops

from mrcnn import backend

logger = logging.getLogger(__name__)


def unfoldable_zero(x, dtype):
    """A scalar 0 of ``dtype`` that no graph optimizer can fold (the backend's; see
    mrcnn.backend.tensorflow.unfoldable_zero for why the TensorFlow graph needs it)."""
    return backend.get().unfoldable_zero(x, dtype)


def apply_box_deltas_graph(boxes, deltas):
    """Apply refinement deltas to boxes.

    boxes: [..., (y1, x1, y2, x2)] float, any frame (pixels or normalized).
    deltas: [..., (dy, dx, log(dh), log(dw))] float, same leading dims as ``boxes``
        (or broadcastable to them), already multiplied by the std dev.

    Returns: [..., (y1, x1, y2, x2)] refined boxes, same frame and dtype as ``boxes``.
    """
    boxes = ops.convert_to_tensor(boxes)
    deltas = ops.cast(deltas, boxes.dtype)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    # ``* one`` (always 1.0) ends the chain y1 + 0.5 h + dy h, which grappler's arithmetic
    # optimizer otherwise regroups (AddOpsRewrite) in a traced graph: the refined box then
    # moved by an ulp (traced != eager on 150 of coffee's 256 proposals, and other
    # detections, #13).
    one = 1.0 - unfoldable_zero(height, height.dtype)
    center_y = (boxes[..., 0] + 0.5 * height) * one
    center_x = (boxes[..., 1] + 0.5 * width) * one
    center_y = center_y + deltas[..., 0] * height
    center_x = center_x + deltas[..., 1] * width
    height = height * ops.exp(deltas[..., 2])
    width = width * ops.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return ops.stack([y1, x1, y1 + height, x1 + width], axis=-1)


def clip_boxes_graph(boxes, window):
    """Clip boxes to lie inside a window.

    boxes: [..., N, (y1, x1, y2, x2)] float.
    window: [(y1, x1, y2, x2)] or [batch, (y1, x1, y2, x2)] in the same frame as ``boxes``; a
        [batch, 4] window is broadcast over the N axis of [batch, N, 4] boxes.

    Returns: boxes of the same shape and dtype, every coordinate clamped into the window.
    """
    boxes = ops.convert_to_tensor(boxes)
    window = ops.cast(window, boxes.dtype)
    if len(window.shape) == 2:
        # [batch, 4] -> [batch, 1, 4] so it broadcasts over the boxes of each image.
        window = ops.expand_dims(window, 1)
    wy1, wx1, wy2, wx2 = (window[..., i:i + 1] for i in range(4))
    y1 = ops.minimum(ops.maximum(boxes[..., 0:1], wy1), wy2)
    x1 = ops.minimum(ops.maximum(boxes[..., 1:2], wx1), wx2)
    y2 = ops.minimum(ops.maximum(boxes[..., 2:3], wy1), wy2)
    x2 = ops.minimum(ops.maximum(boxes[..., 3:4], wx1), wx2)
    return ops.concatenate([y1, x1, y2, x2], axis=-1)


def overlaps_graph(boxes1, boxes2):
    """IoU between every pair of boxes (no +1 on the sides: boxes in any continuous frame).

    boxes1: [N1, (y1, x1, y2, x2)] float.
    boxes2: [N2, (y1, x1, y2, x2)] float.

    Returns: [N1, N2] float IoU. A pair whose union is empty gives 0.
    """
    boxes1 = ops.convert_to_tensor(boxes1)
    boxes2 = ops.cast(boxes2, boxes1.dtype)
    b1 = ops.expand_dims(boxes1, 1)  # [N1, 1, 4]
    b2 = ops.expand_dims(boxes2, 0)  # [1, N2, 4]
    y1 = ops.maximum(b1[..., 0], b2[..., 0])
    x1 = ops.maximum(b1[..., 1], b2[..., 1])
    y2 = ops.minimum(b1[..., 2], b2[..., 2])
    x2 = ops.minimum(b1[..., 3], b2[..., 3])
    intersection = ops.maximum(y2 - y1, 0.0) * ops.maximum(x2 - x1, 0.0)
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    safe_union = ops.where(union > 0, union, ops.ones_like(union))
    return ops.where(union > 0, intersection / safe_union, ops.zeros_like(union))


def box_refinement_graph(box, gt_box):
    """Deltas that turn ``box`` into ``gt_box`` (inverse of apply_box_deltas_graph).

    box: [..., (y1, x1, y2, x2)] float, positive sides.
    gt_box: [..., (y1, x1, y2, x2)] float, same shape and frame.

    Returns: [..., (dy, dx, log(dh), log(dw))] float32 (not divided by any std dev).
    """
    box = ops.cast(box, "float32")
    gt_box = ops.cast(gt_box, "float32")
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    center_y = box[..., 0] + 0.5 * height
    center_x = box[..., 1] + 0.5 * width
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    gt_center_y = gt_box[..., 0] + 0.5 * gt_height
    gt_center_x = gt_box[..., 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = ops.log(gt_height / height)
    dw = ops.log(gt_width / width)
    return ops.stack([dy, dx, dh, dw], axis=-1)


def _shape_scale(shape, boxes_rank):
    """(h, w) -> ([h - 1, w - 1, h - 1, w - 1] float32, [0, 0, 1, 1] float32).

    A [batch, 2] shape gives a [batch, 1, ..., 4] scale that broadcasts over the box axes of
    [batch, ..., 4] boxes of rank ``boxes_rank``.
    """
    shape = ops.cast(shape, "float32")
    h = shape[..., 0:1]
    w = shape[..., 1:2]
    scale = ops.concatenate([h, w, h, w], axis=-1) - 1.0
    if len(scale.shape) == 2:
        for _ in range(boxes_rank - 2):
            scale = ops.expand_dims(scale, 1)
    shift = ops.convert_to_tensor(np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32))
    return scale, shift


def norm_boxes_graph(boxes, shape):
    """Pixel boxes -> normalized boxes.

    boxes: [..., (y1, x1, y2, x2)] pixels (y2, x2 exclusive).
    shape: (height, width) of the image, ints or a [2] tensor (extra entries such as the channel
        count are ignored). A [batch, 2] tensor is also accepted for [batch, ..., 4] boxes (one
        shape per image).

    Returns: [..., (y1, x1, y2, x2)] float32, normalized: (boxes - [0, 0, 1, 1]) / [h-1, w-1, h-1, w-1].
    """
    boxes = ops.cast(boxes, "float32")
    scale, shift = _shape_scale(shape, len(boxes.shape))
    return (boxes - shift) / scale


def denorm_boxes_graph(boxes, shape):
    """Normalized boxes -> pixel boxes (inverse of norm_boxes_graph, rounded).

    boxes: [..., (y1, x1, y2, x2)] float, normalized.
    shape: (height, width) as in norm_boxes_graph.

    Returns: [..., (y1, x1, y2, x2)] int32 pixels (y2, x2 exclusive), rounded half to even.
    """
    boxes = ops.cast(boxes, "float32")
    scale, shift = _shape_scale(shape, len(boxes.shape))
    return ops.cast(ops.round(boxes * scale + shift), "int32")


def trim_zeros_graph(boxes, name="trim_zeros"):
    """Drop all-zero rows (padding) from a box tensor.

    boxes: [N, 4] (or [N, K]) float.

    Returns: (boxes [M, 4] with the zero rows removed, non_zeros [N] bool marking kept rows).
    """
    backend.require("tensorflow", "trim_zeros_graph (a tensor of data-dependent size)")
    seam = backend.get()
    boxes = ops.convert_to_tensor(boxes)
    non_zeros = ops.sum(ops.abs(boxes), axis=1) > 0
    boxes = seam.boolean_mask(boxes, non_zeros, name=name)
    return boxes, non_zeros


def parse_image_meta_graph(meta):
    """Split image meta rows into their parts (layout of mrcnn.data.compose_image_meta).

    meta: [batch, 12 + NUM_CLASSES] float.

    Returns a dict of float32 tensors: image_id [batch], original_image_shape [batch, 3],
    image_shape [batch, 3], window [batch, (y1, x1, y2, x2)] pixels of the molded image,
    scale [batch], active_class_ids [batch, NUM_CLASSES].
    """
    meta = ops.cast(meta, "float32")
    return {
        "image_id": meta[:, 0],
        "original_image_shape": meta[:, 1:4],
        "image_shape": meta[:, 4:7],
        "window": meta[:, 7:11],
        "scale": meta[:, 11],
        "active_class_ids": meta[:, 12:],
    }


def generate_anchors_graph(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one pyramid level, in pixels (twin of utils.generate_anchors).

    scales: anchor side(s) (sqrt of the area) in pixels: a number or a sequence.
    ratios: sequence of width / height ratios.
    shape: (height, width) of the feature map, ints or int tensors (dynamic).
    feature_stride: int, pixels per feature map cell.
    anchor_stride: int, anchors at every ``anchor_stride``-th cell.

    Returns: [cells * len(scales) * len(ratios), (y1, x1, y2, x2)] float32 pixels, with
    cells = ceil(h / anchor_stride) * ceil(w / anchor_stride). Centres at
    (row * feature_stride, col * feature_stride), row-major over cells; within a cell the
    (scale, ratio) combinations follow np.meshgrid(scales, ratios) flattened; height is
    scale / sqrt(ratio), width scale * sqrt(ratio).
    """
    # The sizes are static: compute them in NumPy, in float64 like the NumPy twin.
    scale_grid, ratio_grid = np.meshgrid(np.asarray(scales, dtype=np.float64).reshape(-1),
                                         np.asarray(ratios, dtype=np.float64).reshape(-1))
    scale_grid, ratio_grid = scale_grid.reshape(-1), ratio_grid.reshape(-1)
    half_h = ops.convert_to_tensor(
        (0.5 * scale_grid / np.sqrt(ratio_grid)).astype(np.float32).reshape(1, -1))  # [1, K]
    half_w = ops.convert_to_tensor(
        (0.5 * scale_grid * np.sqrt(ratio_grid)).astype(np.float32).reshape(1, -1))
    rows = ops.cast(ops.arange(0, shape[0], anchor_stride) * feature_stride, "float32")
    cols = ops.cast(ops.arange(0, shape[1], anchor_stride) * feature_stride, "float32")
    centre_y, centre_x = ops.meshgrid(rows, cols, indexing="ij")  # [ny, nx]
    centre_y = ops.reshape(centre_y, (-1, 1))  # [cells, 1]
    centre_x = ops.reshape(centre_x, (-1, 1))
    boxes = ops.stack(
        [centre_y - half_h, centre_x - half_w, centre_y + half_h, centre_x + half_w], axis=-1)
    return ops.reshape(boxes, (-1, 4))


def generate_pyramid_anchors_graph(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of every pyramid level, concatenated (twin of utils.generate_pyramid_anchors).

    scales: one anchor scale (pixels) per level, e.g. (32, 64, 128, 256, 512).
    ratios: width / height ratios used at every level, e.g. [0.5, 1, 2].
    feature_shapes: one (height, width) per level: ints or int tensors (e.g. ``ops.shape(P2)[1:3]``).
    feature_strides: one int stride per level, e.g. [4, 8, 16, 32, 64].
    anchor_stride: int, anchors at every ``anchor_stride``-th cell.

    Returns: [num_anchors, (y1, x1, y2, x2)] float32 pixels, level by level in the given order.
    """
    if not (len(scales) == len(feature_shapes) == len(feature_strides)):
        raise ValueError(
            f"scales, feature_shapes and feature_strides need one entry per level, got "
            f"{len(scales)}, {len(feature_shapes)} and {len(feature_strides)}")
    levels = [
        generate_anchors_graph(scale, ratios, shape, stride, anchor_stride)
        for scale, shape, stride in zip(scales, feature_shapes, feature_strides)
    ]
    return ops.concatenate(levels, axis=0)


def nms_graph(*args, **kwargs):
    """``tf.image.non_max_suppression`` in plain TensorFlow ops (TensorFlow backend only);
    see mrcnn.backend.tensorflow.nms_graph."""
    backend.require("tensorflow", "nms_graph")
    from mrcnn.backend.tensorflow import nms_graph as tf_nms_graph
    return tf_nms_graph(*args, **kwargs)
