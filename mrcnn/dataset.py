"""The Dataset base class that users subclass, and the image/mask checks it relies on.

Subclass :class:`Dataset`, add classes and images in a ``load_<name>()`` method of
your own, override ``load_mask`` (and ``image_reference``), then call ``prepare()``.
``mrcnn.utils`` re-exports these names, so ``utils.Dataset`` keeps working.
"""
import json
import logging
import numbers
import os

import numpy as np
import skimage.color
import skimage.io
import skimage.util

logger = logging.getLogger(__name__)


class Dataset:
    """Base class of datasets: subclass it, add classes and images, override load_mask.

    Class 0 is always "BG" from source "". Each source (e.g. "coco") numbers its own
    classes and images; ``prepare()`` maps them to contiguous internal ids.

    class_map: accepted for matterport compatibility; unused.
    """

    def __init__(self, class_map=None):
        self._image_ids = np.zeros((0,), dtype=np.int64)
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}
        self.class_from_source_map = {}
        self.image_from_source_map = {}
        self.sources = []

    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source``; a (source, id) seen before is ignored."""
        if not isinstance(source, str) or "." in source:
            raise ValueError(f"source must be a str without '.', got {source!r}")
        if (not isinstance(class_id, numbers.Integral) or isinstance(class_id, bool)
                or class_id < 0):
            raise ValueError(f"class_id must be an integer >= 0, got {class_id!r}")
        if not isinstance(class_name, str):
            raise ValueError(f"class_name must be a str, got {class_name!r}")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": int(class_id), "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image. Extra keyword arguments are kept in its info dict."""
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    def image_reference(self, image_id):
        """A link or description of the image for debugging; override in subclasses."""
        return ""

    def prepare(self, class_map=None):
        """Build the internal ids and lookup tables. Call after adding classes and images."""
        if not self.image_info:
            raise ValueError(
                f"the dataset is empty: prepare() found 0 images ({len(self.class_info)} classes); "
                "call add_image() first")
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [str(info["name"]).split(",")[0] for info in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": i for i, info in enumerate(self.class_info)}
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": i for i, info in enumerate(self.image_info)}
        self.sources = sorted({info["source"] for info in self.class_info})
        self.source_class_ids = {
            source: [i for i, info in enumerate(self.class_info)
                     if i == 0 or info["source"] == source]
            for source in self.sources}

    def map_source_class_id(self, source_class_id):
        """Internal class id of ``"source.id"`` (e.g. ``"coco.12"``)."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError(
                f"unknown source class id {source_class_id!r}; known: "
                f"{sorted(self.class_from_source_map)[:20]} (did you call prepare()?)") from None

    def get_source_class_id(self, class_id, source):
        """The id in ``source`` of internal class ``class_id``."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"class {class_id} belongs to source {info['source']!r}, not {source!r}")
        return info["id"]

    @property
    def image_ids(self):
        """[num_images] internal image ids (after prepare())."""
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """Read the image: [H, W, 3] uint8 RGB (grayscale is expanded, alpha dropped)."""
        return read_rgb_image(self.image_info[image_id]["path"])

    def load_mask(self, image_id):
        """Instance masks of the image. Override this in your dataset.

        Returns: masks [H, W, N] bool, class_ids [N] int32. The base class has no
        annotations: it logs a warning and returns [0, 0, 0] masks and [0] ids.
        """
        logger.warning("Dataset.load_mask is not overridden: image %s has no instance masks",
                       image_id)
        return np.zeros((0, 0, 0), dtype=bool), np.zeros((0,), dtype=np.int32)

    def load_keypoints(self, image_id):
        """Keypoints of the instances ``load_mask`` returns, in the same order. Override
        this in a keypoint dataset (used when Config.KEYPOINT_NAMES is set).

        Returns: [N, K, (x, y, visibility)] float, K = len(Config.KEYPOINT_NAMES), in
        pixel-index units of the original image (COCO's convention: the centre of pixel
        column i is x = i); visibility 0 = not labelled, 1 = labelled but occluded,
        2 = visible. The base class returns None: no keypoint is labelled.
        """
        return None


def read_rgb_image(path):
    """Read an image file as [H, W, 3] uint8 RGB.

    Grayscale (and gray + alpha) is repeated to 3 channels, RGBA drops alpha, 16-bit
    and float images are rescaled to uint8. A missing file raises FileNotFoundError,
    an unreadable one ValueError; both name ``path``.
    """
    is_url = isinstance(path, str) and "://" in path
    if not is_url and not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    try:
        image = skimage.io.imread(path)
    except Exception as err:  # skimage/imageio/PIL raise many types for bad files.
        raise ValueError(f"could not read image {path!r}: {err}") from err
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4 and _is_cmyk(path):
        # A CMYK JPEG reads as 4 channels that are not RGBA: convert its colours.
        from PIL import Image
        with Image.open(path) as cmyk:
            image = np.asarray(cmyk.convert("RGB"))
    if image.ndim == 3 and image.shape[-1] in (1, 2):
        image = image[..., 0]
    if image.ndim == 2:
        image = skimage.color.gray2rgb(image)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image {path!r} has unsupported shape {image.shape}")
    if image.dtype != np.uint8:
        image = skimage.util.img_as_ubyte(image)
    return image


def _is_cmyk(path):
    """True when ``path`` is an image file that PIL reads in CMYK mode."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            return image.mode == "CMYK"
    except Exception:  # not a file PIL reads (URL, other formats): not CMYK
        return False


def validate_instance_masks(image_shape, mask, class_ids):
    """Check the output of ``Dataset.load_mask`` against its image.

    image_shape: (H, W, ...) of the image. mask: [H, W, N] instance masks.
    class_ids: [N] integer class ids. N = 0 is valid.

    Returns: (mask [H, W, N] bool, class_ids [N] int32). Raises ValueError naming the
    shapes or ids when they disagree.
    """
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids)
    hw = tuple(int(s) for s in image_shape[:2])
    if mask.ndim != 3 or mask.shape[:2] != hw:
        raise ValueError(f"mask must be [H, W, N] with H, W = {hw} (image shape "
                         f"{tuple(image_shape)}), got mask shape {mask.shape}")
    if class_ids.ndim != 1 or class_ids.shape[0] != mask.shape[-1]:
        raise ValueError(f"class_ids shape {class_ids.shape} does not match the "
                         f"{mask.shape[-1]} instances of mask shape {mask.shape}")
    integral = class_ids.dtype.kind in "iu" or (
        class_ids.dtype.kind == "f" and np.all(np.isfinite(class_ids))
        and np.all(class_ids == np.round(class_ids)))
    if not integral:
        raise ValueError(f"class_ids must be integers, got {class_ids.tolist()!r} "
                         f"(dtype {class_ids.dtype})")
    return mask.astype(bool), class_ids.astype(np.int32)


def read_json_object(path, kind):
    """Read an annotation file that must hold one JSON object.

    path: the file; kind: what it is, for messages (e.g. "COCO annotation file").
    Returns the parsed dict. Raises FileNotFoundError when the file is missing and
    ValueError naming the file when it is empty, not JSON or not an object.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{kind} not found: {path!r}")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise ValueError(f"{kind} {path!r} is empty")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{kind} {path!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{kind} {path!r} must hold a JSON object, got {type(data).__name__}")
    return data
