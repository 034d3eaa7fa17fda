"""Training benchmark: seconds per training step and images per second of the data pipeline.

    python bench/train.py --backbone resnet50 --image-size 128 --batch 2 --layers all
    python bench/train.py --backend jax ...     # Keras' JAX backend

Prints one JSON object. The step time is the median of --steps timed train steps
(train_on_batch on a fixed batch) after --warmup untimed ones; the pipeline figure is
images per second of load + augment + target building alone (MaskRCNN's PyDataset items),
with one thread and with --workers threads, and through the tf.data pipeline with
--workers parallel calls, each the median of --repeats passes.
The data are synthetic shapes (samples/shapes.py) drawn on the fly.

With --pipelines, it measures whole training steps through MaskRCNN.train instead (data
loading included): images/s with the PyDataset and the tf.data pipelines in one process,
and with tf.data over 1 and 2 worker processes on this machine (MultiWorkerMirroredStrategy,
TF_CONFIG on 127.0.0.1; each worker feeds --batch images a step, so 2 workers train a
global batch twice as large). Each figure is the global batch over the median step time
after --warmup steps (two workers share this machine's cores: the 2-worker figure shows the
cost of the all-reduce and of sharing, not a cluster's speed-up).

Baseline in the same process (the machine's speed drifts by tens of percent between
sessions, so only same-process ratios compare), unless --no-baseline: a
"matterport-style" model with the same weights and inputs, built with the three
choices this package departs from, and timed alternately with ours:
- the box head's two fully connected layers run as convolutions (ours: WindowConv2D matmuls);
- the mask head runs on all TRAIN_ROIS_PER_IMAGE ROIs (ours: the positive rows only);
- Keras SGD with the L2 penalty differentiated through the loss and the gradients
  rescaled for clipping (ours: MomentumSGD's fused update).

--backend jax (or KERAS_BACKEND=jax) runs on Keras' JAX backend: the step and the
PyDataset figures and the baseline (compiled with XLA, as the JAX trainer needs); the
tf.data figures, --fit tf.data and --pipelines (tf.data, MultiWorkerMirroredStrategy) are
TensorFlow's: skipped, or refused with a message. train_on_batch returns NumPy values, so
each timed step has finished on the device.
"""
import argparse
import concurrent.futures
import json
import logging
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from infer import backend_facts, select_backend  # noqa: E402  (bench/infer.py, one copy)

PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BACKENDS = ("tensorflow", "jax")
logger = logging.getLogger("bench.train")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS,
                        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", default="all")
    parser.add_argument("--norm", default="batch", choices=["batch", "group"])
    parser.add_argument("--precision", default="float32", choices=sorted(PRECISIONS))
    parser.add_argument("--gpu-count", type=int, default=1,
                        help="GPU_COUNT (> 1: MirroredStrategy over that many GPUs)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=64, help="images per pipeline pass")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the same-process matterport-style baseline")
    parser.add_argument("--pipelines", action="store_true",
                        help="time MaskRCNN.train per pipeline and for 1 and 2 worker processes")
    parser.add_argument("--fit", choices=["pydataset", "tf.data"], default=None,
                        help="only time MaskRCNN.train with this pipeline (GPU_COUNT replicas)")
    parser.add_argument("--role", default="main", choices=["main", "worker"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", default="tf.data", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def bench_config(args):
    """The benchmark's Config (matterport's shapes settings at --image-size, --batch)."""
    from mrcnn.config import Config

    class BenchConfig(Config):
        # matterport's shapes settings, so that the step compares with its implementation
        NAME = "benchtrain"
        NUM_CLASSES = 4
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        TRAIN_ROIS_PER_IMAGE = 32
        STEPS_PER_EPOCH = 100
        VALIDATION_STEPS = 5
        BACKBONE = args.backbone
        IMAGES_PER_GPU = args.batch
        GPU_COUNT = 1
        IMAGE_MIN_DIM = args.image_size
        IMAGE_MAX_DIM = args.image_size
        NORMALIZATION = args.norm
        GPU_COUNT = args.gpu_count
        DTYPE_POLICY = PRECISIONS[args.precision]

    return BenchConfig()


def fit_throughput(args, pipeline, strategy=None):
    """Global images/s of MaskRCNN.train (median step after --warmup steps) with ``pipeline``."""
    import keras
    import numpy as np

    from mrcnn.model import MaskRCNN
    from samples.shapes import ShapesDataset

    config = bench_config(args)
    config.STEPS_PER_EPOCH = args.warmup + args.steps
    config.VALIDATION_STEPS = 0
    dataset = ShapesDataset()
    dataset.load_shapes(args.images, args.image_size, args.image_size, seed=1)
    dataset.prepare()

    class StepTimes(keras.callbacks.Callback):
        times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            for value in (logs or {}).values():  # wait for the step (JAX dispatches async)
                np.asarray(value)
            if batch >= args.warmup:
                StepTimes.times.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as logs:
        model = MaskRCNN("training", config, logs, strategy=strategy)
        model.train(dataset, None, learning_rate=config.LEARNING_RATE, epochs=1,
                    layers=args.layers, custom_callbacks=[StepTimes()], verbose=0,
                    workers=args.workers, pipeline=pipeline)
        strategy = model.strategy
    replicas = replica_count(strategy)
    step = statistics.median(StepTimes.times)
    return {"images_per_s": replicas * args.batch / step, "median_s_per_step": step,
            "global_batch": replicas * args.batch}


def pipelines_main(args):
    """--pipelines: the figures of the module doc, as one JSON object."""
    import subprocess

    from mrcnn.distribute import local_cluster

    result = {"benchmark": "train_pipelines", "backbone": args.backbone,
              "image_size": args.image_size, "batch_per_worker": args.batch,
              "layers": args.layers, "steps": args.steps, "warmup": args.warmup,
              "threads": args.workers, "cpu_count": os.cpu_count()}
    for pipeline in ("pydataset", "tf.data"):
        result[f"1_process_{pipeline}"] = fit_throughput(args, pipeline)
    command = [sys.executable, os.path.abspath(__file__), "--role", "worker",
               "--backbone", args.backbone, "--image-size", str(args.image_size),
               "--batch", str(args.batch), "--layers", args.layers, "--norm", args.norm,
               "--precision", args.precision, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--workers", str(args.workers),
               "--images", str(args.images)]
    for workers in (1, 2):
        processes = [subprocess.Popen(command, env=dict(os.environ, TF_CONFIG=tf_config),
                                      stdout=subprocess.PIPE, text=True)
                     for tf_config in local_cluster(workers)]
        try:
            outputs = [p.communicate(timeout=3600)[0] for p in processes]
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
        if any(p.returncode for p in processes):
            raise RuntimeError(f"a worker failed: exit codes {[p.returncode for p in processes]}")
        result[f"{workers}_worker_tf.data"] = json.loads(outputs[0].strip().splitlines()[-1])
    base = result["1_process_pydataset"]["images_per_s"]
    for key in ("1_process_tf.data", "1_worker_tf.data", "2_worker_tf.data"):
        result[key]["ratio_to_1_process_pydataset"] = result[key]["images_per_s"] / base
    print(json.dumps(result, indent=2))
    return result


def worker_main(args):
    """--role worker: one MultiWorkerMirroredStrategy process; prints its figures as JSON."""
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    print(json.dumps(fit_throughput(args, "tf.data", strategy)))


def replica_count(strategy):
    """Replicas of a tf.distribute strategy or a keras.distribution (JAX), 1 for None."""
    if strategy is None:
        return 1
    if hasattr(strategy, "num_replicas_in_sync"):
        return strategy.num_replicas_in_sync
    import numpy as np
    return int(np.size(strategy.device_mesh.devices))


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tensorflow = select_backend(args.backend)
    if not tensorflow:
        if args.pipelines or args.role == "worker":
            raise SystemExit("--pipelines times tf.data and MultiWorkerMirroredStrategy: "
                             f"TensorFlow only, not --backend {args.backend}")
        if args.fit == "tf.data":
            raise SystemExit(f"--fit tf.data is TensorFlow's input pipeline: not --backend "
                             f"{args.backend} (use --fit pydataset)")
    if args.role == "worker":
        return worker_main(args)
    if args.pipelines:
        return pipelines_main(args)
    if args.fit:
        result = {"benchmark": "train_fit", "pipeline": args.fit, "backbone": args.backbone,
                  "image_size": args.image_size, "batch_per_replica": args.batch,
                  "precision": args.precision, "layers": args.layers, "steps": args.steps,
                  "warmup": args.warmup, **fit_throughput(args, args.fit), **backend_facts()}
        print(json.dumps(result, indent=2))
        return result
    import numpy as np

    from mrcnn.data import BatchPlan, make_sequence, make_tf_dataset
    from mrcnn.model import MaskRCNN
    from mrcnn.training import LAYER_GROUPS
    from samples.shapes import ShapesDataset

    config = bench_config(args)
    dataset = ShapesDataset()
    dataset.load_shapes(args.images, args.image_size, args.image_size, seed=1)
    dataset.prepare()

    # ---- data pipeline alone
    seq = make_sequence(dataset, config, shuffle=True, steps=args.images // args.batch, seed=0,
                        workers=args.workers)
    seq[0]  # warm caches (anchors)

    def one_pass(threads):
        t0 = time.perf_counter()
        if threads == 1:
            for i in range(len(seq)):
                seq[i]
        else:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(seq.__getitem__, range(len(seq))))
        return len(seq) * args.batch / (time.perf_counter() - t0)

    pipeline_1 = statistics.median(one_pass(1) for _ in range(args.repeats))
    pipeline_n = statistics.median(one_pass(args.workers) for _ in range(args.repeats))

    def tf_data_pass():
        plan = BatchPlan(dataset.image_ids, len(seq), args.batch, seed=0)
        t0 = time.perf_counter()
        for _ in make_tf_dataset(dataset, config, plan, 0, 1, parallel_calls=args.workers):
            pass
        return len(seq) * args.batch / (time.perf_counter() - t0)

    if tensorflow:
        pipeline_tf_data = statistics.median(tf_data_pass() for _ in range(args.repeats))
    else:
        logger.warning("the tf.data pipeline is TensorFlow's: not timed on --backend %s",
                       args.backend)

    # ---- training step alone
    layer_regex = LAYER_GROUPS.get(args.layers, args.layers)
    with tempfile.TemporaryDirectory() as logs:
        model = MaskRCNN("training", config, logs)
        models = {"default": model}
        if not args.no_baseline:
            models["matterport_style"] = build_matterport_style(config, logs)
            models["matterport_style"].keras_model.set_weights(model.keras_model.get_weights())
    for name, each in models.items():
        each.set_trainable(layer_regex, verbose=0)
        if name == "default":
            each.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
        else:
            import keras
            # TensorFlow: as matterport (no XLA); JAX's trainer always compiles with XLA.
            each.keras_model.compile(optimizer=keras.optimizers.SGD(
                learning_rate=config.LEARNING_RATE, momentum=config.LEARNING_MOMENTUM,
                global_clipnorm=config.GRADIENT_CLIP_NORM), jit_compile=not tensorflow)
    batch = seq[0][0]
    for _ in range(args.warmup):
        for each in models.values():
            each.keras_model.train_on_batch(batch)
    step_times = {name: [] for name in models}
    for _ in range(args.steps):
        for name, each in models.items():  # alternate, so that drift hits both
            t0 = time.perf_counter()
            each.keras_model.train_on_batch(batch)
            step_times[name].append(time.perf_counter() - t0)
    times = step_times["default"]
    step = statistics.median(times)
    consumed = args.batch / step
    result = {
        "benchmark": "train",
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch": args.batch,
        "layers": args.layers,
        "norm": args.norm,
        "precision": args.precision,
        "median_s_per_step": step,
        "min_s_per_step": min(times),
        "max_s_per_step": max(times),
        "steps": args.steps,
        "warmup": args.warmup,
        "images_per_s_consumed_by_training": consumed,
        "pipeline_images_per_s_1_thread": pipeline_1,
        f"pipeline_images_per_s_{args.workers}_threads": pipeline_n,
        "pipeline_over_training_ratio": max(pipeline_1, pipeline_n) / consumed,
        "trainable_params": int(sum(np.prod(w.shape) for w in model.keras_model.trainable_weights)),
        **backend_facts(),
        "cpu_count": os.cpu_count(),
    }
    if tensorflow:
        result[f"pipeline_images_per_s_tf_data_{args.workers}_parallel_calls"] = pipeline_tf_data
    else:
        result["tf_data"] = f"skipped: TensorFlow only, this run is on {args.backend}"
    if not args.no_baseline:
        baseline = statistics.median(step_times["matterport_style"])
        result["matterport_style_median_s_per_step"] = baseline
        result["ratio_to_matterport_style"] = step / baseline
    print(json.dumps(result, indent=2))
    return result


def build_matterport_style(config, logs):
    """Our training graph with matterport's head and optimizer choices (see the module doc)."""
    import keras

    import mrcnn.graph
    import mrcnn.heads
    from mrcnn.layers.outputs import FirstROIs
    from mrcnn.model import MaskRCNN

    all_rois = config.TRAIN_ROIS_PER_IMAGE

    class AllROIs(FirstROIs):
        def __init__(self, count, **kwargs):
            super().__init__(all_rois, **kwargs)

    saved = mrcnn.heads.WindowConv2D, mrcnn.graph.FirstROIs
    mrcnn.heads.WindowConv2D, mrcnn.graph.FirstROIs = keras.layers.Conv2D, AllROIs
    try:
        return MaskRCNN("training", config, logs)
    finally:
        mrcnn.heads.WindowConv2D, mrcnn.graph.FirstROIs = saved


if __name__ == "__main__":
    main()
