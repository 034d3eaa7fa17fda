"""Drawing helpers for images, instances, ROIs, precision-recall curves and weight statistics.

Matplotlib only, and usable without a display: no function calls ``plt.show()`` unless its
``auto_show`` argument is True *and* the active backend is interactive. Every function returns
what it drew (the ``Figure``, the ``Axes``, the new image or the table rows) so that scripts
can save it, e.g. ``save_figure(display_instances(...), "out.png")``.

Conventions shared by the functions below:

- images: [H, W, 3] RGB with values in 0..255 (uint8 or float). [H, W] and [H, W, 1] grey
  images are repeated to three channels, an alpha channel ([H, W, 4]) is dropped.
- boxes: [N, (y1, x1, y2, x2)] in image pixels, y2/x2 exclusive. A box is drawn around the
  pixels it covers: its outline runs along the outer pixel edges (``x1 - 0.5`` .. ``x2 - 0.5``).
- masks: [H, W, N] bool (or 0/1), one channel per instance.
- colours: RGB triples of floats in [0, 1] (as made by ``random_colors``).
"""
import logging
import os

import matplotlib.pyplot as plt
import numpy as np
import skimage.measure
from matplotlib import colors as mcolors
from matplotlib import lines, patches

from mrcnn import utils
from mrcnn.tables import (WEIGHT_STATS_HEADER, display_table,  # noqa: F401
                          display_weight_stats)

logger = logging.getLogger(__name__)

GT_COLOR = (0.0, 1.0, 0.0)
PRED_COLOR = (1.0, 0.0, 0.0)
NO_INSTANCES_NOTE = "No instances to display"

# Backends that open no window; everything else (Qt, Tk, notebook, inline, ...) counts as interactive.
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


# --------------------------------------------------------------------------- helpers
def _backend_is_interactive():
    """True when the current matplotlib backend can show a figure to a person."""
    name = str(plt.get_backend()).lower()
    if name.startswith("module://"):
        return "inline" in name or "ipympl" in name or "widget" in name
    return name not in _NON_INTERACTIVE


def _maybe_show(auto_show):
    """Call ``plt.show()`` only when asked to and the backend is interactive."""
    if auto_show and _backend_is_interactive():
        plt.show()


def _new_axes(ax, figsize):
    """Return ``ax`` or, when it is None, the single Axes of a new figure of ``figsize`` inches."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(1, figsize=figsize)
    return ax


def _as_rgb(image, name="image"):
    """``image`` as a float64 [H, W, 3] array (grey repeated, alpha dropped) or ValueError."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr[:, :, :3].astype(np.float64)


def _to_uint8(image):
    """Round and clip a 0..255 float image to uint8 (what ``imshow`` gets)."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _as_box_array(boxes, name):
    """``boxes`` as an [N, 4] float64 array; an empty input becomes [0, 4]. ValueError otherwise."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise ValueError(f"{name} must be [N, (y1, x1, y2, x2)], got shape {arr.shape}")
    return arr[:, :4]


def _as_mask_stack(masks, image_shape, count, name="masks"):
    """``masks`` as an [H, W, count] bool array matching the image, or None when masks is None."""
    if masks is None:
        return None
    arr = np.asarray(masks)
    if arr.size == 0 and count == 0:
        return np.zeros(tuple(image_shape[:2]) + (0,), dtype=bool)
    if arr.ndim != 3 or arr.shape[:2] != tuple(image_shape[:2]):
        raise ValueError(f"{name} must be [H, W, N] with (H, W) = {tuple(image_shape[:2])} "
                         f"(the image), got shape {arr.shape}")
    if arr.shape[2] != count:
        raise ValueError(f"{name} has {arr.shape[2]} instances (shape {arr.shape}) but {count} "
                         f"boxes were given")
    return arr.astype(bool)


def _check_length(values, count, name):
    """Raise ValueError unless ``values`` is None or has ``count`` entries."""
    if values is not None and len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries but there are {count} instances")


def _class_name(class_names, class_id):
    """``class_names[class_id]`` or ValueError naming the id."""
    class_id = int(class_id)
    if not 0 <= class_id < len(class_names):
        raise ValueError(f"class id {class_id} is outside class_names (length {len(class_names)})")
    return class_names[class_id]


