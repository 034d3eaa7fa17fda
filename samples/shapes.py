"""Synthetic shapes: train Mask R-CNN from scratch on squares, circles and triangles.

Every image is drawn on the fly from a few numbers (no files): a random background
colour and one to four shapes of random kind, size, colour and position. Later shapes
hide the ones under them; a shape hidden completely is not an instance.

Command line (from the repository root)::

    python samples/shapes.py train                      # ~12 min on 2 CPU cores, then evaluates
    python samples/shapes.py train --epochs 20 --logs logs --weights last
    python samples/shapes.py evaluate --weights last [--limit 100] [--report DIR]
    python samples/shapes.py detect --weights last --out detections.png

``train`` writes ``<logs>/shapes<YYYYmmddTHHMM>/mask_rcnn_shapes_<epoch>.h5`` each epoch and,
at the end, ``detections.png`` in the same folder. ``--small`` shrinks the model, the data and
the schedule to a few seconds of training (for CI); the folder remembers it (``settings.json``)
so that ``evaluate`` and ``detect`` rebuild the same small model.

In Python::

    from samples.shapes import ShapesConfig, ShapesDataset
    dataset = ShapesDataset()
    dataset.load_shapes(500, 128, 128, seed=1)
    dataset.prepare()
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
from mrcnn.checkpoints import (SETTINGS_FILE, choose_last_checkpoint,  # noqa: E402,F401
                               epoch_checkpoints, read_run_settings, write_run_settings)
from mrcnn.cli_args import (CliError, add_sample_arguments, check_positive,  # noqa: E402
                            last_epoch_checkpoint, load_sample_inference_model,
                            run_sample_main, sample_training_model, sample_weights)
# The compact model and its schedule live in mrcnn.compact; the names below stay importable
# from samples.shapes (notebooks, bench/ and tests use them from here).
from mrcnn.compact import (CompactConfig, SmallCompactConfig, distinct_color,  # noqa: E402,F401
                           inference_config, learning_rate_at, lr_schedule_callback,
                           small_backbone)
from mrcnn.compact import compact_backbone as shapes_backbone  # noqa: E402,F401
from mrcnn.dataset import Dataset  # noqa: E402

logger = logging.getLogger(__name__)

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")

SHAPE_NAMES = ("square", "circle", "triangle")   # class ids 1, 2, 3
SOURCE = "shapes"
# Seeds of the three disjoint image sets: training, validation (during training), held-out test.
TRAIN_SEED, VAL_SEED, TEST_SEED = 1, 2, 3
EXIT_USAGE = 2


# ---------------------------------------------------------------------------- configuration
class ShapesConfig(CompactConfig):
    """128 x 128 images with up to four shapes: the package's compact from-scratch model.

    The model and schedule settings (GroupNorm backbone, narrow heads, small anchors, SGD
    with warm-up and cosine decay) are ``mrcnn.compact.CompactConfig``'s; this adds the
    three classes and the instance counts of the data.
    """

    NAME = "shapes"
    NUM_CLASSES = 1 + len(SHAPE_NAMES)
    MAX_GT_INSTANCES = 8
    DETECTION_MAX_INSTANCES = 16


class SmallShapesConfig(SmallCompactConfig, ShapesConfig):
    """A toy-sized model (``--small``, CI and the notebooks' small mode): builds and steps in seconds."""


# ---------------------------------------------------------------------------- dataset
class ShapesDataset(Dataset):
    """Squares (class 1), circles (2) and triangles (3) on a plain background.

    ``load_shapes`` draws every random number up front (from its seed), so image ``i`` is
    the same on every call and in every process; pixels are rendered when asked for.
    Each image's info holds ``height``, ``width``, ``bg_color`` (r, g, b) and ``shapes``:
    a list of ``(name, (r, g, b), (cy, cx, size))`` bottom to top, ``size`` being the
    half side of a square, the radius of a circle, or the circumradius of a triangle.
    """

    def load_shapes(self, count, height, width, seed=0, max_shapes=4, max_overlap=0.3):
        """Add ``count`` random images of ``height`` x ``width`` pixels.

        seed: int; the same seed gives the same images. max_shapes: 1 to this many shapes per
        image. max_overlap: a new shape whose box has an IoU above this with a shape already
        placed is redrawn (a few tries, then skipped), so that most shapes stay recognisable.
        """
        for name, value in (("count", count), ("height", height), ("width", width),
                            ("max_shapes", max_shapes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if min(height, width) < 16:
            raise ValueError(f"images must be at least 16 x 16 pixels, got {height} x {width}")
        for class_id, name in enumerate(SHAPE_NAMES, start=1):
            self.add_class(SOURCE, class_id, name)
        rng = np.random.default_rng(seed)
        start = len(self.image_info)
        for i in range(count):
            bg_color, shapes = self.random_image(height, width, rng, max_shapes, max_overlap)
            self.add_image(SOURCE, image_id=start + i, path=None, width=width, height=height,
                           bg_color=bg_color, shapes=shapes, seed=seed)

    @staticmethod
    def random_shape(height, width, rng, bg_color):
        """One random shape ``(name, color, (cy, cx, size))`` lying fully inside the image."""
        name = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
        color = distinct_color(rng, [bg_color])
        low, high = max(4, min(height, width) // 16), max(5, min(height, width) // 4)
        size = int(rng.integers(low, high + 1))
        cy = int(rng.integers(size, height - size))
        cx = int(rng.integers(size, width - size))
        return name, color, (cy, cx, size)

    def random_image(self, height, width, rng, max_shapes=4, max_overlap=0.3):
        """Background colour and shapes of one image: ``(bg_color, [shape, ...])``."""
        bg_color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        wanted = int(rng.integers(1, max_shapes + 1))
        shapes, boxes = [], []
        for _ in range(wanted):
            for _attempt in range(10):
                shape = self.random_shape(height, width, rng, bg_color)
                box = np.array([shape_box(*shape[2])], dtype=np.float64)
                if not boxes or utils.compute_overlaps(box, np.array(boxes)).max() <= max_overlap:
                    shapes.append(shape)
                    boxes.append(box[0])
                    break
        return bg_color, shapes

    def _render(self, image_id):
        """(image [H, W, 3] uint8, masks [H, W, N] bool, class_ids [N] int32) of visible shapes."""
        info = self.image_info[image_id]
        height, width = info["height"], info["width"]
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = info["bg_color"]
        masks = np.zeros((height, width, len(info["shapes"])), dtype=bool)
        for k, (name, color, dims) in enumerate(info["shapes"]):
            masks[..., k] = shape_mask(name, dims, height, width)
            image[masks[..., k]] = color
        # A shape drawn later hides the pixels it covers from every shape below it.
        covered = np.zeros((height, width), dtype=bool)
        for k in range(masks.shape[-1] - 1, -1, -1):
            own = masks[..., k]
            masks[..., k] = own & ~covered
            covered |= own
        class_ids = np.array([SHAPE_NAMES.index(s[0]) + 1 for s in info["shapes"]], dtype=np.int32)
        visible = masks.any(axis=(0, 1))
        return image, masks[..., visible], class_ids[visible]

    def load_image(self, image_id):
        """The image: [height, width, 3] uint8 RGB."""
        return self._render(image_id)[0]

    def load_mask(self, image_id):
        """Visible instance masks [H, W, N] bool and class ids [N] int32 (1..3), bottom to top."""
        _, masks, class_ids = self._render(image_id)
        return masks, class_ids

    def image_reference(self, image_id):
        """A text description: the shapes of the image, bottom to top."""
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().image_reference(image_id)
        return ", ".join(name for name, _, _ in info["shapes"])


def shape_box(cy, cx, size):
    """Bounding box (y1, x1, y2, x2) pixels, exclusive, of a shape centred at (cy, cx)."""
    return (cy - size, cx - size, cy + size + 1, cx + size + 1)


def shape_mask(name, dims, height, width):
    """[height, width] bool pixels of one shape ``name`` with ``dims`` = (cy, cx, size)."""
    cy, cx, size = dims
    mask = np.zeros((height, width), dtype=bool)
    if name == "square":
        mask[max(cy - size, 0):cy + size + 1, max(cx - size, 0):cx + size + 1] = True
    elif name == "circle":
        rr, cc = skimage.draw.disk((cy, cx), size + 0.5, shape=(height, width))
        mask[rr, cc] = True
    elif name == "triangle":
        # Equilateral, pointing up, inscribed in the circle of radius ``size``.
        half = size * math.sqrt(3) / 2
        rows = np.array([cy - size, cy + size / 2, cy + size / 2])
        cols = np.array([cx, cx - half, cx + half])
        rr, cc = skimage.draw.polygon(rows, cols, shape=(height, width))
        mask[rr, cc] = True
    else:
        raise ValueError(f"shape name must be one of {SHAPE_NAMES}, got {name!r}")
    return mask



def make_dataset(count, seed, size=128):
    """A prepared ShapesDataset of ``count`` images of ``size`` px drawn from ``seed``."""
    dataset = ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------- command line
# A command-line problem the user can fix; main() prints it and returns exit code 2. The
# shared command-line helpers (mrcnn.cli_args) raise it.
UsageError = CliError


def _settings(small):
    """Sizes of a run: the config class, images, epochs, steps, evaluation images."""
    if small:
        return {"config": SmallShapesConfig, "images": 8, "val_images": 4, "epochs": 1,
                "steps": 2, "eval_limit": 3}
    return {"config": ShapesConfig, "images": 4000, "val_images": 50, "epochs": 12,
            "steps": ShapesConfig.STEPS_PER_EPOCH, "eval_limit": 100}



def resolve_weights(weights, logs, small=None):
    """Path of the weights named on the command line: "last" (newest checkpoint) or a file.

    "last" without --small takes the newest full-size run, never a newer --small one (a
    warning names those passed over); a --small run only when there is no other (with a
    warning). With --small, the newest --small run (mrcnn.cli_args.sample_weights).
    """
    return sample_weights(weights, logs, ShapesConfig.NAME, "samples/shapes.py", small)


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="shapes.py", description="Train, evaluate and run Mask R-CNN on synthetic shapes.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, weights_required):
        add_sample_arguments(p, DEFAULT_LOGS_DIR, weights_required)

    train = sub.add_parser("train", help="train from scratch (or resume with --weights)")
    common(train, weights_required=False)
    train.add_argument("--epochs", type=int, help="epoch to reach (default 12; 1 with --small)")
    train.add_argument("--steps", type=int, help="training steps per epoch")
    train.add_argument("--images", type=int, help="number of training images")
    train.add_argument("--lr", type=float, help="peak learning rate (default config LEARNING_RATE)")

    evaluate = sub.add_parser("evaluate", help="mAP@0.5 and mAP@[.5:.95] on held-out images")
    common(evaluate, weights_required=True)
    evaluate.add_argument("--limit", type=int, help="held-out images (default 100)")
    evaluate.add_argument("--report", metavar="DIR",
                          help="also write the evaluation report (per-class AP, confusion "
                               "matrix, PR curves, error gallery, report.html) to DIR")

    detect = sub.add_parser("detect", help="draw detections on a held-out image")
    common(detect, weights_required=True)
    detect.add_argument("--out", required=True, help="output picture, e.g. detections.png")
    detect.add_argument("--image", type=int, default=0, help="held-out image index (default 0)")
    return parser


def _load_inference_model(weights_path, logs, small):
    """Inference MaskRCNN with the config the checkpoint was trained with, weights loaded."""
    return load_sample_inference_model(weights_path, logs, lambda s: _settings(s)["config"],
                                       small)


def evaluate_model(model, limit, verbose=0):
    """Evaluate on ``limit`` held-out images (seed TEST_SEED): {"mAP50", "mAP", "images", ...}."""
    from mrcnn.evaluation import evaluate_dataset

    dataset = make_dataset(limit, TEST_SEED, size=int(model.config.IMAGE_MAX_DIM))
    return evaluate_dataset(model, dataset, verbose=verbose)


def draw_detections(model, out_path, image_indices=(0,), columns=3):
    """Detect on held-out images and save them with their detections (one panel each)."""
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
        visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"],
                                    dataset.class_names, r["scores"], ax=ax,
                                    title=f"held-out image {index}: {len(r['class_ids'])} found")
    visualize.save_figure(fig, out_path, close=True)
    return out_path


def _print_scores(scores):
    print(f"mAP@0.5       {scores['mAP50']:.3f}")
    print(f"mAP@[.5:.95]  {scores['mAP']:.3f}")
    print(f"images        {scores['images']}")


def cmd_train(args):
    """Train (from scratch, or resuming --weights), then evaluate and draw detections."""
    settings = _settings(bool(args.small))
    for name in ("epochs", "steps", "images"):
        check_positive(f"--{name}", getattr(args, name))
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
        total = epochs * steps
        schedule = lr_schedule_callback(learning_rate, total, warmup_steps=min(200, total // 10),
                                         first_step=model.epoch * steps)
        print(f"Training {len(train_set.image_ids)} images, epochs {model.epoch + 1}..{epochs} x "
              f"{steps} steps of {config.BATCH_SIZE} images, peak lr {learning_rate}; "
              f"checkpoints in {model.log_dir}")
        started = time.time()
        model.train(train_set, val_set, learning_rate=learning_rate, epochs=epochs, layers="all",
                    custom_callbacks=[schedule], verbose=1)
        print(f"Training took {(time.time() - started) / 60:.1f} min")
    log_dir = model.log_dir
    last = last_epoch_checkpoint(log_dir)
    del model

    inference, _ = _load_inference_model(last, args.logs, bool(args.small))
    scores = evaluate_model(inference, settings["eval_limit"])
    _print_scores(scores)
    picture = draw_detections(inference, os.path.join(log_dir, "detections.png"),
                              image_indices=range(6 if not args.small else 1))
    print(f"Detections drawn in {picture}")
    return 0


def cmd_evaluate(args):
    """Print mAP@0.5 and mAP@[.5:.95] on held-out images; with --report, write the report."""
    check_positive("--limit", args.limit)
    weights_path = resolve_weights(args.weights, args.logs, args.small)
    model, small = _load_inference_model(weights_path, args.logs, args.small)
    limit = args.limit or _settings(small)["eval_limit"]
    print(f"Evaluating {weights_path} on {limit} held-out images")
    _print_scores(evaluate_model(model, limit))
    if args.report:
        from mrcnn.evaluation import report

        dataset = make_dataset(limit, TEST_SEED, size=int(model.config.IMAGE_MAX_DIM))
        result = report(model, dataset, out_dir=args.report)
        print(result.table())
        print(f"Report written to {os.path.join(args.report, 'report.html')}")
    return 0


def cmd_detect(args):
    """Save a picture of the detections on one held-out image."""
    if args.image < 0:
        raise UsageError(f"--image must be >= 0, got {args.image}")
    weights_path = resolve_weights(args.weights, args.logs, args.small)
    model, _ = _load_inference_model(weights_path, args.logs, args.small)
    path = draw_detections(model, args.out, image_indices=[args.image], columns=1)
    print(f"Detections drawn in {path}")
    return 0


def main(argv=None):
    """Run the command line; returns the exit code (0 ok, 2 usage errors, 130 interrupted)."""
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "detect": cmd_detect}
    return run_sample_main("shapes.py", _build_parser(), commands, argv)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
