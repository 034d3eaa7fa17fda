"""The evaluation report: per-class AP, TP / FP / FN, a confusion matrix, PR curves, errors.

:func:`report` runs ``model.detect`` over a dataset, one batch at a time, and returns a
:class:`Report`; with ``out_dir`` it also writes the report's files
(:mod:`mrcnn.report_files`). The numbers come from ground truth and detections alone, so
they can be computed without a model too::

    builder = ReportBuilder(["BG", "square", "circle"], score_threshold=0.5)
    builder.add_image(gt_masks, gt_class_ids, {"rois": ..., "class_ids": ..,
                                               "scores": ..., "masks": ...})
    result = builder.finish()

Where each number comes from:

* the COCO tables (AP, AP50, ..., for "bbox" and "segm") and the per-class AP, AP50 and
  AP75 are pycocotools' own: one ``COCOeval`` over every class, whose ``precision``
  array is sliced by class (the same values as ``COCOeval`` with ``params.catIds = [c]``,
  since pycocotools evaluates each category on its own);
* TP / FP / FN of a class at the score threshold and IoU 0.5 are pycocotools' matches
  at IoU 0.5 (``evalImgs[...]["dtMatches"]``) among the detections scoring at least the
  threshold: a detection matched to a crowd region counts neither way, as in COCO;
* the confusion matrix adds what COCO's per-class matching cannot say: a detection left
  unmatched in its own class that overlaps (IoU >= 0.5) a ground-truth instance of
  another class, also unmatched, is a class swap (greedy, by decreasing score, then
  IoU). What stays unmatched is a false detection (row "background") or a miss (column
  "background"). So the diagonal is TP, a column minus its diagonal is FP and a row
  minus its diagonal is FN;
* the precision-recall curve of a class is pycocotools' (interpolated, 101 recall
  points, IoU 0.5); the raw curve (one point per detection, by decreasing score) is kept
  as well, and the precision and recall at the threshold are its point at the last
  detection scoring at least the threshold.

Matching is by mask IoU (``iou_type="segm"``, the default) or box IoU ("bbox"). COCO
keeps the 100 best detections of an image and class; so does this report.

This module uses NumPy and pycocotools only (no TensorFlow), so it serves any backend
whose ``detect()`` returns NumPy arrays.
"""
import contextlib
import dataclasses
import io
import logging
import numbers
import time

import numpy as np
from pycocotools import mask as mask_utils

logger = logging.getLogger(__name__)

