"""Region proposal network (RPN), box/class head and mask head.

Layer names are part of the API: ``.h5`` files are loaded by them and the
``"heads"`` training group selects ``rpn_*`` / ``mrcnn_*`` / ``fpn_*``.

The per-ROI heads fold the ROI axis into the batch axis
(``mrcnn.layers.per_roi``) and run plain 4-D convolutions, instead of
wrapping each layer in ``TimeDistributed``. The weights are identical to
matterport's TimeDistributed layers of the same name.
"""
import logging

import keras

from mrcnn.config import check_positive_int
from mrcnn.layers.conv import conv2d
from mrcnn.layers.norm import NORM_KINDS, norm_layer
from mrcnn.layers.per_roi import FlattenROIs, UnflattenROIs, WindowConv2D

logger = logging.getLogger(__name__)


def _check_pooled(pooled, head, dynamic_rois=False):
    """Static (num_rois, pool_h, pool_w, channels) of a pooled ROI tensor (num_rois may be
    None where ``dynamic_rois``)."""
    shape = tuple(pooled.shape)
    if len(shape) != 5 or any(d is None for d in shape[1 + int(dynamic_rois):]):
        static = "pool and channels" if dynamic_rois else "num_rois, pool and channels"
        raise ValueError(
            f"{head} expects pooled features [batch, num_rois, pool, pool, channels] with static "
            f"{static}, got shape {shape}"
        )
    return shape[1:]


def build_rpn_model(anchor_stride, anchors_per_location, depth, conv_filters=512, winograd=False):
    """The RPN as a Keras model, shared by all pyramid levels.

    Args:
        anchor_stride: int, 1 for anchors at every feature map cell, 2 for every
            other cell (``Config.RPN_ANCHOR_STRIDE``); the stride of the shared conv.
        anchors_per_location: int A, anchors per cell (``len(RPN_ANCHOR_RATIOS)``).
        depth: int, channels of the feature maps (``TOP_DOWN_PYRAMID_SIZE``).
        conv_filters: int F, channels of the shared 3x3 conv (``RPN_CONV_FILTERS``;
            512 in matterport's weights).
        winograd: bool, the shared conv is a ``WinogradConv2D`` (Winograd's algorithm on
            the levels where it is faster; inference in float32).

    Returns:
        ``keras.Model`` named "rpn_model". Input "input_rpn_feature_map":
        [batch, H, W, depth] float32 (H, W dynamic). Outputs, with
        n = ceil(H / anchor_stride) * ceil(W / anchor_stride) * A anchors in
        (row, col, anchor) order, the order of ``utils.generate_pyramid_anchors``:

        - rpn_class_logits: [batch, n, 2] float32, (background, foreground) logits.
        - rpn_probs: [batch, n, 2] float32, softmax of the logits.
        - rpn_bbox: [batch, n, (dy, dx, log(dh), log(dw))] float32 deltas,
          still divided by ``RPN_BBOX_STD_DEV``.

        Weights, in order: rpn_conv_shared kernel [3, 3, depth, F] and bias,
        rpn_class_raw kernel [1, 1, F, 2A] and bias, rpn_bbox_pred kernel
        [1, 1, F, 4A] and bias.
    """
    check_positive_int("anchor_stride", anchor_stride)
    check_positive_int("anchors_per_location", anchors_per_location)
    check_positive_int("depth", depth)
    check_positive_int("conv_filters", conv_filters)
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = conv2d(conv_filters, 3, winograd=winograd, strides=anchor_stride, padding="same",
                    activation="relu", name="rpn_conv_shared")(feature_map)

    # [batch, h, w, 2A]: channel 2a + k is score k of anchor a; reshaping to
    # [batch, h * w * A, 2] walks rows, then columns, then anchors.
    x = keras.layers.Conv2D(2 * anchors_per_location, 1, padding="valid", name="rpn_class_raw")(shared)
    rpn_class_logits = keras.layers.Reshape((-1, 2), name="rpn_class_logits_flat")(x)
    rpn_probs = keras.layers.Activation("softmax", name="rpn_class_probs")(rpn_class_logits)

    x = keras.layers.Conv2D(4 * anchors_per_location, 1, padding="valid", name="rpn_bbox_pred")(shared)
    rpn_bbox = keras.layers.Reshape((-1, 4), name="rpn_bbox_flat")(x)
    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model")


