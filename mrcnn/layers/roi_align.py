"""PyramidROIAlign: pool every ROI from the FPN level that matches its size, batched."""
import logging

import keras
import tensorflow as tf
from keras import ops

from mrcnn.ops import parse_image_meta_graph, unfoldable_zero

logger = logging.getLogger(__name__)

ROI_ALIGN_MODES = ("crop_and_resize", "paper")
ROI_ALIGN_IMPLEMENTATIONS = ("partition", "gather")
# Levels P2..P5 and the level of a 224 x 224 ROI (the ImageNet canonical size), from the FPN paper.
MIN_LEVEL = 2
MAX_LEVEL = 5
CANONICAL_LEVEL = 4
CANONICAL_SIZE = 224.0


def roi_pyramid_levels(boxes, image_area):
    """FPN level of each ROI: ``min(5, max(2, 4 + round(log2(sqrt(h * w) / (224 / sqrt(area))))))``.

    boxes: [..., (y1, x1, y2, x2)] float32, normalized.
    image_area: scalar float32, H * W of the molded image in pixels.

    Returns: [...] int32 level in 2..5 (rounding half to even, like tf.round). Empty (zero)
    boxes go to level 2, and so do non-finite ones (a diverged model's NaN boxes must reach
    the loss, where training stops with a message, not crash the level partition).
    """
    boxes = ops.cast(boxes, "float32")
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    canonical = CANONICAL_SIZE / ops.sqrt(ops.cast(image_area, "float32"))
    # log2(0) = -inf, which the max() below sends to the lowest level.
    level = CANONICAL_LEVEL + ops.round(ops.log2(ops.sqrt(ops.maximum(h * w, 0.0)) / canonical))
    level = ops.where(ops.isnan(level), float(MIN_LEVEL), level)
    level = ops.minimum(float(MAX_LEVEL), ops.maximum(float(MIN_LEVEL), level))
    return ops.cast(level, "int32")


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


