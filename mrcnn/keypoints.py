"""Keypoints on the data side (NumPy): resizing, flipping, heatmap targets and decoding.

Coordinate convention (the one COCO's keypoint annotations and pycocotools' OKS use):
a keypoint ``(x, y)`` is a position in pixel-index units, pixel column ``i`` having its
centre at ``x = i``. Boxes in this package are pixel edges, ``(y1, x1, y2, x2)`` with
``x2`` exclusive, so column ``i`` spans ``[i, i + 1)`` in box units, and a keypoint is at
``x + 0.5`` in the frame of the boxes (Detectron2 makes the same half-pixel shift).

Heatmaps are ``m x m`` grids over a ROI. Encoding (``keypoint_targets``): the keypoint
falls in cell ``floor((x + 0.5 - x1) * m / (x2 - x1))`` (clipped to ``m - 1`` on the
far border, which is inside the ROI). Decoding (``heatmaps_to_keypoints``): cell ``j``
maps back to its centre, ``x1 + (j + 0.5) * (x2 - x1) / m - 0.5``. Floor-then-centre is
the inverse with the smallest worst-case error: a decoded keypoint is at most half a cell
(``(x2 - x1) / (2 m)`` pixels) from where it was encoded, and encoding a decoded keypoint
gives back its cell.

Visibility ``v`` follows COCO: 0 not labelled, 1 labelled but occluded, 2 visible. Every
labelled keypoint (``v > 0``) inside the ROI is a target, as in the paper and Detectron2.
"""
import logging

import numpy as np

logger = logging.getLogger(__name__)

# Pixels by which a keypoint may lie outside its ROI and still count as on its border
# (normalized ROIs lose a few float32 ulps on the way back to pixels).
BORDER_TOLERANCE = 1e-3


def check_keypoints(keypoints, count, num_keypoints, image_id=None):
    """Validate ``Dataset.load_keypoints`` output: -> [N, K, 3] float32.

    keypoints: array-like [N, K, (x, y, v)] or None (no keypoint annotations: all v = 0).
    count: N, the number of instances ``load_mask`` returned.
    num_keypoints: K = len(Config.KEYPOINT_NAMES).
    """
    where = "" if image_id is None else f"image {image_id}: "
    if keypoints is None:
        return np.zeros((count, num_keypoints, 3), dtype=np.float32)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (count, num_keypoints, 3):
        raise ValueError(f"{where}load_keypoints must return [N={count}, K={num_keypoints}, 3] "
                         f"(x, y, visibility), got shape {keypoints.shape}")
    if not np.all(np.isfinite(keypoints)):
        raise ValueError(f"{where}load_keypoints returned non-finite values")
    return keypoints


def resize_keypoints(keypoints, scale, padding, crop=None):
    """Apply ``utils.resize_image``'s scale, crop and padding to keypoints.

    keypoints: [N, K, (x, y, v)] float, pixel-index convention of the original image.
    scale, padding, crop: as returned by resize_image for that image.

    Returns: [N, K, (x, y, v)] float32 in the resized image (v unchanged, except that
    keypoints a crop moved outside the image get v = 0).
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    if out.ndim != 3 or out.shape[-1] != 3:
        raise ValueError(f"keypoints must be [N, K, 3], got shape {out.shape}")
    # Scale the continuous position (x + 0.5), then back to pixel-index units.
    out[..., 0] = (out[..., 0] + 0.5) * scale - 0.5 + padding[1][0]
    out[..., 1] = (out[..., 1] + 0.5) * scale - 0.5 + padding[0][0]
    if crop is not None:
        y, x, h, w = crop
        out[..., 0] -= x
        out[..., 1] -= y
        outside = ((out[..., 0] < -0.5) | (out[..., 0] > w - 0.5)
                   | (out[..., 1] < -0.5) | (out[..., 1] > h - 0.5))
        out[..., 2] = np.where(outside, 0, out[..., 2])
    return out


def flip_keypoints(keypoints, width, flip_pairs):
    """Mirror keypoints left-right in an image ``width`` pixels wide.

    keypoints: [N, K, (x, y, v)]; flip_pairs: pairs of keypoint indices (i, j) that swap
    (a left and a right keypoint). Returns a new float32 array; x -> width - 1 - x.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    order = np.arange(out.shape[1])
    for i, j in flip_pairs:
        order[i], order[j] = j, i
    return out[:, order]