IOU_TYPES = ("segm", "bbox")
IOU_THRESHOLD = 0.5
BACKGROUND = "background"
COCO_SUMMARY_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                      "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def check_score_threshold(value):
    """``value`` as a float in [0, 1], or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"score_threshold must be a number in [0, 1], got {value!r}")
    return float(value)


def match_class_names(model_names, dataset_names):
    """Model class id of each dataset class id, matched by name.

    model_names: ["BG", name 1, ...] the model's classes (index = class id).
    dataset_names: ["BG", name 1, ...] the dataset's classes.

    Returns: [len(dataset_names)] int64 array, entry d = the model id of dataset class d
    (entry 0 is 0). Raises ValueError listing both sides when the sets of names (the
    background left out) differ, or when a name appears twice.
    """
    model_set, data_set = list(model_names[1:]), list(dataset_names[1:])
    for side, names in (("model", model_set), ("dataset", data_set)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"the {side}'s class names repeat {dupes}: {names}")
    only_data = [n for n in data_set if n not in model_set]
    only_model = [n for n in model_set if n not in data_set]
    if only_data or only_model:
        raise ValueError(
            "class names of the model and the dataset differ: "
            f"the dataset has {only_data or 'no other'} that the model does not know, "
            f"the model has {only_model or 'no other'} that the dataset lacks "
            f"(model: {model_set}; dataset: {data_set})")
    table = np.zeros(len(dataset_names), dtype=np.int64)
    for d, name in enumerate(dataset_names[1:], start=1):
        table[d] = model_set.index(name) + 1
    return table


def _rles(masks):
    """Compressed RLEs (counts bytes) of [H, W, N] bool masks."""
    if masks.shape[-1] == 0:
        return []
    return mask_utils.encode(np.asfortranarray(masks.astype(np.uint8)))


def _json_rle(rle):
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


@dataclasses.dataclass
class Report:
    """The numbers of an evaluation report (see the module docstring for their sources).

    class_names: ["BG", ...] the model's classes; class id = index.
    score_threshold, iou_threshold (0.5), iou_type ("segm" or "bbox") of the counts.
    summary: {"bbox": {...}, "segm": {...}}, pycocotools' 12 numbers (COCO_SUMMARY_NAMES).
    per_class: one dict per class id 1..K-1: "class_id", "name", "gt" (non-crowd
        instances), "AP", "AP50", "AP75" (segm) and "AP_bbox", "AP50_bbox", "AP75_bbox"
        (None where the class has no ground truth: pycocotools' -1), "TP", "FP", "FN",
        "precision", "recall", "F1" (0.0 when undefined).
    confusion: [K, K] int64, rows ground truth, columns predictions, classes 1..K-1 then
        "background" (row: false detections, column: misses); see ``confusion_labels``.
    curves: {class_id: {"recall" [101], "precision" [101] (pycocotools, interpolated),
        "raw_recall" [D], "raw_precision" [D], "raw_scores" [D], "AP50"}}.
    images: one dict per evaluated image: "image_id" (COCO id), "file_name",
        "reference" (the dataset's internal id, or what the caller gave), "gt",
        "detections" (>= threshold), "TP", "FP", "FN", "misses" (indices into the image's
        ground-truth annotations), "false_detections" (indices into its detections),
        "swaps" [(detection index, ground-truth index)], "on_crowd" (detections matched
        to a crowd region, not counted), "annotation_range" and
        "detection_range" (first, end) of the image's entries in ``ground_truth
        ["annotations"]`` and ``detections``.
    skipped: [{"reference", "reason"}] images that could not be read.
    ground_truth: the COCO instances dict; detections: the COCO results list (every
        detection, whatever its score).
    timings: seconds: "read_s" (load_image, load_mask), "detect_s" (detect()), "report_s"
        (everything else: encoding, pycocotools, figures, files), "write_s" (the files).
    """

    class_names: list
    score_threshold: float
    iou_threshold: float
    iou_type: str
    summary: dict
    per_class: list
    confusion: np.ndarray
    curves: dict
    images: list
    skipped: list
    ground_truth: dict
    detections: list
    timings: dict = dataclasses.field(default_factory=dict)

    @property
    def confusion_labels(self):
        """Row / column names of ``confusion``: the class names, then "background"."""
        return list(self.class_names[1:]) + [BACKGROUND]

    def worst_images(self, count):
        """The ``count`` images with the most FP + FN (ties: dataset order), errors only."""
        ranked = sorted((im for im in self.images if im["FP"] + im["FN"] > 0),
                        key=lambda im: -(im["FP"] + im["FN"]))
        return ranked[:max(int(count), 0)]

    def to_dict(self):
        """The numbers as a JSON-ready dict (the content of metrics.json)."""
        return {
            "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
            "iou_type": self.iou_type, "images": len(self.images),
            "skipped": list(self.skipped), "summary": self.summary,
            "per_class": self.per_class,
            "confusion": {"labels": self.confusion_labels,
                          "rows": "ground truth", "columns": "prediction",
                          "matrix": self.confusion.tolist()},
            "per_image": [{k: im[k] for k in ("image_id", "file_name", "gt", "detections",
                                              "TP", "FP", "FN")} for im in self.images],
            "timings": self.timings,
        }

    def table(self):
        """A plain-text summary: the COCO APs, then one row per class."""
        def fmt(value):
            return "  -  " if value is None else f"{value:5.3f}"
        lines = [f"{len(self.images)} images ({len(self.skipped)} skipped); counts at score >= "
                 f"{self.score_threshold:g}, {self.iou_type} IoU >= {self.iou_threshold:g}",
                 f"bbox AP {fmt(self.summary['bbox']['AP'])}  AP50 "
                 f"{fmt(self.summary['bbox']['AP50'])}   segm AP "
                 f"{fmt(self.summary['segm']['AP'])}  AP50 {fmt(self.summary['segm']['AP50'])}"]
        width = max([5] + [len(str(c["name"])) for c in self.per_class])
        lines.append(f"{'class':<{width}}  {'gt':>5} {'AP':>5} {'AP50':>5} {'AP75':>5} "
                     f"{'TP':>5} {'FP':>5} {'FN':>5} {'prec':>5} {'rec':>5} {'F1':>5}")
        for c in self.per_class:
            lines.append(f"{str(c['name']):<{width}}  {c['gt']:>5} {fmt(c['AP'])} "
                         f"{fmt(c['AP50'])} {fmt(c['AP75'])} {c['TP']:>5} {c['FP']:>5} "
                         f"{c['FN']:>5} {fmt(c['precision'])} {fmt(c['recall'])} "
                         f"{fmt(c['F1'])}")
        return "\n".join(lines)


class ReportBuilder:
    """Collects ground truth and detections image by image; :meth:`finish` scores them.

    Each image's masks are run-length encoded when it is added, so memory grows with the
    RLEs (a few hundred bytes an instance), not with the pixels.

    class_names: ["BG", name 1, ...] the classes of the detections (class id = index).
    score_threshold: float in [0, 1], the score of the TP / FP / FN counts.
    iou_type: "segm" (mask IoU) or "bbox" (box IoU) for the counts and the curves.
    """

    def __init__(self, class_names, score_threshold=0.5, iou_type="segm"):
        class_names = list(class_names)
        if len(class_names) < 2:
            raise ValueError(f"class_names must hold the background and at least one class, "
                             f"got {class_names!r}")
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        self.class_names = class_names
        self.score_threshold = check_score_threshold(score_threshold)
        self.iou_type = iou_type
        self.images, self.annotations, self.detections, self.records = [], [], [], []

    def add_image(self, gt_masks, gt_class_ids, result, file_name=None, reference=None):
        """Add one image.

        gt_masks: [H, W, G] bool ground-truth masks (original image pixels).
        gt_class_ids: [G] int class ids of the model's classes; negative = crowd region.
            Instances without a pixel are dropped.
        result: one ``detect()`` dict: rois [N, (y1, x1, y2, x2)] pixels (y2/x2
            exclusive), class_ids [N], scores [N], masks [H, W, N] bool.
        file_name: the image's file name for ground_truth.json; reference: any label of
            the image kept in ``Report.images`` (e.g. the dataset's internal id).
        Returns: the image's COCO id (1, 2, ...).
        """
        gt_masks = np.asarray(gt_masks)
        gt_class_ids = np.asarray(gt_class_ids).reshape(-1).astype(np.int64)
        if gt_masks.ndim != 3 or gt_masks.shape[-1] != len(gt_class_ids):
            raise ValueError(f"gt_masks must be [H, W, {len(gt_class_ids)}] like gt_class_ids, "
                             f"got shape {gt_masks.shape}")
        height, width = gt_masks.shape[:2]
        missing = [k for k in ("rois", "class_ids", "scores", "masks") if k not in result]
        if missing:
            raise ValueError(f"result lacks {missing}; got keys {sorted(result)}")
        rois = np.asarray(result["rois"]).reshape(-1, 4)
        class_ids = np.asarray(result["class_ids"]).reshape(-1).astype(np.int64)
        scores = np.asarray(result["scores"], dtype=np.float64).reshape(-1)
        masks = np.asarray(result["masks"])
        if masks.size == 0:
            masks = np.zeros((height, width, len(class_ids)), dtype=bool)
        if masks.shape != (height, width, len(class_ids)) or len(rois) != len(class_ids) \
                or len(scores) != len(class_ids):
            raise ValueError(f"detections of {file_name or reference!r} do not agree: rois "
                             f"{rois.shape}, class_ids {class_ids.shape}, scores "
                             f"{scores.shape}, masks {masks.shape} (image {height}x{width})")
        known = len(self.class_names)
        bad = sorted({int(c) for c in np.concatenate([np.abs(gt_class_ids), class_ids])
                      if not 0 < c < known})
        if bad:
            raise ValueError(f"class ids {bad} of {file_name or reference!r} are not among the "
                             f"{known - 1} classes {self.class_names[1:]}")
        keep = np.any(gt_masks, axis=(0, 1)) if gt_masks.shape[-1] else np.zeros(0, bool)
        gt_masks, gt_class_ids = gt_masks[..., keep].astype(bool), gt_class_ids[keep]

        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name or f"image_{image_id}",
                            "height": int(height), "width": int(width)})
        first_ann, first_det = len(self.annotations), len(self.detections)
        gt_rles = _rles(gt_masks)
        if gt_rles:
            areas, boxes = mask_utils.area(gt_rles), mask_utils.toBbox(gt_rles)
        for k, rle in enumerate(gt_rles):
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id,
                "category_id": int(abs(gt_class_ids[k])), "iscrowd": int(gt_class_ids[k] < 0),
                "area": float(areas[k]), "bbox": [float(v) for v in boxes[k]],
                "segmentation": _json_rle(rle)})
        for k, rle in enumerate(_rles(masks.astype(bool))):
            y1, x1, y2, x2 = (float(v) for v in rois[k])
            self.detections.append({
                "image_id": image_id, "category_id": int(class_ids[k]),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[k]),
                "segmentation": _json_rle(rle)})
        self.records.append({"image_id": image_id, "file_name": self.images[-1]["file_name"],
                             "reference": reference,
                             "annotations": (first_ann, len(self.annotations)),
                             "detections": (first_det, len(self.detections))})
        return image_id

    # ------------------------------------------------------------------ scoring
    def ground_truth(self):
        """The COCO instances dict of the images added so far."""
        categories = [{"id": k, "name": str(n), "supercategory": ""}
                      for k, n in enumerate(self.class_names) if k > 0]
        return {"info": {"description": "ground truth written by mrcnn.report"},
                "images": list(self.images), "annotations": list(self.annotations),
                "categories": categories}

    def _coco_results(self, coco_gt):
        """The detections as a pycocotools COCO (one for both evaluations)."""
        from pycocotools.coco import COCO

        if not self.detections:     # loadRes cannot take an empty list: an empty result set
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(self.images), "annotations": [],
                               "categories": coco_gt.dataset["categories"]}
            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt.createIndex()
            return coco_dt
        with contextlib.redirect_stdout(io.StringIO()):
            # loadRes adds keys to the dicts it gets (and numbers them 1.. in list order)
            return coco_gt.loadRes([dict(d) for d in self.detections])

    def _coco_eval(self, coco_gt, coco_dt, iou_type):
        """An evaluated, accumulated and summarized COCOeval (its printing logged)."""
        from pycocotools.cocoeval import COCOeval

        printed = io.StringIO()     # pycocotools prints its progress and tables
        with contextlib.redirect_stdout(printed):
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.imgIds = [im["id"] for im in self.images]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        logger.debug("pycocotools, %s:\n%s", iou_type, printed.getvalue())
        return evaluator

    def finish(self):
        """Score everything added; returns a :class:`Report`."""
        if not self.images:
            raise ValueError("no image to evaluate: the dataset is empty, or no image could "
                             "be read")
        from mrcnn.coco import coco_from_dict

        started = time.perf_counter()
        ground_truth = self.ground_truth()
        coco_gt = coco_from_dict(ground_truth)
        coco_dt = self._coco_results(coco_gt)
        evaluators = {t: self._coco_eval(coco_gt, coco_dt, t) for t in ("bbox", "segm")}
        summary = {t: {n: float(v) for n, v in zip(COCO_SUMMARY_NAMES, e.stats)}
                   for t, e in evaluators.items()}
        main = evaluators[self.iou_type]
        confusion, image_rows = self._confusion(main)
        curves = self._curves(main)
        per_class = []
        for k, name in enumerate(self.class_names[1:]):
            class_id = k + 1
            tp = int(confusion[k, k])
            fp = int(confusion[:, k].sum() - tp)
            fn = int(confusion[k, :].sum() - tp)
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            row = {"class_id": class_id, "name": str(name), "gt": tp + fn}
            for t, suffix in (("segm", ""), ("bbox", "_bbox")):
                for metric, value in _class_ap(evaluators[t], k).items():
                    row[metric + suffix] = value
            row.update({"TP": tp, "FP": fp, "FN": fn, "precision": precision,
                        "recall": recall, "F1": f1})
            per_class.append(row)
        return Report(class_names=list(self.class_names),
                      score_threshold=self.score_threshold, iou_threshold=IOU_THRESHOLD,
                      iou_type=self.iou_type, summary=summary, per_class=per_class,
                      confusion=confusion, curves=curves, images=image_rows, skipped=[],
                      ground_truth=ground_truth, detections=list(self.detections),
                      timings={"score_s": time.perf_counter() - started})

    def _matches(self, evaluator):
        """{detection ann id: (matched gt ann id or 0, ignored)} at IoU 0.5, area "all"."""
        params = evaluator.params
        t = int(np.flatnonzero(np.isclose(params.iouThrs, IOU_THRESHOLD))[0])
        matches = {}
        for e in evaluator.evalImgs:
            if e is None or e["aRng"] != params.areaRng[0]:
                continue
            for d, dt_id in enumerate(e["dtIds"]):
                matches[dt_id] = (int(e["dtMatches"][t, d]), bool(e["dtIgnore"][t, d]))
        return matches

    def _confusion(self, evaluator):
        """[K, K] confusion matrix and the per-image rows of Report.images."""
        k_bg = len(self.class_names) - 1
        confusion = np.zeros((k_bg + 1, k_bg + 1), dtype=np.int64)
        matches = self._matches(evaluator)
        # loadRes numbers the detections 1.. in list order: ann id = list index + 1.
        rows = []
        for record in self.records:
            a0, a1 = record["annotations"]
            d0, d1 = record["detections"]
            gts = self.annotations[a0:a1]
            crowd = np.array([g["iscrowd"] for g in gts], dtype=bool)
            gt_taken = np.zeros(len(gts), dtype=bool)
            counted, unmatched, on_crowd = 0, [], []
            for d in range(d0, d1):
                det = self.detections[d]
                if det["score"] < self.score_threshold:
                    continue
                if d + 1 not in matches:
                    continue        # beyond COCO's 100 detections of a class in an image
                matched, ignored = matches[d + 1]
                if ignored:
                    on_crowd.append(d - d0)     # on a crowd region: neither TP nor FP
                    continue
                counted += 1
                if matched:
                    g = matched - 1 - a0
                    gt_taken[g] = True
                    cls = det["category_id"] - 1
                    confusion[cls, cls] += 1
                else:
                    unmatched.append(d)
            swaps = []
            free = np.flatnonzero(~gt_taken & ~crowd)
            if unmatched and free.size:
                ious = self._ious([self.detections[d] for d in unmatched],
                                  [gts[g] for g in free])
                order = sorted(range(len(unmatched)),
                               key=lambda i: -self.detections[unmatched[i]]["score"])
                for i in order:
                    det = self.detections[unmatched[i]]
                    best, best_iou = -1, IOU_THRESHOLD
                    for j, g in enumerate(free):
                        if gt_taken[g] or gts[g]["category_id"] == det["category_id"]:
                            continue
                        if ious[i, j] >= best_iou:
                            best, best_iou = j, ious[i, j]
                    if best >= 0:
                        g = free[best]
                        gt_taken[g] = True
                        confusion[gts[g]["category_id"] - 1, det["category_id"] - 1] += 1
                        swaps.append((unmatched[i] - d0, int(g)))
            swapped = {d for d, _ in swaps}
            false_dets = [d - d0 for d in unmatched if d - d0 not in swapped]
            for d in false_dets:
                confusion[k_bg, self.detections[d0 + d]["category_id"] - 1] += 1
            misses = [int(g) for g in np.flatnonzero(~gt_taken & ~crowd)]
            for g in misses:
                confusion[gts[g]["category_id"] - 1, k_bg] += 1
            tp = counted - len(false_dets) - len(swaps)
            rows.append({"image_id": record["image_id"], "file_name": record["file_name"],
                         "reference": record["reference"], "gt": int((~crowd).sum()),
                         "detections": counted, "TP": tp,
                         "FP": len(false_dets) + len(swaps), "FN": len(misses) + len(swaps),
                         "misses": misses, "false_detections": false_dets,
                         "on_crowd": on_crowd,
                         "annotation_range": (a0, a1), "detection_range": (d0, d1),
                         "swaps": [(int(d), int(g)) for d, g in swaps]})
        return confusion, rows

    def _ious(self, dets, gts):
        """[len(dets), len(gts)] IoU (mask or box, as iou_type) of non-crowd annotations."""
        if self.iou_type == "segm":
            def rle(a):
                return dict(a["segmentation"], counts=a["segmentation"]["counts"].encode())
            return np.asarray(mask_utils.iou([rle(d) for d in dets], [rle(g) for g in gts],
                                             [0] * len(gts))).reshape(len(dets), len(gts))
        return np.asarray(mask_utils.iou([d["bbox"] for d in dets], [g["bbox"] for g in gts],
                                         [0] * len(gts))).reshape(len(dets), len(gts))

    def _curves(self, evaluator):
        """Per class: pycocotools' interpolated PR curve at IoU 0.5 and the raw one."""
        params = evaluator.params
        t = int(np.flatnonzero(np.isclose(params.iouThrs, IOU_THRESHOLD))[0])
        max_det = params.maxDets[-1]
        n_img, n_area = len(params.imgIds), len(params.areaRng)
        curves = {}
        for k, class_id in enumerate(params.catIds):
            entries = [evaluator.evalImgs[k * n_area * n_img + i] for i in range(n_img)]
            entries = [e for e in entries if e is not None]
            scores = np.concatenate([e["dtScores"][:max_det] for e in entries]) \
                if entries else np.zeros(0)
            order = np.argsort(-scores, kind="mergesort")   # pycocotools' order
            matched = np.concatenate([e["dtMatches"][t, :max_det] for e in entries])[order] \
                if entries else np.zeros(0)
            ignored = np.concatenate([e["dtIgnore"][t, :max_det] for e in entries])[order] \
                if entries else np.zeros(0, bool)
            n_gt = sum(int(np.count_nonzero(e["gtIgnore"] == 0)) for e in entries)
            tps = np.cumsum((matched > 0) & ~ignored.astype(bool))
            fps = np.cumsum((matched == 0) & ~ignored.astype(bool))
            kept = ~ignored.astype(bool)
            raw_recall = tps / n_gt if n_gt else np.zeros_like(tps, dtype=np.float64)
            raw_precision = tps / np.maximum(tps + fps, 1)
            precision = evaluator.eval["precision"][t, :, k, 0, -1]
            curves[int(class_id)] = {
                "recall": np.asarray(params.recThrs, dtype=np.float64),
                "precision": np.asarray(precision, dtype=np.float64),
                "raw_recall": raw_recall[kept].astype(np.float64),
                "raw_precision": raw_precision[kept].astype(np.float64),
                "raw_scores": scores[order][kept].astype(np.float64),
                "AP50": _class_ap(evaluator, k)["AP50"]}
        return curves


def _class_ap(evaluator, k):
    """{"AP", "AP50", "AP75"} of the k-th category of an accumulated COCOeval (area all,
    the largest maxDets), None where pycocotools has no value (-1: no ground truth)."""
    params = evaluator.params
    precision = evaluator.eval["precision"][:, :, k, 0, -1]     # [T, R]
    values = {}
    for name, iou in (("AP", None), ("AP50", 0.5), ("AP75", 0.75)):
        p = precision if iou is None else precision[np.isclose(params.iouThrs, iou)]
        valid = p[p > -1]
        values[name] = float(np.mean(valid)) if valid.size else None
    return values


def operating_point(curve, score_threshold):
    """(recall, precision) of a raw curve at the last detection scoring >= the threshold;
    (0.0, 0.0) when none does."""
    above = np.flatnonzero(np.asarray(curve["raw_scores"]) >= score_threshold)
    if not above.size:
        return 0.0, 0.0
    i = above[-1]
    return float(curve["raw_recall"][i]), float(curve["raw_precision"][i])


# ---------------------------------------------------------------------------- model + dataset
def model_class_names(model, dataset, class_names=None):
    """The model's class names and the model id of each dataset class.

    class_names: None, or the model's names: ["BG", name 1, ...] (or without "BG").
        None: ``model.class_names`` when the model has it, else the dataset's names,
        provided the model (``config.NUM_CLASSES``) has as many classes.
    Returns: (["BG", ...] model names, [dataset classes] int64 model id of each).
    Raises ValueError listing both sides when they do not match.
    """
    data_names = [str(n) for n in dataset.class_names]
    num_classes = getattr(getattr(model, "config", None), "NUM_CLASSES", None)
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    if class_names is None:
        if num_classes is not None and int(num_classes) != len(data_names):
            raise ValueError(
                f"the model has {num_classes} classes (background included), the dataset "
                f"{len(data_names)}: {data_names[1:]}; give the model's class names "
                f"(class_names=..., or --class-names FILE) to match them by name")
        return data_names, np.arange(len(data_names), dtype=np.int64)
    names = [str(n) for n in class_names]
    if num_classes is not None and len(names) == int(num_classes) - 1:
        names = ["BG"] + names
    if num_classes is not None and len(names) != int(num_classes):
        raise ValueError(f"{len(names)} class names {names} for a model of {num_classes} "
                         f"classes (background included)")
    return names, match_class_names(names, data_names)


def load_ground_truth(dataset, image_id, image_shape, id_map):
    """(masks [H, W, G] bool, class_ids [G] int64 model ids, negative = crowd) of an image.

    id_map: [dataset classes] model id of each dataset class id (see
    :func:`model_class_names`). Masks must match the image size (ValueError otherwise).
    """
    from mrcnn.dataset import validate_instance_masks

    masks, class_ids = dataset.load_mask(image_id)
    masks, class_ids = np.asarray(masks), np.asarray(class_ids).reshape(-1)
    if masks.size == 0 and class_ids.size == 0:
        masks = np.zeros(tuple(image_shape[:2]) + (0,), dtype=bool)
    masks, class_ids = validate_instance_masks(image_shape, masks, class_ids)
    class_ids = class_ids.astype(np.int64)
    bad = sorted({int(c) for c in np.abs(class_ids) if not 0 < c < len(id_map)})
    if bad:
        raise ValueError(f"image {image_id}: class ids {bad} are not classes of the dataset "
                         f"(1..{len(id_map) - 1})")
    mapped = id_map[np.abs(class_ids)] * np.sign(class_ids)
    return masks.astype(bool), mapped


def report(model, dataset, image_ids=None, limit=None, score_threshold=0.5, iou_type="segm",
           class_names=None, out_dir=None, gallery=8, progress=None):
    """Evaluate ``model`` on ``dataset``: per-class AP, counts, confusion, curves, errors.

    model: an inference MaskRCNN, or any object with ``detect(images) -> [dict]`` (rois,
        class_ids, scores, masks in the original image frame) and optionally ``config``
        (``NUM_CLASSES``, ``BATCH_SIZE``) and ``class_names``.
    dataset: a prepared Dataset (any of :mod:`mrcnn.datasets`); negative class ids of
        ``load_mask`` are crowd regions.
    image_ids: internal ids to evaluate (default all); limit: only the first ``limit``.
    score_threshold: float in [0, 1] of the TP / FP / FN counts and the confusion matrix.
    iou_type: "segm" (mask IoU, default) or "bbox" for the counts and curves.
    class_names: the model's class names (see :func:`model_class_names`); classes are
        matched to the dataset's by name, and a mismatch is a ValueError listing both.
    out_dir: None, or a folder to write the report into (:func:`mrcnn.report_files.write`).
    gallery: how many error images the written report shows.
    progress: None, or an object with ``step(count)`` (e.g. ``mrcnn.cli.Progress``),
        called as images are done (skipped ones included).

    Images that cannot be read (``load_image`` raises) are logged, skipped and listed in
    ``Report.skipped``. Images are read and detected one batch (``config.BATCH_SIZE``)
    at a time and only their RLEs are kept.

    Returns: a :class:`Report`; ValueError when no image is left to evaluate.
    """
    score_threshold = check_score_threshold(score_threshold)
    if not hasattr(model, "detect"):
        raise TypeError(f"model must have a detect(images) method, got {type(model).__name__}")
    if not hasattr(dataset, "class_names"):
        raise ValueError("dataset must be prepared (call dataset.prepare()) before the report")
    names, id_map = model_class_names(model, dataset, class_names)
    if image_ids is None:
        image_ids = list(dataset.image_ids)
    image_ids = [int(i) for i in np.asarray(image_ids, dtype=np.int64).reshape(-1)]
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
            raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
        image_ids = image_ids[:int(limit)]
    if not image_ids:
        raise ValueError("the dataset has no image to evaluate (it is empty)")
    builder = ReportBuilder(names, score_threshold=score_threshold, iou_type=iou_type)
    config = getattr(model, "config", None)
    batch_size = int(getattr(config, "BATCH_SIZE", 1) or 1)
    # Only "square" and "crop" molding give every image of a batch the same molded shape.
    same_shape = getattr(config, "IMAGE_RESIZE_MODE", "square") not in ("square", "crop")
    skipped, detect_s, read_s = [], 0.0, 0.0
    started = time.perf_counter()

    def run(batch):
        nonlocal detect_s
        t0 = time.perf_counter()
        results = model.detect([image for _, image, _ in batch])
        detect_s += time.perf_counter() - t0
        if len(results) != len(batch):
            raise ValueError(f"model.detect returned {len(results)} results for "
                             f"{len(batch)} images")
        for (image_id, image, gt), result in zip(batch, results):
            builder.add_image(gt[0], gt[1], result, reference=image_id,
                              file_name=_file_name(dataset, image_id))
        if progress is not None:
            progress.step(len(batch))

    batch = []
    for image_id in image_ids:
        t0 = time.perf_counter()
        try:
            image = np.asarray(dataset.load_image(image_id))
        except Exception as err:  # noqa: BLE001 -- any unreadable image is skipped
            logger.warning("skipped image %s (%s): %s", image_id,
                           _file_name(dataset, image_id), err)
            skipped.append({"reference": image_id, "file_name": _file_name(dataset, image_id),
                            "reason": f"{type(err).__name__}: {err}"})
            if progress is not None:
                progress.step(1)
            continue
        gt = load_ground_truth(dataset, image_id, image.shape, id_map)
        read_s += time.perf_counter() - t0
        if batch and same_shape and image.shape != batch[0][1].shape:
            run(batch)
            batch = []
        batch.append((image_id, image, gt))
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not builder.images:
        raise ValueError(f"no image of the {len(image_ids)} could be read: "
                         f"{[s['file_name'] for s in skipped[:5]]}")
    result = builder.finish()
    result.skipped = skipped
    scored = time.perf_counter()
    if out_dir is not None:
        from mrcnn import report_files
        report_files.write(result, out_dir, dataset=dataset, gallery=gallery)
    total = time.perf_counter() - started
    result.timings = {"images": len(builder.images), "read_s": read_s, "detect_s": detect_s,
                      "write_s": total - (scored - started),
                      "report_s": total - detect_s - read_s}
    return result


def _file_name(dataset, image_id):
    """The image's path as the dataset knows it, or "image_<internal id>"."""
    return str(dataset.image_info[image_id].get("path") or f"image_{image_id}")
