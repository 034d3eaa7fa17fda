"""Self-contained serving graphs: molding and unmolding inside, SavedModel / ONNX / LiteRT out.

The exported signature takes raw images and returns what ``MaskRCNN.detect()`` returns,
so that a server needs neither mrcnn nor any Python code of ours:

    images:          [batch, H, W, 3] uint8 RGB, any H and W (one size per call).
    boxes:           [batch, N, (y1, x1, y2, x2)] int32 pixels of the input image (y2, x2
                     exclusive), ``detect()``'s "rois".
    class_ids:       [batch, N] int32 (0 in the padding rows).
    scores:          [batch, N] float32 (0 in the padding rows).
    num_detections:  [batch] int32, the real rows of each image (they come first).
    masks:           [batch, N, H, W] uint8 0/1 full-image masks (``detect()``'s
                     "masks" transposed to instance-first).

N is the largest detection count of the batch (dynamic, at most DETECTION_MAX_INSTANCES).
Masks are full-image rather than box-relative 28x28 because pasting a box mask needs the
skimage resize to the box size and the 0.5 threshold that ``detect()`` applies: doing it
in the graph keeps every consumer (C++, C#, mobile) exact without reimplementing it.

Molding reproduces ``utils.resize_image`` + ``data.mold_image`` in the graph: the scale of
the config's IMAGE_RESIZE_MODE ("square", "pad64" or "none"), skimage's bilinear resize
(``order=1, mode="constant", cval=0, clip=True``: samples at pixel centres, zeros beyond the
border, then clipped into the input's [min, max]), truncation to uint8 (matterport's
``astype``), centred zero padding, mean subtraction.
The resize is separable and each output row/column blends two input rows/columns, so it is
done by two gathers and weighted sums: cheap, and every runtime has Gather. Unmolding pastes
each 28x28 mask into its box the same way (``utils.unmold_mask``: resize to the box, >= 0.5).

The resize arithmetic is float64 in skimage's order of operations, bit for bit with
``mrcnn.resizing`` (SavedModel, ONNX). TFLite has no float64 kernels: the LiteRT graph molds
with ``mrcnn.float64.resize_uint8``, which gives the same uint8 image from int32/int64
kernels (exact rational values, and emulated float64 where float64's last bit decides), and
pastes masks in float32 (a mask pixel whose probability lies within ~1e-7 of the 0.5
threshold may flip). LiteRT graphs also run NMS as ``mrcnn.ops.nms_graph`` (TFLite's NMS
kernel repeats zero-area boxes and orders equal scores by heap), and the SavedModel is
written by ``keras.export.ExportArchive`` without ``track()`` (``Model.export`` stored every
weight twice).
"""
import logging
import os

import numpy as np

from mrcnn import float64

logger = logging.getLogger(__name__)

FORMATS = ("tf_saved_model", "onnx", "litert")
# Formats whose runtime's NMS kernel differs from TensorFlow's: their graph uses nms_graph.
GRAPH_NMS_FORMATS = ("litert",)
OUTPUT_NAMES = ("boxes", "class_ids", "scores", "num_detections", "masks")
GRAPH_RESIZE_MODES = ("square", "pad64", "none")


class ExportParityWarning(UserWarning):
    """The exported graph will not give exactly what detect() gives for this config."""


