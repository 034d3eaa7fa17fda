"""Mask mAP of a model on a dataset, and a Keras callback that tracks it during training.

* :func:`evaluate_dataset` runs ``detect`` on dataset images and scores the masks
  against the ground truth with :func:`mrcnn.utils.compute_ap` (mAP at IoU 0.5) and
  :func:`mrcnn.utils.compute_ap_range` (mAP over IoU 0.5:0.95), in the frame of the
  original images.
* :class:`MeanAPCallback` evaluates a copy of the training weights in an inference
  model at the end of each epoch, writes the numbers into the epoch logs (History,
  TensorBoard) and can keep the best checkpoint.

* :func:`dsb2018_score` / :func:`dsb2018_metric`: the Kaggle 2018 Data Science Bowl
  metric (per image, the mean over IoU thresholds of TP / (TP + FP + FN)).

* :func:`report` (from :mod:`mrcnn.report`): the evaluation report: per-class AP (pycocotools),
  TP / FP / FN, a confusion matrix, PR curves and an error gallery, optionally written
  as files and one HTML page.

These are matterport-style per-image mAP numbers (mean over images of each image's
AP), quick to compute on a validation subset. For COCO's official metrics use
:func:`mrcnn.coco.evaluate_coco`.
"""
import logging
import math
import os

import keras
import numpy as np

from mrcnn import utils
from mrcnn.report import Report, ReportBuilder, report  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

# Keys the callback writes into the epoch logs.
MAP_LOG_KEY = "val_mask_mAP"        # mean over images of AP over IoU 0.5:0.95
MAP50_LOG_KEY = "val_mask_mAP50"    # mean over images of AP at IoU 0.5
# IoU thresholds of the DSB2018 metric: 0.5, 0.55, ..., 0.95.
DSB2018_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def load_instances(dataset, image_id, image_shape):
    """Non-crowd ground truth of one image, in original image pixels.

    dataset: a prepared Dataset. image_id: internal image id.
    image_shape: (H, W, ...) of the image ``dataset.load_image`` returned.

    Returns: (boxes [G, (y1, x1, y2, x2)] int32 pixels, y2/x2 exclusive,
    class_ids [G] int32 (> 0), masks [H, W, G] bool). Crowd instances (negative
    class ids) and masks without a pixel are left out.
    """
    masks, class_ids = dataset.load_mask(image_id)
    masks, class_ids = np.asarray(masks), np.asarray(class_ids)
    height, width = int(image_shape[0]), int(image_shape[1])
    if masks.size == 0 and class_ids.size == 0:
        masks = np.zeros((height, width, 0), dtype=bool)
        class_ids = np.zeros((0,), dtype=np.int32)
    masks, class_ids = utils.validate_instance_masks(image_shape, masks, class_ids)
    keep = (class_ids > 0) & np.any(masks, axis=(0, 1))
    masks, class_ids = masks[..., keep], class_ids[keep]
    return utils.extract_bboxes(masks), class_ids, masks


def _check_ids(dataset, image_ids, limit):
    """The list of internal image ids to evaluate (validated)."""
    if image_ids is None:
        image_ids = dataset.image_ids
    image_ids = [int(i) for i in np.asarray(image_ids).reshape(-1)]
    known = len(dataset.image_info)
    bad = [i for i in image_ids if not 0 <= i < known]
    if bad:
        raise ValueError(f"image_ids {bad[:10]} are not internal ids of the dataset "
                         f"(0..{known - 1})")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
        image_ids = image_ids[:int(limit)]
    return image_ids


def _batches(image_ids, images, batch_size, same_shape):
    """Split positions 0..n-1 into batches of <= batch_size (of one image shape if asked)."""
    batch = []
    for k in range(len(image_ids)):
        if batch and (len(batch) == batch_size
                      or (same_shape and images[k].shape != images[batch[0]].shape)):
            yield batch
            batch = []
        batch.append(k)
    if batch:
        yield batch


