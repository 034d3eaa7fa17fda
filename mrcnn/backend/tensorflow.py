"""The TensorFlow side of the backend seam (see mrcnn/backend/__init__.py).

Everything here is what the graph needs from TensorFlow itself: its NMS kernels and their
plain-op twin ``nms_graph``, crop-and-resize, batched gathers, the fused optimizer update,
tf.distribute's replica sums and graph freezing. The code is the project's TensorFlow code as
it was before the seam existed, moved here unchanged, so that TensorFlow results stay bit for
bit what they were (the parity, golden and export tests hold them).

Coordinates: boxes are (y1, x1, y2, x2), normalized unless a docstring says pixels.
"""
import logging

import numpy as np
import tensorflow as tf
from keras import ops

logger = logging.getLogger(__name__)

NAME = "tensorflow"

# NMS, the level partition and ValidDetectionBoxes make tensors of data-dependent sizes:
# Keras' jit_compile="auto" must not compile the model with XLA, and compile() runs the
# training step as a plain tf.function.
DYNAMIC_SHAPES = True
# mrcnn.winograd's 3x3 convolutions (TensorFlow ops) are available.
WINOGRAD = True

PROPOSAL_NMS_METHODS = ("standard", "combined", "padded", "graph")
DETECTION_NMS_METHODS = ("standard", "combined", "graph")

# Score given to the (ROI, class) pairs that must not come out of NMS: below the NMS score
# threshold, which is itself below any probability, so a min_confidence of 0 keeps score-0 ROIs.
_DROPPED_SCORE = -1.0
_NMS_SCORE_THRESHOLD = -0.5


def unfoldable_zero(x, dtype):
    """A scalar 0 of ``dtype`` that no graph optimizer can fold: ``any(|x| < 0)``, which never
    holds (NaN included), but depends on the data.

    Adding it to a constant divisor, or multiplying by ``1 - unfoldable_zero``, keeps an
    expression in the order it is written: grappler's constant folding and arithmetic
    optimizer, and the TFLite converter, otherwise rewrite float expressions in traced graphs
    and change their rounding (#13: RoIAlign samples of border boxes, box refinement).
    x: any float tensor (its size only costs one reduction). dtype: the result's dtype.
    """
    return tf.cast(tf.reduce_any(tf.abs(x) < 0), dtype)

# ---------------------------------------------------------------------------------------------
# Gathers and reductions Keras has no op for (or whose Keras op adds nodes exports cannot take)

def batch_gather(values, indices, batch_dims=1):
    """``values[b, indices[b, ...]]``: tf.gather with ``batch_dims`` leading batch axes.

    values: [B, (B2,) N, ...]; indices: [B, (B2,) T] int32 in [0, N).
    Returns: [B, (B2,) T, ...], values' dtype.
    """
    return tf.gather(values, indices, batch_dims=batch_dims)


def argmax_int32(x):
    """[..., C] -> [...] int32 arg-max over the last axis (first maximum on ties).

    tf.argmax, not keras.ops.argmax: Keras adds a negative-zero fix (Bitcast, BitwiseAnd)
    that ONNX and TFLite cannot convert; probabilities are never -0.
    """
    return tf.argmax(x, axis=-1, output_type=tf.int32)


def top_k(x, k):
    """(values, indices int32) of the k largest along the last axis, sorted, ties lower index first."""
    return tf.math.top_k(x, k=k, sorted=True)


def boolean_mask(x, mask, name=None):
    """Rows of x where mask holds: [N, ...] and [N] bool -> [M, ...] (a dynamic shape)."""
    return tf.boolean_mask(x, mask, name=name)


def l2_loss(x):
    """sum(x ** 2) / 2 as a float scalar (TF's fused L2Loss kernel)."""
    return tf.nn.l2_loss(x)


def _canonical_boxes(boxes):
    """[n, (y1, x1, y2, x2)] -> [n, (ymin, xmin, ymax, xmax, area)] float32, TF NMS's order."""
    y1, x1, y2, x2 = (boxes[:, k] for k in range(4))
    ymin, ymax = tf.minimum(y1, y2), tf.maximum(y1, y2)
    xmin, xmax = tf.minimum(x1, x2), tf.maximum(x1, x2)
    return tf.stack([ymin, xmin, ymax, xmax, (ymax - ymin) * (xmax - xmin)], axis=1)


