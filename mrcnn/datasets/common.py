"""What the ready datasets share: the malformed-entry policy, image sizes, mask stacking.

Every loader of :mod:`mrcnn.datasets` reads its annotation files when it is called and
keeps each image's annotations (shapes, file names) in its ``image_info``; no mask is
decoded before ``load_mask``. An entry that cannot be used (a polygon with two points, a
mask of the wrong size, ...) is reported by file and index: with ``strict=True`` (the
default) as a :class:`MalformedAnnotationError`, with ``strict=False`` as a
:class:`MalformedAnnotationWarning` naming it, and the entry is skipped.
"""
import glob
import logging
import os
import warnings

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


class MalformedAnnotationError(ValueError):
    """An annotation entry that cannot be read (strict loading)."""


class MalformedAnnotationWarning(UserWarning):
    """An annotation entry that cannot be read and was skipped (``strict=False``)."""


def report_malformed(strict, where, problem):
    """Raise or warn about one malformed entry.

    strict: bool; True raises MalformedAnnotationError, False warns with
        MalformedAnnotationWarning (the caller then skips the entry).
    where: the file and the entry, e.g. ``"a.json, shape 3"``.
    problem: what is wrong with it.
    """
    message = f"{where}: {problem}"
    if strict:
        raise MalformedAnnotationError(message + " (pass strict=False to skip such entries)")
    warnings.warn(message + "; skipped", MalformedAnnotationWarning, stacklevel=3)


def check_strict(strict):
    """``strict`` as a bool, or ValueError naming the value."""
    if not isinstance(strict, bool):
        raise ValueError(f"strict must be True or False, got {strict!r}")
    return strict


def check_source(source):
    """``source`` as given, or ValueError when it is not a non-empty str without '.'."""
    if not isinstance(source, str) or not source or "." in source:
        raise ValueError(f"source must be a non-empty str without '.', got {source!r}")
    return source


def image_size(path):
    """(height, width) of an image file, read from its header (no pixel decoding)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return height, width


def is_image_file(path):
    """True for a file whose extension is one of IMAGE_EXTENSIONS (case-insensitive)."""
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def sorted_glob(folder, pattern):
    """Files under ``folder`` matching the glob ``pattern`` (``**`` recursive), sorted."""
    return sorted(p for p in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern),
                                       recursive=True) if os.path.isfile(p))


def stack_masks(masks, class_ids, height, width):
    """Stack per-instance masks into the ``load_mask`` result.

    masks: list of N [height, width] bool arrays. class_ids: list of N ints.
    Returns: masks [height, width, N] bool and class_ids [N] int32 ([H, W, 0] and [0]
    when N = 0).
    """
    if not masks:
        return np.zeros((height, width, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
    return np.stack(masks, axis=-1).astype(bool), np.asarray(class_ids, dtype=np.int32)


def read_mask_png(path):
    """A mask image as a 2-D array (grey, or the first channel of RGB / grey + alpha).

    16-bit PNGs keep their values (instance ids above 255). Raises ValueError naming
    the file when it cannot be read.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except Exception as err:  # PIL raises many types for bad files.
        raise ValueError(f"could not read mask image {path!r}: {err}") from err
    if array.ndim == 3:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"mask image {path!r} has unsupported shape {array.shape}")
    return array
