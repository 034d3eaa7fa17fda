"""Compact Mask R-CNN models for training from scratch on a CPU, and their schedule.

What the synthetic samples (``samples/shapes.py``, ``samples/keypoints.py``) share, so that
a new small from-scratch experiment starts from a model that is known to learn in minutes:

* ``compact_backbone``: a GroupNorm residual backbone with ResNet layer names;
  ``small_backbone``: a smoke-test backbone that compiles in seconds.
* ``CompactConfig``: the model and schedule settings of a compact model (128 px images,
  narrow heads, small anchors); a subclass adds NAME, NUM_CLASSES and the dataset's
  instance counts. ``SmallCompactConfig``: its toy-sized variant (CI, ``--small``).
* ``inference_config``: a config class turned into its one-image-per-batch instance.
* ``learning_rate_at`` / ``lr_schedule_callback``: linear warm-up then cosine decay;
  ``time_budget_callback``: the same curve over a wall-clock training budget.
* ``distinct_color``: random colours that stand out from given ones (synthetic drawing).

Nothing here imports Keras or TensorFlow at import time: the samples check their command
line before TensorFlow starts.
"""
import math
import time

from mrcnn.config import Config


# ---------------------------------------------------------------------------- backbones
def compact_backbone(input_image, stage5=True, train_bn=False):
    """A compact residual backbone with GroupNorm, sized for 128 px synthetic images.

    A 3x3 stride-2 stem, then per stage 2..5 a stride-2 3x3 conv and one residual block
    of two 3x3 convs; widths 32 (stem), 64, 96, 128, 192. Layer names follow the
    ResNet scheme (res{stage}a_branch2a, bn{stage}a_branch2a, ...) so that the training
    layer groups ("3+", "4+", ...) still select stages. About a seventh of ResNet-50's
    cost at this size, which buys several times more training steps on a CPU.

    input_image: [batch, H, W, 3] KerasTensor, molded. train_bn: unused (GroupNorm has no
    batch statistics). Returns [C1, ..., C5] KerasTensors [batch, H / s, W / s, C] at
    strides s = 2, 4, 8, 16, 32 (C5 is None when not stage5).
    """
    import keras

    from mrcnn.layers.norm import GroupNorm

    def conv_gn_relu(x, filters, stride, conv_name, norm_name, relu=True):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", name=conv_name)(x)
        x = GroupNorm(max_groups=16, name=norm_name)(x)
        return keras.layers.Activation("relu")(x) if relu else x

    c1 = conv_gn_relu(input_image, 32, 2, "conv1", "bn_conv1")
    x = c1
    stages = [c1]
    for stage, filters in zip(range(2, 6), (64, 96, 128, 192)):
        if stage == 5 and not stage5:
            stages.append(None)
            break
        x = conv_gn_relu(x, filters, 2, f"res{stage}a_branch1", f"bn{stage}a_branch1")
        y = conv_gn_relu(x, filters, 1, f"res{stage}a_branch2a", f"bn{stage}a_branch2a")
        y = conv_gn_relu(y, filters, 1, f"res{stage}a_branch2b", f"bn{stage}a_branch2b", relu=False)
        x = keras.layers.Add()([x, y])
        x = keras.layers.Activation("relu", name=f"res{stage}a_out")(x)
        stages.append(x)
    return stages


def small_backbone(input_image, stage5=True, train_bn=False):
    """Five strided 3x3 conv + ReLU stages, [C1, ..., C5] at strides 4, 4, 8, 16, 32.

    input_image: [batch, H, W, 3] KerasTensor, molded. Returns KerasTensors
    [batch, H / s, W / s, C] with C = 8, 16, 32, 32, 64 (C5 is None when not stage5).
    A smoke-test backbone: it compiles in seconds and learns little.
    """
    import keras

    x = input_image
    stages = []
    for stage, (filters, stride) in enumerate(((8, 4), (16, 1), (32, 2), (32, 2), (64, 2)), start=1):
        if stage == 5 and not stage5:
            stages.append(None)
            break
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                                name=f"small_c{stage}")(x)
        stages.append(x)
    return stages


