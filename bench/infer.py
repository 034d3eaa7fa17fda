"""Inference benchmark: seconds per image of MaskRCNN.detect on a real photo.

    python bench/infer.py --backbone resnet101 --image-size 1024 --batch 1 --precision float32
    python bench/infer.py --backend jax ...     # Keras' JAX backend (detect() jit-compiled)

Prints one JSON object: median / min / max seconds per image over --runs timed runs
after --warmup untimed ones, the parameter count, and the settings. Weights are random
(speed does not depend on them, except through the number of detections: the mask head
runs on the real detections only); the image is scikit-image's astronaut photo.
--detections N fixes that number: the background logit is pushed down so that every ROI
is a candidate, and the confidence threshold is set between the N-th and (N+1)-th score
(default 100, DETECTION_MAX_INSTANCES: the mask head on every slot, the slowest case).
--nms-method / --resize-method pick Config.NMS_METHOD / IMAGE_RESIZE_METHOD (default:
matterport's results); --compare-fast also times a second model with the same weights and
the fast options ("combined", "opencv"), alternately with the first.

Baselines measured in the same process (the machine's speed drifts by tens of percent
between sessions, so only same-process ratios compare):
- "variables": the same graph run on the weight variables (FREEZE_INFERENCE_WEIGHTS
  False), timed alternately with the default run.
- "direct": the frozen graph with every convolution computed directly (no Winograd,
  WINOGRAD_CONVS False), timed alternately too. Only where Winograd is on.
- "floor": the model's floating-point operations with direct convolutions (TensorFlow's
  profiler on the traced graph) divided by the GFLOP/s of a 2048 x 2048 matmul in the
  benchmark's precision (measured after every timed round, median), i.e. the time of
  the model's arithmetic at the machine's matmul rate. Winograd's algorithm does fewer
  multiplications than the model's nominal count ("executed_gflops_per_batch"), so a
  ratio below 1 is possible.
The baselines are TensorFlow graphs (frozen weights, TensorFlow's profiler): on the JAX
backend they are skipped (the JSON says so), and --inter-op-threads is refused. detect()
returns NumPy arrays, so each timed call has waited for the device on either backend.
"""
import argparse
import contextlib
import json
import logging
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
BACKENDS = ("tensorflow", "jax")
logger = logging.getLogger("bench.infer")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS,
                        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--backbone", default="resnet101", choices=["resnet50", "resnet101"])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="float32", choices=sorted(PRECISIONS))
    parser.add_argument("--roi-align", default="crop_and_resize", choices=["crop_and_resize", "paper"])
    parser.add_argument("--image", default="astronaut", choices=IMAGES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=81)
    parser.add_argument("--detections", type=int, default=100,
                        help="detections per image, 1..100 (see the module doc)")
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="TensorFlow inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--nms-method", default="standard", choices=["standard", "combined"],
                        help="Config.NMS_METHOD of the timed model")
    parser.add_argument("--resize-method", default="exact", choices=["exact", "opencv"],
                        help="Config.IMAGE_RESIZE_METHOD of the timed model")
    parser.add_argument("--compare-fast", action="store_true",
                        help="also time, alternately in the same process, a second model with "
                             "the same weights and the fast, not-matterport options "
                             "(NMS_METHOD 'combined', IMAGE_RESIZE_METHOD 'opencv')")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the same-process baselines (variables graph, FLOP floor)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not 1 <= args.detections <= 100:
        raise SystemExit(f"--detections must be in 1..100, got {args.detections}")
    tensorflow = select_backend(args.backend)
    if not tensorflow:
        if args.inter_op_threads:
            raise SystemExit("--inter-op-threads sets TensorFlow's thread pool: not on "
                             f"--backend {args.backend}")
        if not args.no_baseline:
            logger.warning("the same-process baselines (frozen and direct-convolution graphs, "
                           "FLOP floor by TensorFlow's profiler) need TensorFlow: skipped on "
                           "--backend %s", args.backend)
            args.no_baseline = True
    import numpy as np
    import skimage.data

    if tensorflow:
        import tensorflow as tf
        if args.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

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
        DETECTION_MAX_INSTANCES = 100
        DETECTION_MIN_CONFIDENCE = 0.0
        NMS_METHOD = args.nms_method
        IMAGE_RESIZE_METHOD = args.resize_method

    class FastConfig(BenchConfig):
        NMS_METHOD = "combined"
        IMAGE_RESIZE_METHOD = "opencv"

    config = BenchConfig()
    with tempfile.TemporaryDirectory() as logs:
        t0 = time.perf_counter()
        model = MaskRCNN("inference", config, logs)
        build_s = time.perf_counter() - t0
    image = getattr(skimage.data, args.image)()
    images = [image] * args.batch
    set_detection_count(model, images, args.detections)
    # The first call traces the graph; the second freezes the weights (float32).
    first_calls_s = []
    for _ in range(2):
        t0 = time.perf_counter()
        model.detect(images)
        first_calls_s.append(time.perf_counter() - t0)
    predictors = {"default": model._predict_fn}
    winograd_layers = [layer for layer in model.get_trainable_layers() if getattr(layer, "winograd", False)]
    if not args.no_baseline:
        from mrcnn.predictor import Predictor
        predictors["variables"] = Predictor(model.keras_model, freeze=False)
        if winograd_layers and model._predict_fn.freeze:
            direct = Predictor(model.keras_model, freeze_after=1)
            with winograd_off(winograd_layers):
                model._predict_fn = direct
                model.detect(images)  # traces and freezes the direct-convolution graph
            predictors["direct"] = direct
    fast_model = None
    if args.compare_fast:
        with tempfile.TemporaryDirectory() as logs:
            fast_model = MaskRCNN("inference", FastConfig(), logs)
        fast_model.keras_model.set_weights(model.keras_model.get_weights())
        fast_model.keras_model.get_layer("mrcnn_detection").min_confidence = \
            model.keras_model.get_layer("mrcnn_detection").min_confidence
        fast_model.detect(images)
        fast_model.detect(images)
    times = {name: [] for name in predictors}
    times["fast_options"] = []
    matmul_rates = []
    for run in range(args.warmup + args.runs):
        for name, predictor in predictors.items():  # alternate, so that drift hits both
            model._predict_fn = predictor
            t0 = time.perf_counter()
            model.detect(images)
            if run >= args.warmup:
                times[name].append((time.perf_counter() - t0) / args.batch)
        if fast_model is not None:
            t0 = time.perf_counter()
            fast_model.detect(images)
            if run >= args.warmup:
                times["fast_options"].append((time.perf_counter() - t0) / args.batch)
        if run >= args.warmup and not args.no_baseline:
            matmul_rates.append(matmul_gflops_per_s(args.precision, runs=3))
    model._predict_fn = predictors["default"]
    per_image = times["default"]
    result = {
        "benchmark": "infer",
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch": args.batch,
        "precision": args.precision,
        "roi_align": args.roi_align,
        "nms_method": args.nms_method,
        "resize_method": args.resize_method,
        "image": args.image,
        "runs": args.runs,
        "warmup": args.warmup,
        "median_s_per_image": statistics.median(per_image),
        "min_s_per_image": min(per_image),
        "max_s_per_image": max(per_image),
        "build_s": build_s,
        "first_call_s": first_calls_s[0],
        "second_call_s": first_calls_s[1],
        "frozen_weights": bool(getattr(model._predict_fn, "freezes", 0)),
        "winograd_layers": len(winograd_layers),
        "params": int(model.keras_model.count_params()),
        **backend_facts(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "detections": int(len(model.detect([image])[0]["class_ids"])),
        "image_shape": list(np.asarray(image).shape),
    }
    if tensorflow:
        result["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    else:
        result["baselines"] = f"skipped: TensorFlow only, this run is on {args.backend}"
    if fast_model is not None:
        fast = statistics.median(times["fast_options"])
        result["fast_options_median_s_per_image"] = fast
        result["ratio_default_to_fast_options"] = result["median_s_per_image"] / fast
    if not args.no_baseline:
        median = result["median_s_per_image"]
        variables = statistics.median(times["variables"])
        with mask_head_on_every_slot(model):
            executed = graph_gflops(model, images)
            with winograd_off(winograd_layers):
                gflops = graph_gflops(model, images)
        peak = statistics.median(matmul_rates)
        floor = gflops / peak / args.batch
        result.update({
            "variables_median_s_per_image": variables,
            "speedup_over_variables": variables / median,
            "graph_gflops_per_batch": gflops,
            "executed_gflops_per_batch": executed,
            "matmul_gflops_per_s": peak,
            "floor_s_per_image": floor,
            "ratio_to_floor": median / floor,
        })
        if "direct" in times:
            result["direct_median_s_per_image"] = statistics.median(times["direct"])
            result["speedup_over_direct"] = result["direct_median_s_per_image"] / median
    print(json.dumps(result, indent=2))
    return result


def select_backend(backend):
    """Set KERAS_BACKEND to ``backend`` before Keras is imported; True for TensorFlow.

    Raises SystemExit when Keras was already imported with another backend."""
    if "keras" in sys.modules:
        import keras
        if keras.backend.backend() != backend:
            raise SystemExit(f"Keras already runs on {keras.backend.backend()!r}; cannot "
                             f"switch to --backend {backend}")
    os.environ["KERAS_BACKEND"] = backend
    return backend == "tensorflow"


def backend_facts():
    """The Keras backend, its version and its accelerators, for the JSON."""
    import keras
    backend = keras.backend.backend()
    facts = {"backend": backend, "keras": keras.__version__}
    if backend == "tensorflow":
        import tensorflow as tf
        facts.update(tensorflow=tf.__version__, gpus=len(tf.config.list_physical_devices("GPU")))
    else:
        import jax
        facts.update(jax=jax.__version__, gpus=len([d for d in jax.devices()
                                                    if d.platform == "gpu"]),
                     devices=[str(d) for d in jax.devices()])
    return facts


def set_detection_count(model, images, count):
    """Make the random-weight model find ``count`` detections per image on ``images``.

    Pushes the background logit down (every ROI gets a foreground class), then sets the
    DetectionLayer's threshold between the count-th and next score. Must run before the
    first detect(), which traces the graph with the threshold in it.
    """
    import numpy as np

    logits = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    bias[0] = -20.0
    logits.set_weights([kernel, bias])
    if count >= model.config.DETECTION_MAX_INSTANCES:
        return
    molded, metas, _ = model.mold_inputs(images)
    detections = np.asarray(model.keras_model([molded, metas], training=False)[0])
    scores = np.sort(detections[0, :, 5])[::-1]
    model.keras_model.get_layer("mrcnn_detection").min_confidence = float(
        (scores[count - 1] + scores[count]) / 2)


@contextlib.contextmanager
def mask_head_on_every_slot(model):
    """Trace the mask head on all DETECTION_MAX_INSTANCES slots inside the block.

    The inference graph runs the mask head on the real detections, a number known only at
    run time, for which TensorFlow's profiler counts no FLOPs. The floor counts the model's
    nominal arithmetic: the mask head on every slot, as matterport computes it.
    """
    layer = model.keras_model.get_layer("mrcnn_detection_boxes")
    layer.call = lambda detections: detections[..., :4]
    try:
        yield
    finally:
        del layer.call


@contextlib.contextmanager
def winograd_off(layers):
    """Run ``layers`` (WinogradConv2D) as direct convolutions inside the block (for traces)."""
    for layer in layers:
        layer.winograd = False
    try:
        yield
    finally:
        for layer in layers:
            layer.winograd = True


def graph_gflops(model, images):
    """Floating-point operations (GFLOP) of one batch through a fresh trace of the inference graph."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.profiler.model_analyzer import profile
    from tensorflow.python.profiler.option_builder import ProfileOptionBuilder

    molded, metas, _ = model.mold_inputs(images)
    keras_model = model.keras_model
    function = tf.function(lambda x, m: keras_model([x, m], training=False), autograph=False)
    concrete = function.get_concrete_function(
        tf.TensorSpec(molded.shape, tf.float32), tf.TensorSpec(np.shape(metas), tf.float32))
    options = ProfileOptionBuilder(ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return profile(concrete.graph, options=options).total_float_ops / 1e9


def matmul_gflops_per_s(precision, size=2048, runs=9):
    """Median GFLOP/s of a size x size matmul in float32 or bfloat16, after a warm-up."""
    import tensorflow as tf

    dtype = tf.float32 if precision == "float32" else tf.bfloat16
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.matmul(x, x), tf.float32)))
    matmul(a).numpy()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        matmul(a).numpy()
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / statistics.median(times) / 1e9


if __name__ == "__main__":
    main()
