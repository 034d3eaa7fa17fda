"""Synthetic keypoints: train Keypoint R-CNN from scratch on triangles with named corners.

Every image is drawn on the fly from a few numbers (no files): a random background, up to
two distractor discs (not instances) and one to three figures (class "figure"): a filled
triangle with a round joint (a disc of radius ``JOINT_RADIUS`` in a second colour) on each
corner, like a three-joint stick figure. The three keypoints are the joints' centres,
the triangle's exact vertices (pixel-index units, as COCO): ``apex`` (the top corner),
``left`` and ``right`` (the base corners as seen in the image). Figures are rotated by at
most 30 degrees, so the names stay unambiguous, and a horizontal flip swaps ``left`` and
``right`` (``KEYPOINT_FLIP_MAP``). A joint hidden under a later figure is labelled
occluded (v = 1). The joints make the keypoints lie inside the figure's box, as a
person's keypoints lie inside theirs.

Evaluation is COCO's keypoint OKS AP with pycocotools (``iouType="keypoints"``), with
the per-keypoint sigma ``OKS_SIGMA`` for all three joints: 0.062, COCO's sigma for wrists
(COCO's person sigmas run from 0.025 for eyes to 0.107 for hips).

Command line (from the repository root)::

    python samples/keypoints.py train                   # 18 min of training, then evaluates
    python samples/keypoints.py train --minutes 5       # a shorter schedule
    python samples/keypoints.py evaluate --weights last [--limit 100]
    python samples/keypoints.py detect --weights last --out keypoints.png

``--small`` shrinks model, data and schedule to seconds (CI), and is remembered beside the
checkpoints (``settings.json``) as in ``samples/shapes.py``. The compact GroupNorm model and
its learning-rate schedules are ``mrcnn.compact``'s, the command-line plumbing it shares
with ``samples/shapes.py`` (``--logs``/``--weights``/``--small``, ``--weights last``,
loading a checkpoint) ``mrcnn.cli_args``'.
"""
import argparse
import logging
import math
import os
import sys
import time

import numpy as np
import skimage.draw

if __name__ == "__main__":  # run as a script from a checkout: make ``import mrcnn`` work
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mrcnn import utils  # noqa: E402
from mrcnn.checkpoints import read_run_settings, write_run_settings  # noqa: E402
from mrcnn.cli_args import (CliError, add_sample_arguments, check_positive,  # noqa: E402
                            last_epoch_checkpoint, load_sample_inference_model,
                            run_sample_main, sample_training_model, sample_weights)
from mrcnn.compact import (CompactConfig, SmallCompactConfig, distinct_color,  # noqa: E402
                           lr_schedule_callback, time_budget_callback)
from mrcnn.dataset import Dataset  # noqa: E402

logger = logging.getLogger(__name__)

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")

SOURCE = "keypoints"
CLASS_NAME = "figure"
KEYPOINT_NAMES = ("apex", "left", "right")
FLIP_MAP = (("left", "right"),)
SKELETON = (("apex", "left"), ("left", "right"), ("right", "apex"))
# OKS sigma of every keypoint (see the module docstring).
OKS_SIGMA = 0.062
JOINT_RADIUS = 3
TRAIN_SEED, VAL_SEED, TEST_SEED = 11, 12, 13
# Warm-up of the time-budget schedule: this fraction of --minutes.
WARMUP_FRACTION = 0.05
EXIT_USAGE = 2


# ---------------------------------------------------------------------------- configuration
class KeypointsConfig(CompactConfig):
    """The package's compact model (``mrcnn.compact``: 128 px, GroupNorm backbone) plus a keypoint head.

    * One class ("figure") and three keypoints; 56 x 56 heatmaps from 14 x 14 RoIAlign.
    * A four-conv, 64-channel keypoint head instead of the paper's eight 512-channel convs:
      three corners of flat triangles need far less, and the head runs on every positive
      ROI of every step.
    """

    NAME = "keypoints"
    NUM_CLASSES = 2
    KEYPOINT_NAMES = KEYPOINT_NAMES
    KEYPOINT_FLIP_MAP = FLIP_MAP
    KEYPOINT_SKELETON = SKELETON
    KEYPOINT_POOL_SIZE = 14
    KEYPOINT_MASK_SHAPE = 56
    KEYPOINT_HEAD_CONVS = 4
    KEYPOINT_HEAD_FILTERS = 64
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 8
    DETECTION_MIN_CONFIDENCE = 0.5
    STEPS_PER_EPOCH = 100


