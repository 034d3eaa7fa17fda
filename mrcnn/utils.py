"""NumPy toolkit: boxes, masks, anchors, resizing and evaluation (Dataset: mrcnn.dataset).

Conventions (shared with the graph twins in ``mrcnn/ops.py``):

* Pixel boxes are ``(y1, x1, y2, x2)`` with ``y2``/``x2`` exclusive (one past the last
  row/column of the object), so a box's area is ``(y2 - y1) * (x2 - x1)``.
* Normalized boxes are ``(boxes - [0, 0, 1, 1]) / [h - 1, w - 1, h - 1, w - 1]``.
* Box deltas are ``(dy, dx, log(dh), log(dw))``: the centre shift in units of the box
  size and the log of the size ratio.
* Instance masks are ``[H, W, N]`` bool, one channel per instance.

This module imports only NumPy (and mrcnn.resizing: scikit-image); ``batch_slice`` imports
TensorFlow when it is called.
"""
import http.client
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request

import numpy as np

# Dataset lives in mrcnn/dataset.py; re-exported here for matterport users.
from mrcnn.dataset import Dataset, read_rgb_image, validate_instance_masks  # noqa: F401
# Resizing lives in mrcnn/resizing.py; re-exported here, where matterport had it.
from mrcnn.resizing import RESIZE_METHODS, RESIZE_MODES  # noqa: F401
from mrcnn.resizing import expand_mask, minimize_mask, resize, resize_image  # noqa: F401
from mrcnn.resizing import resize_mask, unmold_mask  # noqa: F401

logger = logging.getLogger(__name__)

# Weights of the matterport v2.0 release, trained on MS COCO.
COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"



# --------------------------------------------------------------------------- boxes
def _as_boxes(boxes, name):
    """Return ``boxes`` as a float64 [N, 4] array or raise ValueError naming ``name``."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise ValueError(f"{name} must be [N, (y1, x1, y2, x2)], got shape {arr.shape}")
    return arr[:, :4]


def extract_bboxes(mask):
    """Tight boxes around instance masks.

    mask: [H, W, N] bool (or 0/1) instance masks.

    Returns: [N, (y1, x1, y2, x2)] int32 pixels, y2/x2 exclusive (last row/col + 1).
    An empty mask gives the box (0, 0, 0, 0).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [H, W, N], got shape {mask.shape}")
    boxes = np.zeros((mask.shape[-1], 4), dtype=np.int32)
    for i in range(mask.shape[-1]):
        rows = np.flatnonzero(np.any(mask[:, :, i], axis=1))
        cols = np.flatnonzero(np.any(mask[:, :, i], axis=0))
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box with many boxes.

    box: [(y1, x1, y2, x2)] pixels. boxes: [N, (y1, x1, y2, x2)].
    box_area: float, area of ``box``. boxes_area: [N] areas of ``boxes``
    (passed in so that callers compute them once).

    Returns: [N] float IoU in [0, 1] (0 where the union is empty).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    inter_h = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    inter_w = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = inter_h * inter_w
    union = box_area + np.asarray(boxes_area, dtype=np.float64) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _areas(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def compute_overlaps(boxes1, boxes2):
    """Pairwise IoU of two box sets.

    boxes1: [N1, (y1, x1, y2, x2)], boxes2: [N2, (y1, x1, y2, x2)], same frame.

    Returns: [N1, N2] float64 IoU.
    """
    boxes1 = _as_boxes(boxes1, "boxes1")
    boxes2 = _as_boxes(boxes2, "boxes2")
    area1, area2 = _areas(boxes1), _areas(boxes2)
    overlaps = np.zeros((boxes1.shape[0], boxes2.shape[0]))
    for j in range(boxes2.shape[0]):
        overlaps[:, j] = compute_iou(boxes2[j], boxes1, area2[j], area1)
    return overlaps


def compute_overlaps_masks(masks1, masks2):
    """Pairwise IoU of two sets of instance masks, in matterport's float32.

    masks1: [H, W, N1], masks2: [H, W, N2], bool or 0/1 (> 0.5 is inside), same H and W.

    Returns: [N1, N2] float32 mask IoU (zeros when either set is empty, 0 where both masks
    are empty). As matterport: pixel counts and intersections are exact, the division is
    float32, so an IoU of 17/20 is float32(0.85) = 0.85000002, which is *not* below the
    threshold 0.8500000000000002 of np.arange(0.5, 1.0, 0.05) (float64 17/20 would be).
    """
    masks1, masks2 = np.asarray(masks1), np.asarray(masks2)
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]), dtype=np.float32)
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(f"masks1 {masks1.shape} and masks2 {masks2.shape} differ in H, W")
    flat1 = (masks1.reshape(-1, masks1.shape[-1]) > 0.5).astype(np.float32)
    flat2 = (masks2.reshape(-1, masks2.shape[-1]) > 0.5).astype(np.float32)
    # float64 products: exact counts for any image size (float32 is exact below 2**24 pixels,
    # where matterport's float32 dot gives the same integers).
    inter = (flat1.T.astype(np.float64) @ flat2.astype(np.float64)).astype(np.float32)
    union = flat1.sum(axis=0)[:, None] + flat2.sum(axis=0)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.float32(0.0)).astype(np.float32)


