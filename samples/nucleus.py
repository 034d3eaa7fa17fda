"""Mask R-CNN for nuclei segmentation (Kaggle 2018 Data Science Bowl layout).

Layout: ``<dataset>/<subset folder>/<image id>/images/<image id>.png`` and, for annotated
subsets, ``<image id>/masks/*.png`` (one binary PNG per nucleus). Images may be RGBA,
grey or RGB; they are read as RGB.

Subsets: "train" and "val" split ``stage1_train`` (val: every fifth image id in sorted
order, 9 of dsb2018_45's 45, or the ids listed in --val-ids FILE, one per line); any
other name is a folder of the dataset, e.g. "stage1_test".

    python samples/nucleus.py train --dataset /data/nucleus --subset train --weights random
    python samples/nucleus.py evaluate --dataset /data/nucleus --subset val --weights last
    python samples/nucleus.py detect --dataset /data/nucleus --subset stage1_test --weights last

``train`` runs for a wall-clock budget (--minutes, default 28) from scratch; ``evaluate``
prints pycocotools' segm table (maxDets = DETECTION_MAX_INSTANCES) and the DSB2018 metric.

``detect`` writes ``<results>/submit_<timestamp>/submit.csv`` and ``<image id>.png``
overlays; submit.csv has a header ``ImageId,EncodedPixels`` and one row per detected nucleus with its run-length encoding
(Kaggle's: column-major pixel order, 1-indexed ``start length`` pairs; overlaps are
given to the higher score); an image without detections gets one row with an empty
encoding. --weights: coco | imagenet | last | random | PATH (see mrcnn/cli_args.py).
Exit status: 0 on success, 2 on a usage error.
"""
import argparse
import csv
import datetime
import logging
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.cli_args import (  # noqa: E402
    CliError, add_common_arguments, build_model, make_run_config, network_flags, run_main)
from mrcnn.compact import compact_backbone, time_budget_callback  # noqa: E402,F401
from mrcnn.datasets.masks import MaskFolderDataset  # noqa: E402

logger = logging.getLogger(__name__)

TRAIN_FOLDER = "stage1_train"
VAL_EVERY = 5   # validation: sorted ids 0, 5, ..., 40 (9 of dsb2018_45's 45)
DEFAULT_RESULTS_DIR = "results"
SUBMIT_HEADER = ("ImageId", "EncodedPixels")
DEFAULT_MIN_SCORE = 0.5


class NucleusConfig(Config):
    """Trains from scratch on a 2-core CPU: hundreds of small nuclei per image.

    * The shapes sample's compact GroupNorm ResNet (``mrcnn.compact.compact_backbone``)
      and narrow FPN / heads: no pretrained weights exist here, and BatchNorm statistics
      of four crops do not carry over to inference.
    * Random 256 px crops of images upscaled 2x (nuclei of 5..60 px become 10..120 px);
      anchors of 8..128 px.
    * Up to 400 nuclei per image (the crowdest of dsb2018_45 has 329) in training
      targets and in detections.
    * SGD, warm-up then cosine decay (see ``train``).
    """

    NAME = "nucleus"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 4
    NUM_CLASSES = 1 + 1

    BACKBONE = staticmethod(compact_backbone)
    NORMALIZATION = "group"
    GROUP_NORM_GROUPS = 16
    TOP_DOWN_PYRAMID_SIZE = 128
    RPN_CONV_FILTERS = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    MASK_HEAD_FILTERS = 64

    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256
    IMAGE_MIN_SCALE = 2.0
    MEAN_PIXEL = [43.5, 39.6, 48.2]

    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 128
    PRE_NMS_LIMIT = 2000
    RPN_NMS_THRESHOLD = 0.9
    POST_NMS_ROIS_TRAINING = 512
    POST_NMS_ROIS_INFERENCE = 2000
    TRAIN_ROIS_PER_IMAGE = 128
    ROI_POSITIVE_RATIO = 0.33
    MAX_GT_INSTANCES = 400
    MASK_SHAPE = [28, 28]
    MINI_MASK_SHAPE = (56, 56)

    DETECTION_MAX_INSTANCES = 400
    DETECTION_MIN_CONFIDENCE = 0.0
    DETECTION_NMS_THRESHOLD = 0.3

    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 2
    LEARNING_RATE = 0.02
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001