# ---------------------------------------------------------------------------- configuration
class CompactConfig(Config):
    """A compact model for 128 x 128 images, sized to train from scratch on a CPU.

    Subclasses set NAME, NUM_CLASSES and what depends on the data (MAX_GT_INSTANCES,
    DETECTION_MAX_INSTANCES, ...).

    * A compact residual backbone with GroupNorm (``compact_backbone``): no ImageNet
      weights are used, and batch statistics of a handful of images do not carry over to
      inference (frozen or trained BatchNorm both do badly from scratch).
    * A narrow FPN, RPN conv, box head and mask head: a few classes do not need
      matterport's 256 / 512 / 1024 channels, and the mask head's convs are most of the
      cost of a training step on a CPU.
    * Small anchors (8..128 px) for objects of 16..64 px; 28 x 28 masks.
    * Batches of 8 images (small images; GroupNorm does not care about the batch size).
    * SGD at a high peak rate, meant for warm-up and cosine decay (``lr_schedule_callback``).
    """

    GPU_COUNT = 1
    IMAGES_PER_GPU = 8

    BACKBONE = staticmethod(compact_backbone)
    NORMALIZATION = "group"
    GROUP_NORM_GROUPS = 16
    TOP_DOWN_PYRAMID_SIZE = 128
    RPN_CONV_FILTERS = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    MASK_HEAD_FILTERS = 64

    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128

    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 256
    POST_NMS_ROIS_INFERENCE = 128
    TRAIN_ROIS_PER_IMAGE = 32
    ROI_POSITIVE_RATIO = 0.33
    MASK_POOL_SIZE = 14
    MASK_SHAPE = [28, 28]
    MINI_MASK_SHAPE = (56, 56)

    DETECTION_MIN_CONFIDENCE = 0.5

    STEPS_PER_EPOCH = 120
    VALIDATION_STEPS = 5
    LEARNING_RATE = 0.02
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001


class SmallCompactConfig(CompactConfig):
    """The toy-sized variant (CI, ``--small``, the notebooks' small mode): builds and steps in seconds.

    Put it first among the bases of a dataset's small config, so that its sizes win over
    the full-size config's: ``class SmallShapesConfig(SmallCompactConfig, ShapesConfig)``.
    """

    BACKBONE = staticmethod(small_backbone)
    IMAGES_PER_GPU = 2
    GROUP_NORM_GROUPS = 8
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    PRE_NMS_LIMIT = 256
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MAX_INSTANCES = 8
    DETECTION_MIN_CONFIDENCE = 0.3
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1


def inference_config(config_class):
    """An instance of ``config_class`` (a Config subclass) set up for inference: one image per batch.

    The returned instance's class is named ``Inference<config_class name>``.
    """
    if not (isinstance(config_class, type) and issubclass(config_class, Config)):
        raise TypeError(f"config_class must be a Config subclass, got {config_class!r}")

    class _Inference(config_class):
        IMAGES_PER_GPU = 1

    _Inference.__name__ = f"Inference{config_class.__name__}"
    return _Inference()


