"""What a user waits for at the first detect() calls: seconds of calls 1..N of a fresh model.

    python bench/first_calls.py --backbone resnet50 --image-size 128 --calls 10

Prints one JSON object: the seconds of each detect() call on one image (scikit-image's
astronaut, resized by the model to --image-size) of a freshly built inference model with
random weights, the first, second and tenth call, how many times the predictor froze the
graph and on which call, and the settings. Each call is one process-level measurement (no
warm-up: the warm-up is what is measured); run it twice and compare medians when the machine
is shared. ``--calls 300`` shows where freezing starts paying off.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet50", choices=("resnet50", "resnet101"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--freeze-after", type=int, default=None, metavar="N",
                        help="freeze on the N-th call (the policy before 'pays for itself' "
                             "was N = 2); default: the predictor's own rule")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls must be >= 1, got {args.calls}")

    import tempfile

    import skimage.data

    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    class BenchConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 4
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        BACKBONE = args.backbone
        IMAGE_MIN_DIM = args.image_size
        IMAGE_MAX_DIM = args.image_size

    image = skimage.data.astronaut()
    started = time.perf_counter()
    model = MaskRCNN("inference", BenchConfig(), tempfile.mkdtemp())
    build = time.perf_counter() - started
    if args.freeze_after is not None:
        from mrcnn.predictor import Predictor
        model._predict_fn = Predictor(model.keras_model, freeze_after=args.freeze_after)
    seconds, freeze_call = [], None
    for call in range(1, args.calls + 1):
        started = time.perf_counter()
        model.detect([image])
        seconds.append(time.perf_counter() - started)
        if freeze_call is None and getattr(model._predict_fn, "freezes", 0):
            freeze_call = call

    def at(k):
        return round(seconds[k - 1], 3) if len(seconds) >= k else None

    print(json.dumps({
        "backbone": args.backbone, "image_size": args.image_size, "calls": args.calls,
        "freeze_after": args.freeze_after, "build_s": round(build, 2), "first_s": at(1), "second_s": at(2), "tenth_s": at(10),
        "last_s": at(args.calls), "total_s": round(sum(seconds), 2),
        "freezes": getattr(model._predict_fn, "freezes", 0), "freeze_call": freeze_call,
        "seconds": [round(s, 3) for s in seconds],
        "cpu_count": os.cpu_count(), "note": "shared 2-core machine; random weights"}))


if __name__ == "__main__":
    main()
