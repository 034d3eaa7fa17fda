"""Run the inference graph fast: one traced function, optionally with the weights frozen.

``MaskRCNN.detect`` calls a ``Predictor``. With ``freeze=True`` the traced graph's
variables are replaced by constants (``convert_variables_to_constants_v2``), so that
TensorFlow's graph optimizer can fold each frozen BatchNorm into the convolution before
it and fuse the bias and ReLU; the convolutions also see constant filters. On a 2-core
CPU this made float32 ResNet-FPN inference 1.2x to 1.3x faster at 1024 px with direct
convolutions, and 1.1x with the Winograd convolutions (``Config.WINOGRAD_CONVS``).

Freezing costs time once: 1.2 to 4 times the first call (20 to 26 s for ResNet-50 at 1024 px
on 2 cores; 19.8 s against a 4.9 s first call at 128 px), against 0 to 25 % of each later
call saved. So by default it happens only once it pays for itself, by the rule of renting
skis: the predictor times the calls it runs on the variable graph and freezes when the time
freezing would have saved on them (``freeze_gain`` of it) reaches its estimated cost
(``freeze_cost_ratio`` times the first call). A notebook's few detect() calls never freeze;
a loop over a dataset (``evaluate``) freezes once it has shown that it is long, and in the
worst case spends about twice what knowing the loop's length in advance would. One INFO
line says when it freezes and why. ``freeze_after=N`` instead freezes on the N-th call with
the same weights (1: at once), as before.

Frozen graphs go stale when the weights change (``load_weights``, ``set_weights``,
``copy_weights_by_name``...). Before every call the predictor takes a fingerprint of the
weights (the sum and the sum of squares of each variable, a few milliseconds) and
freezes again when it differs. It keeps one frozen graph per input shape for at most
``max_frozen_shapes`` shapes; beyond that (images of many sizes, e.g. IMAGE_RESIZE_MODE
"none") it runs the unfrozen function, which accepts any size without re-freezing.
"""
import logging
import time

import numpy as np

from mrcnn.config import check_positive_int

logger = logging.getLogger(__name__)


# Measured on a 2-core CPU (module doc and README): freezing takes 1.2 to 4 times the first
# call and saves 0 to 25 % of each later one (up to 14 % with Winograd convolutions, the CPU
# default). Both are taken on the cautious side: freezing comes late rather than in vain.
FREEZE_COST_RATIO = 4.0
FREEZE_GAIN = 0.1