# ---------------------------------------------------------------------------- resize
def linear_resize_taps(in_size, out_size, offset=0, length=None, dtype="float64"):
    """The two input taps and weights of skimage's bilinear resize along one axis.

    skimage.transform.resize(order=1, mode="constant", cval=0) samples output index ``o``
    at input coordinate ``(o + 0.5) * in_size / out_size - 0.5`` and blends the two nearest
    inputs; a tap outside ``[0, in_size)`` reads the constant 0.

    in_size: scalar int32 tensor, input length (> 0).
    out_size: scalar int32 tensor, resized length (> 0).
    offset, length: the resized axis is laid into an output axis of ``length`` positions
        starting at ``offset`` (a box pasted into the image); positions outside it get
        zero weights. Defaults: 0 and ``out_size``. Both may be [n] tensors (one per box),
        in which case ``in_size`` is shared and ``out_size`` is [n] too.
    dtype: "float64": the coordinate and weights exactly as scipy computes them (bit for bit
        with mrcnn.resizing); "float32" (for TFLite, which has no float64): the integer part
        of the coordinate by exact integer division, the fraction in float32.

    Returns (i0, i1, w0, w1): int32 indices clamped into ``[0, in_size)`` and ``dtype``
    weights, each [length] (or [n, length]).
    """
    import tensorflow as tf
    in_size = tf.cast(in_size, tf.int32)
    out_size = tf.cast(out_size, tf.int32)
    if length is None:
        length = out_size
    offset = tf.cast(offset, tf.int32)
    positions = tf.range(length, dtype=tf.int32)
    if offset.shape.rank == 1:
        positions = tf.expand_dims(positions, 0)
        local = positions - tf.expand_dims(offset, 1)
        out_i = tf.expand_dims(out_size, 1)
    else:
        local = positions - offset
        out_i = out_size
    if dtype == "float64":
        scale = tf.cast(in_size, tf.float64) / tf.cast(tf.maximum(out_i, 1), tf.float64)
        coord = (tf.cast(local, tf.float64) + 0.5) * scale - 0.5
        start = tf.floor(coord)
        w0 = 1.0 - (coord - start)
        w1 = 1.0 - w0
        i0 = tf.cast(start, tf.int32)
        weight_dtype = tf.float64
    else:
        # coord = ((2 local + 1) in - out) / (2 out): the integer part by exact integer
        # division, so that a long axis (600 px down to 128) does not shift the taps.
        numerator = (2 * local + 1) * in_size - out_i
        denominator = tf.maximum(2 * out_i, 1)
        i0 = tf.math.floordiv(numerator, denominator)
        w1 = (tf.cast(numerator - i0 * denominator, tf.float32)
              / tf.cast(denominator, tf.float32))
        w0 = 1.0 - w1
        weight_dtype = tf.float32
    i1 = i0 + 1
    inside = tf.cast((local >= 0) & (local < out_i), weight_dtype)
    w0 = w0 * tf.cast((i0 >= 0) & (i0 < in_size), weight_dtype) * inside
    w1 = w1 * tf.cast((i1 >= 0) & (i1 < in_size), weight_dtype) * inside
    last = in_size - 1
    return (tf.clip_by_value(i0, 0, last), tf.clip_by_value(i1, 0, last), w0, w1)


def _blend(r0, r1, x0, x1, wy0, wy1, wx0, wx1, axis, batch_dims=0):
    """skimage's sum order over the 2 x 2 taps: ((p00 wy0) wx0 + (p01 wy0) wx1)
    + (p10 wy1) wx0 + (p11 wy1) wx1, where r0 / r1 hold the rows of taps y0 / y1."""
    import tensorflow as tf

    def cols(rows, index):
        return tf.gather(rows, index, axis=axis, batch_dims=batch_dims)
    # The row weights are applied before the column gather (same products, p * wy first):
    # a chain p * wy * wx is one grappler's arithmetic optimizer may reassociate
    # (MinimizeBroadcasts) in a traced graph, which changes the rounding and flips a
    # truncation on a few pixels (measured: 3 of 32 photos differed traced vs eager, #13).
    r0, r1 = r0 * wy0, r1 * wy1
    out = cols(r0, x0) * wx0
    out = out + cols(r0, x1) * wx1
    out = out + cols(r1, x0) * wx0
    return out + cols(r1, x1) * wx1


def _clip(values, low, high):
    """Clip with tensor bounds (Minimum / Maximum: ONNX's Clip takes scalar bounds only)."""
    import tensorflow as tf
    return tf.maximum(tf.minimum(values, high), low)