def evaluate_dataset(model, dataset, image_ids=None, limit=None, iou_thresholds=None, verbose=0):
    """Mask mAP of ``model`` on images of ``dataset``.

    model: an inference MaskRCNN (or any object with ``detect(images) -> [dict]`` and,
        optionally, ``config.BATCH_SIZE`` / ``config.IMAGE_RESIZE_MODE``). Each dict
        holds rois [N, (y1, x1, y2, x2)] pixels, class_ids [N], scores [N] and
        masks [H, W, N] bool, in the original image's frame.
    dataset: a prepared Dataset whose ``load_mask`` gives [H, W, G] bool masks and [G]
        class ids (negative = crowd).
    image_ids: internal ids to evaluate (default: all of the dataset), in order.
    limit: None, or evaluate only the first ``limit`` of them.
    iou_thresholds: IoU thresholds of "mAP" (default 0.5:0.95:0.05, COCO style).
    verbose: > 0 logs each image's APs at INFO level.

    Images are read with ``dataset.load_image`` and detected ``BATCH_SIZE`` at a time;
    predictions and ground truth (``load_mask``, boxes from ``utils.extract_bboxes``)
    are compared in original image pixels. Crowd instances are left out. Images with
    no non-crowd instance have no defined AP: they are skipped and listed.

    Returns: dict with
        "mAP50": float, mean over evaluated images of compute_ap at IoU 0.5;
        "mAP": float, mean over evaluated images of compute_ap_range(iou_thresholds);
        "images": int, number of images evaluated;
        "per_image": list of {"image_id", "AP50", "AP", "gt", "detections"} dicts;
        "skipped": internal ids of images without ground truth.
    With no image evaluated both means are 0.0 (and a warning says so).
    """
    if not hasattr(model, "detect"):
        raise TypeError(f"model must have a detect(images) method, got {type(model).__name__}")
    image_ids = _check_ids(dataset, image_ids, limit)
    config = getattr(model, "config", None)
    batch_size = int(getattr(config, "BATCH_SIZE", 1) or 1)
    same_shape = getattr(config, "IMAGE_RESIZE_MODE", "square") not in ("square", "crop")
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)

    images = [np.asarray(dataset.load_image(i)) for i in image_ids]
    per_image, skipped = [], []
    for batch in _batches(image_ids, images, batch_size, same_shape):
        ground_truth = [load_instances(dataset, image_ids[k], images[k].shape) for k in batch]
        todo = [k for k, gt in zip(batch, ground_truth) if len(gt[1])]
        skipped.extend(image_ids[k] for k, gt in zip(batch, ground_truth) if not len(gt[1]))
        if not todo:
            continue
        results = model.detect([images[k] for k in todo])
        if len(results) != len(todo):
            raise ValueError(f"model.detect returned {len(results)} results for {len(todo)} images")
        gt_by_k = dict(zip(batch, ground_truth))
        for k, result in zip(todo, results):
            gt_boxes, gt_class_ids, gt_masks = gt_by_k[k]
            pred = _prediction(result, images[k].shape, image_ids[k])
            ap50 = utils.compute_ap(gt_boxes, gt_class_ids, gt_masks, *pred, iou_threshold=0.5)[0]
            ap = utils.compute_ap_range(gt_boxes, gt_class_ids, gt_masks, *pred,
                                        iou_thresholds=iou_thresholds, verbose=0)
            per_image.append({"image_id": image_ids[k], "AP50": float(ap50), "AP": float(ap),
                              "gt": int(len(gt_class_ids)), "detections": int(len(pred[1]))})
            if verbose:
                logger.info("image %d: AP50 %.3f, AP %.3f (%d gt, %d detections)",
                            image_ids[k], ap50, ap, len(gt_class_ids), len(pred[1]))
    if skipped:
        logger.info("evaluate_dataset: %d image(s) without non-crowd ground truth skipped: %s",
                    len(skipped), skipped[:20])
    if not per_image:
        logger.warning("evaluate_dataset: no image with ground truth among %d; mAP set to 0",
                       len(image_ids))
    count = len(per_image)
    return {
        "mAP50": float(np.mean([p["AP50"] for p in per_image])) if count else 0.0,
        "mAP": float(np.mean([p["AP"] for p in per_image])) if count else 0.0,
        "images": count,
        "per_image": per_image,
        "skipped": skipped,
    }


