"""ImageNet-pretrained ResNet weights for the backbone (Keras-applications files).

Keras publishes Caffe-style ResNet-50 and ResNet-101 weights (stride in the first 1x1
conv, convolutions with biases: the matterport backbone) under its own layer names
(``conv2_block1_1_conv``, ...). ``rename_map`` maps them onto ours (``res2a_branch2a``,
...), so ``model.load_weights(model.get_imagenet_weights(), by_name=True)`` works for
both depths, and a ResNet-50 file is refused for a ResNet-101 model instead of leaving
17 blocks at random (an old matterport bug).
"""
import logging
import os

logger = logging.getLogger(__name__)

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet101": "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
# Bottleneck blocks per stage 2..5.
BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
BRANCHES = {"0": "1", "1": "2a", "2": "2b", "3": "2c"}


def rename_map(architecture):
    """{Keras-applications layer name: matterport layer name} for ``architecture``."""
    if architecture not in BLOCKS:
        raise ValueError(f"architecture must be one of {sorted(BLOCKS)}, got {architecture!r}")
    names = {"conv1_conv": "conv1", "conv1_bn": "bn_conv1"}
    for stage, count in zip(range(2, 6), BLOCKS[architecture]):
        for block in range(1, count + 1):
            letter = chr(ord("a") + block - 1)
            for theirs, ours in BRANCHES.items():
                if theirs == "0" and block > 1:
                    continue  # only the first block of a stage has a shortcut conv
                prefix = f"conv{stage}_block{block}_{theirs}"
                names[f"{prefix}_conv"] = f"res{stage}{letter}_branch{ours}"
                names[f"{prefix}_bn"] = f"bn{stage}{letter}_branch{ours}"
    return names


def detect_architecture(layer_names):
    """"resnet50" / "resnet101" for a Keras-applications file's layer names, else None."""
    names = set(layer_names)
    if "conv2_block1_1_conv" not in names:
        return None
    return "resnet101" if "conv4_block23_3_conv" in names else "resnet50"


def get_imagenet_weights(architecture, cache_dir=None):
    """Path of the ImageNet weights of ``architecture``, downloaded once into the Keras cache.

    Raises ConnectionError naming the URL and where to put the file by hand when the
    download fails (no network).
    """
    if architecture not in FILES:
        raise ValueError(f"ImageNet weights exist for {sorted(FILES)}, got {architecture!r}")
    import keras

    filename = FILES[architecture]
    url = BASE_URL + filename
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".keras")
    local = os.path.join(cache_dir, "models", filename)
    if os.path.isfile(local):
        return local
    try:
        return keras.utils.get_file(filename, url, cache_subdir="models", cache_dir=cache_dir)
    except Exception as err:  # get_file raises plain Exception subclasses for network errors
        raise ConnectionError(
            f"could not download ImageNet weights from {url} ({err}); download the file by "
            f"hand and put it at {local}") from err
