"""Mask R-CNN on COCO, or on any dataset in COCO instances format: train and evaluate.

Standard COCO layout (``annotations/instances_<subset><year>.json`` and ``<subset><year>/``)::

    python samples/coco.py train --dataset /data/coco --year 2017 --model coco
    python samples/coco.py train --dataset /data/coco --model imagenet --backbone resnet50
    python samples/coco.py train --dataset /data/coco --model last          # resume
    python samples/coco.py evaluate --dataset /data/coco --year 2017 --model last --limit 500

Any COCO-format dataset (one instances JSON plus an image folder)::

    python samples/coco.py evaluate --annotations coco128/annotations/instances_val.json \\
        --images coco128/images --model mask_rcnn_coco.h5 --limit 5
    python samples/coco.py train --annotations coco128/annotations/instances_train.json \\
        --images coco128/images --val-annotations coco128/annotations/instances_val.json \\
        --model random --tiny --image-size 128 --steps 2 --epochs 1

--model: ``coco`` (mask_rcnn_coco.h5 in the current folder or the repository root),
``imagenet`` (Keras-applications ResNet no-top file in ~/.keras/models),
``last`` (the newest checkpoint under --logs), ``random`` (random initial weights), or the
path of an .h5 file. A missing coco/imagenet file is fetched with --download (network
needed); without it the message says where to put it. --download only fetches weights:
get the COCO images and annotations from https://cocodataset.org/#download.

train: the matterport schedule, heads to epoch 40, 4+ to 120, all layers at LR/10 to 160,
with horizontal flips (albumentations). --epochs N scales the stage ends to N in total;
--steps sets the steps per epoch; --tiny and --image-size shrink the network for quick
runs. --eval-images N adds a MeanAPCallback (mask mAP of N validation images at each
epoch end, in the History/TensorBoard logs as val_mask_mAP, best weights kept as
mask_rcnn_coco_best.h5).

evaluate: detect on the first --limit images, write the COCO results JSON (--results, by
default in --logs) and print pycocotools' tables for bbox and segm.

Exit status: 0 on success, 2 on a usage error (bad path, missing weights, no network).
"""
import argparse
import logging
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mrcnn.cli_args import (  # noqa: E402,F401  (re-exported for scripts that used them here)
    CLASS_SPECIFIC_LAYERS, COCO_NUM_CLASSES, COCO_WEIGHTS_NAME, DEFAULT_LOGS_DIR, TINY_OVERRIDES,
    CliError, add_common_arguments, build_model, config_overrides, flip_augmentation, make_config,
    make_run_config, network_flags, resolve_weights, run_main)
from mrcnn.config import Config  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_YEAR = "2014"
# matterport's schedule: (layers, end epoch, learning-rate factor).
REFERENCE_SCHEDULE = (("heads", 40, 1.0), ("4+", 120, 1.0), ("all", 160, 0.1))


class CocoConfig(Config):
    """Training on MS COCO (80 classes + background), as in matterport's sample."""

    NAME = "coco"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = COCO_NUM_CLASSES


def scaled_schedule(total_epochs=None, reference=REFERENCE_SCHEDULE):
    """Stages ``[(layers, end_epoch, lr_factor)]``; end epochs scaled to ``total_epochs``.

    total_epochs None keeps the reference ends. Each end is at least 1 and not below the
    previous one; stages whose end is already reached are skipped by ``train()``.
    """
    if total_epochs is None:
        return [tuple(stage) for stage in reference]
    if total_epochs < 1:
        raise CliError(f"--epochs must be >= 1, got {total_epochs}")
    last = reference[-1][1]
    stages, previous = [], 1
    for layers, end, factor in reference:
        scaled = max(previous, int(round(total_epochs * end / last)))
        stages.append((layers, scaled, factor))
        previous = scaled
    return stages


# --------------------------------------------------------------------------- datasets
def _load(dataset_fn, description):
    """Call a CocoDataset loader; bad files become CliErrors naming them."""
    try:
        return dataset_fn()
    except (FileNotFoundError, ValueError) as err:
        raise CliError(f"{description}: {err}") from None