def _prediction(result, image_shape, image_id):
    """(boxes [N, 4], class_ids [N], scores [N], masks [H, W, N]) of one detect() dict."""
    missing = [key for key in ("rois", "class_ids", "scores", "masks") if key not in result]
    if missing:
        raise ValueError(f"detect() result of image {image_id} lacks {missing}")
    boxes = np.asarray(result["rois"]).reshape(-1, 4)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    masks = np.asarray(result["masks"])
    if masks.size == 0:
        masks = np.zeros(tuple(image_shape[:2]) + (len(class_ids),), dtype=bool)
    if masks.shape != tuple(image_shape[:2]) + (len(class_ids),):
        raise ValueError(f"detect() masks of image {image_id} have shape {masks.shape}; "
                         f"expected {tuple(image_shape[:2]) + (len(class_ids),)}")
    return boxes, class_ids, scores, masks.astype(bool)


def _mask_stack(masks, name, shape=None):
    masks = np.asarray(masks)
    if masks.ndim != 3 or (shape is not None and masks.shape[:2] != shape):
        expected = "[H, W, N]" if shape is None else f"[{shape[0]}, {shape[1]}, N]"
        raise ValueError(f"{name} must be {expected} masks, got shape {masks.shape}")
    return masks.astype(bool)


def _sparse_mask_iou(masks1, masks2):
    """[N1, N2] float64 IoU of [H, W, N1] and [H, W, N2] bool masks, like
    utils.compute_overlaps_masks but through sparse matrices: hundreds of small nuclei
    on a 520 x 696 image would need gigabytes as dense float64 columns."""
    import scipy.sparse

    flat1 = scipy.sparse.csc_matrix(masks1.reshape(-1, masks1.shape[-1]), dtype=np.float64)
    flat2 = scipy.sparse.csc_matrix(masks2.reshape(-1, masks2.shape[-1]), dtype=np.float64)
    inter = (flat1.T @ flat2).toarray()
    union = (np.asarray(flat1.sum(axis=0)).reshape(-1, 1)
             + np.asarray(flat2.sum(axis=0)).reshape(1, -1) - inter)
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def dsb2018_counts(gt_masks, pred_masks, iou_thresholds=DSB2018_THRESHOLDS):
    """True positives, false positives and false negatives of one image per IoU threshold.

    gt_masks: [H, W, G] bool ground-truth nuclei. pred_masks: [H, W, P] bool predicted
    nuclei (same H, W). iou_thresholds: the thresholds t (default 0.5:0.05:0.95).

    A prediction and a ground-truth nucleus match at t when their mask IoU is above t
    (strictly, as Kaggle's). Matching is one to one, pairs taken by decreasing IoU; for
    masks that do not overlap each other (Kaggle's rule) every pair with IoU > 0.5 is
    then a match, which is the competition's count. TP = matched pairs, FP = unmatched
    predictions, FN = unmatched ground truth.

    Returns: [T, 3] int64 array, rows (TP, FP, FN) in threshold order.
    """
    gt_masks = _mask_stack(gt_masks, "gt_masks")
    pred_masks = _mask_stack(pred_masks, "pred_masks", gt_masks.shape[:2])
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    gt_count, pred_count = gt_masks.shape[-1], pred_masks.shape[-1]
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    if gt_count and pred_count:
        overlaps = _sparse_mask_iou(pred_masks, gt_masks)   # [P, G]
        pred_idx, gt_idx = np.nonzero(overlaps > thresholds.min())
        ious = overlaps[pred_idx, gt_idx]
        order = np.argsort(-ious, kind="stable")
        pred_idx, gt_idx, ious = pred_idx[order], gt_idx[order], ious[order]
    for k, t in enumerate(thresholds):
        tp = 0
        if gt_count and pred_count:
            used_pred, used_gt = set(), set()
            for p, g, iou in zip(pred_idx, gt_idx, ious):
                if iou <= t:
                    break
                if p in used_pred or g in used_gt:
                    continue
                used_pred.add(p)
                used_gt.add(g)
            tp = len(used_pred)
        counts[k] = (tp, pred_count - tp, gt_count - tp)
    return counts


