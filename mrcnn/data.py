"""Image meta, molding, and the training input pipelines (PyDataset and tf.data).

Image meta is one float row per image, laid out as
``[image_id, original_image_shape (3), image_shape (3), window (y1, x1, y2, x2) (4),
scale (1), active_class_ids (NUM_CLASSES)]``: the matterport layout.
"""
import logging
import math
import warnings

import numpy as np

from mrcnn.inputs import InstanceWarning, too_many_instances_message

logger = logging.getLogger(__name__)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack the attributes of one image into a meta row.

    image_id: int, the image's index in its Dataset.
    original_image_shape: (H, W, C) before resizing or padding.
    image_shape: (H, W, C) after resizing and padding.
    window: (y1, x1, y2, x2) pixels of the real image inside the padded image.
    scale: float, the resize factor applied to the original image.
    active_class_ids: [NUM_CLASSES] 1 for classes of the image's source dataset, else 0.

    Returns: [12 + NUM_CLASSES] float64 row.
    """
    meta = np.array(
        [image_id]
        + list(original_image_shape)
        + list(image_shape)
        + list(window)
        + [scale]
        + list(active_class_ids),
        dtype=np.float64,
    )
    return meta


def parse_image_meta(meta):
    """Split meta rows into their parts.

    meta: [batch, 12 + NUM_CLASSES] (or a single [12 + NUM_CLASSES] row).

    Returns a dict of NumPy arrays: image_id [batch] int32, original_image_shape
    [batch, 3] int32, image_shape [batch, 3] int32, window [batch, 4] int32 pixels,
    scale [batch] float32, active_class_ids [batch, NUM_CLASSES] int32.
    """
    meta = np.asarray(meta)
    if meta.ndim not in (1, 2) or meta.shape[-1] < 13:
        raise ValueError(f"image meta must be [batch, 12 + NUM_CLASSES], got shape {meta.shape}")
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }


def mold_image(images, config):
    """Subtract the mean pixel: [..., C] uint8 or float RGB -> float32 of the same shape."""
    images = np.asarray(images)
    if images.shape[-1] != config.IMAGE_CHANNEL_COUNT:
        raise ValueError(
            f"images have {images.shape[-1]} channels, config.IMAGE_CHANNEL_COUNT is "
            f"{config.IMAGE_CHANNEL_COUNT} (shape {images.shape})")
    return images.astype(np.float32) - config.MEAN_PIXEL


def unmold_image(normalized_images, config):
    """Inverse of mold_image: add the mean pixel back and return uint8 (clipped to 0..255)."""
    images = np.asarray(normalized_images, dtype=np.float32) + config.MEAN_PIXEL
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- pipeline
INPUT_NAMES = ("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
               "input_gt_class_ids", "input_gt_boxes", "input_gt_masks")
# The extra training input of keypoint models (Config.KEYPOINT_NAMES), after input_gt_masks.
KEYPOINT_INPUT_NAME = "input_gt_keypoints"


def input_names(config):
    """Names of the training graph's data inputs for ``config``, in order."""
    return INPUT_NAMES + ((KEYPOINT_INPUT_NAME,) if config.KEYPOINT_NAMES else ())


class AnchorCache:
    """Pixel anchors [A, (y1, x1, y2, x2)] float32 per molded image shape, computed once each."""

    def __init__(self, config):
        self.config = config
        self._cache = {}

    def __call__(self, image_shape):
        from mrcnn import utils
        key = (int(image_shape[0]), int(image_shape[1]))
        if key not in self._cache:
            config = self.config
            shapes = utils.compute_backbone_shapes(config, key)
            self._cache[key] = utils.generate_pyramid_anchors(
                config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE).astype(np.float32)
        return self._cache[key]