class Predictor:
    """Callable ``(images, metas) -> list of NumPy outputs`` for a Keras inference model.

    Args:
        keras_model: the inference ``keras.Model`` with inputs (images, image metas).
        freeze: fold the weights into the graph as constants (see the module doc).
        max_frozen_shapes: int >= 1, input shapes with a frozen graph of their own.
        freeze_after: None (default): freeze once it pays for itself (module doc); an int
            >= 1: freeze on this call with unchanged weights (1: at once).
        freeze_cost_ratio: float > 0, estimated freezing time / the first call's time.
        freeze_gain: float in (0, 1), estimated fraction of a call's time freezing saves.

    Call with images: [batch, H, W, C] float32 molded images and metas: [batch,
    META_SIZE] float32; returns the model's outputs as NumPy arrays, in output order.
    TensorFlow backend only: on another Keras backend the constructor raises
    mrcnn.backend.BackendError (importing the module imports no TensorFlow).
    """

    def __init__(self, keras_model, freeze=True, max_frozen_shapes=2, freeze_after=None,
                 freeze_cost_ratio=FREEZE_COST_RATIO, freeze_gain=FREEZE_GAIN):
        from mrcnn import backend
        backend.require("tensorflow", "mrcnn.predictor.Predictor (a traced TensorFlow graph "
                                      "with frozen weights; on JAX, detect() compiles the model "
                                      "with mrcnn.backend.jax_predictor)")
        import tensorflow as tf
        check_positive_int("max_frozen_shapes", max_frozen_shapes)
        if freeze_after is not None:
            check_positive_int("freeze_after", freeze_after)
        if not isinstance(freeze_cost_ratio, (int, float)) or not freeze_cost_ratio > 0:
            raise ValueError(f"freeze_cost_ratio must be a number > 0, got {freeze_cost_ratio!r}")
        if not isinstance(freeze_gain, (int, float)) or not 0 < freeze_gain < 1:
            raise ValueError(f"freeze_gain must be a number in (0, 1), got {freeze_gain!r}")
        self.freeze_after = freeze_after
        self.freeze_cost_ratio = float(freeze_cost_ratio)
        self.freeze_gain = float(freeze_gain)
        self.keras_model = keras_model
        self.freeze = bool(freeze)
        self.max_frozen_shapes = max_frozen_shapes
        model = keras_model

        @tf.function(reduce_retracing=True, autograph=False)
        def run(images, metas):
            return model([images, metas], training=False)

        self._function = run
        variables = [v.value if hasattr(v, "value") else v for v in keras_model.weights]

        @tf.function(autograph=False)
        def fingerprint():
            if not variables:
                return tf.zeros([0, 2], tf.float32)
            return tf.stack([tf.stack([tf.reduce_sum(tf.cast(v, tf.float32)),
                                       tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))])
                             for v in variables])

        self._fingerprint_fn = fingerprint
        self._frozen = {}  # input shapes -> frozen concrete function
        self._frozen_fingerprint = None
        self._calls_with_fingerprint = 0
        self._seconds_with_fingerprint = 0.0  # variable-graph seconds since the weights changed
        self._first_call_seconds = None       # the first call: tracing included
        self._shapes_seen = set()
        self.freezes = 0  # how many times a graph was frozen (for tests and logs)

    def fingerprint(self):
        """[num_variables, 2] float32: sum and sum of squares of every weight."""
        return self._fingerprint_fn().numpy()

    def __call__(self, images, metas):
        import tensorflow as tf
        images = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        metas = tf.convert_to_tensor(np.asarray(metas, dtype=np.float32))
        function = self._frozen_function(images, metas) if self.freeze else None
        if function is not None:
            outputs = function(images, metas)
            return [np.asarray(o) for o in outputs]
        if self._first_call_seconds is None:
            logger.info("tracing the inference graph (the first call takes a few seconds)")
        started = time.perf_counter()
        outputs = [np.asarray(o) for o in self._function(images, metas)]
        elapsed = time.perf_counter() - started
        if self._first_call_seconds is None:
            self._first_call_seconds = elapsed
        else:
            self._seconds_with_fingerprint += elapsed
        return outputs

    def _pays_to_freeze(self):
        """True when freezing now has paid for itself (or the N-th call of freeze_after came)."""
        if self.freeze_after is not None:
            return self._calls_with_fingerprint >= self.freeze_after
        if self._first_call_seconds is None:
            return False
        cost = self.freeze_cost_ratio * self._first_call_seconds
        return self.freeze_gain * self._seconds_with_fingerprint >= cost

    def _frozen_function(self, images, metas):
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2)
        key = (tuple(images.shape), tuple(metas.shape))
        self._shapes_seen.add(key)
        if len(self._shapes_seen) > self.max_frozen_shapes:
            if self._frozen:
                logger.info("inputs of more than %d shapes: running without frozen weights",
                            self.max_frozen_shapes)
                self._frozen.clear()
            return None
        current = self.fingerprint()
        if self._frozen_fingerprint is None or not np.array_equal(current, self._frozen_fingerprint):
            self._frozen.clear()
            self._frozen_fingerprint = current
            self._calls_with_fingerprint = 0
            self._seconds_with_fingerprint = 0.0
        self._calls_with_fingerprint += 1
        function = self._frozen.get(key)
        if function is None and not self._pays_to_freeze():
            return None
        if function is None:
            logger.info("freezing the inference graph for inputs %s after %d calls (%.1f s) with "
                        "the same weights: a one-time cost that makes later calls faster",
                        key[0], self._calls_with_fingerprint - 1, self._seconds_with_fingerprint)
            concrete = self._function.get_concrete_function(
                tf.TensorSpec(images.shape, tf.float32), tf.TensorSpec(metas.shape, tf.float32))
            function = convert_variables_to_constants_v2(concrete)
            self._frozen[key] = function
            self.freezes += 1
            logger.debug("froze the inference graph for inputs %s", key)
        return function
