"""The backend seam: the few operations Keras has no op for, one module per Keras backend.

The graph is ``keras.ops`` everywhere else. What needs a backend's own kernels (NMS,
crop-and-resize, batched gathers, the fused optimizer update, replica sums, the fast
inference function) lives in ``mrcnn/backend/<backend>.py``; both modules define the same
functions with the same arguments, shapes and results:

=====================  =============================================================
function               what
=====================  =============================================================
unfoldable_zero        a data-dependent 0 that graph rewriters cannot fold
batch_gather           ``values[b, indices[b]]`` with 1 or 2 batch axes
argmax_int32           arg-max over the last axis, int32, first maximum on ties
top_k                  k largest, sorted, ties lower index first
l2_loss                sum(x ** 2) / 2
batched_nms            greedy NMS per image (proposals), zero-padded
detection_nms          per-class NMS and top-k of the detection layer
crop_and_resize        bilinear crops, tf.image.crop_and_resize's sampling
pyramid_roi_align      each box pooled from its pyramid level
num_replicas,          the data-parallel replicas of the current strategy and the sum
all_reduce_sum         of gradients over them
sgd_update             one (momentum) SGD step on a variable
fused_batch_norm       inference batch norm in one kernel (None where XLA fuses it)
multi_worker_logs      the step's logs as the strategy can reduce them
make_strategy          the data-parallel distribution of training (or None)
is_chief               whether this process writes checkpoints and logs
worker_replicas        (replicas fed separately, input pipelines) of a distribution
pipeline_batch         images the input pipeline feeds a replica (or the process) a step
pipeline_index         which share of the global batch this process's PyDataset feeds
training_scope         the context fit() runs in (JAX: the distribution's scope)
sync_model_state       the trainer's in-epoch state written back to the variables
training_pipeline      the input pipeline train() uses ("pydataset" or "tf.data")
gpu_count              accelerators the backend sees
make_predictor         the fast inference callable of an inference model
=====================  =============================================================

``get()`` returns the module of the running Keras backend. A new backend (PyTorch) is one
more module with these functions. Outside this package only two places ask which
backend runs: cli_args.quiet_tensorflow (imports TensorFlow only when Keras runs on it)
and the TensorFlow-only features that refuse other backends (mrcnn.backend.require).
"""
import importlib

import keras

SUPPORTED = ("tensorflow", "jax")


class BackendError(RuntimeError):
    """A feature that exists on another Keras backend only; the message names it."""


def name():
    """The running Keras backend's name ("tensorflow", "jax", ...)."""
    return keras.backend.backend()


def get():
    """The seam module of the running Keras backend (mrcnn.backend.tensorflow or .jax)."""
    backend = name()
    if backend not in SUPPORTED:
        raise BackendError(
            f"mrcnn runs on the Keras backends {SUPPORTED}, but KERAS_BACKEND is {backend!r}; "
            f"set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax before importing keras")
    return importlib.import_module(f"mrcnn.backend.{backend}")


def require(backend, feature):
    """Raise BackendError unless the running Keras backend is ``backend``.

    feature: what the caller offers, e.g. "SavedModel export", for the message.
    """
    if name() != backend:
        raise BackendError(
            f"{feature} needs the {backend} Keras backend (KERAS_BACKEND={backend}); "
            f"this process runs Keras on {name()!r}")