class SmallKeypointsConfig(SmallCompactConfig, KeypointsConfig):
    """A toy-sized keypoint model (``--small``, CI): builds and steps in seconds."""

    NAME = "keypoints"
    NUM_CLASSES = 2
    KEYPOINT_NAMES = KEYPOINT_NAMES
    KEYPOINT_FLIP_MAP = FLIP_MAP
    KEYPOINT_SKELETON = SKELETON
    KEYPOINT_POOL_SIZE = 7
    KEYPOINT_MASK_SHAPE = 28
    KEYPOINT_HEAD_CONVS = 1
    KEYPOINT_HEAD_FILTERS = 16
    MAX_GT_INSTANCES = 4


# ---------------------------------------------------------------------------- dataset
class KeypointsDataset(Dataset):
    """Triangles (class "figure") with keypoints apex / left / right, plus distractor discs.

    ``load_figures`` draws every random number up front (from its seed), so image ``i`` is
    the same on every call; pixels are rendered when asked for. Each image's info holds
    ``bg_color``, ``discs`` [(cy, cx, radius, color)] and ``figures``
    [(vertices [3, (x, y)] float, color, joint color)] bottom to top, vertices in
    KEYPOINT_NAMES order.
    """

    def load_figures(self, count, size=128, seed=0, max_figures=3, max_overlap=0.2):
        """Add ``count`` random ``size`` x ``size`` images (same seed, same images)."""
        for name, value in (("count", count), ("size", size), ("max_figures", max_figures)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if size < 32:
            raise ValueError(f"images must be at least 32 px, got {size}")
        self.add_class(SOURCE, 1, CLASS_NAME)
        rng = np.random.default_rng(seed)
        start = len(self.image_info)
        for i in range(count):
            bg_color = tuple(int(c) for c in rng.integers(0, 256, size=3))
            discs = []
            for _ in range(int(rng.integers(0, 3))):
                radius = int(rng.integers(4, size // 10 + 5))
                discs.append((int(rng.integers(radius, size - radius)),
                              int(rng.integers(radius, size - radius)), radius,
                              distinct_color(rng, [bg_color])))
            figures, boxes = [], []
            for _ in range(int(rng.integers(1, max_figures + 1))):
                for _attempt in range(10):
                    vertices = random_triangle(size, rng)
                    box = _vertex_box(vertices)
                    if not boxes or utils.compute_overlaps(box[None], np.array(boxes)).max() <= max_overlap:
                        color = distinct_color(rng, [bg_color])
                        figures.append((vertices, color, distinct_color(rng, [bg_color, color])))
                        boxes.append(box)
                        break
            self.add_image(SOURCE, image_id=start + i, path=None, width=size, height=size,
                           bg_color=bg_color, discs=discs, figures=figures)

    def _render(self, image_id):
        """(image [H, W, 3] uint8, masks [H, W, N] bool, keypoints [N, 3, 3]) of visible figures."""
        info = self.image_info[image_id]
        height, width = info["height"], info["width"]
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = info["bg_color"]
        for cy, cx, radius, color in info["discs"]:
            rr, cc = skimage.draw.disk((cy, cx), radius, shape=(height, width))
            image[rr, cc] = color
        count = len(info["figures"])
        masks = np.zeros((height, width, count), dtype=bool)
        keypoints = np.zeros((count, len(KEYPOINT_NAMES), 3), dtype=np.float32)
        for k, (vertices, color, joint_color) in enumerate(info["figures"]):
            rr, cc = skimage.draw.polygon(vertices[:, 1], vertices[:, 0], shape=(height, width))
            masks[rr, cc, k] = True
            image[rr, cc] = color
            for x, y in vertices:
                rr, cc = skimage.draw.disk((y, x), JOINT_RADIUS + 0.5, shape=(height, width))
                masks[rr, cc, k] = True
                image[rr, cc] = joint_color
            keypoints[k, :, :2] = vertices
            keypoints[k, :, 2] = 2
        covered = np.zeros((height, width), dtype=bool)
        for k in range(count - 1, -1, -1):
            # A corner under a later figure is labelled but occluded (COCO's v = 1).
            for j, (x, y) in enumerate(keypoints[k, :, :2]):
                row, col = min(int(round(y)), height - 1), min(int(round(x)), width - 1)
                if covered[row, col]:
                    keypoints[k, j, 2] = 1
            own = masks[..., k]
            masks[..., k] = own & ~covered
            covered |= own
        visible = masks.any(axis=(0, 1))
        return image, masks[..., visible], keypoints[visible]

    def load_image(self, image_id):
        """The image: [size, size, 3] uint8 RGB."""
        return self._render(image_id)[0]

    def load_mask(self, image_id):
        """Visible figure masks [H, W, N] bool and class ids [N] int32 (all 1), bottom to top."""
        masks = self._render(image_id)[1]
        return masks, np.ones(masks.shape[-1], dtype=np.int32)

    def load_keypoints(self, image_id):
        """[N, 3, (x, y, v)] float32: apex, left, right of each figure load_mask returns."""
        return self._render(image_id)[2]


def random_triangle(size, rng):
    """[3, (x, y)] float vertices (apex, left, right) of a random triangle inside the image.

    A base 24..56 px wide and a height of 24..56 px, the apex shifted sideways by up to a
    third of the base, rotated by -30..30 degrees about its centre, at a random place.
    """
    base = rng.uniform(24, 56)
    height = rng.uniform(24, 56)
    shift = rng.uniform(-base / 3, base / 3)
    local = np.array([[shift, -height / 2], [-base / 2, height / 2], [base / 2, height / 2]])
    angle = math.radians(rng.uniform(-30, 30))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    local = local @ rotation.T
    margin = JOINT_RADIUS + 1
    low, high = -local.min(axis=0) + margin, size - 1 - margin - local.max(axis=0)
    centre = rng.uniform(low, np.maximum(high, low))
    return np.round((local + centre) * 2) / 2          # half-pixel vertices


def _vertex_box(vertices):
    """Box (y1, x1, y2, x2) float around the vertices and their joints."""
    r = JOINT_RADIUS
    return np.array([vertices[:, 1].min() - r, vertices[:, 0].min() - r,
                     vertices[:, 1].max() + r + 1, vertices[:, 0].max() + r + 1])


def make_dataset(count, seed, size=128):
    """A prepared KeypointsDataset of ``count`` images of ``size`` px drawn from ``seed``."""
    dataset = KeypointsDataset()
    dataset.load_figures(count, size=size, seed=seed)
    dataset.prepare()
    return dataset


def coco_ground_truth(dataset):
    """A pycocotools COCO of the dataset's figures with their keypoints (images = internal ids)."""
    from mrcnn.coco import coco_from_dict

    images, annotations = [], []
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        images.append({"id": int(image_id), "height": info["height"], "width": info["width"]})
        masks, _ = dataset.load_mask(image_id)
        keypoints = dataset.load_keypoints(image_id)
        for k in range(masks.shape[-1]):
            y1, x1, y2, x2 = utils.extract_bboxes(masks[..., k:k + 1])[0]
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id), "category_id": 1,
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": float(masks[..., k].sum()), "iscrowd": 0,
                "keypoints": [float(v) for v in keypoints[k].reshape(-1)],
                "num_keypoints": int(np.sum(keypoints[k, :, 2] > 0)),
            })
    return coco_from_dict({
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": CLASS_NAME, "keypoints": list(KEYPOINT_NAMES),
                        "skeleton": [[KEYPOINT_NAMES.index(a) + 1, KEYPOINT_NAMES.index(b) + 1]
                                     for a, b in SKELETON]}],
    })


