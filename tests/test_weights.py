"""HDF5 weight I/O in the matterport / Keras-2 layout."""

import h5py
import keras
import numpy as np
import pytest

import mrcnn.weights as weights_mod
from mrcnn.backbone import build_fpn
from mrcnn.heads import build_rpn_model, fpn_classifier_head, fpn_mask_head
from mrcnn.weights import load_weights_h5, save_weights_h5, weight_names
from tests.h5_layout import layout_path_or_skip, parse_layout, weighted, write_reference_h5

CLASS_COUNT_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]


def build_fpn_heads_model(num_classes=81, norm="batch"):
    """FPN + RPN + heads on C2..C5 inputs: the matterport layers from fpn_c5p5 on."""
    c = [keras.Input((s, s, ch), name=f"c{k}")
         for k, s, ch in ((2, 8, 256), (3, 4, 512), (4, 2, 1024), (5, 1, 2048))]
    pyramid = build_fpn(*c, 256)
    rpn = build_rpn_model(1, 3, 256)
    rpn_out = [t for p in pyramid for t in rpn(p)]
    pc = keras.Input((2, 7, 7, 256), name="pooled_classifier")
    pm = keras.Input((2, 14, 14, 256), name="pooled_mask")
    head = list(fpn_classifier_head(pc, num_classes, False, 1024, norm=norm))
    mask = fpn_mask_head(pm, num_classes, False, norm=norm)
    return keras.Model(c + [pc, pm], pyramid + rpn_out + head + [mask])


def build_heads_model(num_classes, norm="batch"):
    pc = keras.Input((2, 7, 7, 256), name="pooled_classifier")
    pm = keras.Input((2, 14, 14, 256), name="pooled_mask")
    head = list(fpn_classifier_head(pc, num_classes, False, 1024, norm=norm))
    return keras.Model([pc, pm], head + [fpn_mask_head(pm, num_classes, False, norm=norm)])


def weighted_names(model):
    return [layer.name for layer in model.layers if layer.weights]


def snapshot(model):
    return {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.layers if layer.weights}


def scramble(model, seed):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.standard_normal(tuple(w.shape)).astype(np.float32))


def assert_layers_equal(model, expected, names):
    for name in names:
        got = model.get_layer(name).weights
        assert len(got) == len(expected[name]), name
        for var, value in zip(got, expected[name]):
            np.testing.assert_array_equal(var.numpy(), value, err_msg=f"{name}/{var.name}")


@pytest.fixture(scope="module")
def model81():
    return build_fpn_heads_model(81)


@pytest.fixture(scope="module")
def layout():
    return parse_layout(layout_path_or_skip())


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory, layout, model81):
    """Reference-layout file with the test model's layers plus conv1 and bn_conv1."""
    path = str(tmp_path_factory.mktemp("ref") / "mask_rcnn_reference.h5")
    keep = set(layer.name for layer in model81.layers) | {"conv1", "bn_conv1"}
    values = write_reference_h5(path, layout, np.random.default_rng(7), layers=keep)
    return path, values


# ---------------------------------------------------------------- save / round trip

def test_save_load_round_trip(tmp_path, model81):
    scramble(model81, 1)
    saved = snapshot(model81)
    path = tmp_path / "mask_rcnn_test_0001.h5"
    save_weights_h5(model81, path)
    scramble(model81, 2)
    report = load_weights_h5(model81, str(path))
    assert report["loaded"] == weighted_names(model81)
    assert report["skipped_in_file"] == report["missing_in_file"] == report["excluded"] == []
    assert_layers_equal(model81, saved, saved)
    assert [p.name for p in tmp_path.iterdir()] == ["mask_rcnn_test_0001.h5"]  # no temp file left


def test_saved_file_has_legacy_layout(tmp_path, model81, layout):
    path = tmp_path / "w.h5"
    save_weights_h5(model81, path)
    expected = weighted(layout)
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == [layer.name for layer in model81.layers]
        assert f.attrs["backend"] == b"tensorflow"
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]] == [
            "rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0", "rpn_class_raw/kernel:0",
            "rpn_class_raw/bias:0", "rpn_bbox_pred/kernel:0", "rpn_bbox_pred/bias:0"]
        assert f["rpn_model/rpn_conv_shared/kernel:0"].shape == (3, 3, 256, 512)
        assert [n.decode() for n in f["mrcnn_mask_bn1"].attrs["weight_names"]] == [
            "mrcnn_mask_bn1/gamma:0", "mrcnn_mask_bn1/beta:0",
            "mrcnn_mask_bn1/moving_mean:0", "mrcnn_mask_bn1/moving_variance:0"]
        assert len(f["fpn_p6"].attrs["weight_names"]) == 0
        for name in weighted_names(model81):
            wnames = [n.decode() for n in f[name].attrs["weight_names"]]
            assert [(w, f[name][w].shape) for w in wnames] == expected[name], name


