"""Tests of mrcnn.utils.Dataset, image reading, mask validation and the weight download."""
import logging
import os
import urllib.error

import numpy as np
import pytest
import PIL.Image

from mrcnn import utils


def _two_source_dataset():
    ds = utils.Dataset()
    ds.add_class("shapes", 1, "square")
    ds.add_class("shapes", 2, "circle")
    ds.add_class("coco", 1, "person,human")
    ds.add_class("shapes", 1, "duplicate ignored")
    ds.add_image("shapes", image_id="a", path="/nowhere/a.png", width=10)
    ds.add_image("coco", image_id=42, path="/nowhere/42.jpg")
    ds.prepare()
    return ds


def test_prepare_builds_ids_and_maps():
    ds = _two_source_dataset()
    assert ds.num_classes == 4 and ds.num_images == 2
    assert ds.class_names == ["BG", "square", "circle", "person"]
    np.testing.assert_array_equal(ds.image_ids, [0, 1])
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3])
    assert ds.class_info[0] == {"source": "", "id": 0, "name": "BG"}
    assert ds.sources == ["", "coco", "shapes"]
    assert ds.source_class_ids == {"": [0], "coco": [0, 3], "shapes": [0, 1, 2]}
    assert ds.class_from_source_map == {".0": 0, "shapes.1": 1, "shapes.2": 2, "coco.1": 3}
    assert ds.image_from_source_map == {"shapes.a": 0, "coco.42": 1}
    assert ds.map_source_class_id("coco.1") == 3
    assert ds.get_source_class_id(2, "shapes") == 2
    assert ds.get_source_class_id(3, "coco") == 1
    assert ds.source_image_link(1) == "/nowhere/42.jpg"
    assert ds.image_info[0]["width"] == 10
    assert ds.image_reference(0) == ""


def test_lookup_errors_name_the_value():
    ds = _two_source_dataset()
    with pytest.raises(KeyError, match="coco.99"):
        ds.map_source_class_id("coco.99")
    with pytest.raises(ValueError, match="'coco'.*'shapes'"):
        ds.get_source_class_id(3, "shapes")


def test_prepare_empty_dataset_raises():
    ds = utils.Dataset()
    ds.add_class("shapes", 1, "square")
    with pytest.raises(ValueError, match="dataset is empty.*0 images"):
        ds.prepare()


@pytest.mark.parametrize("args, bad", [
    (("shapes", -1, "square"), "-1"),
    (("shapes", 1, 7), "7"),
    (("shapes", 1.5, "square"), "1.5"),
    (("sha.pes", 1, "square"), "sha.pes"),
])
def test_add_class_rejects_bad_input(args, bad):
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        utils.Dataset().add_class(*args)


def test_base_load_mask_warns_and_returns_empty(caplog):
    ds = _two_source_dataset()
    with caplog.at_level(logging.WARNING, logger="mrcnn.utils"):
        masks, class_ids = ds.load_mask(1)
    assert "image 1" in caplog.text
    assert masks.shape == (0, 0, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32


# ----------------------------------------------------------------------------- images
@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 255, (6, 5), dtype=np.uint8)
    rgba = rng.integers(0, 255, (4, 7, 4), dtype=np.uint8)
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # flat colour survives JPEG almost exactly
    paths = {"gray": tmp_path / "gray.png", "rgba": tmp_path / "rgba.png",
             "rgb": tmp_path / "rgb.jpg", "corrupt": tmp_path / "corrupt.png"}
    PIL.Image.fromarray(gray).save(paths["gray"])
    PIL.Image.fromarray(rgba).save(paths["rgba"])
    PIL.Image.fromarray(rgb).save(paths["rgb"], quality=95)
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = utils.Dataset()
    ds.add_class("files", 1, "thing")
    for name in ("gray", "rgba", "rgb", "corrupt"):
        ds.add_image("files", image_id=name, path=str(paths[name]))
    ds.add_image("files", image_id="missing", path=str(tmp_path / "missing.png"))
    ds.prepare()
    return ds, {"gray": gray, "rgba": rgba, "rgb": rgb}, paths


def test_load_image_gray_rgba_jpeg(image_files):
    ds, arrays, _ = image_files
    gray = ds.load_image(0)
    assert gray.shape == (6, 5, 3) and gray.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(gray[..., c], arrays["gray"])
    rgba = ds.load_image(1)
    assert rgba.shape == (4, 7, 3) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba, arrays["rgba"][..., :3])
    rgb = ds.load_image(2)
    assert rgb.shape == (16, 24, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - arrays["rgb"]).max() <= 3


def test_load_image_missing_and_corrupt(image_files):
    ds, _, paths = image_files
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ds.load_image(4)
    with pytest.raises(ValueError, match="corrupt.png"):
        ds.load_image(3)


# ----------------------------------------------------------------------------- masks
def test_validate_instance_masks_accepts_and_converts():
    mask = np.zeros((5, 6, 2), dtype=np.uint8)
    mask[1:3, 1:3, 0] = 255
    out_mask, out_ids = utils.validate_instance_masks((5, 6, 3), mask, [1.0, 3.0])
    assert out_mask.dtype == bool and out_mask.sum() == 4
    assert out_ids.dtype == np.int32
    np.testing.assert_array_equal(out_ids, [1, 3])
    empty_mask, empty_ids = utils.validate_instance_masks((5, 6, 3), np.zeros((5, 6, 0)), [])
    assert empty_mask.shape == (5, 6, 0) and empty_ids.shape == (0,)


@pytest.mark.parametrize("mask_shape, ids, pattern", [
    ((5, 7, 2), [1, 2], r"\(5, 6\).*\(5, 7, 2\)"),
    ((5, 6), [1], r"\(5, 6\)"),
    ((5, 6, 2), [1, 2, 3], r"\(3,\).*2 instances"),
    ((5, 6, 2), [1.5, 2], r"integers.*1\.5"),
])
def test_validate_instance_masks_errors(mask_shape, ids, pattern):
    with pytest.raises(ValueError, match=pattern):
        utils.validate_instance_masks((5, 6, 3), np.zeros(mask_shape, dtype=bool), ids)


# ----------------------------------------------------------------------------- download
def test_download_without_network_file_url(tmp_path):
    target = tmp_path / "sub" / "mask_rcnn_coco.h5"
    url = (tmp_path / "no_such_file.h5").as_uri()
    with pytest.raises(ConnectionError) as info:
        utils.download_trained_weights(str(target), verbose=0, url=url)
    assert url in str(info.value) and str(target) in str(info.value)
    assert os.listdir(tmp_path / "sub") == []  # no partial or temporary file left


def test_download_urlopen_error_default_url(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(utils.urllib.request, "urlopen", offline)
    target = tmp_path / "mask_rcnn_coco.h5"
    with pytest.raises(ConnectionError, match="releases/download/v2.0/mask_rcnn_coco.h5"):
        utils.download_trained_weights(target, verbose=0)
    assert os.listdir(tmp_path) == []


def test_download_from_local_file_url(tmp_path):
    source = tmp_path / "release.h5"
    payload = bytes(range(256)) * 5000  # > one 1 MiB read chunk
    source.write_bytes(payload)
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"
    result = utils.download_trained_weights(str(target), verbose=1, url=source.as_uri())
    assert result == str(target)
    assert target.read_bytes() == payload
    assert os.listdir(target.parent) == ["mask_rcnn_coco.h5"]


def test_coco_model_url_is_the_matterport_release():
    assert utils.COCO_MODEL_URL == (
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5")