def resize_bilinear(images, out_h, out_w, dtype="float64"):
    """skimage's ``resize(order=1, mode="constant", cval=0, clip=True, preserve_range=True)``.

    images: [batch, H, W, C] float32 (0..255 pixel values). out_h, out_w: scalar int32.
    dtype: the arithmetic, see linear_resize_taps ("float64": bit for bit with skimage).
    Returns [batch, out_h, out_w, C] ``dtype``, clipped to each image's [min, max] as
    skimage does (not truncated).
    """
    import tensorflow as tf
    images = tf.cast(images, dtype)
    shape = tf.shape(images)
    y0, y1, wy0, wy1 = linear_resize_taps(shape[1], out_h, dtype=dtype)
    x0, x1, wx0, wx1 = linear_resize_taps(shape[2], out_w, dtype=dtype)
    wy0, wy1 = tf.reshape(wy0, [-1, 1, 1]), tf.reshape(wy1, [-1, 1, 1])
    wx0, wx1 = tf.reshape(wx0, [-1, 1]), tf.reshape(wx1, [-1, 1])
    out = _blend(tf.gather(images, y0, axis=1), tf.gather(images, y1, axis=1),
                 x0, x1, wy0, wy1, wx0, wx1, axis=2)
    # skimage's clip=True: into each image's own [min, max], which lifts the zero-blended
    # border back up whenever the image has no zero pixel.
    low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    return _clip(out, low, high)


def resize_geometry(height, width, config):
    """The scale, resized size and padding ``utils.resize_image`` picks, as tensors.

    height, width: scalar int32 tensors, the input image size.
    Returns (scale float32, new_h, new_w, top, left, molded_h, molded_w) int32 scalars.
    """
    import tensorflow as tf
    mode = config.IMAGE_RESIZE_MODE
    if mode not in GRAPH_RESIZE_MODES:
        raise ValueError(f"export supports IMAGE_RESIZE_MODE in {GRAPH_RESIZE_MODES}, got {mode!r}")
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    if mode == "none":
        return tf.constant(1.0), height, width, tf.constant(0), tf.constant(0), height, width
    scale = tf.constant(1.0)
    if config.IMAGE_MIN_DIM:
        scale = tf.maximum(1.0, float(config.IMAGE_MIN_DIM) / tf.minimum(h, w))
    if config.IMAGE_MIN_SCALE:
        scale = tf.maximum(scale, float(config.IMAGE_MIN_SCALE))
    long_side = tf.maximum(h, w)
    if mode == "square":
        max_dim = float(config.IMAGE_MAX_DIM)
        scale = tf.where(tf.round(long_side * scale) > max_dim, max_dim / long_side, scale)
    # Python's round() and tf.round both round half to even.
    new_h = tf.cast(tf.round(h * scale), tf.int32)
    new_w = tf.cast(tf.round(w * scale), tf.int32)
    new_h = tf.where(tf.equal(scale, 1.0), height, new_h)
    new_w = tf.where(tf.equal(scale, 1.0), width, new_w)
    if mode == "square":
        molded_h = molded_w = tf.constant(int(config.IMAGE_MAX_DIM))
    else:  # pad64
        molded_h = (new_h + 63) // 64 * 64
        molded_w = (new_w + 63) // 64 * 64
    top = (molded_h - new_h) // 2
    left = (molded_w - new_w) // 2
    return scale, new_h, new_w, top, left, molded_h, molded_w


