"""LiteRT molding benchmark: the exact resize of mrcnn.float64 against float32 arithmetic.

    python bench/litert_molding.py --runs 10

The LiteRT graph molds with ``mrcnn.float64.resize_uint8`` (matterport's resized pixels, bit
for bit, from int32/int64 kernels). This times that graph alone on ai_edge_litert (one
thread per CPU) against the float32 resize it replaced (``export.resize_bilinear(dtype=
"float32")`` and a floor: a grey level off on ~0.3% of the pixels), on photos resized to
1024 px, and counts the values each gets wrong against ``mrcnn.utils.resize``. Prints one
JSON object: medians after a warm-up, calls alternating in one process, ratios to float32.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def litert_function(function, signature, threads):
    """function converted to TFLite builtins; returns run(image, hw) -> first output."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    concrete = tf.function(function, input_signature=signature).get_concrete_function()
    started = time.perf_counter()
    content = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
    convert_s = time.perf_counter() - started
    interpreter = Interpreter(model_content=content, num_threads=threads)
    inputs = interpreter.get_input_details()

    def run(image, hw):
        for detail, value in zip(inputs, (image, hw)):
            interpreter.resize_tensor_input(detail["index"], value.shape)
        interpreter.allocate_tensors()
        for detail, value in zip(inputs, (image, hw)):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return run, convert_s, len(content)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024, help="the long side after resizing")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    import skimage.data
    import tensorflow as tf

    from mrcnn import export, float64, utils

    signature = [tf.TensorSpec([1, None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int32)]
    threads = os.cpu_count()

    def exact(images, hw):
        return float64.resize_uint8(images, hw[0], hw[1])

    def float32(images, hw):
        resized = export.resize_bilinear(tf.cast(images, tf.float32), hw[0], hw[1], "float32")
        return tf.cast(tf.floor(resized), tf.int32)
    runners = {}
    for name, function in (("exact", exact), ("float32", float32)):
        runners[name] = litert_function(function, signature, threads)

    result = {"benchmark": "litert_molding", "threads": threads, "runs": args.runs,
              "machine": platform.processor() or platform.machine()}
    for photo_name in ("astronaut", "coffee", "chelsea"):
        photo = getattr(skimage.data, photo_name)()
        h, w = photo.shape[:2]
        scale = args.size / max(h, w)
        hw = np.array([round(h * scale), round(w * scale)], np.int32)
        reference = utils.resize(photo, tuple(hw), preserve_range=True).astype(np.uint8)
        times = {name: [] for name in runners}
        wrong = {}
        for step in range(args.warmup + args.runs):
            for name, (run, _, _) in runners.items():
                started = time.perf_counter()
                out = run(photo[None], hw)
                if step >= args.warmup:
                    times[name].append(time.perf_counter() - started)
                wrong[name] = int((out[0] != reference).sum())
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        result[f"{photo_name} {h}x{w} -> {hw[0]}x{hw[1]}"] = {
            "median_ms": {k: round(v, 1) for k, v in medians.items()},
            "ratio_to_float32": round(medians["exact"] / medians["float32"], 2),
            "values_wrong": wrong, "values": int(reference.size)}
    result["convert_s"] = {name: round(r[1], 1) for name, r in runners.items()}
    result["tflite_bytes"] = {name: r[2] for name, r in runners.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