class HorizontalFlip:
    """The augmentation keypoint datasets accept: a left-right flip with probability ``p``.

    Flips the image, the masks and the keypoints, and swaps the keypoints named in
    ``Config.KEYPOINT_FLIP_MAP``. Pass it as ``MaskRCNN.train(augmentation=HorizontalFlip())``.
    Arbitrary augmenters cannot move keypoints, so keypoint models refuse them.
    """

    def __init__(self, p=0.5):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, image, mask, keypoints, flip_pairs, rng):
        """(image [H, W, C], mask [H, W, N], keypoints [N, K, 3]) -> the same, maybe flipped."""
        if rng.random() >= self.p:
            return image, mask, keypoints
        width = image.shape[1]
        return (np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1]),
                flip_keypoints(keypoints, width, flip_pairs))


def flip_pairs(config):
    """``Config.KEYPOINT_FLIP_MAP`` as index pairs into ``KEYPOINT_NAMES``."""
    names = list(config.KEYPOINT_NAMES)
    return [(names.index(a), names.index(b)) for a, b in config.KEYPOINT_FLIP_MAP]


def keypoint_targets(rois, keypoints, heatmap_size):
    """Heatmap targets of ROIs (NumPy twin of the keypoint part of DetectionTargetLayer).

    rois: [R, (y1, x1, y2, x2)] float pixels (box convention, y2 / x2 exclusive edges).
    keypoints: [R, K, (x, y, v)] float, the keypoints of each ROI's ground truth instance,
        pixel-index convention, same image frame.
    heatmap_size: int m.

    Returns:
        indices: [R, K] int32, ``row * m + col`` of the keypoint's cell; 0 where unused.
        weights: [R, K] float32, 1 where the keypoint is labelled (v > 0) and inside the
            ROI (borders included, up to BORDER_TOLERANCE), 0 otherwise (also for empty ROIs).
    """
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    m = int(heatmap_size)
    y1, x1, y2, x2 = (rois[:, i:i + 1] for i in range(4))
    x = keypoints[..., 0] + 0.5
    y = keypoints[..., 1] + 0.5
    height, width = y2 - y1, x2 - x1
    tol = BORDER_TOLERANCE
    valid = ((keypoints[..., 2] > 0) & (height > 0) & (width > 0)
             & (x >= x1 - tol) & (x <= x2 + tol) & (y >= y1 - tol) & (y <= y2 + tol))
    with np.errstate(divide="ignore", invalid="ignore"):
        col = np.floor((x - x1) * m / np.where(width > 0, width, 1))
        row = np.floor((y - y1) * m / np.where(height > 0, height, 1))
    col = np.clip(col, 0, m - 1).astype(np.int64)
    row = np.clip(row, 0, m - 1).astype(np.int64)
    indices = np.where(valid, row * m + col, 0).astype(np.int32)
    return indices, valid.astype(np.float32)


def heatmaps_to_keypoints(heatmaps, rois):
    """Decode heatmap logits to keypoints: the arg-max cell's centre, and its probability.

    heatmaps: [N, m, m, K] float logits (the keypoint head's output for N ROIs).
    rois: [N, (y1, x1, y2, x2)] float pixels (box convention) of the same ROIs.

    Returns: [N, K, (x, y, score)] float32, x and y in pixel-index units of the rois'
    frame, score the softmax probability of the arg-max cell (over the m * m cells).
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
    n, m, _, k = heatmaps.shape
    flat = heatmaps.transpose(0, 3, 1, 2).reshape(n, k, m * m)                   # [N, K, m*m]
    best = np.argmax(flat, axis=-1)                                              # [N, K]
    top = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    score = 1.0 / np.sum(np.exp(flat - top[..., None]), axis=-1)
    row, col = best // m, best % m
    y1, x1, y2, x2 = (rois[:, i:i + 1] for i in range(4))
    x = x1 + (col + 0.5) * (x2 - x1) / m - 0.5
    y = y1 + (row + 0.5) * (y2 - y1) / m - 0.5
    return np.stack([x, y, score], axis=-1).astype(np.float32)


def unmold_keypoints(keypoints, window, scale):
    """Keypoints from the molded image to the original image.

    keypoints: [N, K, (x, y, score)] pixel-index units in the molded image.
    window: (y1, x1, y2, x2) of the real image in the molded image; scale: resize factor.
    Returns [N, K, (x, y, score)] float32 in the original image.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] + 0.5 - window[1]) / scale - 0.5
    out[..., 1] = (out[..., 1] + 0.5 - window[0]) / scale - 0.5
    return out
