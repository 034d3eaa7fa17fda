"""Assembly of the Mask R-CNN Keras functional graphs (inference and training).

The backbone, FPN, RPN and heads are shared by name between the two graphs, so
weights saved from one load into the other.
"""
import contextlib
import logging

import keras

from mrcnn import backend
from mrcnn.backbone import build_fpn, resnet_graph
from mrcnn.heads import build_rpn_model, fpn_classifier_head, fpn_keypoint_head, fpn_mask_head
from mrcnn.layers.common import PyramidAnchors
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.outputs import FirstROIs, PadROIs, ValidDetectionBoxes
from mrcnn.layers.proposal import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def dtype_policy_scope(policy_name):
    """Build layers under ``policy_name`` (e.g. "mixed_bfloat16"); None keeps the global policy.

    Layers capture the policy at construction, so the global policy is restored afterwards
    and other models in the process are not affected.
    """
    if policy_name is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy_name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compute_dtype(config):
    """The dtype the model's layers compute in: that of ``Config.DTYPE_POLICY``, or of the
    global Keras policy when it is None (e.g. "float32", "bfloat16")."""
    return keras.dtype_policies.get(config.DTYPE_POLICY or keras.config.dtype_policy().name).compute_dtype


def use_winograd(config):
    """Whether the inference graph's wide 3x3 convs use Winograd (``Config.WINOGRAD_CONVS``).

    "auto" means: the backend has the Winograd layer (TensorFlow), the model computes in
    float32 and the backend sees no GPU.
    """
    seam = backend.get()
    if config.WINOGRAD_CONVS == "auto":
        return seam.WINOGRAD and compute_dtype(config) == "float32" and not seam.gpu_count()
    if config.WINOGRAD_CONVS and not seam.WINOGRAD:
        raise backend.BackendError(
            f"WINOGRAD_CONVS=True needs the tensorflow Keras backend; this process runs Keras "
            f"on {backend.name()!r} (use WINOGRAD_CONVS='auto' or False)")
    return bool(config.WINOGRAD_CONVS)


def build_backbone(input_image, config, winograd=False):
    """ResNet (or the user's callable) and FPN.

    input_image: [batch, H, W, C] KerasTensor, molded (mean subtracted).
    winograd: bool, the ResNet and FPN 3x3 convs are ``WinogradConv2D`` layers (inference).
    Returns (rpn_feature_maps [P2..P6], mrcnn_feature_maps [P2..P5]), each
    [batch, H / stride, W / stride, TOP_DOWN_PYRAMID_SIZE].
    """
    if callable(config.BACKBONE):
        stages = config.BACKBONE(input_image, stage5=True, train_bn=config.TRAIN_BN)
        if len(stages) != 5:
            raise ValueError("a callable BACKBONE must return [C1, C2, C3, C4, C5], "
                             f"got {len(stages)} tensors")
        _, c2, c3, c4, c5 = stages
    else:
        _, c2, c3, c4, c5 = resnet_graph(
            input_image, config.BACKBONE, stage5=True, train_bn=config.TRAIN_BN,
            norm=config.NORMALIZATION, gn_groups=config.GROUP_NORM_GROUPS, winograd=winograd)
    p2, p3, p4, p5, p6 = build_fpn(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE, winograd=winograd)
    return [p2, p3, p4, p5, p6], [p2, p3, p4, p5]


def build_rpn(input_image, rpn_feature_maps, config, winograd=False):
    """Shared RPN over every level, concatenated, plus the matching anchors.

    Returns (rpn_class_logits [batch, A, 2], rpn_class [batch, A, 2] probabilities,
    rpn_bbox [batch, A, (dy, dx, log(dh), log(dw))], anchors [batch, A, (y1, x1, y2, x2)]
    float32 normalized). winograd: bool, the shared conv is a ``WinogradConv2D`` (inference).
    """
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                          config.TOP_DOWN_PYRAMID_SIZE, conv_filters=config.RPN_CONV_FILTERS,
                          winograd=winograd)
    per_level = [rpn(p) for p in rpn_feature_maps]
    names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
    outputs = [
        keras.layers.Concatenate(axis=1, name=name)([level[i] for level in per_level])
        for i, name in enumerate(names)
    ]
    anchors = PyramidAnchors(
        scales=list(config.RPN_ANCHOR_SCALES), ratios=list(config.RPN_ANCHOR_RATIOS),
        strides=list(config.BACKBONE_STRIDES), anchor_stride=config.RPN_ANCHOR_STRIDE,
        name="anchors")([input_image] + rpn_feature_maps)
    return outputs[0], outputs[1], outputs[2], anchors