def mold_images_graph(images, config, dtype="float64"):
    """Resize, pad and mean-subtract a batch of raw images as ``MaskRCNN.mold_inputs`` does.

    images: [batch, H, W, C] uint8 (or float holding 0..255), one size for the batch.
    dtype: the resize arithmetic, both bit for bit with utils.resize_image: "float64", or
        "emulated" (for LiteRT, which has no float64: integer kernels, mrcnn.float64;
        images must hold integers).
    Returns (molded [batch, h, w, C] float32, image_meta [batch, IMAGE_META_SIZE] float32,
    window [4] int32 (y1, x1, y2, x2) pixels of the real image in the molded one).
    """
    import tensorflow as tf
    if dtype not in ("float64", "emulated"):
        raise ValueError(f"dtype must be 'float64' or 'emulated', got {dtype!r}")
    if dtype == "emulated" and config.IMAGE_MAX_DIM and config.IMAGE_MAX_DIM >= 2 ** 14:
        raise ValueError("the LiteRT graph molds images of up to 16383 px a side, got "
                         f"IMAGE_MAX_DIM={config.IMAGE_MAX_DIM!r}")
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    scale, new_h, new_w, top, left, molded_h, molded_w = resize_geometry(height, width, config)
    if dtype == "emulated":
        resized = tf.cast(float64.resize_uint8(images, new_h, new_w), tf.float32)
    else:
        pixels = tf.cast(images, tf.float32)
        # matterport's astype(uint8) truncates.
        resized = tf.cast(tf.floor(resize_bilinear(pixels, new_h, new_w, dtype)), tf.float32)
    # At scale 1 the taps are the identity (coordinate o, weight 1), as resize_image
    # skipping the resize gives.
    channels = config.IMAGE_CHANNEL_COUNT
    resized = tf.reshape(resized, [batch, new_h, new_w, channels])
    paddings = [[0, 0], [top, molded_h - new_h - top], [left, molded_w - new_w - left], [0, 0]]
    padded = tf.pad(resized, paddings)
    molded = padded - tf.constant(np.asarray(config.MEAN_PIXEL, dtype=np.float32))
    window = tf.stack([top, left, top + new_h, left + new_w])
    row = tf.concat([
        tf.zeros([1], tf.float32),
        tf.cast(tf.stack([height, width, channels, molded_h, molded_w, channels]), tf.float32),
        tf.cast(window, tf.float32),
        tf.reshape(scale, [1]),
        tf.zeros([config.NUM_CLASSES], tf.float32)], axis=0)
    meta = tf.tile(tf.expand_dims(row, 0), [batch, 1])
    return molded, meta, window