def dsb2018_score(gt_masks, pred_masks, iou_thresholds=DSB2018_THRESHOLDS):
    """The DSB2018 score of one image: mean over thresholds of TP / (TP + FP + FN).

    gt_masks [H, W, G] bool, pred_masks [H, W, P] bool; see :func:`dsb2018_counts`.
    An image with neither nuclei nor predictions scores 1.0 (nothing to get wrong).
    Returns: float in [0, 1].
    """
    counts = dsb2018_counts(gt_masks, pred_masks, iou_thresholds)
    total = counts.sum(axis=1)
    per_threshold = np.where(total > 0, counts[:, 0] / np.maximum(total, 1), 1.0)
    return float(per_threshold.mean())


def dsb2018_metric(pairs, iou_thresholds=DSB2018_THRESHOLDS):
    """The DSB2018 metric of a set of images: the mean of their :func:`dsb2018_score`.

    pairs: iterable of (gt_masks [H, W, G] bool, pred_masks [H, W, P] bool), one per image.
    Returns: {"score": float mean over images, "per_image": [float, ...]}; no image: a
    ValueError.
    """
    per_image = [dsb2018_score(gt, pred, iou_thresholds) for gt, pred in pairs]
    if not per_image:
        raise ValueError("dsb2018_metric needs at least one (gt_masks, pred_masks) pair")
    return {"score": float(np.mean(per_image)), "per_image": per_image}


def copy_weights_by_name(source, target):
    """Copy the weights of every weighted layer of ``target`` from the same-named layer of
    ``source`` (two keras.Models, e.g. the training and the inference Mask R-CNN graphs).

    Returns: the copied layer names. Raises ValueError naming the layers ``source`` lacks
    or whose weight shapes differ (nothing is copied then).
    """
    pairs, missing = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            missing.append(layer.name)
            continue
        values = src.get_weights()
        shapes = [tuple(v.shape) for v in layer.weights]
        if [tuple(np.shape(v)) for v in values] != shapes:
            raise ValueError(f"layer {layer.name!r}: weight shapes {[np.shape(v) for v in values]} "
                             f"in the source model differ from {shapes}")
        pairs.append((layer, values))
    if missing:
        raise ValueError(f"the source model lacks the weighted layers {missing[:10]}")
    for layer, values in pairs:
        layer.set_weights(values)
    return [layer.name for layer, _ in pairs]


