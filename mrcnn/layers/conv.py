"""A Conv2D that runs its wide 3x3 convolutions by Winograd's algorithm in inference.

The layer is a ``keras.layers.Conv2D`` in every other respect: same weights (``kernel``
[3, 3, C_in, C_out], ``bias`` [C_out]), same names, same saved files, so matterport ``.h5``
files and the training graph's weights load into it unchanged.
"""
import logging

import keras

from mrcnn.config import check_positive_int

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="mrcnn")
class WinogradConv2D(keras.layers.Conv2D):
    """Conv2D that uses Winograd F(4x4, 3x3) (``mrcnn.winograd``) where it is faster.

    Args:
        winograd: bool; False makes this a plain Conv2D.
        winograd_min_channels: int >= 1; Winograd only when C_in and C_out are both at least this.
        winograd_min_size: int >= 1; Winograd only when the input's static height and width
            are both at least this. Inputs of unknown size use the direct convolution.
        winograd_min_pixels: int >= 1; Winograd only when batch * height * width is at least
            this. An unknown batch passes (the mask head's batch is the number of detections,
            known only at run time: few of them cost little either way, many gain).
        Other arguments as ``keras.layers.Conv2D``.

    The defaults come from timings on a 2-core CPU (see ``mrcnn.winograd``): Winograd was
    faster from 256 channels on 16 x 16 pixels (or 100 ROIs of 14 x 14), slower at 128
    channels on 32 x 32 pixels or with fewer than 256 pixels in all.

    Input: [batch, H, W, C_in] channels last. Output: as Conv2D. The Winograd path runs only
    for a 3x3 kernel, stride 1, dilation 1, "same" padding, one group, channels last and a
    float32 compute dtype; anything else uses the direct convolution.
    """

    def __init__(self, *args, winograd=False, winograd_min_channels=256, winograd_min_size=8,
                 winograd_min_pixels=256, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(winograd, bool):
            raise ValueError(f"winograd must be True or False, got {winograd!r}")
        check_positive_int("winograd_min_channels", winograd_min_channels)
        check_positive_int("winograd_min_size", winograd_min_size)
        check_positive_int("winograd_min_pixels", winograd_min_pixels)
        self.winograd = winograd
        self.winograd_min_channels = winograd_min_channels
        self.winograd_min_size = winograd_min_size
        self.winograd_min_pixels = winograd_min_pixels

    def uses_winograd(self, input_shape):
        """Whether an input of ``input_shape`` ([batch, H, W, C], static dims or None) takes
        the Winograd path."""
        if not (self.winograd and self.kernel_size == (3, 3) and self.strides == (1, 1)
                and self.dilation_rate == (1, 1) and self.padding == "same" and self.groups == 1
                and self.data_format == "channels_last" and self.compute_dtype == "float32"):
            return False
        if len(input_shape) != 4:
            return False
        batch, height, width, channels = input_shape
        if height is None or width is None or channels is None:
            return False
        return (min(height, width) >= self.winograd_min_size
                and (batch is None or batch * height * width >= self.winograd_min_pixels)
                and min(channels, self.filters) >= self.winograd_min_channels)

    def convolution_op(self, inputs, kernel):
        if self.uses_winograd(tuple(inputs.shape)):
            # TensorFlow ops (mrcnn.graph.use_winograd refuses other backends).
            from mrcnn.winograd import winograd_conv3x3_graph
            return winograd_conv3x3_graph(inputs, kernel)
        return super().convolution_op(inputs, kernel)

    def get_config(self):
        config = super().get_config()
        config.update(winograd=self.winograd, winograd_min_channels=self.winograd_min_channels,
                      winograd_min_size=self.winograd_min_size,
                      winograd_min_pixels=self.winograd_min_pixels)
        return config


def conv2d(filters, kernel_size, winograd=False, **kwargs):
    """A ``WinogradConv2D`` with Winograd on when ``winograd``, else a plain ``keras.layers.Conv2D``.

    The graph builders call this for every 3x3 conv that may take the Winograd path, so that
    training graphs (``winograd=False``) keep plain Conv2D layers. Other arguments as Conv2D.
    """
    if winograd:
        return WinogradConv2D(filters, kernel_size, winograd=True, **kwargs)
    return keras.layers.Conv2D(filters, kernel_size, **kwargs)
