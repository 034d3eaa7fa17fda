"""COCO instances: the reader (``CocoDataset``, from :mod:`mrcnn.coco`) and a writer.

:class:`CocoDataset` lives in :mod:`mrcnn.coco` with the COCO results and evaluation
helpers (``from mrcnn.coco import CocoDataset`` keeps working); it is re-exported here
so that every ready dataset is found in :mod:`mrcnn.datasets`.

:func:`dataset_to_coco` writes any prepared :class:`~mrcnn.dataset.Dataset` (labelme,
VIA, mask PNGs, or your own ``load_mask``) as a COCO instances dict, which
:func:`write_coco_json` saves; pycocotools then reads it as ground truth. RLE
segmentations give back exactly the masks of ``load_mask``; polygons are traced
outlines (smaller files, readable by every COCO tool, but not exact: holes are lost and
the rasterised polygon may differ from the mask along its border).
"""
import json
import logging
import os
import tempfile

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn.coco import (  # noqa: F401  (re-exported)
    COCO_METRIC_NAMES, CocoDataset, ann_to_mask, ann_to_rle, build_coco_results,
    coco_from_dict, evaluate_coco, read_coco_json, write_results_json)

logger = logging.getLogger(__name__)

SEGMENTATION_KINDS = ("rle", "polygon")


def mask_to_rle(mask):
    """Compressed COCO RLE of one [H, W] bool mask, JSON-ready (counts a str)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_to_polygons(mask, tolerance=0.0):
    """Outer and inner outlines of one [H, W] bool mask as COCO polygons.

    Returns: a list of flat [x1, y1, x2, y2, ...] lists in pixel coordinates (pixel
    centres), each with at least 3 points; tolerance > 0 simplifies them
    (skimage.measure.approximate_polygon). Lossy: see the module docstring.
    """
    import skimage.measure

    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    polygons = []
    for contour in skimage.measure.find_contours(padded, 0.5):
        if tolerance > 0:
            contour = skimage.measure.approximate_polygon(contour, tolerance)
        contour = contour - 1.0                     # undo the padding
        if len(contour) < 3:
            continue
        xy = np.stack([contour[:, 1], contour[:, 0]], axis=1)
        polygons.append([round(float(v), 2) for v in xy.ravel()])
    return polygons


def dataset_to_coco(dataset, segmentation="rle", image_root=None, image_ids=None):
    """A COCO instances dict of a prepared dataset's images and ``load_mask`` instances.

    dataset: a prepared Dataset.
    segmentation: "rle" (exact) or "polygon" (traced outlines; lossy).
    image_root: folder the "file_name"s are relative to; None: the common folder of
        all image paths.
    image_ids: internal image ids to write; None for all.

    Returns: {"images", "annotations", "categories", "info"}. Categories are the
    dataset's classes 1..N (internal ids, names from ``class_names``); images get ids
    1.., in dataset order, with "file_name", "height", "width" and "mrcnn_id" (the
    dataset's source image id as a str). An instance with a negative class id (crowd)
    is written with iscrowd=1 and always as RLE. "area" and "bbox" are pycocotools'
    (mask pixel count; [x, y, w, h] of the mask).
    """
    if segmentation not in SEGMENTATION_KINDS:
        raise ValueError(f"segmentation must be one of {SEGMENTATION_KINDS}, "
                         f"got {segmentation!r}")
    if not hasattr(dataset, "class_names"):
        raise ValueError("dataset must be prepared (call dataset.prepare()) before writing it")
    ids = list(dataset.image_ids) if image_ids is None else [int(i) for i in image_ids]
    paths = [os.path.abspath(dataset.image_info[i]["path"]) for i in ids]
    if image_root is None:
        image_root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else "."
    image_root = os.path.abspath(os.fspath(image_root))
    categories = [{"id": k, "name": dataset.class_names[k], "supercategory": ""}
                  for k in range(1, dataset.num_classes)]
    images, annotations = [], []
    for coco_id, (image_id, path) in enumerate(zip(ids, paths), start=1):
        masks, class_ids = dataset.load_mask(image_id)
        info = dataset.image_info[image_id]
        height, width = (int(info["height"]), int(info["width"])) if "height" in info \
            and "width" in info else tuple(int(s) for s in dataset.load_image(image_id).shape[:2])
        if masks.shape[-1] and masks.shape[:2] != (height, width):
            raise ValueError(f"image {image_id} ({path}): masks of shape {masks.shape} differ "
                             f"from the image size {(height, width)}")
        images.append({"id": coco_id, "file_name": os.path.relpath(path, image_root),
                       "height": height, "width": width, "mrcnn_id": str(info["id"])})
        for k in range(masks.shape[-1]):
            mask = masks[:, :, k]
            class_id = int(class_ids[k])
            crowd = class_id < 0
            rle = mask_to_rle(mask)
            compressed = dict(rle, counts=rle["counts"].encode("ascii"))
            ann = {"id": len(annotations) + 1, "image_id": coco_id,
                   "category_id": abs(class_id), "iscrowd": int(crowd),
                   "area": float(mask_utils.area(compressed)),
                   "bbox": [float(v) for v in mask_utils.toBbox(compressed)]}
            if segmentation == "polygon" and not crowd:
                polygons = mask_to_polygons(mask)
                if not polygons:
                    logger.warning("image %s (%s), instance %d: no polygon with 3 points; "
                                   "written as RLE", image_id, path, k)
                ann["segmentation"] = polygons or rle
            else:
                ann["segmentation"] = rle
            annotations.append(ann)
    return {"info": {"description": "written by mrcnn.datasets.dataset_to_coco",
                     "image_root": image_root},
            "images": images, "annotations": annotations, "categories": categories}


def write_coco_json(dataset, path, segmentation="rle", image_root=None, image_ids=None):
    """Write :func:`dataset_to_coco` of ``dataset`` to ``path`` (atomically).

    Returns: the written dict. The folder of ``path`` must exist.
    """
    data = dataset_to_coco(dataset, segmentation=segmentation, image_root=image_root,
                           image_ids=image_ids)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder of the COCO file does not exist: {folder!r}")
    fd, tmp = tempfile.mkstemp(prefix=".coco_", suffix=".json.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("%s: %d images, %d annotations, %d categories (file names relative to %s)",
                path, len(data["images"]), len(data["annotations"]), len(data["categories"]),
                data["info"]["image_root"])
    return data