class NucleusInferenceConfig(NucleusConfig):
    """Whole images upscaled 2x, padded to multiples of 64, one at a time."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    IMAGE_RESIZE_MODE = "pad64"
    RPN_NMS_THRESHOLD = 0.7


# --------------------------------------------------------------------------- dataset
def read_val_ids(path):
    """Image ids listed one per line in ``path`` (blank lines and # comments ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"validation id file not found: {path!r}")
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


class NucleusDataset(MaskFolderDataset):
    """Nuclei of the DSB2018 layout: one class, "nucleus" (a mrcnn.datasets MaskFolderDataset
    with the train/val split and a mask cache)."""

    def load_nucleus(self, dataset_dir, subset, val_ids=None):
        """Add the images of ``subset``.

        dataset_dir: the dataset root (holding stage1_train/, stage1_test/, ...).
        subset: "train" / "val" (split of stage1_train) or the name of a folder.
        val_ids: image ids of the validation split; None: every VAL_EVERY-th id in sorted
            order (ids 0, 10, 20, ... of the sorted list).
        Folders without ``images/<id>.png`` are skipped with a warning naming them.
        """
        if not isinstance(subset, str) or not subset:
            raise ValueError(f"subset must be 'train', 'val' or a folder name, got {subset!r}")
        folder_name = TRAIN_FOLDER if subset in ("train", "val") else subset
        folder = os.path.join(os.fspath(dataset_dir), folder_name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"nucleus subset folder not found: {folder!r}")
        ids = sorted(name for name in os.listdir(folder)
                     if os.path.isdir(os.path.join(folder, name)))
        if subset in ("train", "val"):
            if val_ids is None:
                val_set = set(ids[::VAL_EVERY])
            else:
                val_set = set(val_ids)
                unknown = sorted(val_set - set(ids))
                if unknown:
                    raise ValueError(f"val_ids {unknown[:10]} are not image folders of {folder!r}")
            ids = [i for i in ids if (i in val_set) == (subset == "val")]
        present = []
        for image_id in ids:
            if not os.path.isfile(os.path.join(folder, image_id, "images", f"{image_id}.png")):
                logger.warning("%s has no images/%s.png; skipped", os.path.join(folder, image_id),
                               image_id)
                continue
            present.append(image_id)
        self.load_mask_folder(folder, class_name="nucleus", image_ids=present, source="nucleus")
        if not present:
            self.add_class("nucleus", 1, "nucleus")

    def load_mask(self, image_id):
        """masks [H, W, N] bool (pixel > 0 in each masks/*.png, sorted by file name) and
        class_ids [N] int32 (all 1). No masks folder (test images): N = 0.

        The first call reads the PNGs; when no two masks overlap (the DSB2018 rule) the
        image's masks are kept as one [H, W] label image (label k + 1 = k-th file), so
        later calls (every training step) rebuild the same masks without reading files.
        """
        info = self.image_info[image_id]
        labels = info.get("mask_labels")
        if labels is not None:
            count = int(info["mask_count"])
            masks = labels[..., None] == np.arange(1, count + 1, dtype=labels.dtype)
            return masks, np.full(count, self.map_source_class_id(f"{info['source']}.1"),
                                  dtype=np.int32)
        masks, class_ids = super().load_mask(image_id)
        count = masks.shape[-1]
        if count and count < 2 ** 16 and masks.sum(axis=-1, dtype=np.int32).max() <= 1:
            labels = np.zeros(masks.shape[:2], dtype=np.uint16)
            for k in range(count):
                labels[masks[..., k]] = k + 1
            info["mask_count"] = count
            info["mask_labels"] = labels
        return masks, class_ids

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]


