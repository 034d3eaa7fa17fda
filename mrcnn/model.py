"""MaskRCNN: the user-facing model class (build, detect, weights, log folders).

``import mrcnn.model as modellib`` also gives the names matterport users reach
through this module (``modellib.load_image_gt``, ``modellib.ProposalLayer``, ...).
"""
import contextlib
import datetime
import logging
import math
import numbers
import os
import re

import numpy as np

from mrcnn import utils
from mrcnn.checkpoints import CHECKPOINT_PATTERN, find_last_checkpoint
from mrcnn.data import (compose_image_meta, data_generator, mold_image,  # noqa: F401
                        parse_image_meta, unmold_image)
from mrcnn.layers.detection import DetectionLayer  # noqa: F401
from mrcnn.layers.detection_target import DetectionTargetLayer  # noqa: F401
from mrcnn.layers.norm import BatchNorm  # noqa: F401
from mrcnn.layers.proposal import ProposalLayer  # noqa: F401
from mrcnn.layers.roi_align import PyramidROIAlign  # noqa: F401
from mrcnn.targets import (build_detection_targets, build_rpn_targets,  # noqa: F401
                           generate_random_rois, load_image_gt)

logger = logging.getLogger(__name__)

MODES = ("training", "inference")
PIPELINES = ("auto", "pydataset", "tf.data")


def _merge_history(history, segment):
    """Append a later fit's History to an earlier one (epochs and per-epoch logs)."""
    if history is None or segment is None:
        return segment if history is None else history
    history.epoch.extend(segment.epoch)
    for key, values in segment.history.items():
        history.history.setdefault(key, []).extend(values)
    return history