def test_failed_save_leaves_previous_file_untouched(tmp_path, model81, monkeypatch):
    path = tmp_path / "w.h5"
    path.write_bytes(b"previous checkpoint")
    calls = []
    real = weights_mod.weight_names

    def failing(layer):
        calls.append(layer.name)
        if len(calls) == 5:
            raise RuntimeError("disk full (simulated)")
        return real(layer)

    monkeypatch.setattr(weights_mod, "weight_names", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        save_weights_h5(model81, path)
    assert path.read_bytes() == b"previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["w.h5"]


def test_save_into_missing_folder_raises(tmp_path, model81):
    with pytest.raises(FileNotFoundError, match="nope"):
        save_weights_h5(model81, tmp_path / "nope" / "w.h5")


# ---------------------------------------------------------------- reference layout

def test_load_reference_by_name(model81, reference_file):
    path, values = reference_file
    report = load_weights_h5(model81, path, by_name=True)
    assert sorted(report["loaded"]) == sorted(weighted_names(model81))
    assert report["skipped_in_file"] == ["conv1", "bn_conv1"]  # file order
    assert report["missing_in_file"] == [] and report["excluded"] == []
    assert_layers_equal(model81, values, weighted_names(model81))


def test_load_reference_by_name_with_exclude(model81, reference_file):
    path, values = reference_file
    scramble(model81, 3)
    before = snapshot(model81)
    report = load_weights_h5(model81, path, by_name=True, exclude=CLASS_COUNT_LAYERS)
    assert report["excluded"] == CLASS_COUNT_LAYERS
    assert not set(CLASS_COUNT_LAYERS) & set(report["loaded"])
    assert_layers_equal(model81, before, CLASS_COUNT_LAYERS)
    others = [n for n in weighted_names(model81) if n not in CLASS_COUNT_LAYERS]
    assert sorted(report["loaded"]) == sorted(others)
    assert_layers_equal(model81, values, others)


def test_strict_load_rejects_extra_and_missing_layers(model81, reference_file, tmp_path, layout):
    path, _ = reference_file
    with pytest.raises(ValueError, match=r"file layers missing in the model: \['conv1', 'bn_conv1'\]"):
        load_weights_h5(model81, path)
    partial = tmp_path / "partial.h5"
    keep = set(weighted_names(model81)) - {"fpn_p3", "mrcnn_mask_conv2"}
    write_reference_h5(str(partial), layout, np.random.default_rng(0), layers=keep)
    with pytest.raises(ValueError, match=r"model layers missing in the file: \[.*'fpn_p3'") as info:
        load_weights_h5(model81, partial)
    assert "'mrcnn_mask_conv2'" in str(info.value)
    report = load_weights_h5(model81, partial, by_name=True)
    assert sorted(report["missing_in_file"]) == ["fpn_p3", "mrcnn_mask_conv2"]


def test_strict_load_of_exact_file_with_str_attrs(tmp_path, layout):
    model = build_heads_model(81)
    path = tmp_path / "heads.h5"
    values = write_reference_h5(str(path), layout, np.random.default_rng(5), layers=set(weighted_names(model)),
                                str_attrs=True)
    report = load_weights_h5(model, path, by_name=False)
    assert sorted(report["loaded"]) == sorted(weighted_names(model))
    assert_layers_equal(model, values, weighted_names(model))


def test_shape_mismatch_names_layer_and_both_shapes(reference_file):
    path, values = reference_file
    model = build_heads_model(4)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"3 layer\(s\) differ.*mrcnn_class_logits: \S*kernel:0 "
                                         r"\(1024, 81\) in the file, \(1024, 4\) in the model") as err:
        load_weights_h5(model, path, by_name=True)
    suggested = str(err.value).split("exclude=")[1]
    assert all(f"'{name}'" in suggested for name in CLASS_COUNT_LAYERS)
    assert_layers_equal(model, before, weighted_names(model))  # nothing assigned on error
    report = load_weights_h5(model, path, by_name=True, exclude=CLASS_COUNT_LAYERS)
    loaded = [n for n in weighted_names(model) if n not in CLASS_COUNT_LAYERS]
    assert sorted(report["loaded"]) == sorted(loaded)
    assert_layers_equal(model, values, loaded)
    assert_layers_equal(model, before, CLASS_COUNT_LAYERS)


def test_weight_count_mismatch_is_reported(reference_file):
    path, _ = reference_file
    model = build_heads_model(81, norm="group")
    with pytest.raises(ValueError, match=r"'mrcnn_class_bn1'.*holds 4 weights.*has 2"):
        load_weights_h5(model, path, by_name=True)