def build_batch(dataset, config, image_ids, anchors, rng, augmentation=None,
                no_augmentation_sources=None, random_rois=0, detection_targets=False):
    """Load, augment and build the training targets of a batch of images.

    dataset: a prepared Dataset; image_ids: the batch's ids; anchors: an AnchorCache;
    rng: np.random.Generator (sampling, crops, augmentation seeds).

    Returns a list of arrays in INPUT_NAMES order: images [B, H, W, C] float32 molded,
    image_meta [B, META] float32, rpn_match [B, A, 1] int32, rpn_bbox
    [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32, gt_class_ids [B, MAX_GT_INSTANCES] int32,
    gt_boxes [B, MAX_GT_INSTANCES, (y1, x1, y2, x2)] float32 pixels, gt_masks
    [B, h, w, MAX_GT_INSTANCES] bool; then, for keypoint models (Config.KEYPOINT_NAMES),
    gt_keypoints [B, MAX_GT_INSTANCES, K, (x, y, v)] float32 molded pixels (v = 0 on padding);
    then, with random_rois, rpn_rois [B, random_rois, 4];
    with detection_targets also rois, mrcnn_class_ids, mrcnn_bbox, mrcnn_mask.
    """
    from mrcnn import targets

    no_aug = set(no_augmentation_sources or ())
    with_keypoints = bool(config.KEYPOINT_NAMES)
    rows = []
    for image_id in image_ids:
        source = dataset.image_info[image_id]["source"]
        aug = None if source in no_aug else augmentation
        loaded = targets.load_image_gt(
            dataset, config, image_id, augmentation=aug, use_mini_mask=config.USE_MINI_MASK,
            rng=rng, keypoints=with_keypoints)
        image, image_meta, class_ids, boxes, masks = loaded[:5]
        image_anchors = anchors(image.shape)
        rpn_match, rpn_bbox = targets.build_rpn_targets(
            image.shape, image_anchors, class_ids, boxes, config, rng=rng)
        if len(class_ids) > config.MAX_GT_INSTANCES:
            warnings.warn(too_many_instances_message(image_id, len(class_ids), config),
                          InstanceWarning, stacklevel=2)
            keep = np.sort(rng.choice(len(class_ids), config.MAX_GT_INSTANCES, replace=False))
            class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[..., keep]
            loaded = loaded[:5] + tuple(extra[keep] for extra in loaded[5:])
        row = [image, image_meta, rpn_match, rpn_bbox, class_ids, boxes, masks]
        if with_keypoints:
            gt_keypoints = np.zeros((config.MAX_GT_INSTANCES, len(config.KEYPOINT_NAMES), 3),
                                    dtype=np.float32)
            gt_keypoints[:len(class_ids)] = loaded[5]
            row.append(gt_keypoints)
        if random_rois:
            rpn_rois = targets.generate_random_rois(image.shape, random_rois, class_ids, boxes,
                                                    rng=rng)
            row.append(rpn_rois)
            if detection_targets:
                row.extend(targets.build_detection_targets(
                    rpn_rois, class_ids, boxes, masks, config, rng=rng))
        rows.append(row)

    shapes = {row[0].shape for row in rows}
    if len(shapes) > 1:
        raise ValueError(f"images of one batch must share a molded shape, got {sorted(shapes)} "
                         f"for image ids {list(image_ids)}; use a fixed IMAGE_RESIZE_MODE")
    max_gt = config.MAX_GT_INSTANCES
    batch = len(rows)
    mask_hw = rows[0][6].shape[:2]
    gt_class_ids = np.zeros((batch, max_gt), dtype=np.int32)
    gt_boxes = np.zeros((batch, max_gt, 4), dtype=np.float32)
    gt_masks = np.zeros((batch,) + tuple(mask_hw) + (max_gt,), dtype=bool)
    for i, row in enumerate(rows):
        count = len(row[4])
        gt_class_ids[i, :count] = row[4]
        gt_boxes[i, :count] = row[5]
        gt_masks[i, :, :, :count] = row[6]
    out = [
        mold_image(np.stack([row[0] for row in rows]), config),
        np.stack([row[1] for row in rows]).astype(np.float32),
        np.stack([row[2] for row in rows])[..., None].astype(np.int32),
        np.stack([row[3] for row in rows]).astype(np.float32),
        gt_class_ids, gt_boxes, gt_masks,
    ]
    for column in range(7, len(rows[0])):
        out.append(np.stack([row[column] for row in rows]))
    return out


def data_generator(dataset, config, shuffle=True, augmentation=None, random_rois=0,
                   batch_size=1, detection_targets=False, no_augmentation_sources=None, seed=None):
    """Endless generator of training batches (matterport's interface, for notebooks).

    Yields (inputs, outputs): inputs as build_batch returns them; outputs is [] unless
    detection_targets, then [mrcnn_class_ids, mrcnn_bbox, mrcnn_mask] moved from inputs.
    """
    if not len(dataset.image_ids):
        raise ValueError("data_generator: the dataset has no images (call prepare() after adding some)")
    rng = np.random.default_rng(seed)
    anchors = AnchorCache(config)
    order = np.array(dataset.image_ids)
    position = len(order)
    while True:
        ids = []
        while len(ids) < batch_size:
            if position >= len(order):
                order = rng.permutation(dataset.image_ids) if shuffle else np.array(dataset.image_ids)
                position = 0
            ids.append(int(order[position]))
            position += 1
        arrays = build_batch(dataset, config, ids, anchors, rng, augmentation=augmentation,
                             no_augmentation_sources=no_augmentation_sources,
                             random_rois=random_rois, detection_targets=detection_targets)
        outputs = []
        if detection_targets and random_rois:
            outputs = arrays[-3:]
            arrays = arrays[:-3]
        yield arrays, outputs


