"""labelme JSON files: one file per image, shapes with labels, group ids merging parts.

A labelme file holds ``{"shapes": [...], "imagePath", "imageData", "imageHeight",
"imageWidth", ...}``; a shape is ``{"label", "points": [[x, y], ...], "group_id",
"shape_type", "mask"?}``. Shapes are rasterised as labelme's own ``shape_to_mask``
draws them (PIL ``ImageDraw`` with outline and fill, pixel (x, y) covering
[x, x + 1) x [y, y + 1)):

* ``polygon`` (or a missing shape_type, as in old files): the polygon, outline included;
* ``rectangle``: two opposite corners, both included;
* ``circle``: the centre and a point on the circle;
* ``mask``: a base64 PNG of the box from ``points[0]`` (top-left, truncated to an
  integer pixel) — labelme 5.4+, the one shape that can hold holes.

Shapes with the same ``label`` and a non-null ``group_id`` are parts of one instance
(their masks are merged), as labelme's COCO export groups them. ``point``, ``line`` and
``linestrip`` shapes are not instances: they are skipped with a log line.

The image is ``imagePath`` relative to the JSON file; when that file is missing and the
JSON embeds ``imageData``, the embedded image is used (decoded in ``load_image``).
"""
import base64
import io
import logging
import math
import numbers
import os

import numpy as np

from mrcnn.dataset import Dataset, read_json_object
from mrcnn.datasets.common import (
    check_source, check_strict, image_size, is_image_file, report_malformed, sorted_glob,
    stack_masks)

logger = logging.getLogger(__name__)

INSTANCE_SHAPES = ("polygon", "rectangle", "circle", "mask")
NON_INSTANCE_SHAPES = ("point", "line", "linestrip", "points")