def fpn_classifier_head(pooled, num_classes, train_bn=False, fc_layers_size=1024, norm="batch", gn_groups=32):
    """Box/class head on ROI-aligned features.

    Args:
        pooled: [batch, num_rois, P, P, C] Keras tensor, float32, the output of
            ``PyramidROIAlign`` with pool size P (``Config.POOL_SIZE``); num_rois,
            P and C static, batch dynamic.
        num_classes: int K, including background.
        train_bn: False freezes the BatchNorm layers (see ``norm_layer``).
        fc_layers_size: int, width of the two "fully connected" layers, which
            are a P x P valid conv and a 1x1 conv (``FPN_CLASSIF_FC_LAYERS_SIZE``).
        norm: "batch" or "group"; gn_groups: maximum groups for "group".

    Returns:
        (mrcnn_class_logits, mrcnn_class, mrcnn_bbox):
        - mrcnn_class_logits: [batch, num_rois, K] float32 logits.
        - mrcnn_class: [batch, num_rois, K] float32 softmax probabilities.
        - mrcnn_bbox: [batch, num_rois, K, (dy, dx, log(dh), log(dw))] float32
          class-specific deltas, still divided by ``BBOX_STD_DEV``.
    """
    num_rois, pool_h, pool_w, _ = _check_pooled(pooled, "fpn_classifier_head")
    check_positive_int("num_classes", num_classes)
    check_positive_int("fc_layers_size", fc_layers_size)
    if norm not in NORM_KINDS:
        raise ValueError(f"norm must be one of {NORM_KINDS}, got {norm!r}")

    x = FlattenROIs(name="mrcnn_class_flatten_rois")(pooled)  # [B*N, P, P, C]
    # Fully connected layers stored as convs (matterport's weight layout), run as matmuls.
    x = WindowConv2D(fc_layers_size, (pool_h, pool_w), padding="valid", name="mrcnn_class_conv1")(x)
    x = norm_layer(norm, "mrcnn_class_bn1", train_bn, gn_groups)(x)
    x = keras.layers.ReLU(name="mrcnn_class_relu1")(x)
    x = WindowConv2D(fc_layers_size, 1, name="mrcnn_class_conv2")(x)
    x = norm_layer(norm, "mrcnn_class_bn2", train_bn, gn_groups)(x)
    x = keras.layers.ReLU(name="mrcnn_class_relu2")(x)  # [B*N, 1, 1, fc]
    x = UnflattenROIs(num_rois, name="mrcnn_class_unflatten_rois")(x)  # [B, N, 1, 1, fc]
    shared = keras.layers.Reshape((num_rois, fc_layers_size), name="pool_squeeze")(x)

    mrcnn_class_logits = keras.layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    mrcnn_class = keras.layers.Activation("softmax", name="mrcnn_class")(mrcnn_class_logits)
    x = keras.layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    mrcnn_bbox = keras.layers.Reshape((num_rois, num_classes, 4), name="mrcnn_bbox")(x)
    return mrcnn_class_logits, mrcnn_class, mrcnn_bbox


