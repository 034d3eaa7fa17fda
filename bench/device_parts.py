"""The parts of bench/device_check.sh: GPU speed figures, several settings per process.

    python bench/device_parts.py detect --backbone resnet101 --out parts/detect.jsonl
    python bench/device_parts.py train --backbone resnet50 --out parts/train.jsonl
    python bench/device_parts.py shapes --budget 150 --out parts/shapes.jsonl

Each part writes one JSON object a line to --out as soon as a setting is measured (and
flushes), so that a part stopped by its time limit keeps what it finished; a setting that
fails writes {"key": ..., "error": ...} and the next one runs. device_check.sh collects the
lines. One process a part: a model is built once per precision and serves every batch size
(the graphs do not depend on BATCH_SIZE; only detect()'s padding and the data do), so only
the compilations are paid per setting.

- detect: ms per image of ``MaskRCNN.detect`` on scikit-image's astronaut photo (molded to
  --image-size), random weights pushed to DETECTION_MAX_INSTANCES detections (the mask
  head on every slot, bench/infer.py's default), median of --runs calls after --warmup.
- train: images/s of ``train_on_batch`` on a fixed batch of synthetic shapes at
  --image-size, all layers, median step after --warmup steps (the step alone: no input
  pipeline; the outputs are NumPy, so each step has finished on the device).
- shapes: samples/shapes.py's training job (ShapesConfig: 12 epochs of 120 steps of 8
  images, the same learning-rate schedule, train/validation seeds) with the mask mAP@0.5 of
  the sample's evaluation (evaluate_dataset on the held-out TEST_SEED images) after each
  epoch; it stops at --target or when --budget seconds have passed since the part started.
  The wall time to the target counts everything from the model's build (compilations,
  data loading and the evaluations included).

--tiny shrinks every model (samples' --tiny sizes, 64 px) and the schedules, for the CPU
test (tests/test_device_check.py). The Keras backend is $KERAS_BACKEND (device_check.sh
sets jax).
"""
import argparse
import copy
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
logger = logging.getLogger("bench.device_parts")


