"""Soak test: memory stays flat over many detect() calls and training steps.

    python bench/soak.py                      # 1,000 images, 200 training steps
    python bench/soak.py --images 200 --steps 40

A tiny network (mrcnn.cli_args.TINY_OVERRIDES: ResNet-50 at 128 px, few ROIs, 4 classes,
random weights; the shapes sample's size) runs detect() on --images synthetic images of
varying sizes (each side 64..512 px, one image per call, seeded), then trains --steps steps
(shapes sample data, 20 steps per epoch, the heads, one train() call, checkpoints each
epoch). Prints one JSON object with the resident set size (RSS, from /proc/self/statm) at
image 100 and at the last image, its growth in percent (the soak criterion is < 5 %), images
per second between them, and the same for training (RSS after step 20, i.e. the first epoch,
and at the end; steps per second). Timings depend on the machine's load: it was shared when measured.
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

STEPS_PER_EPOCH = 20
MEASURE_AT = 100   # the image (and, scaled, the step) where the baseline RSS is read


def rss_mb():
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def soak_detect(config_class, count, seed=0):
    import numpy as np

    from mrcnn.model import MaskRCNN

    model = MaskRCNN("inference", config_class(), tempfile.mkdtemp())
    rng = np.random.default_rng(seed)
    marks, started = {}, None
    for index in range(1, count + 1):
        height, width = (int(v) for v in rng.integers(64, 513, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        model.detect([image])
        if index == min(MEASURE_AT, count):
            marks["rss_at_100_mb"], started = rss_mb(), time.perf_counter()
    elapsed = time.perf_counter() - started
    rss_end = rss_mb()
    base = marks["rss_at_100_mb"]
    later = count - min(MEASURE_AT, count)
    return {"images": count, "rss_at_100_mb": round(base, 1), "rss_at_end_mb": round(rss_end, 1),
            "rss_growth_pct": round(100 * (rss_end - base) / base, 2),
            "images_per_s": round(later / elapsed, 2) if later else None,
            "freezes": getattr(model._predict_fn, "freezes", 0)}


def soak_train(config_class, steps):
    import keras

    from mrcnn.model import MaskRCNN
    from samples.shapes import make_dataset

    epochs = max(1, steps // STEPS_PER_EPOCH)

    class Config(config_class):
        STEPS_PER_EPOCH = globals()["STEPS_PER_EPOCH"]
        VALIDATION_STEPS = 1

    readings = []

    class Memory(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            readings.append((time.perf_counter(), rss_mb()))

    model = MaskRCNN("training", Config(), tempfile.mkdtemp())
    train, val = make_dataset(64, 1, size=128), make_dataset(8, 2, size=128)
    # One train() call (one compile): what grows across its epochs would be a leak.
    model.train(train, val, learning_rate=0.001, epochs=epochs, layers="heads",
                custom_callbacks=[Memory()], verbose=0)
    (t0, base), (t1, end) = readings[0], readings[-1]
    return {"steps": epochs * STEPS_PER_EPOCH, "rss_after_step_20_mb": round(base, 1),
            "rss_at_end_mb": round(end, 1), "rss_growth_pct": round(100 * (end - base) / base, 2),
            "steps_per_s": round((len(readings) - 1) * STEPS_PER_EPOCH / (t1 - t0), 2)
            if len(readings) > 1 else None,
            "rss_each_epoch_mb": [round(r, 1) for _, r in readings],
            "layers": "heads"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    if args.images < 1 or args.steps < STEPS_PER_EPOCH:
        parser.error(f"--images must be >= 1 and --steps >= {STEPS_PER_EPOCH}")

    from mrcnn.cli_args import TINY_OVERRIDES
    from mrcnn.config import Config

    attrs = {**TINY_OVERRIDES, "NAME": "soak", "NUM_CLASSES": 4, "GPU_COUNT": 1,
             "IMAGES_PER_GPU": 1}
    config_class = type("SoakConfig", (Config,), attrs)
    started = time.perf_counter()
    result = {"detect": soak_detect(config_class, args.images)}
    result["train"] = soak_train(config_class, args.steps)
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["cpu_count"] = os.cpu_count()
    result["note"] = "shared 2-core machine, nice 10; tiny network, random weights"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
