"""COCO instance datasets, detections in COCO results format, and COCO evaluation.

* :class:`CocoDataset` reads any COCO *instances* JSON plus an image folder
  (``load_coco``), or the standard ``annotations/instances_<subset><year>.json`` +
  ``<subset><year>/`` layout (``load_coco_standard``).
* :func:`build_coco_results` / :func:`detections_to_coco_results` turn ``detect()``
  outputs into COCO result dicts (boxes ``[x, y, w, h]`` and RLE masks);
  :func:`write_results_json` saves them atomically.
* :func:`evaluate_coco` runs pycocotools' ``COCOeval`` for ``bbox`` and ``segm``.

Class and image ids: the dataset keeps the real COCO category ids and image ids as
its *source* ids (``class_info[i]["id"]``, ``image_info[i]["id"]``); ``prepare()``
maps them to contiguous internal ids. Results always carry the source ids.

This module imports NumPy and pycocotools only (no TensorFlow).
"""
import contextlib
import io
import json
import logging
import math
import numbers
import os
import tempfile

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.dataset import Dataset, read_json_object

logger = logging.getLogger(__name__)

# The 12 numbers of COCOeval.stats, in order.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                     "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# The 10 numbers of COCOeval.stats for iouType "keypoints", in order.
KEYPOINT_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
EVAL_TYPES = ("bbox", "segm")
# Every evaluation pycocotools offers; "keypoints" needs keypoints in the results.
ALL_EVAL_TYPES = EVAL_TYPES + ("keypoints",)
REQUIRED_KEYS = ("images", "annotations", "categories")
# Subsets of the standard layout whose images live in val<year>/.
VAL_IMAGE_SUBSETS = ("minival", "valminusminival", "val35k")


# --------------------------------------------------------------------------- JSON
def read_coco_json(annotation_file):
    """Read and check a COCO instances JSON file.

    annotation_file: path of the JSON file.

    Returns: the parsed dict. Raises FileNotFoundError when the file is missing and
    ValueError (naming the file) when it is empty, not JSON, not an object, or lacks
    a list under "images", "annotations" or "categories".
    """
    path = os.fspath(annotation_file)
    data = read_json_object(path, "COCO annotation file")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"COCO annotation file {path!r} lacks the key(s) {missing} "
                         f"(a COCO instances file needs {list(REQUIRED_KEYS)}); "
                         f"found {sorted(data)}")
    for key in REQUIRED_KEYS:
        if not isinstance(data[key], list):
            raise ValueError(f"COCO annotation file {path!r}: {key!r} must be a list, "
                             f"got {type(data[key]).__name__}")
    return data