def load_dataset(args, split):
    """(CocoDataset prepared, pycocotools COCO) of ``split`` ("train" or "val").

    With --annotations/--images the train split reads them and the val split reads
    --val-annotations (None when not given; evaluate reads --annotations). With --dataset,
    the standard layout: 2014 trains on train + valminusminival and validates on minival;
    other years use train and val.
    """
    from mrcnn.coco import CocoDataset

    dataset = CocoDataset()
    if args.annotations:
        if split == "val" and args.command == "train":
            if not args.val_annotations:
                return None, None
            annotations = args.val_annotations
            images = args.val_images or args.images
        else:
            annotations, images = args.annotations, args.images
        if not os.path.isdir(images):
            raise CliError(f"image folder not found: {images!r}")
        coco = _load(lambda: dataset.load_coco(annotations, images, return_coco=True),
                     f"cannot read {annotations!r}")
    else:
        if not os.path.isdir(args.dataset):
            raise CliError(f"COCO dataset folder not found: {args.dataset!r} (it should hold "
                           "annotations/instances_<subset><year>.json and <subset><year>/; "
                           "get them from https://cocodataset.org/#download)")
        year = str(args.year)
        if split == "train":
            subsets = ["train", "valminusminival"] if year == "2014" else ["train"]
        else:
            subsets = ["minival"] if year == "2014" else ["val"]
        coco = None
        kind = "person_keypoints" if getattr(args, "keypoints", False) else "instances"
        for subset in subsets:
            coco = _load(lambda: dataset.load_coco_standard(args.dataset, subset, year=year,
                                                            return_coco=True, annotations=kind),
                         f"cannot read the {subset}{year} split of {args.dataset!r}")
    if not dataset.image_info:
        raise CliError(f"no usable image in the {split} split (check the image folder)")
    dataset.prepare()
    return dataset, coco


# --------------------------------------------------------------------------- commands
def train(args):
    """Train with the (scaled) matterport schedule; checkpoints go to --logs."""
    dataset_train, _ = load_dataset(args, "train")
    dataset_val, _ = load_dataset(args, "val")
    if dataset_val is not None and dataset_val.class_info != dataset_train.class_info:
        raise CliError("the validation annotations list other categories than the training "
                       "annotations; both files need the same 'categories'")
    config = make_run_config(CocoConfig, args, NUM_CLASSES=dataset_train.num_classes,
                             **keypoint_attrs(dataset_train))
    config.display()
    model = build_model("training", config, args.model, args.logs, download=args.download,
                        flag="--model", run_settings=network_flags(args))
    callbacks = []
    if args.eval_images:
        if dataset_val is None:
            raise CliError("--eval-images needs validation data (--val-annotations or --dataset)")
        from mrcnn.evaluation import MeanAPCallback
        callbacks.append(MeanAPCallback(model, dataset_val, limit=args.eval_images,
                                        keep_best=True))
    if config.KEYPOINT_NAMES:
        from mrcnn.keypoints import HorizontalFlip
        augmentation = HorizontalFlip(0.5)  # swaps left_* and right_* keypoints too
    else:
        augmentation = flip_augmentation()
    for layers, end_epoch, factor in scaled_schedule(args.epochs):
        print(f"Training {layers} to epoch {end_epoch} at learning rate "
              f"{config.LEARNING_RATE * factor:g}")
        model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE * factor,
                    epochs=end_epoch, layers=layers, augmentation=augmentation,
                    custom_callbacks=callbacks)
    print(f"Checkpoints in {model.log_dir}")
    return model


def detect_coco(model, dataset, image_ids, verbose=1):
    """Run detect() on dataset images; returns the COCO result dicts of all of them."""
    from mrcnn.coco import detections_to_coco_results

    results = []
    started = time.time()
    first = None
    batch = model.config.BATCH_SIZE
    for start in range(0, len(image_ids), batch):
        ids = image_ids[start:start + batch]
        outputs = model.detect([dataset.load_image(i) for i in ids])
        for image_id, output in zip(ids, outputs):
            results.extend(detections_to_coco_results(dataset, image_id, output))
        if first is None:
            first = time.time() - started
    elapsed = time.time() - started
    if verbose and image_ids:
        rest = len(image_ids) - min(batch, len(image_ids))
        after = f", then {(elapsed - first) / rest:.2f} s per image" if rest else ""
        # The first batch traces the graph: its time says nothing about the steady speed.
        print(f"Prediction time: {elapsed:.1f} s for {len(image_ids)} images (the first batch "
              f"{first:.1f} s, graph tracing included{after}), {len(results)} detections")
    return results


def print_summary(metrics):
    """One line per evaluation type with its COCO numbers (12 for bbox / segm, 10 for
    keypoints, each under its own header)."""
    header = None
    for eval_type, values in metrics.items():
        if tuple(values) != header:
            header = tuple(values)
            print("Summary: " + " ".join(f"{name:>6}" for name in header))
        print(f"{eval_type:>7}: " + " ".join(f"{values[name]:6.3f}" for name in header))