# --------------------------------------------------------------------------- RLE
def rle_encode(mask):
    """Kaggle run-length encoding of one [H, W] binary mask.

    Pixels are numbered 1, 2, ... down the first column, then down the second, ...
    (column-major). Returns "start length start length ..." ("" for an empty mask).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    pixels = np.concatenate([[0], mask.astype(bool).ravel(order="F").astype(np.int8), [0]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1   # 1-indexed run bounds
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))


def rle_decode(rle, shape):
    """[H, W] bool mask of a Kaggle run-length encoding (see rle_encode).

    Raises ValueError naming the problem for an odd count of numbers, non-integers,
    starts below 1, zero lengths, runs past the image or runs out of order/overlapping.
    """
    height, width = (int(s) for s in shape[:2])
    flat = np.zeros(height * width, dtype=bool)
    text = (rle or "").strip()
    if not text:
        return flat.reshape((height, width), order="F")
    try:
        numbers = [int(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"RLE must hold integers, got {text[:60]!r}") from None
    if len(numbers) % 2:
        raise ValueError(f"RLE needs start/length pairs, got {len(numbers)} numbers")
    previous_end = 0
    for start, length in zip(numbers[0::2], numbers[1::2]):
        if start < 1 or length < 1:
            raise ValueError(f"RLE run ({start}, {length}): starts are >= 1, lengths >= 1")
        if start <= previous_end:
            raise ValueError(f"RLE run starting at {start} overlaps or precedes the previous "
                             f"run (ending at pixel {previous_end})")
        end = start + length - 1
        if end > flat.size:
            raise ValueError(f"RLE run ({start}, {length}) ends at pixel {end}, past the "
                             f"{height}x{width} image ({flat.size} pixels)")
        flat[start - 1:end] = True
        previous_end = end
    return flat.reshape((height, width), order="F")


def remove_overlaps(mask, scores):
    """Instances without shared pixels, as Kaggle wants them.

    mask: [H, W, N] bool instance masks; scores: [N]. Instances are taken by descending
    score and each pixel goes to the first instance that claims it; instances left
    empty are dropped. Returns (masks [H, W, K] bool in descending score order,
    indices [K] int of the kept instances into the input).
    """
    mask = np.asarray(mask)
    scores = np.asarray(scores).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != scores.shape[0]:
        raise ValueError(f"mask must be [H, W, N] with N = {scores.shape[0]} scores, "
                         f"got shape {mask.shape}")
    kept, indices = [], []
    taken = np.zeros(mask.shape[:2], dtype=bool)
    for k in np.argsort(-scores, kind="stable"):
        instance = mask[..., k].astype(bool) & ~taken
        if not instance.any():
            continue
        taken |= instance
        kept.append(instance)
        indices.append(int(k))
    out = np.stack(kept, axis=-1) if kept else np.zeros(mask.shape[:2] + (0,), dtype=bool)
    return out, np.asarray(indices, dtype=np.int64)


def mask_to_rle(image_id, mask, scores):
    """Submission rows of one image: ``[(image_id, rle), ...]``.

    mask: [H, W, N] bool instance masks; scores: [N]. Overlaps go to the higher score
    (see remove_overlaps); instances left empty are dropped. No instance:
    ``[(image_id, "")]``.
    """
    kept, _ = remove_overlaps(mask, scores)
    rows = [(image_id, rle_encode(kept[..., k])) for k in range(kept.shape[-1])]
    return rows or [(image_id, "")]


def write_submission(rows, path):
    """Write ``[(image_id, rle), ...]`` as a CSV with the Kaggle header; returns path."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUBMIT_HEADER)
        writer.writerows(rows)
    return path


