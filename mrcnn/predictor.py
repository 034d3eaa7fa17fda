"""Run the inference graph fast: one traced function, optionally with the weights frozen.

``MaskRCNN.detect`` calls a ``Predictor``. With ``freeze=True`` the traced graph's
variables are replaced by constants (``convert_variables_to_constants_v2``), so that
TensorFlow's graph optimizer can fold each frozen BatchNorm into the convolution before
it and fuse the bias and ReLU; the convolutions also see constant filters. On a 2-core
CPU this made float32 ResNet-FPN inference 1.2x to 1.3x faster at 1024 px with direct
convolutions, and 1.1x with the Winograd convolutions (``Config.WINOGRAD_CONVS``).

Freezing costs time once (20 to 26 s for ResNet-50 at 1024 px on 2 cores, against 0.1
to 0.3 s saved per image with Winograd convolutions, about 1 s without), so the predictor
runs the variable graph until the same weights have been used ``freeze_after`` times (2 by
default): a single detect() in a notebook pays nothing, a loop over a dataset freezes on
its second batch.

Frozen graphs go stale when the weights change (``load_weights``, ``set_weights``,
``copy_weights_by_name``...). Before every call the predictor takes a fingerprint of the
weights (the sum and the sum of squares of each variable, a few milliseconds) and
freezes again when it differs. It keeps one frozen graph per input shape for at most
``max_frozen_shapes`` shapes; beyond that (images of many sizes, e.g. IMAGE_RESIZE_MODE
"none") it runs the unfrozen function, which accepts any size without re-freezing.
"""
import logging

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from mrcnn.config import check_positive_int

logger = logging.getLogger(__name__)


class Predictor:
    """Callable ``(images, metas) -> list of NumPy outputs`` for a Keras inference model.

    Args:
        keras_model: the inference ``keras.Model`` with inputs (images, image metas).
        freeze: fold the weights into the graph as constants (see the module doc).
        max_frozen_shapes: int >= 1, input shapes with a frozen graph of their own.
        freeze_after: int >= 1, freeze on this call with unchanged weights (1: at once).

    Call with images: [batch, H, W, C] float32 molded images and metas: [batch,
    META_SIZE] float32; returns the model's outputs as NumPy arrays, in output order.
    """

    def __init__(self, keras_model, freeze=True, max_frozen_shapes=2, freeze_after=2):
        check_positive_int("max_frozen_shapes", max_frozen_shapes)
        check_positive_int("freeze_after", freeze_after)
        self.freeze_after = freeze_after
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
        self._shapes_seen = set()
        self.freezes = 0  # how many times a graph was frozen (for tests and logs)

    def fingerprint(self):
        """[num_variables, 2] float32: sum and sum of squares of every weight."""
        return self._fingerprint_fn().numpy()

    def __call__(self, images, metas):
        images = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        metas = tf.convert_to_tensor(np.asarray(metas, dtype=np.float32))
        function = self._frozen_function(images, metas) if self.freeze else None
        outputs = function(images, metas) if function is not None else self._function(images, metas)
        return [np.asarray(o) for o in outputs]

    def _frozen_function(self, images, metas):
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
        self._calls_with_fingerprint += 1
        if self._calls_with_fingerprint < self.freeze_after:
            return None
        function = self._frozen.get(key)
        if function is None:
            concrete = self._function.get_concrete_function(
                tf.TensorSpec(images.shape, tf.float32), tf.TensorSpec(metas.shape, tf.float32))
            function = convert_variables_to_constants_v2(concrete)
            self._frozen[key] = function
            self.freezes += 1
            logger.debug("froze the inference graph for inputs %s", key)
        return function
