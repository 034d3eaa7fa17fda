"""Training targets on the data side (NumPy): ground truth loading, RPN and head targets.

* :func:`load_image_gt` loads one image with its instances, resized (and optionally
  augmented) the way the network sees it.
* :func:`build_rpn_targets` labels anchors and computes their box deltas.
* :func:`generate_random_rois` and :func:`build_detection_targets` produce head targets
  without the RPN (``USE_RPN_ROIS = False`` or for inspecting a dataset).

Boxes are (y1, x1, y2, x2) int pixels with y2/x2 exclusive, in the molded image.
Crowd instances carry negative class ids: they are never targets, and anchors or ROIs
overlapping them (IoU >= 0.001) are never used as negatives.
"""
import logging
import warnings

import numpy as np

from mrcnn import keypoints as kp_utils
from mrcnn import utils
from mrcnn.data import compose_image_meta
from mrcnn.inputs import InstanceWarning, check_image

logger = logging.getLogger(__name__)

# IoU with a crowd box from which an anchor / ROI is no longer a usable negative.
CROWD_IOU_THRESHOLD = 0.001
# RPN anchor labelling thresholds.
RPN_POSITIVE_IOU = 0.7
RPN_NEGATIVE_IOU = 0.3
# Head ROI labelling threshold (positive at or above, negative below).
ROI_POSITIVE_IOU = 0.5

# imgaug augmenters (class names) that move pixels around and must therefore also be
# applied to the masks; the others (colour, blur, noise, ...) only touch the image.
MASK_AUGMENTERS = frozenset([
    "Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud", "CropAndPad",
    "Affine", "PiecewiseAffine",
])


def _generator(rng):
    """np.random.Generator from None, an int seed or a Generator."""
    if isinstance(rng, np.random.RandomState):
        return np.random.default_rng(int(rng.randint(2 ** 31)))
    return np.random.default_rng(rng)


# ----------------------------------------------------------------------- load_image_gt
def _check_class_ids(dataset, image_id, class_ids, num_classes):
    """Raise ValueError naming the image, the id and NUM_CLASSES for an id outside
    [1, NUM_CLASSES) (negative ids mark crowds: -NUM_CLASSES < id <= -1 is valid)."""
    bad = class_ids[(np.abs(class_ids) < 1) | (np.abs(class_ids) >= num_classes)]
    if bad.size:
        info = dataset.image_info[image_id] if image_id < len(dataset.image_info) else {}
        where = info.get("path") or info.get("id", "")
        raise ValueError(
            f"image {image_id} ({where}): load_mask returned class id {int(bad[0])}, outside "
            f"[1, NUM_CLASSES), and NUM_CLASSES is {num_classes} (all bad ids: "
            f"{sorted(set(bad.tolist()))}; negative ids mark crowds)")


