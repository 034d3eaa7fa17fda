"""Checks of what users feed the model: images for detect() and training, instance masks.

NumPy only. Bad values raise exceptions naming them; values the model can still use are
converted, with a named warning (a ``MrcnnInputWarning`` subclass) that a user can filter:

    warnings.simplefilter("ignore", mrcnn.inputs.ImageChannelsWarning)

The model expects RGB values 0..255 (uint8, or any numeric dtype in that range), as
matterport's: mold_image subtracts MEAN_PIXEL from them.
"""
import warnings

import numpy as np

# A resized image whose shorter side is below this many pixels holds too little to detect on,
# and one upscaled more than MAX_UPSCALE times holds too little detail.
MIN_RESIZED_SIDE = 8
MAX_UPSCALE = 16


class MrcnnInputWarning(UserWarning):
    """Base class of the warnings about inputs that were converted or look wrong."""


class ImageChannelsWarning(MrcnnInputWarning):
    """A grayscale image was expanded to RGB, or an RGBA image lost its alpha channel."""


class ImageRangeWarning(MrcnnInputWarning):
    """An image was not in 0..255 (floats in [0, 1], 16-bit values) and was rescaled."""


class ImageSizeWarning(MrcnnInputWarning):
    """An image is so small or so elongated that its resized copy has almost no pixels."""


class InstanceWarning(MrcnnInputWarning):
    """Instances were dropped: empty masks, or more instances than MAX_GT_INSTANCES."""


def check_image(image, name, channels=3, stacklevel=3):
    """A user image as the model expects it, converted where that is safe.

    image: [H, W, C] array (or [H, W] grayscale when channels is 3). name: how messages call
    it (e.g. "image 2"). channels: IMAGE_CHANNEL_COUNT.

    Returns [H, W, channels]: the image itself when it is fine; grayscale repeated to RGB and
    RGBA without alpha (ImageChannelsWarning); floats in [0, 1] times 255 as float32 and
    16-bit values scaled to uint8 (ImageRangeWarning). Raises TypeError for non-numeric
    arrays and ValueError for bool images, NaN/inf values, values outside 0..255 and wrong
    shapes, naming ``name`` and the value.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        raise ValueError(f"{name} has dtype bool; expected RGB values 0..255 (e.g. uint8), "
                         "not a mask")
    if image.dtype.kind not in "uif":
        raise TypeError(f"{name} has dtype {image.dtype}; expected a numeric image (uint8 RGB)")
    if image.ndim == 2 and channels == 3:
        warnings.warn(f"{name} is grayscale {image.shape}: converted to RGB",
                      ImageChannelsWarning, stacklevel=stacklevel)
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 4 and channels == 3:
        warnings.warn(f"{name} is RGBA {image.shape}: alpha channel dropped",
                      ImageChannelsWarning, stacklevel=stacklevel)
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != channels:
        raise ValueError(f"{name} has shape {image.shape}; expected [H, W, {channels}]")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"{name} is too small: shape {image.shape} (at least 2 x 2 pixels)")
    if not image.size or image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if image.dtype.kind == "f" and low >= 0.0 and high <= 1.0 and high > 0.0:
        warnings.warn(f"{name} is {image.dtype} with values in [0, 1] (max {high:.4g}): "
                      "multiplied by 255, the model expects RGB values 0..255",
                      ImageRangeWarning, stacklevel=stacklevel)
        return image.astype(np.float32) * 255.0
    if image.dtype == np.uint16 and high > 255:
        warnings.warn(f"{name} is uint16 (max {high:g}): scaled to 0..255 (value / 257), "
                      "the model expects RGB values 0..255",
                      ImageRangeWarning, stacklevel=stacklevel)
        return np.round(image / 257.0).astype(np.uint8)
    if low < 0 or high > 255:
        raise ValueError(f"{name} ({image.dtype}) has values in [{low:g}, {high:g}], outside "
                         "0..255; pass RGB values 0..255 (an image already molded with "
                         "MEAN_PIXEL subtracted goes to detect_molded)")
    return image


def check_resized_side(name, shape, resized_shape, stacklevel=3):
    """ImageSizeWarning when the resized image has almost no pixels or almost no detail.

    shape: the image's (H, W, ...). resized_shape: (h, w) of its real content after
    resizing (the window). Warns when min(h, w) < MIN_RESIZED_SIDE or when the image was
    upscaled more than MAX_UPSCALE times; raises ValueError when a side becomes 0 pixels.
    """
    short = min(int(resized_shape[0]), int(resized_shape[1]))
    if short < 1:
        raise ValueError(f"{name} of shape {tuple(shape)} becomes "
                         f"{tuple(int(v) for v in resized_shape[:2])} pixels after resizing: "
                         "nothing is left to detect on (crop or split such elongated images)")
    scale = max(int(resized_shape[0]) / max(int(shape[0]), 1),
                int(resized_shape[1]) / max(int(shape[1]), 1))
    if short < MIN_RESIZED_SIDE:
        problem = f"shorter side below {MIN_RESIZED_SIDE} pixels"
    elif scale > MAX_UPSCALE:
        problem = f"upscaled {scale:.0f}x"
    else:
        return
    warnings.warn(f"{name} of shape {tuple(shape)} becomes {tuple(int(v) for v in resized_shape[:2])} "
                  f"pixels after resizing ({problem}): detections on it mean little",
                  ImageSizeWarning, stacklevel=stacklevel)


def too_many_instances_message(image_id, count, config):
    """The InstanceWarning text when an image has more instances than MAX_GT_INSTANCES."""
    limit = config.MAX_GT_INSTANCES
    return (f"image {image_id} has {count} instances, more than MAX_GT_INSTANCES={limit}: a "
            f"random {limit} of them are trained on at this step and {count - limit} dropped "
            "(raise MAX_GT_INSTANCES to keep them all)")