def fpn_mask_head(pooled, num_classes, train_bn=False, norm="batch", gn_groups=32, filters=256,
                  winograd=False):
    """Mask head on ROI-aligned features.

    Args:
        pooled: [batch, num_rois, P, P, C] Keras tensor, float32, the output of
            ``PyramidROIAlign`` with pool size P (``Config.MASK_POOL_SIZE``);
            P and C static; batch and num_rois may be dynamic (the inference graph runs
            the head on the detections only).
        num_classes: int K, including background.
        train_bn: False freezes the BatchNorm layers (see ``norm_layer``).
        norm: "batch" or "group"; gn_groups: maximum groups for "group".
        filters: channels of the four 3x3 convs and the deconv (``MASK_HEAD_FILTERS``;
            256 in matterport's weights).
        winograd: bool, the four 3x3 convs are ``WinogradConv2D`` layers (inference).

    Returns:
        masks: [batch, num_rois, 2P, 2P, K] float32 in [0, 1] (sigmoid), one
        soft mask per class, in the ROI's frame. The layer "mrcnn_mask" itself
        outputs the ROI-folded [batch * num_rois, 2P, 2P, K]; the returned
        tensor is the output of "mrcnn_mask_unflatten_rois".
    """
    num_rois = _check_pooled(pooled, "fpn_mask_head", dynamic_rois=True)[0]
    check_positive_int("num_classes", num_classes)
    if norm not in NORM_KINDS:
        raise ValueError(f"norm must be one of {NORM_KINDS}, got {norm!r}")

    x = FlattenROIs(name="mrcnn_mask_flatten_rois")(pooled)  # [B*N, P, P, C]
    for i in range(1, 5):
        x = conv2d(filters, 3, winograd=winograd, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = norm_layer(norm, f"mrcnn_mask_bn{i}", train_bn, gn_groups)(x)
        x = keras.layers.ReLU(name=f"mrcnn_mask_relu{i}")(x)
    x = keras.layers.Conv2DTranspose(filters, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = keras.layers.Conv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask")(x)
    if num_rois is None:
        return UnflattenROIs(None, name="mrcnn_mask_unflatten_rois")([x, pooled])
    return UnflattenROIs(num_rois, name="mrcnn_mask_unflatten_rois")(x)


def fpn_keypoint_head(pooled, num_keypoints, num_convs=8, filters=512, winograd=False):
    """Keypoint head on ROI-aligned features (He et al. 2017, section 5; Detectron2's
    "KRCNNConvDeconvUpsampleHead").

    Args:
        pooled: [batch, num_rois, P, P, C] Keras tensor, float32, the output of
            ``PyramidROIAlign`` with pool size P (``Config.KEYPOINT_POOL_SIZE``); P and C
            static; batch and num_rois may be dynamic (inference runs on the detections).
        num_keypoints: int K (``len(Config.KEYPOINT_NAMES)``).
        num_convs: int, 3x3 conv + ReLU layers (``KEYPOINT_HEAD_CONVS``, 8 in the paper).
        filters: their channels (``KEYPOINT_HEAD_FILTERS``, 512 in the paper).
        winograd: bool, the 3x3 convs are ``WinogradConv2D`` layers (inference).

    Layers: mrcnn_keypoint_conv{1..num_convs} (3x3, He-normal init, no normalization, as
    the paper), mrcnn_keypoint_deconv (4x4 stride 2 transposed conv to K channels, 2P) and
    mrcnn_keypoint_upsample (bilinear x2, 4P).

    Returns:
        logits: [batch, num_rois, 4P, 4P, K] float32 heatmap logits, one m x m map per
        keypoint (m = 4P = ``KEYPOINT_MASK_SHAPE``) in the ROI's frame; a softmax over the
        m * m cells of a map gives the keypoint's position (``mrcnn.keypoints``).
    """
    num_rois = _check_pooled(pooled, "fpn_keypoint_head", dynamic_rois=True)[0]
    check_positive_int("num_keypoints", num_keypoints)
    check_positive_int("num_convs", num_convs)
    check_positive_int("filters", filters)

    x = FlattenROIs(name="mrcnn_keypoint_flatten_rois")(pooled)  # [B*N, P, P, C]
    for i in range(1, num_convs + 1):
        x = conv2d(filters, 3, winograd=winograd, padding="same", activation="relu",
                   kernel_initializer="he_normal", name=f"mrcnn_keypoint_conv{i}")(x)
    x = keras.layers.Conv2DTranspose(num_keypoints, 4, strides=2, padding="same",
                                     kernel_initializer="he_normal",
                                     name="mrcnn_keypoint_deconv")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype="float32",
                                  name="mrcnn_keypoint_upsample")(x)
    if num_rois is None:
        return UnflattenROIs(None, name="mrcnn_keypoint_unflatten_rois")([x, pooled])
    return UnflattenROIs(num_rois, name="mrcnn_keypoint_unflatten_rois")(x)