def load_image_gt(dataset, config, image_id, augmentation=None, use_mini_mask=False, rng=None,
                  keypoints=False):
    """Load an image and its instances, resized per the config and optionally augmented.

    dataset: a prepared :class:`mrcnn.utils.Dataset`.
    config: the Config (IMAGE_RESIZE_MODE, IMAGE_MIN_DIM, IMAGE_MAX_DIM, IMAGE_MIN_SCALE,
        IMAGE_CHANNEL_COUNT, NUM_CLASSES, MINI_MASK_SHAPE are used).
    image_id: int, internal image id.
    augmentation: None, an albumentations transform (called as
        ``aug(image=image, masks=[m0, m1, ...])``; geometric transforms move the masks too), or
        an imgaug augmenter (detected by its ``to_deterministic`` method; the same deterministic
        augmenter is applied to image and masks, only its geometric parts to the masks). It must
        keep the image shape.
    use_mini_mask: bool, return masks cut to their box and resized to MINI_MASK_SHAPE.
    rng: np.random.Generator / int seed / None, for "crop" resizing and the seed of an
        albumentations transform (``set_random_seed``).
    keypoints: bool, also load ``dataset.load_keypoints`` (Config.KEYPOINT_NAMES must be set);
        the only augmentation then accepted is ``mrcnn.keypoints.HorizontalFlip``.

    Returns:
        image: [H, W, C] molded-size image (dtype of the dataset's image, uint8 for RGB files).
        image_meta: [12 + NUM_CLASSES] float64 row (see mrcnn.data.compose_image_meta).
        class_ids: [N] int32 (negative for crowds).
        bbox: [N, (y1, x1, y2, x2)] int32 pixels, from the masks after augmentation.
        mask: [H, W, N] bool, or [mini_h, mini_w, N] bool with use_mini_mask.
        keypoints (only with keypoints=True): [N, K, (x, y, v)] float32 in the molded image,
            pixel-index convention (see mrcnn.keypoints).
    Instances whose mask is empty (e.g. moved out of the image) are dropped; an image
    without instances gives N = 0 arrays. Bad inputs raise ValueError naming the image id.
    """
    rng = _generator(rng)
    image = np.asarray(dataset.load_image(image_id))
    channels = config.IMAGE_CHANNEL_COUNT
    if image.ndim != 3 or image.shape[-1] != channels:
        raise ValueError(f"image {image_id}: expected an [H, W, {channels}] image "
                         f"(IMAGE_CHANNEL_COUNT={channels}), got image shape {image.shape}")
    # Floats in [0, 1] and 16-bit values are rescaled (with a warning), NaN/bool refused.
    image = check_image(image, f"image {image_id} ({dataset.image_reference(image_id)})",
                        channels)
    mask, class_ids = dataset.load_mask(image_id)
    mask, class_ids = np.asarray(mask), np.asarray(class_ids)
    if mask.size == 0 and class_ids.size == 0:
        # No instances; the base Dataset returns [0, 0, 0] masks for them.
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
        class_ids = np.zeros((0,), dtype=np.int32)
    if mask.dtype.kind == "f" and not np.all(np.isfinite(mask)):
        raise ValueError(f"image {image_id}: load_mask returned masks with "
                         f"{int(np.count_nonzero(~np.isfinite(mask)))} NaN or infinite values")
    try:
        mask, class_ids = utils.validate_instance_masks(image.shape, mask, class_ids)
    except ValueError as err:
        raise ValueError(f"image {image_id}: {err}") from None
    original_masks = mask
    _check_class_ids(dataset, image_id, class_ids, config.NUM_CLASSES)

    if keypoints:
        kps = _load_keypoints(dataset, config, image_id, mask.shape[-1], augmentation)

    original_shape = image.shape
    image, window, scale, padding, crop = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
        min_scale=config.IMAGE_MIN_SCALE, mode=config.IMAGE_RESIZE_MODE, rng=rng,
        method=config.IMAGE_RESIZE_METHOD)
    if mask.shape[-1]:
        mask = utils.resize_mask(mask, scale, padding, crop)
    else:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)

    if keypoints:
        kps = kp_utils.resize_keypoints(kps, scale, padding, crop)
        if augmentation is not None:
            image, mask, kps = augmentation(image, mask, kps, kp_utils.flip_pairs(config), rng)
    elif augmentation is not None:
        image, mask = _augment(augmentation, image, mask, image_id, rng)

    keep = np.any(mask, axis=(0, 1))
    if not np.all(keep):
        logger.debug("image %s: dropping %d empty instance masks", image_id, np.sum(~keep))
        if not np.all(np.any(original_masks, axis=(0, 1))):
            empty = np.flatnonzero(~np.any(original_masks, axis=(0, 1))).tolist()
            warnings.warn(f"image {image_id} ({dataset.image_reference(image_id)}): instance(s) "
                          f"{empty} of load_mask have empty masks (zero area): dropped",
                          InstanceWarning, stacklevel=2)
    mask, class_ids = mask[:, :, keep], class_ids[keep]
    bbox = utils.extract_bboxes(mask)

    source = dataset.image_info[image_id]["source"]
    source_ids = np.asarray(dataset.source_class_ids[source], dtype=np.int64)
    if source_ids.size and source_ids.max() >= config.NUM_CLASSES:
        raise ValueError(f"image {image_id}: source {source!r} uses class id {source_ids.max()} "
                         f"but config.NUM_CLASSES is {config.NUM_CLASSES}")
    active_class_ids = np.zeros([config.NUM_CLASSES], dtype=np.int32)
    active_class_ids[source_ids] = 1

    if use_mini_mask:
        mask = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                                    active_class_ids)
    if keypoints:
        return image, image_meta, class_ids, bbox, mask, kps[keep]
    return image, image_meta, class_ids, bbox, mask


def _load_keypoints(dataset, config, image_id, count, augmentation):
    """``dataset.load_keypoints`` checked against the config: [N, K, 3] float32."""
    num_keypoints = len(config.KEYPOINT_NAMES)
    if not num_keypoints:
        raise ValueError("load_image_gt(keypoints=True) needs Config.KEYPOINT_NAMES")
    if augmentation is not None and not isinstance(augmentation, kp_utils.HorizontalFlip):
        raise ValueError(f"keypoint models accept only mrcnn.keypoints.HorizontalFlip as "
                         f"augmentation (other augmenters cannot move keypoints), got "
                         f"{type(augmentation).__name__}")
    return kp_utils.check_keypoints(dataset.load_keypoints(image_id), count, num_keypoints,
                                    image_id)


