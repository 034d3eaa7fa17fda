"""Mask R-CNN on the balloon dataset (VIA polygons), and the "color splash" effect.

Dataset layout: ``<dataset>/train/`` and ``<dataset>/val/``, each holding the photos and
the VIA annotation file ``via_region_data.json``, read by ``mrcnn.datasets.ViaDataset``:
VIA 1.x exports (a dict of images whose "regions" are a dict or a list) and VIA 2.x files
(a project with "_via_img_metadata", or its exported annotations; "regions" a list).
Polygons (and rect, circle, ellipse regions) become masks clipped to the image.

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

from mrcnn.config import Config  # noqa: E402
from mrcnn.cli_args import (  # noqa: E402
    CliError, add_common_arguments, build_model, flip_augmentation, make_run_config, network_flags,
    run_main)
from mrcnn.datasets.common import image_size  # noqa: E402,F401  (re-exported)
from mrcnn.datasets.via import ViaDataset, read_via_regions, shape_to_mask  # noqa: E402,F401

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


# --------------------------------------------------------------------------- dataset
class BalloonDataset(ViaDataset):
    """Balloon instances from VIA annotation files (one class, "balloon")."""

    def load_balloon(self, dataset_dir, subset, annotation_file=ANNOTATION_FILE,
                     keep_unannotated=False, strict=True):
        """Add the images of ``<dataset_dir>/<subset>/`` and their VIA regions.

        subset: "train" or "val". annotation_file: name of the VIA file in that folder.
        keep_unannotated: keep images without regions (as negatives); by default they are
            skipped, because VIA lists images that were never annotated too.
        strict: False skips malformed regions with a MalformedAnnotationWarning naming
            them (see mrcnn.datasets.ViaDataset.load_via); True raises.
        Missing image files are skipped with a warning naming them. Raises
        FileNotFoundError / ValueError for a missing or bad file.
        """
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        folder = os.path.join(os.fspath(dataset_dir), subset)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"balloon subset folder not found: {folder!r}")
        return self.load_via(os.path.join(folder, annotation_file), class_name="balloon",
                             keep_unannotated=keep_unannotated, source="balloon", strict=strict)


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
