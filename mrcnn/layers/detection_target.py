"""DetectionTargetLayer: sample training ROIs from the proposals and build the head targets.

The whole batch is processed at once with fixed shapes (no loop over images, no ragged
intermediate tensors): padding rows are masked rather than removed, and random sampling
is a top-k over random keys drawn from the layer's ``keras.random.SeedGenerator`` (taking
the k largest of i.i.d. uniform keys among the candidates is a uniformly random subset,
in random order, exactly what shuffling and slicing gives).
"""
import logging

import keras
import numpy as np
from keras import ops

from mrcnn import backend
from mrcnn.ops import box_refinement_graph

logger = logging.getLogger(__name__)

# A proposal with IoU >= this against a crowd box is never used as a negative.
CROWD_IOU_THRESHOLD = 0.001
# IoU with the best ground truth box that makes a proposal positive.
POSITIVE_IOU_THRESHOLD = 0.5


def batched_overlaps(boxes1, boxes2):
    """IoU of every pair of boxes, image by image.

    boxes1: [batch, N1, (y1, x1, y2, x2)] float32.
    boxes2: [batch, N2, (y1, x1, y2, x2)] float32, same frame.

    Returns: [batch, N1, N2] float32 IoU (0 where the union is empty, e.g. padding rows).
    """
    b1 = ops.expand_dims(boxes1, 2)  # [B, N1, 1, 4]
    b2 = ops.expand_dims(boxes2, 1)  # [B, 1, N2, 4]
    height = ops.maximum(ops.minimum(b1[..., 2], b2[..., 2]) - ops.maximum(b1[..., 0], b2[..., 0]), 0.0)
    width = ops.maximum(ops.minimum(b1[..., 3], b2[..., 3]) - ops.maximum(b1[..., 1], b2[..., 1]), 0.0)
    intersection = height * width
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    return ops.where(union > 0, intersection / ops.where(union > 0, union, 1.0), 0.0)


def _first_k_of(candidates, keys, k):
    """Indices of the candidates with the k largest keys, per image.

    candidates: [batch, N] bool; keys: [batch, N] float32 in [0, 1); k: static int.

    Returns: [batch, k] int32 indices into N (entries beyond the number of candidates of an
    image point at non-candidates and must be masked by the caller).
    """
    scored = ops.where(candidates, keys, -1.0)
    # Pad to at least k columns so that top_k works when N < k.
    pad = ops.full((ops.shape(scored)[0], k), -2.0, dtype="float32")
    _, indices = ops.top_k(ops.concatenate([scored, pad], axis=1), k=k, sorted=True)
    return ops.cast(indices, "int32")


