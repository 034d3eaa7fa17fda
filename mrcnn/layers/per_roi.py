"""Fold the ROI axis into the batch axis and back.

Keras 3's ``TimeDistributed`` maps its inner layer over the time axis with a
vectorized map, which is slow for convolutions. The heads instead reshape
``[batch, num_rois, ...]`` to ``[batch * num_rois, ...]``, run ordinary 4-D
convolutions, and reshape back. Both reshapes are free (no copy).
"""
import logging

import keras
from keras import ops

logger = logging.getLogger(__name__)


def _trailing_shape(x, start):
    """Dimensions of ``x`` from axis ``start`` on: static ints where known."""
    static = tuple(x.shape[start:])
    if all(d is not None for d in static):
        return static
    dynamic = ops.shape(x)
    return tuple(d if d is not None else dynamic[start + i] for i, d in enumerate(static))


@keras.saving.register_keras_serializable(package="mrcnn")
class FlattenROIs(keras.layers.Layer):
    """``[batch, num_rois, ...]`` -> ``[batch * num_rois, ...]``.

    Input: tensor of rank >= 3, e.g. pooled features
    ``[batch, num_rois, pool, pool, channels]`` float32.
    Output: ``[batch * num_rois, pool, pool, channels]``, ROI ``j`` of image
    ``i`` at row ``i * num_rois + j``.
    """

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + _trailing_shape(inputs, 2))

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"FlattenROIs needs rank >= 3 input, got shape {input_shape}")
        batch, rois = input_shape[0], input_shape[1]
        folded = batch * rois if batch is not None and rois is not None else None
        return (folded,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class UnflattenROIs(keras.layers.Layer):
    """``[batch * num_rois, ...]`` -> ``[batch, num_rois, ...]``.

    Args:
        num_rois: int > 0, the static ROI count per image; or None when the count is only
            known at run time, in which case the layer is called on ``[folded, like]`` and
            takes batch and num_rois from the first two dimensions of ``like``
            (e.g. the ``[batch, num_rois, P, P, C]`` tensor that was folded).

    Input: tensor of rank >= 2 whose first axis is ``batch * num_rois``
    (row ``i * num_rois + j`` is ROI ``j`` of image ``i``).
    Output: ``[batch, num_rois, ...]``.
    """

    def __init__(self, num_rois, **kwargs):
        super().__init__(**kwargs)
        if num_rois is not None and (isinstance(num_rois, bool) or not isinstance(num_rois, int)
                                     or num_rois < 1):
            raise ValueError(f"num_rois must be a positive int or None, got {num_rois!r}")
        self.num_rois = num_rois

    def call(self, inputs):
        if self.num_rois is None:
            folded, like = inputs
            leading = ops.shape(like)
            return ops.reshape(folded, (leading[0], leading[1]) + _trailing_shape(folded, 1))
        return ops.reshape(inputs, (-1, self.num_rois) + _trailing_shape(inputs, 1))

    def compute_output_shape(self, input_shape):
        if self.num_rois is None:
            folded, like = input_shape
            return (like[0], like[1]) + tuple(folded[1:])
        folded = input_shape[0]
        batch = folded // self.num_rois if folded is not None else None
        return (batch, self.num_rois) + tuple(input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config["num_rois"] = self.num_rois
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class WindowConv2D(keras.layers.Conv2D):
    """A "valid" Conv2D whose kernel spans its whole input: a fully connected layer.

    Matterport's box head writes its two fully connected layers as a P x P valid conv
    and a 1 x 1 conv over ``[rois, P, P, C]`` / ``[rois, 1, 1, fc]``, and its weight
    files store them as conv kernels. This layer keeps that kernel
    (``[kh, kw, C, filters]`` float32, same name, same layout) but computes the
    output as one matrix product of the flattened input with the flattened kernel,
    which on CPU runs about twice as fast as the convolution for a few dozen ROIs
    (forward and backward). Inputs of another spatial size fall back to Conv2D.

    Args: as ``keras.layers.Conv2D``; strides, dilation and groups must stay 1 and
    padding "valid" for the matrix path.

    Input: ``[rows, kh, kw, C]``. Output: ``[rows, 1, 1, filters]`` in the compute dtype.
    """

    def _whole_window(self, inputs):
        return (
            self.padding == "valid"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and len(inputs.shape) == 4
            and tuple(inputs.shape[1:3]) == tuple(self.kernel_size)
        )

    def call(self, inputs):
        if not self._whole_window(inputs):
            return super().call(inputs)
        kh, kw = self.kernel_size
        channels = inputs.shape[-1]
        flat = ops.reshape(inputs, (-1, kh * kw * channels))
        kernel = ops.reshape(self.kernel, (kh * kw * channels, self.filters))
        outputs = ops.matmul(flat, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        outputs = ops.reshape(outputs, (-1, 1, 1, self.filters))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