def score_order(scores):
    """matterport's ranking of predictions: ``np.argsort(scores)[::-1]``.

    scores: [N] float. Returns [N] int indices, highest score first. Equal scores come out
    in the order NumPy's default (quick)sort leaves them, reversed, exactly as matterport's
    compute_matches visits them; evaluation and visualization both use this order.
    """
    return np.argsort(np.asarray(scores))[::-1]


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    boxes: [N, (y1, x1, y2, x2)] pixels. scores: [N] float.
    threshold: float, a box whose IoU with a kept box is above it is dropped.

    Returns: [K] int32 indices of the kept boxes, highest score first.
    """
    boxes = _as_boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"got {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    areas = _areas(boxes)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = compute_iou(boxes[best], boxes[rest], areas[best], areas[rest])
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Move and resize boxes by deltas.

    boxes: [N, (y1, x1, y2, x2)] float. deltas: [N, (dy, dx, log(dh), log(dw))].

    Returns: [N, (y1, x1, y2, x2)] float, same frame as ``boxes``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    deltas = np.asarray(deltas, dtype=np.float64)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    cx = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1, x1 = cy - 0.5 * height, cx - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box):
    """Deltas that move ``box`` onto ``gt_box`` (inverse of apply_box_deltas).

    box, gt_box: [N, (y1, x1, y2, x2)], same frame. Both must have positive area.

    Returns: [N, (dy, dx, log(dh), log(dw))] float32.
    """
    box = np.asarray(box, dtype=np.float64)
    gt_box = np.asarray(gt_box, dtype=np.float64)
    for name, arr in (("box", box), ("gt_box", gt_box)):
        flat = arr.reshape(-1, 4)
        bad = np.flatnonzero((flat[:, 2] <= flat[:, 0]) | (flat[:, 3] <= flat[:, 1]))
        if bad.size:
            raise ValueError(f"box_refinement: {name} {bad[0]} has zero area: {flat[bad[0]].tolist()}")
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    dy = (gt_box[..., 0] + 0.5 * gt_height - box[..., 0] - 0.5 * height) / height
    dx = (gt_box[..., 1] + 0.5 * gt_width - box[..., 1] - 0.5 * width) / width
    deltas = np.stack([dy, dx, np.log(gt_height / height), np.log(gt_width / width)], axis=-1)
    return deltas.astype(np.float32)


def norm_boxes(boxes, shape):
    """Pixel boxes [N, (y1, x1, y2, x2)] -> normalized float32 for an image of ``shape`` (H, W, ...)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return ((np.asarray(boxes, dtype=np.float64) - shift) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes [N, (y1, x1, y2, x2)] -> int32 pixel boxes (rounded), y2/x2 exclusive."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return np.around(np.asarray(boxes, dtype=np.float64) * scale + shift).astype(np.int32)


def trim_zeros(x):
    """Drop the all-zero rows (padding) of a [N, D] array."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]



# --------------------------------------------------------------------------- anchors
def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one feature map, in image pixels.

    scales: anchor side(s) in pixels, e.g. 32 or [32, 64]. ratios: width/height ratios.
    shape: (rows, cols) of the feature map. feature_stride: image pixels per cell.
    anchor_stride: place anchors on every ``anchor_stride``-th cell.

    Returns: [N, (y1, x1, y2, x2)] float64 pixels. Centres are (row * feature_stride,
    col * feature_stride); cells are row-major and within a cell the (scale, ratio)
    combinations follow np.meshgrid(scales, ratios) flattened. Height is
    scale / sqrt(ratio), width scale * sqrt(ratio).
    """
    scale_grid, ratio_grid = np.meshgrid(np.asarray(scales, dtype=np.float64).reshape(-1),
                                         np.asarray(ratios, dtype=np.float64).reshape(-1))
    scale_grid, ratio_grid = scale_grid.reshape(-1), ratio_grid.reshape(-1)
    sizes = np.stack([scale_grid / np.sqrt(ratio_grid), scale_grid * np.sqrt(ratio_grid)], axis=1)
    ys = np.arange(0, shape[0], anchor_stride) * feature_stride
    xs = np.arange(0, shape[1], anchor_stride) * feature_stride
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    centres = np.stack([cy.reshape(-1), cx.reshape(-1)], axis=1).astype(np.float64)
    low = centres[:, None, :] - 0.5 * sizes[None, :, :]
    high = centres[:, None, :] + 0.5 * sizes[None, :, :]
    return np.concatenate([low, high], axis=2).reshape(-1, 4)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of all pyramid levels, level i using scales[i], concatenated in level order.

    Returns: [N, (y1, x1, y2, x2)] float64 pixels.
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(f"need one scale, feature shape and stride per level, got "
                         f"{len(scales)} scales, {len(feature_shapes)} shapes, "
                         f"{len(feature_strides)} strides")
    return np.concatenate([
        generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))], axis=0)