def _box_patch(box, color, linestyle="dashed", linewidth=2, alpha=0.7):
    """A hollow Rectangle around the pixels of ``box`` (y1, x1, y2, x2), y2/x2 exclusive."""
    y1, x1, y2, x2 = (float(v) for v in box[:4])
    return patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, linewidth=linewidth,
                             alpha=alpha, linestyle=linestyle, edgecolor=color, facecolor="none")


def _mask_polygons(mask, color):
    """Polygon patches tracing the outline of a 2-D bool mask (one per closed contour)."""
    padded = np.pad(np.asarray(mask, dtype=np.float64), 1)
    out = []
    for contour in skimage.measure.find_contours(padded, 0.5):
        # (row, col) in the padded frame -> (x, y) in the image frame.
        xy = contour[:, ::-1] - 1.0
        out.append(patches.Polygon(xy, closed=True, facecolor="none", edgecolor=color))
    return out


def _frame_axes(ax, height, width, title):
    """Show the whole image with a 10 px margin, no ticks, and ``title``."""
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)


# --------------------------------------------------------------------------- colours and pixels
def random_colors(N, bright=True, seed=None):
    """``N`` distinct colours: evenly spaced hues in a shuffled order.

    N: int >= 0. bright: value 1.0 (True) or 0.7 (False) in HSV, saturation 1.
    seed: int or None; the same seed always gives the same list.

    Returns: list of N (r, g, b) tuples of Python floats in [0, 1].
    """
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 0:
        raise ValueError(f"N must be a non-negative int, got {N!r}")
    if N == 0:
        return []
    value = 1.0 if bright else 0.7
    hsv = np.stack([np.arange(N) / N, np.ones(N), np.full(N, value)], axis=1)
    rgb = mcolors.hsv_to_rgb(hsv)
    order = np.random.default_rng(seed).permutation(N)
    return [tuple(float(c) for c in rgb[i]) for i in order]


