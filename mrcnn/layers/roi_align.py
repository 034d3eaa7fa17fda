"""PyramidROIAlign: pool every ROI from the FPN level that matches its size, batched."""
import logging

import keras
from keras import ops

from mrcnn import backend
from mrcnn.ops import parse_image_meta_graph

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


def _pool(crop_and_resize, boxes, box_indices, pool_shape, mode, sampling_ratio):
    """Bilinear pooling of boxes with a crop primitive.

    crop_and_resize: callable (boxes [n, 4], box_indices [n], (h, w)) -> [n, h, w, C] float32,
        tf.image.crop_and_resize's sampling on the box's feature map (mrcnn.backend).
    boxes: [n, 4] normalized; box_indices: [n] int32 image index.
    Returns: [n, ph, pw, C] float32.
    """
    ph, pw = pool_shape
    if mode == "crop_and_resize":
        return crop_and_resize(boxes, box_indices, (ph, pw))
    # "paper": s x s samples at the centres of the sub-bins of each bin, averaged. The sub-bin
    # centres of a box cut into (ph * s) x (pw * s) cells are a regular grid running from half a
    # cell inside each edge, which is what crop_and_resize samples on the shrunk box.
    s = sampling_ratio
    cells_y, cells_x = ph * s, pw * s
    y1, x1, y2, x2 = (boxes[:, i] for i in range(4))
    half_y = (y2 - y1) / (2.0 * cells_y)
    half_x = (x2 - x1) / (2.0 * cells_x)
    shrunk = ops.stack([y1 + half_y, x1 + half_x, y2 - half_y, x2 - half_x], axis=1)
    samples = crop_and_resize(shrunk, box_indices, (cells_y, cells_x))
    channels = ops.shape(samples)[-1]
    samples = ops.reshape(samples, (-1, ph, s, pw, s, channels))
    return ops.mean(samples, axis=(2, 4))


def __getattr__(name):
    # crop_and_resize_gather moved to the TensorFlow side of the backend seam.
    if name == "crop_and_resize_gather":
        from mrcnn.backend.tensorflow import crop_and_resize_gather
        return crop_and_resize_gather
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        # TensorFlow's level partition has data-dependent shapes: keep Keras'
        # jit_compile="auto" from compiling the model with XLA there (static on JAX).
        self.supports_jit = not backend.get().DYNAMIC_SHAPES

    def call(self, inputs):
        boxes, image_meta, *feature_maps = inputs
        num_levels = MAX_LEVEL - MIN_LEVEL + 1
        if len(feature_maps) != num_levels:
            raise ValueError(f"PyramidROIAlign expects {num_levels} feature maps (P2..P5), "
                             f"got {len(feature_maps)}")
        boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
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

        def pool(crop_and_resize, pool_boxes, pool_indices):
            return _pool(crop_and_resize, pool_boxes, pool_indices, self.pool_shape, self.mode,
                         self.sampling_ratio)

        feature_maps = [ops.cast(feature_map, "float32") for feature_map in feature_maps]
        pooled = backend.get().pyramid_roi_align(feature_maps, flat_boxes, box_indices, levels,
                                                 MIN_LEVEL, pool, self.implementation)
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