def compute_backbone_shapes(config, image_shape):
    """[[h, w], ...] feature map size of each pyramid level for an input of image_shape.

    Uses config.COMPUTE_BACKBONE_SHAPE(image_shape) when set, else ceil(side / stride)
    for each of config.BACKBONE_STRIDES.
    """
    if getattr(config, "COMPUTE_BACKBONE_SHAPE", None) is not None:
        return np.asarray(config.COMPUTE_BACKBONE_SHAPE(image_shape))
    return np.array([[int(math.ceil(image_shape[0] / s)), int(math.ceil(image_shape[1] / s))]
                     for s in config.BACKBONE_STRIDES])


# --------------------------------------------------------------------------- evaluation
def compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
                    pred_masks, iou_threshold=0.5, score_threshold=0.0):
    """Greedy matching of predictions to ground truth by mask IoU, as matterport matches.

    gt_boxes: [G, 4], gt_class_ids: [G], gt_masks: [H, W, G]. pred_boxes: [P, 4],
    pred_class_ids: [P], pred_scores: [P], pred_masks: [H, W, P]. All-zero box rows
    (padding) are dropped with their masks.

    Predictions are visited in ``score_order`` (matterport's argsort, ties included); each
    takes, among the ground truths ranked by ``np.argsort(iou)[::-1]``, the first unmatched
    one until the float32 IoU (compute_overlaps_masks) is below ``iou_threshold`` (compared
    as given: a float64 threshold compares in float64), if its class is the prediction's.
    Predictions whose score is below score_threshold are left unmatched (matterport compared
    this threshold to the IoU instead; the default 0 gives the same result either way).

    Returns:
        gt_match: [G] int32, index of the matched prediction (in sorted order) or -1.
        pred_match: [P] int32, index of the matched ground truth or -1, in sorted order.
        overlaps: [P, G] float32 mask IoU, predictions in sorted order.
    """
    gt_boxes = trim_zeros(np.asarray(gt_boxes).reshape(-1, 4))
    gt_class_ids = np.asarray(gt_class_ids)[:gt_boxes.shape[0]]
    gt_masks = np.asarray(gt_masks)[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(np.asarray(pred_boxes).reshape(-1, 4))
    count = pred_boxes.shape[0]
    order = score_order(np.asarray(pred_scores)[:count])
    pred_class_ids = np.asarray(pred_class_ids)[:count][order]
    pred_scores = np.asarray(pred_scores)[:count][order]
    pred_masks = np.asarray(pred_masks)[..., :count][..., order]

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    gt_match = -np.ones(gt_boxes.shape[0], dtype=np.int32)
    pred_match = -np.ones(count, dtype=np.int32)
    for i in range(count):
        if pred_scores[i] < score_threshold:
            continue
        for j in np.argsort(overlaps[i])[::-1]:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j], pred_match[i] = i, j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
               pred_masks, iou_threshold=0.5):
    """Average precision at one IoU threshold (all-point interpolation, mask IoU).

    Arguments as in compute_matches.

    Returns: (mAP float, precisions [P + 2], recalls [P + 2], overlaps [P, G]).
    precisions/recalls are padded with (0, 0) and (0, 1) at the ends and precisions are
    made non-increasing; recalls are float32 quotients, as matterport's. With no ground
    truth, recall is taken as 0 (AP 0; matterport divides by zero).
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float32) / max(len(gt_match), 1)
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[:-1] != recalls[1:]) + 1
    m_ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                     pred_mask, iou_thresholds=None, verbose=1):
    """Mean of compute_ap over IoU thresholds (default np.arange(0.5, 1.0, 0.05), COCO style).

    The thresholds are used as they come (0.8500000000000002, not 0.85), as matterport does.
    Logs each AP at INFO level when ``verbose``. Returns: float.
    """
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    aps = []
    for threshold in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                        pred_mask, iou_threshold=threshold)[0]
        if verbose:
            logger.info("AP @%.2f:\t %.3f", threshold, ap)
        aps.append(ap)
    mean = float(np.array(aps).mean())
    if verbose:
        logger.info("AP @%.2f-%.2f:\t %.3f", iou_thresholds[0], iou_thresholds[-1], mean)
    return mean


def compute_recall(pred_boxes, gt_boxes, iou):
    """Share of ground-truth boxes hit by some prediction with IoU >= ``iou``.

    pred_boxes: [P, (y1, x1, y2, x2)], gt_boxes: [G, (y1, x1, y2, x2)]. The IoU is computed
    in the boxes' own arithmetic, as matterport's compute_overlaps does: float32 boxes give
    float32 IoU, integer boxes float64.

    Returns: (recall float in [0, 1] (0 when G == 0), positive_ids [K] int indices of the
    predictions whose best IoU is >= iou).
    """
    pred = np.asarray(pred_boxes)
    gt = np.asarray(gt_boxes)
    dtype = np.result_type(pred.dtype, gt.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    pred = _as_boxes(pred, "pred_boxes").astype(dtype)
    gt = _as_boxes(gt, "gt_boxes").astype(dtype)
    if pred.shape[0] == 0 or gt.shape[0] == 0:
        return 0.0, np.zeros((0,), dtype=np.int64)
    area_p, area_g = _areas(pred), _areas(gt)
    inter_h = np.maximum(np.minimum(pred[:, None, 2], gt[None, :, 2])
                         - np.maximum(pred[:, None, 0], gt[None, :, 0]), 0)
    inter_w = np.maximum(np.minimum(pred[:, None, 3], gt[None, :, 3])
                         - np.maximum(pred[:, None, 1], gt[None, :, 1]), 0)
    inter = inter_w * inter_h
    with np.errstate(invalid="ignore", divide="ignore"):
        overlaps = inter / (area_g[None, :] + area_p[:, None] - inter)
    best = overlaps.max(axis=1)
    positive_ids = np.flatnonzero(best >= iou)
    matched = set(overlaps.argmax(axis=1)[positive_ids].tolist())
    return len(matched) / overlaps.shape[1], positive_ids


# --------------------------------------------------------------------------- graph helper
def batch_slice(inputs, graph_fn, batch_size, names=None):
    """Run ``graph_fn`` on each batch item and stack the results (TensorFlow).

    inputs: tensor or list of tensors with a leading batch dimension.
    graph_fn: called with one slice of each input; returns a tensor or a list of them.
    batch_size: number of items (a Python int).
    names: optional names of the stacked outputs.

    Returns: a stacked tensor, or a list of them when graph_fn returns several.
    """
    import tensorflow as tf  # Only this helper needs TensorFlow.

    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    per_item = []
    for i in range(batch_size):
        out = graph_fn(*[x[i] for x in inputs])
        per_item.append(list(out) if isinstance(out, (list, tuple)) else [out])
    columns = list(zip(*per_item))
    if names is None:
        names = [None] * len(columns)
    result = [tf.stack(list(col), axis=0, name=name) for col, name in zip(columns, names)]
    return result[0] if len(result) == 1 else result


# --------------------------------------------------------------------------- weights
def download_trained_weights(coco_model_path, verbose=1, url=COCO_MODEL_URL):
    """Download the matterport COCO weights (mask_rcnn_coco.h5) to ``coco_model_path``.

    The file is written to a temporary file beside the target and moved into place
    with os.replace, so a failed download leaves no partial file. Without network,
    raises ConnectionError naming the URL and where to put the file by hand.
    """
    target = os.path.abspath(os.fspath(coco_model_path))
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    if verbose:
        logger.info("Downloading pretrained model to %s ...", target)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".part",
                                    dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                        received += len(chunk)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    TimeoutError) as err:
                raise ConnectionError(
                    f"could not download {url}: {err}. Download the file by hand and save it "
                    f"as {target}") from err
            if expected is not None and expected.isdigit() and int(expected) != received:
                raise ConnectionError(
                    f"download of {url} was cut short ({received} of {expected} bytes). "
                    f"Retry, or download the file by hand and save it as {target}")
        os.replace(tmp_path, target)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    if verbose:
        logger.info("... done downloading pretrained model to %s", target)
    return target
