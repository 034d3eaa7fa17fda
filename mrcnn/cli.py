"""The ``mrcnn`` command: ``mrcnn detect`` runs a model on images, ``mrcnn export`` exports it.

    mrcnn detect --weights W [--config module:Class | --num-classes K --backbone B]
                 [--class-names FILE] INPUT... --out DIR
    mrcnn detect --weights W ... --export FORMAT --out PATH      (same as mrcnn export)
    mrcnn export --weights W ... --format FORMAT --out PATH
    mrcnn convert --from labelme|via|instance-png|mask-folder SRC --to coco OUT  (#15)
    mrcnn evaluate --weights W ... --from coco|labelme|via|instance-png|mask-folder SRC
                   [--images DIR ...] --out DIR                                 (#24)

INPUT is an image file, a folder (its image files, sorted) or a glob pattern. ``detect``
writes one overlay PNG per image (``visualize.display_instances``) and, for the run,
``results.json`` (COCO results, RLE masks) and ``images.json`` (a COCO file with the images
and categories, so that ``COCO("images.json").loadRes("results.json")`` works). Unreadable
images are reported and skipped.

``evaluate`` runs the model over annotated images (any format ``convert`` reads, or COCO)
and writes the evaluation report (:mod:`mrcnn.report`, :mod:`mrcnn.report_files`):
metrics.json, the confusion matrix (CSV, PNG), PR curves, an error gallery,
detections.json, ground_truth.json and report.html; it prints the per-class table.

Each subcommand is a pair ``add_parser(subparsers)`` / ``main(args)``; a new one is wired in
with one line in ``SUBCOMMANDS`` below.
"""
import argparse
import glob
import importlib
import json
import logging
import os
import sys
import time

from mrcnn import cli_args
from mrcnn.export import FORMATS

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------------------- model flags
def add_model_arguments(parser):
    """Weights, config and class flags shared by ``detect`` and ``export``."""
    cli_args.add_common_arguments(parser, weights_flag="--weights", weights_dest="weights")
    parser.add_argument("--config", default=None, metavar="MODULE:CLASS",
                        help="a Config subclass to use, e.g. samples.balloon:BalloonConfig")
    parser.add_argument("--num-classes", type=int, default=None, metavar="K",
                        help="classes including the background (default: the config's, 81 "
                             "without --config)")
    parser.add_argument("--class-names", default=None, metavar="FILE",
                        help="class names, one a line, for ids 1..K-1 (or 0..K-1 with BG first)")


def load_config_class(spec):
    """The Config subclass ``spec`` ("package.module:ClassName") names. Raises CliError."""
    from mrcnn.config import Config
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise cli_args.CliError(f"--config must be MODULE:CLASS, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise cli_args.CliError(f"--config {spec}: cannot import {module_name!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Config)):
        raise cli_args.CliError(f"--config {spec}: {class_name!r} is not a Config subclass "
                                f"in {module_name}")
    return cls


def inference_config(args):
    """The inference config of the flags: one image a batch, overrides applied."""
    from mrcnn.config import Config
    if args.config:
        base = load_config_class(args.config)
    else:
        base = type("InferenceConfig", (Config,), {"NAME": "mrcnn", "NUM_CLASSES": 81})
    attrs = {"GPU_COUNT": 1, "IMAGES_PER_GPU": 1}
    if args.num_classes is not None:
        if args.num_classes < 2:
            raise cli_args.CliError(f"--num-classes must be >= 2 (background + 1), got "
                                    f"{args.num_classes}")
        attrs["NUM_CLASSES"] = args.num_classes
    return cli_args.make_run_config(base, args, **attrs)


def class_names(path, num_classes):
    """["BG", name 1, ..., name K-1] from a file of K-1 (or K, "BG" first) lines, or numbers."""
    if path is None:
        return ["BG"] + [f"class {i}" for i in range(1, num_classes)]
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise cli_args.CliError(f"--class-names: cannot read {path!r}: {err}") from None
    if len(names) == num_classes - 1:
        names = ["BG"] + names
    if len(names) != num_classes:
        raise cli_args.CliError(f"--class-names {path!r} has {len(names)} names; the model has "
                                f"{num_classes} classes (give {num_classes - 1}, or "
                                f"{num_classes} with the background first)")
    return names


def build_inference_model(args):
    """(config, MaskRCNN in inference mode with the weights of --weights)."""
    config = inference_config(args)
    model = cli_args.build_model("inference", config, args.weights, args.logs,
                                 download=args.download)
    return config, model