def epoch_order(image_ids, seed, epoch, count, shuffle=True):
    """Image ids of one epoch: ``count`` ids from permutations drawn with rng [seed, epoch].

    Permutations of the whole id list are concatenated until ``count`` ids are taken, so
    each id appears once before any appears twice. Returns [count] int64.
    """
    rng = np.random.default_rng([seed, epoch])
    chunks, total = [], 0
    ids = np.asarray(image_ids)
    while total < count:
        chunks.append(rng.permutation(ids) if shuffle else ids)
        total += len(ids)
    return np.concatenate(chunks)[:count]


def batch_rng(seed, epoch, step, replica=0, replicas=1):
    """The generator of one replica's batch (sampling, crops, augmentation).

    With one replica, [seed, epoch, step]; with several, [seed, epoch, step, replica]:
    each batch depends on its position only, never on thread order or on where a run
    was resumed.
    """
    key = [seed, epoch, step] if replicas == 1 else [seed, epoch, step, replica]
    return np.random.default_rng(key)


class BatchPlan:
    """Which images form which batch: step ``t`` of epoch ``e`` trains on the global batch
    ``epoch_order(...)[t * G:(t + 1) * G]`` (G = replicas * per_replica images), replica
    ``g`` taking the slice ``[g * per_replica:(g + 1) * per_replica]`` of it.

    image_ids: the dataset's ids; steps: steps per epoch; per_replica: images a replica
    takes a step; replicas: replicas in sync over all workers.
    """

    def __init__(self, image_ids, steps, per_replica, replicas=1, seed=0, shuffle=True):
        if not len(image_ids):
            raise ValueError("the training dataset has no images (call prepare() after adding some)")
        self.image_ids = np.asarray(image_ids)
        self.steps, self.per_replica, self.replicas = int(steps), int(per_replica), int(replicas)
        self.seed, self.shuffle = seed, shuffle
        self._orders = {}

    @property
    def global_batch(self):
        return self.per_replica * self.replicas

    def order(self, epoch):
        order = self._orders.get(epoch)
        if order is None:  # keep the latest epoch only; threads may race, harmlessly
            order = epoch_order(self.image_ids, self.seed, epoch, self.steps * self.global_batch,
                                self.shuffle)
            self._orders = {epoch: order}
        return order

    def ids(self, epoch, step, replica=None):
        """Ids of the global batch (replica None) or of one replica's share, as ints."""
        start = step * self.global_batch
        if replica is not None:
            start += replica * self.per_replica
            stop = start + self.per_replica
        else:
            stop = start + self.global_batch
        return [int(i) for i in self.order(epoch)[start:stop]]