def proposal_layer(config, proposal_count):
    """The ProposalLayer "ROI" keeping ``proposal_count`` proposals per image."""
    return ProposalLayer(
        proposal_count=proposal_count, nms_threshold=config.RPN_NMS_THRESHOLD,
        pre_nms_limit=config.PRE_NMS_LIMIT, rpn_bbox_std_dev=list(config.RPN_BBOX_STD_DEV),
        nms_method=config.NMS_METHOD, name="ROI")


def roi_align(name, pool_size, config):
    """A PyramidROIAlign configured from ``config`` (mode and sampling ratio)."""
    return PyramidROIAlign(
        pool_shape=(pool_size, pool_size), mode=config.ROI_ALIGN_MODE,
        sampling_ratio=config.ROI_ALIGN_SAMPLING_RATIO, name=name)


def classifier_head(rois, image_meta, mrcnn_feature_maps, config):
    """RoIAlign + box/class head.

    rois: [batch, N, (y1, x1, y2, x2)] normalized.
    Returns (mrcnn_class_logits [batch, N, K], mrcnn_class [batch, N, K], mrcnn_bbox [batch, N, K, 4]).
    """
    pooled = roi_align("roi_align_classifier", config.POOL_SIZE, config)(
        [rois, image_meta] + mrcnn_feature_maps)
    return fpn_classifier_head(
        pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
        fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE,
        norm=config.NORMALIZATION, gn_groups=config.GROUP_NORM_GROUPS)


def mask_head(rois, image_meta, mrcnn_feature_maps, config, winograd=False):
    """RoIAlign + mask head: rois [batch, N, 4] normalized -> [batch, N, 2P, 2P, K] sigmoid.

    K = NUM_CLASSES, or 1 with ``config.CLASS_AGNOSTIC_MASKS``.
    winograd: bool, the head's 3x3 convs are ``WinogradConv2D`` layers (inference)."""
    pooled = roi_align("roi_align_mask", config.MASK_POOL_SIZE, config)(
        [rois, image_meta] + mrcnn_feature_maps)
    mask_channels = 1 if config.CLASS_AGNOSTIC_MASKS else config.NUM_CLASSES
    return fpn_mask_head(pooled, mask_channels, train_bn=config.TRAIN_BN,
                         norm=config.NORMALIZATION, gn_groups=config.GROUP_NORM_GROUPS,
                         filters=config.MASK_HEAD_FILTERS, winograd=winograd)


def keypoint_head(rois, image_meta, mrcnn_feature_maps, config, winograd=False):
    """RoIAlign + keypoint head: rois [batch, N, 4] normalized -> [batch, N, m, m, K] logits
    (m = KEYPOINT_MASK_SHAPE, K = len(KEYPOINT_NAMES)).

    winograd: bool, the head's 3x3 convs are ``WinogradConv2D`` layers (inference)."""
    pooled = roi_align("roi_align_keypoint", config.KEYPOINT_POOL_SIZE, config)(
        [rois, image_meta] + mrcnn_feature_maps)
    return fpn_keypoint_head(pooled, len(config.KEYPOINT_NAMES),
                             num_convs=config.KEYPOINT_HEAD_CONVS,
                             filters=config.KEYPOINT_HEAD_FILTERS, winograd=winograd)


def image_inputs(config):
    """The two inputs every graph has: molded images and their meta rows."""
    input_image = keras.Input(shape=(None, None, config.IMAGE_CHANNEL_COUNT), name="input_image")
    input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")
    return input_image, input_image_meta


