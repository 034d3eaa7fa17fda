"""VGG Image Annotator (VIA) 1.x and 2.x JSON files.

VIA 1.x exports a dict of image records ``{"<filename><size>": {"filename", "regions"}}``
whose "regions" are a dict keyed "0", "1", ... or a list; VIA 2.x projects hold the same
records under "_via_img_metadata" (its exported annotations are the bare dict, regions a
list). Each region has "shape_attributes" (the geometry) and "region_attributes"
(user attributes, e.g. ``{"name": "balloon"}``).

Polygons (and polylines, rects, circles, ellipses) become masks clipped to the image, as
the balloon sample of matterport/Mask_RCNN draws them (``skimage.draw.polygon``: vertices
are pixel centres, boundary included). Points are not instances and are malformed.
"""
import logging
import math
import numbers
import os

import numpy as np
import skimage.draw

from mrcnn.dataset import Dataset, read_json_object
from mrcnn.datasets.common import (
    check_source, check_strict, image_size, report_malformed, stack_masks)

logger = logging.getLogger(__name__)

SHAPE_KEYS = {
    "polygon": ("all_points_x", "all_points_y"),
    "polyline": ("all_points_x", "all_points_y"),
    "rect": ("x", "y", "width", "height"),
    "circle": ("cx", "cy", "r"),
    "ellipse": ("cx", "cy", "rx", "ry"),
}


def read_via_regions(path):
    """Image entries of a VIA 1.x or 2.x annotation file.

    path: the JSON file.

    Returns: list of (filename, [region dict, ...]) in file order; a region is whatever
    the file holds (normally {"shape_attributes", "region_attributes"}). A VIA 2.x
    project is recognised by its "_via_img_metadata" key; "regions" may be a dict
    (VIA 1.x, keyed "0", "1", ...; taken in key order) or a list. Raises
    FileNotFoundError, or ValueError naming the file and the bad image record.
    """
    data = read_json_object(path, "VIA annotation file")
    if "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
        if not isinstance(data, dict):
            raise ValueError(f"{path!r}: '_via_img_metadata' must be an object")
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise ValueError(f"{path!r}: entry {key!r} is not a VIA image record "
                             "(an object with a 'filename')")
        regions = entry.get("regions") or []
        if isinstance(regions, dict):
            regions = [regions[k] for k in sorted(regions, key=_region_order)]
        if not isinstance(regions, list):
            raise ValueError(f"{path!r}: 'regions' of {entry['filename']!r} must be a list or "
                             f"an object, got {type(regions).__name__}")
        entries.append((entry["filename"], regions))
    return entries


def _region_order(key):
    return (0, int(key)) if str(key).isdigit() else (1, str(key))


def shape_problem(shape):
    """Why a VIA "shape_attributes" dict cannot be rasterised (a short text), or None."""
    if not isinstance(shape, dict):
        return "lacks 'shape_attributes'"
    name = shape.get("name")
    if name not in SHAPE_KEYS:
        return (f"unsupported VIA shape {name!r} (polygon, polyline, rect, circle and "
                "ellipse are read)")
    missing = [k for k in SHAPE_KEYS[name] if k not in shape]
    if missing:
        return f"VIA {name} shape lacks {missing[0]!r}"
    if name in ("polygon", "polyline"):
        xs, ys = shape["all_points_x"], shape["all_points_y"]
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            return "polygon needs lists all_points_x and all_points_y of equal length"
        if len(xs) < 3:
            return f"polygon needs >= 3 points, got {len(xs)}"
        values = xs + ys
    else:
        values = [shape[k] for k in SHAPE_KEYS[name]]
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
               for v in values):
        return f"VIA {name} shape has non-numeric or non-finite coordinates"
    return None


