"""Run mrcnn's main paths on Keras' JAX backend; tests/test_no_tensorflow.py runs this script
in a subprocess whose ``import tensorflow`` fails (tests/no_tensorflow/sitecustomize.py).

    KERAS_BACKEND=jax PYTHONPATH=tests/no_tensorflow:. python tests/no_tensorflow/jax_paths.py DIR

Imports mrcnn, trains the tiny test model two steps, runs detect() and evaluate_dataset(),
then calls each TensorFlow-only feature and records the error it raises. Prints one JSON
object (the last line of stdout).
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def error_of(function):
    """{"type", "message"} of what ``function()`` raises, or None when it returns."""
    try:
        function()
    except Exception as err:  # noqa: BLE001 -- the test checks the type
        return {"type": type(err).__name__, "message": str(err)}
    return None


def main(out_dir):
    import numpy as np

    import mrcnn
    from mrcnn import backend
    from mrcnn.evaluation import evaluate_dataset
    from mrcnn.model import MaskRCNN

    from conftest import TinyConfig
    from synthetic import BlobDataset

    result = {"backend": backend.name(), "mrcnn_version": mrcnn.__version__}

    class TrainConfig(TinyConfig):
        STEPS_PER_EPOCH = 2

    class InferenceConfig(TinyConfig):
        IMAGES_PER_GPU = 1

    dataset = BlobDataset(count=4, seed=3)
    logs = os.path.join(out_dir, "logs")
    training = MaskRCNN("training", TrainConfig(), logs)
    history = training.train(dataset, None, learning_rate=0.001, epochs=1, layers="heads",
                             verbose=0)
    result["train_losses"] = [float(v) for v in history.history["loss"]]
    result["checkpoints"] = sorted(n for n in os.listdir(training.log_dir) if n.endswith(".h5"))

    inference = MaskRCNN("inference", InferenceConfig(), logs)
    detected = inference.detect([dataset.load_image(0)])[0]
    result["detect_keys"] = sorted(detected)
    result["detect_masks_shape"] = list(np.shape(detected["masks"]))
    scores = evaluate_dataset(inference, dataset, limit=2)
    result["evaluation"] = {"images": scores["images"], "mAP50": scores["mAP50"]}

    # TensorFlow-only features: each must raise mrcnn.backend.BackendError.
    from mrcnn import export
    from mrcnn.predictor import Predictor
    errors = {
        "MaskRCNN.export": error_of(lambda: inference.export(os.path.join(out_dir, "saved"))),
        "mrcnn.export.export_model": error_of(lambda: export.export_model(
            inference.keras_model, inference.config, os.path.join(out_dir, "m.onnx"), "onnx")),
        "Predictor": error_of(lambda: Predictor(inference.keras_model)),
        "train_tf_data": error_of(lambda: training.train(
            dataset, None, learning_rate=0.001, epochs=2, layers="heads", pipeline="tf.data")),
    }
    from mrcnn.distribute import local_cluster
    os.environ["TF_CONFIG"] = local_cluster(2)[0]
    try:
        errors["TF_CONFIG"] = error_of(lambda: MaskRCNN("training", TrainConfig(), logs))
    finally:
        del os.environ["TF_CONFIG"]
    result["errors"] = errors
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
