"""JaxPredictor: the inference model as one XLA-compiled function (the JAX backend's
counterpart of mrcnn.predictor.Predictor, which freezes TensorFlow graphs)."""
import logging

import jax
import numpy as np

logger = logging.getLogger(__name__)


class JaxPredictor:
    """Callable ``(images, metas) -> list of NumPy outputs`` for a Keras inference model.

    The model runs as ``jax.jit`` of its ``stateless_call`` with the weights passed as
    arguments: one compilation per input shape (the molded size is fixed by the config, so
    ``detect()`` on images of any size compiles once; a batch smaller than one compiled
    before is padded to it), and weights changed by
    ``load_weights`` or training are picked up without recompiling.

    keras_model: the inference ``keras.Model`` with inputs (images, image metas).
    Call with images: [batch, H, W, C] float32 molded images and metas: [batch, META_SIZE]
    float32; returns the model's outputs as NumPy arrays, in output order.
    """

    def __init__(self, keras_model):
        self.keras_model = keras_model
        self._batch = 0  # the largest batch compiled so far; smaller ones are padded to it

        def run(trainable, non_trainable, images, metas):
            outputs, _ = keras_model.stateless_call(trainable, non_trainable, [images, metas],
                                                    training=False)
            return outputs

        self._function = jax.jit(run)

    @property
    def compilations(self):
        """How many input signatures have been compiled so far."""
        return self._function._cache_size()

    def __call__(self, images, metas):
        model = self.keras_model
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        images = np.asarray(images, dtype=np.float32)
        metas = np.asarray(metas, dtype=np.float32)
        count = len(images)
        # A short last batch (e.g. 3 of 8 images) is padded with copies of its first image
        # rather than compiled again for its own size.
        self._batch = max(self._batch, count)
        if count < self._batch:
            rows = np.zeros(self._batch, dtype=int)
            rows[:count] = np.arange(count)
            images, metas = images[rows], metas[rows]
        before = self.compilations
        outputs = self._function(trainable, non_trainable, images, metas)
        if self.compilations != before:
            logger.info("compiled the inference graph for inputs %s", np.shape(images))
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [np.asarray(o)[:count] for o in outputs]