# ---------------------------------------------------------------------------- unmold
def unmold_detections_graph(detections, masks, window, molded_hw, image_hw, dtype="float64"):
    """Pixel results from the inference model's outputs, as ``MaskRCNN.unmold_detections``.

    detections: [batch, D, (y1, x1, y2, x2, class_id, score)] float32 normalized to the
        molded image, real rows first, zero padding after.
    masks: [batch, D, mh, mw, NUM_CLASSES] float32 sigmoid masks.
    window: [4] int32 pixels of the real image in the molded one.
    molded_hw, image_hw: [2] int32, molded and input image sizes.
    dtype: the mask resize arithmetic (see linear_resize_taps).
    Returns a dict of OUTPUT_NAMES (see the module docstring).
    """
    import tensorflow as tf
    image_h, image_w = image_hw[0], image_hw[1]
    molded_f = tf.cast(molded_hw, tf.float32)
    # Window normalized like utils.norm_boxes: (pixels - (0, 0, 1, 1)) / (h-1, w-1, h-1, w-1).
    window_f = tf.cast(window, tf.float32)
    norm_scale = tf.concat([molded_f - 1.0, molded_f - 1.0], axis=0)
    norm_window = (window_f - tf.constant([0.0, 0.0, 1.0, 1.0])) / norm_scale
    wy1, wx1, wy2, wx2 = tf.unstack(norm_window)
    wh, ww = wy2 - wy1, wx2 - wx1
    boxes = detections[..., :4]
    boxes = (boxes - tf.stack([wy1, wx1, wy1, wx1])) / tf.stack([wh, ww, wh, ww])
    image_f = tf.cast(tf.stack([image_h, image_w]), tf.float32)
    denorm = tf.concat([image_f - 1.0, image_f - 1.0], axis=0)
    boxes = tf.cast(tf.round(boxes * denorm + tf.constant([0.0, 0.0, 1.0, 1.0])), tf.int32)
    class_ids = tf.cast(detections[..., 4], tf.int32)
    scores = detections[..., 5]

    # detect() keeps the rows before the first zero class id whose box has an area.
    slots = tf.shape(class_ids)[1]
    index = tf.expand_dims(tf.range(slots), 0)
    first_zero = tf.reduce_min(tf.where(class_ids > 0, slots, index), axis=1, keepdims=True)
    real = index < first_zero
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = real & (area > 0)
    keep_i = tf.cast(keep, tf.int32)
    # A stable sort moving kept rows first (keep is 0/1, so argsort of -keep is stable).
    order = tf.argsort(-keep_i, axis=1, stable=True)
    num = tf.reduce_sum(keep_i, axis=1)
    n = tf.reduce_max(num)
    order = order[:, :n]
    boxes = tf.gather(boxes, order, batch_dims=1)
    class_ids = tf.gather(class_ids, order, batch_dims=1)
    scores = tf.gather(scores, order, batch_dims=1)
    masks = tf.gather(masks, order, batch_dims=1)  # [B, n, mh, mw, K]
    rows = tf.expand_dims(tf.range(n), 0) < tf.expand_dims(num, 1)
    boxes = tf.where(tf.expand_dims(rows, -1), boxes, 0)
    class_ids = tf.where(rows, class_ids, 0)
    scores = tf.where(rows, scores, 0.0)

    # Each instance's mask of its class: [B, n, mh, mw].
    masks = tf.transpose(masks, [0, 1, 4, 2, 3])
    masks = tf.gather(masks, class_ids, batch_dims=2)
    full = paste_masks_graph(masks, boxes, image_h, image_w, dtype)
    full = tf.cast(full & tf.reshape(rows, [tf.shape(rows)[0], -1, 1, 1]), tf.uint8)
    return {"boxes": boxes, "class_ids": class_ids, "scores": scores,
            "num_detections": num, "masks": full}


