"""Mask R-CNN on the balloon dataset (VIA polygons), and the "color splash" effect.

Dataset layout: ``<dataset>/train/`` and ``<dataset>/val/``, each holding the photos and
the VIA annotation file ``via_region_data.json``. Both VIA 1.x exports (a dict of images
whose "regions" are a dict or a list) and VIA 2.x files (a project with
"_via_img_metadata", or its exported annotations; "regions" a list) are read. Polygons
(and rect, circle, ellipse regions) become masks clipped to the image.

    python samples/balloon.py train --dataset /data/balloon --weights coco
    python samples/balloon.py train --dataset /data/balloon --weights last
    python samples/balloon.py splash --weights last --image photo.jpg
    python samples/balloon.py splash --weights last --video clip.mp4    # needs OpenCV

--weights: coco | imagenet | last | random | PATH (see mrcnn/cli_args.py). The small-run
flags --tiny, --image-size, --steps and --epochs shrink the run (e.g. for CI).
Exit status: 0 on success, 2 on a usage error.
"""
import argparse
import datetime
import logging
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import skimage.draw  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.dataset import Dataset, read_json_object  # noqa: E402
from mrcnn.cli_args import (  # noqa: E402
    CliError, add_common_arguments, build_model, flip_augmentation, make_run_config, network_flags,
    run_main)

logger = logging.getLogger(__name__)

ANNOTATION_FILE = "via_region_data.json"
SUBSETS = ("train", "val")
DEFAULT_EPOCHS = 30
# Luminance weights (ITU-R BT.709, as skimage.color.rgb2gray) of the grey background.
LUMA = np.array([0.2125, 0.7154, 0.0721])


class BalloonConfig(Config):
    """One class (balloon) + background; heads fine-tuned from COCO weights."""

    NAME = "balloon"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1
    STEPS_PER_EPOCH = 100
    DETECTION_MIN_CONFIDENCE = 0.9


# --------------------------------------------------------------------------- VIA reading
def read_via_regions(path):
    """Image entries of a VIA 1.x or 2.x annotation file.

    path: the JSON file.

    Returns: list of (filename, [shape_attributes dict, ...]) in file order. A VIA 2.x
    project is recognised by its "_via_img_metadata" key; "regions" may be a dict
    (VIA 1.x, keyed "0", "1", ...) or a list. Raises FileNotFoundError or ValueError
    naming the file and the bad entry.
    """
    data = read_json_object(path, "VIA annotation file")
    if "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
        if not isinstance(data, dict):
            raise ValueError(f"{path!r}: '_via_img_metadata' must be an object")
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise ValueError(f"{path!r}: entry {key!r} is not a VIA image record "
                             "(an object with a 'filename')")
        regions = entry.get("regions") or []
        if isinstance(regions, dict):
            regions = [regions[k] for k in sorted(regions, key=_region_order)]
        if not isinstance(regions, list):
            raise ValueError(f"{path!r}: 'regions' of {entry['filename']!r} must be a list or "
                             f"an object, got {type(regions).__name__}")
        shapes = []
        for region in regions:
            shape = region.get("shape_attributes") if isinstance(region, dict) else None
            if not isinstance(shape, dict):
                raise ValueError(f"{path!r}: a region of {entry['filename']!r} lacks "
                                 "'shape_attributes'")
            shapes.append(shape)
        entries.append((entry["filename"], shapes))
    return entries


def _region_order(key):
    return (0, int(key)) if str(key).isdigit() else (1, str(key))