def shape_to_mask(shape, height, width):
    """Rasterise one VIA shape: [height, width] bool, clipped to the image.

    shape: VIA "shape_attributes": polygon / polyline (all_points_x, all_points_y),
    rect (x, y, width, height), circle (cx, cy, r) or ellipse (cx, cy, rx, ry[, theta]),
    in pixels (x to the right, y down). Polygon vertices are pixel centres and the
    boundary is included (skimage.draw.polygon); a rect covers width x height pixels.
    Raises ValueError for other shapes or bad values.
    """
    name = shape.get("name")
    try:
        if name in ("polygon", "polyline"):
            xs = np.asarray(shape["all_points_x"], dtype=np.float64)
            ys = np.asarray(shape["all_points_y"], dtype=np.float64)
            if xs.shape != ys.shape or xs.ndim != 1 or len(xs) < 3:
                raise ValueError(f"polygon needs >= 3 points with as many x as y, got "
                                 f"{len(xs)} x and {len(ys)} y")
            rr, cc = skimage.draw.polygon(ys, xs, shape=(height, width))
        elif name == "rect":
            # Pixels x .. x + width - 1 and y .. y + height - 1, as VIA draws them.
            x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
            y1, x1 = max(0, int(round(y))), max(0, int(round(x)))
            y2, x2 = min(height, int(round(y + h))), min(width, int(round(x + w)))
            rr, cc = np.mgrid[y1:max(y1, y2), x1:max(x1, x2)]
        elif name == "circle":
            rr, cc = skimage.draw.disk((float(shape["cy"]), float(shape["cx"])),
                                       float(shape["r"]), shape=(height, width))
        elif name == "ellipse":
            rr, cc = skimage.draw.ellipse(float(shape["cy"]), float(shape["cx"]),
                                          float(shape["ry"]), float(shape["rx"]),
                                          shape=(height, width),
                                          rotation=-float(shape.get("theta", 0.0)))
        else:
            raise ValueError(f"unsupported VIA shape {name!r} (polygon, polyline, rect, "
                             "circle and ellipse are read)")
    except KeyError as err:
        raise ValueError(f"VIA {name} shape lacks {err.args[0]!r}") from None
    mask = np.zeros((height, width), dtype=bool)
    mask[rr, cc] = True
    return mask


def _region_class(region, class_attribute):
    """The class name a region's attribute gives (str), or None when it gives none.

    VIA stores a text / radio attribute as a str and a checkbox as {option: true}; a
    checkbox must have exactly one option ticked.
    """
    attributes = region.get("region_attributes") if isinstance(region, dict) else None
    value = attributes.get(class_attribute) if isinstance(attributes, dict) else None
    if isinstance(value, dict):
        ticked = [k for k, v in value.items() if v]
        value = ticked[0] if len(ticked) == 1 else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