def csv(kind):
    """argparse type: a comma-separated list of ``kind``."""
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    for name in ("detect", "train", "shapes"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True, help="JSON-lines file (appended to)")
        p.add_argument("--tiny", action="store_true", help="tiny models, for a CPU test")
        if name in ("detect", "train"):
            p.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
            p.add_argument("--image-size", type=int, default=1024)
            p.add_argument("--precisions", type=csv(str), default=["float32", "bfloat16"])
            p.add_argument("--warmup", type=int, default=2)
        if name == "detect":
            p.add_argument("--batches", type=csv(int), default=[1, 8])
            p.add_argument("--runs", type=int, default=5)
        if name == "train":
            p.add_argument("--batches", type=csv(int), default=[2, 8])
            p.add_argument("--steps", type=int, default=10)
        if name == "shapes":
            p.add_argument("--budget", type=float, default=150.0,
                           help="seconds: no epoch starts after this")
            p.add_argument("--target", type=float, default=0.95, help="mask mAP@0.5 to reach")
            p.add_argument("--eval-images", type=int, default=None,
                           help="held-out images (default: the sample's, 100)")
    args = parser.parse_args(argv)
    for precision in getattr(args, "precisions", []):
        if precision not in PRECISIONS:
            parser.error(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return args


class Lines:
    """Appends JSON objects to a file, one a line, flushed at once."""

    def __init__(self, path):
        self.path = path

    def write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        logger.info("%s", record)


def run_setting(lines, key, function):
    """Write ``{"key": key, **function()}``, or ``{"key": key, "error": ...}`` when it raises."""
    try:
        lines.write({"key": key, **function()})
    except Exception as err:  # noqa: BLE001 -- a failed setting must not stop the others
        traceback.print_exc()
        lines.write({"key": key, "error": f"{type(err).__name__}: {err}"[:2000]})


def with_attrs(base, **attrs):
    """An instance of a subclass of Config class ``base`` with ``attrs`` set."""
    return type(base.__name__, (base,), attrs)()


def tiny_attrs(size=64):
    """--tiny: the command line's --tiny sizes (mrcnn.cli_args.TINY_OVERRIDES) at ``size``
    px with the compact sample's small backbone (mrcnn.compact.small_backbone) instead of
    the ResNet: the CPU test checks the script, and a ResNet's XLA compilation on a CPU
    takes minutes."""
    from mrcnn.cli_args import TINY_OVERRIDES
    from mrcnn.compact import small_backbone
    attrs = dict(TINY_OVERRIDES)
    attrs.pop("IMAGES_PER_GPU")
    attrs.update(BACKBONE=staticmethod(small_backbone), IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size,
                 RPN_ANCHOR_SCALES=(4, 8, 16, 32, 64))
    return attrs


def seconds(function, warmup, runs):
    """Median, min and max seconds of ``runs`` calls of ``function`` after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


# ---------------------------------------------------------------------------------- detect
def detect_part(args, lines):
    import numpy as np
    import skimage.data

    from infer import set_detection_count
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    image = skimage.data.astronaut()
    extra = tiny_attrs(args.image_size) if args.tiny else {}
    for precision in args.precisions:
        attrs = {**dict(NAME="device", BACKBONE=args.backbone, NUM_CLASSES=81, GPU_COUNT=1,
                        IMAGE_MIN_DIM=min(800, args.image_size), IMAGE_MAX_DIM=args.image_size,
                        DTYPE_POLICY=PRECISIONS[precision], DETECTION_MIN_CONFIDENCE=0.0,
                        DETECTION_MAX_INSTANCES=100), **extra}
        model = None
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as logs:
                model = MaskRCNN("inference", with_attrs(Config, IMAGES_PER_GPU=args.batches[0],
                                                         **attrs), logs)
            set_detection_count(model, [image], model.config.DETECTION_MAX_INSTANCES)
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            for batch in args.batches:
                lines.write({"key": f"{precision}_batch{batch}",
                             "error": f"build: {type(err).__name__}: {err}"[:2000]})
            continue
        build_s = time.perf_counter() - started
        for batch in args.batches:
            # The same graph and weights; only detect()'s batching follows the config.
            view = copy.copy(model)
            view.config = with_attrs(Config, IMAGES_PER_GPU=batch, **attrs)
            images = [image] * batch

            def measure():
                first = time.perf_counter()
                found = view.detect(images)
                first_s = time.perf_counter() - first
                median, low, high = seconds(lambda: view.detect(images), args.warmup, args.runs)
                return {"backbone": args.backbone, "tiny": args.tiny, "precision": precision,
                        "batch": batch, "image_size": args.image_size,
                        "ms_per_image": 1000 * median / batch,
                        "ms_per_image_min": 1000 * low / batch,
                        "ms_per_image_max": 1000 * high / batch,
                        "first_call_s": first_s, "build_s": build_s,
                        "detections": int(len(found[0]["class_ids"])),
                        "runs": args.runs, "warmup": args.warmup}

            run_setting(lines, f"{precision}_batch{batch}", measure)
        del model


# ---------------------------------------------------------------------------------- train
def train_part(args, lines):
    import numpy as np

    from mrcnn.data import make_sequence
    from mrcnn.model import MaskRCNN
    from samples.shapes import ShapesDataset
    from train import bench_config

    dataset = ShapesDataset()
    dataset.load_shapes(max(args.batches), args.image_size, args.image_size, seed=1)
    dataset.prepare()
    extra = tiny_attrs(args.image_size) if args.tiny else {}

    def config_of(precision, batch):
        settings = argparse.Namespace(backbone=args.backbone, batch=batch,
                                      image_size=args.image_size, norm="batch", gpu_count=1,
                                      precision=precision)
        config = bench_config(settings)
        return with_attrs(type(config), **extra) if extra else config

    for precision in args.precisions:
        started = time.perf_counter()
        try:
            config = config_of(precision, args.batches[0])
            with tempfile.TemporaryDirectory() as logs:
                model = MaskRCNN("training", config, logs)
            model.set_trainable(".*", verbose=0)
            model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            for batch in args.batches:
                lines.write({"key": f"{precision}_batch{batch}",
                             "error": f"build: {type(err).__name__}: {err}"[:2000]})
            continue
        build_s = time.perf_counter() - started
        for batch in args.batches:
            def measure():
                sequence = make_sequence(dataset, config_of(precision, batch), shuffle=False,
                                         steps=1, seed=0, workers=1)
                inputs = sequence[0][0]

                def step():
                    logs = model.keras_model.train_on_batch(inputs, return_dict=True)
                    losses = {k: float(np.asarray(v)) for k, v in logs.items()}
                    if not all(np.isfinite(v) for v in losses.values()):
                        raise FloatingPointError(f"non-finite losses {losses}")

                first = time.perf_counter()
                step()
                first_s = time.perf_counter() - first
                median, low, high = seconds(step, max(args.warmup - 1, 0), args.steps)
                return {"backbone": args.backbone, "tiny": args.tiny, "precision": precision,
                        "batch": batch, "image_size": args.image_size, "layers": "all",
                        "images_per_s": batch / median, "median_s_per_step": median,
                        "min_s_per_step": low, "max_s_per_step": high,
                        "first_step_s": first_s, "build_s": build_s,
                        "steps": args.steps, "warmup": args.warmup}

            run_setting(lines, f"{precision}_batch{batch}", measure)
        del model


# ---------------------------------------------------------------------------------- shapes
def shapes_part(args, lines):
    import keras

    from mrcnn.compact import inference_config, lr_schedule_callback
    from mrcnn.evaluation import copy_weights_by_name, evaluate_dataset
    from mrcnn.model import MaskRCNN
    from samples import shapes

    started = time.perf_counter()
    settings = shapes._settings(args.tiny)
    config_class = settings["config"]  # ShapesConfig; --tiny: SmallShapesConfig
    steps, epochs = settings["steps"], (2 if args.tiny else settings["epochs"])
    images = settings["images"]
    size = config_class.IMAGE_MAX_DIM
    eval_images = args.eval_images or settings["eval_limit"]
    train_set = shapes.make_dataset(images, shapes.TRAIN_SEED, size=size)
    test_set = shapes.make_dataset(eval_images, shapes.TEST_SEED, size=size)
    logs = tempfile.mkdtemp(prefix="device_shapes_")
    model = MaskRCNN("training", config_class(), logs)
    inference = MaskRCNN("inference", inference_config(config_class), logs)
    config = model.config
    history = []
    state = {"reached_s": None, "train_s": 0.0, "eval_s": 0.0}

    def record(finished):
        """The part's line: written after every epoch (a part stopped by its time limit keeps
        the last one) and at the end."""
        lines.write({"key": "shapes", "finished": finished, "target_mAP50": args.target,
                     "reached": state["reached_s"] is not None,
                     "wall_s_to_target": state["reached_s"],
                     "best_mAP50": max((h["mAP50"] for h in history), default=None),
                     "epochs_run": len(history), "epochs_planned": epochs,
                     "steps_per_epoch": steps, "batch": config.BATCH_SIZE,
                     "training_images": images, "eval_images": eval_images,
                     "train_s": round(state["train_s"], 2), "eval_s": round(state["eval_s"], 2),
                     "wall_s": round(time.perf_counter() - started, 2), "budget_s": args.budget,
                     "history": history})

    class EvaluateAndStop(keras.callbacks.Callback):
        """After each epoch: mAP@0.5 as samples/shapes.py evaluates it; stop at the target
        or when the budget is spent."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            state["train_s"] += time.perf_counter() - self.epoch_start
            t0 = time.perf_counter()
            copy_weights_by_name(self.model, inference.keras_model)
            scores = evaluate_dataset(inference, test_set)
            state["eval_s"] += time.perf_counter() - t0
            wall = time.perf_counter() - started
            history.append({"epoch": epoch + 1, "wall_s": round(wall, 2),
                            "mAP50": float(scores["mAP50"]), "mAP": float(scores["mAP"])})
            logger.info("shapes epoch %d: mAP50 %.3f at %.1f s", epoch + 1, scores["mAP50"], wall)
            if scores["mAP50"] >= args.target:
                state["reached_s"] = round(wall, 2)
                self.model.stop_training = True
            elif wall + (time.perf_counter() - self.epoch_start) > args.budget:
                self.model.stop_training = True  # the next epoch would end past the budget
            record(finished=False)

    total = epochs * steps
    schedule = lr_schedule_callback(config.LEARNING_RATE, total,
                                    warmup_steps=min(200, total // 10), first_step=0)
    model.train(train_set, None, learning_rate=config.LEARNING_RATE, epochs=epochs,
                layers="all", custom_callbacks=[schedule, EvaluateAndStop()], verbose=0)
    record(finished=True)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    lines = Lines(args.out)
    {"detect": detect_part, "train": train_part, "shapes": shapes_part}[args.part](args, lines)


if __name__ == "__main__":
    main()