# ---------------------------------------------------------------------------- inputs
def expand_inputs(inputs):
    """Image paths of files, folders (their image files, sorted) and glob patterns, in order.

    A path that matches nothing is returned as is, so that it is reported as unreadable.
    Duplicates are dropped.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.exists(item):
            found = [item]
        else:
            found = sorted(glob.glob(item, recursive=True)) or [item]
        paths.extend(found)
    seen = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def read_image(path):
    """[H, W, C] uint8 array of an image file (raises on unreadable files)."""
    import numpy as np
    import skimage.io
    image = skimage.io.imread(path)
    if image.dtype != np.uint8:
        raise ValueError(f"expected 8-bit pixels, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"not an RGB, RGBA or grayscale image: shape {image.shape}")
    return image


class Progress:
    """A one-line progress bar with images/s on a stream (stderr by default)."""

    def __init__(self, total, stream=None, width=30):
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()

    def step(self, count=1):
        self.done += count
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {rate:.2f} images/s")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()
        return self.done / max(time.perf_counter() - self.start, 1e-9)


# ---------------------------------------------------------------------------- detect
def add_detect_parser(subparsers):
    parser = subparsers.add_parser(
        "detect", help="run a model on images, folders or glob patterns",
        description="Detect instances; write overlay PNGs and COCO results JSON to --out.")
    add_model_arguments(parser)
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files, folders or glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (with --export: the exported artifact's path)")
    parser.add_argument("--export", choices=FORMATS, default=None, metavar="FORMAT",
                        help=f"export the model instead ({', '.join(FORMATS)})")
    parser.set_defaults(func=detect_main)
    return parser


def detect_main(args):
    """Run ``mrcnn detect``; returns a summary dict (also logged)."""
    if args.export:
        return export_model(args, args.export)
    if not args.inputs:
        raise cli_args.CliError("detect needs at least one INPUT (or --export FORMAT)")
    paths = expand_inputs(args.inputs)
    config, model = build_inference_model(args)
    names = class_names(args.class_names, config.NUM_CLASSES)
    os.makedirs(args.out, exist_ok=True)

    import numpy as np
    from pycocotools import mask as mask_utils

    from mrcnn import visualize
    from mrcnn.coco import write_results_json
    images_info, results, skipped, used = [], [], [], set()
    progress = Progress(len(paths))
    for path in paths:
        try:
            image = read_image(path)
        except Exception as err:  # noqa: BLE001 -- any unreadable file is skipped
            skipped.append(path)
            progress.stream.write("\n")
            logger.warning("skipped %s: %s", path, err)
            progress.step(0)
            continue
        r = model.detect([image])[0]
        image_id = len(images_info) + 1
        stem = os.path.splitext(os.path.basename(path))[0]
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        images_info.append({"id": image_id, "file_name": os.path.abspath(path),
                            "height": int(image.shape[0]), "width": int(image.shape[1])})
        ax = visualize.display_instances(image if image.ndim == 3 else np.stack([image] * 3, -1),
                                         r["rois"], r["masks"], r["class_ids"], names,
                                         r["scores"], figsize=(8, 8))
        visualize.save_figure(ax, os.path.join(args.out, f"{name}.png"), close=True)
        for i in range(len(r["class_ids"])):
            y1, x1, y2, x2 = (int(v) for v in r["rois"][i])
            rle = mask_utils.encode(np.asfortranarray(r["masks"][:, :, i].astype(np.uint8)))
            results.append({"image_id": image_id, "category_id": int(r["class_ids"][i]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(r["scores"][i]),
                            "segmentation": {"size": [int(s) for s in rle["size"]],
                                             "counts": rle["counts"].decode("ascii")}})
        progress.step()
    rate = progress.close()
    write_results_json(results, os.path.join(args.out, "results.json"))
    categories = [{"id": i, "name": n} for i, n in enumerate(names) if i > 0]
    with open(os.path.join(args.out, "images.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images_info, "categories": categories, "annotations": []}, f)
    summary = {"images": len(images_info), "skipped": len(skipped), "detections": len(results),
               "images_per_s": round(rate, 3), "out": args.out}
    print(f"{len(images_info)} images, {len(results)} detections, {len(skipped)} skipped "
          f"(unreadable){': ' + ', '.join(skipped) if skipped else ''}; {rate:.2f} images/s; "
          f"wrote {args.out}")
    return summary


# ---------------------------------------------------------------------------- export
def add_export_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="export a self-contained serving model (SavedModel, ONNX, LiteRT)",
        description="Export: raw uint8 images in, detect()'s results out (see README, Deploy).")
    add_model_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="tf_saved_model")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="a folder for tf_saved_model, a file for onnx / litert")
    parser.set_defaults(func=lambda args: export_model(args, args.format))
    return parser


def export_model(args, format):
    """Build the model of the flags and export it to ``args.out``.

    On a Keras backend other than TensorFlow it stops first, with a CliError naming it."""
    cli_args.quiet_tensorflow()
    from mrcnn import backend
    from mrcnn.export import require_tensorflow
    try:
        require_tensorflow(format)
    except backend.BackendError as err:
        raise cli_args.CliError(str(err)) from None
    _, model = build_inference_model(args)
    path = model.export(args.out, format=format)
    print(f"exported {format} to {path}")
    return {"format": format, "out": path}


# ---------------------------------------------------------------------------- evaluate
def _score_threshold(text):
    """argparse type of --score-threshold: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def add_evaluate_parser(subparsers):
    from mrcnn.datasets import convert
    from mrcnn.report import IOU_TYPES

    parser = subparsers.add_parser(
        "evaluate", help="evaluation report of a model on annotated images",
        description="Run the model over annotated images (COCO JSON + images, or any format "
                    "of `mrcnn convert`) and write the evaluation report to --out: "
                    "metrics.json, confusion matrix, PR curves, error gallery, "
                    "detections.json, ground_truth.json, report.html. The model's classes "
                    "(--class-names FILE, else the data's) are matched to the data's by name.")
    add_model_arguments(parser)
    convert.add_source_arguments(parser, formats=convert.SOURCE_FORMATS,
                                 names_flag="--data-class-names")
    parser.add_argument("--out", required=True, metavar="DIR", help="report folder")
    parser.add_argument("--score-threshold", type=_score_threshold, default=0.5, metavar="S",
                        help="score of the TP / FP / FN counts and the confusion matrix "
                             "(default 0.5)")
    parser.add_argument("--iou-type", choices=IOU_TYPES, default="segm",
                        help="IoU of the counts and curves: masks (segm) or boxes (bbox)")
    parser.add_argument("--gallery", type=int, default=8, metavar="N",
                        help="error images to draw, the most FP + FN first (default 8)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="evaluate the first N images only")
    parser.set_defaults(func=evaluate_main)
    return parser


def evaluate_main(args):
    """Run ``mrcnn evaluate``; returns a summary dict (the table is printed)."""
    from mrcnn.datasets import convert
    from mrcnn.report import report

    for flag, value in (("--gallery", args.gallery), ("--limit", args.limit)):
        if value is not None and value < (0 if flag == "--gallery" else 1):
            raise cli_args.CliError(f"{flag} must be >= {0 if flag == '--gallery' else 1}, "
                                    f"got {value}")
    try:
        dataset = convert.load_source(args)
    except (FileNotFoundError, ValueError) as err:
        raise cli_args.CliError(f"--from {args.from_format} {args.src}: {err}") from None
    cli_args.quiet_tensorflow()     # a --config module may import TensorFlow
    config = inference_config(args)
    names = class_names(args.class_names, config.NUM_CLASSES) if args.class_names else None
    # Class names are checked before the model is built (usage errors come first).
    from mrcnn.report import model_class_names
    probe = type("Probe", (), {"config": config})()
    try:
        model_class_names(probe, dataset, names)
    except ValueError as err:
        raise cli_args.CliError(str(err)) from None
    _, model = build_inference_model(args)
    count = len(dataset.image_ids) if args.limit is None else min(args.limit,
                                                                   len(dataset.image_ids))
    progress = Progress(count)
    result = report(model, dataset, limit=args.limit, score_threshold=args.score_threshold,
                    iou_type=args.iou_type, class_names=names, out_dir=args.out,
                    gallery=args.gallery, progress=progress)
    progress.close()
    print(result.table())
    if result.skipped:
        print(f"{len(result.skipped)} image(s) skipped (unreadable): "
              + ", ".join(str(s["file_name"]) for s in result.skipped))
    print(f"wrote {os.path.join(args.out, 'report.html')}")
    return {"images": len(result.images), "skipped": len(result.skipped), "out": args.out,
            "segm_AP": result.summary["segm"]["AP"], "bbox_AP": result.summary["bbox"]["AP"]}


# ---------------------------------------------------------------------------- main
def add_convert_parser(subparsers):
    """``convert``: annotations (labelme, VIA, instance PNGs, mask folders) to COCO (#15)."""
    from mrcnn.datasets import convert
    return convert.add_parser(subparsers)


# (name, add_parser): one line a subcommand.
SUBCOMMANDS = [
    ("detect", add_detect_parser),
    ("export", add_export_parser),
    ("convert", add_convert_parser),
    ("evaluate", add_evaluate_parser),
]


def build_parser():
    parser = argparse.ArgumentParser(prog="mrcnn",
                                     description="Mask R-CNN: detect, export, convert, evaluate.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _, add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv=None):
    """Entry point of the ``mrcnn`` console script and of ``python -m mrcnn``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    returned = []
    rc = cli_args.run_main(lambda a: returned.append(args.func(a)), args)
    # A subcommand may return its exit status (convert does); a dict is a summary (0).
    status = returned[0] if returned and isinstance(returned[0], int) else 0
    return rc or status


if __name__ == "__main__":
    sys.exit(main())