def _nms_iou(a, b):
    """IoU of [m, 5] and [k, 5] canonical boxes: [m, k], TF's NMS formula, 0 for empty boxes."""
    a, b = a[:, None, :], b[None, :, :]
    inter = (tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
             * tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]),
                          0.0))
    iou = inter / (a[..., 4] + b[..., 4] - inter)
    return tf.where((a[..., 4] <= 0.0) | (b[..., 4] <= 0.0), tf.zeros_like(iou), iou)


def nms_graph(boxes, scores, max_output_size, iou_threshold, score_threshold=float("-inf"),
              tile=256):
    """``tf.image.non_max_suppression`` in plain tensor ops: the same indices, in the same order.

    TFLite's NON_MAX_SUPPRESSION_V4 kernel differs from TensorFlow's: it visits equal scores
    in heap order instead of index order, and it selects a zero-area box again and again
    (its IoU with itself is 0), which filled whole outputs with one clipped proposal (#13).
    This version uses only TopK, Gather, element-wise ops and while loops, which every
    runtime (TFLite, ONNX) runs as TensorFlow does.

    boxes: [N, (y1, x1, y2, x2)] float32, any frame; corners in either order (as TF).
    scores: [N] float32.
    max_output_size: int (or scalar int32 tensor), the most indices returned.
    iou_threshold: float, a candidate whose IoU with a selected box exceeds it is dropped.
    score_threshold: float, only scores above it are candidates.
    tile: candidates handled per step (a speed setting; the result does not depend on it).

    Returns: [K] int32 indices into ``boxes``, K <= max_output_size, by decreasing score,
    equal scores lower index first. Greedy, as TF: a candidate is selected unless a selected,
    better-ranked box overlaps it by IoU > iou_threshold; the IoU is TF's float32 formula
    (intersection / (area_i + area_j - intersection), 0 when either area is <= 0), so a tie
    at the threshold is decided as TF decides it.

    The ranked candidates are taken ``tile`` at a time: first every candidate overlapping a
    box already selected is dropped, then the greedy choice inside the tile is the fixed
    point of keep[c] = live[c] and no kept c' < c overlaps c, reached by iterating from
    keep = live (the system is triangular, so the fixed point is unique and is the greedy
    answer). About 6x faster on TFLite than one selection per loop step.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be an integer >= 1, got {tile!r}")
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    n = tf.shape(scores)[0]
    # TopK is stable: equal scores come out lower index first, as TF's NMS visits them.
    order = tf.math.top_k(scores, k=n, sorted=True).indices
    num_tiles = (n + tile - 1) // tile
    pad = num_tiles * tile - n
    # [num_tiles, tile, 5] and [num_tiles, tile]: the candidates in rank order, tile by tile.
    ranked = tf.reshape(tf.pad(_canonical_boxes(tf.gather(boxes, order)), [[0, pad], [0, 0]]),
                        [num_tiles, tile, 5])
    alive = tf.reshape(tf.pad(tf.gather(scores, order) > score_threshold, [[0, pad]]),
                       [num_tiles, tile])
    max_out = tf.cast(max_output_size, tf.int32)
    threshold = tf.constant(iou_threshold, tf.float32)
    # Selected boxes so far (zero rows have area 0, so they suppress nothing).
    slots = tf.range(max_out + tile)
    earlier = tf.range(tile)[None, :] < tf.range(tile)[:, None]  # [c, c']: c' ranks first

    def more(k, count, selected, keep_all):
        return (k < num_tiles) & (count < max_out)

    def step(k, count, selected, keep_all):
        candidates = tf.gather(ranked, k)
        live = tf.gather(alive, k) & tf.logical_not(
            tf.reduce_any(_nms_iou(candidates, selected) > threshold, axis=1))
        overlaps = (_nms_iou(candidates, candidates) > threshold) & earlier

        def settle(keep, _):
            return live & tf.logical_not(tf.reduce_any(overlaps & keep[None, :], axis=1)), keep

        keep, _ = tf.while_loop(lambda keep, previous: tf.reduce_any(keep != previous),
                                settle, settle(live, live))
        kept = tf.gather(candidates, tf.cast(tf.where(keep)[:, 0], tf.int32))
        m = tf.shape(kept)[0]
        # Append the kept boxes after the count selected so far (row m of the pad: zeros).
        fill = tf.gather(tf.pad(kept, [[0, 1], [0, 0]]), tf.clip_by_value(slots - count, 0, m))
        selected = tf.where(((slots >= count) & (slots < count + m))[:, None], fill, selected)
        keep_all = tf.where((tf.range(num_tiles) == k)[:, None], keep[None, :], keep_all)
        return k + 1, count + m, selected, keep_all

    _, _, _, keep_all = tf.while_loop(
        more, step, (tf.constant(0), tf.constant(0), tf.zeros([max_out + tile, 5]),
                     tf.zeros_like(alive)))
    # Selections are made in rank order: the kept ranks, in order, cut at max_output_size
    # (TF stops there).
    return tf.boolean_mask(order, tf.reshape(keep_all, [-1])[:n])[:max_out]


def _standard_nms_one(boxes, scores, max_output_size, iou_threshold,
                      nms=tf.image.non_max_suppression):
    """tf.image.non_max_suppression on one image; kept boxes zero-padded to max_output_size.

    boxes: [N, 4] float32, scores: [N] float32. nms: the NMS function
    (mrcnn.ops.nms_graph gives the same indices as the default).
    Returns ([max_output_size, 4], valid int32).
    """
    keep = nms(boxes, scores, max_output_size, iou_threshold=iou_threshold)
    kept = tf.gather(boxes, keep)
    pad = max_output_size - tf.shape(kept)[0]
    return tf.pad(kept, [[0, pad], [0, 0]]), tf.shape(keep)[0]


def batched_nms(boxes, scores, max_output_size, iou_threshold, method="standard"):
    """Greedy NMS on every image of a batch, one class.

    boxes: [batch, N, (y1, x1, y2, x2)] float32, y1 <= y2 and x1 <= x2.
    scores: [batch, N] float32.
    max_output_size: int, rows kept per image.
    iou_threshold: float, a box whose IoU with a kept, higher scoring box exceeds it is dropped.
    method: "standard" (default): tf.image.non_max_suppression per image, matterport's call:
        among equal scores the lower index wins, so the kept boxes and their order are
        matterport's even when a confident RPN gives hundreds of anchors a probability of
        exactly 1.0. "combined": tf.image.combined_non_max_suppression with one class, which
        visits equal scores in another order (different proposals when scores tie; equal
        otherwise). "padded": tf.image.non_max_suppression_padded (ties in index order too).
        "graph": the same boxes as "standard" from nms_graph (TopK, Gather and
        while loops instead of the NMS kernel), for runtimes whose NMS kernel differs (TFLite).
        Speeds: see bench/infer.py and the README.

    Returns: (boxes [batch, max_output_size, 4] float32, sorted by score and zero-padded,
    valid [batch] int32 count of real rows per image).
    """
    if method in ("standard", "graph"):
        nms = nms_graph if method == "graph" else tf.image.non_max_suppression

        def one_image(args):
            return _standard_nms_one(args[0], args[1], max_output_size, iou_threshold, nms)

        kept, valid = tf.map_fn(
            one_image, (boxes, scores),
            fn_output_signature=(tf.TensorSpec([max_output_size, 4], boxes.dtype),
                                 tf.TensorSpec([], tf.int32)))
        return kept, valid
    if method == "combined":
        nms_boxes, _, _, valid = tf.image.combined_non_max_suppression(
            ops.expand_dims(boxes, 2),
            ops.expand_dims(scores, 2),
            max_output_size_per_class=max_output_size,
            max_total_size=max_output_size,
            iou_threshold=iou_threshold,
            score_threshold=float("-inf"),
            pad_per_class=False,
            clip_boxes=False,
        )
        return nms_boxes, ops.cast(valid, "int32")
    if method == "padded":
        indices, valid = tf.image.non_max_suppression_padded(
            boxes, scores, max_output_size, iou_threshold=iou_threshold,
            score_threshold=float("-inf"), pad_to_max_output_size=True, sorted_input=True,
            canonicalized_coordinates=True)
        kept = tf.gather(boxes, indices, batch_dims=1)
        rows = ops.arange(max_output_size, dtype="int32")
        mask = ops.expand_dims(rows, 0) < ops.expand_dims(ops.cast(valid, "int32"), 1)
        kept = ops.where(ops.expand_dims(mask, -1), kept, ops.zeros_like(kept))
        return kept, ops.cast(valid, "int32")
    raise ValueError(f"nms method must be one of {PROPOSAL_NMS_METHODS}, got {method!r}")


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

def detection_nms(boxes, class_ids, scores, keep, num_classes, max_instances, nms_threshold,
                  method="standard"):
    """Per-class NMS and the final top-k of the detection layer, for a batch.

    boxes: [B, N, (y1, x1, y2, x2)] float32 refined and clipped, normalized.
    class_ids: [B, N] int32 arg-max classes; scores: [B, N] float32 their probabilities.
    keep: [B, N] bool, the candidates (class > 0, score >= threshold, real ROI).
    num_classes: int; max_instances: int; nms_threshold: float.
    method: "standard" (matterport's calls, see _refine_one), "graph" (the same rows from
        nms_graph) or "combined" (one combined_non_max_suppression, ties ordered otherwise).

    Returns: [B, max_instances, (y1, x1, y2, x2, class_id, score)] float32, zero rows at the end.
    """
    if method in ("standard", "graph"):
        nms = nms_graph if method == "graph" else tf.image.non_max_suppression

        def one_image(args):
            return _refine_one(*args, max_instances, nms_threshold, nms)

        return tf.map_fn(one_image, (boxes, class_ids, scores, keep),
                         fn_output_signature=tf.TensorSpec([max_instances, 6], tf.float32))
    if method != "combined":
        raise ValueError(f"nms method must be one of {DETECTION_NMS_METHODS}, got {method!r}")
    # "combined": one score column per class, the ROI's score under its arg-max class
    # when kept, a below-threshold value everywhere else, so NMS runs per class.
    one_hot = ops.one_hot(class_ids, num_classes, dtype="float32") > 0.5  # [B, N, C]
    keep = ops.expand_dims(keep, -1) & one_hot
    class_scores = ops.where(keep, ops.expand_dims(scores, -1), _DROPPED_SCORE)

    nms_boxes, nms_scores, nms_classes, valid = tf.image.combined_non_max_suppression(
        ops.expand_dims(boxes, 2),  # [B, N, 1, 4]: the same box for every class
        class_scores,
        max_output_size_per_class=max_instances,
        max_total_size=max_instances,
        iou_threshold=nms_threshold,
        score_threshold=_NMS_SCORE_THRESHOLD,
        pad_per_class=False,
        clip_boxes=False,
    )
    detections = ops.concatenate(
        [nms_boxes, ops.expand_dims(nms_classes, -1), ops.expand_dims(nms_scores, -1)],
        axis=-1)  # [B, max_instances, 6]
    rows = ops.arange(max_instances, dtype="int32")
    real = ops.expand_dims(rows, 0) < ops.expand_dims(ops.cast(valid, "int32"), 1)
    return ops.where(ops.expand_dims(real, -1), detections, ops.zeros_like(detections))


def crop_and_resize_gather(feature_map, boxes, box_indices, crop_size):
    """``tf.image.crop_and_resize(method="bilinear", extrapolation_value=0)`` by gathers.

    The same sampling: crop row i of a box (y1, y2) reads the map at
    y = y1 (H - 1) + i (y2 - y1) (H - 1) / (ph - 1) (the box centre when ph == 1), blends the
    rows floor(y) and ceil(y) (then the columns likewise) and is 0 where y or x falls outside
    [0, H - 1] / [0, W - 1]. Built from Gather, Floor and arithmetic only, which every runtime
    has (TFLite has no CropAndResize builtin).

    feature_map: [batch, H, W, C] float32; boxes: [n, (y1, x1, y2, x2)] float32 normalized;
    box_indices: [n] int32; crop_size: (ph, pw) Python ints.
    Returns: [n, ph, pw, C] float32.
    """
    ph, pw = crop_size
    shape = tf.shape(feature_map)
    height, width, channels = shape[1], shape[2], shape[3]
    hf = tf.cast(height - 1, tf.float32)
    wf = tf.cast(width - 1, tf.float32)

    def grid(start, stop, size, scale):
        # [n, size] sample coordinates along one axis, in pixels, in TF's kernel's order of
        # float operations: start * scale + i * ((stop - start) * scale / (size - 1)).
        if size > 1:
            # size - 1 as a tensor no optimizer can fold: with a constant divisor and a
            # static feature-map size, grappler's constant folding rewrites
            # (d * (H - 1)) / (size - 1) into d * ((H - 1) / (size - 1)), which rounds
            # differently, and a box ending on the border (y2 = 1, every clipped proposal)
            # then samples at H - 1 + 1 ulp: 0 (extrapolation) instead of the edge pixel.
            # Measured: traced != eager on 990 of 2000 such boxes without this (#13). The
            # zero depends on the data, so it survives static shapes too (the TFLite
            # converter folded an earlier min(n, 0), where n was the now static box count).
            opaque = unfoldable_zero(start, tf.int32) + (size - 1)
            step = (stop - start) * scale / tf.cast(opaque, tf.float32)
            steps = tf.range(size, dtype=tf.float32)
            return (start * scale)[:, None] + steps[None, :] * step[:, None]
        return (0.5 * (start + stop) * scale)[:, None]

    ys = grid(boxes[:, 0], boxes[:, 2], ph, hf)  # [n, ph]
    xs = grid(boxes[:, 1], boxes[:, 3], pw, wf)  # [n, pw]
    valid = (((ys >= 0.0) & (ys <= hf))[:, :, None]
             & ((xs >= 0.0) & (xs <= wf))[:, None, :])  # [n, ph, pw]
    top = tf.floor(ys)
    left = tf.floor(xs)
    y_lerp = (ys - top)[:, :, None, None]
    x_lerp = (xs - left)[:, None, :, None]
    top_i = tf.clip_by_value(tf.cast(top, tf.int32), 0, height - 1)
    bottom_i = tf.clip_by_value(tf.cast(tf.math.ceil(ys), tf.int32), 0, height - 1)
    left_i = tf.clip_by_value(tf.cast(left, tf.int32), 0, width - 1)
    right_i = tf.clip_by_value(tf.cast(tf.math.ceil(xs), tf.int32), 0, width - 1)
    flat = tf.reshape(feature_map, [-1, channels])
    base = box_indices[:, None, None] * height * width

    def sample(rows, cols):
        index = base + rows[:, :, None] * width + cols[:, None, :]  # [n, ph, pw]
        return tf.gather(flat, index)  # [n, ph, pw, C]

    top_left, top_right = sample(top_i, left_i), sample(top_i, right_i)
    bottom_left, bottom_right = sample(bottom_i, left_i), sample(bottom_i, right_i)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    crops = upper + (lower - upper) * y_lerp
    return tf.where(valid[..., None], crops, 0.0)

def crop_and_resize(images, boxes, box_indices, crop_size):
    """tf.image.crop_and_resize (bilinear, extrapolation 0).

    images: [batch, H, W, C] float32; boxes: [n, (y1, x1, y2, x2)] float32 normalized (the
    unit square spans pixel centres 0..H-1); box_indices: [n] int32; crop_size: (h, w) ints.
    Returns: [n, h, w, C] float32.
    """
    return tf.image.crop_and_resize(images, boxes, box_indices, crop_size, method="bilinear")


def pyramid_roi_align(feature_maps, boxes, box_indices, levels, min_level, pool, implementation):
    """Pool each box from its own pyramid level.

    feature_maps: list of [batch, Hk, Wk, C] float32, levels min_level, min_level + 1, ...
    boxes: [n, (y1, x1, y2, x2)] float32 normalized, finite. box_indices: [n] int32 image.
    levels: [n] int32 pyramid level of each box.
    pool: callable (crop_and_resize, boxes, box_indices) -> [n, ph, pw, C], the pooling mode
        (see mrcnn.layers.roi_align), given crop_and_resize(boxes, box_indices, size) on one map.
    implementation: "partition" (tf.dynamic_partition, each box cropped on its level only)
        or "gather" (every box on every level by crop_and_resize_gather, its level's crop
        kept: only Gather and arithmetic, which exported graphs need).
    Returns: [n, ph, pw, C] float32 in box order.
    """
    if implementation == "gather":
        pooled = 0.0
        for level, feature_map in enumerate(feature_maps, start=min_level):
            crop = _on_map(crop_and_resize_gather, feature_map)
            crops = pool(crop, boxes, box_indices)
            pooled = pooled + ops.where((levels == level)[:, None, None, None], crops, 0.0)
        return pooled
    positions = ops.arange(ops.shape(boxes)[0], dtype="int32")
    parts = tf.dynamic_partition(positions, levels - min_level, len(feature_maps))
    pooled = []
    for part, feature_map in zip(parts, feature_maps):
        crop = _on_map(crop_and_resize, feature_map)
        pooled.append(pool(crop, tf.gather(boxes, part), tf.gather(box_indices, part)))
    # Put the crops back in the order of the input boxes.
    return tf.dynamic_stitch(parts, pooled)


def _on_map(crop_fn, feature_map):
    """crop_fn bound to one feature map: (boxes, box_indices, size) -> crops."""
    def crop(boxes, box_indices, size):
        return crop_fn(feature_map, boxes, box_indices, size)
    return crop




# ---------------------------------------------------------------------------------------------
# Training: tf.distribute's replicas and the fused SGD kernels

def num_replicas():
    """Replicas in sync of the current tf.distribute strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_sum(grads):
    """Sum each gradient over the replicas of the current strategy (identity outside one)."""
    if num_replicas() == 1 or tf.distribute.in_cross_replica_context():
        return grads
    present = [i for i, g in enumerate(grads) if g is not None]
    reduced = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
    grads = list(grads)
    for i, g in zip(present, reduced):
        grads[i] = g
    return grads


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable."""
    import keras
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def sgd_update(variable, gradient, learning_rate, accumulator=None, momentum=0.0):
    """One SGD step in place, TensorFlow's fused kernels.

    Without ``accumulator``: w -= lr g (ResourceApplyGradientDescent). With it (Keras'
    momentum): m = momentum m - lr g; w += m (ResourceApplyKerasMomentum).
    variable, accumulator: Keras variables; gradient: a tensor of the variable's shape and
    dtype; learning_rate: scalar of the variable's dtype; momentum: float.
    """
    if accumulator is None:
        tf.raw_ops.ResourceApplyGradientDescent(
            var=_handle(variable), alpha=learning_rate, delta=gradient)
        return
    tf.raw_ops.ResourceApplyKerasMomentum(
        var=_handle(variable), accum=_handle(accumulator), lr=learning_rate, grad=gradient,
        momentum=ops.cast(momentum, variable.dtype), use_nesterov=False)


def gpu_count():
    """GPUs TensorFlow sees on this machine."""
    return len(tf.config.list_physical_devices("GPU"))


def make_predictor(keras_model, freeze):
    """The fast inference callable of ``keras_model`` (mrcnn.predictor.Predictor: one traced
    function, weights frozen into the graph once that pays; see its module doc)."""
    from mrcnn.predictor import Predictor
    return Predictor(keras_model, freeze=freeze)


def fused_batch_norm(inputs, scale, offset, mean, variance, epsilon):
    """Inference batch norm of NHWC ``inputs`` in one FusedBatchNormV3 (is_training=False).

    inputs: [B, H, W, C] float (half precision too); scale, offset, mean, variance: [C]
    float32; epsilon: float. Returns: [B, H, W, C], inputs' dtype. The graph optimizer fuses
    it with a following ReLU (Keras' batch norm is a Mul and an Add it cannot merge).
    """
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        inputs, scale=scale, offset=offset, mean=mean, variance=variance, epsilon=epsilon,
        data_format="NHWC", is_training=False)
    return outputs


def multi_worker_logs(logs):
    """Under MultiWorkerMirroredStrategy, each log as a [1] tensor instead of a scalar.

    Keras reduces the step's logs with ``strategy.reduce("MEAN", value, axis=0)`` there,
    which fails on scalars; the [1] values reduce to the scalar mean across replicas (the
    metrics are synchronized across replicas, so that is each replica's value).
    """
    strategy = tf.distribute.get_strategy()
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return logs
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


# ---------------------------------------------------------------------------------------------
# Distribution: tf.distribute

def make_strategy(config, strategy=None, multi_worker=True):
    """The tf.distribute strategy to train ``config`` under, or None for the default device.

    strategy: a tf.distribute.Strategy to use as it is.
    Otherwise: MultiWorkerMirroredStrategy when TF_CONFIG names more than one task;
    MirroredStrategy over GPU_COUNT GPUs when GPU_COUNT > 1; else None.
    multi_worker: False ignores TF_CONFIG (inference models).
    """
    from mrcnn.distribute import cluster_spec_from_env, worker_count
    if strategy is not None:
        if not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be a tf.distribute.Strategy, got {type(strategy).__name__}")
        return strategy
    spec = cluster_spec_from_env() if multi_worker else None
    if multi_worker and spec is not None and worker_count(spec) > 1:
        logger.info("TF_CONFIG names %d tasks: MultiWorkerMirroredStrategy (this task: %s)",
                    worker_count(spec), spec["task"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.GPU_COUNT == 1:
        return None
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < config.GPU_COUNT:
        raise ValueError(f"GPU_COUNT={config.GPU_COUNT} but {len(gpus)} GPU(s) are visible "
                         f"({[g.name for g in gpus]}); set GPU_COUNT to at most {max(1, len(gpus))}")
    devices = [g.name for g in gpus[:config.GPU_COUNT]]
    logger.info("training on %d GPUs with MirroredStrategy: %s", len(devices), devices)
    return tf.distribute.MirroredStrategy(devices=devices)


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and TensorBoard: True without a
    multi-worker strategy; else the task "chief", or worker 0 when there is no chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy is None or resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_replicas(strategy):
    """(replicas in sync over all workers, input pipelines = workers) of a strategy (1, 1 without)."""
    if strategy is None:
        return 1, 1
    pipelines = 1
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        pipelines = max(1, sum(len(v) for k, v in resolver.cluster_spec().as_dict().items()
                               if k in ("chief", "worker")))
    return strategy.num_replicas_in_sync, pipelines


def pipeline_index(strategy):
    """0: the PyDataset feeds the whole batch (it runs without a strategy only; tf.data
    shards itself by input context)."""
    return 0


def pipeline_batch(config, strategy):
    """Images one replica's input takes a step: IMAGES_PER_GPU under a strategy (tf.data
    feeds each replica), BATCH_SIZE without one."""
    return config.IMAGES_PER_GPU if strategy is not None else config.BATCH_SIZE


def training_scope(strategy):
    """The context ``fit`` runs in: a null context (Keras' TensorFlow trainer uses the
    strategy the model was built under)."""
    import contextlib
    return contextlib.nullcontext()


def sync_model_state(keras_model):
    """Nothing to do: TensorFlow's trainer updates the model's variables in place."""


def training_pipeline(strategy, pipeline):
    """The input pipeline train() uses: "auto" is tf.data under a tf.distribute strategy
    (which needs it) and the PyDataset otherwise; raises ValueError for a PyDataset under a
    strategy."""
    if pipeline == "auto":
        pipeline = "tf.data" if strategy is not None else "pydataset"
    if strategy is not None and pipeline != "tf.data":
        raise ValueError(f"training under {type(strategy).__name__} needs "
                         f"pipeline='tf.data', got {pipeline!r}")
    return pipeline