# ---------------------------------------------------------------- other files

def test_missing_file_raises(tmp_path, model81):
    missing = tmp_path / "absent.h5"
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        load_weights_h5(model81, missing)


def test_not_hdf5_raises(tmp_path, model81):
    path = tmp_path / "weights.h5"
    path.write_text("definitely not hdf5")
    with pytest.raises(ValueError, match="not an HDF5.*weights.h5"):
        load_weights_h5(model81, path)


def test_hdf5_of_unknown_structure_raises(tmp_path, model81):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="neither the legacy"):
        load_weights_h5(model81, path)


def test_keras3_native_file_loads_whole(tmp_path):
    model = build_fpn_heads_model(81)
    scramble(model, 1)
    saved = snapshot(model)
    path = str(tmp_path / "heads.weights.h5")
    model.save_weights(path)  # Keras 3 native layout, nested rpn_model included
    scramble(model, 2)
    report = load_weights_h5(model, path)
    assert sorted(report["loaded"]) == sorted(weighted_names(model))
    assert_layers_equal(model, saved, weighted_names(model))


def test_keras3_native_file_by_name_and_exclude(tmp_path, model81):
    scramble(model81, 3)
    saved = snapshot(model81)
    path = str(tmp_path / "heads81.weights.h5")
    model81.save_weights(path)
    other = build_heads_model(4)  # other class count, no FPN / RPN layers
    before = snapshot(other)
    with pytest.raises(ValueError, match=r"3 layer\(s\) differ.*mrcnn_class_logits: "
                                         r"\S+ \(1024, 81\) in the file, \(1024, 4\) in the model"):
        load_weights_h5(other, path, by_name=True)
    assert_layers_equal(other, before, weighted_names(other))  # nothing assigned on error
    with pytest.raises(ValueError, match="by_name=False"):
        load_weights_h5(other, path, exclude=CLASS_COUNT_LAYERS)
    report = load_weights_h5(other, path, by_name=True, exclude=CLASS_COUNT_LAYERS)
    loaded = [n for n in weighted_names(other) if n not in CLASS_COUNT_LAYERS]
    assert sorted(report["loaded"]) == sorted(loaded)
    assert sorted(report["excluded"]) == sorted(CLASS_COUNT_LAYERS)
    assert "rpn_model" in report["skipped_in_file"] and "fpn_c5p5" in report["skipped_in_file"]
    assert_layers_equal(other, saved, loaded)
    assert_layers_equal(other, before, CLASS_COUNT_LAYERS)


def test_exclude_must_be_names(tmp_path, model81):
    with pytest.raises(TypeError, match="exclude"):
        load_weights_h5(model81, tmp_path / "x.h5", exclude=[1, 2])


def test_long_attribute_lists_are_chunked(tmp_path):
    names = [f"layer_with_a_long_name_{i:05d}" for i in range(4000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        weights_mod._write_str_list(f.attrs, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs and "layer_names1" in f.attrs
        assert weights_mod._read_str_list(f.attrs, "layer_names") == names


def test_weight_names_of_nested_model():
    rpn = build_rpn_model(1, 2, 8)
    assert weight_names(rpn)[::2] == ["rpn_conv_shared/kernel:0", "rpn_class_raw/kernel:0", "rpn_bbox_pred/kernel:0"]


@pytest.mark.slow
def test_maskrcnn_loads_keras3_weights_into_other_class_count(tmp_path):
    """keras_model.save_weights of a whole model -> MaskRCNN.load_weights(by_name, exclude)."""
    from mrcnn.model import MaskRCNN
    from tests.conftest import TinyConfig

    class Three(TinyConfig):
        NUM_CLASSES = 3

    source = MaskRCNN("inference", TinyConfig(), str(tmp_path))
    scramble(source.keras_model, 5)
    path = str(tmp_path / "tiny.weights.h5")
    source.keras_model.save_weights(path)
    target = MaskRCNN("inference", Three(), str(tmp_path))
    with pytest.raises(ValueError, match=r"3 layer\(s\) differ in shape.*exclude="):
        target.load_weights(path, by_name=True)
    report = target.load_weights(path, by_name=True, exclude=CLASS_COUNT_LAYERS)
    assert report["missing_in_file"] == [] and sorted(report["excluded"]) == sorted(CLASS_COUNT_LAYERS)
    for layer in target.keras_model.layers:
        if layer.weights and layer.name not in CLASS_COUNT_LAYERS:
            for got, want in zip(layer.weights, source.keras_model.get_layer(layer.name).weights):
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=layer.name)