def apply_mask(image, mask, color, alpha=0.5):
    """Tint the pixels under ``mask`` with ``color``; returns a new array.

    image: [H, W, C] with values in 0..255 (any numeric dtype). mask: [H, W] bool or 0/1.
    color: C (or more) floats in [0, 1]. alpha: blend weight of the colour, in [0, 1].

    Returns: a new array with the dtype of ``image``. Where ``mask`` is set, each channel c is
    ``(1 - alpha) * image[..., c] + alpha * color[c] * 255`` (rounded to the nearest integer
    for integer dtypes); other pixels are copied unchanged.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be [H, W] = {image.shape[:2]} (the image), got shape {mask.shape}")
    color = np.asarray(color, dtype=np.float64).ravel()
    if color.size < image.shape[2]:
        raise ValueError(f"color needs {image.shape[2]} values for image shape {image.shape}, "
                         f"got {color.size}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    selected = mask.astype(bool)
    blended = (1.0 - alpha) * image[selected].astype(np.float64) + alpha * color[:image.shape[2]] * 255.0
    out = image.copy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        blended = np.clip(np.rint(blended), info.min, info.max)
    out[selected] = blended.astype(image.dtype)
    return out


def draw_box(image, box, color):
    """Draw a 1-pixel box outline into a copy of ``image``.

    image: [H, W] or [H, W, C] array (usually uint8). box: (y1, x1, y2, x2) int pixels, y2/x2
    exclusive: the outline is rows y1 and y2 - 1 and columns x1 and x2 - 1; sides outside the
    image are not drawn, the others are clipped to it.
    color: a scalar or C values in the image's range (0..255 for uint8); floats all <= 1.0 are
    read as [0, 1] colours and scaled by 255 for integer images.

    Returns: the new image (same dtype); an empty box (y2 <= y1 or x2 <= x1) leaves it unchanged.
    """
    out = np.array(image, copy=True)
    if out.ndim not in (2, 3):
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {out.shape}")
    box = np.asarray(box).ravel()
    if box.size != 4:
        raise ValueError(f"box must be (y1, x1, y2, x2), got shape {np.asarray(box).shape}")
    color = np.asarray(color)
    if (np.issubdtype(color.dtype, np.floating) and np.issubdtype(out.dtype, np.integer)
            and color.size and np.all(color <= 1.0)):
        color = color * 255.0
    channels = out.shape[2] if out.ndim == 3 else 1
    if color.size not in (1, channels):
        raise ValueError(f"color needs 1 or {channels} values for image shape {out.shape}, got {color.size}")
    color = color.astype(out.dtype) if color.size == 1 else color.reshape(-1).astype(out.dtype)
    height, width = out.shape[:2]
    y1, x1, y2, x2 = (int(v) for v in np.rint(box.astype(np.float64)))
    top, left, bottom, right = max(y1, 0), max(x1, 0), min(y2, height), min(x2, width)
    if bottom <= top or right <= left:
        return out
    # Each side is drawn where it lies inside the image; a side past the border is not drawn.
    for row in {y1, y2 - 1} & set(range(height)):
        out[row, left:right] = color
    for col in {x1, x2 - 1} & set(range(width)):
        out[top:bottom, col] = color
    return out


# --------------------------------------------------------------------------- image grids
def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None,
                   *, auto_show=False):
    """Show images in a grid, one per subplot, axes hidden.

    images: non-empty list of [H, W] or [H, W, C] arrays (values 0..255 for RGB; 2-D arrays are
    drawn with ``cmap``). titles: None or one string per image. cols: images per row.

    Returns: the matplotlib Figure (``len(images)`` axes carry an image).
    """
    images = list(images)
    if not images:
        raise ValueError("images is empty: nothing to display")
    if titles is None:
        titles = [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"titles has {len(titles)} entries but images has {len(images)}")
    if int(cols) < 1:
        raise ValueError(f"cols must be >= 1, got {cols!r}")
    cols = min(int(cols), len(images))
    rows = -(-len(images) // cols)
    fig = plt.figure(figsize=(14, max(14 * rows / cols, 3)))
    for index, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, index)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        arr = np.asarray(image)
        if arr.ndim == 3:
            arr = _to_uint8(arr) if arr.shape[2] in (3, 4) else arr[:, :, 0]
        ax.imshow(arr, cmap=cmap, norm=norm, interpolation=interpolation)
    _maybe_show(auto_show)
    return fig


def display_top_masks(image, mask, class_ids, class_names, limit=4, *, auto_show=False):
    """Show the image beside the ``limit`` classes that cover the most pixels.

    image: [H, W, 3]. mask: [H, W, N] bool. class_ids: [N] int. class_names: list of str.
    Each class panel is a label image: 0 background, k for the k-th instance of that class.
    Missing classes (fewer than ``limit``) get an empty panel titled "-".

    Returns: the Figure from ``display_images`` (limit + 1 panels).
    """
    class_ids = np.asarray(class_ids).reshape(-1)
    mask = _as_mask_stack(mask, np.shape(image), class_ids.shape[0], name="mask")
    if int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    panels = [image]
    titles = ["H x W={}x{}".format(*np.shape(image)[:2])]
    unique = np.unique(class_ids)
    areas = np.array([mask[:, :, class_ids == c].sum() for c in unique], dtype=np.int64)
    ranked = [int(unique[i]) for i in np.argsort(-areas, kind="stable") if areas[i] > 0]
    for slot in range(int(limit)):
        if slot < len(ranked):
            class_id = ranked[slot]
            own = mask[:, :, class_ids == class_id]
            labels = (own * np.arange(1, own.shape[2] + 1)).max(axis=2)
            title = _class_name(class_names, class_id)
        else:
            labels = np.zeros(mask.shape[:2], dtype=np.int64)
            title = "-"
        panels.append(labels)
        titles.append(title)
    return display_images(panels, titles=titles, cols=int(limit) + 1, cmap="Blues_r",
                          auto_show=auto_show)


# --------------------------------------------------------------------------- instances
def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(16, 16), ax=None, show_mask=True, show_bbox=True, colors=None,
                      captions=None, *, auto_show=False):
    """Draw detected or ground-truth instances on an image.

    image: [H, W, 3] values 0..255. boxes: [N, (y1, x1, y2, x2)] pixels, y2/x2 exclusive;
    all-zero rows are padding and are skipped with their mask. masks: [H, W, N] bool or None.
    class_ids: [N] int into ``class_names``. scores: None or [N] floats.
    colors: None (``random_colors(N)``) or N RGB triples in [0, 1].
    captions: None or N strings; by default "<class name> <score:.3f>" (name alone without scores).
    show_mask: tint the masked pixels (``apply_mask`` with alpha 0.5); mask outlines are drawn
    as Polygon patches whenever masks are given (as matterport did).
    show_bbox: one dashed Rectangle patch per box. Captions are drawn either way.
    ax: an Axes to draw on; None makes a figure of ``figsize`` inches.

    With N = 0 the image is drawn with a "No instances to display" note.
    Returns: the Axes; ``ax.images[0]`` holds the uint8 [H, W, 3] image with masks applied.
    """
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    boxes = _as_box_array(boxes, "boxes")
    class_ids = np.asarray(class_ids).reshape(-1)
    count = boxes.shape[0]
    mask_count = None if masks is None else (np.shape(masks)[-1] if np.ndim(masks) else 0)
    if class_ids.shape[0] != count or (mask_count is not None and mask_count != count):
        raise ValueError(f"boxes, masks and class_ids must count the same instances: boxes "
                         f"{boxes.shape}, masks {None if masks is None else np.shape(masks)}, "
                         f"class_ids {class_ids.shape}")
    masks = _as_mask_stack(masks, rgb.shape, count)
    _check_length(scores, count, "scores")
    _check_length(captions, count, "captions")
    _check_length(colors, count, "colors")
    colors = colors if colors is not None else random_colors(count)

    ax = _new_axes(ax, figsize)
    _frame_axes(ax, height, width, title)
    if count == 0:
        logger.info("display_instances: no instances to display")
        ax.text(0.5, 0.5, NO_INSTANCES_NOTE, transform=ax.transAxes, ha="center", va="center",
                color="w", backgroundcolor="k", size=12)

    canvas = rgb
    for i in range(count):
        if not np.any(boxes[i]):
            continue
        color = colors[i]
        y1, x1 = boxes[i, 0], boxes[i, 1]
        if show_bbox:
            ax.add_patch(_box_patch(boxes[i], color))
        if captions is not None:
            caption = captions[i]
        else:
            label = _class_name(class_names, class_ids[i])
            caption = f"{label} {float(scores[i]):.3f}" if scores is not None else label
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        if masks is not None:
            if show_mask:
                canvas = apply_mask(canvas, masks[:, :, i], color)
            for polygon in _mask_polygons(masks[:, :, i], color):
                ax.add_patch(polygon)
    ax.imshow(_to_uint8(canvas))
    _maybe_show(auto_show)
    return ax


def display_keypoints(image, boxes, keypoints, keypoint_names, skeleton=(), min_score=0.0,
                      title="", figsize=(16, 16), ax=None, colors=None, *, auto_show=False):
    """Draw keypoints and their skeleton on an image (one colour per instance).

    image: [H, W, 3] values 0..255. boxes: None or [N, (y1, x1, y2, x2)] pixels, drawn dashed.
    keypoints: [N, K, (x, y, s)] pixel-index units (COCO's convention: pixel column i is
        centred at x = i, as ``imshow`` draws it), s a visibility (ground truth, 0 = not
        labelled) or a score (``detect()``); keypoints with s <= min_score are not drawn.
    keypoint_names: K names; skeleton: pairs of names joined by a line when both are drawn.
    colors: None (``random_colors(N)``) or N RGB triples in [0, 1].

    Returns: the Axes; each drawn keypoint is a ``Line2D`` marker in ``ax.lines`` (skeleton
    segments are ``Line2D`` too) and carries its name in the label "<i>:<name>".
    """
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    keypoints = np.asarray(keypoints, dtype=np.float64)
    names = list(keypoint_names)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (len(names), 3):
        raise ValueError(f"keypoints must be [N, K={len(names)}, (x, y, score)], got shape "
                         f"{keypoints.shape}")
    count = keypoints.shape[0]
    if boxes is not None:
        boxes = _as_box_array(boxes, "boxes")
        if boxes.shape[0] != count:
            raise ValueError(f"boxes {boxes.shape} and keypoints {keypoints.shape} must count "
                             "the same instances")
    edges = []
    for pair in skeleton:
        if len(pair) != 2 or any(p not in names for p in pair):
            raise ValueError(f"skeleton must hold pairs of keypoint_names, got {pair!r}")
        edges.append((names.index(pair[0]), names.index(pair[1])))
    _check_length(colors, count, "colors")
    colors = colors if colors is not None else random_colors(count)

    ax = _new_axes(ax, figsize)
    _frame_axes(ax, height, width, title)
    ax.imshow(_to_uint8(rgb))
    for i in range(count):
        color = colors[i]
        if boxes is not None and np.any(boxes[i]):
            ax.add_patch(_box_patch(boxes[i], color))
        shown = keypoints[i, :, 2] > min_score
        for a, b in edges:
            if shown[a] and shown[b]:
                ax.add_line(lines.Line2D(keypoints[i, [a, b], 0], keypoints[i, [a, b], 1],
                                         color=color, linewidth=2, alpha=0.8))
        for k in np.flatnonzero(shown):
            ax.add_line(lines.Line2D([keypoints[i, k, 0]], [keypoints[i, k, 1]], marker="o",
                                     markersize=5, color=color, markeredgecolor="w",
                                     linestyle="none", label=f"{i}:{names[k]}"))
    _maybe_show(auto_show)
    return ax


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                        pred_mask, class_names, title="", ax=None, show_mask=True, show_box=True,
                        iou_threshold=0.5, score_threshold=0.5, *, auto_show=False):
    """Draw ground truth (green) and predictions (red) together, captioned with their match.

    gt_box: [G, 4], gt_class_id: [G], gt_mask: [H, W, G]; pred_box: [P, 4], pred_class_id: [P],
    pred_score: [P], pred_mask: [H, W, P]; boxes in pixels. All-zero rows are dropped.
    Matching is ``utils.compute_matches`` (mask IoU, same class, greedy by score).
    Captions: a ground truth shows its class name; a prediction shows
    "<score:.2f> / <IoU:.2f>", the IoU with its matched ground truth, or its best IoU with any
    ground truth when unmatched (0.00 without ground truth).

    Returns: the Axes (ground truth drawn first, then predictions by descending score).
    """
    gt_box = _as_box_array(gt_box, "gt_box")
    pred_box = _as_box_array(pred_box, "pred_box")
    gt_class_id = np.asarray(gt_class_id).reshape(-1)
    pred_class_id = np.asarray(pred_class_id).reshape(-1)
    pred_score = np.asarray(pred_score, dtype=np.float64).reshape(-1)
    rgb_shape = _as_rgb(image).shape
    if gt_mask is None or pred_mask is None:
        raise ValueError("display_differences matches by mask IoU: gt_mask and pred_mask are required")
    gt_mask = _as_mask_stack(gt_mask, rgb_shape, gt_box.shape[0], name="gt_mask")
    pred_mask = _as_mask_stack(pred_mask, rgb_shape, pred_box.shape[0], name="pred_mask")
    if gt_class_id.shape[0] != gt_box.shape[0]:
        raise ValueError(f"gt_box {gt_box.shape} and gt_class_id {gt_class_id.shape} disagree")
    if not pred_class_id.shape[0] == pred_score.shape[0] == pred_box.shape[0]:
        raise ValueError(f"pred_box {pred_box.shape}, pred_class_id {pred_class_id.shape} and "
                         f"pred_score {pred_score.shape} disagree")

    # Drop padding and order predictions exactly as compute_matches does.
    gt_keep = np.any(gt_box != 0, axis=1)
    gt_box, gt_class_id, gt_mask = gt_box[gt_keep], gt_class_id[gt_keep], gt_mask[:, :, gt_keep]
    order = np.flatnonzero(np.any(pred_box != 0, axis=1))
    order = order[utils.score_order(pred_score[order])]
    pred_box, pred_class_id = pred_box[order], pred_class_id[order]
    pred_score, pred_mask = pred_score[order], pred_mask[:, :, order]

    _, pred_match, overlaps = utils.compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    num_gt, num_pred = gt_box.shape[0], pred_box.shape[0]
    captions = [str(_class_name(class_names, c)) for c in gt_class_id]
    for i in range(num_pred):
        if pred_match[i] > -1:
            iou = overlaps[i, int(pred_match[i])]
        else:
            iou = overlaps[i].max() if num_gt else 0.0
        captions.append(f"{pred_score[i]:.2f} / {iou:.2f}")
    return display_instances(
        image, np.concatenate([gt_box, pred_box]), np.concatenate([gt_mask, pred_mask], axis=2),
        np.concatenate([gt_class_id, pred_class_id]).astype(np.int64), class_names,
        title=title, ax=ax, show_mask=show_mask, show_bbox=show_box,
        colors=[GT_COLOR] * num_gt + [PRED_COLOR] * num_pred, captions=captions,
        auto_show=auto_show)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10, *, seed=None,
              ax=None, auto_show=False):
    """Draw a sample of ROIs, their refined boxes and their masks (training-target inspection).

    rois: [N, (y1, x1, y2, x2)] pixels. refined_rois: [N, 4] pixels or None. class_ids: [N] int,
    0 marks a negative (background) ROI. mask: None, [N, h, w] or [N, h, w, num_classes]
    (the class channel of each ROI is used) float masks in ROI frame, thresholded at 0.5.
    limit: at most this many ROIs, picked at random (``seed``) when there are more.

    Negative ROIs: one grey dashed Rectangle. Positive ROIs: a dashed Rectangle, a solid
    Rectangle for the refined box, a Line2D joining their top-left corners, the class name as a
    Text, and the mask tint. The title counts positive and negative ROIs.
    Returns: the Axes.
    """
    rgb = _as_rgb(image)
    rois = _as_box_array(rois, "rois")
    class_ids = np.asarray(class_ids).reshape(-1)
    count = rois.shape[0]
    if class_ids.shape[0] != count:
        raise ValueError(f"rois {rois.shape} and class_ids {class_ids.shape} disagree")
    if refined_rois is not None:
        refined_rois = _as_box_array(refined_rois, "refined_rois")
        if refined_rois.shape[0] != count:
            raise ValueError(f"rois {rois.shape} and refined_rois {refined_rois.shape} disagree")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim not in (3, 4) or mask.shape[0] != count:
            raise ValueError(f"mask must be [N, h, w] or [N, h, w, classes] with N = {count}, "
                             f"got shape {mask.shape}")
    ids = np.arange(count)
    if count > limit:
        ids = np.sort(np.random.default_rng(seed).choice(count, int(limit), replace=False))
    colors = random_colors(len(ids), seed=seed)
    positives = int(np.sum(class_ids > 0))
    title = (f"{len(ids)} of {count} ROIs: {positives} positive, {count - positives} negative, "
             f"positive ratio {positives / max(count, 1):.2f}")
    ax = _new_axes(ax, (12, 12))
    _frame_axes(ax, rgb.shape[0], rgb.shape[1], title)
    canvas = rgb
    for color, i in zip(colors, ids):
        class_id = int(class_ids[i])
        ax.add_patch(_box_patch(rois[i], color if class_id > 0 else "gray", alpha=1.0))
        if class_id <= 0:
            continue
        anchor_y, anchor_x = rois[i, 0], rois[i, 1]
        if refined_rois is not None:
            ax.add_patch(_box_patch(refined_rois[i], color, linestyle="solid", alpha=1.0))
            ry, rx = refined_rois[i, 0], refined_rois[i, 1]
            ax.add_line(lines.Line2D([anchor_x - 0.5, rx - 0.5], [anchor_y - 0.5, ry - 0.5], color=color))
            anchor_y, anchor_x = ry, rx
        ax.text(anchor_x, anchor_y + 8, str(_class_name(class_names, class_id)), color="w", size=11)
        if mask is not None:
            roi_mask = mask[i] if mask.ndim == 3 else mask[i, :, :, class_id]
            full = utils.unmold_mask(roi_mask, np.rint(rois[i]).astype(np.int32), rgb.shape)
            canvas = apply_mask(canvas, full, color)
    ax.imshow(_to_uint8(canvas))
    _maybe_show(auto_show)
    return ax


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, visibilities=None,
               title="", ax=None, *, colors=None, auto_show=False):
    """Draw boxes, refined boxes, captions and masks with per-box prominence.

    image: [H, W, 3]. boxes, refined_boxes: None or [N, (y1, x1, y2, x2)] pixels (at least one
    given); all-zero rows of ``boxes`` are skipped. masks: None or [H, W, N] bool.
    captions: None or N strings (placed at the refined box when there is one).
    visibilities: None (all 1) or N values in {0, 1, 2}: 0 grey dotted and faint, 1 coloured
    dotted, 2 coloured solid. Refined boxes are solid and drawn only for visibility > 0, joined
    to their box by a line. colors: None (``random_colors(N)``) or N RGB triples.
    Returns: the Axes.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes needs boxes or refined_boxes, got neither")
    rgb = _as_rgb(image)
    boxes = None if boxes is None else _as_box_array(boxes, "boxes")
    refined_boxes = None if refined_boxes is None else _as_box_array(refined_boxes, "refined_boxes")
    count = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]
    if boxes is not None and refined_boxes is not None and refined_boxes.shape[0] != count:
        raise ValueError(f"boxes {boxes.shape} and refined_boxes {refined_boxes.shape} disagree")
    masks = _as_mask_stack(masks, rgb.shape, count)
    _check_length(captions, count, "captions")
    _check_length(visibilities, count, "visibilities")
    _check_length(colors, count, "colors")
    colors = colors if colors is not None else random_colors(count)
    ax = _new_axes(ax, (12, 12))
    _frame_axes(ax, rgb.shape[0], rgb.shape[1], title)
    canvas = rgb
    for i in range(count):
        visibility = 1 if visibilities is None else int(visibilities[i])
        if visibility not in (0, 1, 2):
            raise ValueError(f"visibilities[{i}] must be 0, 1 or 2, got {visibilities[i]!r}")
        color = "gray" if visibility == 0 else colors[i]
        style = "solid" if visibility == 2 else "dotted"
        alpha = 0.5 if visibility == 0 else 1.0
        anchor = None
        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            ax.add_patch(_box_patch(boxes[i], color, linestyle=style, alpha=alpha))
            anchor = boxes[i]
        if refined_boxes is not None and visibility > 0:
            ax.add_patch(_box_patch(refined_boxes[i], color, linestyle="solid", alpha=alpha))
            if anchor is not None:
                ax.add_line(lines.Line2D([anchor[1] - 0.5, refined_boxes[i, 1] - 0.5],
                                         [anchor[0] - 0.5, refined_boxes[i, 0] - 0.5], color=color))
            anchor = refined_boxes[i]
        if captions is not None and anchor is not None:
            ax.text(anchor[1], anchor[0], captions[i], size=11, verticalalignment="top", color="w",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            canvas = apply_mask(canvas, masks[:, :, i], colors[i])
            for polygon in _mask_polygons(masks[:, :, i], color):
                ax.add_patch(polygon)
    ax.imshow(_to_uint8(canvas))
    _maybe_show(auto_show)
    return ax


# --------------------------------------------------------------------------- evaluation plots
def plot_precision_recall(AP, precisions, recalls, *, ax=None, auto_show=False):
    """Plot a precision-recall curve (``utils.compute_ap`` output).

    AP: float. precisions, recalls: [K] floats, same length. The single Line2D has recalls as
    x data and precisions as y data. Returns: the Axes.
    """
    precisions = np.asarray(precisions, dtype=np.float64).reshape(-1)
    recalls = np.asarray(recalls, dtype=np.float64).reshape(-1)
    if precisions.shape != recalls.shape:
        raise ValueError(f"precisions {precisions.shape} and recalls {recalls.shape} must have the "
                         f"same shape")
    ax = _new_axes(ax, (8, 6))
    ax.set_title(f"Precision-Recall Curve. AP@50 = {float(AP):.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.1)
    ax.set_ylim(0, 1.1)
    ax.plot(recalls, precisions)
    _maybe_show(auto_show)
    return ax


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold=0.5,
                  *, ax=None, auto_show=False):
    """Grid of IoU between predictions (rows) and ground truth (columns).

    gt_class_ids: [G] int. pred_class_ids, pred_scores: [P]. overlaps: [P, G] IoU.
    Each cell holds one Text: the IoU to 3 decimals and, when IoU >= threshold, "match" (same
    class) or "wrong" (different class). Row labels "<class> (<score:.2f>)", column labels the
    ground-truth class names. Returns: the Axes (P * G texts).
    """
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    pred_class_ids = np.asarray(pred_class_ids).reshape(-1)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    overlaps = np.asarray(overlaps, dtype=np.float64)
    expected = (pred_class_ids.shape[0], gt_class_ids.shape[0])
    if overlaps.size == 0:
        overlaps = overlaps.reshape(expected)
    if overlaps.shape != expected or pred_scores.shape[0] != expected[0]:
        raise ValueError(f"overlaps must be [P, G] = {expected} with P scores; got overlaps "
                         f"{overlaps.shape}, pred_scores {pred_scores.shape}")
    ax = _new_axes(ax, (12, 10))
    if overlaps.size == 0:
        ax.text(0.5, 0.5, "No overlaps to display", transform=ax.transAxes, ha="center")
    else:
        ax.imshow(overlaps, interpolation="nearest", cmap="Blues", vmin=0, vmax=1)
    ax.set_yticks(np.arange(expected[0]))
    ax.set_yticklabels([f"{_class_name(class_names, c)} ({s:.2f})"
                        for c, s in zip(pred_class_ids, pred_scores)])
    ax.set_xticks(np.arange(expected[1]))
    ax.set_xticklabels([str(_class_name(class_names, c)) for c in gt_class_ids], rotation=90)
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    ax.set_title("Ground Truth and Detections")
    for i in range(expected[0]):
        for j in range(expected[1]):
            iou = overlaps[i, j]
            verdict = ""
            if iou >= threshold:
                verdict = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
            color = "white" if iou >= threshold else ("black" if iou > 0 else "grey")
            ax.text(j, i, f"{iou:.3f}\n{verdict}", ha="center", va="center", fontsize=9, color=color)
    _maybe_show(auto_show)
    return ax


def plot_loss_history(history, keys=None, *, ax=None, auto_show=False):
    """Plot training curves: each loss solid, its "val_" twin dashed in the same colour.

    history: a keras ``History`` (its ``.history`` dict) or a dict name -> list of per-epoch values.
    keys: names to plot (default: every name not starting with "val_").
    Returns: the Axes (one Line2D per plotted series, epochs counted from 1).
    """
    data = getattr(history, "history", history)
    if not isinstance(data, dict):
        raise ValueError(f"history must be a dict or have a .history dict, got {type(history).__name__}")
    keys = [k for k in data if not k.startswith("val_")] if keys is None else list(keys)
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"keys {missing} are not in the history (has {sorted(data)})")
    ax = _new_axes(ax, (8, 5))
    for key in keys:
        values = np.asarray(data[key], dtype=np.float64)
        (line,) = ax.plot(np.arange(1, len(values) + 1), values, label=key)
        if f"val_{key}" in data:
            val = np.asarray(data[f"val_{key}"], dtype=np.float64)
            ax.plot(np.arange(1, len(val) + 1), val, linestyle="--", color=line.get_color(),
                    label=f"val_{key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if keys:
        ax.legend()
    _maybe_show(auto_show)
    return ax


# --------------------------------------------------------------------------- tables and weights
def save_figure(fig, path, dpi=None, close=False):
    """Save a Figure (or the figure of an Axes) to ``path``, creating its folder.

    The format follows the extension (png, pdf, svg, ...). close: also close the figure.
    Returns: ``path``.
    """
    figure = getattr(fig, "figure", None) if not hasattr(fig, "savefig") else fig
    if figure is None or not hasattr(figure, "savefig"):
        raise ValueError(f"fig must be a matplotlib Figure or Axes, got {type(fig).__name__}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(figure)
    return path
