"""Training machinery: the Keras model that owns the multi-task loss, and the callbacks.

The five losses are computed in one place, ``MaskRCNNTrainer.compute_loss``, from the
graph's outputs on every step; nothing is accumulated on the model between calls, so
calling ``train()`` twice (heads, then all) never counts a loss twice.
"""
import logging
import math
import os

import keras
from keras import ops

from mrcnn.config import LOSS_NAMES
from mrcnn.losses import LOSS_FUNCTIONS

logger = logging.getLogger(__name__)

# Layer-name patterns for train(layers=...), as in matterport.
HEADS_REGEX = r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)"
LAYER_GROUPS = {
    "heads": HEADS_REGEX,
    "3+": HEADS_REGEX + r"|(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)",
    "4+": HEADS_REGEX + r"|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)",
    "5+": HEADS_REGEX + r"|(res5.*)|(bn5.*)",
    "all": ".*",
}


class MaskRCNNTrainer(keras.Model):
    """Functional Mask R-CNN training graph with L = sum_i w_i L_i + weight decay.

    Built by mrcnn.graph.build_training_model. Its outputs are a dict (see there); its
    inputs are, in order: input_image, input_image_meta, input_rpn_match, input_rpn_bbox,
    input_gt_class_ids, input_gt_boxes, input_gt_masks (and input_roi).

    loss_weights: {loss name: weight} for the five LOSS_NAMES (missing ones weigh 1.0).
    weight_decay: L2 factor; the penalty is weight_decay / 2 * sum of squared kernels of
    the trainable layers (the gradient is weight_decay * w, SGD's weight decay).
    """

    def __init__(self, inputs, outputs, loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        loss_weights = dict(loss_weights or {})
        self.mrcnn_loss_weights = {name: float(loss_weights.get(name, 1.0)) for name in LOSS_NAMES}
        self.weight_decay = float(weight_decay)
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]
        self.weight_decay_tracker = keras.metrics.Mean(name="weight_decay")

    def named_losses(self, x, y_pred):
        """The five unweighted losses of a batch, as a dict of float32 scalars.

        x: the model inputs (list in input order, or dict keyed by input name).
        y_pred: the model outputs dict.
        """
        if isinstance(x, dict):
            rpn_match, rpn_bbox_target = x["input_rpn_match"], x["input_rpn_bbox"]
            image_meta = x["input_image_meta"]
        else:
            image_meta, rpn_match, rpn_bbox_target = x[1], x[2], x[3]
        active_class_ids = image_meta[:, 12:]
        return {
            "rpn_class_loss": LOSS_FUNCTIONS["rpn_class_loss"](
                rpn_match, y_pred["rpn_class_logits"]),
            "rpn_bbox_loss": LOSS_FUNCTIONS["rpn_bbox_loss"](
                rpn_bbox_target, rpn_match, y_pred["rpn_bbox"]),
            "mrcnn_class_loss": LOSS_FUNCTIONS["mrcnn_class_loss"](
                y_pred["target_class_ids"], y_pred["mrcnn_class_logits"], active_class_ids),
            "mrcnn_bbox_loss": LOSS_FUNCTIONS["mrcnn_bbox_loss"](
                y_pred["target_bbox"], y_pred["target_class_ids"], y_pred["mrcnn_bbox"]),
            "mrcnn_mask_loss": LOSS_FUNCTIONS["mrcnn_mask_loss"](
                y_pred["target_mask"], y_pred["mask_class_ids"], y_pred["mrcnn_mask"]),
        }

    def weight_decay_loss(self):
        """weight_decay / 2 * sum of squares of the trainable kernels (float32 scalar)."""
        penalty = ops.zeros((), dtype="float32")
        if self.weight_decay == 0.0:
            return penalty
        for variable in self.trainable_weights:
            if "kernel" in variable.path:
                value = ops.cast(variable, "float32")
                penalty = penalty + ops.sum(ops.square(value))
        return 0.5 * self.weight_decay * penalty

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = self.named_losses(x, y_pred)
        total = ops.zeros((), dtype="float32")
        for tracker in self.loss_trackers:
            value = ops.cast(losses[tracker.name], "float32")
            tracker.update_state(value)
            total = total + self.mrcnn_loss_weights[tracker.name] * value
        decay = self.weight_decay_loss()
        self.weight_decay_tracker.update_state(decay)
        return total + decay


class CheckpointCallback(keras.callbacks.Callback):
    """Save weights at the end of every epoch whose losses are finite, atomically.

    checkpoint_path: a format string with ``{epoch:04d}``; epochs are numbered from 1.
    """

    def __init__(self, checkpoint_path, save_fn):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.save_fn = save_fn
        self.last_saved = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(v)) for v in logs.values()):
            logger.warning("epoch %d ended with non-finite losses; no checkpoint written", epoch + 1)
            return
        path = self.checkpoint_path.format(epoch=epoch + 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.save_fn(path)
        self.last_saved = path
        logger.info("saved %s", path)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or inf, naming the loss and images.

    batch_image_ids: a callable (batch index in the epoch) -> list of dataset image ids.
    After fit returns, ``message`` is set if training was stopped.
    """

    def __init__(self, batch_image_ids):
        super().__init__()
        self.batch_image_ids = batch_image_ids
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = sorted(name for name, value in logs.items() if not math.isfinite(float(value)))
        if bad:
            ids = self.batch_image_ids(batch)
            self.message = (f"non-finite loss {', '.join(bad)} at batch {batch} of the epoch "
                            f"(image ids {ids}); training stopped, the last good checkpoint is kept")
            logger.error(self.message)
            self.model.stop_training = True