def coco_from_dict(data):
    """A pycocotools ``COCO`` index built from an already parsed dict (silently)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex() prints progress
        coco.createIndex()
    return coco


# --------------------------------------------------------------------------- masks
def _valid_polygons(segmentation):
    """Polygons of a COCO polygon segmentation that have >= 3 finite points."""
    valid = []
    for poly in segmentation:
        if not isinstance(poly, (list, tuple)) or len(poly) < 6 or len(poly) % 2:
            continue
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in poly):
            continue
        valid.append([float(v) for v in poly])
    return valid


def ann_to_rle(ann, height, width):
    """Run-length encoding of one COCO annotation's segmentation.

    ann: COCO annotation dict whose "segmentation" is a list of polygons
        ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates, parts merged), an
        uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}`` or a compressed
        RLE ``{"size": [H, W], "counts": str | bytes}``.
    height, width: image size in pixels.

    Returns: compressed RLE dict (pycocotools format) of an [height, width] mask.
    Polygon parts with fewer than 3 points are ignored (pycocotools would read a
    4-number part as a box); parts outside the image are clipped. Raises ValueError
    naming the annotation id when nothing usable is left or an RLE's size differs.
    """
    segm = ann.get("segmentation")
    ann_id = ann.get("id")
    if isinstance(segm, (list, tuple)):
        polygons = _valid_polygons(segm)
        if not polygons:
            raise ValueError(f"annotation {ann_id}: no polygon with at least 3 finite points")
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        size = [int(s) for s in segm["size"]]
        if size != [int(height), int(width)]:
            raise ValueError(f"annotation {ann_id}: RLE size {size} differs from the image "
                             f"size {[int(height), int(width)]}")
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, height, width)
        return segm
    raise ValueError(f"annotation {ann_id}: unsupported segmentation {type(segm).__name__} "
                     "(expected polygons or an RLE dict with 'size' and 'counts')")


def ann_to_mask(ann, height, width):
    """Binary mask of one COCO annotation: [height, width] bool (see ann_to_rle)."""
    return mask_utils.decode(ann_to_rle(ann, height, width)).astype(bool)


def _polygon_area(poly):
    """Shoelace area of a flat [x1, y1, x2, y2, ...] polygon."""
    xs = np.asarray(poly[0::2])
    ys = np.asarray(poly[1::2])
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _annotation_problem(ann, height, width):
    """Why an annotation cannot give a mask (a short text), or None when it can.

    Cheap checks only (no rasterising): segmentation type, polygons with < 3
    points, polygons entirely outside the image or of zero area, RLE size.
    """
    segm = ann.get("segmentation")
    if isinstance(segm, (list, tuple)):
        polygons = _valid_polygons(segm)
        if not polygons:
            return f"no polygon with at least 3 points ({len(segm)} part(s) given)"
        xs = np.concatenate([p[0::2] for p in polygons])
        ys = np.concatenate([p[1::2] for p in polygons])
        if xs.max() <= 0 or ys.max() <= 0 or xs.min() >= width or ys.min() >= height:
            return (f"polygon entirely outside the {height}x{width} image "
                    f"(x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}])")
        if all(_polygon_area(p) == 0 for p in polygons):
            return "degenerate polygon (zero area)"
        return None
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        size = list(segm["size"]) if isinstance(segm["size"], (list, tuple)) else segm["size"]
        if size != [height, width]:
            return f"RLE size {size} differs from the image size {[height, width]}"
        return None
    return f"unsupported segmentation {type(segm).__name__}"


# --------------------------------------------------------------------------- dataset
class CocoDataset(Dataset):
    """Dataset of COCO instance annotations (polygons and RLE, crowd included).

    Usage::

        dataset = CocoDataset()
        coco = dataset.load_coco("annotations/instances_val2017.json", "val2017",
                                 return_coco=True)
        dataset.prepare()
        masks, class_ids = dataset.load_mask(dataset.image_ids[0])

    Classes keep the real COCO category ids as source ids (so ``"coco.90"`` is
    the toothbrush) and the names from the JSON. ``load_mask`` returns crowd
    annotations (iscrowd=1) with negative class ids, as the training targets expect.
    """

    def __init__(self, class_map=None):
        super().__init__(class_map=class_map)
        self._coco_sources = set()
        self._keypoint_names = {}
        self._warned_empty = set()

    def load_coco(self, annotation_file, image_dir, class_ids=None, class_map=None,
                  return_coco=False, limit=None, source="coco"):
        """Add the classes and images of a COCO instances JSON file.

        annotation_file: path of the instances JSON.
        image_dir: folder holding the images named by each image's "file_name".
        class_ids: None for every category of the file, or a list of COCO category
            ids. With a subset, only images with at least one annotation (crowd
            included) of those classes are kept, and only those annotations; without
            one, every image is kept, including images with no annotation (they give
            empty masks: negatives for training).
        class_map: accepted for matterport compatibility; unused.
        return_coco: also return the pycocotools ``COCO`` index of the file (the
            ground truth for :func:`evaluate_coco`).
        limit: None, or keep only the first ``limit`` usable images by image id.
        source: source name of the classes and images (default "coco"). Several
            files can be loaded into one dataset (e.g. train + valminusminival).

        Images whose file is missing are skipped with a warning naming the path.
        Annotations with an unknown category id, fewer than 3 polygon points, a
        polygon entirely outside the image or of zero area, or an RLE of the wrong
        size are skipped with a warning naming the annotation id. Polygons partly
        outside the image are clipped when rasterised.

        Returns: the ``COCO`` object when ``return_coco`` is true, else None.
        Raises FileNotFoundError (missing file) or ValueError (bad file, bad argument).
        """
        if not isinstance(source, str) or not source or "." in source:
            raise ValueError(f"source must be a non-empty str without '.', got {source!r}")
        if limit is not None and (not isinstance(limit, numbers.Integral)
                                  or isinstance(limit, bool) or limit < 1):
            raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
        if os.path.isdir(os.fspath(annotation_file)):
            raise ValueError(
                f"annotation_file {annotation_file!r} is a folder; pass the instances JSON "
                "file, or use load_coco_standard(dataset_dir, subset, year) for the "
                "annotations/instances_<subset><year>.json layout")
        path = os.fspath(annotation_file)
        data = read_coco_json(path)
        categories = self._read_categories(data, path)
        if class_ids is None:
            selected = sorted(categories)
        else:
            selected = sorted({_as_int(c, "class_ids") for c in class_ids})
            unknown = [c for c in selected if c not in categories]
            if unknown:
                raise ValueError(f"class_ids {unknown} are not categories of {path!r} "
                                 f"(known ids: {sorted(categories)})")
            if not selected:
                raise ValueError("class_ids is empty; pass None for every category")
        subset = None if class_ids is None else set(selected)
        for cat_id in selected:
            self.add_class(source, cat_id, categories[cat_id])

        images = self._read_images(data, path)
        image_set = {img["id"] for img in images}
        by_image = {}
        orphans = 0
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
                raise ValueError(f"COCO annotation file {path!r}: annotation {ann!r:.200} "
                                 "lacks 'image_id' or 'category_id'")
            if ann["image_id"] in image_set:
                by_image.setdefault(ann["image_id"], []).append(ann)
            else:
                orphans += 1
        if orphans:
            logger.warning("%s: %d annotation(s) refer to image ids absent from 'images'; "
                           "ignored", path, orphans)

        seen = {(info["source"], info["id"]) for info in self.image_info}
        added = skipped_anns = missing_files = 0
        num_anns = 0
        for img in images:
            if limit is not None and added >= limit:
                break
            height, width = img["height"], img["width"]
            kept = []
            for ann in by_image.get(img["id"], []):
                cat_id = ann["category_id"]
                if cat_id not in categories:
                    logger.warning("%s: annotation %s has unknown category id %s; skipped",
                                   path, ann.get("id"), cat_id)
                    skipped_anns += 1
                    continue
                if subset is not None and cat_id not in subset:
                    continue
                problem = _annotation_problem(ann, height, width)
                if problem is not None:
                    logger.warning("%s: annotation %s (image %s): %s; skipped",
                                   path, ann.get("id"), img["id"], problem)
                    skipped_anns += 1
                    continue
                segm = ann.get("segmentation")
                if isinstance(segm, (list, tuple)) and len(_valid_polygons(segm)) < len(segm):
                    logger.warning("%s: annotation %s (image %s): dropped %d polygon part(s) "
                                   "with fewer than 3 points", path, ann.get("id"), img["id"],
                                   len(segm) - len(_valid_polygons(segm)))
                kept.append(ann)
            if subset is not None and not kept:
                continue
            if (source, img["id"]) in seen:
                logger.warning("image %s of source %r was already loaded; %s skips it",
                               img["id"], source, path)
                continue
            image_path = os.path.join(os.fspath(image_dir), img["file_name"])
            if not os.path.isfile(image_path):
                logger.warning("image file not found: %s (image id %s); skipped",
                               image_path, img["id"])
                missing_files += 1
                continue
            extra = {key: img[key] for key in ("coco_url", "flickr_url", "license")
                     if key in img}
            self.add_image(source, image_id=img["id"], path=image_path, width=width,
                           height=height, file_name=img["file_name"], annotations=kept,
                           **extra)
            seen.add((source, img["id"]))
            added += 1
            num_anns += len(kept)
        self._coco_sources.add(source)
        for cat in data["categories"]:
            if cat.get("keypoints") and (subset is None or cat["id"] in subset):
                self._keypoint_names.setdefault(source, tuple(cat["keypoints"]))
                break
        logger.info("%s: %d images, %d annotations, %d classes (%d annotations and %d "
                    "missing image files skipped)", path, added, num_anns, len(selected),
                    skipped_anns, missing_files)
        if return_coco:
            return coco_from_dict(data)
        return None

    def load_coco_standard(self, dataset_dir, subset, year="2017", class_ids=None,
                           class_map=None, return_coco=False, limit=None, source="coco",
                           annotations="instances"):
        """Load the standard COCO layout (as downloaded from cocodataset.org).

        Reads ``<dataset_dir>/annotations/<annotations>_<subset><year>.json`` (annotations
        "instances", or "person_keypoints" for the person keypoints) with images
        from ``<dataset_dir>/<subset><year>/``; the 2014 splits "minival",
        "valminusminival" and "val35k" take their images from ``val<year>/``.
        Other arguments as in :meth:`load_coco`.
        """
        if not isinstance(subset, str) or not subset:
            raise ValueError(f"subset must be a non-empty str such as 'train' or 'val', "
                             f"got {subset!r}")
        year = str(year)
        if annotations not in ("instances", "person_keypoints"):
            raise ValueError(f"annotations must be 'instances' or 'person_keypoints', got "
                             f"{annotations!r}")
        annotation_file = os.path.join(os.fspath(dataset_dir), "annotations",
                                       f"{annotations}_{subset}{year}.json")
        image_subset = "val" if subset in VAL_IMAGE_SUBSETS else subset
        image_dir = os.path.join(os.fspath(dataset_dir), f"{image_subset}{year}")
        return self.load_coco(annotation_file, image_dir, class_ids=class_ids,
                              class_map=class_map, return_coco=return_coco, limit=limit,
                              source=source)

    @staticmethod
    def _read_categories(data, path):
        """{category id: name} of the file; ValueError naming a malformed entry."""
        categories = {}
        for cat in data["categories"]:
            if (not isinstance(cat, dict) or not isinstance(cat.get("id"), numbers.Integral)
                    or isinstance(cat.get("id"), bool) or cat["id"] < 1
                    or not isinstance(cat.get("name"), str)):
                raise ValueError(f"COCO annotation file {path!r}: category {cat!r:.200} needs "
                                 "an integer 'id' >= 1 and a str 'name'")
            categories[int(cat["id"])] = cat["name"]
        return categories

    @staticmethod
    def _read_images(data, path):
        """Image entries sorted by id; ValueError naming a malformed entry."""
        for img in data["images"]:
            ok = isinstance(img, dict) and "id" in img and isinstance(img.get("file_name"), str)
            for key in ("width", "height"):
                value = img.get(key) if isinstance(img, dict) else None
                ok = ok and isinstance(value, numbers.Integral) and value > 0
            if not ok:
                raise ValueError(f"COCO annotation file {path!r}: image {img!r:.200} needs "
                                 "'id', 'file_name' and positive integer 'width' and 'height'")
        return sorted(data["images"], key=lambda img: img["id"])

    def load_mask(self, image_id):
        """Instance masks of one image.

        image_id: internal image id.

        Returns: masks [H, W, N] bool and class_ids [N] int32 (internal class ids;
        crowd annotations negative). An image without annotations gives [H, W, 0]
        masks and [0] ids; masks that rasterise to no pixel are dropped (with one
        warning per annotation). Images of other sources use the base class.
        """
        info = self.image_info[image_id]
        if info["source"] not in self._coco_sources or "annotations" not in info:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            class_id = self.map_source_class_id(f"{info['source']}.{ann['category_id']}")
            mask = ann_to_mask(ann, height, width)
            if not mask.any():
                key = (info["source"], ann.get("id"), info["id"])
                if key not in self._warned_empty:
                    self._warned_empty.add(key)
                    logger.warning("annotation %s (image %s) covers no pixel of the %dx%d "
                                   "image; skipped", ann.get("id"), info["id"], height, width)
                continue
            masks.append(mask)
            class_ids.append(-class_id if ann.get("iscrowd") else class_id)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
        return np.stack(masks, axis=-1), np.asarray(class_ids, dtype=np.int32)

    def keypoint_names(self, source="coco"):
        """The keypoint names of a loaded source (those of its first category that lists
        "keypoints", e.g. COCO's 17 person keypoints), () when it has none."""
        return tuple(self._keypoint_names.get(source, ()))

    def load_keypoints(self, image_id):
        """Keypoints of the instances ``load_mask`` returns, in the same order.

        Returns: [N, K, (x, y, visibility)] float32 from each annotation's "keypoints"
        (COCO's pixel-index units, v 0 / 1 / 2), K = len(keypoint_names(source));
        annotations without keypoints (crowds, other categories) give v = 0 rows. None
        for sources without keypoint categories.
        """
        info = self.image_info[image_id]
        names = self._keypoint_names.get(info["source"])
        if info["source"] not in self._coco_sources or not names:
            return None
        height, width = info["height"], info["width"]
        rows = []
        for ann in info["annotations"]:
            if not ann_to_mask(ann, height, width).any():
                continue  # load_mask drops it too
            row = np.zeros((len(names), 3), dtype=np.float32)
            values = ann.get("keypoints")
            if values and not ann.get("iscrowd"):
                values = np.asarray(values, dtype=np.float32).reshape(-1, 3)
                if values.shape[0] != len(names):
                    raise ValueError(f"annotation {ann.get('id')} (image {info['id']}) has "
                                     f"{values.shape[0]} keypoints; its source has {len(names)}")
                row[:] = values
            rows.append(row)
        return np.stack(rows) if rows else np.zeros((0, len(names), 3), dtype=np.float32)

    def image_reference(self, image_id):
        """The image's COCO URL when the JSON gives one, else its file path."""
        info = self.image_info[image_id]
        if info["source"] in self._coco_sources:
            return info.get("coco_url") or info["path"]
        return super().image_reference(image_id)


def _as_int(value, name):
    """``value`` as a Python int, or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must hold integers, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- results
def build_coco_results(dataset, image_ids, rois, class_ids, scores, masks, keypoints=None):
    """COCO result dicts for the detections of ONE image.

    dataset: the prepared Dataset the image belongs to.
    image_ids: [internal image id] (a one-element list, as in matterport) or an int.
    rois: [N, (y1, x1, y2, x2)] pixels in the original image, y2/x2 exclusive.
    class_ids: [N] internal class ids (>= 1).
    scores: [N] float confidences.
    masks: [H, W, N] bool full-image masks, or None for box-only results.
    keypoints: None, or [N, K, (x, y, score)] pixel-index units of the original image
        (``detect()``'s keypoints), written as COCO's flat "keypoints" list.

    Returns: list of N dicts with "image_id" (the image's source id,
    ``image_info[i]["id"]``), "category_id" (source class id), "bbox" [x, y, w, h]
    floats, "score" float and, with masks, "segmentation" (compressed RLE, counts a
    str, JSON-ready). rois None gives [].
    """
    if rois is None:
        return []
    if isinstance(image_ids, (numbers.Integral, np.integer)):
        image_ids = [image_ids]
    image_ids = list(image_ids)
    if len(image_ids) != 1:
        raise ValueError(f"build_coco_results takes the detections of one image: image_ids "
                         f"must hold one id, got {image_ids!r}")
    image_id = _as_int(image_ids[0], "image_ids")
    if not 0 <= image_id < len(dataset.image_info):
        raise ValueError(f"image id {image_id} is not an internal id of the dataset "
                         f"(0..{len(dataset.image_info) - 1})")
    info = dataset.image_info[image_id]
    rois = np.asarray(rois)
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise ValueError(f"rois must be [N, (y1, x1, y2, x2)], got shape {rois.shape}")
    n = rois.shape[0]
    class_ids = np.asarray(class_ids).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if class_ids.shape[0] != n or scores.shape[0] != n:
        raise ValueError(f"class_ids {class_ids.shape} and scores {scores.shape} must have "
                         f"{n} entries like rois {rois.shape}")
    if keypoints is not None:
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be [{n}, K, 3] like rois {rois.shape}, got shape "
                             f"{keypoints.shape}")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[-1] != n:
            raise ValueError(f"masks must be [H, W, {n}] like rois {rois.shape}, got shape "
                             f"{masks.shape}")
    results = []
    for i in range(n):
        y1, x1, y2, x2 = (float(v) for v in rois[i])
        result = {
            "image_id": info["id"],
            "category_id": dataset.get_source_class_id(int(class_ids[i]), info["source"]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
        }
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[:, :, i].astype(np.uint8)))
            result["segmentation"] = {"size": [int(s) for s in rle["size"]],
                                      "counts": rle["counts"].decode("ascii")}
        if keypoints is not None:
            result["keypoints"] = [float(v) for v in np.asarray(keypoints[i]).reshape(-1)]
        results.append(result)
    return results


def detections_to_coco_results(dataset, image_id, result_dict):
    """COCO result dicts of one ``detect()`` output dict.

    image_id: internal image id. result_dict: {"rois" [N, 4], "class_ids" [N],
    "scores" [N], "masks" [H, W, N] (optional)} as returned by ``MaskRCNN.detect``.
    """
    missing = [key for key in ("rois", "class_ids", "scores") if key not in result_dict]
    if missing:
        raise ValueError(f"result_dict lacks {missing}; got keys {sorted(result_dict)}")
    return build_coco_results(dataset, [image_id], result_dict["rois"],
                              result_dict["class_ids"], result_dict["scores"],
                              result_dict.get("masks"), keypoints=result_dict.get("keypoints"))


def json_default(value):
    """JSON encoder fallback for NumPy scalars, arrays and bytes."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} {value!r:.80} to JSON")


def write_results_json(results, path):
    """Write COCO results to ``path`` atomically (temporary file, then rename).

    results: list of result dicts (NumPy scalars and bytes RLE counts are converted).
    Returns: the path. The folder must exist (FileNotFoundError naming it otherwise).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder of the results file does not exist: {folder!r}")
    fd, tmp = tempfile.mkstemp(prefix=".coco_results_", suffix=".json.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(list(results), f, default=json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# --------------------------------------------------------------------------- evaluation
def evaluate_coco(coco_gt, results, image_ids=None, eval_types=EVAL_TYPES, kpt_oks_sigmas=None,
                  max_dets=None):
    """COCO metrics of detections with pycocotools' COCOeval.

    coco_gt: pycocotools ``COCO`` ground truth (``load_coco(..., return_coco=True)``)
        or the path of an instances JSON.
    results: list of result dicts (:func:`build_coco_results`) or the path of a
        results JSON file.
    image_ids: COCO (source) image ids to evaluate; None for every ground-truth
        image (images without detections then count as misses).
    eval_types: "bbox", "segm", "keypoints" or several (keypoints: OKS AP over the
        ground truth's "keypoints"; the results need "keypoints").
    kpt_oks_sigmas: None (pycocotools' 17 COCO person sigmas) or [K] floats, the
        per-keypoint OKS sigmas of another skeleton.
    max_dets: None (COCO's 1, 10, 100 detections per image) or an int N >= 100: for
        "bbox" and "segm" the largest limit becomes N, so AP, AP50, ..., and "AR100" count
        the N best detections of each image (crowded images: hundreds of nuclei).

    Returns: {eval_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
    "AR100", "ARs", "ARm", "ARl": float}}, for "keypoints" KEYPOINT_METRIC_NAMES. A value of -1 is pycocotools' "no
    ground truth in that area range". pycocotools prints its summary tables. With no
    detections every metric is 0.0 (a warning says so).
    """
    if isinstance(eval_types, str):
        eval_types = (eval_types,)
    eval_types = tuple(eval_types)
    if max_dets is not None and (isinstance(max_dets, bool) or not isinstance(
            max_dets, (numbers.Integral, np.integer)) or max_dets < 100):
        raise ValueError(f"max_dets must be None or an integer >= 100, got {max_dets!r}")
    bad = [t for t in eval_types if t not in ALL_EVAL_TYPES]
    if bad or not eval_types:
        raise ValueError(f"eval_types must be among {ALL_EVAL_TYPES}, got {eval_types!r}")
    if isinstance(coco_gt, (str, os.PathLike)):
        coco_gt = coco_from_dict(read_coco_json(coco_gt))
    if not isinstance(coco_gt, COCO):
        raise TypeError(f"coco_gt must be a pycocotools COCO or a JSON path, got "
                        f"{type(coco_gt).__name__}")
    if isinstance(results, (str, os.PathLike)):
        results_path = os.fspath(results)
        if not os.path.isfile(results_path):
            raise FileNotFoundError(f"results file not found: {results_path!r}")
        with open(results_path) as f:
            results = json.load(f)
    if not isinstance(results, (list, tuple)):
        raise TypeError(f"results must be a list of dicts or a JSON path, got "
                        f"{type(results).__name__}")
    bad_items = [k for k, r in enumerate(results) if not isinstance(r, dict)]
    if bad_items:
        raise TypeError(f"results must be dicts; items {bad_items[:20]} are not")
    gt_ids = set(coco_gt.getImgIds())
    if image_ids is None:
        image_ids = sorted(gt_ids)
    else:
        image_ids = sorted({_as_int(i, "image_ids") for i in image_ids})
        unknown = [i for i in image_ids if i not in gt_ids]
        if unknown:
            raise ValueError(f"image_ids {unknown[:20]} are not images of the ground truth")
    foreign = sorted({r.get("image_id") for r in results} - gt_ids, key=str)
    if foreign:
        raise ValueError(f"results refer to image ids {foreign[:20]} that are not in the "
                         "ground truth")
    if "segm" in eval_types:
        for k, r in enumerate(results):
            if "segmentation" not in r:
                raise ValueError(f"'segm' evaluation needs a 'segmentation' in every result; "
                                 f"result {k} (image {r.get('image_id')}) has none")
    if "keypoints" in eval_types:
        for k, r in enumerate(results):
            if "keypoints" not in r:
                raise ValueError(f"'keypoints' evaluation needs 'keypoints' in every result; "
                                 f"result {k} (image {r.get('image_id')}) has none")
        counts = {len(cat["keypoints"]) for cat in coco_gt.loadCats(coco_gt.getCatIds())
                  if cat.get("keypoints")}
        expected = len(kpt_oks_sigmas) if kpt_oks_sigmas is not None else 17
        if counts != {expected}:
            raise ValueError(f"'keypoints' evaluation: the ground truth's categories have "
                             f"{sorted(counts)} keypoints, but there are {expected} OKS sigmas "
                             f"({'kpt_oks_sigmas' if kpt_oks_sigmas is not None else 'COCO person default'}); "
                             "pass kpt_oks_sigmas with one sigma per keypoint")
    names = {t: KEYPOINT_METRIC_NAMES if t == "keypoints" else COCO_METRIC_NAMES
             for t in eval_types}
    if not results:
        logger.warning("evaluate_coco: no detections for %d image(s); every metric is 0",
                       len(image_ids))
        return {t: {name: 0.0 for name in names[t]} for t in eval_types}
    # loadRes adds keys to the dicts it gets: hand it shallow copies.
    coco_dt = coco_gt.loadRes([dict(r) for r in results])
    metrics = {}
    for eval_type in eval_types:
        evaluator = COCOeval(coco_gt, coco_dt, eval_type)
        evaluator.params.imgIds = image_ids
        if eval_type == "keypoints" and kpt_oks_sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas, dtype=np.float64)
        custom = max_dets is not None and eval_type != "keypoints"
        if custom:
            evaluator.params.maxDets = [1, 10, int(max_dets)]
        evaluator.evaluate()
        evaluator.accumulate()
        if custom:
            stats = _summarize_max_dets(evaluator)
        else:
            evaluator.summarize()
            stats = evaluator.stats
        metrics[eval_type] = {name: float(value) for name, value in zip(names[eval_type], stats)}
    return metrics


# (AP or AR, IoU threshold or None for 0.5:0.95, area range, index into params.maxDets)
_SUMMARY_ROWS = ((1, None, "all", 2), (1, 0.5, "all", 2), (1, 0.75, "all", 2),
                 (1, None, "small", 2), (1, None, "medium", 2), (1, None, "large", 2),
                 (0, None, "all", 0), (0, None, "all", 1), (0, None, "all", 2),
                 (0, None, "small", 2), (0, None, "medium", 2), (0, None, "large", 2))


def _summarize_max_dets(evaluator):
    """pycocotools' 12 summary numbers (printed in its format) for any params.maxDets.

    COCOeval.summarize() computes its first AP at a hard-coded maxDets=100, which gives -1
    when the limits were changed; here every AP and the last ARs use params.maxDets[2].
    Returns: [12] float64, in COCO_METRIC_NAMES order.
    """
    params = evaluator.params
    stats = np.zeros(len(_SUMMARY_ROWS))
    for row, (is_ap, iou, area, md_index) in enumerate(_SUMMARY_ROWS):
        area_index = params.areaRngLbl.index(area)
        values = evaluator.eval["precision" if is_ap else "recall"]
        if iou is not None:
            values = values[np.flatnonzero(np.isclose(params.iouThrs, iou))]
        values = values[..., area_index, md_index]     # [T, (R,) K]
        valid = values[values > -1]
        stats[row] = float(np.mean(valid)) if valid.size else -1.0
        iou_text = "0.50:0.95" if iou is None else f"{iou:0.2f}"
        title = "Average Precision" if is_ap else "Average Recall"
        print(f" {title:<18} {'(AP)' if is_ap else '(AR)'} @[ IoU={iou_text:<9} | "
              f"area={area:>6s} | maxDets={params.maxDets[md_index]:>3d} ] = {stats[row]:0.3f}")
    return stats
