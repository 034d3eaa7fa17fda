"""ResNet-50/101 backbone and the feature pyramid network (FPN).

The ResNet is the Caffe variant that the matterport COCO and ImageNet weights
were trained with: convolutions keep their biases, and a conv block puts its
stride in the first 1x1 convolution. Layer names follow the Caffe/Keras-2
convention (``res4b_branch2a``, ``bn4b_branch2a``, ...) because ``.h5`` files
and the training layer groups (``"3+"``, ``"4+"``, ...) address layers by name.

All tensors are channels last (NHWC) float32 (or the global compute dtype).
"""
import logging
import string

import keras

from mrcnn.config import check_positive_int
from mrcnn.layers.conv import conv2d
from mrcnn.layers.norm import NORM_KINDS, norm_layer

logger = logging.getLogger(__name__)

# Identity blocks after the conv block of stage 4.
STAGE4_IDENTITY_BLOCKS = {"resnet50": 5, "resnet101": 22}


def _conv(filters, kernel_size, name, strides=1, padding="valid", winograd=False):
    return conv2d(filters, kernel_size, winograd=winograd, strides=strides, padding=padding,
                  use_bias=True, name=name)


def bottleneck_block(x, kernel_size, filters, stage, block, strides=None,
                     train_bn=False, norm="batch", gn_groups=32, winograd=False):
    """One ResNet bottleneck block: 1x1 -> kxk -> 1x1 convs plus a shortcut.

    Args:
        x: [batch, H, W, C_in] Keras tensor.
        kernel_size: int, the kernel of the middle conv (3).
        filters: (f1, f2, f3) filters of the three convs; the output has f3 channels.
        stage: int (2..5), used in the layer names.
        block: str, block letter ("a", "b", ...), used in the layer names.
        strides: None for an identity block (shortcut is ``x``); an int for a
            conv block (stride of the first 1x1 conv and of the 1x1 shortcut
            conv ``res{stage}{block}_branch1``).
        train_bn, norm, gn_groups: see ``mrcnn.layers.norm.norm_layer``.
        winograd: bool, run the middle conv as a ``WinogradConv2D`` (inference on CPU).

    Returns:
        [batch, H / s, W / s, f3] Keras tensor (s = strides or 1), the output of
        the ReLU layer ``res{stage}{block}_out``.
    """
    f1, f2, f3 = filters
    prefix = f"{stage}{block}"
    conv_name = f"res{prefix}_branch"
    bn_name = f"bn{prefix}_branch"
    first_strides = 1 if strides is None else strides

    y = _conv(f1, 1, conv_name + "2a", strides=first_strides)(x)
    y = norm_layer(norm, bn_name + "2a", train_bn, gn_groups)(y)
    y = keras.layers.ReLU(name=f"res{prefix}_branch2a_relu")(y)

    y = _conv(f2, kernel_size, conv_name + "2b", padding="same", winograd=winograd)(y)
    y = norm_layer(norm, bn_name + "2b", train_bn, gn_groups)(y)
    y = keras.layers.ReLU(name=f"res{prefix}_branch2b_relu")(y)

    y = _conv(f3, 1, conv_name + "2c")(y)
    y = norm_layer(norm, bn_name + "2c", train_bn, gn_groups)(y)

    if strides is None:
        shortcut = x
    else:
        shortcut = _conv(f3, 1, conv_name + "1", strides=strides)(x)
        shortcut = norm_layer(norm, bn_name + "1", train_bn, gn_groups)(shortcut)

    y = keras.layers.Add(name=f"res{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"res{prefix}_out")(y)


def identity_block(x, kernel_size, filters, stage, block, train_bn=False, norm="batch", gn_groups=32):
    """Bottleneck block whose shortcut is the input (matterport's name); see ``bottleneck_block``."""
    return bottleneck_block(x, kernel_size, filters, stage, block, strides=None,
                            train_bn=train_bn, norm=norm, gn_groups=gn_groups)


def conv_block(x, kernel_size, filters, stage, block, strides=2, train_bn=False, norm="batch", gn_groups=32):
    """Bottleneck block with a 1x1 conv shortcut (matterport's name); see ``bottleneck_block``."""
    return bottleneck_block(x, kernel_size, filters, stage, block, strides=strides,
                            train_bn=train_bn, norm=norm, gn_groups=gn_groups)


def _stage(x, stage, filters, num_blocks, strides, train_bn, norm, gn_groups, winograd):
    """A conv block (letter "a") followed by ``num_blocks - 1`` identity blocks."""
    if num_blocks > len(string.ascii_lowercase):
        raise ValueError(f"at most 26 blocks per stage are named, got {num_blocks}")
    x = bottleneck_block(x, 3, filters, stage, "a", strides=strides,
                         train_bn=train_bn, norm=norm, gn_groups=gn_groups, winograd=winograd)
    for letter in string.ascii_lowercase[1:num_blocks]:
        x = bottleneck_block(x, 3, filters, stage, letter,
                             train_bn=train_bn, norm=norm, gn_groups=gn_groups, winograd=winograd)
    return x


def resnet_graph(input_image, architecture, stage5=True, train_bn=False, norm="batch", gn_groups=32,
                 winograd=False):
    """Caffe-style ResNet-50 or ResNet-101 on a Keras image tensor.

    Args:
        input_image: [batch, H, W, channels] Keras tensor, float32, a molded
            image (mean pixel subtracted), channels last. H and W should divide
            by 32 (by 64 for the FPN's P6).
        architecture: "resnet50" or "resnet101".
        stage5: bool; False skips stage 5 and returns C5 = None.
        train_bn: False freezes every BatchNorm in inference mode (matterport
            ``TRAIN_BN = False``); True / None: ordinary batch norm.
        norm: "batch" or "group" (``Config.NORMALIZATION``).
        gn_groups: maximum group count for "group" (``Config.GROUP_NORM_GROUPS``).
        winograd: bool, the 3x3 convs of the bottlenecks are ``WinogradConv2D`` layers, which
            use Winograd's algorithm where it is faster (wide layers, float32).

    Returns:
        [C1, C2, C3, C4, C5] Keras tensors, channels last:
        C1 [batch, H/4, W/4, 64] (after the max pool), C2 [batch, H/4, W/4, 256],
        C3 [batch, H/8, W/8, 512], C4 [batch, H/16, W/16, 1024],
        C5 [batch, H/32, W/32, 2048] or None.
    """
    if architecture not in STAGE4_IDENTITY_BLOCKS:
        raise ValueError(
            f"architecture must be one of {sorted(STAGE4_IDENTITY_BLOCKS)}, got {architecture!r}"
        )
    if norm not in NORM_KINDS:
        raise ValueError(f"norm must be one of {NORM_KINDS}, got {norm!r}")

    # Stage 1: 7x7/2 conv, norm, ReLU, 3x3/2 max pool.
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(input_image)
    x = _conv(64, 7, "conv1", strides=2)(x)
    x = norm_layer(norm, "bn_conv1", train_bn, gn_groups)(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    c1 = x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)

    common = dict(train_bn=train_bn, norm=norm, gn_groups=gn_groups, winograd=winograd)
    c2 = x = _stage(x, 2, (64, 64, 256), 3, strides=1, **common)
    c3 = x = _stage(x, 3, (128, 128, 512), 4, strides=2, **common)
    c4 = x = _stage(x, 4, (256, 256, 1024), 1 + STAGE4_IDENTITY_BLOCKS[architecture], strides=2, **common)
    c5 = _stage(x, 5, (512, 512, 2048), 3, strides=2, **common) if stage5 else None
    return [c1, c2, c3, c4, c5]


def build_fpn(c2, c3, c4, c5, pyramid_size=256, winograd=False):
    """Feature pyramid network on the ResNet stages C2..C5.

    Args:
        c2, c3, c4, c5: Keras tensors from ``resnet_graph`` (strides 4, 8, 16, 32),
            [batch, H/s, W/s, channels], channels last.
        pyramid_size: int, channels of every pyramid level
            (``Config.TOP_DOWN_PYRAMID_SIZE``).
        winograd: bool, the 3x3 output convs are ``WinogradConv2D`` layers.

    Returns:
        [P2, P3, P4, P5, P6] Keras tensors, [batch, H/s, W/s, pyramid_size] for
        s = 4, 8, 16, 32, 64. P6 is a stride-2 subsampling of P5 (for the RPN only).
    """
    check_positive_int("pyramid_size", pyramid_size)
    p5 = _conv(pyramid_size, 1, "fpn_c5p5")(c5)
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name="fpn_p5upsampled")(p5)
    p4 = keras.layers.Add(name="fpn_p4add")([up, _conv(pyramid_size, 1, "fpn_c4p4")(c4)])
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name="fpn_p4upsampled")(p4)
    p3 = keras.layers.Add(name="fpn_p3add")([up, _conv(pyramid_size, 1, "fpn_c3p3")(c3)])
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name="fpn_p3upsampled")(p3)
    p2 = keras.layers.Add(name="fpn_p2add")([up, _conv(pyramid_size, 1, "fpn_c2p2")(c2)])

    # 3x3 output convs smooth the aliasing of the upsampling.
    p2 = _conv(pyramid_size, 3, "fpn_p2", padding="same", winograd=winograd)(p2)
    p3 = _conv(pyramid_size, 3, "fpn_p3", padding="same", winograd=winograd)(p3)
    p4 = _conv(pyramid_size, 3, "fpn_p4", padding="same", winograd=winograd)(p4)
    p5 = _conv(pyramid_size, 3, "fpn_p5", padding="same", winograd=winograd)(p5)
    p6 = keras.layers.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