def _augment(augmentation, image, mask, image_id, rng):
    """Apply an albumentations transform or an imgaug augmenter to image and masks."""
    before = image.shape
    count = mask.shape[-1]
    if hasattr(augmentation, "to_deterministic"):          # imgaug
        det = augmentation.to_deterministic()
        image = det.augment_image(image)
        if count:
            hooks = _imgaug_mask_hooks()
            kwargs = {} if hooks is None else {"hooks": hooks}
            mask = det.augment_image(mask.astype(np.uint8), **kwargs)
    elif callable(augmentation):                          # albumentations
        if hasattr(augmentation, "set_random_seed"):
            augmentation.set_random_seed(int(rng.integers(2 ** 31)))
        if count:
            out = augmentation(image=image, masks=[mask[:, :, i].astype(np.uint8)
                                                   for i in range(count)])
            mask = np.stack([np.asarray(m) for m in out["masks"]], axis=-1)
        else:
            out = augmentation(image=image)
        image = np.asarray(out["image"])
    else:
        raise TypeError(f"augmentation must be an albumentations transform or an imgaug "
                        f"augmenter, got {type(augmentation).__name__}")
    if image.shape != before or mask.shape[:2] != before[:2] or mask.shape[-1] != count:
        raise ValueError(f"image {image_id}: augmentation must keep the shapes, image {before} "
                         f"became {image.shape} and masks became {mask.shape}")
    return image, mask.astype(bool)


def _imgaug_mask_hooks():
    """imgaug hooks that keep only the geometric augmenters for masks (None without imgaug)."""
    try:
        import imgaug
    except ImportError:
        return None

    def activator(images, augmenter, parents, default):
        return augmenter.__class__.__name__ in MASK_AUGMENTERS

    return imgaug.HooksImages(activator=activator)


# ------------------------------------------------------------------- build_rpn_targets
def _split_crowds(gt_class_ids, gt_boxes):
    """-> (class ids [G], boxes [G, 4] of real instances, boxes [C, 4] of crowds)."""
    ids = np.asarray(gt_class_ids).reshape(-1).astype(np.int32)
    boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if ids.shape[0] != boxes.shape[0]:
        raise ValueError(f"gt_class_ids {ids.shape} and gt_boxes {boxes.shape} disagree "
                         "on the number of instances")
    return ids[ids > 0], boxes[ids > 0], boxes[ids < 0]


def _near_crowd(boxes, crowd_boxes):
    """[N] bool: IoU >= CROWD_IOU_THRESHOLD with some crowd box."""
    if not len(crowd_boxes):
        return np.zeros(len(boxes), dtype=bool)
    return utils.compute_overlaps(boxes, crowd_boxes).max(axis=1) >= CROWD_IOU_THRESHOLD


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config, rng=None):
    """Label anchors for RPN training and compute the deltas of the positives.

    image_shape: (H, W, C) of the molded image (unused; kept for matterport's signature).
    anchors: [A, (y1, x1, y2, x2)] float pixels.
    gt_class_ids: [N] int (negative = crowd). gt_boxes: [N, (y1, x1, y2, x2)] int pixels.
    config: uses RPN_TRAIN_ANCHORS_PER_IMAGE and RPN_BBOX_STD_DEV.
    rng: np.random.Generator / int seed / None, for subsampling.

    An anchor is positive when its IoU with a gt box is >= 0.7, and the best anchor of each
    gt box (first one on ties, when its IoU is > 0) is positive too; negative when its best
    IoU is < 0.3 and it does not touch a crowd box (IoU >= 0.001). At most half of
    RPN_TRAIN_ANCHORS_PER_IMAGE positives are kept (random subset), and negatives fill the
    rest of RPN_TRAIN_ANCHORS_PER_IMAGE.

    Returns:
        rpn_match: [A] int32, 1 positive, -1 negative, 0 neutral.
        rpn_bbox: [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))] float32, the
            deltas of the positive anchors in anchor order, divided by RPN_BBOX_STD_DEV,
            zero padded.
    """
    rng = _generator(rng)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    per_image = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    _, boxes, crowd_boxes = _split_crowds(gt_class_ids, gt_boxes)
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((per_image, 4), dtype=np.float32)

    near_crowd = _near_crowd(anchors, crowd_boxes)
    if len(boxes):
        overlaps = utils.compute_overlaps(anchors, boxes)        # [A, G]
        best_gt = np.argmax(overlaps, axis=1)
        best_iou = overlaps[np.arange(len(anchors)), best_gt]
        rpn_match[(best_iou < RPN_NEGATIVE_IOU) & ~near_crowd] = -1
        best_anchor = np.argmax(overlaps, axis=0)                # first anchor on ties
        best_anchor = best_anchor[overlaps[best_anchor, np.arange(len(boxes))] > 0]
        rpn_match[best_anchor] = 1
        rpn_match[best_iou >= RPN_POSITIVE_IOU] = 1
    else:
        best_gt = np.zeros(len(anchors), dtype=np.int64)
        rpn_match[~near_crowd] = -1

    positives = np.flatnonzero(rpn_match == 1)
    extra = len(positives) - per_image // 2
    if extra > 0:
        rpn_match[rng.choice(positives, extra, replace=False)] = 0
    negatives = np.flatnonzero(rpn_match == -1)
    extra = len(negatives) - (per_image - np.sum(rpn_match == 1))
    if extra > 0:
        rpn_match[rng.choice(negatives, extra, replace=False)] = 0

    positives = np.flatnonzero(rpn_match == 1)
    if len(positives):
        deltas = utils.box_refinement(anchors[positives], boxes[best_gt[positives]])
        rpn_bbox[:len(positives)] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, np.float32)
    return rpn_match, rpn_bbox