def _decode_png(data):
    """A base64 PNG (str) as a 2-D bool array (pixel > 0; first channel of colour PNGs)."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., 0]
    return array > 0


def shape_problem(shape):
    """Why a labelme shape cannot be an instance (a short text), or None when it can."""
    if not isinstance(shape, dict):
        return f"a shape must be an object, got {type(shape).__name__}"
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        return f"label must be a non-empty str, got {label!r}"
    kind = shape.get("shape_type") or "polygon"
    if kind not in INSTANCE_SHAPES:
        return f"unsupported shape_type {kind!r} (read: {', '.join(INSTANCE_SHAPES)})"
    group_id = shape.get("group_id")
    if group_id is not None and (isinstance(group_id, bool)
                                 or not isinstance(group_id, numbers.Integral)):
        return f"group_id must be an integer or null, got {group_id!r}"
    points = shape.get("points")
    if not isinstance(points, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                for v in p) for p in points):
        return "points must be a list of [x, y] pairs of finite numbers"
    needed = {"polygon": 3, "rectangle": 2, "circle": 2, "mask": 1}[kind]
    if (len(points) < needed) if kind in ("polygon", "mask") else (len(points) != needed):
        return (f"a {kind} needs {'at least ' if kind in ('polygon', 'mask') else ''}"
                f"{needed} points, got {len(points)}")
    if kind == "mask" and not isinstance(shape.get("mask"), str):
        return "a mask shape needs a base64 PNG under 'mask'"
    return None


def shape_to_mask(shape, height, width):
    """Rasterise one labelme shape: [height, width] bool, clipped to the image.

    shape: a labelme shape dict (see the module docstring); checked by shape_problem.
    """
    from PIL import Image, ImageDraw

    kind = shape.get("shape_type") or "polygon"
    xy = [(float(x), float(y)) for x, y in shape["points"]]
    if kind == "mask":
        part = _decode_png(shape["mask"])
        x0, y0 = int(xy[0][0]), int(xy[0][1])
        mask = np.zeros((height, width), dtype=bool)
        ys, xs = np.nonzero(part)
        ys, xs = ys + y0, xs + x0
        keep = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        mask[ys[keep], xs[keep]] = True
        return mask
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind == "circle":
        (cx, cy), (px, py) = xy
        r = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    else:
        raise ValueError(f"unsupported labelme shape_type {kind!r}")
    return np.asarray(canvas) > 0


class LabelmeDataset(Dataset):
    """Instances from a folder of labelme JSON files.

    Usage::

        dataset = LabelmeDataset.from_folder("annotations/")             # every label
        dataset = LabelmeDataset.from_folder("annotations/", class_names=["cat", "dog"])
    """

    def __init__(self, class_map=None):
        super().__init__(class_map=class_map)
        self._labelme_sources = set()

    @classmethod
    def from_folder(cls, folder, class_names=None, pattern="*.json", strict=True):
        """A prepared dataset of the labelme files in ``folder`` (see load_labelme)."""
        dataset = cls()
        dataset.load_labelme(folder, class_names=class_names, pattern=pattern, strict=strict)
        dataset.prepare()
        return dataset

    def load_labelme(self, folder, class_names=None, pattern="*.json", source="labelme",
                     strict=True):
        """Add the images and instances of the labelme files in ``folder``.

        folder: a folder of labelme JSON files (matched by the glob ``pattern``, ``**``
            recursive), or one JSON file.
        class_names: None for every label found (sorted; source ids 1, 2, ...), or the
            classes to expect, in id order (a shape with another label is malformed).
        source: source name of the classes and images.
        strict: see :mod:`mrcnn.datasets.common`. Malformed: a file that is not a
            labelme object or whose image is missing (and not embedded), a shape with
            a bad label, group_id, shape_type or points. Reported as ``<file>, shape <k>``.

        Returns: the number of images added. Image ids are the JSON paths relative to
        ``folder`` without ".json".
        """
        folder = os.fspath(folder)
        check_source(source)
        check_strict(strict)
        if class_names is not None and (isinstance(class_names, str) or not all(
                isinstance(c, str) and c for c in class_names)):
            raise ValueError(f"class_names must be None or a list of names, got {class_names!r}")
        if os.path.isfile(folder):
            files, root = [folder], os.path.dirname(folder)
        elif os.path.isdir(folder):
            files, root = sorted_glob(folder, pattern), folder
        else:
            raise FileNotFoundError(f"labelme folder or file not found: {folder!r}")

        records = []
        for path in files:
            record = self._read_file(path, root, class_names, strict)
            if record is not None:
                records.append(record)
        names = list(class_names) if class_names is not None else sorted(
            {label for record in records for label, _ in record["instances"]})
        ids = {name: k for k, name in enumerate(names, start=1)}
        for name in names:
            self.add_class(source, ids[name], name)
        self._labelme_sources.add(source)
        for record in records:
            instances = record.pop("instances")
            self.add_image(source, instance_class_ids=[ids[label] for label, _ in instances],
                           shapes=[shapes for _, shapes in instances], **record)
        logger.info("%s: %d labelme files, %d classes", folder, len(records), len(names))
        return len(records)

    @staticmethod
    def _read_file(path, root, class_names, strict):
        """One file's image record with its instances [(label, [(k, shape), ...])], or None."""
        try:
            data = read_json_object(path, "labelme file")
        except ValueError as err:
            report_malformed(strict, path, str(err))
            return None
        if not isinstance(data.get("shapes"), list):
            report_malformed(strict, path, "not a labelme file (no 'shapes' list)")
            return None
        image_path = data.get("imagePath")
        embedded = isinstance(data.get("imageData"), str) and bool(data["imageData"])
        if isinstance(image_path, str) and image_path:
            image_path = os.path.normpath(os.path.join(os.path.dirname(path),
                                                       image_path.replace("\\", "/")))
        if not (isinstance(image_path, str) and is_image_file(image_path)):
            if not embedded:
                report_malformed(strict, path, f"image {data.get('imagePath')!r} not found "
                                 "and no imageData embedded")
                return None
            image_path = None
        height, width = data.get("imageHeight"), data.get("imageWidth")
        if not all(isinstance(v, numbers.Integral) and v > 0 for v in (height, width)):
            if image_path is None:
                height, width = _embedded_image(path).shape[:2]
            else:
                height, width = image_size(image_path)

        instances, groups = [], {}
        for k, shape in enumerate(data["shapes"]):
            kind = shape.get("shape_type") if isinstance(shape, dict) else None
            if kind in NON_INSTANCE_SHAPES:
                logger.info("%s, shape %d: a %s is not an instance; skipped", path, k, kind)
                continue
            problem = shape_problem(shape)
            label = shape["label"].strip() if problem is None else None
            if problem is None and class_names is not None and label not in class_names:
                problem = f"label {label!r} is not one of class_names {list(class_names)}"
            if problem is not None:
                report_malformed(strict, f"{path}, shape {k}", problem)
                continue
            group_id = shape.get("group_id")
            if group_id is None:
                instances.append((label, [(k, shape)]))
            elif (label, group_id) in groups:
                groups[(label, group_id)].append((k, shape))
            else:
                groups[(label, group_id)] = [(k, shape)]
                instances.append((label, groups[(label, group_id)]))
        image_id = os.path.splitext(os.path.relpath(path, root))[0]
        return {"image_id": image_id, "path": image_path or path, "height": int(height),
                "width": int(width), "annotation_file": path, "embedded_image": image_path is None,
                "instances": instances}

    def load_image(self, image_id):
        """The image file, or the image embedded in the JSON (imageData) when there is none."""
        info = self.image_info[image_id]
        if info["source"] in self._labelme_sources and info.get("embedded_image"):
            return _embedded_image(info["annotation_file"])
        return super().load_image(image_id)

    def load_mask(self, image_id):
        """masks [H, W, N] bool, one per instance (grouped parts merged) in file order, and
        class_ids [N] int32. Instances that cover no pixel of the image are dropped with a
        log warning naming the file and shape."""
        info = self.image_info[image_id]
        if info["source"] not in self._labelme_sources:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for parts, source_id in zip(info["shapes"], info["instance_class_ids"]):
            mask = np.zeros((height, width), dtype=bool)
            for _, shape in parts:
                mask |= shape_to_mask(shape, height, width)
            if not mask.any():
                logger.warning("%s, shape %d: covers no pixel of the %dx%d image; skipped",
                               info["annotation_file"], parts[0][0], height, width)
                continue
            masks.append(mask)
            class_ids.append(self.map_source_class_id(f"{info['source']}.{source_id}"))
        return stack_masks(masks, class_ids, height, width)

    def image_reference(self, image_id):
        """The labelme JSON file of the image."""
        return self.image_info[image_id].get("annotation_file", "")


def _embedded_image(json_path):
    """The image embedded (imageData, base64) in a labelme file: [H, W, 3] uint8 RGB."""
    from PIL import Image

    data = read_json_object(json_path, "labelme file")
    try:
        with Image.open(io.BytesIO(base64.b64decode(data["imageData"]))) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as err:  # PIL / base64 raise many types for bad data.
        raise ValueError(f"{json_path!r}: imageData is not a readable image: {err}") from err
