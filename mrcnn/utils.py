"""NumPy toolkit: boxes, masks, anchors, resizing and evaluation (Dataset: mrcnn.dataset).

Conventions (shared with the graph twins in ``mrcnn/ops.py``):

* Pixel boxes are ``(y1, x1, y2, x2)`` with ``y2``/``x2`` exclusive (one past the last
  row/column of the object), so a box's area is ``(y2 - y1) * (x2 - x1)``.
* Normalized boxes are ``(boxes - [0, 0, 1, 1]) / [h - 1, w - 1, h - 1, w - 1]``.
* Box deltas are ``(dy, dx, log(dh), log(dw))``: the centre shift in units of the box
  size and the log of the size ratio.
* Instance masks are ``[H, W, N]`` bool, one channel per instance.

This module imports only NumPy, SciPy and scikit-image; ``batch_slice`` imports
TensorFlow when it is called.
"""
import http.client
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
import warnings

import numpy as np
import scipy.ndimage
import skimage.transform

# Dataset lives in mrcnn/dataset.py; re-exported here for matterport users.
from mrcnn.dataset import Dataset, read_rgb_image, validate_instance_masks  # noqa: F401

logger = logging.getLogger(__name__)

# Weights of the matterport v2.0 release, trained on MS COCO.
COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"

RESIZE_MODES = ("none", "square", "pad64", "crop")


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
    """Pairwise IoU of two sets of instance masks.

    masks1: [H, W, N1], masks2: [H, W, N2], bool or 0/1, same H and W.

    Returns: [N1, N2] float64 mask IoU (zeros when either set is empty).
    """
    masks1, masks2 = np.asarray(masks1), np.asarray(masks2)
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(f"masks1 {masks1.shape} and masks2 {masks2.shape} differ in H, W")
    flat1 = (masks1.reshape(-1, masks1.shape[-1]) > 0.5).astype(np.float64)
    flat2 = (masks2.reshape(-1, masks2.shape[-1]) > 0.5).astype(np.float64)
    inter = flat1.T @ flat2
    union = flat1.sum(axis=0)[:, None] + flat2.sum(axis=0)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


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



# --------------------------------------------------------------------------- resizing
def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=True, anti_aliasing=False, anti_aliasing_sigma=None):
    """skimage.transform.resize that keeps the value range and accepts bool masks.

    image: [H, W] or [H, W, C]. output_shape: (h, w) (trailing dims are kept).
    A bool image is resized with nearest neighbour (order 0) and returned as bool;
    other dtypes come back as float64 (skimage's behaviour).
    """
    image = np.asarray(image)
    output_shape = tuple(int(s) for s in output_shape)
    if len(output_shape) < image.ndim:
        output_shape = output_shape + image.shape[len(output_shape):]
    is_bool = image.dtype == bool
    fast = _resize_opencv(image, output_shape, 0 if is_bool else order, mode, anti_aliasing)
    if fast is not None:
        return fast.astype(bool) if is_bool else fast
    out = skimage.transform.resize(
        image, output_shape, order=0 if is_bool else order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)
    return out.astype(bool) if is_bool else out


def _resize_opencv(image, output_shape, order, mode, anti_aliasing):
    """OpenCV's resize where it computes what skimage would, else None.

    OpenCV (a dependency of albumentations) is 10-50x faster than skimage for the
    bilinear and nearest-neighbour resizes of molding and unmolding. Both sample at pixel
    centres; at the borders OpenCV replicates the edge where skimage's "constant" mode
    blends in zeros, which only matters for the outermost half pixel of an upsampling.
    Used for order 0/1, no anti-aliasing, [H, W] or [H, W, C<=512] images, float64 out.
    """
    if order not in (0, 1) or anti_aliasing or mode not in ("constant", "edge"):
        return None
    if image.ndim not in (2, 3) or len(output_shape) != image.ndim:
        return None
    if image.ndim == 3 and (image.shape[2] > 512 or output_shape[2] != image.shape[2]
                            or image.shape[2] == 0):
        return None
    if min(output_shape[:2]) < 1 or min(image.shape[:2]) < 1:
        return None
    try:
        import cv2
    except ImportError:
        return None
    src = image
    if src.dtype == bool:
        src = src.astype(np.uint8)
    elif src.dtype not in (np.uint8, np.uint16, np.float32):
        src = src.astype(np.float32)
    interpolation = cv2.INTER_NEAREST_EXACT if order == 0 else cv2.INTER_LINEAR
    out = cv2.resize(src, (int(output_shape[1]), int(output_shape[0])), interpolation=interpolation)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[..., None]
    return out.astype(np.float64)


