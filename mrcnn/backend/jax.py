"""The JAX side of the backend seam (see mrcnn/backend/__init__.py).

JAX compiles whole functions with XLA and needs every shape known when it traces: nothing
here makes a tensor whose size depends on the data. NMS keeps a fixed number of rows and
says how many are real; crops gather from all pyramid levels at once with per-box offsets
instead of partitioning the boxes by level. The results are those of the TensorFlow module:
the same greedy NMS (TensorFlow's IoU formula, equal scores in index order), the same
bilinear sampling as tf.image.crop_and_resize, up to float rounding.

Coordinates: boxes are (y1, x1, y2, x2), normalized unless a docstring says pixels.
"""
import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

logger = logging.getLogger(__name__)

NAME = "jax"

# Every tensor of the graph has a static shape (XLA needs them): Keras compiles the model
# and the train step with XLA, and ValidDetectionBoxes keeps all rows.
DYNAMIC_SHAPES = False
# mrcnn.winograd's 3x3 convolutions (TensorFlow ops) are available.
WINOGRAD = False

PROPOSAL_NMS_METHODS = ("standard", "graph")
DETECTION_NMS_METHODS = ("standard", "graph")

# A quiet NaN's bit pattern that float arithmetic never produces (its payload).
_NEVER_BITS = 0x7FC0DEAD

# Candidates handled per step of the NMS loop (a speed setting; results do not depend on it).
NMS_TILE = 256


# ---------------------------------------------------------------------------------------------
# Gathers and reductions

def unfoldable_zero(x, dtype):
    """A scalar 0 of ``dtype`` that XLA cannot fold: whether any element of ``x`` (float32)
    has one particular NaN bit pattern, which no arithmetic makes (``any(|x| < 0)``, the
    TensorFlow module's, XLA proves false)."""
    bits = lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.int32)
    return jnp.any(bits == _NEVER_BITS).astype(dtype)


def _rounded(value, like):
    """``value`` (float32), rounded as it stands, in a form XLA and LLVM cannot rewrite.

    XLA reassociates products with constants and LLVM contracts a * b + c into one fused
    multiply-add, whose single rounding differs from TensorFlow's two. Passing a product
    through a bitwise OR with a data-dependent zero (``unfoldable_zero`` of ``like``) makes
    its rounded float32 value an input of whatever follows.
    """
    zero = unfoldable_zero(like, jnp.int32)
    bits = lax.bitcast_convert_type(jnp.asarray(value, jnp.float32), jnp.int32) | zero
    return lax.bitcast_convert_type(bits, jnp.float32)


def batch_gather(values, indices, batch_dims=1):
    """``values[b, indices[b, ...]]`` with ``batch_dims`` (1 or 2) leading batch axes.

    values: [B, (B2,) N, ...]; indices: [B, (B2,) T] int32 in [0, N).
    Returns: [B, (B2,) T, ...], values' dtype.
    """
    take = lambda v, i: jnp.take(v, i, axis=0)  # noqa: E731
    for _ in range(batch_dims):
        take = jax.vmap(take)
    return take(values, indices)


def argmax_int32(x):
    """[..., C] -> [...] int32 arg-max over the last axis (first maximum on ties)."""
    return jnp.argmax(x, axis=-1).astype(jnp.int32)


def top_k(x, k):
    """(values, indices int32) of the k largest along the last axis, sorted, ties lower index first."""
    values, indices = lax.top_k(x, k)
    return values, indices.astype(jnp.int32)


def l2_loss(x):
    """sum(x ** 2) / 2 as a float scalar."""
    return jnp.sum(jnp.square(x)) / 2


# ---------------------------------------------------------------------------------------------
# NMS

def _canonical_boxes(boxes):
    """[n, (y1, x1, y2, x2)] -> [n, (ymin, xmin, ymax, xmax, area)] float32, TF NMS's order."""
    y1, x1, y2, x2 = (boxes[:, k] for k in range(4))
    ymin, ymax = jnp.minimum(y1, y2), jnp.maximum(y1, y2)
    xmin, xmax = jnp.minimum(x1, x2), jnp.maximum(x1, x2)
    return jnp.stack([ymin, xmin, ymax, xmax, (ymax - ymin) * (xmax - xmin)], axis=1)