def log(text, array=None):
    """Print a text and, optionally, an array's shape, min, max and dtype (notebook helper)."""
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25)
        if array.size:
            text += (f"shape: {str(array.shape):20}  min: {array.min():10.5f}  "
                     f"max: {array.max():10.5f}  {array.dtype}")
        else:
            text += f"shape: {str(array.shape):20}  (empty)  {array.dtype}"
    print(text)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during train(); the message says which checkpoint is the last (intact) one."""


class MaskRCNN:
    """Mask R-CNN model: ``keras_model`` holds the Keras functional graph.

    mode: "training" or "inference".
    config: a Config (subclass) instance.
    model_dir: folder for training logs and checkpoints (created when training starts).
    strategy: a tf.distribute.Strategy to build and train under; None picks one from
        TF_CONFIG (several workers: MultiWorkerMirroredStrategy) or GPU_COUNT > 1
        (MirroredStrategy), see mrcnn.distribute.
    """

    def __init__(self, mode, config, model_dir, strategy=None):
        if mode not in MODES:
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
        if not hasattr(config, "validate_for_model"):
            raise TypeError(f"config must be an mrcnn.config.Config instance, got {type(config).__name__}")
        config.validate_for_model()
        if not isinstance(model_dir, (str, os.PathLike)):
            raise TypeError(f"model_dir must be a path, got {model_dir!r}")
        self.mode = mode
        self.config = config
        self.model_dir = os.fspath(model_dir)
        self.epoch = 0
        self.step = 0
        self._resume_state = None
        self._target_epochs = None
        self._anchor_cache = {}
        self._predict_fn = None
        self.set_log_dir()
        self.strategy = self._distribution_strategy(config, strategy, mode)
        if self.strategy is None:
            self.keras_model = self.build(mode=mode, config=config)
        else:
            with self.strategy.scope():
                self.keras_model = self.build(mode=mode, config=config)

    @staticmethod
    def _distribution_strategy(config, strategy=None, mode="training"):
        """The tf.distribute strategy of training (mrcnn.distribute.make_strategy), or None."""
        from mrcnn.distribute import make_strategy
        return make_strategy(config, strategy, multi_worker=mode == "training")

    # ------------------------------------------------------------------ graph
    def build(self, mode, config):
        """Build the Keras model of ``mode`` (see mrcnn.graph)."""
        from mrcnn import graph
        if mode == "inference":
            return graph.build_inference_model(config)
        return graph.build_training_model(config)

    def get_anchors(self, image_shape):
        """Anchors of a molded image shape: [A, (y1, x1, y2, x2)] float32, normalized (cached)."""
        key = tuple(int(v) for v in image_shape[:2])
        if key not in self._anchor_cache:
            backbone_shapes = utils.compute_backbone_shapes(self.config, image_shape)
            anchors = utils.generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS, backbone_shapes,
                self.config.BACKBONE_STRIDES, self.config.RPN_ANCHOR_STRIDE)
            self._anchor_cache[key] = utils.norm_boxes(anchors, key).astype(np.float32)
        return self._anchor_cache[key]

    # ------------------------------------------------------------------ inference
    def mold_inputs(self, images):
        """Resize and mold a list of images for the network.

        images: list of [H, W, C] arrays (they may differ in size).
        Returns (molded_images [N, h, w, C] float32, image_metas [N, META] float64,
        windows [N, (y1, x1, y2, x2)] int pixels of the real image inside the molded one).
        """
        from mrcnn.inputs import check_resized_side
        molded_images, image_metas, windows = [], [], []
        config = self.config
        for i, image in enumerate(images):
            molded, window, scale, _, _ = utils.resize_image(
                image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
                max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE,
                method=config.IMAGE_RESIZE_METHOD)
            check_resized_side(f"image {i}", image.shape,
                               (window[2] - window[0], window[3] - window[1]), stacklevel=4)
            molded = mold_image(molded, config)
            meta = compose_image_meta(0, image.shape, molded.shape, window, scale,
                                      np.zeros([config.NUM_CLASSES], dtype=np.int32))
            molded_images.append(molded)
            image_metas.append(meta)
            windows.append(window)
        shapes = {m.shape for m in molded_images}
        if len(shapes) > 1:
            raise ValueError(f"molded images differ in shape {sorted(shapes)}; use "
                             "IMAGE_RESIZE_MODE='square' or pass same-size images together")
        return (np.stack(molded_images).astype(np.float32), np.stack(image_metas),
                np.stack(windows))

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """Turn one image's network outputs into pixel results in the original image.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero padded.
        mrcnn_mask: [N, h, w, NUM_CLASSES] sigmoid masks, or [N, h, w, 1] with
            CLASS_AGNOSTIC_MASKS (that channel serves every class).
        original_image_shape: (H, W, C) before resizing; image_shape: molded (H, W, C).
        window: (y1, x1, y2, x2) pixels of the real image in the molded image.

        Returns (boxes [n, 4] int32 pixels, class_ids [n] int32, scores [n] float32,
        masks [H, W, n] bool).
        """
        class_column = detections[:, 4]
        zero_rows = np.where(class_column == 0)[0]
        count = int(zero_rows[0]) if zero_rows.size else detections.shape[0]
        boxes = detections[:count, :4].astype(np.float32)
        class_ids = detections[:count, 4].astype(np.int32)
        scores = detections[:count, 5].astype(np.float32)
        channels = class_ids if mrcnn_mask.shape[-1] > 1 else np.zeros_like(class_ids)
        masks = mrcnn_mask[np.arange(count), :, :, channels]

        # Boxes from the molded frame to the window's frame, then to original pixels.
        wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window)[None], image_shape[:2])[0]
        wh, ww = wy2 - wy1, wx2 - wx1
        boxes = (boxes - np.array([wy1, wx1, wy1, wx1])) / np.array([wh, ww, wh, ww])
        boxes = utils.denorm_boxes(boxes, original_image_shape[:2])

        keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
        boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
        height, width = int(original_image_shape[0]), int(original_image_shape[1])
        full_masks = np.zeros((height, width, len(keep)), dtype=bool)
        for i in range(len(keep)):  # each mask is written into its box only
            utils.unmold_mask(masks[i], boxes[i], original_image_shape, out=full_masks[:, :, i])
        return boxes.astype(np.int32), class_ids, scores, full_masks

    def _check_images(self, images):
        """Validate and convert user images to [H, W, IMAGE_CHANNEL_COUNT] arrays."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)) or not images:
            raise ValueError("images must be a non-empty list of [H, W, C] arrays, got "
                             f"{type(images).__name__}")
        from mrcnn.inputs import check_image
        channels = self.config.IMAGE_CHANNEL_COUNT
        checked = []
        for i, image in enumerate(images):  # stacklevel 4: the warning points at detect's caller
            checked.append(check_image(image, f"image {i}", channels, stacklevel=4))
        return checked

    def _predict(self, molded_images, image_metas):
        """Run the inference graph on one batch; returns the model's outputs as NumPy arrays."""
        if self._predict_fn is None:
            from mrcnn import backend
            from mrcnn.graph import compute_dtype
            # Frozen constants would bypass the strategy's mirrored variables; with a
            # low-precision policy freezing was measured to gain nothing.
            freeze = (self.config.FREEZE_INFERENCE_WEIGHTS and self.strategy is None
                      and compute_dtype(self.config) == "float32")
            # TensorFlow: mrcnn.predictor.Predictor; JAX: one jit-compiled function.
            self._predict_fn = backend.get().make_predictor(self.keras_model, freeze=freeze)
        return self._predict_fn(molded_images, image_metas)

    def detect(self, images, verbose=0):
        """Detect instances in any number of images.

        images: list of [H, W, 3] RGB arrays (grayscale and RGBA are converted with a warning).
        Returns one dict per image: rois [N, (y1, x1, y2, x2)] int32 pixels in the original
        image, class_ids [N] int32, scores [N] float32, masks [H, W, N] bool; keypoint
        models (Config.KEYPOINT_NAMES) also keypoints [N, K, (x, y, score)] float32 in
        original image pixels (pixel-index units, COCO's convention; see mrcnn.keypoints).
        """
        if self.mode != "inference":
            raise ValueError("detect() needs a model built with mode='inference'")
        images = self._check_images(images)
        if verbose:
            logger.info("Processing %d images", len(images))
        results = []
        batch_size = self.config.BATCH_SIZE
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            molded_images, image_metas, windows = self.mold_inputs(batch)
            results.extend(self._detect_batch([image.shape for image in batch], molded_images,
                                              image_metas, windows))
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (e.g. from load_image_gt + mold_image).

        molded_images: [N, H, W, C] float32; image_metas: [N, META] (original shape and window used).
        Returns the same dicts as detect(), in the frame the metas describe.
        """
        if self.mode != "inference":
            raise ValueError("detect_molded() needs a model built with mode='inference'")
        molded_images = np.asarray(molded_images, dtype=np.float32)
        image_metas = np.asarray(image_metas)
        if molded_images.ndim != 4 or len(molded_images) != len(image_metas):
            raise ValueError(f"molded_images {molded_images.shape} and image_metas "
                             f"{image_metas.shape} must be [N, H, W, C] and [N, META]")
        parsed = parse_image_meta(image_metas)
        results = []
        batch_size = self.config.BATCH_SIZE
        for start in range(0, len(molded_images), batch_size):
            stop = start + batch_size
            originals = [tuple(s) for s in parsed["original_image_shape"][start:stop]]
            results.extend(self._detect_batch(originals, molded_images[start:stop],
                                              image_metas[start:stop], parsed["window"][start:stop]))
        return results

    def _detect_batch(self, original_shapes, molded_images, image_metas, windows):
        """Pad a batch to BATCH_SIZE, run it, unmold the real images' results."""
        count = len(molded_images)
        pad = self.config.BATCH_SIZE - count
        if pad > 0:
            molded_images = np.concatenate(
                [molded_images, np.zeros((pad,) + molded_images.shape[1:], molded_images.dtype)])
            image_metas = np.concatenate([image_metas, np.repeat(image_metas[-1:], pad, axis=0)])
        outputs = self._predict(molded_images, image_metas)
        detections, _, _, mrcnn_mask = outputs[:4]
        results = []
        for i in range(count):
            rois, class_ids, scores, masks = self.unmold_detections(
                detections[i], mrcnn_mask[i], original_shapes[i], molded_images[i].shape, windows[i])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
            if self.config.KEYPOINT_NAMES:
                results[-1]["keypoints"] = self.unmold_keypoints(
                    detections[i], outputs[7][i], original_shapes[i], molded_images[i].shape,
                    windows[i], float(parse_image_meta(image_metas[i])["scale"]))
        return results

    def unmold_keypoints(self, detections, heatmaps, original_image_shape, image_shape, window,
                         scale):
        """One image's keypoint heatmaps -> keypoints in the original image's pixels.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero padded.
        heatmaps: [N, m, m, K] keypoint logits of the same rows.
        original_image_shape, image_shape, window: as unmold_detections; scale: the resize
        factor (image meta).

        Returns: [n, K, (x, y, score)] float32, the rows unmold_detections keeps, in the
        same order; x, y in pixel-index units of the original image (COCO convention, see
        mrcnn.keypoints), score the softmax probability of the heatmap's arg-max cell.
        """
        from mrcnn import keypoints as kp_utils

        class_column = detections[:, 4]
        zero_rows = np.where(class_column == 0)[0]
        count = int(zero_rows[0]) if zero_rows.size else detections.shape[0]
        h, w = image_shape[:2]
        # Normalized boxes to molded pixel edges (denorm_boxes without its rounding).
        boxes = detections[:count, :4].astype(np.float64) * np.array([h - 1, w - 1, h - 1, w - 1]) \
            + np.array([0, 0, 1, 1])
        keypoints = kp_utils.unmold_keypoints(
            kp_utils.heatmaps_to_keypoints(heatmaps[:count], boxes), window, scale)
        # The rows unmold_detections keeps: non-empty boxes in the original image.
        wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window)[None], image_shape[:2])[0]
        wh, ww = wy2 - wy1, wx2 - wx1
        norm = (detections[:count, :4] - np.array([wy1, wx1, wy1, wx1])) / np.array([wh, ww, wh, ww])
        orig = utils.denorm_boxes(norm, original_image_shape[:2])
        keep = (orig[:, 2] - orig[:, 0]) * (orig[:, 3] - orig[:, 1]) > 0
        return keypoints[keep]

    def run_graph(self, images, outputs, image_metas=None):
        """Run the graph up to named layers and return their outputs.

        images: list of images (molded here) or, with image_metas, already molded [N, H, W, C].
        outputs: list of (name, layer name or KerasTensor), or of layer names.
        Returns an ordered dict name -> NumPy array.
        """
        import keras
        named = []
        for item in outputs:
            if isinstance(item, str):
                item = (item, item)
            name, target = item
            if isinstance(target, str):
                try:
                    target = self.keras_model.get_layer(target).output
                except ValueError as err:
                    raise ValueError(f"run_graph: no layer named {target!r} in the "
                                     f"{self.mode} model") from err
            named.append((name, target))
        submodel = keras.Model(self.keras_model.inputs, [t for _, t in named])
        if image_metas is None:
            images = self._check_images(images)
            molded_images, image_metas, _ = self.mold_inputs(images)
        else:
            molded_images = np.asarray(images, dtype=np.float32)
        values = submodel([molded_images, np.asarray(image_metas, dtype=np.float32)], training=False)
        if len(named) == 1:
            values = [values]
        result = {}
        for (name, _), value in zip(named, values):
            result[name] = np.asarray(value)
            logger.debug("%s %s", name, result[name].shape)
        return result

    def export(self, path, format="tf_saved_model"):
        """Export a self-contained serving graph: raw images in, detect()'s results out.

        path: a folder for "tf_saved_model", a file (.onnx, .tflite) otherwise.
        format: "tf_saved_model", "onnx" (needs ``pip install 'mrcnn[onnx]'``) or "litert".
        The artifact's one signature takes ``images`` [batch, H, W, 3] uint8 (batch 1 for
        LiteRT) and returns boxes [batch, N, (y1, x1, y2, x2)] int32 pixels, class_ids
        [batch, N] int32, scores [batch, N] float32, num_detections [batch] int32 and masks
        [batch, N, H, W] uint8; molding and unmolding run inside (see mrcnn.export).
        Returns ``path``. Raises mrcnn.backend.BackendError on a Keras backend other than
        TensorFlow (all three formats are written from TensorFlow graphs).
        """
        from mrcnn import export
        if self.mode != "inference":
            raise ValueError("export() needs a model built with mode='inference'")
        export.check_format(format)
        export.require_tensorflow(format)
        twin = export.exportable_model(self.keras_model, self.config,
                                       graph_nms=format in export.GRAPH_NMS_FORMATS)
        return export.export_model(twin, self.config, path, format=format)

    # ------------------------------------------------------------------ weights
    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load weights from our checkpoints, matterport ``.h5`` files or Keras 3 ``.weights.h5``.

        by_name: match layers by name (needed when the graphs differ, e.g. other class counts).
        exclude: layer names not to load (implies by_name).
        Returns the report of weights.load_weights_h5 (loaded / skipped / excluded layers).
        """
        from mrcnn.weights import load_weights_h5
        if exclude:
            by_name = True
        rename = self._imagenet_rename(filepath)
        report = load_weights_h5(self.keras_model, filepath, by_name=by_name or bool(rename),
                                 exclude=exclude, rename=rename)
        self.set_log_dir(filepath)
        return report

    def _imagenet_rename(self, filepath):
        """Layer renaming for a Keras-applications ImageNet file, else None.

        Refuses a file whose depth differs from the configured backbone.
        """
        import h5py

        from mrcnn import imagenet
        if not (os.path.isfile(filepath) and h5py.is_hdf5(filepath)):
            return None  # load_weights_h5 reports it
        try:
            with h5py.File(filepath, "r") as f:
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in f.attrs.get("layer_names", [])]
        except OSError:
            return None  # load_weights_h5 reports it, naming the file
        architecture = imagenet.detect_architecture(names)
        if architecture is None:
            return None
        if architecture != self.config.BACKBONE:
            raise ValueError(f"{filepath!r} holds ImageNet weights of a {architecture}, "
                             f"but the model's BACKBONE is {self.config.BACKBONE!r}")
        return imagenet.rename_map(architecture)

    def get_imagenet_weights(self):
        """Path of the ImageNet weights of the configured ResNet (downloaded once)."""
        from mrcnn import imagenet
        return imagenet.get_imagenet_weights(self.config.BACKBONE)

    def save_weights(self, filepath):
        """Save every weight in the matterport-compatible HDF5 layout (atomic write)."""
        from mrcnn.weights import save_weights_h5
        save_weights_h5(self.keras_model, filepath)

    # ------------------------------------------------------------------ training
    def set_trainable(self, layer_regex, keras_model=None, indent=0, verbose=1):
        """Make layers whose names fully match ``layer_regex`` trainable, freeze the rest.

        Nested models (the shared rpn_model) are walked into. Returns the trainable layer names.
        """
        keras_model = keras_model or self.keras_model
        pattern = re.compile(layer_regex)
        names = []
        for layer in keras_model.layers:
            if layer.__class__.__name__ in ("Functional", "Model") or hasattr(layer, "layers"):
                names.extend(self.set_trainable(layer_regex, keras_model=layer,
                                                indent=indent + 4, verbose=verbose))
                layer.trainable = any(sub.trainable for sub in layer.layers)
                continue
            if not layer.weights:
                continue
            trainable = bool(pattern.fullmatch(layer.name))
            layer.trainable = trainable
            if trainable:
                names.append(layer.name)
                if verbose > 1:
                    logger.info("%s%-20s (%s)", " " * indent, layer.name, layer.__class__.__name__)
        return names

    def get_trainable_layers(self):
        """Layers that have weights (matterport's helper for notebooks)."""
        out = []
        for layer in self.keras_model.layers:
            if hasattr(layer, "layers"):
                out.extend(sub for sub in layer.layers if sub.weights)
            elif layer.weights:
                out.append(layer)
        return out

    def find_trainable_layer(self, layer):
        """The innermost layer of a wrapper (kept for matterport compatibility)."""
        while hasattr(layer, "layer"):
            layer = layer.layer
        return layer

    def compile(self, learning_rate, momentum):
        """SGD with momentum, L2 weight decay and global gradient-norm clipping.

        The loss is the model's own (``MaskRCNNTrainer.compute_loss``); the optimizer is
        ``mrcnn.training.MomentumSGD``, which applies WEIGHT_DECAY's gradient itself.
        """
        from mrcnn.training import MomentumSGD
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with scope:
            optimizer = MomentumSGD(
                learning_rate=learning_rate, momentum=momentum,
                global_clipnorm=self.config.GRADIENT_CLIP_NORM,
                l2_decay=self.config.WEIGHT_DECAY)
            # XLA on JAX (static shapes); a plain tf.function on TensorFlow (dynamic NMS).
            from mrcnn import backend
            self.keras_model.compile(optimizer=optimizer,
                                     jit_compile=not backend.get().DYNAMIC_SHAPES)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
              workers=None, verbose=1, pipeline="auto"):
        """Train the layers selected by ``layers`` until epoch ``epochs`` (stages chain).

        layers: "heads", "3+", "4+", "5+", "all", or a regular expression over layer names.
        augmentation: an albumentations transform or an imgaug-style augmenter.
        pipeline: "pydataset" (a keras PyDataset fed by ``workers`` threads), "tf.data"
            (mrcnn.data.make_tf_dataset, sharded by worker) or "auto" (tf.data under a
            tf.distribute strategy, which needs it; else pydataset). Both give the same
            batches.
        Checkpoints (chief only, atomic): log_dir/mask_rcnn_<name>_<epoch:04d>.h5 at each
        epoch end, and mid-epoch ones every CHECKPOINT_EVERY_STEPS steps; each with a
        .state.npz beside it (optimizer momentum and iterations, epoch, step). After
        ``load_weights(find_last())`` training resumes at that exact step.
        Returns the keras History (of all epochs trained, a resumed partial epoch first).
        Raises FloatingPointError when a loss becomes NaN/inf.
        """
        from mrcnn.training import (LAYER_GROUPS, CheckpointCallback, NonFiniteLossGuard,
                                    TrainingInputs, tensorboard_available)
        import keras

        if self.mode != "training":
            raise ValueError("train() needs a model built with mode='training'")
        for name, dataset in (("train_dataset", train_dataset), ("val_dataset", val_dataset)):
            if dataset is not None and not len(getattr(dataset, "image_ids", [])):
                raise ValueError(f"{name} has no images: call prepare() after adding images")
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer (the epoch to reach), got {epochs!r}")
        layer_regex = LAYER_GROUPS.get(layers, layers)
        try:
            re.compile(layer_regex)
        except (re.error, TypeError) as err:
            raise ValueError(f"layers must be one of {sorted(LAYER_GROUPS)} or a regular "
                             f"expression, got {layers!r}") from err
        if (not isinstance(learning_rate, numbers.Real) or isinstance(learning_rate, bool)
                or not math.isfinite(learning_rate) or learning_rate <= 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
        pattern = re.compile(layer_regex)
        if not any(pattern.fullmatch(layer.name) for layer in self.get_trainable_layers()):
            raise ValueError(
                f"layers={layers!r} matches no layer with weights, so nothing would train (a "
                f"regular expression must match whole layer names); use one of "
                f"{sorted(LAYER_GROUPS)} or a pattern such as r\"(mrcnn_.*)|(rpn_.*)\"")
        if self.epoch >= epochs:
            logger.info("already at epoch %d >= %d: nothing to train", self.epoch, epochs)
            return None
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")

        from mrcnn.distribute import is_chief
        from mrcnn.training import read_training_state, restore_optimizer_state

        config = self.config
        self._target_epochs = epochs
        chief = is_chief(self.strategy)
        from mrcnn import backend
        pipeline = backend.get().training_pipeline(self.strategy, pipeline)
        trainable = self.set_trainable(layer_regex, verbose=verbose)
        logger.info("epoch %d step %d -> epoch %d, lr %s, %d trainable layers, %s pipeline, "
                    "checkpoints in %s", self.epoch, self.step, epochs, learning_rate,
                    len(trainable), pipeline, self.log_dir)
        self.compile(learning_rate, config.LEARNING_MOMENTUM)
        if self._resume_state is not None:
            state = read_training_state(self._resume_state)
            restored = restore_optimizer_state(self.keras_model, state, self.strategy)
            logger.info("restored %d state variables from %s", restored, self._resume_state)
            self._resume_state = None
        if chief:
            os.makedirs(self.log_dir, exist_ok=True)

        inputs = TrainingInputs(self, train_dataset, val_dataset, pipeline, augmentation,
                                no_augmentation_sources, workers)
        checkpoints = CheckpointCallback(self._save_checkpoint, config.STEPS_PER_EPOCH,
                                         every_steps=config.CHECKPOINT_EVERY_STEPS,
                                         start_step=self.step, enabled=chief)
        guard = NonFiniteLossGuard(inputs.batch_image_ids)
        # Custom callbacks (e.g. MeanAPCallback) run before TensorBoard so that what they
        # add to the epoch logs is written too. Only the chief writes TensorBoard logs.
        callbacks = [guard, checkpoints, inputs.position_callback] + list(custom_callbacks or [])
        if chief and tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(log_dir=self.log_dir, histogram_freq=0,
                                                         write_graph=False))
        history = None
        # A run resumed mid-epoch first finishes that epoch, then trains whole epochs.
        segments = [(self.epoch, self.epoch + 1, self.step)] if self.step else []
        if self.epoch + (1 if self.step else 0) < epochs:
            segments.append((self.epoch + (1 if self.step else 0), epochs, 0))
        try:
            for first_epoch, last_epoch, first_step in segments:
                train_data, val_data = inputs.make(first_epoch, last_epoch, first_step)
                checkpoints.start_step = first_step
                inputs.start_step = first_step
                with backend.get().training_scope(self.strategy):
                    segment = self.keras_model.fit(
                        train_data, initial_epoch=first_epoch, epochs=last_epoch,
                        steps_per_epoch=config.STEPS_PER_EPOCH - first_step,
                        callbacks=callbacks, validation_data=val_data,
                        validation_steps=inputs.validation_steps, shuffle=False,
                        verbose=verbose if chief else 0)
                history = _merge_history(history, segment)
                if guard.message or self.keras_model.stop_training:
                    break
                self.epoch, self.step = last_epoch, 0
        except KeyboardInterrupt:
            saved = checkpoints.last_saved or self.find_last_or_none()
            message = (f"training interrupted (Ctrl-C); the checkpoints written so far are "
                       f"intact (checkpoints are written whole at each epoch end and every "
                       f"CHECKPOINT_EVERY_STEPS steps): "
                       f"{'last one ' + saved if saved else 'none yet'}, in {self.log_dir}")
            logger.warning(message)
            raise TrainingInterrupted(message) from None
        if guard.message:
            raise FloatingPointError(guard.message + (f"; last checkpoint: {checkpoints.last_saved}"
                                                      if checkpoints.last_saved else ""))
        self.epoch, self.step = max(self.epoch, epochs), 0
        return history

    def _save_checkpoint(self, epoch, step):
        """Write the checkpoint at (completed epochs, step): state file, then weights; returns
        the weights path (mrcnn.checkpoints layout)."""
        from mrcnn.checkpoints import checkpoint_name, state_path
        from mrcnn.training import save_training_state
        name = (self.config.NAME or "mrcnn").lower()
        path = os.path.join(self.log_dir, checkpoint_name(name, epoch, step))
        os.makedirs(self.log_dir, exist_ok=True)
        save_training_state(state_path(path), self.keras_model, epoch, step,
                            target_epochs=self._target_epochs)
        self.save_weights(path)
        return path

    # ------------------------------------------------------------------ logs
    def set_log_dir(self, model_path=None):
        """Set log_dir, checkpoint_path and epoch; resume numbering from a checkpoint path.

        model_path: a checkpoint ``.../<name><YYYYmmddTHHMM>/mask_rcnn_<name>_<epoch>.h5``
        (or a mid-epoch ``..._<epoch>.step<step>.h5``); training then continues in that
        folder from that position, with the optimizer state of the ``.state.npz`` beside it
        when there is one (mrcnn.checkpoints).
        """
        from mrcnn.checkpoints import checkpoint_position, state_path
        self.epoch, self.step, self._resume_state = 0, 0, None
        name = (self.config.NAME or "mrcnn").lower()
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M")
        log_dir = os.path.join(self.model_dir, f"{name}{stamp}")
        if model_path:
            model_path = os.path.abspath(os.fspath(model_path))
            match = CHECKPOINT_PATTERN.match(model_path)
            if match:
                self.epoch, self.step = checkpoint_position(model_path)
                log_dir = os.path.dirname(model_path)
                if os.path.isfile(state_path(model_path)):
                    self._resume_state = state_path(model_path)
                if self.mode == "training":
                    logger.info("Re-starting from epoch %d, step %d%s", self.epoch, self.step,
                                " with the optimizer state" if self._resume_state else "")
        self.log_dir = log_dir
        self.checkpoint_path = os.path.join(log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5")

    def find_last_or_none(self):
        """find_last(), or None when there is no checkpoint yet."""
        try:
            return self.find_last()
        except FileNotFoundError:
            return None

    def find_last(self):
        """Path of the last checkpoint of the newest log folder of this config's NAME."""
        name = (self.config.NAME or "mrcnn").lower()
        if not os.path.isdir(self.model_dir):
            raise FileNotFoundError(f"no log folder {self.model_dir!r}: nothing trained yet")
        path = find_last_checkpoint(self.model_dir, name)
        if path is None:
            raise FileNotFoundError(
                f"could not find a checkpoint mask_rcnn_{name}_*.h5 in {self.model_dir!r} "
                f"(looked in the folders starting with {name!r})")
        return path