def shape_to_mask(shape, height, width):
    """Rasterise one VIA shape: [height, width] bool, clipped to the image.

    shape: VIA "shape_attributes": polygon / polyline (all_points_x, all_points_y),
    rect (x, y, width, height), circle (cx, cy, r) or ellipse (cx, cy, rx, ry[, theta]),
    in pixels (x to the right, y down). Polygon vertices are pixel centres and the
    boundary is included (skimage.draw.polygon); a rect covers width x height pixels.
    Raises ValueError for other shapes or bad values.
    """
    name = shape.get("name")
    try:
        if name in ("polygon", "polyline"):
            xs = np.asarray(shape["all_points_x"], dtype=np.float64)
            ys = np.asarray(shape["all_points_y"], dtype=np.float64)
            if xs.shape != ys.shape or xs.ndim != 1 or len(xs) < 3:
                raise ValueError(f"polygon needs >= 3 points with as many x as y, got "
                                 f"{len(xs)} x and {len(ys)} y")
            rr, cc = skimage.draw.polygon(ys, xs, shape=(height, width))
        elif name == "rect":
            # Pixels x .. x + width - 1 and y .. y + height - 1, as VIA draws them.
            x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
            y1, x1 = max(0, int(round(y))), max(0, int(round(x)))
            y2, x2 = min(height, int(round(y + h))), min(width, int(round(x + w)))
            rr, cc = np.mgrid[y1:max(y1, y2), x1:max(x1, x2)]
        elif name == "circle":
            rr, cc = skimage.draw.disk((float(shape["cy"]), float(shape["cx"])),
                                       float(shape["r"]), shape=(height, width))
        elif name == "ellipse":
            rr, cc = skimage.draw.ellipse(float(shape["cy"]), float(shape["cx"]),
                                          float(shape["ry"]), float(shape["rx"]),
                                          shape=(height, width),
                                          rotation=-float(shape.get("theta", 0.0)))
        else:
            raise ValueError(f"unsupported VIA shape {name!r} (polygon, polyline, rect, "
                             "circle and ellipse are read)")
    except KeyError as err:
        raise ValueError(f"VIA {name} shape lacks {err.args[0]!r}") from None
    mask = np.zeros((height, width), dtype=bool)
    mask[rr, cc] = True
    return mask


def image_size(path):
    """(height, width) of an image file, read from its header (no decoding)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return height, width


class BalloonDataset(Dataset):
    """Balloon instances from VIA annotation files (one class, "balloon")."""

    def load_balloon(self, dataset_dir, subset, annotation_file=ANNOTATION_FILE,
                     keep_unannotated=False):
        """Add the images of ``<dataset_dir>/<subset>/`` and their VIA regions.

        subset: "train" or "val". annotation_file: name of the VIA file in that folder.
        keep_unannotated: keep images without regions (as negatives); by default they are
            skipped, because VIA lists images that were never annotated too.
        Missing image files and shapes that cannot be read are skipped with a warning
        naming them. Raises FileNotFoundError / ValueError for a missing or bad file.
        """
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        folder = os.path.join(os.fspath(dataset_dir), subset)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"balloon subset folder not found: {folder!r}")
        path = os.path.join(folder, annotation_file)
        self.add_class("balloon", 1, "balloon")
        for filename, shapes in read_via_regions(path):
            if not shapes and not keep_unannotated:
                logger.info("%s: %s has no region; skipped", path, filename)
                continue
            image_path = os.path.join(folder, filename)
            if not os.path.isfile(image_path):
                logger.warning("%s: image file not found: %s; skipped", path, image_path)
                continue
            height, width = image_size(image_path)
            self.add_image("balloon", image_id=filename, path=image_path, width=width,
                           height=height, polygons=shapes)

    def load_mask(self, image_id):
        """masks [H, W, N] bool (clipped to the image) and class_ids [N] int32 (all 1).

        Shapes that cannot be read, or that cover no pixel of the image, are skipped with
        a warning naming the image.
        """
        info = self.image_info[image_id]
        if info["source"] != "balloon":
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks = []
        for k, shape in enumerate(info["polygons"]):
            try:
                mask = shape_to_mask(shape, height, width)
            except ValueError as err:
                logger.warning("%s, region %d: %s; skipped", info["path"], k, err)
                continue
            if not mask.any():
                logger.warning("%s, region %d lies outside the %dx%d image; skipped",
                               info["path"], k, height, width)
                continue
            masks.append(mask)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
        return np.stack(masks, axis=-1), np.ones(len(masks), dtype=np.int32)

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]


# --------------------------------------------------------------------------- splash
def color_splash(image, mask):
    """Keep the colour inside the masks, turn the rest grey.

    image: [H, W, 3] RGB (uint8 or values in 0..255).
    mask: [H, W, N] bool instance masks (N may be 0: everything grey), or [H, W] bool.

    Returns: [H, W, 3] uint8. Grey = round(0.2125 R + 0.7154 G + 0.0721 B) in all three
    channels.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    if mask.ndim == 2:
        mask = mask[..., None]
    if mask.ndim != 3 or mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask must be [H, W, N] with H, W = {image.shape[:2]}, got shape "
                         f"{mask.shape}")
    grey = np.clip(np.round(image.astype(np.float64) @ LUMA), 0, 255).astype(np.uint8)
    out = np.repeat(grey[..., None], 3, axis=-1)
    keep = np.any(mask.astype(bool), axis=-1)
    out[keep] = np.clip(image[keep], 0, 255).astype(np.uint8)
    return out


