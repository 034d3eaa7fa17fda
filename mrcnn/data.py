"""Image meta, molding, and (with the training issue) the data pipeline.

Image meta is one float row per image, laid out as
``[image_id, original_image_shape (3), image_shape (3), window (y1, x1, y2, x2) (4),
scale (1), active_class_ids (NUM_CLASSES)]``: the matterport layout.
"""
import logging
import math
import warnings

import numpy as np

from mrcnn.inputs import InstanceWarning, too_many_instances_message

logger = logging.getLogger(__name__)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack the attributes of one image into a meta row.

    image_id: int, the image's index in its Dataset.
    original_image_shape: (H, W, C) before resizing or padding.
    image_shape: (H, W, C) after resizing and padding.
    window: (y1, x1, y2, x2) pixels of the real image inside the padded image.
    scale: float, the resize factor applied to the original image.
    active_class_ids: [NUM_CLASSES] 1 for classes of the image's source dataset, else 0.

    Returns: [12 + NUM_CLASSES] float64 row.
    """
    meta = np.array(
        [image_id]
        + list(original_image_shape)
        + list(image_shape)
        + list(window)
        + [scale]
        + list(active_class_ids),
        dtype=np.float64,
    )
    return meta


def parse_image_meta(meta):
    """Split meta rows into their parts.

    meta: [batch, 12 + NUM_CLASSES] (or a single [12 + NUM_CLASSES] row).

    Returns a dict of NumPy arrays: image_id [batch] int32, original_image_shape
    [batch, 3] int32, image_shape [batch, 3] int32, window [batch, 4] int32 pixels,
    scale [batch] float32, active_class_ids [batch, NUM_CLASSES] int32.
    """
    meta = np.asarray(meta)
    if meta.ndim not in (1, 2) or meta.shape[-1] < 13:
        raise ValueError(f"image meta must be [batch, 12 + NUM_CLASSES], got shape {meta.shape}")
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }


def mold_image(images, config):
    """Subtract the mean pixel: [..., C] uint8 or float RGB -> float32 of the same shape."""
    images = np.asarray(images)
    if images.shape[-1] != config.IMAGE_CHANNEL_COUNT:
        raise ValueError(
            f"images have {images.shape[-1]} channels, config.IMAGE_CHANNEL_COUNT is "
            f"{config.IMAGE_CHANNEL_COUNT} (shape {images.shape})")
    return images.astype(np.float32) - config.MEAN_PIXEL


def unmold_image(normalized_images, config):
    """Inverse of mold_image: add the mean pixel back and return uint8 (clipped to 0..255)."""
    images = np.asarray(normalized_images, dtype=np.float32) + config.MEAN_PIXEL
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- pipeline
INPUT_NAMES = ("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
               "input_gt_class_ids", "input_gt_boxes", "input_gt_masks")
# The extra training input of keypoint models (Config.KEYPOINT_NAMES), after input_gt_masks.
KEYPOINT_INPUT_NAME = "input_gt_keypoints"


def input_names(config):
    """Names of the training graph's data inputs for ``config``, in order."""
    return INPUT_NAMES + ((KEYPOINT_INPUT_NAME,) if config.KEYPOINT_NAMES else ())


class AnchorCache:
    """Pixel anchors [A, (y1, x1, y2, x2)] float32 per molded image shape, computed once each."""

    def __init__(self, config):
        self.config = config
        self._cache = {}

    def __call__(self, image_shape):
        from mrcnn import utils
        key = (int(image_shape[0]), int(image_shape[1]))
        if key not in self._cache:
            config = self.config
            shapes = utils.compute_backbone_shapes(config, key)
            self._cache[key] = utils.generate_pyramid_anchors(
                config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE).astype(np.float32)
        return self._cache[key]