def evaluate_model(model, limit, verbose=False):
    """OKS keypoint AP (and box AP) with pycocotools on ``limit`` held-out images.

    Returns {"keypoints": {...KEYPOINT_METRIC_NAMES}, "bbox": {...}, "images": limit,
    "seconds": detection time}.
    """
    import contextlib
    import io

    from mrcnn.coco import build_coco_results, evaluate_coco

    dataset = make_dataset(limit, TEST_SEED, size=int(model.config.IMAGE_MAX_DIM))
    # The dataset's internal ids are the COCO image ids of coco_ground_truth.
    for image_id in dataset.image_ids:
        dataset.image_info[image_id]["id"] = int(image_id)
    coco_gt = coco_ground_truth(dataset)
    results = []
    started = time.time()
    for image_id in dataset.image_ids:
        r = model.detect([dataset.load_image(image_id)])[0]
        results.extend(build_coco_results(dataset, [image_id], r["rois"], r["class_ids"],
                                          r["scores"], None, keypoints=r["keypoints"]))
    seconds = time.time() - started
    output = io.StringIO()
    with contextlib.redirect_stdout(output if not verbose else sys.stdout):
        metrics = evaluate_coco(coco_gt, results, eval_types=("keypoints", "bbox"),
                                kpt_oks_sigmas=[OKS_SIGMA] * len(KEYPOINT_NAMES))
    metrics["images"] = limit
    metrics["seconds"] = seconds
    return metrics


