"""Export benchmark: seconds per image of each exported format against MaskRCNN.detect.

    python bench/export.py --backbone resnet50 --image-size 512 --runs 5

Builds an inference model with random weights (class logits scaled by 0.05 so that scores
spread instead of saturating), exports it to a SavedModel, ONNX (when tf2onnx and
onnxruntime are installed) and LiteRT, then times, on the same photo (skimage's astronaut,
512 x 512) and in the same process, detect() and each artifact's runtime: TF
(tf.saved_model.load), onnxruntime (CPU provider) and ai_edge_litert's interpreter (TF's own
where ai_edge_litert is missing) with one thread per CPU. Each is timed --runs times after
--warmup untimed runs, the formats interleaved round by round; medians are printed, with
ratios to detect()'s median, as one JSON object, together with the export times and artifact
sizes.
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=81)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--formats", default="tf_saved_model,onnx,litert")
    return parser.parse_args(argv)


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def runners(model, formats, folder):
    """{name: (callable(image) -> outputs, export seconds, artifact bytes)}."""
    import numpy as np
    import tensorflow as tf
    out = {"detect": (lambda image: model.detect([image]), 0.0, 0)}
    for fmt in formats:
        if fmt == "onnx":
            try:
                import importlib.util

                import onnxruntime as ort
                if importlib.util.find_spec("tf2onnx") is None:
                    continue
            except ImportError:
                continue
        path = os.path.join(folder, {"tf_saved_model": "sm", "onnx": "m.onnx",
                                     "litert": "m.tflite"}[fmt])
        start = time.perf_counter()
        model.export(path, fmt)
        seconds = time.perf_counter() - start
        if fmt == "tf_saved_model":
            serve = tf.saved_model.load(path).signatures["serving_default"]
            run = (lambda s: lambda image: s(images=tf.constant(image[None])))(serve)
        elif fmt == "onnx":
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            run = (lambda s: lambda image: s.run(None, {"images": image[None]}))(session)
        else:
            try:  # the runtime the README names; TF's own interpreter where it is missing
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                Interpreter = tf.lite.Interpreter
            runner = Interpreter(model_path=path, num_threads=os.cpu_count()
                                 ).get_signature_runner()
            run = (lambda r: lambda image: r(images=np.ascontiguousarray(image[None])))(runner)
        out[fmt] = (run, seconds, _size(path))
    return out


def main(argv=None):
    args = parse_args(argv)
    import keras
    import skimage.data
    import tensorflow as tf

    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    config = type("BenchConfig", (Config,), {
        "NAME": "bench", "NUM_CLASSES": args.num_classes, "GPU_COUNT": 1, "IMAGES_PER_GPU": 1,
        "BACKBONE": args.backbone, "IMAGE_MIN_DIM": args.image_size,
        "IMAGE_MAX_DIM": args.image_size})()
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        model = MaskRCNN("inference", config, folder)
        layer = model.keras_model.get_layer("mrcnn_class_logits")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 0.05, bias])
        image = skimage.data.astronaut()
        timed = runners(model, args.formats.split(","), folder)
        times = {name: [] for name in timed}
        for round_ in range(args.warmup + args.runs):
            for name, (run, _, _) in timed.items():
                start = time.perf_counter()
                run(image)
                if round_ >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "image": "astronaut 512x512",
        "backbone": args.backbone, "image_size": args.image_size,
        "num_classes": args.num_classes, "runs": args.runs, "warmup": args.warmup,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "ratio_to_detect": {k: round(v / medians["detect"], 3) for k, v in medians.items()},
        "export_s": {k: round(v[1], 1) for k, v in timed.items() if k != "detect"},
        "artifact_mb": {k: round(v[2] / 2**20, 1) for k, v in timed.items() if k != "detect"},
        "tensorflow": tf.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