# ---------------------------------------------------------------------------- schedule
def learning_rate_at(step, base_lr, total_steps, warmup_steps):
    """Learning rate (float) at global ``step`` of the warm-up + cosine schedule.

    The rate rises linearly from base_lr / 10 to base_lr over ``warmup_steps``, then follows a
    cosine down to base_lr / 100 at ``total_steps`` (and stays there after it).
    """
    if step < warmup_steps:
        return base_lr * (0.1 + 0.9 * step / max(warmup_steps, 1))
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    floor = base_lr / 100
    return floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_schedule_callback(base_lr, total_steps, warmup_steps, first_step):
    """A Keras callback setting the optimizer's learning rate per batch (``learning_rate_at``).

    ``first_step``: global step of the first batch (so that a resumed run continues the curve).
    """
    import keras

    class WarmupCosine(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = first_step

        def on_train_batch_begin(self, batch, logs=None):
            self.model.optimizer.learning_rate.assign(learning_rate_at(
                self.step, base_lr, total_steps, warmup_steps))
            self.step += 1

    return WarmupCosine()


# Resolution of the time-fraction warm-up: the elapsed fraction of the budget is counted in
# steps of 1 / _BUDGET_TICKS along the curve of learning_rate_at.
_BUDGET_TICKS = 10_000


def time_budget_callback(base_lr, minutes, warmup_fraction=None, warmup_steps=None,
                         clock=time.time):
    """A Keras callback that trains for ``minutes`` of wall time, whatever the machine's load.

    The learning rate rises linearly from base_lr / 10 to base_lr during the warm-up, then
    follows a cosine down to base_lr / 100 over the elapsed time (from the start of the first
    ``fit``, graph building included); a loaded machine gets fewer steps, not more time.
    Training stops after the first batch that ends past the budget (Keras still ends the
    epoch, so its checkpoint is written). Give exactly one warm-up:

    * ``warmup_fraction`` (0 <= f < 1): the warm-up is the first fraction f of the budget's
      time, and the cosine runs over the rest of it: the rate at elapsed fraction p is
      ``learning_rate_at(int(p * 10000), base_lr, 10000, int(f * 10000))``.
    * ``warmup_steps`` (int >= 0): the warm-up is the first ``warmup_steps`` batches; after
      them the rate is the cosine at the elapsed fraction of the whole budget.

    clock: a function returning seconds (time.time; tests pass a fake one).
    The callback records ``step`` (batches begun), ``epoch`` (the current epoch, 0-based),
    ``stopped_at`` ((epoch, batch) where it stopped, or None) and ``stopped_step`` (batches
    run when it stopped, or None).
    """
    import keras

    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0:
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    if (warmup_fraction is None) == (warmup_steps is None):
        raise ValueError("give exactly one of warmup_fraction and warmup_steps, got "
                         f"warmup_fraction={warmup_fraction!r}, warmup_steps={warmup_steps!r}")
    if warmup_fraction is not None and not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")
    if warmup_steps is not None and (isinstance(warmup_steps, bool) or
                                     not isinstance(warmup_steps, int) or warmup_steps < 0):
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    budget = 60.0 * float(minutes)

    def rate(step, fraction):
        if warmup_fraction is not None:
            return learning_rate_at(int(fraction * _BUDGET_TICKS), base_lr, _BUDGET_TICKS,
                                    int(warmup_fraction * _BUDGET_TICKS))
        if step < warmup_steps:
            return learning_rate_at(step, base_lr, 1, warmup_steps)
        return learning_rate_at(fraction, base_lr, 1.0, 0)

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.budget = budget
            self.started = None
            self.step = 0
            self.epoch = 0
            self.stopped_at = None
            self.stopped_step = None

        def on_train_begin(self, logs=None):
            if self.started is None:
                self.started = clock()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            fraction = min(1.0, (clock() - self.started) / self.budget)
            self.model.optimizer.learning_rate.assign(rate(self.step, fraction))
            self.step += 1

        def on_train_batch_end(self, batch, logs=None):
            if clock() - self.started >= self.budget:
                self.stopped_at = (self.epoch, batch)
                self.stopped_step = self.step
                self.model.stop_training = True

    return TimeBudget()


# ---------------------------------------------------------------------------- drawing
def distinct_color(rng, others, min_distance=60):
    """A random RGB colour whose largest channel difference to each of ``others`` is >= min_distance.

    rng: numpy.random.Generator. others: non-empty list of (r, g, b) ints 0..255.
    Returns (r, g, b) ints; after 100 misses, the complement of ``others[0]``.
    """
    for _ in range(100):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if all(max(abs(a - b) for a, b in zip(color, other)) >= min_distance for other in others):
            return color
    # Practically unreachable: fall back to the complement of the first colour.
    return tuple(255 - c for c in others[0])