def _crop(feature_map, boxes, box_indices, pool_shape, mode, sampling_ratio, gather=False):
    """Bilinear crops of boxes from one feature map.

    feature_map: [batch, Hf, Wf, C]; boxes: [n, 4] normalized; box_indices: [n] int32 image index.
    gather: use crop_and_resize_gather instead of tf.image.crop_and_resize.
    Returns: [n, ph, pw, C] float32.
    """
    ph, pw = pool_shape
    crop_and_resize = crop_and_resize_gather if gather else (
        lambda f, b, i, size: tf.image.crop_and_resize(f, b, i, size, method="bilinear"))
    if mode == "crop_and_resize":
        return crop_and_resize(feature_map, boxes, box_indices, (ph, pw))
    # "paper": s x s samples at the centres of the sub-bins of each bin, averaged. The sub-bin
    # centres of a box cut into (ph * s) x (pw * s) cells are a regular grid running from half a
    # cell inside each edge, which is what crop_and_resize samples on the shrunk box.
    s = sampling_ratio
    cells_y, cells_x = ph * s, pw * s
    y1, x1, y2, x2 = (boxes[:, i] for i in range(4))
    half_y = (y2 - y1) / (2.0 * cells_y)
    half_x = (x2 - x1) / (2.0 * cells_x)
    shrunk = ops.stack([y1 + half_y, x1 + half_x, y2 - half_y, x2 - half_x], axis=1)
    samples = crop_and_resize(feature_map, shrunk, box_indices, (cells_y, cells_x))
    channels = ops.shape(samples)[-1]
    samples = ops.reshape(samples, (-1, ph, s, pw, s, channels))
    return ops.mean(samples, axis=(2, 4))


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """RoIAlign on a feature pyramid: each ROI is pooled from the level that matches its size.

    Args:
        pool_shape: (height, width) of the pooled output, e.g. (7, 7) or (14, 14).
        mode: "crop_and_resize" (one bilinear sample per output cell, what matterport weights
            were trained with) or "paper" (sampling_ratio x sampling_ratio bilinear samples at
            the sub-bin centres of each bin, averaged, as in He et al. 2017).
        sampling_ratio: int >= 1, samples per bin side in "paper" mode (ignored otherwise).
        implementation: "partition" (default: each ROI is cropped on its own level only,
            tf.dynamic_partition / tf.image.crop_and_resize / tf.dynamic_stitch) or "gather"
            (every ROI is cropped on every level by crop_and_resize_gather and the crop of its
            level is kept: 4x the crops, but only Gather and arithmetic, which exported
            graphs need: TFLite has none of the three ops). Both give the same crops up to
            float rounding.

    Inputs: [boxes, image_meta, P2, P3, P4, P5]
        boxes: [batch, N, (y1, x1, y2, x2)] float32, normalized. Gradients do not flow into them.
            A box with a non-finite coordinate gives a NaN crop.
        image_meta: [batch, 12 + NUM_CLASSES], see mrcnn.data.compose_image_meta; the molded
            image_shape of the first row sets the image area used for the level choice.
        P2..P5: [batch, Hk, Wk, C] feature maps (same C). A normalized y maps to y * (Hk - 1).

    Output: [batch, N, pool_height, pool_width, C] float32, in the input box order.
    """

    def __init__(self, pool_shape, mode="crop_and_resize", sampling_ratio=2,
                 implementation="partition", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        pool_shape = tuple(int(v) for v in pool_shape)
        if len(pool_shape) != 2 or min(pool_shape) < 1:
            raise ValueError(f"pool_shape must be (height, width) >= 1, got {pool_shape!r}")
        if mode not in ROI_ALIGN_MODES:
            raise ValueError(f"mode must be one of {ROI_ALIGN_MODES}, got {mode!r}")
        if isinstance(sampling_ratio, bool) or int(sampling_ratio) != sampling_ratio \
                or sampling_ratio < 1:
            raise ValueError(f"sampling_ratio must be an integer >= 1, got {sampling_ratio!r}")
        if implementation not in ROI_ALIGN_IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {ROI_ALIGN_IMPLEMENTATIONS}, "
                             f"got {implementation!r}")
        self.pool_shape = pool_shape
        self.mode = mode
        self.implementation = implementation
        self.sampling_ratio = int(sampling_ratio)
        # Data-dependent shapes (NMS / per-level partitions): keep Keras' jit_compile="auto"
        # from compiling the model with XLA.
        self.supports_jit = False

    def call(self, inputs):
        boxes, image_meta, *feature_maps = inputs
        num_levels = MAX_LEVEL - MIN_LEVEL + 1
        if len(feature_maps) != num_levels:
            raise ValueError(f"PyramidROIAlign expects {num_levels} feature maps (P2..P5), "
                             f"got {len(feature_maps)}")
        boxes = tf.stop_gradient(ops.cast(boxes, "float32"))
        image_shape = parse_image_meta_graph(image_meta)["image_shape"][0]
        image_area = image_shape[0] * image_shape[1]

        batch = ops.shape(boxes)[0]
        num_boxes = ops.shape(boxes)[1]
        flat_boxes = ops.reshape(boxes, (-1, 4))
        # A diverged model proposes NaN / inf boxes, which crop_and_resize refuses: crop a
        # zero box instead and return NaN for that row, so that the loss turns NaN and
        # training stops with a message rather than a crash here.
        finite = ops.all(ops.isfinite(flat_boxes), axis=-1)
        flat_boxes = ops.where(finite[:, None], flat_boxes, 0.0)
        boxes = ops.reshape(flat_boxes, (batch, num_boxes, 4))
        levels = ops.reshape(roi_pyramid_levels(boxes, image_area), (-1,))
        # Image index of every flattened box.
        box_indices = ops.reshape(
            ops.repeat(ops.arange(batch, dtype="int32"), num_boxes), (-1,))
        positions = ops.arange(ops.shape(flat_boxes)[0], dtype="int32")

        if self.implementation == "gather":
            pooled = 0.0
            for level, feature_map in enumerate(feature_maps, start=MIN_LEVEL):
                crops = _crop(ops.cast(feature_map, "float32"), flat_boxes, box_indices,
                              self.pool_shape, self.mode, self.sampling_ratio, gather=True)
                pooled = pooled + ops.where((levels == level)[:, None, None, None], crops, 0.0)
            pooled = ops.where(finite[:, None, None, None], pooled, float("nan"))
            channels = ops.shape(feature_maps[0])[-1]
            return ops.reshape(pooled, (batch, num_boxes, *self.pool_shape, channels))
        parts = tf.dynamic_partition(positions, levels - MIN_LEVEL, num_levels)
        pooled = []
        for part, feature_map in zip(parts, feature_maps):
            level_boxes = tf.gather(flat_boxes, part)
            level_indices = tf.gather(box_indices, part)
            pooled.append(_crop(ops.cast(feature_map, "float32"), level_boxes, level_indices,
                                self.pool_shape, self.mode, self.sampling_ratio))
        # Put the crops back in the order of the flattened input boxes.
        pooled = tf.dynamic_stitch(parts, pooled)
        pooled = ops.where(finite[:, None, None, None], pooled, float("nan"))
        channels = ops.shape(feature_maps[0])[-1]
        return ops.reshape(pooled, (batch, num_boxes, *self.pool_shape, channels))

    def compute_output_shape(self, input_shape):
        boxes_shape = input_shape[0]
        channels = input_shape[2][-1]
        return (boxes_shape[0], boxes_shape[1], *self.pool_shape, channels)

    def get_config(self):
        config = super().get_config()
        config.update({
            "pool_shape": list(self.pool_shape),
            "mode": self.mode,
            "sampling_ratio": self.sampling_ratio,
            "implementation": self.implementation,
        })
        return config