def _gather_rows(values, indices):
    """values [batch, N, ...], indices [batch, T] -> [batch, T, ...] (indices clipped to N-1)."""
    indices = ops.clip(indices, 0, ops.shape(values)[1] - 1)
    return backend.get().batch_gather(values, indices, batch_dims=1)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Sample positive and negative ROIs and build class, box and mask targets for the heads.

    Per image: zero-padded proposals and ground truth rows (class id 0) are ignored; crowd
    boxes (negative class ids) are not targets, and a proposal with IoU >= 0.001 against a
    crowd box is never a negative. A proposal is positive when its best IoU with a (non-crowd)
    ground truth box is >= 0.5, negative when it is < 0.5. Up to
    ``int(train_rois_per_image * roi_positive_ratio)`` positives are sampled at random, then
    ``int(n_pos / roi_positive_ratio) - n_pos`` negatives (so that positives make the ratio
    share; capped by the free rows and by the negatives available). An image with no positive
    at all (e.g. no objects) gets up to ``train_rois_per_image`` negatives, so that the
    classifier still sees its background. Each positive takes the class, the box deltas
    (``box_refinement / bbox_std_dev``) and the mask (crop-and-resize of the gt mask at the
    ROI, rounded to 0/1) of its best ground truth box.

    Args:
        train_rois_per_image: int T, ROIs returned per image (TRAIN_ROIS_PER_IMAGE).
        roi_positive_ratio: float in (0, 1], share of positives (ROI_POSITIVE_RATIO).
        bbox_std_dev: 4 floats, the box targets are divided by it (BBOX_STD_DEV).
        mask_shape: (height, width) of the mask targets (MASK_SHAPE).
        use_mini_mask: bool, True when gt_masks are mini masks in their box's frame
            (USE_MINI_MASK), False for full image masks.
        seed: int or None, seed of the layer's random generator.
        num_keypoints: int K >= 0; > 0 for Keypoint R-CNN (Config.KEYPOINT_NAMES): two more
            inputs and two more outputs, below.
        keypoint_heatmap_size: int m, side of the keypoint heatmaps (KEYPOINT_MASK_SHAPE).

    Inputs: [proposals, gt_class_ids, gt_boxes, gt_masks]
        proposals: [batch, N, (y1, x1, y2, x2)] float32, normalized, zero-padded rows.
        gt_class_ids: [batch, M] int, 0 = padding, negative = crowd.
        gt_boxes: [batch, M, (y1, x1, y2, x2)] float32, normalized.
        gt_masks: [batch, mh, mw, M] bool or float; mini masks (one per gt box, spanning its
            box) when ``use_mini_mask``, else full image masks.
        With num_keypoints > 0 also gt_keypoints [batch, M, K, (x, y, v)] float32, molded
        image pixels, pixel-index convention (mrcnn.keypoints), and image_meta [batch, META]
        (the molded image's height and width, to bring the ROIs back to pixels).

    Outputs: [rois, target_class_ids, target_bbox, target_mask], T = train_rois_per_image,
    positives first, then negatives, then zero rows:
        rois: [batch, T, (y1, x1, y2, x2)] float32, normalized.
        target_class_ids: [batch, T] int32 (0 for negatives and padding).
        target_bbox: [batch, T, (dy, dx, log(dh), log(dw))] float32, divided by bbox_std_dev,
            0 except on positives.
        target_mask: [batch, T, mask_height, mask_width] float32 in {0, 1}, 0 except on positives.
    With num_keypoints > 0 also (the graph twin of ``mrcnn.keypoints.keypoint_targets``):
        target_keypoints: [batch, T, K] int32, the cell ``row * m + col`` of each keypoint of
            the ROI's ground truth instance in the ROI's m x m heatmap; 0 where unused.
        target_keypoint_weights: [batch, T, K] float32, 1 for labelled keypoints inside a
            positive ROI, else 0.
    """

    def __init__(self, train_rois_per_image, roi_positive_ratio, bbox_std_dev, mask_shape,
                 use_mini_mask, seed=None, num_keypoints=0, keypoint_heatmap_size=56,
                 name="proposal_targets", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        if isinstance(train_rois_per_image, bool) or int(train_rois_per_image) != train_rois_per_image \
                or train_rois_per_image < 1:
            raise ValueError(f"train_rois_per_image must be an integer >= 1, got {train_rois_per_image!r}")
        if not 0.0 < float(roi_positive_ratio) <= 1.0:
            raise ValueError(f"roi_positive_ratio must be in (0, 1], got {roi_positive_ratio!r}")
        std = np.asarray(bbox_std_dev, dtype=np.float32)
        if std.shape != (4,) or np.any(std <= 0):
            raise ValueError(f"bbox_std_dev must be 4 positive numbers, got {bbox_std_dev!r}")
        mask_shape = tuple(int(v) for v in mask_shape)
        if len(mask_shape) != 2 or min(mask_shape) < 1:
            raise ValueError(f"mask_shape must be (height, width) >= 1, got {mask_shape!r}")
        self.train_rois_per_image = int(train_rois_per_image)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.bbox_std_dev = [float(v) for v in std]
        self.mask_shape = mask_shape
        self.use_mini_mask = bool(use_mini_mask)
        for arg, value, minimum in (("num_keypoints", num_keypoints, 0),
                                    ("keypoint_heatmap_size", keypoint_heatmap_size, 1)):
            if isinstance(value, bool) or int(value) != value or value < minimum:
                raise ValueError(f"{arg} must be an integer >= {minimum}, got {value!r}")
        self.num_keypoints = int(num_keypoints)
        self.keypoint_heatmap_size = int(keypoint_heatmap_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        config = super().get_config()
        config.update({
            "train_rois_per_image": self.train_rois_per_image,
            "roi_positive_ratio": self.roi_positive_ratio,
            "bbox_std_dev": list(self.bbox_std_dev),
            "mask_shape": list(self.mask_shape),
            "use_mini_mask": self.use_mini_mask,
            "seed": self.seed,
        })
        if self.num_keypoints:  # absent otherwise: Mask R-CNN's config stays as it was
            config.update({"num_keypoints": self.num_keypoints,
                           "keypoint_heatmap_size": self.keypoint_heatmap_size})
        return config

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        t = self.train_rois_per_image
        shapes = [(batch, t, 4), (batch, t), (batch, t, 4), (batch, t) + self.mask_shape]
        if self.num_keypoints:
            shapes += [(batch, t, self.num_keypoints)] * 2
        return shapes

    def compute_output_spec(self, inputs):
        shapes = self.compute_output_shape([tuple(x.shape) for x in inputs])
        dtypes = ["float32", "int32", "float32", "float32", "int32", "float32"]
        return [keras.KerasTensor(shape, dtype=dtype) for shape, dtype in zip(shapes, dtypes)]

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs[:4]
        proposals = ops.cast(proposals, "float32")
        gt_boxes = ops.cast(gt_boxes, "float32")
        gt_class_ids = ops.cast(gt_class_ids, "int32")
        t = self.train_rois_per_image
        max_pos = int(t * self.roi_positive_ratio)

        # ---- labels of every proposal
        valid = ops.any(ops.not_equal(proposals, 0.0), axis=-1)                    # [B, N]
        overlaps = batched_overlaps(proposals, gt_boxes)                            # [B, N, M]
        is_gt = ops.expand_dims(ops.greater(gt_class_ids, 0), 1)                    # [B, 1, M]
        is_crowd = ops.expand_dims(ops.less(gt_class_ids, 0), 1)
        gt_iou = ops.where(is_gt, overlaps, 0.0)
        # A zero column keeps max/argmax defined when an image has no gt at all; it can never
        # be the argmax of a positive (IoU >= 0.5) since it sits last.
        zero_col = ops.zeros_like(gt_iou[:, :, :1])
        gt_iou = ops.concatenate([gt_iou, zero_col], axis=2)
        best_iou = ops.max(gt_iou, axis=2)                                         # [B, N]
        best_gt = ops.cast(ops.argmax(gt_iou, axis=2), "int32")                    # [B, N]
        crowd_iou = ops.max(ops.concatenate([ops.where(is_crowd, overlaps, 0.0), zero_col], axis=2),
                            axis=2)
        positive = ops.logical_and(valid, best_iou >= POSITIVE_IOU_THRESHOLD)
        negative = ops.logical_and(
            ops.logical_and(valid, best_iou < POSITIVE_IOU_THRESHOLD),
            crowd_iou < CROWD_IOU_THRESHOLD)

        # ---- random sampling: counts, then the first k candidates by random key
        keys = keras.random.uniform(ops.shape(valid), seed=self.seed_generator, dtype="float32")
        n_pos = ops.minimum(ops.sum(ops.cast(positive, "int32"), axis=1), max_pos)  # [B]
        wanted = ops.cast(ops.cast(n_pos, "float32") / self.roi_positive_ratio, "int32") - n_pos
        wanted = ops.where(n_pos > 0, wanted, t)
        n_neg = ops.minimum(ops.minimum(wanted, t - n_pos),
                            ops.sum(ops.cast(negative, "int32"), axis=1))
        pos_index = _first_k_of(positive, keys, t)                                  # [B, T]
        neg_index = _first_k_of(negative, keys, t)

        # Row j of the output: positive j, or negative j - n_pos, or padding.
        rows = ops.expand_dims(ops.arange(t, dtype="int32"), 0)                     # [1, T]
        n_pos_col = ops.expand_dims(n_pos, 1)
        is_pos_row = rows < n_pos_col
        is_used_row = rows < n_pos_col + ops.expand_dims(n_neg, 1)
        neg_slot = ops.clip(rows - n_pos_col, 0, t - 1)
        index = ops.where(is_pos_row, pos_index, ops.take_along_axis(neg_index, neg_slot, axis=1))

        used = ops.expand_dims(ops.cast(is_used_row, "float32"), -1)
        pos_f = ops.expand_dims(ops.cast(is_pos_row, "float32"), -1)
        rois = _gather_rows(proposals, index) * used                               # [B, T, 4]

        # ---- targets of the positives
        roi_gt = ops.take_along_axis(best_gt, ops.clip(index, 0, ops.shape(best_gt)[1] - 1), axis=1)
        roi_gt = ops.minimum(roi_gt, ops.shape(gt_boxes)[1] - 1)                  # [B, T]
        class_ids = _gather_rows(gt_class_ids, roi_gt) * ops.cast(is_pos_row, "int32")
        roi_gt_boxes = _gather_rows(gt_boxes, roi_gt)                              # [B, T, 4]
        unit = ops.convert_to_tensor(np.array([0.0, 0.0, 1.0, 1.0], np.float32))
        safe_rois = ops.where(is_pos_row[..., None], rois, unit)
        safe_gt = ops.where(is_pos_row[..., None], roi_gt_boxes, unit)
        deltas = box_refinement_graph(safe_rois, safe_gt) / ops.convert_to_tensor(
            np.array(self.bbox_std_dev, np.float32))
        deltas = deltas * pos_f

        masks = self._mask_targets(gt_masks, safe_rois, safe_gt, roi_gt) * pos_f[..., None]
        if not self.num_keypoints:
            return [rois, class_ids, deltas, masks]
        gt_keypoints, image_meta = inputs[4], inputs[5]
        cells, weights = self._keypoint_targets(
            _gather_rows(ops.cast(gt_keypoints, "float32"), roi_gt), rois, image_meta)
        weights = weights * pos_f
        cells = cells * ops.cast(weights > 0, "int32")
        return [rois, class_ids, deltas, masks, cells, weights]

    def _keypoint_targets(self, keypoints, rois, image_meta):
        """keypoints [B, T, K, 3] pixels, rois [B, T, 4] normalized -> ([B, T, K] int32 cells,
        [B, T, K] float32 weights), as ``mrcnn.keypoints.keypoint_targets`` on pixel ROIs."""
        from mrcnn.keypoints import BORDER_TOLERANCE

        m = float(self.keypoint_heatmap_size)
        meta = ops.cast(image_meta, "float32")
        height = ops.expand_dims(meta[:, 4], 1) - 1.0                              # [B, 1]
        width = ops.expand_dims(meta[:, 5], 1) - 1.0
        # Normalized ROIs back to pixel edges (utils.denorm_boxes without the rounding).
        y1, x1 = rois[..., 0] * height, rois[..., 1] * width                       # [B, T]
        y2, x2 = rois[..., 2] * height + 1.0, rois[..., 3] * width + 1.0
        roi_h, roi_w = ops.expand_dims(y2 - y1, -1), ops.expand_dims(x2 - x1, -1)  # [B, T, 1]
        y1, x1 = ops.expand_dims(y1, -1), ops.expand_dims(x1, -1)
        y2, x2 = ops.expand_dims(y2, -1), ops.expand_dims(x2, -1)
        x = keypoints[..., 0] + 0.5                                                # [B, T, K]
        y = keypoints[..., 1] + 0.5
        tol = BORDER_TOLERANCE
        valid = ops.logical_and(
            ops.logical_and(keypoints[..., 2] > 0, ops.logical_and(roi_h > 0, roi_w > 0)),
            ops.logical_and(ops.logical_and(x >= x1 - tol, x <= x2 + tol),
                            ops.logical_and(y >= y1 - tol, y <= y2 + tol)))
        col = ops.floor((x - x1) * m / ops.where(roi_w > 0, roi_w, 1.0))
        row = ops.floor((y - y1) * m / ops.where(roi_h > 0, roi_h, 1.0))
        col = ops.cast(ops.clip(col, 0.0, m - 1.0), "int32")
        row = ops.cast(ops.clip(row, 0.0, m - 1.0), "int32")
        cells = row * self.keypoint_heatmap_size + col
        return cells * ops.cast(valid, "int32"), ops.cast(valid, "float32")

    def _mask_targets(self, gt_masks, rois, roi_gt_boxes, roi_gt):
        """Crop each positive ROI's gt mask: -> [B, T, mask_h, mask_w] float32 in {0, 1}.

        Positives sit in the first int(T * ratio) rows, so only those rows are cropped, and
        only the gt masks they use are gathered and cast to float (full-image masks are big).
        """
        t = self.train_rois_per_image
        k = int(t * self.roi_positive_ratio)
        batch = ops.shape(rois)[0]
        if k == 0:
            return ops.zeros((batch, t) + self.mask_shape, dtype="float32")
        rois, roi_gt_boxes, roi_gt = rois[:, :k], roi_gt_boxes[:, :k], roi_gt[:, :k]
        per_gt = ops.transpose(gt_masks, (0, 3, 1, 2))                            # [B, M, mh, mw]
        selected = backend.get().batch_gather(per_gt, roi_gt, batch_dims=1)                       # [B, k, mh, mw]
        shape = ops.shape(selected)
        images = ops.reshape(ops.cast(selected, "float32"), (-1, shape[2], shape[3], 1))
        boxes = rois
        if self.use_mini_mask:
            # Express the ROI in the unit frame of its gt box, which the mini mask spans.
            y1, x1, y2, x2 = (roi_gt_boxes[..., i] for i in range(4))
            height = ops.maximum(y2 - y1, 1e-12)
            width = ops.maximum(x2 - x1, 1e-12)
            boxes = ops.stack([(rois[..., 0] - y1) / height, (rois[..., 1] - x1) / width,
                               (rois[..., 2] - y1) / height, (rois[..., 3] - x1) / width], axis=-1)
        crops = backend.get().crop_and_resize(images, ops.reshape(boxes, (-1, 4)),
                                              ops.arange(batch * k, dtype="int32"),
                                              self.mask_shape)
        crops = ops.round(ops.reshape(crops, (batch, k) + self.mask_shape))
        return ops.pad(crops, [[0, 0], [0, t - k], [0, 0], [0, 0]])
