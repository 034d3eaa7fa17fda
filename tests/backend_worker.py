"""One backend's inference answers, for the backend parity tests (tests/test_jax_inference.py).

    KERAS_BACKEND=tensorflow python -m tests.backend_worker --out tf.npz --save-weights W.h5
    KERAS_BACKEND=jax python -m tests.backend_worker --out jax.npz --weights W.h5

Builds the inference model of ParityConfig (ResNet-50 FPN at 256 px). With --save-weights
the weights are seeded random ones (class logits scaled down, so that scores spread instead
of tying at 1.0, and box deltas too, so that boxes stay near their anchors) and are written in matterport's .h5 layout; with --weights they are loaded
from such a file. Then runs detect() on each photo (skimage's three, and the demo_images
under ../shared/data when present), one at a time, and run_graph for the RPN outputs of the
first photo's molded image, and writes --out (.npz): per photo i, ``rois_i``, ``class_ids_i``,
``scores_i``, ``masks_i`` (np.packbits of [N, H, W] along W) and ``shape_i``; ``names``;
``rpn_class``, ``rpn_bbox``, ``proposals`` of photo 0; and on JAX ``compilations``: XLA
compilations during the detect() calls after the first one (the molded size is fixed, so
there must be none).
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea")


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--save-weights", default=None)
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos")
    parser.add_argument("--check-loading", action="store_true",
                        help="with --weights: load it by name with exclude, and through a "
                             "Keras .weights.h5 round trip, and write the weights instead")
    return parser.parse_args(argv)


def photos(limit=None):
    """(name, [H, W, 3] uint8) of skimage's photos, then ../shared/data/demo_images."""
    import skimage.data
    import skimage.io

    from tests.conftest import SHARED_DATA
    out = [(name, getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS]
    folder = os.path.join(SHARED_DATA, "demo_images")
    if os.path.isdir(folder):
        for name in sorted(n for n in os.listdir(folder) if n.lower().endswith(".jpg")):
            out.append((name, skimage.io.imread(os.path.join(folder, name))))
    return out[:limit]


class CompileCounter:
    """Counts XLA compilations (JAX's backend-compile events) while ``active``."""

    def __init__(self):
        import jax
        self.count = 0
        self.active = False

        def listener(event, duration, **kwargs):
            if self.active and "backend_compile" in event:
                self.count += 1

        jax.monitoring.register_event_duration_secs_listener(listener)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    from mrcnn.model import MaskRCNN
    from tests.conftest import TinyConfig

    class ParityConfig(TinyConfig):
        NAME = "parity"
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 256
        IMAGE_MAX_DIM = 256
        DETECTION_MIN_CONFIDENCE = 0.3
        POST_NMS_ROIS_INFERENCE = 100
        DETECTION_MAX_INSTANCES = 20

    logs = os.path.join(os.path.dirname(os.path.abspath(args.out)), "logs")
    if args.save_weights:
        keras.utils.set_random_seed(3)
    model = MaskRCNN("inference", ParityConfig(), logs)
    if args.save_weights:
        # Scores that spread (no ties at 1.0) and boxes near their anchors and proposals
        # (random full-size deltas collapse boxes onto the image border).
        rpn = model.keras_model.get_layer("rpn_model")
        for layer, factor in ((model.keras_model.get_layer("mrcnn_class_logits"), 0.05),
                              (model.keras_model.get_layer("mrcnn_bbox_fc"), 0.02),
                              (rpn.get_layer("rpn_bbox_pred"), 0.02)):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * factor, bias])
        model.save_weights(args.save_weights)
    if args.weights:
        model.load_weights(args.weights)

    if args.check_loading:
        return check_loading(model, args.weights, args.out)
    counter = CompileCounter() if keras.backend.backend() == "jax" else None
    arrays = {}
    names = []
    for i, (name, image) in enumerate(photos(args.limit)):
        if counter is not None:
            counter.active = i > 0
        result = model.detect([image])[0]
        names.append(name)
        arrays[f"rois_{i}"] = result["rois"]
        arrays[f"class_ids_{i}"] = result["class_ids"]
        arrays[f"scores_{i}"] = result["scores"]
        arrays[f"masks_{i}"] = np.packbits(np.transpose(result["masks"], (2, 0, 1)), axis=-1)
        arrays[f"shape_{i}"] = np.array(image.shape[:2])
    if counter is not None:
        counter.active = False
        arrays["compilations"] = np.int64(counter.count)
    arrays["names"] = np.array(names)
    first = photos(1)[0][1]
    graph = model.run_graph([first], [("rpn_class", "rpn_class"), ("rpn_bbox", "rpn_bbox"),
                                      ("proposals", "ROI")])
    for key, value in graph.items():
        arrays[key] = np.asarray(value, dtype=np.float32)
    np.savez_compressed(args.out, **arrays)


EXCLUDED = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask")


def check_loading(model, weights, out):
    """Write (.npz) what loading gives: ``full_<layer>_<k>`` after load_weights(weights)
    (already done), ``byname_<layer>_<k>`` for a fresh model after load_weights(weights,
    by_name=True, exclude=EXCLUDED) with ``init_<layer>_<k>`` its weights before, and
    ``keras_<layer>_<k>`` after a keras .weights.h5 save of the full model and a load into
    the fresh one; ``excluded`` the report's excluded names."""
    import keras
    import numpy as np

    from mrcnn.model import MaskRCNN
    arrays = {}

    def dump(prefix, keras_model):
        for layer in keras_model.layers:
            for k, value in enumerate(layer.get_weights()):
                arrays[f"{prefix}_{layer.name}_{k}"] = np.asarray(value)

    dump("full", model.keras_model)
    keras.utils.set_random_seed(11)
    fresh = MaskRCNN("inference", model.config, model.model_dir)
    dump("init", fresh.keras_model)
    report = fresh.load_weights(weights, by_name=True, exclude=list(EXCLUDED))
    arrays["excluded"] = np.array(sorted(report["excluded"]))
    dump("byname", fresh.keras_model)
    path = os.path.join(os.path.dirname(os.path.abspath(out)), "roundtrip.weights.h5")
    model.keras_model.save_weights(path)
    fresh.load_weights(path)
    dump("keras", fresh.keras_model)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main()
