"""Mask R-CNN configuration.

Subclass :class:`Config` and override the attributes that differ for your
dataset; the comments beside each attribute are the user manual. Values are
checked when the config is constructed: a wrong value raises ``ValueError``
naming the attribute and the value received.
"""
import logging
import numbers
import warnings

import numpy as np

logger = logging.getLogger(__name__)

BACKBONES = ("resnet50", "resnet101")
RESIZE_MODES = ("none", "square", "pad64", "crop")
NORMALIZATIONS = ("batch", "group")
ROI_ALIGN_MODES = ("crop_and_resize", "paper")
RESIZE_METHODS = ("exact", "opencv")
NMS_METHODS = ("standard", "combined", "graph")
LOSS_NAMES = (
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
)
# The keypoint head's loss (Config.KEYPOINT_NAMES non-empty only); its LOSS_WEIGHTS key.
KEYPOINT_LOSS_NAME = "mrcnn_keypoint_loss"
# The deepest pyramid level (P6) has stride 64, so image sides must divide by it.
BACKBONE_DIVISOR = 64


class ConfigWarning(UserWarning):
    """A config that works but probably not as meant (e.g. mini-masks coarser than MASK_SHAPE)."""


class Config:
    """Base configuration. Subclass it and override what you need.

    Derived in ``__init__``: ``BATCH_SIZE``, ``IMAGE_SHAPE``, ``IMAGE_META_SIZE``.
    """

    # Name of the configuration, e.g. "coco". Checkpoint folders and files use it.
    NAME = None

    # Number of GPUs of this machine (replicas under tf.distribute). Use 1 on CPU. With
    # GPU_COUNT > 1, training runs under a MirroredStrategy; with TF_CONFIG naming several
    # workers, under a MultiWorkerMirroredStrategy (each worker feeds BATCH_SIZE images a
    # step); see mrcnn.distribute and the README.
    GPU_COUNT = 1

    # Images per GPU. A 12 GB GPU fits about two 1024x1024 images.
    IMAGES_PER_GPU = 2

    # Training steps per epoch and validation steps at the end of each epoch.
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # Checkpoints are written at each epoch end; an integer N adds mid-epoch checkpoints
    # after every N steps of an epoch (weights + optimizer state, mrcnn.checkpoints), from
    # which train() resumes at that exact step. None: once an epoch only.
    CHECKPOINT_EVERY_STEPS = None

    # Backbone: "resnet50", "resnet101", or a callable
    # ``backbone(input_image, stage5=True, train_bn=...) -> [C1, C2, C3, C4, C5]``.
    BACKBONE = "resnet101"

    # With a callable BACKBONE: a function ``(image_shape) -> [[h, w], ...]``
    # giving the feature map shape of each pyramid level. None: ceil(side / stride).
    COMPUTE_BACKBONE_SHAPE = None

    # Strides of the pyramid levels P2..P6 (ResNet + FPN).
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Normalization in the backbone and heads: "batch" (matterport, frozen
    # unless TRAIN_BN) or "group" (GroupNorm, works at small batch sizes).
    NORMALIZATION = "batch"
    GROUP_NORM_GROUPS = 32

    # Size of the fully-connected layers of the classification head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Channels of the top-down FPN layers.
    TOP_DOWN_PYRAMID_SIZE = 256

    # Channels of the RPN's shared 3x3 conv and of the mask head's convs. Matterport
    # (and COCO weights) use 512 and 256; smaller values train much faster from scratch.
    RPN_CONV_FILTERS = 512
    MASK_HEAD_FILTERS = 256

    # Number of classes including background.
    NUM_CLASSES = 1

    # Anchor side lengths in pixels, one per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)

    # Anchor ratios width/height at each cell.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]

    # Anchor stride: 1 puts anchors at every feature map cell, 2 at every other.
    RPN_ANCHOR_STRIDE = 1

    # NMS threshold for RPN proposals. Raise it during training for more proposals.
    RPN_NMS_THRESHOLD = 0.7

    # Anchors sampled per image for RPN training.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # ROIs kept after tf.nn.top_k and before NMS.
    PRE_NMS_LIMIT = 6000

    # ROIs kept after NMS, for training and inference.
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Store instance masks resized to MINI_MASK_SHAPE inside their box to save memory.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width)

    # Input image resizing, see utils.resize_image:
    #   none: no resizing; square: resize and pad to [MAX_DIM, MAX_DIM];
    #   pad64: pad to multiples of 64; crop: random crops of MIN_DIM (training only).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scaling ratio, checked after MIN_DIM (e.g. 2 to double small images).
    IMAGE_MIN_SCALE = 0
    # How images are scaled: "exact" gives matterport's pixels bit for bit (skimage's bilinear
    # resize with a zero border, truncated to the image dtype); "opencv" is faster but rounds
    # and replicates the border, so detections from matterport weights can differ.
    IMAGE_RESIZE_METHOD = "exact"

    # Image channels: 3 for RGB. Changing it means conv1 cannot use pretrained weights.
    IMAGE_CHANNEL_COUNT = 3

    # Mean pixel subtracted from images (RGB).
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # ROIs per image fed to the heads during training, and the share of positives.
    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33

    # Pooled ROI sizes for the box head and the mask head.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # RoIAlign: "crop_and_resize" (one bilinear sample per bin; what matterport
    # weights were trained with) or "paper" (ROI_ALIGN_SAMPLING_RATIO^2 bilinear
    # samples per bin, averaged, as in He et al. 2017).
    ROI_ALIGN_MODE = "crop_and_resize"
    ROI_ALIGN_SAMPLING_RATIO = 2

    # Output mask shape; the mask head doubles MASK_POOL_SIZE.
    MASK_SHAPE = [28, 28]

    # One mask per ROI instead of one per class (the Mask R-CNN paper, section 4.2: "nearly
    # as effective"). True: the mask head ("mrcnn_mask") outputs 1 channel, the mask loss
    # and detect() use it for every class. False (matterport's layout): NUM_CLASSES
    # channels, the loss and detect() take the channel of the ROI's class. The two layouts'
    # "mrcnn_mask" weights differ in shape: exclude that layer when loading across them.
    CLASS_AGNOSTIC_MASKS = False

    # Maximum ground truth instances in one image.
    MAX_GT_INSTANCES = 100

    # Standard deviation of the box refinement targets (RPN and heads).
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Maximum number of final detections per image.
    DETECTION_MAX_INSTANCES = 100

    # Minimum class probability to keep a detection.
    DETECTION_MIN_CONFIDENCE = 0.7

    # Non-maximum suppression threshold for detections (per class).
    DETECTION_NMS_THRESHOLD = 0.3

    # NMS of proposals and detections: "standard" is matterport's tf.image.non_max_suppression
    # (equal scores in index order, so the same proposals and detections from the same weights;
    # confident RPNs give hundreds of anchors a probability of exactly 1.0). "combined" uses
    # tf.image.combined_non_max_suppression: faster on CPU, but equal scores come out in
    # another order. "graph" gives what "standard" gives from plain tensor ops instead of the
    # NMS kernel (mrcnn.ops.nms_graph); exports to LiteRT use it, because TFLite's NMS kernel
    # orders ties differently and repeats zero-area boxes.
    NMS_METHOD = "standard"

    # Learning rate and momentum of SGD.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # L2 weight decay.
    WEIGHT_DECAY = 0.0001

    # Loss weights for the five losses.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }

    # Keypoint R-CNN (He et al. 2017, section 5): one more head beside the mask head that
    # predicts, for each of the K named keypoints, a KEYPOINT_MASK_SHAPE^2 softmax heatmap
    # in the ROI's frame. Empty (the default): no keypoint head, and every graph, layer
    # and weight file is exactly that of Mask R-CNN. Datasets give the keypoints with
    # Dataset.load_keypoints ([N, K, (x, y, visibility)] COCO convention).
    KEYPOINT_NAMES = ()
    # Heatmap side m; the head upsamples KEYPOINT_POOL_SIZE by 4 (deconv x2, bilinear x2).
    KEYPOINT_MASK_SHAPE = 56
    KEYPOINT_POOL_SIZE = 14
    # 3x3 convs of the keypoint head (8 x 512 in the paper) and their channels.
    KEYPOINT_HEAD_CONVS = 8
    KEYPOINT_HEAD_FILTERS = 512
    # Pairs of keypoint names swapped by a horizontal flip (e.g. ("left_eye", "right_eye")),
    # used by mrcnn.keypoints.HorizontalFlip, the augmentation keypoint datasets accept.
    KEYPOINT_FLIP_MAP = ()
    # Pairs of keypoint names joined by a line in visualize.display_keypoints (optional).
    KEYPOINT_SKELETON = ()
    # Its weight: LOSS_WEIGHTS["mrcnn_keypoint_loss"] (1.0 when absent).

    # Use the RPN's proposals to train the heads (True), or externally generated ROIs.
    USE_RPN_ROIS = True

    # Train BatchNorm layers (False freezes them: small batches give bad statistics).
    TRAIN_BN = False

    # Gradient norm clipping.
    GRADIENT_CLIP_NORM = 5.0

    # Keras dtype policy for the model, e.g. "mixed_float16" (GPU) or
    # "mixed_bfloat16" (CPUs with AMX). None keeps the global policy.
    DTYPE_POLICY = None

    # detect() runs the float32 inference graph with the weights folded in as constants,
    # which lets TensorFlow fold the frozen BatchNorms into the convolutions: 1.1x to 1.3x
    # faster on CPU, for a one-time cost of seconds. It freezes only once that cost has paid
    # for itself (a long loop such as an evaluation, never a few calls in a notebook; see
    # mrcnn.predictor) and again after the weights change. False always runs the graph on
    # the variables.
    FREEZE_INFERENCE_WEIGHTS = True

    # The inference graph runs its wide 3x3 convolutions (FPN outputs, RPN, ResNet stages 4
    # and 5, mask head) by Winograd's algorithm (mrcnn.winograd): 2.25x fewer multiplications, equal
    # to the direct convolution up to float32 rounding. "auto": in float32 when TensorFlow
    # sees no GPU (GPU libraries choose their own algorithms). True: in float32 on any
    # device. False: never. Training graphs always use the direct convolution. It needs more
    # memory: ResNet-50 at 1024 px, 2 images, peaked at 6.7 GB against 5.2 GB without.
    WINOGRAD_CONVS = "auto"

    def __init__(self):
        """Compute the derived attributes and check every value."""
        self.MEAN_PIXEL = np.asarray(self.MEAN_PIXEL, dtype=np.float32)
        self.RPN_BBOX_STD_DEV = np.asarray(self.RPN_BBOX_STD_DEV, dtype=np.float32)
        self.BBOX_STD_DEV = np.asarray(self.BBOX_STD_DEV, dtype=np.float32)
        self._validate()
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            side = self.IMAGE_MIN_DIM
        else:
            side = self.IMAGE_MAX_DIM
        self.IMAGE_SHAPE = np.array([side, side, self.IMAGE_CHANNEL_COUNT])
        # image_id, original shape, molded shape, window, scale, active class ids.
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    # ------------------------------------------------------------------ checks
    def _validate(self):
        """Raise ValueError naming the first attribute whose value is wrong."""
        for name in ("GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH", "NUM_CLASSES",
                     "IMAGE_CHANNEL_COUNT", "POST_NMS_ROIS_TRAINING",
                     "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT", "TRAIN_ROIS_PER_IMAGE",
                     "RPN_TRAIN_ANCHORS_PER_IMAGE", "RPN_ANCHOR_STRIDE", "POOL_SIZE",
                     "MASK_POOL_SIZE", "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES",
                     "TOP_DOWN_PYRAMID_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE",
                     "ROI_ALIGN_SAMPLING_RATIO", "GROUP_NORM_GROUPS", "RPN_CONV_FILTERS",
                     "MASK_HEAD_FILTERS"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("VALIDATION_STEPS", self.VALIDATION_STEPS, minimum=0)
        if self.CHECKPOINT_EVERY_STEPS is not None:
            _check_int("CHECKPOINT_EVERY_STEPS", self.CHECKPOINT_EVERY_STEPS, minimum=1)

        if not (callable(self.BACKBONE) or self.BACKBONE in BACKBONES):
            raise ValueError(f"BACKBONE must be one of {BACKBONES} or a callable, "
                             f"got {self.BACKBONE!r}")
        if self.COMPUTE_BACKBONE_SHAPE is not None and not callable(self.COMPUTE_BACKBONE_SHAPE):
            raise ValueError("COMPUTE_BACKBONE_SHAPE must be None or a callable, "
                             f"got {self.COMPUTE_BACKBONE_SHAPE!r}")
        if not isinstance(self.CLASS_AGNOSTIC_MASKS, bool):
            raise ValueError("CLASS_AGNOSTIC_MASKS must be True or False, "
                             f"got {self.CLASS_AGNOSTIC_MASKS!r}")
        if not isinstance(self.FREEZE_INFERENCE_WEIGHTS, bool):
            raise ValueError("FREEZE_INFERENCE_WEIGHTS must be True or False, "
                             f"got {self.FREEZE_INFERENCE_WEIGHTS!r}")
        if not (isinstance(self.WINOGRAD_CONVS, bool) or self.WINOGRAD_CONVS == "auto"):
            raise ValueError(f'WINOGRAD_CONVS must be True, False or "auto", got {self.WINOGRAD_CONVS!r}')
        _check_choice("IMAGE_RESIZE_MODE", self.IMAGE_RESIZE_MODE, RESIZE_MODES)
        _check_choice("NORMALIZATION", self.NORMALIZATION, NORMALIZATIONS)
        _check_choice("ROI_ALIGN_MODE", self.ROI_ALIGN_MODE, ROI_ALIGN_MODES)
        _check_choice("IMAGE_RESIZE_METHOD", self.IMAGE_RESIZE_METHOD, RESIZE_METHODS)
        _check_choice("NMS_METHOD", self.NMS_METHOD, NMS_METHODS)

        strides = list(self.BACKBONE_STRIDES)
        if not strides or any(not isinstance(s, numbers.Integral) or s < 1 for s in strides):
            raise ValueError(f"BACKBONE_STRIDES must be positive integers, got {self.BACKBONE_STRIDES!r}")
        if len(self.RPN_ANCHOR_SCALES) != len(strides):
            raise ValueError(
                f"RPN_ANCHOR_SCALES needs one scale per pyramid level ({len(strides)} "
                f"BACKBONE_STRIDES), got {self.RPN_ANCHOR_SCALES!r}")
        if any(s <= 0 for s in self.RPN_ANCHOR_SCALES):
            raise ValueError(f"RPN_ANCHOR_SCALES must be positive, got {self.RPN_ANCHOR_SCALES!r}")
        ratios = list(self.RPN_ANCHOR_RATIOS)
        if not ratios or any(not isinstance(r, numbers.Real) or r <= 0 for r in ratios):
            raise ValueError(f"RPN_ANCHOR_RATIOS must be positive numbers, got {self.RPN_ANCHOR_RATIOS!r}")

        for name in ("RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        ratio = self.ROI_POSITIVE_RATIO
        if not isinstance(ratio, numbers.Real) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"ROI_POSITIVE_RATIO must be in (0, 1], got {ratio!r}")
        if int(self.TRAIN_ROIS_PER_IMAGE * ratio) < 1:
            raise ValueError(
                f"TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO = {self.TRAIN_ROIS_PER_IMAGE} * "
                f"{ratio!r} < 1: no positive ROI per image, so the box and mask heads would "
                "never train")
        for name in ("LEARNING_RATE", "GRADIENT_CLIP_NORM"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        _check_range("LEARNING_MOMENTUM", self.LEARNING_MOMENTUM, 0.0, 1.0)
        if not isinstance(self.WEIGHT_DECAY, numbers.Real) or self.WEIGHT_DECAY < 0:
            raise ValueError(f"WEIGHT_DECAY must be >= 0, got {self.WEIGHT_DECAY!r}")

        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            value = getattr(self, name)
            if value.shape != (4,) or np.any(value <= 0):
                raise ValueError(f"{name} must be 4 positive numbers, got {value.tolist()!r}")
        if self.MEAN_PIXEL.shape != (self.IMAGE_CHANNEL_COUNT,):
            raise ValueError(
                f"MEAN_PIXEL must have IMAGE_CHANNEL_COUNT={self.IMAGE_CHANNEL_COUNT} values, "
                f"got {self.MEAN_PIXEL.tolist()!r}")

        mini = tuple(self.MINI_MASK_SHAPE)
        if len(mini) != 2 or any(not isinstance(v, numbers.Integral) or v < 1 for v in mini):
            raise ValueError(f"MINI_MASK_SHAPE must be (height, width) > 0, got {self.MINI_MASK_SHAPE!r}")
        mask_shape = list(self.MASK_SHAPE)
        if mask_shape != [2 * self.MASK_POOL_SIZE] * 2:
            raise ValueError(
                f"MASK_SHAPE must be [2 * MASK_POOL_SIZE] * 2 = {[2 * self.MASK_POOL_SIZE] * 2} "
                f"(the mask head upsamples by 2), got {self.MASK_SHAPE!r}")
        if self.USE_MINI_MASK and (mini[0] < mask_shape[0] or mini[1] < mask_shape[1]):
            warnings.warn(f"MINI_MASK_SHAPE {tuple(mini)} is smaller than MASK_SHAPE "
                          f"{tuple(mask_shape)}: mask targets are upsampled from coarser "
                          "mini-masks (matterport uses (56, 56) for [28, 28])",
                          ConfigWarning, stacklevel=4)

        unknown = set(self.LOSS_WEIGHTS) - set(LOSS_NAMES) - {KEYPOINT_LOSS_NAME}
        if unknown:
            raise ValueError(f"LOSS_WEIGHTS has unknown losses {sorted(unknown)!r}; "
                             f"known: {LOSS_NAMES + (KEYPOINT_LOSS_NAME,)}")
        for key, value in self.LOSS_WEIGHTS.items():
            if not isinstance(value, numbers.Real) or value < 0:
                raise ValueError(f"LOSS_WEIGHTS[{key!r}] must be >= 0, got {value!r}")

        self._validate_image_size()
        self._validate_keypoints()

    def _validate_keypoints(self):
        """KEYPOINT_* settings: names unique strings, flip map and skeleton pairs of them."""
        names = self.KEYPOINT_NAMES
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"KEYPOINT_NAMES must be a sequence of non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"KEYPOINT_NAMES must be unique, got {names!r}")
        for name in ("KEYPOINT_MASK_SHAPE", "KEYPOINT_POOL_SIZE", "KEYPOINT_HEAD_CONVS",
                     "KEYPOINT_HEAD_FILTERS"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.KEYPOINT_MASK_SHAPE != 4 * self.KEYPOINT_POOL_SIZE:
            raise ValueError(
                f"KEYPOINT_MASK_SHAPE must be 4 * KEYPOINT_POOL_SIZE = {4 * self.KEYPOINT_POOL_SIZE} "
                f"(deconv x2 then bilinear x2), got {self.KEYPOINT_MASK_SHAPE!r}")
        for attr in ("KEYPOINT_FLIP_MAP", "KEYPOINT_SKELETON"):
            for pair in getattr(self, attr):
                if len(pair) != 2 or any(p not in names for p in pair):
                    raise ValueError(f"{attr} must hold pairs of KEYPOINT_NAMES, got {pair!r} "
                                     f"(KEYPOINT_NAMES={tuple(names)!r})")

    def _validate_image_size(self):
        mode = self.IMAGE_RESIZE_MODE
        min_dim, max_dim = self.IMAGE_MIN_DIM, self.IMAGE_MAX_DIM
        if mode in ("square", "crop"):
            _check_int("IMAGE_MIN_DIM", min_dim, minimum=1)
        if mode == "square":
            _check_int("IMAGE_MAX_DIM", max_dim, minimum=1)
            if min_dim > max_dim:
                raise ValueError(f"IMAGE_MIN_DIM ({min_dim!r}) must not exceed "
                                 f"IMAGE_MAX_DIM ({max_dim!r})")
        if not isinstance(self.IMAGE_MIN_SCALE, numbers.Real) or self.IMAGE_MIN_SCALE < 0:
            raise ValueError(f"IMAGE_MIN_SCALE must be >= 0, got {self.IMAGE_MIN_SCALE!r}")
        # The molded image must divide by 64 (P6), where its size is fixed by the config.
        checks = {"square": ("IMAGE_MAX_DIM", max_dim), "crop": ("IMAGE_MIN_DIM", min_dim)}
        if mode in checks:
            name, side = checks[mode]
            if side % BACKBONE_DIVISOR:
                raise ValueError(
                    f"{name} must be divisible by {BACKBONE_DIVISOR} in {mode!r} resize mode "
                    f"(e.g. 256, 320, 384, 448, 512, 576, 640, ...), got {side!r}")

    def validate_for_model(self):
        """Checks that only matter once a model is built (called by MaskRCNN)."""
        self._validate()
        if self.NUM_CLASSES < 2:
            raise ValueError(
                f"NUM_CLASSES must be at least 2 (background + your classes), got {self.NUM_CLASSES!r}")
        if callable(self.BACKBONE) and self.COMPUTE_BACKBONE_SHAPE is None:
            logger.info("BACKBONE is a callable and COMPUTE_BACKBONE_SHAPE is None: "
                        "feature maps are assumed to be ceil(image side / stride)")
        expected_meta = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES
        if getattr(self, "IMAGE_META_SIZE", expected_meta) != expected_meta:
            raise ValueError(
                f"IMAGE_META_SIZE is {self.IMAGE_META_SIZE!r} but NUM_CLASSES={self.NUM_CLASSES} "
                f"needs {expected_meta}: set NUM_CLASSES before the config is constructed")

    # ------------------------------------------------------------------ output
    def to_dict(self):
        """Every UPPER_CASE attribute as plain Python values (arrays become lists)."""
        out = {}
        for name in sorted(dir(self)):
            if not name.isupper() or name.startswith("_"):
                continue
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif callable(value):
                value = getattr(value, "__name__", repr(value))
            out[name] = value
        return out

    def display(self):
        """Print every configuration value."""
        print("\nConfigurations:")
        for name, value in self.to_dict().items():
            print(f"{name:30} {value}")
        print("\n")


def check_positive_int(name, value):
    """Raise ValueError unless ``value`` is an int >= 1 (not a bool); for layer and builder
    arguments (Config attributes use their own checks when the config is built)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_range(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