def draw_detections(model, out_path, image_indices=(0,), columns=3):
    """Detect on held-out images and save them with boxes and skeletons (one panel each)."""
    import matplotlib.pyplot as plt

    from mrcnn import visualize

    indices = list(image_indices)
    dataset = make_dataset(max(indices) + 1, TEST_SEED, size=int(model.config.IMAGE_MAX_DIM))
    columns = min(columns, len(indices))
    rows = -(-len(indices) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.ravel()[len(indices):]:
        ax.axis("off")
    for ax, index in zip(axes.ravel(), indices):
        image = dataset.load_image(index)
        r = model.detect([image])[0]
        visualize.display_keypoints(image, r["rois"], r["keypoints"], KEYPOINT_NAMES,
                                    skeleton=SKELETON, ax=ax,
                                    title=f"held-out image {index}: {len(r['rois'])} found")
    visualize.save_figure(fig, out_path, close=True)
    return out_path


# ---------------------------------------------------------------------------- command line
# A command-line problem the user can fix; main() prints it and returns exit code 2. The
# shared command-line helpers (mrcnn.cli_args) raise it.
UsageError = CliError


def _settings(small):
    """Sizes of a run: the config class, images, epochs, steps, evaluation images."""
    if small:
        return {"config": SmallKeypointsConfig, "images": 8, "val_images": 4, "epochs": 1,
                "steps": 2, "eval_limit": 3, "minutes": None}
    return {"config": KeypointsConfig, "images": 4000, "val_images": 50, "epochs": 100,
            "steps": KeypointsConfig.STEPS_PER_EPOCH, "eval_limit": 100, "minutes": 18.0}


def resolve_weights(weights, logs, small=None):
    """Path of the weights named on the command line: "last" (newest checkpoint) or a file.

    "last" without --small takes the newest full-size run, never a newer --small one (a
    warning names those passed over); a --small run only when there is no other (with a
    warning). With --small, the newest --small run (mrcnn.cli_args.sample_weights).
    """
    return sample_weights(weights, logs, KeypointsConfig.NAME, "samples/keypoints.py", small)


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="keypoints.py", description="Train, evaluate and run Keypoint R-CNN on synthetic figures.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, weights_required):
        add_sample_arguments(p, DEFAULT_LOGS_DIR, weights_required)

    train = sub.add_parser("train", help="train from scratch (or resume with --weights)")
    common(train, weights_required=False)
    train.add_argument("--epochs", type=int,
                       help="epoch to reach (default 100, cut by --minutes; 1 with --small)")
    train.add_argument("--minutes", type=float,
                       help="wall-clock training budget; the learning rate decays over it "
                            "(default 18; none with --small, which follows the steps)")
    train.add_argument("--steps", type=int, help="training steps per epoch")
    train.add_argument("--images", type=int, help="number of training images")
    train.add_argument("--lr", type=float, help="peak learning rate (default config LEARNING_RATE)")

    evaluate = sub.add_parser("evaluate", help="keypoint OKS AP (pycocotools) on held-out images")
    common(evaluate, weights_required=True)
    evaluate.add_argument("--limit", type=int, help="held-out images (default 100)")

    detect = sub.add_parser("detect", help="draw keypoints on held-out images")
    common(detect, weights_required=True)
    detect.add_argument("--out", required=True, help="output picture, e.g. keypoints.png")
    detect.add_argument("--image", type=int, default=0, help="held-out image index (default 0)")
    return parser


def _load_inference_model(weights_path, logs, small):
    """Inference MaskRCNN with the config the checkpoint was trained with, weights loaded."""
    return load_sample_inference_model(weights_path, logs, lambda s: _settings(s)["config"],
                                       small)


def _print_scores(scores):
    kp, box = scores["keypoints"], scores["bbox"]
    print(f"keypoint OKS AP@[.5:.95]  {kp['AP']:.3f}")
    print(f"keypoint OKS AP@0.5       {kp['AP50']:.3f}")
    print(f"keypoint OKS AP@0.75      {kp['AP75']:.3f}")
    print(f"box AP@[.5:.95]           {box['AP']:.3f}")
    print(f"images                    {scores['images']} ({scores['seconds']:.1f} s of detect)")


def cmd_train(args):
    """Train (from scratch, or resuming --weights), then evaluate and draw detections."""
    import resource

    from mrcnn.keypoints import HorizontalFlip

    settings = _settings(bool(args.small))
    for name in ("epochs", "steps", "images"):
        check_positive(f"--{name}", getattr(args, name))
    if args.minutes is not None and not args.minutes > 0:
        raise UsageError(f"--minutes must be positive, got {args.minutes}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    weights_path = resolve_weights(args.weights, args.logs, args.small) if args.weights else None
    if weights_path is not None and args.small is None:
        args.small = bool(read_run_settings(weights_path).get("small", False))
        settings = _settings(args.small)
    config_class = settings["config"]
    steps = args.steps or settings["steps"]
    epochs = args.epochs or settings["epochs"]
    # TensorFlow starts here, once the arguments are known good.
    model = sample_training_model(config_class, steps, args.logs, weights_path)
    if weights_path:
        print(f"Resuming from {weights_path} (epoch {model.epoch})")
    config = model.config
    learning_rate = args.lr or config.LEARNING_RATE
    train_set = make_dataset(args.images or settings["images"], TRAIN_SEED)
    val_set = make_dataset(settings["val_images"], VAL_SEED)
    if model.epoch >= epochs:
        print(f"Already at epoch {model.epoch} >= --epochs {epochs}: nothing to train")
    else:
        write_run_settings(model.log_dir, {
            "small": bool(args.small), "epochs": epochs, "steps": steps,
            "images": len(train_set.image_ids), "learning_rate": learning_rate})
        minutes = args.minutes if args.minutes is not None else settings["minutes"]
        if minutes:
            schedule = time_budget_callback(learning_rate, minutes, warmup_fraction=WARMUP_FRACTION)
            print(f"Training for {minutes:g} minutes (learning rate over the time budget)")
        else:
            total = epochs * steps
            schedule = lr_schedule_callback(learning_rate, total, warmup_steps=min(200, total // 10),
                                             first_step=model.epoch * steps)
        print(f"Training {len(train_set.image_ids)} images, epochs {model.epoch + 1}..{epochs} x "
              f"{steps} steps of {config.BATCH_SIZE} images, peak lr {learning_rate}; "
              f"checkpoints in {model.log_dir}")
        started, cpu_before = time.time(), resource.getrusage(resource.RUSAGE_SELF)
        model.train(train_set, val_set, learning_rate=learning_rate, epochs=epochs, layers="all",
                    augmentation=HorizontalFlip(0.5), custom_callbacks=[schedule], verbose=1)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        print(f"Training took {(time.time() - started) / 60:.1f} min wall, "
              f"{cpu / 60:.1f} min process CPU (all threads); "
              f"stopped at {getattr(schedule, 'stopped_at', None)}")
    log_dir = model.log_dir
    last = last_epoch_checkpoint(log_dir)
    del model

    inference, _ = _load_inference_model(last, args.logs, bool(args.small))
    _print_scores(evaluate_model(inference, settings["eval_limit"]))
    picture = draw_detections(inference, os.path.join(log_dir, "keypoints.png"),
                              image_indices=range(6 if not args.small else 1))
    print(f"Keypoints drawn in {picture}")
    return 0


def cmd_evaluate(args):
    """Print keypoint OKS AP (pycocotools) on held-out images."""
    check_positive("--limit", args.limit)
    weights_path = resolve_weights(args.weights, args.logs, args.small)
    model, small = _load_inference_model(weights_path, args.logs, args.small)
    limit = args.limit or _settings(small)["eval_limit"]
    print(f"Evaluating {weights_path} on {limit} held-out images")
    _print_scores(evaluate_model(model, limit))
    return 0


def cmd_detect(args):
    """Save a picture of the keypoints found on one held-out image."""
    if args.image < 0:
        raise UsageError(f"--image must be >= 0, got {args.image}")
    weights_path = resolve_weights(args.weights, args.logs, args.small)
    model, _ = _load_inference_model(weights_path, args.logs, args.small)
    path = draw_detections(model, args.out, image_indices=[args.image], columns=1)
    print(f"Keypoints drawn in {path}")
    return 0


def main(argv=None):
    """Run the command line; returns the exit code (0 ok, 2 usage errors, 130 interrupted)."""
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "detect": cmd_detect}
    return run_sample_main("keypoints.py", _build_parser(), commands, argv)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
