"""Command-line plumbing shared by the samples and the ``mrcnn`` command.

What every command that builds a model from the command line needs: the common flags
(weights, logs, download, the small-run knobs), the config overrides they imply, the choice
of a weights file (``coco``, ``imagenet``, ``last``, ``random`` or a path), building the
MaskRCNN with those weights, and turning usage problems into one line and exit status 2.

    parser = argparse.ArgumentParser()
    add_common_arguments(parser, weights_flag="--weights", weights_dest="weights")
    args = parser.parse_args()
    config = make_config(MyConfig, **config_overrides(args))
    model = build_model("inference", config, args.weights, args.logs, download=args.download)

Nothing here starts TensorFlow until build_model() is called.
"""
import logging
import os
import re
import sys
import tempfile

from mrcnn import utils
from mrcnn.checkpoints import (choose_last_checkpoint, epoch_checkpoints, read_run_settings,
                               write_run_settings)

logger = logging.getLogger(__name__)

# The repository root of a source checkout (``--weights coco`` looks for the file there too).
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LOGS_DIR = "logs"
COCO_WEIGHTS_NAME = "mask_rcnn_coco.h5"
COCO_NUM_CLASSES = 81
# Layers whose shapes depend on NUM_CLASSES: not loaded from weights of another class count.
CLASS_SPECIFIC_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
# A network small enough to train a few steps on a CPU (what tests/conftest.py's TinyConfig uses).
TINY_OVERRIDES = {
    "BACKBONE": "resnet50",
    "IMAGES_PER_GPU": 1,
    "IMAGE_MIN_DIM": 128,
    "IMAGE_MAX_DIM": 128,
    "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 64,
    "PRE_NMS_LIMIT": 256,
    "POST_NMS_ROIS_TRAINING": 64,
    "POST_NMS_ROIS_INFERENCE": 32,
    "TRAIN_ROIS_PER_IMAGE": 32,
    "TOP_DOWN_PYRAMID_SIZE": 32,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
    "MASK_POOL_SIZE": 7,
    "MASK_SHAPE": [14, 14],
    "MINI_MASK_SHAPE": (28, 28),
    "DETECTION_MAX_INSTANCES": 20,
    "STEPS_PER_EPOCH": 2,
    "VALIDATION_STEPS": 1,
}


# TensorFlow's start-up lines on stderr (absl/glog format, "I0000 00:00:... file.cc:12] ..."):
# oneDNN notes, "Could not find cuda drivers", "failed call to cuInit", CPU instruction notes.
_TF_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} [\d:.]+\s+\d+ "
    r"[\w.]+:\d+\]|To enable the following instructions:)")


class CliError(Exception):
    """A usage problem: run_main() prints the message and returns exit status 2."""


def add_common_arguments(parser, weights_flag="--model", weights_dest="model"):
    """Flags every sample shares: weights, logs, download and the small-run knobs.

    parser: an argparse parser. weights_flag / weights_dest: the weights option's name and
    attribute (matterport's coco.py says ``--model``, the other samples ``--weights``).
    """
    parser.add_argument(weights_flag, dest=weights_dest, required=True, metavar="WEIGHTS",
                        help="coco | imagenet | last | random | path of an .h5 weights file")
    parser.set_defaults(weights_flag=weights_flag, weights_dest=weights_dest)
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="DIR",
                        help=f"logs and checkpoints folder (default: {DEFAULT_LOGS_DIR})")
    parser.add_argument("--download", action="store_true",
                        help="download a missing mask_rcnn_coco.h5 / ImageNet weight file")
    parser.add_argument("--backbone", choices=("resnet50", "resnet101"), default=None,
                        help="backbone (default: the config's)")
    parser.add_argument("--tiny", action="store_true", default=None,
                        help="a very small network (128 px, few ROIs) for quick CPU runs; "
                             "remembered beside the checkpoints for --weights last")
    parser.add_argument("--image-size", type=int, default=None, metavar="PX",
                        help="IMAGE_MIN_DIM = IMAGE_MAX_DIM = PX (a multiple of 64)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total training epochs (the schedule's stages are scaled to it)")