def read_submission(path):
    """{image_id: [rle, ...]} of a submission CSV (empty encodings are left out)."""
    out = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if tuple(header or ()) != SUBMIT_HEADER:
            raise ValueError(f"{path!r} does not start with the header {','.join(SUBMIT_HEADER)}")
        for row in reader:
            if len(row) != 2:
                raise ValueError(f"{path!r}: row {row!r} must have 2 columns")
            image_id, rle = row[0], row[1].strip()
            out.setdefault(image_id, [])
            if rle:
                out[image_id].append(rle)
    return out


# --------------------------------------------------------------------------- commands
def confident(result, min_score):
    """(masks [H, W, K] bool, scores [K]) of a detect() dict's detections scoring >= min_score."""
    scores = np.asarray(result["scores"]).reshape(-1)
    keep = scores >= min_score
    return np.asarray(result["masks"])[..., keep], scores[keep]


def save_overlay(image, masks, path, title=""):
    """Save ``image`` [H, W, 3] uint8 with ``masks`` [H, W, K] bool tinted and outlined."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrcnn import utils, visualize

    count = masks.shape[-1]
    height, width = image.shape[:2]
    fig, ax = plt.subplots(figsize=(width / 80, height / 80))
    visualize.display_instances(image, utils.extract_bboxes(masks), masks,
                                np.ones(count, dtype=np.int32), ["BG", "nucleus"], title=title,
                                ax=ax, show_bbox=False, captions=[""] * count)
    return visualize.save_figure(fig, path, close=True)


def detect_dataset(model, dataset, submit_dir, min_score=0.0, overlays=False):
    """Detect nuclei in every image of ``dataset``; write ``submit_dir/submit.csv``.

    model: an inference MaskRCNN (or any object with ``detect``).
    min_score: detections scoring below it are left out.
    overlays: also save ``submit_dir/<image id>.png``, the image with the written masks.
    Returns (csv path, {image id: [H, W, K] bool masks as written, after overlap removal}).
    """
    os.makedirs(submit_dir, exist_ok=True)
    rows, written = [], {}
    for image_id in dataset.image_ids:
        source_id = dataset.image_info[image_id]["id"]
        image = dataset.load_image(image_id)
        masks, scores = confident(model.detect([image])[0], min_score)
        image_rows = mask_to_rle(source_id, masks, scores)
        rows.extend(image_rows)
        decoded = [rle_decode(rle, image.shape) for _, rle in image_rows if rle]
        written[source_id] = (np.stack(decoded, axis=-1) if decoded
                              else np.zeros(image.shape[:2] + (0,), dtype=bool))
        if overlays:
            save_overlay(image, written[source_id], os.path.join(submit_dir, f"{source_id}.png"),
                         title=f"{source_id}: {written[source_id].shape[-1]} nuclei")
    path = write_submission(rows, os.path.join(submit_dir, "submit.csv"))
    print(f"{len(dataset.image_ids)} images, {sum(m.shape[-1] for m in written.values())} "
          f"nuclei; saved {path}")
    return path, written


def evaluate_nucleus(model, dataset, max_dets, min_score=0.5):
    """COCO segm metrics and the DSB2018 metric of ``model`` on every image of ``dataset``.

    model: an inference MaskRCNN (or any object with ``detect``); dataset: a prepared
    NucleusDataset with masks. COCO metrics (pycocotools, printed) take every detection,
    with ``max_dets`` (>= 100) detections per image counted. The DSB2018 metric takes the
    detections scoring >= ``min_score`` with overlaps removed, as ``detect`` writes them.
    Returns {"segm": {AP, AP50, AP75, ...}, "dsb2018": float, "per_image": [{"id", "gt",
    "detections", "dsb2018"}]}.
    """
    from pycocotools import mask as mask_utils

    from mrcnn.coco import coco_from_dict, evaluate_coco
    from mrcnn.evaluation import dsb2018_score

    images, annotations, results, per_image = [], [], [], []
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        gt_masks, _ = dataset.load_mask(image_id)
        height, width = image.shape[:2]
        images.append({"id": int(image_id), "height": height, "width": width})
        for k in range(gt_masks.shape[-1]):
            rle = mask_utils.encode(np.asfortranarray(gt_masks[..., k].astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id), "category_id": 1,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
        result = model.detect([image])[0]
        masks = np.asarray(result["masks"]).astype(bool)
        for k, score in enumerate(np.asarray(result["scores"]).reshape(-1)):
            rle = mask_utils.encode(np.asfortranarray(masks[..., k].astype(np.uint8)))
            results.append({"image_id": int(image_id), "category_id": 1, "score": float(score),
                            "segmentation": {"size": [height, width],
                                             "counts": rle["counts"].decode("ascii")}})
        pred, _ = remove_overlaps(*confident(result, min_score))
        score = dsb2018_score(gt_masks, pred)
        per_image.append({"id": dataset.image_info[image_id]["id"], "gt": gt_masks.shape[-1],
                          "detections": pred.shape[-1], "dsb2018": score})
        logger.info("%s: %d nuclei, %d detections >= %g, DSB2018 %.3f", per_image[-1]["id"],
                    gt_masks.shape[-1], pred.shape[-1], min_score, score)
    coco_gt = coco_from_dict({"images": images, "annotations": annotations,
                              "categories": [{"id": 1, "name": "nucleus"}]})
    metrics = evaluate_coco(coco_gt, results, eval_types=("segm",), max_dets=max_dets)
    return {"segm": metrics["segm"], "per_image": per_image,
            "dsb2018": float(np.mean([p["dsb2018"] for p in per_image]))}


def load_dataset(args, subset):
    """A prepared NucleusDataset; bad paths become CliErrors."""
    dataset = NucleusDataset()
    try:
        val_ids = read_val_ids(args.val_ids) if args.val_ids else None
        dataset.load_nucleus(args.dataset, subset, val_ids=val_ids)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None
    if not dataset.image_info:
        raise CliError(f"no image found for subset {subset!r} in {args.dataset!r}")
    dataset.prepare()
    return dataset


DEFAULT_MINUTES = 28.0     # training budget of the defaults (wall clock, this 2-core CPU)
DEFAULT_EPOCHS = 200       # an upper bound: the budget ends training first
WARMUP_STEPS = 100


def train(args):
    """From scratch: all layers, SGD with warm-up and a cosine over a time budget."""
    import resource
    import time

    dataset_train = load_dataset(args, "train")
    dataset_val = load_dataset(args, "val")
    config = make_run_config(NucleusConfig, args)
    config.display()
    model = build_model("training", config, args.weights, args.logs, download=args.download,
                        run_settings=network_flags(args))
    total = args.epochs if args.epochs is not None else DEFAULT_EPOCHS
    if total < 1:
        raise CliError(f"--epochs must be >= 1, got {total}")
    minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES
    if not minutes > 0:
        raise CliError(f"--minutes must be positive, got {minutes}")
    learning_rate = args.lr if args.lr is not None else config.LEARNING_RATE
    if not learning_rate > 0:
        raise CliError(f"--lr must be positive, got {learning_rate}")
    budget = time_budget_callback(learning_rate, minutes, warmup_steps=WARMUP_STEPS)
    print(f"Training all layers on {dataset_train.num_images} images (validation: "
          f"{dataset_val.num_images}) for {minutes:g} min (at most epochs {model.epoch + 1}.."
          f"{total} x {config.STEPS_PER_EPOCH} steps of {config.BATCH_SIZE} crops), "
          f"peak lr {learning_rate}")
    wall, usage = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    model.train(dataset_train, dataset_val, learning_rate=learning_rate, epochs=total,
                layers="all", augmentation=nucleus_augmentation(), custom_callbacks=[budget])
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end.ru_utime - usage.ru_utime) + (end.ru_stime - usage.ru_stime)
    print(f"Training took {(time.time() - wall) / 60:.1f} min wall, {cpu / 60:.1f} min CPU "
          f"(process), {budget.step} steps; checkpoints in {model.log_dir}")
    return model


def nucleus_augmentation():
    """Flips, 90-degree rotations and brightness/contrast changes (albumentations), or None.

    Geometric steps keep the square crops' shape and move the masks with the image.
    """
    try:
        import albumentations
    except ImportError:
        logger.warning("albumentations is not installed: training without augmentation")
        return None
    return albumentations.Compose([
        albumentations.HorizontalFlip(p=0.5),
        albumentations.VerticalFlip(p=0.5),
        albumentations.RandomRotate90(p=1.0),
        albumentations.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
    ])


def inference_model(args):
    """An inference MaskRCNN with --weights loaded: whole images, one at a time."""
    config = make_run_config(NucleusInferenceConfig, args, GPU_COUNT=1, IMAGES_PER_GPU=1)
    return build_model("inference", config, args.weights, args.logs, download=args.download)


def detect(args):
    """Run detection on --subset; write submit.csv and one overlay per image under --results."""
    dataset = load_dataset(args, args.subset)
    model = inference_model(args)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    submit_dir = os.path.join(args.results, f"submit_{stamp}")
    return detect_dataset(model, dataset, submit_dir, min_score=args.min_score, overlays=True)


def evaluate(args):
    """Print pycocotools' segm table and the DSB2018 metric on every image of --subset."""
    dataset = load_dataset(args, args.subset)
    model = inference_model(args)
    max_dets = max(100, int(model.config.DETECTION_MAX_INSTANCES))
    metrics = evaluate_nucleus(model, dataset, max_dets, min_score=args.min_score)
    segm = metrics["segm"]
    print(f"{len(metrics['per_image'])} images of {args.subset!r}, maxDets {max_dets}")
    print(f"mask AP {segm['AP']:.3f}  AP50 {segm['AP50']:.3f}  AP75 {segm['AP75']:.3f}")
    print(f"DSB2018 metric {metrics['dsb2018']:.3f} (detections >= {args.min_score:g}, "
          "overlaps removed)")
    return metrics


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train Mask R-CNN on nuclei (DSB2018 layout) or write a Kaggle submission.")
    parser.add_argument("command", choices=("train", "evaluate", "detect"))
    parser.add_argument("--dataset", required=True, metavar="DIR", help="dataset root")
    parser.add_argument("--subset", default=None,
                        help="detect: the folder to run on (e.g. stage1_test); train uses "
                             "train/val of stage1_train")
    parser.add_argument("--val-ids", metavar="FILE",
                        help="image ids of the validation split, one per line")
    parser.add_argument("--results", default=DEFAULT_RESULTS_DIR, metavar="DIR",
                        help=f"detect: output folder (default: {DEFAULT_RESULTS_DIR})")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help="detect and the DSB2018 metric: detections scoring below are "
                             f"left out (default {DEFAULT_MIN_SCORE:g})")
    parser.add_argument("--minutes", type=float, default=None,
                        help=f"train: wall-clock budget (default {DEFAULT_MINUTES:g}); the "
                             "learning rate's cosine follows it")
    parser.add_argument("--lr", type=float, default=None,
                        help="train: peak learning rate (default: the config's LEARNING_RATE)")
    add_common_arguments(parser, weights_flag="--weights", weights_dest="weights")
    return parser


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 usage error)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command in ("detect", "evaluate") and not args.subset:
        print(f"error: {args.command} needs --subset (e.g. stage1_test)", file=sys.stderr)
        return 2
    print(f"Command: {args.command}, weights: {args.weights}, dataset: {args.dataset}")
    commands = {"train": train, "evaluate": evaluate, "detect": detect}
    return run_main(commands[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
