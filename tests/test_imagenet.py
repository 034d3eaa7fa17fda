"""ImageNet (Keras-applications) ResNet weights: renaming, depth check, download errors."""
import h5py
import numpy as np
import pytest

from mrcnn import imagenet
from mrcnn.model import MaskRCNN
from tests.conftest import TinyConfig


def test_rename_map_names_and_counts():
    r50 = imagenet.rename_map("resnet50")
    assert r50["conv1_conv"] == "conv1" and r50["conv1_bn"] == "bn_conv1"
    assert r50["conv2_block1_0_conv"] == "res2a_branch1"
    assert r50["conv3_block4_3_bn"] == "bn3d_branch2c"
    assert r50["conv4_block6_2_conv"] == "res4f_branch2b"
    # conv1 + bn_conv1, 16 blocks x 3 branches x (conv, bn), 4 shortcuts x (conv, bn)
    assert len(r50) == 2 + 16 * 6 + 4 * 2
    r101 = imagenet.rename_map("resnet101")
    assert len(r101) == 2 + 33 * 6 + 4 * 2
    assert r101["conv4_block23_1_conv"] == "res4w_branch2a"
    with pytest.raises(ValueError, match="resnet18"):
        imagenet.rename_map("resnet18")


def write_keras_applications_file(path, model, rng):
    """A file in the Keras-applications layout holding random values for the backbone."""
    inverse = {ours: theirs for theirs, ours in imagenet.rename_map("resnet50").items()}
    values = {}
    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.keras_model.layers
                  if layer.name in inverse and layer.weights]
        f.attrs["layer_names"] = np.array([inverse[layer.name].encode() for layer in layers])
        for layer in layers:
            theirs = inverse[layer.name]
            group = f.create_group(theirs)
            suffixes = [w.path.split("/")[-1] for w in layer.weights]
            group.attrs["weight_names"] = np.array([f"{theirs}/{s}:0".encode() for s in suffixes])
            arrays = []
            for w, s in zip(layer.weights, suffixes):
                data = rng.standard_normal(tuple(w.shape)).astype(np.float32)
                group.create_dataset(f"{theirs}/{s}:0", data=data)
                arrays.append(data)
            values[layer.name] = arrays
    return values


def test_load_keras_applications_file_by_name(tmp_path):
    model = MaskRCNN("inference", TinyConfig(), str(tmp_path))
    path = str(tmp_path / imagenet.FILES["resnet50"])
    values = write_keras_applications_file(path, model, np.random.default_rng(3))
    head_before = np.asarray(model.keras_model.get_layer("fpn_c5p5").weights[0]).copy()
    report = model.load_weights(path, by_name=True)
    assert len(report["loaded"]) == len(values) == 2 + 16 * 6 + 4 * 2
    for name, arrays in values.items():
        for w, expected in zip(model.keras_model.get_layer(name).weights, arrays):
            np.testing.assert_array_equal(np.asarray(w), expected)
    np.testing.assert_array_equal(np.asarray(model.keras_model.get_layer("fpn_c5p5").weights[0]),
                                  head_before)

    deeper = type("R101", (TinyConfig,), {"BACKBONE": "resnet101"})()
    model101 = MaskRCNN("inference", deeper, str(tmp_path))
    with pytest.raises(ValueError, match="resnet50.*BACKBONE is 'resnet101'"):
        model101.load_weights(path, by_name=True)


def test_download_failure_is_clear(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ConnectionError, match="resnet101_weights.*put it at"):
        imagenet.get_imagenet_weights("resnet101", cache_dir=str(tmp_path))
