"""One process of the TensorFlow / JAX training parity test (tests/test_jax_training.py).

    KERAS_BACKEND=tensorflow python -m tests.parity_worker --out DIR
    KERAS_BACKEND=jax python -m tests.parity_worker --out DIR

Builds the training graph of ``ParityConfig`` on the running Keras backend, sets every
weight from NumPy (a generator keyed by the variable's path, so both backends start from
the same values without a file passing between them), then takes two SGD steps with the
model's own optimizer (``MaskRCNN.compile``: MomentumSGD with momentum, L2 decay and
global-norm clipping) on one fixed batch, with ``train_on_batch`` (the backend's compiled
train step). Writes DIR/parity_<backend>.npz: ``loss<k>/<name>`` the five losses and the
total of step k (computed before its update), ``w<k>/<path>`` every weight before step 1
(k = 0) and after step k.

The ROI sampling of DetectionTargetLayer draws keras.random keys, whose streams differ
between backends; here it takes every candidate, so the draws only order the rows:
USE_RPN_ROIS is False and each image gets, as input_roi, its ground truth boxes and the
same boxes moved by 2 px (IoU >= 0.7: positives) and as many boxes with IoU <= 0.3 against
every ground truth box (negatives). With ROI_POSITIVE_RATIO 0.5 the layer keeps
min(positives, T / 2) positives and as many negatives as positives, so all of them; the
losses are means over the rows and the gradients sums, which do not depend on row order.
"""
import argparse
import os
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

STEPS = 2


def parity_config():
    from mrcnn.compact import SmallCompactConfig

    class ParityConfig(SmallCompactConfig):
        NAME = "parity"
        NUM_CLASSES = 3
        USE_RPN_ROIS = False
        TRAIN_ROIS_PER_IMAGE = 16
        ROI_POSITIVE_RATIO = 0.5
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 0

    return ParityConfig()


def initial_value(path, shape, dtype):
    """The NumPy starting value of the variable at ``path`` (the same on every backend)."""
    import numpy as np
    rng = np.random.default_rng(zlib.crc32(path.encode()))
    leaf = path.rsplit("/", 1)[-1]
    if leaf in ("kernel", "depthwise_kernel", "pointwise_kernel") and len(shape) >= 2:
        fan_in = int(np.prod(shape[:-1]))
        value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif leaf in ("gamma", "moving_variance"):
        value = 1.0 + 0.1 * rng.uniform(-1.0, 1.0, shape)
    else:
        value = 0.05 * rng.normal(0.0, 1.0, shape)
    return value.astype(dtype)


def proposals_for(gt_class_ids, gt_boxes, count, image_size, seed):
    """input_roi of one image: [count, (y1, x1, y2, x2)] float32 pixels (see the module)."""
    import numpy as np

    from mrcnn import utils
    boxes = gt_boxes[gt_class_ids > 0]
    positives = np.concatenate([boxes, boxes + 2.0])
    assert np.all(np.diag(utils.compute_overlaps(positives[len(boxes):], boxes)) >= 0.7)
    rng = np.random.default_rng(seed)
    negatives = []
    while len(negatives) < len(positives):
        y, x = rng.uniform(0, image_size - 24, 2)
        h, w = rng.uniform(12, 40, 2)
        box = np.array([[y, x, min(y + h, image_size), min(x + w, image_size)]], np.float32)
        if utils.compute_overlaps(box, boxes).max() <= 0.3:
            negatives.append(box[0])
    rois = np.zeros((count, 4), np.float32)
    chosen = np.concatenate([positives, np.array(negatives)])
    rois[:len(chosen)] = chosen
    return rois


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from mrcnn.config import LOSS_NAMES
    from mrcnn.data import AnchorCache, build_batch, input_names
    from mrcnn.model import MaskRCNN
    from mrcnn.training import LAYER_GROUPS
    from tests.synthetic import BlobDataset

    keras.utils.set_random_seed(0)
    config = parity_config()
    model = MaskRCNN("training", config, os.path.join(args.out, "logs"))
    keras_model = model.keras_model
    for variable in keras_model.weights:
        variable.assign(initial_value(variable.path, tuple(variable.shape), variable.dtype))

    dataset = BlobDataset(count=2, max_objects=2, seed=5)
    arrays = build_batch(dataset, config, list(dataset.image_ids), AnchorCache(config),
                         np.random.default_rng(0))
    x = dict(zip(input_names(config), arrays))
    x["input_roi"] = np.stack([
        proposals_for(arrays[4][i], arrays[5][i], config.POST_NMS_ROIS_TRAINING,
                      config.IMAGE_MAX_DIM, seed=i) for i in range(config.BATCH_SIZE)])

    model.set_trainable(LAYER_GROUPS["all"], verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    out = {f"w0/{v.path}": np.asarray(keras.ops.convert_to_numpy(v)) for v in keras_model.weights}
    for step in range(1, STEPS + 1):
        logs = keras_model.train_on_batch(x, return_dict=True)
        for name in LOSS_NAMES + ("loss", "weight_decay"):
            out[f"loss{step}/{name}"] = np.float64(logs[name])
        for v in keras_model.weights:
            out[f"w{step}/{v.path}"] = np.asarray(keras.ops.convert_to_numpy(v))
    np.savez(os.path.join(args.out, f"parity_{keras.backend.backend()}.npz"), **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