def build_batch(dataset, config, image_ids, anchors, rng, augmentation=None,
                no_augmentation_sources=None, random_rois=0, detection_targets=False):
    """Load, augment and build the training targets of a batch of images.

    dataset: a prepared Dataset; image_ids: the batch's ids; anchors: an AnchorCache;
    rng: np.random.Generator (sampling, crops, augmentation seeds).

    Returns a list of arrays in INPUT_NAMES order: images [B, H, W, C] float32 molded,
    image_meta [B, META] float32, rpn_match [B, A, 1] int32, rpn_bbox
    [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32, gt_class_ids [B, MAX_GT_INSTANCES] int32,
    gt_boxes [B, MAX_GT_INSTANCES, (y1, x1, y2, x2)] float32 pixels, gt_masks
    [B, h, w, MAX_GT_INSTANCES] bool; then, for keypoint models (Config.KEYPOINT_NAMES),
    gt_keypoints [B, MAX_GT_INSTANCES, K, (x, y, v)] float32 molded pixels (v = 0 on padding);
    then, with random_rois, rpn_rois [B, random_rois, 4];
    with detection_targets also rois, mrcnn_class_ids, mrcnn_bbox, mrcnn_mask.
    """
    from mrcnn import targets

    no_aug = set(no_augmentation_sources or ())
    with_keypoints = bool(config.KEYPOINT_NAMES)
    rows = []
    for image_id in image_ids:
        source = dataset.image_info[image_id]["source"]
        aug = None if source in no_aug else augmentation
        loaded = targets.load_image_gt(
            dataset, config, image_id, augmentation=aug, use_mini_mask=config.USE_MINI_MASK,
            rng=rng, keypoints=with_keypoints)
        image, image_meta, class_ids, boxes, masks = loaded[:5]
        image_anchors = anchors(image.shape)
        rpn_match, rpn_bbox = targets.build_rpn_targets(
            image.shape, image_anchors, class_ids, boxes, config, rng=rng)
        if len(class_ids) > config.MAX_GT_INSTANCES:
            warnings.warn(too_many_instances_message(image_id, len(class_ids), config),
                          InstanceWarning, stacklevel=2)
            keep = np.sort(rng.choice(len(class_ids), config.MAX_GT_INSTANCES, replace=False))
            class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[..., keep]
            loaded = loaded[:5] + tuple(extra[keep] for extra in loaded[5:])
        row = [image, image_meta, rpn_match, rpn_bbox, class_ids, boxes, masks]
        if with_keypoints:
            gt_keypoints = np.zeros((config.MAX_GT_INSTANCES, len(config.KEYPOINT_NAMES), 3),
                                    dtype=np.float32)
            gt_keypoints[:len(class_ids)] = loaded[5]
            row.append(gt_keypoints)
        if random_rois:
            rpn_rois = targets.generate_random_rois(image.shape, random_rois, class_ids, boxes,
                                                    rng=rng)
            row.append(rpn_rois)
            if detection_targets:
                row.extend(targets.build_detection_targets(
                    rpn_rois, class_ids, boxes, masks, config, rng=rng))
        rows.append(row)

    shapes = {row[0].shape for row in rows}
    if len(shapes) > 1:
        raise ValueError(f"images of one batch must share a molded shape, got {sorted(shapes)} "
                         f"for image ids {list(image_ids)}; use a fixed IMAGE_RESIZE_MODE")
    max_gt = config.MAX_GT_INSTANCES
    batch = len(rows)
    mask_hw = rows[0][6].shape[:2]
    gt_class_ids = np.zeros((batch, max_gt), dtype=np.int32)
    gt_boxes = np.zeros((batch, max_gt, 4), dtype=np.float32)
    gt_masks = np.zeros((batch,) + tuple(mask_hw) + (max_gt,), dtype=bool)
    for i, row in enumerate(rows):
        count = len(row[4])
        gt_class_ids[i, :count] = row[4]
        gt_boxes[i, :count] = row[5]
        gt_masks[i, :, :, :count] = row[6]
    out = [
        mold_image(np.stack([row[0] for row in rows]), config),
        np.stack([row[1] for row in rows]).astype(np.float32),
        np.stack([row[2] for row in rows])[..., None].astype(np.int32),
        np.stack([row[3] for row in rows]).astype(np.float32),
        gt_class_ids, gt_boxes, gt_masks,
    ]
    for column in range(7, len(rows[0])):
        out.append(np.stack([row[column] for row in rows]))
    return out


def data_generator(dataset, config, shuffle=True, augmentation=None, random_rois=0,
                   batch_size=1, detection_targets=False, no_augmentation_sources=None, seed=None):
    """Endless generator of training batches (matterport's interface, for notebooks).

    Yields (inputs, outputs): inputs as build_batch returns them; outputs is [] unless
    detection_targets, then [mrcnn_class_ids, mrcnn_bbox, mrcnn_mask] moved from inputs.
    """
    if not len(dataset.image_ids):
        raise ValueError("data_generator: the dataset has no images (call prepare() after adding some)")
    rng = np.random.default_rng(seed)
    anchors = AnchorCache(config)
    order = np.array(dataset.image_ids)
    position = len(order)
    while True:
        ids = []
        while len(ids) < batch_size:
            if position >= len(order):
                order = rng.permutation(dataset.image_ids) if shuffle else np.array(dataset.image_ids)
                position = 0
            ids.append(int(order[position]))
            position += 1
        arrays = build_batch(dataset, config, ids, anchors, rng, augmentation=augmentation,
                             no_augmentation_sources=no_augmentation_sources,
                             random_rois=random_rois, detection_targets=detection_targets)
        outputs = []
        if detection_targets and random_rois:
            outputs = arrays[-3:]
            arrays = arrays[:-3]
        yield arrays, outputs


def make_sequence(dataset, config, shuffle=True, augmentation=None, no_augmentation_sources=None,
                  steps=None, seed=0, workers=2):
    """A keras.utils.PyDataset of training batches, loaded by ``workers`` threads.

    Each item is ``(inputs,)`` with inputs a dict keyed by INPUT_NAMES. Batches are
    deterministic for a given (seed, epoch, index), whatever the thread order.
    steps: batches per epoch (default: enough to see every image once).
    Threads, not processes: TensorFlow is already running, and forking it can hang.
    """
    import keras

    class _Sequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            if not len(dataset.image_ids):
                raise ValueError("the training dataset has no images (call prepare() after adding some)")
            self.dataset = dataset
            self.config = config
            self.anchors = AnchorCache(config)
            self.batch_size = config.BATCH_SIZE
            self.steps = int(steps or max(1, math.ceil(len(dataset.image_ids) / self.batch_size)))
            self.epoch = 0
            self._order = self._make_order()

        def _make_order(self):
            needed = self.steps * self.batch_size
            rng = np.random.default_rng([seed, self.epoch])
            chunks, total = [], 0
            while total < needed:
                ids = np.array(self.dataset.image_ids)
                chunks.append(rng.permutation(ids) if shuffle else ids)
                total += len(ids)
            return np.concatenate(chunks)[:needed]

        def __len__(self):
            return self.steps

        def batch_image_ids(self, index):
            start = index * self.batch_size
            return [int(i) for i in self._order[start:start + self.batch_size]]

        def __getitem__(self, index):
            ids = self.batch_image_ids(index)
            rng = np.random.default_rng([seed, self.epoch, index])
            arrays = build_batch(self.dataset, self.config, ids, self.anchors, rng,
                                 augmentation=augmentation,
                                 no_augmentation_sources=no_augmentation_sources)
            return (dict(zip(input_names(self.config), arrays)),)

        def on_epoch_end(self):
            self.epoch += 1
            self._order = self._make_order()

    return _Sequence()