def _cast_like(image, dtype):
    """Cast a resized float image back to ``dtype`` (rounded and clipped for integers)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(image), info.min, info.max).astype(dtype)
    return image.astype(dtype)


def _pad_amounts(size, target):
    before = (target - size) // 2
    return before, target - size - before


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize (and pad or crop) an image for the network, keeping its aspect ratio.

    image: [H, W, C] (or [H, W]) array; its dtype is kept.
    min_dim: scale up so that the short side is at least this (never scale down for it).
    max_dim: in "square" mode, the long side is at most this and the image is padded to
        [max_dim, max_dim].
    min_scale: lower bound of the scale (e.g. 2 to double small images).
    mode: "none" (unchanged), "square" (scale, then pad to max_dim x max_dim, centred),
        "pad64" (scale with min_dim / min_scale, then pad each side to a multiple of 64;
        min_dim must be a multiple of 64), "crop" (scale, then a random
        min_dim x min_dim crop; for training).
    rng: np.random.Generator (or RandomState) for the crop; default the np.random module.

    Returns:
        image: resized, padded or cropped image, input dtype.
        window: (y1, x1, y2, x2) of the real image inside the result (pixels, exclusive).
        scale: the factor applied to the original image.
        padding: [(top, bottom), (left, right), (0, 0)] pixels added.
        crop: (y, x, h, w) of the crop in the scaled image, or None.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    image = np.asarray(image)
    dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError(f"resize mode 'square' needs max_dim, got {max_dim!r}")
    if mode == "crop" and not min_dim:
        raise ValueError(f"resize mode 'crop' needs min_dim, got {min_dim!r}")
    if mode == "pad64" and min_dim and min_dim % 64:
        raise ValueError(f"resize mode 'pad64' needs min_dim to be a multiple of 64, got {min_dim!r}")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        image = _cast_like(resize(image, (round(h * scale), round(w * scale))), dtype)

    h, w = image.shape[:2]
    if mode == "square":
        top, bottom = _pad_amounts(h, max_dim)
        left, right = _pad_amounts(w, max_dim)
    elif mode == "pad64":
        top, bottom = _pad_amounts(h, -(-h // 64) * 64)
        left, right = _pad_amounts(w, -(-w // 64) * 64)
    else:  # crop
        if rng is None:
            y, x = np.random.randint(0, h - min_dim + 1), np.random.randint(0, w - min_dim + 1)
        elif hasattr(rng, "integers"):
            y, x = rng.integers(0, h - min_dim + 1), rng.integers(0, w - min_dim + 1)
        else:
            y, x = rng.randint(0, h - min_dim + 1), rng.randint(0, w - min_dim + 1)
        y, x = int(y), int(x)
        crop = (y, x, min_dim, min_dim)
        return image[y:y + min_dim, x:x + min_dim], (0, 0, min_dim, min_dim), scale, padding, crop
    padding = [(top, bottom), (left, right), (0, 0)]
    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (top, left, top + h, left + w)
    return image, window, scale, padding, crop


def _zoom_source_index(size, scale):
    """[round(size * scale)] int64: 1 + the source index that
    ``scipy.ndimage.zoom(..., order=0)`` reads for each output pixel along an axis of
    ``size`` pixels, or 0 where it samples outside (mode "constant": the value 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # scipy's note on the output shape rounding
        return scipy.ndimage.zoom(np.arange(1, size + 1, dtype=np.int64), scale, order=0)


def resize_mask(mask, scale, padding, crop=None):
    """Apply resize_image's scale, crop and padding to masks (nearest neighbour).

    mask: [H, W, N] (or [H, W]) bool or 0/1 masks of the original image.
    scale, padding, crop: as returned by resize_image for that image.

    Returns: masks of the same dtype whose size equals resize_image's output
    (scaled size is (round(H * scale), round(W * scale)), like the image).
    The values are matterport's, ``scipy.ndimage.zoom(mask, [scale, scale, 1], order=0)``
    then crop, then pad, for any number of instances. Order-0 zooming reads one source
    row and one source column per output pixel, so the rows and columns scipy reads are
    found once per axis and only those inside ``crop`` are gathered: a 256 px crop of a
    2x upscaled 520 x 696 image with 329 nuclei never builds the 1040 x 1392 x 329 stack.
    """
    mask = np.asarray(mask)
    if scale != 1:
        rows = _zoom_source_index(mask.shape[0], scale)
        cols = _zoom_source_index(mask.shape[1], scale)
        if crop is not None:
            y, x, ch, cw = crop
            rows, cols = rows[y:y + ch], cols[x:x + cw]
        out = mask[np.maximum(rows - 1, 0)][:, np.maximum(cols - 1, 0)]
        out[rows == 0] = 0
        out[:, cols == 0] = 0
        mask = out
    elif crop is not None:
        y, x, ch, cw = crop
        mask = mask[y:y + ch, x:x + cw]
    return np.pad(mask, list(padding)[:mask.ndim], mode="constant", constant_values=0)


def _box_ints(box, index, where):
    y1, x1, y2, x2 = (int(v) for v in np.asarray(box)[:4])
    if y2 <= y1 or x2 <= x1:
        raise ValueError(f"{where}: instance {index} has a zero-area box {[y1, x1, y2, x2]} "
                         "(drop empty instances first)")
    return y1, x1, y2, x2


def minimize_mask(bbox, mask, mini_shape):
    """Cut each mask to its box and resize it to ``mini_shape`` (saves memory).

    bbox: [N, (y1, x1, y2, x2)] int pixels (from extract_bboxes). mask: [H, W, N].
    mini_shape: (mh, mw).

    Returns: [mh, mw, N] bool (bilinear, then > 0.5). A zero-area box raises ValueError
    naming the instance; the training loader drops instances emptied by a crop first.
    """
    mask = np.asarray(mask)
    mini = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints(bbox[i], i, "minimize_mask")
        cut = mask[y1:y2, x1:x2, i].astype(np.float32)
        if cut.size == 0:
            raise ValueError(f"minimize_mask: box {i} {[y1, x1, y2, x2]} lies outside the "
                             f"mask of shape {mask.shape}")
        mini[:, :, i] = resize(cut, mini_shape) > 0.5
    return mini


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of minimize_mask: paste each mini mask back into its box.

    bbox: [N, (y1, x1, y2, x2)] int pixels. mini_mask: [mh, mw, N].
    image_shape: (H, W, ...).

    Returns: [H, W, N] bool (parts of a box outside the image are dropped).
    """
    mini_mask = np.asarray(mini_mask)
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mini_mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints(bbox[i], i, "expand_mask")
        full = resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1)) > 0.5
        _paste(mask[:, :, i], full, y1, x1)
    return mask


def unmold_mask(mask, bbox, image_shape, out=None):
    """Turn a predicted small mask into a full-image bool mask.

    mask: [h, w] float probabilities (e.g. the 28x28 head output).
    bbox: (y1, x1, y2, x2) int pixels in the image. image_shape: (H, W, ...).
    out: optional [H, W] bool array of zeros (e.g. one channel of an [H, W, N] stack) to
        write into instead of allocating; only the box's pixels are written.

    Returns: [H, W] bool (``out`` when given): the mask resized to the box and thresholded
    at 0.5; the part of the box outside the image is dropped.
    """
    y1, x1, y2, x2 = _box_ints(bbox, 0, "unmold_mask")
    shape = tuple(int(d) for d in image_shape[:2])
    if out is None:
        out = np.zeros(shape, dtype=bool)
    elif out.shape != shape or out.dtype != bool:
        raise ValueError(f"out must be a {shape} bool array, got {out.shape} {out.dtype}")
    resized = resize(np.asarray(mask, dtype=np.float32), (y2 - y1, x2 - x1)) >= 0.5
    _paste(out, resized, y1, x1)
    return out


def _paste(dst, src, y1, x1):
    """Write 2-D ``src`` into 2-D ``dst`` at (y1, x1), dropping what falls outside ``dst``."""
    ty1, tx1 = max(y1, 0), max(x1, 0)
    ty2, tx2 = min(y1 + src.shape[0], dst.shape[0]), min(x1 + src.shape[1], dst.shape[1])
    if ty2 > ty1 and tx2 > tx1:
        dst[ty1:ty2, tx1:tx2] = src[ty1 - y1:ty2 - y1, tx1 - x1:tx2 - x1]


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
    """Greedy matching of predictions to ground truth by mask IoU.

    gt_boxes: [G, 4], gt_class_ids: [G], gt_masks: [H, W, G]. pred_boxes: [P, 4],
    pred_class_ids: [P], pred_scores: [P], pred_masks: [H, W, P]. All-zero box rows
    (padding) are dropped with their masks.

    Predictions are visited by descending score; each takes the unmatched ground
    truth of the same class with the highest IoU >= iou_threshold. Predictions whose
    score is below score_threshold are left unmatched (matterport compared this
    threshold to the IoU instead).

    Returns:
        gt_match: [G] int32, index of the matched prediction (in sorted order) or -1.
        pred_match: [P] int32, index of the matched ground truth or -1, in sorted order.
        overlaps: [P, G] float64 mask IoU, predictions in sorted order.
    """
    gt_boxes = trim_zeros(np.asarray(gt_boxes).reshape(-1, 4))
    gt_class_ids = np.asarray(gt_class_ids)[:gt_boxes.shape[0]]
    gt_masks = np.asarray(gt_masks)[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(np.asarray(pred_boxes).reshape(-1, 4))
    count = pred_boxes.shape[0]
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64)[:count], kind="stable")
    pred_class_ids = np.asarray(pred_class_ids)[:count][order]
    pred_scores = np.asarray(pred_scores)[:count][order]
    pred_masks = np.asarray(pred_masks)[..., :count][..., order]

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    gt_match = -np.ones(gt_boxes.shape[0], dtype=np.int32)
    pred_match = -np.ones(count, dtype=np.int32)
    for i in range(count):
        if pred_scores[i] < score_threshold:
            continue
        for j in np.argsort(-overlaps[i], kind="stable"):
            if overlaps[i, j] < iou_threshold:
                break
            if gt_match[j] > -1 or pred_class_ids[i] != gt_class_ids[j]:
                continue
            gt_match[j], pred_match[i] = i, j
            break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
               pred_masks, iou_threshold=0.5):
    """Average precision at one IoU threshold (all-point interpolation, mask IoU).

    Arguments as in compute_matches.

    Returns: (mAP float, precisions [P + 2], recalls [P + 2], overlaps [P, G]).
    precisions/recalls are padded with (0, 0) and (0, 1) at the ends and precisions are
    made non-increasing. With no ground truth, recall is taken as 0 (AP 0).
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float64) / max(len(gt_match), 1)
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[1:] != recalls[:-1]) + 1
    m_ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                     pred_mask, iou_thresholds=None, verbose=1):
    """Mean of compute_ap over IoU thresholds (default 0.5:0.95:0.05, COCO style).

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
    mean = float(np.mean(aps))
    if verbose:
        logger.info("AP @%.2f-%.2f:\t %.3f", iou_thresholds[0], iou_thresholds[-1], mean)
    return mean


def compute_recall(pred_boxes, gt_boxes, iou):
    """Share of ground-truth boxes hit by some prediction with IoU >= ``iou``.

    pred_boxes: [P, (y1, x1, y2, x2)], gt_boxes: [G, (y1, x1, y2, x2)].

    Returns: (recall float in [0, 1] (0 when G == 0), positive_ids [K] int indices of the
    predictions whose best IoU is >= iou).
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if overlaps.size == 0:
        return 0.0, np.zeros((0,), dtype=np.int64)
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