def _output_path(output_dir, stem, ext):
    os.makedirs(output_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    return os.path.join(output_dir, f"splash_{stem}_{stamp}{ext}")


def splash_image(model, image_path, output_dir):
    """Detect balloons in one image file and save its color splash; returns the PNG path."""
    import skimage.io

    from mrcnn.dataset import read_rgb_image

    try:
        image = read_rgb_image(image_path)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None
    result = model.detect([image])[0]
    splash = color_splash(image, result["masks"])
    stem = os.path.splitext(os.path.basename(image_path))[0]
    path = _output_path(output_dir, stem, ".png")
    skimage.io.imsave(path, splash, check_contrast=False)
    print(f"{len(result['class_ids'])} balloon(s); saved {path}")
    return path


def splash_video(model, video_path, output_dir):
    """Color splash of every frame of a video (OpenCV); returns the .avi path."""
    try:
        import cv2
    except ImportError:
        raise CliError("--video needs OpenCV to read and write videos: pip install "
                       "opencv-python-headless (or use --image)") from None
    if not os.path.isfile(video_path):
        raise CliError(f"video file not found: {video_path!r}")
    capture = cv2.VideoCapture(video_path)
    if not capture.isOpened():
        raise CliError(f"OpenCV cannot read the video {video_path!r}")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    stem = os.path.splitext(os.path.basename(video_path))[0]
    path = _output_path(output_dir, stem, ".avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = frame[..., ::-1]                     # OpenCV frames are BGR
            result = model.detect([rgb])[0]
            writer.write(np.ascontiguousarray(color_splash(rgb, result["masks"])[..., ::-1]))
            count += 1
    finally:
        capture.release()
        writer.release()
    if not count:
        raise CliError(f"no frame could be read from {video_path!r}")
    print(f"{count} frame(s); saved {path}")
    return path


# --------------------------------------------------------------------------- commands
def load_dataset(dataset_dir, subset):
    """A prepared BalloonDataset of ``subset``; bad paths become CliErrors."""
    dataset = BalloonDataset()
    try:
        dataset.load_balloon(dataset_dir, subset)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None
    if not dataset.image_info:
        raise CliError(f"no annotated image found in {os.path.join(dataset_dir, subset)!r}")
    dataset.prepare()
    return dataset


def train(args):
    """Fine-tune the network heads (matterport's recipe: 30 epochs of heads)."""
    if not args.dataset:
        raise CliError("train needs --dataset DIR (with train/ and val/ subfolders)")
    dataset_train = load_dataset(args.dataset, "train")
    dataset_val = load_dataset(args.dataset, "val")
    config = make_run_config(BalloonConfig, args)
    config.display()
    model = build_model("training", config, args.weights, args.logs, download=args.download,
                        run_settings=network_flags(args))
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS
    if epochs < 1:
        raise CliError(f"--epochs must be >= 1, got {epochs}")
    print(f"Training network heads to epoch {epochs}")
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE, epochs=epochs,
                layers="heads", augmentation=flip_augmentation())
    print(f"Checkpoints in {model.log_dir}")
    return model


def splash(args):
    """Color splash of --image or --video with an inference model."""
    if bool(args.image) == bool(args.video):
        raise CliError("splash needs exactly one of --image PATH or --video PATH")
    if args.image and not os.path.isfile(args.image):
        raise CliError(f"image file not found: {args.image!r}")
    config = make_run_config(BalloonConfig, args, GPU_COUNT=1, IMAGES_PER_GPU=1)
    model = build_model("inference", config, args.weights, args.logs, download=args.download)
    if args.image:
        return splash_image(model, args.image, args.output)
    return splash_video(model, args.video, args.output)


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train Mask R-CNN to detect balloons, or color-splash an image or video.")
    parser.add_argument("command", choices=("train", "splash"))
    parser.add_argument("--dataset", metavar="DIR", help="balloon folder (train/, val/)")
    parser.add_argument("--image", metavar="PATH", help="splash: an image file")
    parser.add_argument("--video", metavar="PATH", help="splash: a video file (needs OpenCV)")
    parser.add_argument("--output", default=".", metavar="DIR",
                        help="splash: folder of the output file (default: current folder)")
    add_common_arguments(parser, weights_flag="--weights", weights_dest="weights")
    return parser


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 usage error)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    print(f"Command: {args.command}, weights: {args.weights}, logs: {args.logs}")
    return run_main(train if args.command == "train" else splash, args)


if __name__ == "__main__":
    sys.exit(main())
