"""Image meta, molding, and (with the training issue) the data pipeline.

Image meta is one float row per image, laid out as
``[image_id, original_image_shape (3), image_shape (3), window (y1, x1, y2, x2) (4),
scale (1), active_class_ids (NUM_CLASSES)]``: the matterport layout.
"""
import logging

import numpy as np

logger = logging.getLogger(__name__)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack the attributes of one image into a meta row.

    image_id: int, the image's index in its Dataset.
    original_image_shape: (H, W, C) before resizing or padding.
    image_shape: (H, W, C) after resizing and padding.
    window: (y1, x1, y2, x2) pixels of the real image inside the padded image.
    scale: float, the resize factor applied to the original image.
    active_class_ids: [NUM_CLASSES] 1 for classes of the image's source dataset, else 0.

    Returns: [12 + NUM_CLASSES] float64 row.
    """
    meta = np.array(
        [image_id]
        + list(original_image_shape)
        + list(image_shape)
        + list(window)
        + [scale]
        + list(active_class_ids),
        dtype=np.float64,
    )
    return meta


def parse_image_meta(meta):
    """Split meta rows into their parts.

    meta: [batch, 12 + NUM_CLASSES] (or a single [12 + NUM_CLASSES] row).

    Returns a dict of NumPy arrays: image_id [batch] int32, original_image_shape
    [batch, 3] int32, image_shape [batch, 3] int32, window [batch, 4] int32 pixels,
    scale [batch] float32, active_class_ids [batch, NUM_CLASSES] int32.
    """
    meta = np.asarray(meta)
    if meta.ndim not in (1, 2) or meta.shape[-1] < 13:
        raise ValueError(f"image meta must be [batch, 12 + NUM_CLASSES], got shape {meta.shape}")
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }


def mold_image(images, config):
    """Subtract the mean pixel: [..., C] uint8 or float RGB -> float32 of the same shape."""
    images = np.asarray(images)
    if images.shape[-1] != config.IMAGE_CHANNEL_COUNT:
        raise ValueError(
            f"images have {images.shape[-1]} channels, config.IMAGE_CHANNEL_COUNT is "
            f"{config.IMAGE_CHANNEL_COUNT} (shape {images.shape})")
    return images.astype(np.float32) - config.MEAN_PIXEL


def unmold_image(normalized_images, config):
    """Inverse of mold_image: add the mean pixel back and return uint8 (clipped to 0..255)."""
    images = np.asarray(normalized_images, dtype=np.float32) + config.MEAN_PIXEL
    return np.clip(np.round(images), 0, 255).astype(np.uint8)