def build_inference_model(config):
    """The inference graph.

    Inputs: input_image [batch, H, W, C] float32 molded; input_image_meta [batch, META].
    Outputs (in order): mrcnn_detection [batch, DETECTION_MAX_INSTANCES, (y1, x1, y2, x2,
    class_id, score)] normalized; mrcnn_class [batch, N, K]; mrcnn_bbox [batch, N, K, 4];
    mrcnn_mask [batch, DETECTION_MAX_INSTANCES, h, w, K] (all zero after the batch's largest
    count of real detections); ROI [batch, N, 4] normalized;
    rpn_class [batch, A, 2]; rpn_bbox [batch, A, 4]; with KEYPOINT_NAMES, last,
    mrcnn_keypoint_logits [batch, DETECTION_MAX_INSTANCES, m, m, K] (zero after the real
    detections, like mrcnn_mask).
    """
    winograd = use_winograd(config)
    with dtype_policy_scope(config.DTYPE_POLICY):
        input_image, input_image_meta = image_inputs(config)
        rpn_feature_maps, mrcnn_feature_maps = build_backbone(input_image, config, winograd=winograd)
        _, rpn_class, rpn_bbox, anchors = build_rpn(input_image, rpn_feature_maps, config, winograd=winograd)
        rpn_rois = proposal_layer(config, config.POST_NMS_ROIS_INFERENCE)(
            [rpn_class, rpn_bbox, anchors])
        _, mrcnn_class, mrcnn_bbox = classifier_head(
            rpn_rois, input_image_meta, mrcnn_feature_maps, config)
        detections = DetectionLayer(
            max_instances=config.DETECTION_MAX_INSTANCES,
            min_confidence=config.DETECTION_MIN_CONFIDENCE,
            nms_threshold=config.DETECTION_NMS_THRESHOLD,
            bbox_std_dev=list(config.BBOX_STD_DEV),
            nms_method=config.NMS_METHOD,
            name="mrcnn_detection")([rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
        # The mask head runs on the real detections only (n per image, the batch's
        # largest count); the masks are zero-padded back to DETECTION_MAX_INSTANCES slots.
        detection_boxes = ValidDetectionBoxes(name="mrcnn_detection_boxes")(detections)
        mrcnn_mask = mask_head(detection_boxes, input_image_meta, mrcnn_feature_maps, config,
                               winograd=winograd)
        mrcnn_mask = PadROIs(config.DETECTION_MAX_INSTANCES, name="mrcnn_mask_padded")(mrcnn_mask)
        outputs = [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox]
        if config.KEYPOINT_NAMES:
            keypoints = keypoint_head(detection_boxes, input_image_meta, mrcnn_feature_maps,
                                      config, winograd=winograd)
            outputs.append(PadROIs(config.DETECTION_MAX_INSTANCES,
                                   name="mrcnn_keypoint_padded")(keypoints))
        return keras.Model([input_image, input_image_meta], outputs, name="mask_rcnn")


def build_training_model(config):
    """The training graph: a MaskRCNNTrainer (keras.Model) whose compute_loss adds the five losses.

    Inputs: input_image [batch, H, W, C] float32 molded; input_image_meta [batch, META];
    input_rpn_match [batch, A, 1] int32 (1 / -1 / 0); input_rpn_bbox [batch,
    RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32 deltas; input_gt_class_ids [batch, MAX_GT] int32
    (negative = crowd, 0 = padding); input_gt_boxes [batch, MAX_GT, (y1, x1, y2, x2)] float32
    pixels; input_gt_masks [batch, h, w, MAX_GT] bool (mini masks when USE_MINI_MASK);
    with KEYPOINT_NAMES also input_gt_keypoints [batch, MAX_GT, K, (x, y, v)] float32 molded
    pixels (mrcnn.keypoints convention); with USE_RPN_ROIS False also input_roi
    [batch, POST_NMS_ROIS_TRAINING, 4] float32 pixels.
    Outputs: a dict of the heads' predictions and the sampled targets (see MaskRCNNTrainer);
    mrcnn_mask, target_mask and mask_class_ids cover the first
    max(1, int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)) ROIs, where the positives are;
    with KEYPOINT_NAMES so do mrcnn_keypoint_logits [batch, n, m, m, K], target_keypoints
    [batch, n, K] int32 cells and target_keypoint_weights [batch, n, K] float32.
    """
    from mrcnn.layers.common import NormBoxes
    from mrcnn.layers.detection_target import DetectionTargetLayer
    from mrcnn.training import MaskRCNNTrainer

    with dtype_policy_scope(config.DTYPE_POLICY):
        input_image, input_image_meta = image_inputs(config)
        input_rpn_match = keras.Input(shape=(None, 1), name="input_rpn_match", dtype="int32")
        input_rpn_bbox = keras.Input(shape=(None, 4), name="input_rpn_bbox", dtype="float32")
        input_gt_class_ids = keras.Input(shape=(None,), name="input_gt_class_ids", dtype="int32")
        input_gt_boxes = keras.Input(shape=(None, 4), name="input_gt_boxes", dtype="float32")
        if config.USE_MINI_MASK:
            mask_hw = tuple(config.MINI_MASK_SHAPE)
        elif config.IMAGE_RESIZE_MODE in ("square", "crop"):
            mask_hw = (int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1]))
        else:
            mask_hw = (None, None)
        input_gt_masks = keras.Input(shape=mask_hw + (None,), name="input_gt_masks", dtype="bool")
        inputs = [input_image, input_image_meta, input_rpn_match, input_rpn_bbox,
                  input_gt_class_ids, input_gt_boxes, input_gt_masks]
        num_keypoints = len(config.KEYPOINT_NAMES)
        if num_keypoints:
            input_gt_keypoints = keras.Input(shape=(None, num_keypoints, 3),
                                             name="input_gt_keypoints", dtype="float32")
            inputs.append(input_gt_keypoints)
        gt_boxes = NormBoxes(name="norm_gt_boxes")([input_gt_boxes, input_image])

        rpn_feature_maps, mrcnn_feature_maps = build_backbone(input_image, config)
        rpn_class_logits, rpn_class, rpn_bbox, anchors = build_rpn(
            input_image, rpn_feature_maps, config)
        rpn_rois = proposal_layer(config, config.POST_NMS_ROIS_TRAINING)(
            [rpn_class, rpn_bbox, anchors])
        if config.USE_RPN_ROIS:
            proposals = rpn_rois
        else:
            input_rois = keras.Input(shape=(config.POST_NMS_ROIS_TRAINING, 4), name="input_roi",
                                     dtype="float32")
            inputs.append(input_rois)
            proposals = NormBoxes(name="norm_input_roi")([input_rois, input_image])

        target_inputs = [proposals, input_gt_class_ids, gt_boxes, input_gt_masks]
        keypoint_args = {}
        if num_keypoints:
            target_inputs += [input_gt_keypoints, input_image_meta]
            keypoint_args = {"num_keypoints": num_keypoints,
                             "keypoint_heatmap_size": config.KEYPOINT_MASK_SHAPE}
        rois, target_class_ids, target_bbox, target_mask, *target_keypoints = DetectionTargetLayer(
            train_rois_per_image=config.TRAIN_ROIS_PER_IMAGE,
            roi_positive_ratio=config.ROI_POSITIVE_RATIO,
            bbox_std_dev=list(config.BBOX_STD_DEV),
            mask_shape=list(config.MASK_SHAPE),
            use_mini_mask=config.USE_MINI_MASK,
            name="proposal_targets", **keypoint_args)(target_inputs)

        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = classifier_head(
            rois, input_image_meta, mrcnn_feature_maps, config)
        # Positives come first and only they enter the mask loss: the mask head, the most
        # expensive head, runs on those rows alone.
        num_mask_rois = max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))
        mask_rois = FirstROIs(num_mask_rois, name="positive_rois")(rois)
        mrcnn_mask = mask_head(mask_rois, input_image_meta, mrcnn_feature_maps, config)
        target_mask = FirstROIs(num_mask_rois, name="positive_target_mask")(target_mask)
        mask_class_ids = FirstROIs(num_mask_rois, name="positive_class_ids")(target_class_ids)

        outputs = {
            "rpn_class_logits": rpn_class_logits,
            "rpn_class": rpn_class,
            "rpn_bbox": rpn_bbox,
            "rpn_rois": rpn_rois,
            "rois": rois,
            "target_class_ids": target_class_ids,
            "target_bbox": target_bbox,
            "target_mask": target_mask,
            "mrcnn_class_logits": mrcnn_class_logits,
            "mrcnn_class": mrcnn_class,
            "mrcnn_bbox": mrcnn_bbox,
            "mrcnn_mask": mrcnn_mask,
            "mask_class_ids": mask_class_ids,
        }
        if num_keypoints:
            # The keypoint head, like the mask head, runs on the positive rows only.
            outputs["mrcnn_keypoint_logits"] = keypoint_head(
                mask_rois, input_image_meta, mrcnn_feature_maps, config)
            outputs["target_keypoints"] = FirstROIs(
                num_mask_rois, name="positive_target_keypoints")(target_keypoints[0])
            outputs["target_keypoint_weights"] = FirstROIs(
                num_mask_rois, name="positive_target_keypoint_weights")(target_keypoints[1])
        return MaskRCNNTrainer(
            inputs=inputs, outputs=outputs, loss_weights=dict(config.LOSS_WEIGHTS),
            weight_decay=float(config.WEIGHT_DECAY), name="mask_rcnn")
