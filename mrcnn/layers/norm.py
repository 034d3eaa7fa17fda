"""Normalization layers for the backbone and the heads.

``BatchNorm`` is Keras batch normalization with a ``frozen`` switch: a frozen
layer always normalizes with its moving statistics, which is what Mask R-CNN
does with ``TRAIN_BN = False`` (batches of one or two images give useless
batch statistics). ``GroupNorm`` is Keras group normalization whose group count
adapts to the channel count. ``norm_layer`` picks one of them by name, so that
the layer names (``bn2a_branch2a``, ``mrcnn_mask_bn1``, ...) are the same for
both kinds.
"""
import logging

import keras
from keras import ops

from mrcnn import backend
from mrcnn.config import check_positive_int

logger = logging.getLogger(__name__)

NORM_KINDS = ("batch", "group")


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch normalization that can be frozen in inference mode.

    Args:
        frozen: bool. True: normalize with ``moving_mean`` / ``moving_variance``
            whatever ``training`` says, and never update them (matterport's
            ``TRAIN_BN = False``). False: ordinary Keras behaviour (batch
            statistics and moving-average updates when ``training`` is true).
            Whether ``gamma`` / ``beta`` receive gradients is governed by
            ``trainable`` as usual, not by ``frozen``.
        **kwargs: passed to ``keras.layers.BatchNormalization`` (axis,
            momentum, epsilon, name, ...).

    Input: ``[..., channels]`` float tensor (channels last). Output: same shape
    and dtype. Weights, in order: gamma, beta, moving_mean, moving_variance,
    each ``[channels]`` float32.
    """

    def __init__(self, frozen=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(frozen, bool):
            raise TypeError(f"frozen must be a bool, got {frozen!r}")
        self.frozen = frozen

    def call(self, inputs, training=None, mask=None):
        if self.frozen:
            training = False
        use_moving_stats = not (training and self.trainable)
        if use_moving_stats and mask is None and self._fusable(inputs):
            return self._fused_inference(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fusable(self, inputs):
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            backend.get().fused_batch_norm is not None
            and len(inputs.shape) == 4
            and axis in (-1, 3)
            and self.scale
            and self.center
            and not self.renorm
        )

    def _fused_inference(self, inputs):
        """Normalize NHWC ``inputs`` with the moving statistics in one fused op.

        Keras has no fused inference batch norm: its ``ops.batch_normalization``
        becomes a Mul and an Add over the whole feature map, and TF's graph
        optimizer cannot merge them with the following ReLU. ``FusedBatchNormV3``
        (``is_training=False``) does the same arithmetic in one pass, and the
        optimizer fuses it with a following ReLU; it also has a gradient for
        the input, gamma and beta. Half-precision inputs are supported with
        float32 statistics, so no cast of the feature map is needed.
        """
        outputs = backend.get().fused_batch_norm(
            inputs,
            scale=ops.cast(self.gamma, "float32"),
            offset=ops.cast(self.beta, "float32"),
            mean=ops.cast(self.moving_mean, "float32"),
            variance=ops.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["frozen"] = self.frozen
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class GroupNorm(keras.layers.GroupNormalization):
    """Group normalization whose group count is fitted to the channels.

    Args:
        max_groups: int >= 1. At build time the layer uses the largest divisor
            of the channel count that is <= ``max_groups`` (so 32 groups for
            256 channels, 6 groups for 6 channels).
        **kwargs: passed to ``keras.layers.GroupNormalization`` except
            ``groups`` (axis, epsilon, name, ...).

    Input: ``[..., channels]`` float tensor (channels last). Output: same shape.
    Weights: gamma, beta, each ``[channels]`` float32.
    """

    def __init__(self, max_groups=32, **kwargs):
        kwargs.pop("groups", None)
        check_positive_int("max_groups", max_groups)
        super().__init__(groups=max_groups, **kwargs)
        self.max_groups = max_groups

    def build(self, input_shape):
        channels = input_shape[self.axis]
        if channels is None:
            raise ValueError(
                f"GroupNorm {self.name!r} needs a known channel count, got input shape {input_shape}"
            )
        self.groups = fit_groups(self.max_groups, channels)
        super().build(input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("groups", None)
        config["max_groups"] = self.max_groups
        return config


def fit_groups(max_groups, channels):
    """Largest divisor of ``channels`` that is at most ``max_groups``.

    Args:
        max_groups: int >= 1.
        channels: int >= 1.

    Returns:
        int in [1, min(max_groups, channels)] that divides ``channels``.
    """
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels and max_groups must be >= 1, got {channels!r}, {max_groups!r}")
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1  # unreachable: 1 divides everything


def norm_layer(kind, name, train_bn=False, groups=32):
    """A normalization layer of the given kind, with the given name.

    Args:
        kind: "batch" (``BatchNorm``) or "group" (``GroupNorm``).
        name: str, the layer name (``bn_conv1``, ``mrcnn_class_bn1``, ...).
        train_bn: for "batch": False freezes the layer in inference mode
            (``BatchNorm(frozen=True)``); True or None gives ordinary batch
            norm that follows the ``training`` flag. Ignored for "group".
        groups: for "group": the maximum number of groups; the layer uses the
            largest divisor of its channel count not above it. Ignored for
            "batch".

    Returns:
        A Keras layer mapping ``[..., C]`` to ``[..., C]``.
    """
    if kind == "batch":
        frozen = train_bn is not None and not train_bn
        return BatchNorm(frozen=frozen, name=name)
    if kind == "group":
        return GroupNorm(max_groups=groups, name=name)
    raise ValueError(f"norm kind must be one of {NORM_KINDS}, got {kind!r}")
