"""Mask R-CNN for nuclei segmentation (Kaggle 2018 Data Science Bowl layout).

Layout: ``<dataset>/<subset folder>/<image id>/images/<image id>.png`` and, for annotated
subsets, ``<image id>/masks/*.png`` (one binary PNG per nucleus). Images may be RGBA,
grey or RGB; they are read as RGB.

Subsets: "train" and "val" split ``stage1_train`` (val: every tenth image id in sorted
order, or the ids listed in --val-ids FILE, one per line); any other name is a folder
of the dataset, e.g. "stage1_test".

    python samples/nucleus.py train --dataset /data/nucleus --subset train --weights imagenet
    python samples/nucleus.py detect --dataset /data/nucleus --subset stage1_test --weights last

``detect`` writes ``<results>/submit_<timestamp>/submit.csv``: a header
``ImageId,EncodedPixels`` and one row per detected nucleus with its run-length encoding
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
import skimage.io  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.dataset import Dataset  # noqa: E402
from mrcnn.cli_args import (  # noqa: E402
    CliError, add_common_arguments, build_model, make_run_config, network_flags, run_main)

logger = logging.getLogger(__name__)

TRAIN_FOLDER = "stage1_train"
VAL_EVERY = 10
DEFAULT_RESULTS_DIR = "results"
SUBMIT_HEADER = ("ImageId", "EncodedPixels")


class NucleusConfig(Config):
    """Many small objects on 256..1000 px microscopy images; ResNet-50 backbone."""

    NAME = "nucleus"
    IMAGES_PER_GPU = 4
    NUM_CLASSES = 1 + 1
    BACKBONE = "resnet50"
    STEPS_PER_EPOCH = 150
    VALIDATION_STEPS = 10
    DETECTION_MIN_CONFIDENCE = 0.0
    # Random 512 px crops of images upscaled at least 2x.
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    IMAGE_MIN_SCALE = 2.0
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 2000
    RPN_NMS_THRESHOLD = 0.9
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    TRAIN_ROIS_PER_IMAGE = 128
    MAX_GT_INSTANCES = 200
    DETECTION_MAX_INSTANCES = 400
    MEAN_PIXEL = [43.5, 39.6, 48.2]


class NucleusInferenceConfig(NucleusConfig):
    """Whole images, padded to multiples of 64, one at a time."""

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


class NucleusDataset(Dataset):
    """Nuclei of the DSB2018 layout: one class, "nucleus"."""

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
        self.add_class("nucleus", 1, "nucleus")
        for image_id in ids:
            path = os.path.join(folder, image_id, "images", f"{image_id}.png")
            if not os.path.isfile(path):
                logger.warning("%s has no images/%s.png; skipped", os.path.join(folder, image_id),
                               image_id)
                continue
            self.add_image("nucleus", image_id=image_id, path=path,
                           mask_dir=os.path.join(folder, image_id, "masks"))

    def load_mask(self, image_id):
        """masks [H, W, N] bool (pixel > 0 in each masks/*.png, sorted by file name) and
        class_ids [N] int32 (all 1). No masks folder (test images): N = 0."""
        info = self.image_info[image_id]
        if info["source"] != "nucleus":
            return super().load_mask(image_id)
        mask_dir = info["mask_dir"]
        files = sorted(f for f in os.listdir(mask_dir) if f.lower().endswith(".png")) \
            if os.path.isdir(mask_dir) else []
        masks = []
        for name in files:
            mask = np.asarray(skimage.io.imread(os.path.join(mask_dir, name)))
            if mask.ndim == 3:
                mask = mask[..., 0]
            masks.append(mask > 0)
        if not masks:
            height, width = self.load_image(image_id).shape[:2]
            return np.zeros((height, width, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise ValueError(f"masks of {mask_dir!r} differ in size: {sorted(shapes)}")
        return np.stack(masks, axis=-1), np.ones(len(masks), dtype=np.int32)

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


def mask_to_rle(image_id, mask, scores):
    """Submission rows of one image: ``[(image_id, rle), ...]``.

    mask: [H, W, N] bool instance masks; scores: [N]. Instances are taken by descending
    score and each pixel goes to the first instance that claims it (Kaggle wants no
    overlap); instances left empty are dropped. No instance: ``[(image_id, "")]``.
    """
    mask = np.asarray(mask)
    scores = np.asarray(scores).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != scores.shape[0]:
        raise ValueError(f"mask must be [H, W, N] with N = {scores.shape[0]} scores, "
                         f"got shape {mask.shape}")
    rows = []
    taken = np.zeros(mask.shape[:2], dtype=bool)
    for k in np.argsort(-scores, kind="stable"):
        instance = mask[..., k].astype(bool) & ~taken
        if not instance.any():
            continue
        taken |= instance
        rows.append((image_id, rle_encode(instance)))
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
def detect_dataset(model, dataset, submit_dir):
    """Detect nuclei in every image of ``dataset``; write ``submit_dir/submit.csv``.

    model: an inference MaskRCNN (or any object with ``detect``).
    Returns (csv path, {image id: [H, W, K] bool masks as written, after overlap removal}).
    """
    os.makedirs(submit_dir, exist_ok=True)
    rows, written = [], {}
    for image_id in dataset.image_ids:
        source_id = dataset.image_info[image_id]["id"]
        image = dataset.load_image(image_id)
        result = model.detect([image])[0]
        image_rows = mask_to_rle(source_id, result["masks"], result["scores"])
        rows.extend(image_rows)
        decoded = [rle_decode(rle, image.shape) for _, rle in image_rows if rle]
        written[source_id] = (np.stack(decoded, axis=-1) if decoded
                              else np.zeros(image.shape[:2] + (0,), dtype=bool))
    path = write_submission(rows, os.path.join(submit_dir, "submit.csv"))
    print(f"{len(dataset.image_ids)} images, {sum(m.shape[-1] for m in written.values())} "
          f"nuclei; saved {path}")
    return path, written


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


def train(args):
    """Heads, then all layers (a shortened schedule of matterport's nucleus sample)."""
    dataset_train = load_dataset(args, "train")
    dataset_val = load_dataset(args, "val")
    config = make_run_config(NucleusConfig, args)
    config.display()
    model = build_model("training", config, args.weights, args.logs, download=args.download,
                        run_settings=network_flags(args))
    total = args.epochs if args.epochs is not None else 40
    if total < 1:
        raise CliError(f"--epochs must be >= 1, got {total}")
    augmentation = nucleus_augmentation()
    heads_end = max(1, total // 2)
    print(f"Training heads to epoch {heads_end}, then all layers to epoch {total}")
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE,
                epochs=heads_end, layers="heads", augmentation=augmentation)
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE,
                epochs=total, layers="all", augmentation=augmentation)
    print(f"Checkpoints in {model.log_dir}")
    return model


def nucleus_augmentation():
    """Flips and 90-degree rotations (shape-keeping on square crops), or None."""
    try:
        import albumentations
    except ImportError:
        logger.warning("albumentations is not installed: training without augmentation")
        return None
    return albumentations.Compose([albumentations.HorizontalFlip(p=0.5),
                                   albumentations.VerticalFlip(p=0.5)])


def detect(args):
    """Run detection on --subset and write submit.csv under --results."""
    dataset = load_dataset(args, args.subset)
    # Whole images ("pad64": upscaled to IMAGE_MIN_DIM, padded to multiples of 64), one
    # at a time.
    config = make_run_config(NucleusInferenceConfig, args, GPU_COUNT=1, IMAGES_PER_GPU=1)
    model = build_model("inference", config, args.weights, args.logs, download=args.download)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    submit_dir = os.path.join(args.results, f"submit_{stamp}")
    return detect_dataset(model, dataset, submit_dir)


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train Mask R-CNN on nuclei (DSB2018 layout) or write a Kaggle submission.")
    parser.add_argument("command", choices=("train", "detect"))
    parser.add_argument("--dataset", required=True, metavar="DIR", help="dataset root")
    parser.add_argument("--subset", default=None,
                        help="detect: the folder to run on (e.g. stage1_test); train uses "
                             "train/val of stage1_train")
    parser.add_argument("--val-ids", metavar="FILE",
                        help="image ids of the validation split, one per line")
    parser.add_argument("--results", default=DEFAULT_RESULTS_DIR, metavar="DIR",
                        help=f"detect: output folder (default: {DEFAULT_RESULTS_DIR})")
    add_common_arguments(parser, weights_flag="--weights", weights_dest="weights")
    return parser


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 usage error)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "detect" and not args.subset:
        print("error: detect needs --subset (e.g. stage1_test)", file=sys.stderr)
        return 2
    print(f"Command: {args.command}, weights: {args.weights}, dataset: {args.dataset}")
    return run_main(train if args.command == "train" else detect, args)


if __name__ == "__main__":
    sys.exit(main())