def keypoint_attrs(dataset):
    """Config attributes of a dataset with keypoints ({} without): KEYPOINT_NAMES and a
    KEYPOINT_FLIP_MAP pairing "left_*" with "right_*" names (COCO's person keypoints)."""
    names = dataset.keypoint_names()
    if not names:
        return {}
    flips = tuple((n, "right_" + n[5:]) for n in names
                  if n.startswith("left_") and "right_" + n[5:] in names)
    return {"KEYPOINT_NAMES": tuple(names), "KEYPOINT_FLIP_MAP": flips}


def evaluate(args):
    """Detect on --limit images, write the results JSON, print bbox and segm tables."""
    from mrcnn.coco import evaluate_coco, write_results_json

    dataset, coco = load_dataset(args, "val")
    # Every detection counts for AP: no confidence cut (as matterport's evaluation).
    config = make_run_config(CocoConfig, args, NUM_CLASSES=dataset.num_classes,
                             **keypoint_attrs(dataset), GPU_COUNT=1, IMAGES_PER_GPU=1,
                             DETECTION_MIN_CONFIDENCE=0.0)
    if args.limit is not None and args.limit < 0:
        raise CliError(f"--limit must be >= 1 (or 0 for all), got {args.limit}")
    model = build_model("inference", config, args.model, args.logs, download=args.download,
                        flag="--model")
    image_ids = list(dataset.image_ids[:args.limit] if args.limit else dataset.image_ids)
    print(f"Running COCO evaluation on {len(image_ids)} images")
    results = detect_coco(model, dataset, image_ids)

    results_path = args.results or os.path.join(args.logs, "coco_results.json")
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    write_results_json(results, results_path)
    print(f"Results written to {results_path}")

    coco_ids = [dataset.image_info[i]["id"] for i in image_ids]
    metrics = {}
    eval_types = ("bbox", "segm") + (("keypoints",) if config.KEYPOINT_NAMES else ())
    for eval_type in eval_types:
        print(f"\n=== COCO {eval_type} evaluation ({len(coco_ids)} images) ===")
        if not results:
            print("No detections: every metric is 0")
        metrics.update(evaluate_coco(coco, results, image_ids=coco_ids, eval_types=(eval_type,)))
    print()
    print_summary(metrics)
    return metrics


# --------------------------------------------------------------------------- command line
def build_parser():
    parser = argparse.ArgumentParser(
        description="Train or evaluate Mask R-CNN on MS COCO or any COCO-format dataset.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "evaluate"))
    parser.add_argument("--dataset", metavar="DIR",
                        help="root of the standard COCO layout (annotations/, train2017/, ...)")
    parser.add_argument("--year", default=DEFAULT_YEAR, help="2014 or 2017 (default 2014)")
    parser.add_argument("--annotations", metavar="FILE",
                        help="a COCO instances JSON (instead of --dataset)")
    parser.add_argument("--images", metavar="DIR", help="the image folder of --annotations")
    parser.add_argument("--val-annotations", metavar="FILE",
                        help="train: validation instances JSON (with --annotations)")
    parser.add_argument("--val-images", metavar="DIR",
                        help="train: image folder of --val-annotations (default: --images)")
    parser.add_argument("--limit", type=int, default=500,
                        help="evaluate: number of images (default 500, 0 = all)")
    parser.add_argument("--results", metavar="FILE",
                        help="evaluate: results JSON (default: <logs>/coco_results.json)")
    parser.add_argument("--keypoints", action="store_true",
                        help="with --dataset: read person_keypoints_<subset><year>.json "
                             "(Keypoint R-CNN; --annotations files with keypoint categories "
                             "turn it on by themselves)")
    parser.add_argument("--eval-images", type=int, default=0, metavar="N",
                        help="train: mask mAP of N validation images after each epoch")
    add_common_arguments(parser)
    return parser


def parse_args(argv=None):
    """Parse and cross-check the command line; CliError on a bad combination."""
    args = build_parser().parse_args(argv)
    if args.annotations or args.images:
        if not (args.annotations and args.images):
            raise CliError("--annotations and --images go together")
        if args.dataset:
            raise CliError("give either --dataset or --annotations/--images, not both")
    elif not args.dataset:
        raise CliError("give --dataset DIR (standard COCO layout) or --annotations FILE "
                       "--images DIR")
    if args.val_annotations and not args.annotations:
        raise CliError("--val-annotations goes with --annotations/--images")
    return args


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 usage error)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Command: {args.command}, weights: {args.model}, logs: {args.logs}")
    return run_main(train if args.command == "train" else evaluate, args)


if __name__ == "__main__":
    sys.exit(main())