class MeanAPCallback(keras.callbacks.Callback):
    """Mask mAP on a validation subset at the end of each epoch; optionally keep the best.

    Usage::

        callback = MeanAPCallback(model, dataset_val, limit=50, keep_best=True)
        model.train(dataset_train, dataset_val, config.LEARNING_RATE, epochs=10,
                    layers="heads", custom_callbacks=[callback])

    model: the training :class:`mrcnn.model.MaskRCNN` (its ``config``, ``model_dir`` and
        ``log_dir`` are used; Keras gives the callback the training graph to copy from).
    dataset: the prepared validation Dataset.
    limit: evaluate the first ``limit`` images (None: all); image_ids: which ones.
    every: evaluate every ``every`` epochs (and at the last epoch of ``fit``).
    keep_best: save the weights to ``<log_dir>/mask_rcnn_<name>_best.h5`` (atomic write)
        whenever ``monitor`` improves on the best value seen by this callback.
    monitor: MAP_LOG_KEY ("val_mask_mAP", IoU 0.5:0.95) or MAP50_LOG_KEY ("val_mask_mAP50").
    inference_config: config of the inference model (default: ``model.config``).
    inference_model: an inference MaskRCNN to reuse (default: built on first use).
    evaluate_fn: ``fn(inference_model, dataset, image_ids=..., limit=...) -> {"mAP", "mAP50",
        ...}`` (default :func:`evaluate_dataset`); tests inject a fake.
    verbose: 1 logs each result at INFO level, 0 at DEBUG.

    At each evaluated epoch the logs get MAP_LOG_KEY and MAP50_LOG_KEY, so History
    records them, and so does TensorBoard when it runs after this callback (see the note
    in samples and README: ``MaskRCNN.train`` must place custom callbacks before its
    TensorBoard callback). ``history`` keeps (epoch, mAP, mAP50) tuples; ``best`` and
    ``best_path`` the best value and its file.
    """

    def __init__(self, model, dataset, limit=None, image_ids=None, every=1, keep_best=False,
                 monitor=MAP_LOG_KEY, inference_config=None, inference_model=None,
                 evaluate_fn=None, verbose=1):
        super().__init__()
        if monitor not in (MAP_LOG_KEY, MAP50_LOG_KEY):
            raise ValueError(f"monitor must be {MAP_LOG_KEY!r} or {MAP50_LOG_KEY!r}, "
                             f"got {monitor!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if dataset is None or not len(getattr(dataset, "image_ids", [])):
            raise ValueError("dataset must be a prepared Dataset with images")
        self.mask_rcnn = model
        self.dataset = dataset
        self.image_ids = _check_ids(dataset, image_ids, limit)
        self.every = every
        self.keep_best = bool(keep_best)
        self.monitor = monitor
        self.inference_config = inference_config
        self.inference_model = inference_model
        self.evaluate_fn = evaluate_fn or evaluate_dataset
        self.verbose = verbose
        self.best = -math.inf
        self.best_path = None
        self.history = []
        self._epochs = None

    def on_train_begin(self, logs=None):
        self._epochs = (self.params or {}).get("epochs")

    def _get_inference_model(self):
        if self.inference_model is None:
            from mrcnn.model import MaskRCNN
            config = self.inference_config or self.mask_rcnn.config
            self.inference_model = MaskRCNN("inference", config, self.mask_rcnn.model_dir)
        return self.inference_model

    def best_checkpoint_path(self):
        """``<log_dir>/mask_rcnn_<name lowercased>_best.h5`` of the training model."""
        name = (getattr(self.mask_rcnn.config, "NAME", None) or "mrcnn").lower()
        return os.path.join(self.mask_rcnn.log_dir, f"mask_rcnn_{name}_best.h5")

    def on_epoch_end(self, epoch, logs=None):
        last = self._epochs is not None and epoch + 1 == self._epochs
        if (epoch + 1) % self.every and not last:
            return
        inference = self._get_inference_model()
        target = getattr(inference, "keras_model", None)
        if target is not None and self.model is not None:
            copy_weights_by_name(self.model, target)
        scores = self.evaluate_fn(inference, self.dataset, image_ids=self.image_ids, limit=None)
        m_ap, m_ap50 = float(scores["mAP"]), float(scores["mAP50"])
        self.history.append((epoch + 1, m_ap, m_ap50))
        if logs is not None:
            logs[MAP_LOG_KEY] = m_ap
            logs[MAP50_LOG_KEY] = m_ap50
        value = m_ap if self.monitor == MAP_LOG_KEY else m_ap50
        message = (f"epoch {epoch + 1}: mask mAP {m_ap:.4f}, mAP50 {m_ap50:.4f} "
                   f"on {scores.get('images', len(self.image_ids))} images")
        if self.keep_best and value > self.best:
            path = self.best_checkpoint_path()
            os.makedirs(os.path.dirname(path), exist_ok=True)
            from mrcnn.weights import save_weights_h5
            save_weights_h5(self.model, path)
            self.best_path = path
            message += f"; best so far, saved {path}"
        self.best = max(self.best, value)
        logger.log(logging.INFO if self.verbose else logging.DEBUG, "%s", message)