def make_sequence(dataset, config, shuffle=True, augmentation=None, no_augmentation_sources=None,
                  steps=None, seed=0, workers=2, epoch=0, start=0, replica=0, replicas=1):
    """A keras.utils.PyDataset of training batches, loaded by ``workers`` threads.

    Each item is ``(inputs,)`` with inputs a dict keyed by INPUT_NAMES. Item ``i`` of the
    sequence's k-th epoch is step ``start + i`` of epoch ``epoch + k`` (BatchPlan with
    BATCH_SIZE images, one replica; its generator is batch_rng(seed, epoch, step)): the
    same whatever the thread order, and the same after a resume.
    steps: batches of a full epoch (default: enough to see every image once).
    start: first step of the first epoch (a resumed run); that epoch has steps - start items,
    and the following epochs are not produced (use a new sequence).
    replica, replicas: this process's share of a global batch of ``replicas`` * BATCH_SIZE
        images (several JAX processes, each feeding its devices): the BatchPlan slice
        ``replica`` with the generator batch_rng(seed, epoch, step, replica, replicas).
        The default (0, 1) is the whole batch.
    Threads, not processes: TensorFlow is already running, and forking it can hang.
    """
    import keras

    batch_size = config.BATCH_SIZE
    full_steps = int(steps or max(1, math.ceil(len(dataset.image_ids) / batch_size)))
    if not 0 <= start < full_steps:
        raise ValueError(f"start must be in [0, {full_steps}), got {start!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
    if isinstance(replica, bool) or not isinstance(replica, int) or not 0 <= replica < replicas:
        raise ValueError(f"replica must be an integer in [0, {replicas}), got {replica!r}")
    share = replica if replicas > 1 else None

    class _Sequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            self.dataset = dataset
            self.config = config
            self.anchors = AnchorCache(config)
            self.batch_size = batch_size
            self.plan = BatchPlan(dataset.image_ids, full_steps, batch_size, replicas, seed,
                                  shuffle)
            self.start = start
            self.steps = full_steps - start
            self.epoch = epoch
            self._begun = False

        def __len__(self):
            return self.steps

        def batch_image_ids(self, index):
            return self.plan.ids(self.epoch, self.start + index, share)

        def __getitem__(self, index):
            step = self.start + index
            arrays = build_batch(self.dataset, self.config,
                                 self.plan.ids(self.epoch, step, share), self.anchors,
                                 batch_rng(seed, self.epoch, step, replica, replicas),
                                 augmentation=augmentation,
                                 no_augmentation_sources=no_augmentation_sources)
            return (dict(zip(input_names(self.config), arrays)),)

        def on_epoch_begin(self):
            self._begun = True

        def on_epoch_end(self):
            # Epochs are counted at their end: Keras' adapter starts the loading threads of
            # an epoch before it calls on_epoch_begin, so a count there races with them
            # (the first items of an epoch could take the previous epoch's ids and random
            # draws); on_epoch_end comes after the threads stopped. Keras also calls
            # on_epoch_end once before the first epoch begins: only an end that follows a
            # begin counts.
            if self._begun:
                self.epoch += 1
                self.start, self.steps = 0, full_steps
            self._begun = False

    return _Sequence()


def make_tf_dataset(dataset, config, plan, first_epoch, last_epoch, first_step=0,
                    replicas_here=1, first_replica=0, augmentation=None,
                    no_augmentation_sources=None, parallel_calls=None, prefetch=2):
    """A tf.data pipeline of one worker's per-replica training batches, in the order its
    replicas consume them (the ``dataset_fn`` of ``distribute_datasets_from_function``).

    Element k is the batch of step t = k // replicas_here of the run (epochs first_epoch ..
    last_epoch - 1, starting at step first_step of the first) for global replica
    first_replica + k % replicas_here, as BatchPlan assigns them; its generator is
    batch_rng(plan.seed, epoch, t, replica, plan.replicas). Loading, augmentation and target
    building run in NumPy inside ``tf.py_function`` stages, ``parallel_calls`` at a time
    (default: AUTOTUNE), in a deterministic order, then ``prefetch`` batches are prefetched.
    The pipeline does its own sharding (workers take disjoint slices of every global
    batch), so tf.data auto-sharding is turned off.

    Each element is a dict keyed by input_names(config) (see build_batch for shapes and dtypes;
    input_gt_masks come as uint8 0/1 instead of bool), with a static leading dimension
    plan.per_replica.
    """
    import tensorflow as tf

    if not 0 <= first_step < plan.steps:
        raise ValueError(f"first_step must be in [0, {plan.steps}), got {first_step!r}")
    if last_epoch <= first_epoch:
        raise ValueError(f"last_epoch ({last_epoch!r}) must exceed first_epoch ({first_epoch!r})")
    anchors = AnchorCache(config)
    seed = plan.seed
    first = first_step * replicas_here
    total = (last_epoch - first_epoch) * plan.steps * replicas_here - first

    def load(index):
        k = int(index) + first
        epoch, k = divmod(k, plan.steps * replicas_here)
        epoch += first_epoch
        step, local = divmod(k, replicas_here)
        replica = first_replica + local
        rng = batch_rng(seed, epoch, step, replica, plan.replicas)
        arrays = build_batch(dataset, config, plan.ids(epoch, step, replica), anchors, rng,
                             augmentation=augmentation,
                             no_augmentation_sources=no_augmentation_sources)
        return arrays

    dtypes = (tf.float32, tf.float32, tf.int32, tf.float32, tf.int32, tf.float32, tf.bool)
    batch = plan.per_replica
    channels = config.IMAGE_CHANNEL_COUNT
    fixed = config.IMAGE_RESIZE_MODE in ("square", "crop")
    side = int(config.IMAGE_SHAPE[0]) if fixed else None
    max_gt = config.MAX_GT_INSTANCES
    shapes = ([batch, side, side, channels], [batch, config.IMAGE_META_SIZE], [batch, None, 1],
              [batch, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4], [batch, max_gt],
              [batch, max_gt, 4], [batch, None, None, max_gt])
    if config.KEYPOINT_NAMES:  # input_gt_keypoints [batch, MAX_GT, K, (x, y, v)]
        dtypes += (tf.float32,)
        shapes += ([batch, max_gt, len(config.KEYPOINT_NAMES), 3],)
    names = input_names(config)

    def to_inputs(index):
        arrays = tf.py_function(load, [index], dtypes)
        for array, shape in zip(arrays, shapes):
            array.set_shape(shape)
        arrays = list(arrays)
        # uint8, not bool: Keras averages a first batch across replicas to build the model
        # under tf.distribute, which bool cannot do; the graph's bool input casts it back.
        arrays[6] = tf.cast(arrays[6], tf.uint8)
        return dict(zip(names, arrays))

    parallel = tf.data.AUTOTUNE if parallel_calls is None else parallel_calls
    pipeline = tf.data.Dataset.range(total).map(to_inputs, num_parallel_calls=parallel,
                                                deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    pipeline = pipeline.with_options(options)
    return pipeline.prefetch(prefetch)