# ---------------------------------------------------------- random ROIs and head targets
def _random_boxes(region, count, rng, min_size=1):
    """count int boxes [count, 4] with corners drawn uniformly inside region (y1, x1, y2, x2)."""
    y1, x1, y2, x2 = (int(v) for v in region)
    if y2 - y1 < min_size or x2 - x1 < min_size:
        raise ValueError(f"cannot draw boxes of {min_size}+ pixels inside region {[y1, x1, y2, x2]}")
    found = np.zeros((0, 4), dtype=np.int32)
    while len(found) < count:
        ys = np.sort(rng.integers(y1, y2 + 1, size=(2 * count, 2)), axis=1)
        xs = np.sort(rng.integers(x1, x2 + 1, size=(2 * count, 2)), axis=1)
        ok = (ys[:, 1] - ys[:, 0] >= min_size) & (xs[:, 1] - xs[:, 0] >= min_size)
        new = np.stack([ys[ok, 0], xs[ok, 0], ys[ok, 1], xs[ok, 1]], axis=1).astype(np.int32)
        found = np.concatenate([found, new])
    return found[:count]


def generate_random_rois(image_shape, count, gt_class_ids, gt_boxes, rng=None):
    """Random ROIs, mostly around the gt boxes (to train the heads without the RPN).

    image_shape: (H, W, ...) of the molded image. count: int, ROIs to make.
    gt_class_ids: [N] int (0 rows are padding and ignored). gt_boxes: [N, 4] int pixels.
    rng: np.random.Generator / int seed / None.

    About 90% of the ROIs (split evenly between the boxes) have their corners drawn inside
    each gt box grown by its own height and width on every side (clipped to the image); the
    rest anywhere in the image. Every ROI is at least 1 pixel high and wide.

    Returns: [count, (y1, x1, y2, x2)] int32 pixels, y2/x2 exclusive.
    """
    rng = _generator(rng)
    height, width = int(image_shape[0]), int(image_shape[1])
    ids = np.asarray(gt_class_ids).reshape(-1)
    boxes = np.asarray(gt_boxes).reshape(-1, 4)[ids != 0]
    per_box = int(0.9 * count / len(boxes)) if len(boxes) else 0
    parts = []
    for y1, x1, y2, x2 in boxes:
        h, w = y2 - y1, x2 - x1
        region = (max(y1 - h, 0), max(x1 - w, 0), min(y2 + h, height), min(x2 + w, width))
        parts.append(_random_boxes(region, per_box, rng))
    parts.append(_random_boxes((0, 0, height, width), count - per_box * len(boxes), rng))
    return np.concatenate(parts).astype(np.int32)


