"""Inference benchmark: seconds per image of MaskRCNN.detect on a real photo.

    python bench/infer.py --backbone resnet101 --image-size 1024 --batch 1 --precision float32

Prints one JSON object: median / min / max seconds per image over --runs timed runs
after --warmup untimed ones, the parameter count, and the settings. Weights are random
(speed does not depend on them); the image is scikit-image's astronaut photo.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
IMAGES = ("astronaut", "coffee", "chelsea")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet101", choices=["resnet50", "resnet101"])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="float32", choices=sorted(PRECISIONS))
    parser.add_argument("--roi-align", default="crop_and_resize", choices=["crop_and_resize", "paper"])
    parser.add_argument("--image", default="astronaut", choices=IMAGES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=81)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import skimage.data
    import tensorflow as tf

    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    class BenchConfig(Config):
        NAME = "bench"
        BACKBONE = args.backbone
        NUM_CLASSES = args.num_classes
        GPU_COUNT = 1
        IMAGES_PER_GPU = args.batch
        IMAGE_MIN_DIM = min(800, args.image_size)
        IMAGE_MAX_DIM = args.image_size
        DTYPE_POLICY = PRECISIONS[args.precision]
        ROI_ALIGN_MODE = args.roi_align

    config = BenchConfig()
    with tempfile.TemporaryDirectory() as logs:
        t0 = time.perf_counter()
        model = MaskRCNN("inference", config, logs)
        build_s = time.perf_counter() - t0
    image = getattr(skimage.data, args.image)()
    images = [image] * args.batch
    for _ in range(args.warmup):
        model.detect(images)
    per_image = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        model.detect(images)
        per_image.append((time.perf_counter() - t0) / args.batch)
    result = {
        "benchmark": "infer",
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch": args.batch,
        "precision": args.precision,
        "roi_align": args.roi_align,
        "image": args.image,
        "runs": args.runs,
        "warmup": args.warmup,
        "median_s_per_image": statistics.median(per_image),
        "min_s_per_image": min(per_image),
        "max_s_per_image": max(per_image),
        "build_s": build_s,
        "params": int(model.keras_model.count_params()),
        "tensorflow": tf.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "detections": int(len(model.detect([image])[0]["class_ids"])),
        "image_shape": list(np.asarray(image).shape),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