def _nms_iou(a, b):
    """IoU of [m, 5] and [k, 5] canonical boxes: [m, k], TF's NMS formula, 0 for empty boxes."""
    a, b = a[:, None, :], b[None, :, :]
    inter = (jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.0)
             * jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]),
                           0.0))
    # The product rounded before the sum (no fused multiply-add), as TensorFlow's kernel.
    inter = _rounded(inter, a[..., 4])
    union = a[..., 4] + b[..., 4] - inter
    empty = (a[..., 4] <= 0.0) | (b[..., 4] <= 0.0)
    return jnp.where(empty, 0.0, inter / jnp.where(empty, 1.0, union))


def greedy_nms(boxes, scores, candidates, max_output_size, iou_threshold, classes=None,
               tile=NMS_TILE):
    """Greedy NMS on one image with static shapes: TensorFlow's selections, padded.

    boxes: [N, (y1, x1, y2, x2)] float32, any frame, corners in either order.
    scores: [N] float32. candidates: [N] bool, the boxes that may be selected.
    max_output_size: int, the most boxes selected.
    iou_threshold: float, a candidate whose IoU with a selected, better-ranked box exceeds
        it is dropped (TF's float32 IoU formula).
    classes: None, or [N] int32: then a box only suppresses boxes of its own class (per-class
        NMS in one pass: per class, the same selections as running NMS on that class alone).

    Returns: (indices [max_output_size] int32 into ``boxes`` by decreasing score, equal scores
    lower index first, valid rows first, then zeros; count int32, the valid rows).

    The candidates are ranked, then taken ``tile`` at a time: those overlapping a box already
    selected are dropped, and the greedy choice inside the tile is the fixed point of
    keep[c] = live[c] and no kept c' < c overlaps c, iterated from keep = live (triangular, so
    the fixed point is unique and is the greedy answer). The loop stops once
    ``max_output_size`` boxes are selected.
    """
    n = boxes.shape[0]
    boxes = jnp.asarray(boxes, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    candidates = jnp.asarray(candidates, bool)
    classes = None if classes is None else jnp.asarray(classes, jnp.int32)
    _, order = lax.top_k(scores, n)  # ties: lower index first, as TF's NMS visits them
    tile = max(1, min(int(tile), n))
    num_tiles = -(-n // tile)
    pad = num_tiles * tile - n
    ranked = jnp.pad(_canonical_boxes(boxes[order]), ((0, pad), (0, 0)))
    alive = jnp.pad(candidates[order], (0, pad))
    same_class = classes is not None
    ranked_classes = jnp.pad(classes[order], (0, pad), constant_values=-1) if same_class else None
    size = max_output_size + tile
    earlier = jnp.arange(tile)[None, :] < jnp.arange(tile)[:, None]  # [c, c']: c' ranks first

    def more(state):
        k, count = state[0], state[1]
        return (k < num_tiles) & (count < max_output_size)

    def step(state):
        k, count, selected, selected_classes, keep_all = state
        start = k * tile
        cand = lax.dynamic_slice_in_dim(ranked, start, tile)
        live = lax.dynamic_slice_in_dim(alive, start, tile)
        hits = _nms_iou(cand, selected) > iou_threshold  # [tile, size]
        overlaps = (_nms_iou(cand, cand) > iou_threshold) & earlier
        if same_class:
            cand_classes = lax.dynamic_slice_in_dim(ranked_classes, start, tile)
            hits = hits & (cand_classes[:, None] == selected_classes[None, :])
            overlaps = overlaps & (cand_classes[:, None] == cand_classes[None, :])
        live = live & ~jnp.any(hits, axis=1)

        def settle(pair):
            keep = pair[0]
            return live & ~jnp.any(overlaps & keep[None, :], axis=1), keep

        keep, _ = lax.while_loop(lambda pair: jnp.any(pair[0] != pair[1]), settle,
                                 settle((live, live)))
        slots = jnp.where(keep, count + jnp.cumsum(keep) - 1, size)  # size: dropped
        selected = selected.at[slots].set(cand, mode="drop")
        if same_class:
            selected_classes = selected_classes.at[slots].set(cand_classes, mode="drop")
        keep_all = lax.dynamic_update_slice_in_dim(keep_all, keep, start, 0)
        return k + 1, count + jnp.sum(keep, dtype=jnp.int32), selected, selected_classes, keep_all

    state = (jnp.int32(0), jnp.int32(0), jnp.zeros((size, 5), jnp.float32),
             jnp.full((size,), -2, jnp.int32), jnp.zeros((num_tiles * tile,), bool))
    _, count, _, _, keep_all = lax.while_loop(more, step, state)
    # Selections are made in rank order: the kept ranks, in order, cut at max_output_size.
    (ranks,) = jnp.nonzero(keep_all[:n], size=max_output_size, fill_value=0)
    count = jnp.minimum(count, max_output_size)
    valid = jnp.arange(max_output_size) < count
    return jnp.where(valid, order[ranks], 0).astype(jnp.int32), count


def batched_nms(boxes, scores, max_output_size, iou_threshold, method="standard"):
    """Greedy NMS on every image of a batch, one class (TF's "standard" selections).

    boxes: [batch, N, (y1, x1, y2, x2)] float32; scores: [batch, N] float32.
    Returns: (boxes [batch, max_output_size, 4] float32 by decreasing score, zero-padded,
    valid [batch] int32).
    """
    if method not in PROPOSAL_NMS_METHODS:
        raise ValueError(f"nms method must be one of {PROPOSAL_NMS_METHODS} on the JAX "
                         f"backend, got {method!r}")
    n = boxes.shape[1]
    out = min(int(max_output_size), n)

    def one_image(b, s):
        indices, count = greedy_nms(b, s, jnp.ones((n,), bool), out, iou_threshold)
        kept = jnp.where((jnp.arange(out) < count)[:, None], b[indices], 0.0)
        return jnp.pad(kept, ((0, max_output_size - out), (0, 0))), count

    return jax.vmap(one_image)(boxes.astype(jnp.float32), scores.astype(jnp.float32))


def detection_nms(boxes, class_ids, scores, keep, num_classes, max_instances, nms_threshold,
                  method="standard"):
    """Per-class NMS and the final top-k of the detection layer, for a batch.

    boxes: [B, N, (y1, x1, y2, x2)] float32 refined and clipped, normalized.
    class_ids: [B, N] int32 arg-max classes; scores: [B, N] float32 their probabilities.
    keep: [B, N] bool, the candidates (class > 0, score >= threshold, real ROI).
    num_classes: int; max_instances: int; nms_threshold: float.

    Returns: [B, max_instances, (y1, x1, y2, x2, class_id, score)] float32, zero rows at the
    end: TF's "standard" rows. Per class, greedy NMS keeps up to max_instances boxes (equal
    scores: lower ROI index first); of the union the max_instances best scores are returned
    (equal scores: lower ROI index first).
    """
    if method not in DETECTION_NMS_METHODS:
        raise ValueError(f"nms method must be one of {DETECTION_NMS_METHODS} on the JAX "
                         f"backend, got {method!r}")
    n = boxes.shape[1]

    def one_image(b, c, s, k):
        # Every kept box of every class, in rank order (one pass, suppression within a class).
        indices, count = greedy_nms(b, s, k, n, nms_threshold, classes=c)
        valid = jnp.arange(n) < count
        # Rank of each selection within its class: drop those past max_instances.
        one_hot = (c[indices][:, None] == jnp.arange(num_classes)[None, :]) & valid[:, None]
        rank = jnp.sum(jnp.cumsum(one_hot, axis=0) * one_hot, axis=1) - 1
        capped = valid & (rank < max_instances)
        # Selections come by decreasing score, ties lower ROI index first: the first
        # max_instances capped rows are the final top-k in order.
        (rows,) = jnp.nonzero(capped, size=max_instances, fill_value=0)
        final = indices[rows]
        real = jnp.arange(max_instances) < jnp.sum(capped)
        detections = jnp.concatenate(
            [b[final], c[final].astype(jnp.float32)[:, None], s[final][:, None]], axis=1)
        return jnp.where(real[:, None], detections, 0.0)

    return jax.vmap(one_image)(boxes.astype(jnp.float32), class_ids, scores.astype(jnp.float32),
                               keep)


# ---------------------------------------------------------------------------------------------
# Crops

def _bilinear_crops(flat, bases, heights, widths, boxes, crop_size):
    """Bilinear crops, tf.image.crop_and_resize's sampling, from flattened maps.

    flat: [M, C] float32, feature maps flattened row-major. bases: [n] int32 row of each
    box's map origin in ``flat``; heights, widths: [n] int32 that map's size.
    boxes: [n, (y1, x1, y2, x2)] float32 normalized. crop_size: (ph, pw) ints.
    Returns: [n, ph, pw, C] float32, 0 where a sample falls outside its map.
    """
    ph, pw = crop_size
    hf = (heights - 1).astype(jnp.float32)
    wf = (widths - 1).astype(jnp.float32)

    def grid(start, stop, size, scale):
        # [n, size] sample coordinates in TF's kernel's order of float operations.
        if size > 1:
            # TF's order of float operations, each result rounded (see _rounded): XLA
            # would otherwise fold (d * H) / (size - 1) into d * (H / (size - 1)) for a
            # constant H and contract origin + i * step into a fused multiply-add; both
            # round differently and move the last sample of a box ending on the border
            # (y2 = 1, every clipped proposal) from the edge pixel (y = H - 1) to 0.
            step = (stop - start) * scale / _rounded(jnp.float32(size - 1), start)
            offsets = _rounded(jnp.arange(size, dtype=jnp.float32)[None, :] * step[:, None], start)
            return _rounded((start * scale)[:, None], start) + offsets
        return (0.5 * (start + stop) * scale)[:, None]

    ys = grid(boxes[:, 0], boxes[:, 2], ph, hf)  # [n, ph]
    xs = grid(boxes[:, 1], boxes[:, 3], pw, wf)  # [n, pw]
    valid = (((ys >= 0.0) & (ys <= hf[:, None]))[:, :, None]
             & ((xs >= 0.0) & (xs <= wf[:, None]))[:, None, :])
    top, left = jnp.floor(ys), jnp.floor(xs)
    y_lerp = (ys - top)[:, :, None, None]
    x_lerp = (xs - left)[:, None, :, None]
    h1, w1 = (heights - 1)[:, None], (widths - 1)[:, None]
    top_i = jnp.clip(top.astype(jnp.int32), 0, h1)
    bottom_i = jnp.clip(jnp.ceil(ys).astype(jnp.int32), 0, h1)
    left_i = jnp.clip(left.astype(jnp.int32), 0, w1)
    right_i = jnp.clip(jnp.ceil(xs).astype(jnp.int32), 0, w1)
    base = bases[:, None, None]
    w = widths[:, None, None]

    def sample(rows, cols):
        return flat[base + rows[:, :, None] * w + cols[:, None, :]]  # [n, ph, pw, C]

    top_left, top_right = sample(top_i, left_i), sample(top_i, right_i)
    bottom_left, bottom_right = sample(bottom_i, left_i), sample(bottom_i, right_i)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    crops = upper + (lower - upper) * y_lerp
    return jnp.where(valid[..., None], crops, 0.0)


def crop_and_resize(images, boxes, box_indices, crop_size):
    """tf.image.crop_and_resize (bilinear, extrapolation 0) in gathers.

    images: [batch, H, W, C] float32; boxes: [n, (y1, x1, y2, x2)] float32 normalized;
    box_indices: [n] int32; crop_size: (h, w) ints. Returns: [n, h, w, C] float32.
    """
    _, height, width, channels = images.shape
    flat = images.astype(jnp.float32).reshape(-1, channels)
    n = boxes.shape[0]
    bases = box_indices.astype(jnp.int32) * (height * width)
    heights = jnp.full((n,), height, jnp.int32)
    widths = jnp.full((n,), width, jnp.int32)
    return _bilinear_crops(flat, bases, heights, widths, boxes.astype(jnp.float32), crop_size)


def pyramid_roi_align(feature_maps, boxes, box_indices, levels, min_level, pool, implementation):
    """Pool each box from its own pyramid level, in one gather over all levels.

    feature_maps: list of [batch, Hk, Wk, C] float32, levels min_level, min_level + 1, ...
    boxes: [n, (y1, x1, y2, x2)] float32 normalized, finite. box_indices: [n] int32 image.
    levels: [n] int32 pyramid level of each box.
    pool: callable (crop_and_resize, boxes, box_indices) -> [n, ph, pw, C], the pooling mode;
        its crop_and_resize(boxes, box_indices, size) crops each box on its own level.
    implementation: ignored ("partition" and "gather" are the same computation here).
    Returns: [n, ph, pw, C] float32 in box order.
    """
    del implementation
    channels = feature_maps[0].shape[-1]
    sizes = [(int(f.shape[1]), int(f.shape[2])) for f in feature_maps]
    flat = jnp.concatenate([f.astype(jnp.float32).reshape(-1, channels) for f in feature_maps])
    batch = feature_maps[0].shape[0]
    starts = np.cumsum([0] + [batch * h * w for h, w in sizes[:-1]])
    which = jnp.clip(levels - min_level, 0, len(feature_maps) - 1)
    heights = jnp.asarray([h for h, _ in sizes], jnp.int32)[which]
    widths = jnp.asarray([w for _, w in sizes], jnp.int32)[which]
    bases = jnp.asarray(starts, jnp.int32)[which] + box_indices.astype(jnp.int32) * heights * widths

    def crop(crop_boxes, _box_indices, size):
        return _bilinear_crops(flat, bases, heights, widths, crop_boxes, size)

    return pool(crop, boxes, box_indices)


# ---------------------------------------------------------------------------------------------
# Training: replicas are Keras' distribution (global arrays), the update plain ops

def num_replicas():
    """1: under keras.distribution the loss and gradients are already global."""
    return 1


def all_reduce_sum(grads):
    """Identity: JAX's sharded arrays hold the global gradient."""
    return grads


def sgd_update(variable, gradient, learning_rate, accumulator=None, momentum=0.0):
    """One SGD step, Keras' SGD arithmetic (m = momentum m - lr g; w += m; or w -= lr g)."""
    if accumulator is None:
        variable.assign(variable - learning_rate * gradient)
        return
    m = momentum * accumulator - learning_rate * gradient
    accumulator.assign(m)
    variable.assign(variable + m)


def gpu_count():
    """GPUs JAX sees."""
    try:
        return len(jax.devices("gpu"))
    except RuntimeError:
        return 0


def make_predictor(keras_model, freeze):
    """The fast inference callable of ``keras_model``: one XLA-compiled function per input
    shape (mrcnn.backend.jax_predictor). ``freeze`` is moot: the weights are arguments."""
    from mrcnn.backend.jax_predictor import JaxPredictor
    return JaxPredictor(keras_model)


# XLA fuses Keras' batch-norm arithmetic itself: no fused kernel to call.
fused_batch_norm = None


def multi_worker_logs(logs):
    """Identity: Keras' JAX trainer reduces scalar logs itself."""
    return logs


# ---------------------------------------------------------------------------------------------
# Distribution: keras.distribution over JAX devices

def make_strategy(config, strategy=None, multi_worker=True):
    """A keras.distribution.DataParallel to train under, or None for one device.

    strategy: a keras.distribution.Distribution to use as it is.
    Raises BackendError when TF_CONFIG names several workers (that is tf.distribute's).
    Otherwise: over every device of every process when jax.distributed joined several
    processes (multi_worker only); over the first GPU_COUNT local devices when GPU_COUNT > 1
    (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N devices); else None.
    """
    import keras

    from mrcnn.backend import BackendError
    from mrcnn.distribute import cluster_spec_from_env, worker_count
    spec = cluster_spec_from_env() if strategy is None and multi_worker else None
    if spec is not None and worker_count(spec) > 1:
        raise BackendError(
            f"TF_CONFIG names {worker_count(spec)} workers: multi-worker training with "
            f"TF_CONFIG (tf.distribute.MultiWorkerMirroredStrategy) needs the tensorflow "
            f"Keras backend; this process runs Keras on 'jax'. On JAX unset TF_CONFIG and "
            f"join the processes with mrcnn.distribute.initialize_jax_distributed() "
            f"(KERAS_DISTRIBUTION_* variables)")
    if strategy is not None:
        if not isinstance(strategy, keras.distribution.Distribution):
            raise TypeError(f"strategy must be a keras.distribution.Distribution on the JAX "
                            f"backend, got {type(strategy).__name__}")
        return strategy
    if multi_worker and jax.process_count() > 1:
        devices = keras.distribution.list_devices()
        logger.info("%d JAX processes: DataParallel over %d devices (this process: %d)",
                    jax.process_count(), len(devices), jax.process_index())
        return keras.distribution.DataParallel(devices=devices)
    if config.GPU_COUNT == 1:
        return None
    devices = jax.local_devices()
    if len(devices) < config.GPU_COUNT:
        raise ValueError(f"GPU_COUNT={config.GPU_COUNT} but JAX sees {len(devices)} device(s) "
                         f"({[str(d) for d in devices]}); set GPU_COUNT to at most "
                         f"{max(1, len(devices))}")
    names = [f"{d.platform}:{d.id}" for d in devices[:config.GPU_COUNT]]
    logger.info("training on %d devices with keras.distribution.DataParallel: %s",
                len(names), names)
    return keras.distribution.DataParallel(devices=names)


def is_chief(strategy):
    """Process 0 writes checkpoints and logs."""
    return jax.process_index() == 0


def worker_replicas(strategy):
    """(processes, processes): each process's pipeline feeds its own share of the global
    batch (BATCH_SIZE images; Keras splits it over the process's devices); (1, 1) in one
    process."""
    return jax.process_count(), jax.process_count()


def pipeline_index(strategy):
    """This process's share of the global batch: jax.process_index()."""
    return jax.process_index()


def pipeline_batch(config, strategy):
    """Images the input pipeline feeds a step: BATCH_SIZE (IMAGES_PER_GPU * GPU_COUNT), with
    or without a distribution; keras.distribution splits it over the devices."""
    return config.BATCH_SIZE


def training_scope(strategy):
    """The context ``fit`` runs in: the distribution's scope (Keras reads the process's
    distribution when fit builds its train function and at each step, to shard the batch
    and the state over the devices), or a null context without one."""
    import contextlib
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def sync_model_state(keras_model):
    """Copy the state Keras' JAX trainer holds during fit() back into the model's variables
    (it keeps them outside the model between epochs), so that a mid-epoch checkpoint sees
    the current weights."""
    sync = getattr(keras_model, "jax_state_sync", None)
    if sync is not None:
        sync()


def training_pipeline(strategy, pipeline):
    """The input pipeline train() uses: the PyDataset (NumPy batches in worker threads);
    Keras shards each global batch over the DataParallel devices. tf.data is TensorFlow's."""
    if pipeline == "tf.data":
        from mrcnn.backend import BackendError
        raise BackendError("pipeline='tf.data' needs the tensorflow Keras backend; on jax "
                           "use pipeline='pydataset' or 'auto'")
    return "pydataset"