class ViaDataset(Dataset):
    """Instances from a VIA 1.x / 2.x annotation file.

    Usage::

        dataset = ViaDataset.from_file("balloon/train/via_region_data.json",
                                       class_name="balloon")
        # several classes, named by a region attribute:
        dataset = ViaDataset.from_file("via_project.json", class_attribute="type")
    """

    def __init__(self, class_map=None):
        super().__init__(class_map=class_map)
        self._via_sources = set()

    @classmethod
    def from_file(cls, annotation_file, image_dir=None, class_name="object",
                  class_attribute=None, class_names=None, keep_unannotated=False, strict=True):
        """A prepared dataset of one VIA file (see load_via)."""
        dataset = cls()
        dataset.load_via(annotation_file, image_dir=image_dir, class_name=class_name,
                         class_attribute=class_attribute, class_names=class_names,
                         keep_unannotated=keep_unannotated, strict=strict)
        dataset.prepare()
        return dataset

    def load_via(self, annotation_file, image_dir=None, class_name="object",
                 class_attribute=None, class_names=None, keep_unannotated=False,
                 source="via", strict=True):
        """Add the images and regions of a VIA annotation file.

        annotation_file: the VIA JSON (1.x export, 2.x project or 2.x export).
        image_dir: folder of the images named by "filename"; default the file's folder.
        class_name: the one class of every region when class_attribute is None.
        class_attribute: None, or the region attribute whose value names the class
            (e.g. "name"); classes then get source ids 1, 2, ... in class_names order
            (default: the names found, sorted).
        class_names: with class_attribute, the known class names; a region naming
            another class is malformed.
        keep_unannotated: keep images without regions (negatives); by default they are
            skipped, because VIA lists images that were never annotated too.
        source: source name of the classes and images.
        strict: see :mod:`mrcnn.datasets.common`. Malformed: a region without
            "shape_attributes", an unsupported or incomplete shape, a polygon with
            fewer than 3 points, a region without its class attribute. Reported as
            ``<file>, image '<filename>', region <index>``. Images whose file is missing
            are skipped with a log warning.

        Returns: the number of images added.
        """
        path = os.fspath(annotation_file)
        check_source(source)
        check_strict(strict)
        if class_attribute is None:
            if not isinstance(class_name, str) or not class_name:
                raise ValueError(f"class_name must be a non-empty str, got {class_name!r}")
        elif not isinstance(class_attribute, str) or not class_attribute:
            raise ValueError(f"class_attribute must be None or a non-empty str, "
                             f"got {class_attribute!r}")
        folder = os.fspath(image_dir) if image_dir is not None else os.path.dirname(path)
        entries = read_via_regions(path)

        records = []
        for filename, regions in entries:
            shapes, classes, indices = [], [], []
            for k, region in enumerate(regions):
                where = f"{path}, image {filename!r}, region {k}"
                shape = region.get("shape_attributes") if isinstance(region, dict) else None
                problem = shape_problem(shape)
                name = class_name
                if problem is None and class_attribute is not None:
                    name = _region_class(region, class_attribute)
                    if name is None:
                        problem = f"no class in region attribute {class_attribute!r}"
                    elif class_names is not None and name not in class_names:
                        problem = f"class {name!r} is not one of class_names {list(class_names)}"
                if problem is not None:
                    report_malformed(strict, where, problem)
                    continue
                shapes.append(shape)
                classes.append(name)
                indices.append(k)
            records.append((filename, shapes, classes, indices, len(regions)))

        if class_attribute is None:
            names = [class_name]
        elif class_names is not None:
            names = list(class_names)
        else:
            names = sorted({c for record in records for c in record[2]})
        ids = {name: k for k, name in enumerate(names, start=1)}
        for name in names:
            self.add_class(source, ids[name], name)
        self._via_sources.add(source)

        added = 0
        for filename, shapes, classes, indices, num_regions in records:
            if not num_regions and not keep_unannotated:
                logger.info("%s: %s has no region; skipped", path, filename)
                continue
            image_path = os.path.join(folder, filename)
            if not os.path.isfile(image_path):
                logger.warning("%s: image file not found: %s; skipped", path, image_path)
                continue
            height, width = image_size(image_path)
            self.add_image(source, image_id=filename, path=image_path, width=width,
                           height=height, polygons=shapes,
                           region_class_ids=[ids[c] for c in classes], region_indices=indices,
                           annotation_file=path)
            added += 1
        logger.info("%s: %d images, %d classes", path, added, len(names))
        return added

    def load_mask(self, image_id):
        """masks [H, W, N] bool (one per region, in file order, clipped to the image) and
        class_ids [N] int32. Regions that cover no pixel of the image are dropped with a
        log warning naming the file, image and region."""
        info = self.image_info[image_id]
        if info["source"] not in self._via_sources:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for k, shape, source_id in zip(info["region_indices"], info["polygons"],
                                       info["region_class_ids"]):
            mask = shape_to_mask(shape, height, width)
            if not mask.any():
                logger.warning("%s, image %r, region %d lies outside the %dx%d image; skipped",
                               info.get("annotation_file"), info["id"], k, height, width)
                continue
            masks.append(mask)
            class_ids.append(self.map_source_class_id(f"{info['source']}.{source_id}"))
        return stack_masks(masks, class_ids, height, width)

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]