def build_detection_targets(rpn_rois, gt_class_ids, gt_boxes, gt_masks, config, rng=None):
    """Sample ROIs and build class-specific head targets (NumPy twin of DetectionTargetLayer).

    rpn_rois: [N, (y1, x1, y2, x2)] int pixels (e.g. from generate_random_rois).
    gt_class_ids: [G] int (negative = crowd). gt_boxes: [G, 4] int pixels.
    gt_masks: [H, W, G] bool full masks, or [mini_h, mini_w, G] when config.USE_MINI_MASK.
    config: uses TRAIN_ROIS_PER_IMAGE, ROI_POSITIVE_RATIO, NUM_CLASSES, BBOX_STD_DEV,
        MASK_SHAPE, USE_MINI_MASK.
    rng: np.random.Generator / int seed / None.

    Positives (best IoU >= 0.5) are subsampled to int(T * ROI_POSITIVE_RATIO); negatives
    (< 0.5, not touching a crowd) fill the other rows of T = TRAIN_ROIS_PER_IMAGE, and when
    there are too few ROIs, ROIs are repeated (negatives first) to fill T rows.

    Returns:
        rois: [T, (y1, x1, y2, x2)] int32 pixels.
        class_ids: [T] int32 (0 for negatives).
        bboxes: [T, NUM_CLASSES, (dy, dx, log(dh), log(dw))] float32, the deltas (divided by
            BBOX_STD_DEV) in the row of the ROI's class, 0 elsewhere.
        masks: [T, mask_h, mask_w, NUM_CLASSES] float32 in {0, 1}, the ROI's crop of its gt mask
            in the channel of its class, 0 elsewhere.
    """
    rng = _generator(rng)
    total = config.TRAIN_ROIS_PER_IMAGE
    rois = np.asarray(rpn_rois).reshape(-1, 4).astype(np.int32)
    all_ids = np.asarray(gt_class_ids).reshape(-1).astype(np.int32)
    gt_masks = np.asarray(gt_masks)
    gt_index = np.flatnonzero(all_ids > 0)
    ids, boxes, crowd_boxes = _split_crowds(all_ids, gt_boxes)

    if len(boxes):
        overlaps = utils.compute_overlaps(rois, boxes)
        best = np.argmax(overlaps, axis=1)
        best_iou = overlaps[np.arange(len(rois)), best]
    else:
        best, best_iou = np.zeros(len(rois), dtype=np.int64), np.zeros(len(rois))
    fg = np.flatnonzero(best_iou >= ROI_POSITIVE_IOU)
    bg = np.flatnonzero((best_iou < ROI_POSITIVE_IOU) & ~_near_crowd(rois, crowd_boxes))
    max_fg = int(total * config.ROI_POSITIVE_RATIO)
    if len(fg) > max_fg:
        fg = rng.choice(fg, max_fg, replace=False)
    if len(bg) > total - len(fg):
        bg = rng.choice(bg, total - len(fg), replace=False)
    keep = np.concatenate([fg, bg]).astype(np.int64)
    if len(keep) < total:
        pool = bg if len(bg) else fg
        if not len(pool):
            raise ValueError(f"build_detection_targets: none of the {len(rois)} ROIs is usable "
                             "(all empty or touching crowd boxes)")
        keep = np.concatenate([keep, rng.choice(pool, total - len(keep), replace=True)])

    positive = best_iou[keep] >= ROI_POSITIVE_IOU
    out_rois = rois[keep]
    class_ids = np.where(positive, ids[best[keep]] if len(ids) else 0, 0).astype(np.int32)
    bboxes = np.zeros((total, config.NUM_CLASSES, 4), dtype=np.float32)
    mask_shape = tuple(config.MASK_SHAPE)
    masks = np.zeros((total,) + mask_shape + (config.NUM_CLASSES,), dtype=np.float32)
    std = np.asarray(config.BBOX_STD_DEV, dtype=np.float32)
    for row in np.flatnonzero(positive):
        gt = best[keep[row]]
        cls = class_ids[row]
        bboxes[row, cls] = utils.box_refinement(out_rois[row:row + 1], boxes[gt:gt + 1])[0] / std
        gt_mask = gt_masks[:, :, gt_index[gt]]
        y1, x1, y2, x2 = out_rois[row]
        if config.USE_MINI_MASK:
            # Paste the mini mask into its box on a canvas large enough for the ROI too.
            canvas = (max(y2, int(boxes[gt, 2])), max(x2, int(boxes[gt, 3])))
            gt_mask = utils.expand_mask(boxes[gt:gt + 1].astype(np.int32), gt_mask[:, :, None],
                                        canvas)[:, :, 0]
        crop = gt_mask[max(y1, 0):y2, max(x1, 0):x2].astype(np.float32)
        masks[row, :, :, cls] = np.round(utils.resize(crop, mask_shape)) if crop.size else 0
    return out_rois, class_ids, bboxes, masks