def config_overrides(args):
    """Config attributes set by --tiny, --backbone, --image-size and --steps (a dict)."""
    attrs = dict(TINY_OVERRIDES) if getattr(args, "tiny", False) else {}
    if getattr(args, "backbone", None):
        attrs["BACKBONE"] = args.backbone
    size = getattr(args, "image_size", None)
    if size is not None:
        if size < 64 or size % 64:
            raise CliError(f"--image-size must be a positive multiple of 64, got {size}")
        attrs["IMAGE_MIN_DIM"] = attrs["IMAGE_MAX_DIM"] = size
    steps = getattr(args, "steps", None)
    if steps is not None:
        if steps < 1:
            raise CliError(f"--steps must be >= 1, got {steps}")
        attrs["STEPS_PER_EPOCH"] = steps
        attrs["VALIDATION_STEPS"] = max(1, steps // 10)
    return attrs


def network_flags(args):
    """{"tiny", "backbone", "image_size"}: the flags that shape the network (None: not given).

    They are recorded beside the checkpoints of a training run (build_model's run_settings)
    so that ``last`` weights rebuild the network they were trained with.
    """
    return {"tiny": True if getattr(args, "tiny", None) else None,
            "backbone": getattr(args, "backbone", None),
            "image_size": getattr(args, "image_size", None)}


def _describe(flags):
    parts = ["--tiny" if flags.get("tiny") else "full size"]
    if flags.get("backbone"):
        parts.append(f"--backbone {flags['backbone']}")
    if flags.get("image_size"):
        parts.append(f"--image-size {flags['image_size']}")
    return ", ".join(parts)


def remember_last(args, name):
    """Resolve ``last`` weights on the command line to a checkpoint and adopt its network flags.

    args: parsed arguments of a parser set up by add_common_arguments. name: the config NAME
    (run folders under --logs start with it). When the weights option says ``last``: picks
    the newest run whose recorded network flags (``settings.json``) agree with the flags
    given; without --tiny a full-size run wins over newer --tiny runs (a warning names the
    ones passed over) and a --tiny run is taken only when there is no other, with a warning.
    Then sets the flags not given to the run's (so that the same network is built) and the
    weights option to the checkpoint's path. Does nothing for other weights. Raises CliError
    when no checkpoint matches.
    """
    dest = getattr(args, "weights_dest", "weights")
    flag = getattr(args, "weights_flag", "--weights")
    spec = getattr(args, dest, None)
    if not isinstance(spec, str) or spec.lower() != "last":
        return
    given = network_flags(args)
    path, flags, skipped = choose_last_checkpoint(args.logs, name, given, toy_key="tiny")
    if path is None:
        wanted = "" if all(v is None for v in given.values()) else f" trained with {_describe(given)}"
        raise CliError(f"{flag} last: no checkpoint mask_rcnn_{name.lower()}_*.h5{wanted} in the "
                       f"run folders {name.lower()}* of {args.logs!r}; train one first "
                       "(or pass --logs DIR)")
    if skipped:
        logger.warning("%s last: using %s (%s), not the newer --tiny checkpoint(s) %s; pass "
                       "--tiny to use those", flag, path, _describe(flags), ", ".join(skipped))
    if given["tiny"] is None and flags["tiny"]:
        logger.warning("%s last: the only checkpoints in %r are from --tiny runs: using %s with "
                       "the --tiny network", flag, args.logs, path)
    adopted = {key: value for key, value in flags.items()
               if given[key] is None and value is not None}
    for key, value in adopted.items():
        setattr(args, key, value)
    logger.info("%s last: %s (%s)", flag, path, _describe(flags))
    setattr(args, dest, path)


def make_run_config(base, args, **attrs):
    """The config of a command: ``base`` with the flags' overrides and ``attrs``.

    Resolves ``last`` weights first (remember_last), so that a checkpoint trained with
    --tiny, --backbone or --image-size gets its own network back. Raises CliError.
    """
    remember_last(args, base.NAME or "mrcnn")
    return make_config(base, **{**config_overrides(args), **attrs})


def make_config(base, **attrs):
    """An instance of a subclass of ``base`` with ``attrs`` overriding its attributes.

    Raises CliError with the config's own message when a value is invalid.
    """
    try:
        return type(base.__name__, (base,), attrs)()
    except (ValueError, TypeError) as err:
        raise CliError(f"invalid configuration: {err}") from None


def keras_home():
    """Keras' cache folder: $KERAS_HOME, else ~/.keras."""
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def coco_weight_candidates():
    """Where ``coco`` weights are looked for: the current folder, then ROOT_DIR."""
    candidates = [os.path.abspath(COCO_WEIGHTS_NAME), os.path.join(ROOT_DIR, COCO_WEIGHTS_NAME)]
    return list(dict.fromkeys(candidates))


def _fetch(path, url, what, flag):
    """Download ``url`` to ``path`` with utils.download_trained_weights; CliError offline."""
    logger.info("Downloading %s from %s to %s ...", what, url, path)
    try:
        return utils.download_trained_weights(path, verbose=0, url=url)
    except (ConnectionError, OSError) as err:
        raise CliError(
            f"could not download {what} ({err.__class__.__name__}: {err}).\n"
            f"Without network, download {url} elsewhere and save it as {path}, then run again "
            f"without {flag}.") from None


def _imagenet_weights(backbone, download):
    """Path of the Keras-applications ImageNet file of ``backbone`` in keras_home()/models
    (mrcnn.imagenet: ResNet-50 and ResNet-101, renamed onto our layers on load)."""
    from mrcnn import imagenet
    if backbone not in imagenet.FILES:
        raise CliError(f"ImageNet weights exist for {sorted(imagenet.FILES)}, but the backbone is "
                       f"{backbone!r}: pick one with --backbone (or use coco weights)")
    filename = imagenet.FILES[backbone]
    url = imagenet.BASE_URL + filename
    path = os.path.join(keras_home(), "models", filename)
    if os.path.isfile(path):
        return path
    if not download:
        raise CliError(f"ImageNet weights not found at {path}.\nPut {filename} there "
                       f"(from {url}), or pass --download to fetch it.")
    logger.info("Downloading %s from %s ...", filename, url)
    try:
        return imagenet.get_imagenet_weights(backbone, cache_dir=keras_home())
    except ConnectionError as err:
        raise CliError(f"{err}\nThen run again without --download.") from None


def resolve_weights(spec, config, download=False, model=None, flag="--weights"):
    """Path of the weights that ``spec`` names, or None for "random".

    spec: "coco", "imagenet", "last", "random" or a file path. config: the model's
    Config (its BACKBONE is checked for "imagenet"). model: the MaskRCNN, needed for
    "last" only (searches its model_dir). flag: the option's name in messages. Call it
    before building the model to fail fast. Raises CliError saying where to put a missing
    file.
    """
    key = spec.lower()
    if key == "random":
        return None
    if key == "coco":
        for path in coco_weight_candidates():
            if os.path.isfile(path):
                return path
        target = coco_weight_candidates()[-1]
        if download:
            return _fetch(target, utils.COCO_MODEL_URL, COCO_WEIGHTS_NAME, "--download")
        raise CliError(
            f"{COCO_WEIGHTS_NAME} not found (looked in {', '.join(coco_weight_candidates())}).\n"
            f"Put the file at {target} (download it from {utils.COCO_MODEL_URL}), "
            f"or pass --download to fetch it, or use {flag} random / {flag} PATH.")
    if key == "imagenet":
        return _imagenet_weights(config.BACKBONE, download)
    if key == "last":
        if model is None:
            raise ValueError("resolve_weights('last') needs the model (its model_dir)")
        try:
            return model.find_last()
        except FileNotFoundError as err:
            raise CliError(f"{flag} last: {err}") from None
    path = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isfile(path):
        raise CliError(f"weights file not found: {spec!r} (expected coco, imagenet, last, "
                       "random or the path of an .h5 file)")
    return path


def build_model(mode, config, spec, model_dir, download=False, flag="--weights",
                run_settings=None):
    """Resolve the weights ``spec`` names (before building, to fail fast), build a MaskRCNN
    of ``mode`` and load them by name.

    COCO weights skip the class-specific head layers when NUM_CLASSES is not 81, and
    COCO/ImageNet weights skip conv1 when the images do not have 3 channels. Shape
    mismatches (e.g. weights of a --tiny model into a full one) raise CliError.
    flag: the weights option's name in messages. run_settings: a training model's network
    flags (network_flags(args)), recorded in its run folder for ``last`` weights later.
    Returns the MaskRCNN.
    """
    quiet_tensorflow()
    from mrcnn.model import MaskRCNN

    key = spec.lower()
    path = None if key == "last" else resolve_weights(spec, config, download=download, flag=flag)
    model = MaskRCNN(mode, config, model_dir)
    if key == "last":
        path = resolve_weights(spec, config, model=model, flag=flag)
    if path is None:
        logger.info("Starting from random weights")
    else:
        _load(model, key, path, config)
    if mode == "training" and run_settings is not None:
        write_run_settings(model.log_dir, {k: v for k, v in run_settings.items() if v is not None})
    return model


def _load(model, key, path, config):
    """Load ``path`` by name into ``model``; a mismatch becomes a CliError for the command line."""
    exclude = []
    if key == "coco" and config.NUM_CLASSES != COCO_NUM_CLASSES:
        exclude += CLASS_SPECIFIC_LAYERS
    if key in ("coco", "imagenet") and config.IMAGE_CHANNEL_COUNT != 3:
        exclude.append("conv1")
    logger.info("Loading weights %s", path)
    try:
        model.load_weights(path, by_name=True, exclude=exclude or None)
    except (ValueError, OSError) as err:
        raise CliError(f"could not load weights {path}: {_without_api_hints(err)}\n"
                       "The network flags (--tiny, --backbone, --image-size) and the class count "
                       "must be those the weights were trained with.") from None


def _without_api_hints(err):
    """An error's message without the Python-API advice (by_name=..., exclude=...): asides in
    parentheses that mention by_name go, then every sentence that still mentions them."""
    text = re.sub(r"\s+\((?:[^()]|\([^()]*\))*\bby_name\b(?:[^()]|\([^()]*\))*\)", "",
                  str(err))
    sentences = re.split(r"(?<=[.;?])\s+", text)
    return " ".join(s for s in sentences if "by_name" not in s and "exclude=" not in s).strip()


def quiet_tensorflow(level="2"):
    """Keep TensorFlow's log noise out of what a command-line user sees; call it first.

    Sets TF_CPP_MIN_LOG_LEVEL (unless the user did) to ``level`` ("2": no INFO or WARNING
    lines from TensorFlow's C++ side, e.g. grappler's "Error in PredictCost()" warnings), then
    imports Keras and, on Keras' TensorFlow backend, TensorFlow and lists the devices, with
    stderr captured, and passes on only the lines that are not TensorFlow's start-up notes
    (oneDNN, cuda drivers, cuInit, CPU instructions). On another Keras backend (JAX) it
    imports no TensorFlow, which need not be installed there. Does nothing more when
    TensorFlow is already imported. Entry points call it, not the library.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(level))
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # on Keras' TensorFlow backend this starts TensorFlow
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf
                tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _TF_STARTUP_NOISE.match(line))
            if kept:
                sys.stderr.write(kept)


def run_main(function, args):
    """Run ``function(args)``; print a CliError's message to stderr and return 2 (else 0;
    130 after Ctrl-C, with train()'s note on the checkpoints instead of a traceback).

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless the user did (TensorFlow starts later, quietly, in
    build_model: usage errors come first, without waiting for it).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        function(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # train() says which checkpoint is the last intact one
        print(f"interrupted: {err}" if str(err) else "interrupted", file=sys.stderr)
        return 130
    return 0


def flip_augmentation():
    """Horizontal flips half of the time (albumentations), or None when it is missing."""
    try:
        import albumentations
    except ImportError:
        logger.warning("albumentations is not installed: training without augmentation")
        return None
    return albumentations.HorizontalFlip(p=0.5)


# ---------------------------------------------------------------------------- from-scratch samples
# The command lines of the synthetic from-scratch samples (samples/shapes.py,
# samples/keypoints.py): train / evaluate / detect with --logs, --weights (last or a file) and
# --small (a toy model, remembered in the run folder's settings.json).


def add_sample_arguments(parser, default_logs, weights_required):
    """Add --logs, --weights and --small to a from-scratch sample's subcommand parser.

    --small defaults to None (not given), so that a checkpoint's recorded setting can win.
    """
    parser.add_argument("--logs", default=default_logs,
                        help=f"logs and checkpoints folder (default {default_logs})")
    parser.add_argument("--weights", required=weights_required, default=None,
                        help="'last' (newest checkpoint in --logs) or a .h5 path")
    parser.add_argument("--small", action="store_true", default=None,
                        help="toy-sized model and data (CI); remembered next to the checkpoints")


def check_positive(name, value):
    """Raise CliError naming option ``name`` when ``value`` (an int or None) is < 1."""
    if value is not None and value < 1:
        raise CliError(f"{name} must be a positive integer, got {value}")


def sample_weights(weights, logs, name, script, small=None):
    """Path of a from-scratch sample's --weights: "last" (a checkpoint under ``logs``) or a file.

    name: the config NAME (run folders start with it). script: the sample's path for the
    message, e.g. "samples/shapes.py". small: --small as given (None: not given).
    "last" without --small takes the newest full-size run, never a newer --small one (a
    warning names those passed over), and a --small run only when there is no other (with a
    warning); with --small, the newest --small run. Raises CliError when there is none or
    the file does not exist.
    """
    if weights == "last":
        checkpoint, _, skipped = choose_last_checkpoint(logs, name, {"small": small},
                                                        toy_key="small")
        if checkpoint is None:
            kind = " --small" if small else ""
            raise CliError(f"--weights last: no trained{kind} {name} "
                           f"checkpoint in {logs!r}; run 'python {script} train{kind}' first "
                           "(or pass --logs DIR)")
        if skipped:
            logger.warning("--weights last: using %s, not the newer --small checkpoint(s) %s; "
                           "pass --small to use those", checkpoint, ", ".join(skipped))
        elif small is None and read_run_settings(checkpoint).get("small"):
            logger.warning("--weights last: %s is from a --small (toy) run, the only kind in %r",
                           checkpoint, logs)
        return checkpoint
    if not os.path.isfile(weights):
        raise CliError(f"--weights: file not found: {weights!r}")
    return weights


def load_weights_or_exit(model, weights_path, what=""):
    """``model.load_weights(weights_path, by_name=True)``; a failure becomes a CliError.

    what: words after the path in the message (e.g. " into the small shapes model").
    """
    try:
        model.load_weights(weights_path, by_name=True)
    except (ValueError, OSError, KeyError) as err:
        raise CliError(f"could not load weights {weights_path!r}{what}: {err}") from err


def load_sample_inference_model(weights_path, logs, config_of, small=None):
    """An inference MaskRCNN with the config the checkpoint was trained with, weights loaded.

    config_of(small) -> the sample's Config subclass. small: --small as given; None takes the
    run folder's recorded setting. Returns (model, small). Raises CliError when the weights
    do not fit. Starts TensorFlow (quietly).
    """
    quiet_tensorflow()
    from mrcnn.compact import inference_config
    from mrcnn.model import MaskRCNN

    if small is None:
        small = bool(read_run_settings(weights_path).get("small", False))
    config = inference_config(config_of(small))
    model = MaskRCNN("inference", config, logs)
    load_weights_or_exit(model, weights_path, f" into the {'small' if small else 'full'} "
                                              f"{config.NAME} model")
    return model, small


def sample_training_model(config_class, steps, logs, weights_path=None):
    """A training MaskRCNN of a from-scratch sample, resuming ``weights_path`` when given.

    config_class: the sample's Config subclass; its STEPS_PER_EPOCH becomes ``steps`` (in a
    subclass named TrainConfig). logs: the model_dir. weights_path: a checkpoint loaded by
    name (its epoch is taken up), or None to start from scratch. Raises CliError when the
    weights do not fit. Starts TensorFlow (quietly).
    """
    quiet_tensorflow()
    from mrcnn.model import MaskRCNN

    class TrainConfig(config_class):
        STEPS_PER_EPOCH = steps

    model = MaskRCNN("training", TrainConfig(), logs)
    if weights_path:
        load_weights_or_exit(model, weights_path)
    return model


def last_epoch_checkpoint(log_dir):
    """Path of the last epoch-end checkpoint in a run folder; CliError when there is none."""
    checkpoints = epoch_checkpoints(log_dir)
    if not checkpoints:
        raise CliError(f"training wrote no checkpoint in {log_dir!r}")
    return os.path.join(log_dir, checkpoints[-1])


def run_sample_main(prog, parser, commands, argv=None):
    """Parse ``argv`` and run ``commands[args.command](args)``; returns the exit code.

    prog: the script's name for messages ("shapes.py"). A CliError prints
    "<prog> <command>: error: <message>" to stderr and returns 2; Ctrl-C prints
    "<prog> <command>: interrupted: ..." (train() names the last intact checkpoint) and
    returns 130; argparse's own usage errors return its exit code. Pictures go to files:
    matplotlib uses Agg unless pyplot is already imported.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse printed the usage and the problem.
        return int(exit_.code or 0)
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # pictures go to files; no window is needed
    try:
        return commands[args.command](args)
    except CliError as err:
        print(f"{prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # train() says which checkpoint is the last intact one
        print(f"{prog} {args.command}: interrupted: {err}", file=sys.stderr)
        return 130