def paste_masks_graph(masks, boxes, image_h, image_w, dtype="float64"):
    """``utils.unmold_mask`` for a batch of boxes: resize each mask to its box, >= 0.5.

    dtype: the resize arithmetic (see linear_resize_taps; "float64" is bit for bit).
    masks: [B, n, mh, mw] float32 probabilities. boxes: [B, n, (y1, x1, y2, x2)] int32
    pixels (y2, x2 exclusive). image_h, image_w: scalar int32.
    Returns [B, n, image_h, image_w] bool; False outside each box.
    """
    import tensorflow as tf
    shape = tf.shape(masks)
    b, mh, mw = shape[0], shape[2], shape[3]
    # -1, never a computed 0: ONNX's Reshape reads a 0 as 'keep this input dimension'.
    flat_masks = tf.reshape(masks, [-1, mh, mw])
    flat_boxes = tf.reshape(boxes, [-1, 4])
    # Column slices, not tf.unstack: TFLite's UNPACK fails on an empty box list (an
    # image without detections).
    y1, x1, y2, x2 = (flat_boxes[:, k] for k in range(4))
    r0, r1, wr0, wr1 = linear_resize_taps(mh, y2 - y1, offset=y1, length=image_h, dtype=dtype)
    c0, c1, wc0, wc1 = linear_resize_taps(mw, x2 - x1, offset=x1, length=image_w, dtype=dtype)
    wr0, wr1 = tf.expand_dims(wr0, -1), tf.expand_dims(wr1, -1)  # [bn, H, 1]
    wc0, wc1 = tf.expand_dims(wc0, 1), tf.expand_dims(wc1, 1)  # [bn, 1, W]
    values = tf.cast(flat_masks, dtype)
    resized = _blend(tf.gather(values, r0, batch_dims=1), tf.gather(values, r1, batch_dims=1),
                     c0, c1, wr0, wr1, wc0, wc1, axis=2, batch_dims=1)  # [bn, H, W]
    # skimage: float32 in, float32 out; then clip=True into each mask's [min, max] (this
    # lifts the zero-blended border of the box, so it matters), then the threshold, inside
    # the box only.
    low = tf.reduce_min(flat_masks, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(flat_masks, axis=[1, 2], keepdims=True)
    full = _clip(tf.cast(resized, tf.float32), low, high) >= 0.5
    positions_y = tf.expand_dims(tf.range(image_h), 0)
    positions_x = tf.expand_dims(tf.range(image_w), 0)
    in_y = (positions_y >= tf.expand_dims(y1, 1)) & (positions_y < tf.expand_dims(y2, 1))
    in_x = (positions_x >= tf.expand_dims(x1, 1)) & (positions_x < tf.expand_dims(x2, 1))
    full = full & tf.expand_dims(in_y, 2) & tf.expand_dims(in_x, 1)
    return tf.reshape(full, [b, -1, image_h, image_w])



# ---------------------------------------------------------------------------- serving model
def _serving_model_class():
    """ServingModel, defined on first use so that importing mrcnn.export imports no Keras."""
    import keras
    import tensorflow as tf

    class ServingModel(keras.Model):
        """Raw uint8 images in, ``detect()``'s results out (see the module docstring).

        inference_model: the Keras inference graph of ``MaskRCNN`` (molded image and image
        meta in; detections first and padded masks fourth among its outputs).
        config: the model's Config (resize mode and sizes, MEAN_PIXEL, NUM_CLASSES).
        resize_dtype: "float64" (bit for bit with mrcnn.resizing) or "emulated" (LiteRT,
            see serving_model).
        """

        def __init__(self, inference_model, config, resize_dtype="float64", **kwargs):
            super().__init__(**kwargs)
            resize_geometry(tf.constant(2), tf.constant(2), config)  # validates the mode
            self.inference_model = inference_model
            self.mrcnn_config = config
            self.resize_dtype = resize_dtype
            # Masks are float32 probabilities: without float64 they are pasted in float32.
            self.mask_dtype = "float32" if resize_dtype == "emulated" else resize_dtype
            self.built = True  # its one sublayer, the inference model, is built

        def call(self, images):
            molded, meta, window = mold_images_graph(images, self.mrcnn_config,
                                                     self.resize_dtype)
            outputs = self.inference_model([molded, meta], training=False)
            detections, mrcnn_mask = outputs[0], outputs[3]
            molded_hw = tf.shape(molded)[1:3]
            image_hw = tf.shape(images)[1:3]
            return unmold_detections_graph(tf.cast(detections, tf.float32),
                                           tf.cast(mrcnn_mask, tf.float32),
                                           window, molded_hw, image_hw, self.mask_dtype)

    return ServingModel


def serving_model(inference_model, config, resize_dtype="float64"):
    """A keras.Model whose ``call(images)`` runs molding, the network and unmolding.

    resize_dtype: "float64" (molding and mask pasting bit for bit with mrcnn.resizing) or
        "emulated" (for TFLite, which has no float64 kernels: molding bit for bit by
        mrcnn.float64, mask pasting in float32)."""
    if resize_dtype not in ("float64", "emulated"):
        raise ValueError(f"resize_dtype must be 'float64' or 'emulated', got {resize_dtype!r}")
    require_tensorflow("a serving model")
    return _serving_model_class()(inference_model, config, resize_dtype,
                                  name="mask_rcnn_serving")


def input_signature(config, batch_size=None):
    """The one input: ``images`` [batch, H, W, C] uint8 with H and W free."""
    import tensorflow as tf
    return [tf.TensorSpec([batch_size, None, None, config.IMAGE_CHANNEL_COUNT], tf.uint8,
                          name="images")]


def exportable_model(inference_model, config, graph_nms=False):
    """A twin of ``inference_model`` built for export, with the same weights.

    Differences, each computing the same results: RoIAlign crops by gathers
    (``PyramidROIAlign(implementation="gather")``: TFLite has no CropAndResize,
    DynamicPartition or DynamicStitch builtin, and ``ai_edge_litert`` has no Flex delegate
    to run them), and plain Conv2D layers where the model uses Winograd convolutions
    (``Config.WINOGRAD_CONVS``; WinogradConv2D is a Conv2D with the same variables): the
    serving runtimes pick their own convolution algorithms, and Winograd spelled out as graph
    ops makes artifacts larger and slower to convert. With ``graph_nms`` (LiteRT), NMS of
    proposals and detections by ``mrcnn.ops.nms_graph`` instead of the NMS kernel (TFLite's
    orders equal scores differently and selects a zero-area box again and again), when the
    config's NMS_METHOD is "standard". The user's model is left as it is.
    """
    import copy

    from mrcnn import graph
    from mrcnn.layers.roi_align import PyramidROIAlign
    direct = copy.copy(config)
    direct.WINOGRAD_CONVS = False
    if graph_nms and direct.NMS_METHOD == "standard":
        direct.NMS_METHOD = "graph"
    model = graph.build_inference_model(direct)
    model.set_weights(inference_model.get_weights())
    for layer in model.layers:
        if isinstance(layer, PyramidROIAlign):
            layer.implementation = "gather"
    return model


def export_model(inference_model, config, path, format="tf_saved_model"):
    """Export the serving graph of an inference model to ``path`` in ``format``.

    format: "tf_saved_model" (a folder; signature "serving_default"), "onnx" (a .onnx file,
        opset 17, needs the ``[onnx]`` extra: tf2onnx, onnx) or "litert" (a .tflite file
        with batch 1, TFLite builtin ops only: ``ai_edge_litert`` runs it).
    Returns ``path``.
    Raises mrcnn.backend.BackendError on a Keras backend other than TensorFlow.
    """
    check_format(format)
    require_tensorflow(format)
    method = getattr(config, "IMAGE_RESIZE_METHOD", "exact")
    if method != "exact":
        import warnings
        warnings.warn(f"IMAGE_RESIZE_METHOD is {method!r}: the exported graph resizes as "
                      "'exact' (matterport's skimage resize), so its results differ slightly "
                      "from this model's detect()", ExportParityWarning, stacklevel=3)
    path = os.fspath(path)
    model = serving_model(inference_model, config,
                          resize_dtype="emulated" if format == "litert" else "float64")
    if format == "tf_saved_model":
        # keras.export.ExportArchive without track(): Model.export tracks the model's
        # variables and the archive also saves the ones its endpoint uses, so every weight
        # was written twice (a SavedModel of 347 MB for 172 MB of ResNet-50 weights). The
        # endpoint's own variables are all the serving function needs.
        import keras
        archive = keras.export.ExportArchive()
        archive.add_endpoint("serve", model.call, input_signature=input_signature(config))
        archive.write_out(path, verbose=False)
    elif format == "onnx":
        _require("tf2onnx", "onnx")
        model.export(path, format="onnx", input_signature=input_signature(config),
                     opset_version=17, verbose=False)
    else:
        model.export(path, format="litert", input_signature=input_signature(config, 1),
                     verbose=False)
    logger.info("exported %s to %s", format, path)
    return path


def check_format(format):
    """Raise ValueError naming ``format`` unless it is one of FORMATS."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


def require_tensorflow(format):
    """Raise mrcnn.backend.BackendError unless Keras runs on TensorFlow: every format is
    written from a traced TensorFlow graph (SavedModel; tf2onnx; the TFLite converter)."""
    from mrcnn import backend
    backend.require("tensorflow", f"export to {format!r} (mrcnn.export, MaskRCNN.export, "
                                  f"mrcnn export)")


def _require(*modules):
    """Raise ImportError naming the extra when an optional exporter module is missing."""
    import importlib.util
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"exporting needs {missing}: pip install 'mrcnn[onnx]'")
