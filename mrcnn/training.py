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

from mrcnn import backend
from mrcnn.config import KEYPOINT_LOSS_NAME, LOSS_NAMES
from mrcnn.losses import LOSS_FUNCTIONS, mrcnn_keypoint_loss

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


def is_decayed(variable):
    """Whether L2 weight decay applies to ``variable``: the kernels (conv / dense weights)."""
    return "kernel" in getattr(variable, "path", variable.name)


class MomentumSGD(keras.optimizers.SGD):
    """Keras SGD with momentum, L2 weight decay and global-norm clipping, in fewer passes.

    The update is exactly that of ``keras.optimizers.SGD(momentum, global_clipnorm)``
    applied to the gradient of ``loss + weight_decay / 2 * sum(kernel ** 2)``:

        g = dloss/dw + weight_decay * w          (kernels only, see ``is_decayed``)
        scale = global_clipnorm / max(||g||, global_clipnorm)   (over all variables)
        m = momentum * m - learning_rate * scale * g;  w = w + m

    but the decay gradient is added here instead of being differentiated through the
    loss, the clipping factor is folded into the learning rate instead of rescaling
    every gradient, and the momentum step is TensorFlow's fused ``ResourceApplyKerasMomentum``.
    On ResNet-50 that is about five passes over each kernel per step instead of twelve.
    ``MaskRCNNTrainer`` reports the decay term in the loss without differentiating it
    when its optimizer is a ``MomentumSGD``.

    Args:
        learning_rate, momentum: as ``keras.optimizers.SGD`` (nesterov is not supported).
        global_clipnorm: float > 0 or None.
        l2_decay: float >= 0, the factor of the L2 penalty (``Config.WEIGHT_DECAY``).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, global_clipnorm=None, l2_decay=0.0,
                 name="MomentumSGD", **kwargs):
        if kwargs.get("nesterov"):
            raise ValueError("MomentumSGD does not support nesterov=True")
        if kwargs.get("clipnorm") or kwargs.get("clipvalue"):
            raise ValueError("MomentumSGD clips by global norm only (global_clipnorm)")
        l2_decay = float(l2_decay)
        if not math.isfinite(l2_decay) or l2_decay < 0:
            raise ValueError(f"l2_decay must be a finite float >= 0, got {l2_decay!r}")
        super().__init__(learning_rate=learning_rate, momentum=momentum,
                         global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.l2_decay = l2_decay
        self._clip_scale = None

    def apply(self, grads, trainable_variables=None):
        variables = (self._trainable_variables if trainable_variables is None
                     else list(trainable_variables))
        # Under tf.distribute the replicas' gradients are summed here, once, so that the
        # decay term and the clipping norm apply to the global gradient (Keras would clip
        # each replica's share and add the decay once per replica); see _all_reduce_sum_gradients.
        grads = all_reduce_sum(list(grads))
        if self.l2_decay:
            grads = [g if g is None or not is_decayed(v)
                     else g + ops.cast(self.l2_decay, g.dtype) * ops.cast(v, g.dtype)
                     for g, v in zip(grads, variables)]
        return super().apply(grads, None if trainable_variables is None else variables)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        """Identity: ``apply`` has already summed the gradients across replicas."""
        return list(grads_and_vars)

    def _clip_gradients(self, grads):
        """Compute the global clipping factor (kept for update_step); grads pass unchanged."""
        self._clip_scale = None
        if self.global_clipnorm and self.global_clipnorm > 0:
            present = [ops.cast(g, "float32") for g in grads if g is not None]
            if present:
                l2_loss = backend.get().l2_loss
                norm = ops.sqrt(2.0 * ops.sum(ops.stack([l2_loss(g) for g in present])))
                clip = ops.cast(self.global_clipnorm, "float32")
                self._clip_scale = clip / ops.maximum(norm, clip)
        return grads

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        if self._clip_scale is not None:
            learning_rate = learning_rate * ops.cast(self._clip_scale, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        # TensorFlow: the fused ResourceApply kernels; JAX: the same arithmetic in Keras ops.
        if self.momentum == 0:
            backend.get().sgd_update(variable, gradient, learning_rate)
            return
        accumulator = self.momentums[self._get_variable_index(variable)]
        backend.get().sgd_update(variable, gradient, learning_rate, accumulator=accumulator,
                                 momentum=self.momentum)

    def get_config(self):
        config = super().get_config()
        config["l2_decay"] = self.l2_decay
        config.pop("nesterov", None)
        return config


def num_replicas():
    """Replicas in sync of the current tf.distribute strategy (1 without one, and on JAX)."""
    return backend.get().num_replicas()


def all_reduce_sum(grads):
    """Sum a list of per-replica gradients (None kept) across replicas; identity on one replica."""
    return backend.get().all_reduce_sum(grads)


class MaskRCNNTrainer(keras.Model):
    """Functional Mask R-CNN training graph with L = sum_i w_i L_i + weight decay.

    Built by mrcnn.graph.build_training_model. Its outputs are a dict (see there); its
    inputs are, in order: input_image, input_image_meta, input_rpn_match, input_rpn_bbox,
    input_gt_class_ids, input_gt_boxes, input_gt_masks (and input_roi).

    loss_weights: {loss name: weight} for the five LOSS_NAMES (missing ones weigh 1.0).
    Keypoint models (outputs with "mrcnn_keypoint_logits") add a sixth loss,
    mrcnn_keypoint_loss, and its metric.
    weight_decay: L2 factor; the penalty is weight_decay / 2 * sum of squared kernels of
    the trainable layers (the gradient is weight_decay * w, SGD's weight decay).
    """

    def __init__(self, inputs, outputs, loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        loss_weights = dict(loss_weights or {})
        names = LOSS_NAMES
        if isinstance(outputs, dict) and "mrcnn_keypoint_logits" in outputs:
            names = names + (KEYPOINT_LOSS_NAME,)
        self.mrcnn_loss_weights = {name: float(loss_weights.get(name, 1.0)) for name in names}
        self.weight_decay = float(weight_decay)
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in names]
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
        losses = {
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
        if "mrcnn_keypoint_logits" in y_pred:
            losses[KEYPOINT_LOSS_NAME] = mrcnn_keypoint_loss(
                y_pred["target_keypoints"], y_pred["target_keypoint_weights"],
                y_pred["mrcnn_keypoint_logits"])
        return losses

    def weight_decay_loss(self):
        """weight_decay / 2 * sum of squares of the trainable kernels (float32 scalar).

        When the optimizer is a ``MomentumSGD`` with the same decay, it adds the decay's
        gradient itself, so the value here is reported without being differentiated.
        """
        if self.weight_decay == 0.0:
            return ops.zeros((), dtype="float32")
        optimizer = getattr(self, "optimizer", None)
        # Keras wraps the optimizer in a LossScaleOptimizer under mixed_float16.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        applied_by_optimizer = (isinstance(optimizer, MomentumSGD)
                                and optimizer.l2_decay == self.weight_decay)
        terms = []
        l2_loss = backend.get().l2_loss
        for variable in self.trainable_weights:
            if is_decayed(variable):
                value = ops.cast(variable, "float32")
                if applied_by_optimizer:
                    value = ops.stop_gradient(value)
                terms.append(l2_loss(value))  # sum(value ** 2) / 2
        if not terms:
            return ops.zeros((), dtype="float32")
        return self.weight_decay * ops.sum(ops.stack(terms))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build metrics and optimizer from the first replica's share of the first batch.

        Keras' TensorFlow trainer averages the first batch across replicas
        (``strategy.reduce("MEAN", ...)``) only to learn its shapes; that fails for dict
        inputs under MultiWorkerMirroredStrategy and for bool inputs under any strategy.
        The local share has the same per-replica shapes.
        """
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        import tensorflow as tf  # strategies are tf.distribute's (TensorFlow backend only)
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda value: (strategy.experimental_local_results(value)[0]
                               if isinstance(value, tf.distribute.DistributedValues) else value),
                next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def train_step(self, *args):
        # TensorFlow: (data) -> logs; JAX: (state, data) -> (logs, state).
        return _multi_worker_logs(super().train_step(*args))

    def test_step(self, *args):
        return _multi_worker_logs(super().test_step(*args))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = self.named_losses(x, y_pred)
        total = ops.zeros((), dtype="float32")
        for tracker in self.loss_trackers:
            value = ops.cast(losses[tracker.name], "float32")
            tracker.update_state(value)
            total = total + self.mrcnn_loss_weights[tracker.name] * value
        decay = self.weight_decay_loss()
        self.weight_decay_tracker.update_state(decay)
        return scale_for_replicas(total + decay)


def _multi_worker_logs(logs):
    """The step's logs as the backend's strategy can reduce them (mrcnn.backend)."""
    return backend.get().multi_worker_logs(logs)


def scale_for_replicas(loss):
    """The replica's share of the loss: loss / num_replicas (identity on one replica).

    Each replica's loss is the mean over its own images; the gradients of the shares are
    summed across replicas, which gives the gradient of the mean of the replicas' losses.
    Keras' loss tracker multiplies the reported value back.
    """
    replicas = num_replicas()
    if replicas == 1:
        return loss
    return loss / ops.cast(replicas, loss.dtype)


class CheckpointCallback(keras.callbacks.Callback):
    """Save weights and training state at each epoch end and every ``every_steps`` steps.

    Only while the losses are finite; each file is written atomically (state first, then
    the weights file, whose presence marks the checkpoint as complete).

    save_fn: ``save_fn(epoch, step) -> path``: writes the checkpoint at position
        (completed epochs, steps done in the next epoch); see mrcnn.checkpoints.
    steps_per_epoch: int, steps of a full epoch.
    every_steps: int or None; mid-epoch checkpoints after every that many steps of an epoch.
    start_step: steps of the first epoch already done before this fit (a resumed run).
    enabled: False on the non-chief workers of a multi-worker run (they save nothing).
    """

    def __init__(self, save_fn, steps_per_epoch, every_steps=None, start_step=0, enabled=True):
        super().__init__()
        self.save_fn = save_fn
        self.steps_per_epoch = int(steps_per_epoch)
        self.every_steps = every_steps
        self.start_step = int(start_step)
        self.enabled = enabled
        self.last_saved = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if (not self.every_steps or step % self.every_steps or step >= self.steps_per_epoch):
            return
        if not all(math.isfinite(float(v)) for v in (logs or {}).values()):
            return  # NonFiniteLossGuard reports it
        self._save(self._epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.start_step = 0
        logs = logs or {}
        if not all(math.isfinite(float(v)) for v in logs.values()):
            logger.warning("epoch %d ended with non-finite losses; no checkpoint written", epoch + 1)
            return
        self._save(epoch + 1, 0)

    def _save(self, epoch, step):
        if self.enabled:
            # JAX's trainer holds the state outside the model's variables during an epoch.
            backend.get().sync_model_state(self.model)
            self.last_saved = self.save_fn(epoch, step)
            logger.info("saved %s", self.last_saved)


# ---------------------------------------------------------------------------- training state
def optimizer_of(keras_model):
    """The model's optimizer without a LossScaleOptimizer wrapper (or None)."""
    optimizer = getattr(keras_model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", optimizer)


def save_training_state(path, keras_model, epoch, step, target_epochs=None):
    """Write the optimizer state and the training position to ``path`` (.npz, atomic).

    Holds every optimizer variable (momentum per trainable variable, the iteration count
    that positions a learning-rate schedule, the loss scale under mixed_float16) by path,
    the layers' random-generator states (see state_names), epoch (completed epochs), step
    (steps done in the next epoch), the learning rate in use, and target_epochs: the
    ``epochs`` of the train() call writing it (see restore_optimizer_state).
    """
    import uuid

    import numpy as np
    optimizer = keras_model.optimizer
    arrays = {"epoch": np.int64(epoch), "step": np.int64(step),
              "target_epochs": np.int64(-1 if target_epochs is None else target_epochs)}
    variables = list(random_states(keras_model))
    if optimizer is not None:
        learning_rate = optimizer_of(keras_model).learning_rate
        arrays["learning_rate"] = np.float64(ops.convert_to_numpy(learning_rate))
        variables += list(optimizer.variables)
    for i, variable in enumerate(variables):
        arrays[f"v{i}"] = np.asarray(ops.convert_to_numpy(variable))
    arrays["names"] = np.array(state_names(keras_model, variables), dtype=str)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def random_states(keras_model):
    """The model's variables that are not weights: the states of its layers' SeedGenerators
    (e.g. DetectionTargetLayer's ROI sampling), which weight files do not hold."""
    weights = {id(v) for v in keras_model.weights}
    return [v for v in keras_model.variables if id(v) not in weights]


def state_names(keras_model, variables):
    """The keys of ``variables`` in a state file: optimizer variables by path; random
    states by their rank in ``random_states`` (``random_state/<i>``), since a SeedGenerator's
    path gets a suffix when the process has built another model before."""
    ranks = {id(v): i for i, v in enumerate(random_states(keras_model))}
    return [f"random_state/{ranks[id(v)]}" if id(v) in ranks else v.path for v in variables]


def read_training_state(path):
    """The contents of a state file: dict with epoch, step, learning_rate (or None) and
    variables {optimizer variable path: array}."""
    import numpy as np
    with np.load(path) as data:
        names = [str(n) for n in data["names"]]
        return {
            "epoch": int(data["epoch"]),
            "step": int(data["step"]),
            "learning_rate": float(data["learning_rate"]) if "learning_rate" in data else None,
            "target_epochs": int(data["target_epochs"]) if "target_epochs" in data else -1,
            "variables": {name: data[f"v{i}"] for i, name in enumerate(names)},
        }


def restore_optimizer_state(keras_model, state, strategy=None):
    """Restore a state file's random-generator states and, when the train() call that wrote
    it had not finished, its optimizer variables; returns the number of variables restored.

    An uninterrupted run keeps its optimizer within a train() call and starts a fresh one
    (zero momentum, iteration 0) at each new call, as matterport does; so the momentum is
    restored for a checkpoint written mid-call (mid-epoch, or before the call's last epoch)
    and not for one written at the end of a call, which a later train() call continues.
    The learning rate is never restored (``train(learning_rate=...)`` decides it).
    The optimizer is built first (momentum slots of the current trainable variables; the
    slots of variables absent from the state stay zero).
    """
    import contextlib
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    optimizer = keras_model.optimizer
    mid_call = state["step"] > 0 or state["epoch"] < state.get("target_epochs", -1)
    with scope:
        if not optimizer.built:
            optimizer.build(keras_model.trainable_variables)
        variables = random_states(keras_model) + (list(optimizer.variables) if mid_call else [])
        restored = 0
        for variable, key in zip(variables, state_names(keras_model, variables)):
            value = state["variables"].get(key)
            if value is None or key.endswith("learning_rate"):
                continue
            if tuple(value.shape) != tuple(variable.shape):
                logger.warning("training state %s: saved shape %s != %s, not restored",
                               variable.path, value.shape, tuple(variable.shape))
                continue
            variable.assign(value)
            restored += 1
    if not mid_call:
        logger.info("the checkpoint ends a train() call: this call starts with a fresh optimizer")
    return restored


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


# ---------------------------------------------------------------------------- inputs
class TrainingInputs:
    """The training and validation inputs of one ``MaskRCNN.train`` call, for each fit.

    Batches follow mrcnn.data.BatchPlan (seed 0 for training, 10000 for validation): the
    image ids and random draws of a step depend on (epoch, step, replica) only, so a run
    resumed at a step sees the batches the uninterrupted run would have seen, and the
    PyDataset and tf.data pipelines give the same batches on one replica.
    Each replica takes IMAGES_PER_GPU images a step (BATCH_SIZE without a strategy) on
    TensorFlow; on JAX the pipeline feeds BATCH_SIZE images a step and keras.distribution
    splits them over the devices (mrcnn.backend's pipeline_batch).
    """

    TRAIN_SEED, VALIDATION_SEED = 0, 10_000

    def __init__(self, model, train_dataset, val_dataset, pipeline, augmentation=None,
                 no_augmentation_sources=None, workers=None):
        from mrcnn.data import BatchPlan
        from mrcnn.distribute import worker_replicas
        self.model = model
        self.config = config = model.config
        self.strategy = model.strategy
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.pipeline = pipeline
        self.augmentation = augmentation
        self.no_augmentation_sources = no_augmentation_sources
        self.workers = workers
        self.replicas, self.input_pipelines = worker_replicas(self.strategy)
        per_replica = backend.get().pipeline_batch(config, self.strategy)
        self.plan = BatchPlan(train_dataset.image_ids, config.STEPS_PER_EPOCH, per_replica,
                              self.replicas, seed=self.TRAIN_SEED)
        self.validation_steps = None
        self.val_plan = None
        if val_dataset is not None and config.VALIDATION_STEPS:
            self.validation_steps = config.VALIDATION_STEPS
            self.val_plan = BatchPlan(val_dataset.image_ids, config.VALIDATION_STEPS,
                                      per_replica, self.replicas, seed=self.VALIDATION_SEED)
        self.start_step = 0
        self.epoch = 0
        inputs = self

        class _Position(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                inputs.epoch = epoch

            def on_epoch_end(self, epoch, logs=None):
                inputs.start_step = 0

        self.position_callback = _Position()

    def batch_image_ids(self, batch):
        """Image ids of the global batch at ``batch`` of the current fit epoch."""
        return self.plan.ids(self.epoch, self.start_step + batch)

    def make(self, first_epoch, last_epoch, first_step):
        """(training data, validation data or None) for a fit over epochs
        first_epoch .. last_epoch - 1, starting at step first_step of the first."""
        from mrcnn.data import make_sequence
        config = self.config
        if self.pipeline == "pydataset":
            threads = self.workers or max(1, min(4, os.cpu_count() or 1))
            # Several JAX processes: each feeds its share of the global batch.
            shard = {"replica": backend.get().pipeline_index(self.strategy),
                     "replicas": self.replicas}
            train = make_sequence(self.train_dataset, config, shuffle=True,
                                  augmentation=self.augmentation,
                                  no_augmentation_sources=self.no_augmentation_sources,
                                  steps=config.STEPS_PER_EPOCH, seed=self.TRAIN_SEED,
                                  workers=threads, epoch=first_epoch, start=first_step,
                                  **shard)
            val = None
            if self.val_plan is not None:
                val = make_sequence(self.val_dataset, config, shuffle=True,
                                    steps=config.VALIDATION_STEPS, seed=self.VALIDATION_SEED,
                                    workers=threads, epoch=first_epoch, **shard)
            return train, val
        train = self._tf_data(self.train_dataset, self.plan, first_epoch, last_epoch, first_step,
                              self.augmentation)
        val = None
        if self.val_plan is not None:
            val = self._tf_data(self.val_dataset, self.val_plan, first_epoch, last_epoch, 0, None)
        return train, val

    def _tf_data(self, dataset, plan, first_epoch, last_epoch, first_step, augmentation):
        from mrcnn.data import make_tf_dataset

        def dataset_fn(input_context=None):
            replicas_here, first_replica = plan.replicas, 0
            if input_context is not None:
                replicas_here = plan.replicas // input_context.num_input_pipelines
                first_replica = input_context.input_pipeline_id * replicas_here
            return make_tf_dataset(dataset, self.config, plan, first_epoch, last_epoch,
                                   first_step=first_step, replicas_here=replicas_here,
                                   first_replica=first_replica, augmentation=augmentation,
                                   no_augmentation_sources=self.no_augmentation_sources,
                                   parallel_calls=self.workers)

        if self.strategy is None:
            return dataset_fn()
        return self.strategy.distribute_datasets_from_function(dataset_fn)


def tensorboard_available():
    """Whether Keras' TensorBoard callback can write here: it writes with TensorFlow's
    summary ops, which a JAX-only install lacks (then training logs no TensorBoard files)."""
    import importlib.util
    try:
        found = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        logger.info("TensorFlow is not installed: no TensorBoard logs (the checkpoints and "
                    "the Keras progress bar are unaffected)")
    return found
