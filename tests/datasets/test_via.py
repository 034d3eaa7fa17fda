"""Tests of mrcnn/datasets/via.py: VIA 1.x / 2.x files, classes from region attributes."""
import json
import os

import numpy as np
import pytest

from mrcnn.datasets import MalformedAnnotationError, MalformedAnnotationWarning, ViaDataset
from mrcnn.datasets import via as via_module
from tests.datasets.helpers import write_image


def _region(shape, **attributes):
    return {"shape_attributes": shape, "region_attributes": attributes}


TRIANGLE = {"name": "polygon", "all_points_x": [0, 4, 0], "all_points_y": [0, 0, 4]}
RECT = {"name": "rect", "x": 5, "y": 3, "width": 3, "height": 2}   # touches the right border


@pytest.fixture
def via_file(tmp_path):
    write_image(str(tmp_path / "a.png"), 6, 8)
    write_image(str(tmp_path / "b.png"), 6, 8)
    project = {"_via_img_metadata": {
        "a.png1": {"filename": "a.png", "regions": [
            _region(TRIANGLE, type="cat"),
            _region(RECT, type={"dog": True, "cat": False}),      # a VIA checkbox
        ]},
        "b.png1": {"filename": "b.png", "regions": [
            _region({"name": "point", "cx": 1, "cy": 1}, type="cat"),   # malformed: index 0
            _region({"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]},
                    type="cat"),                                        # malformed: index 1
            _region(RECT),                                              # malformed: no class
            _region(RECT, type="dog"),
        ]},
    }}
    path = tmp_path / "project.json"
    path.write_text(json.dumps(project))
    return path


def test_via_classes_from_an_attribute_and_exact_masks(via_file):
    with pytest.warns(MalformedAnnotationWarning) as record:
        dataset = ViaDataset.from_file(via_file, class_attribute="type", strict=False)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 3
    assert messages[0].startswith(f"{via_file}, image 'b.png', region 0: unsupported VIA shape 'point'")
    assert "region 1: polygon needs >= 3 points, got 2" in messages[1]
    assert "region 2: no class in region attribute 'type'" in messages[2]
    assert dataset.class_names == ["BG", "cat", "dog"]
    masks, class_ids = dataset.load_mask(0)
    triangle = np.zeros((6, 8), bool)
    for y in range(5):
        triangle[y, :5 - y] = True                 # vertices (0,0) (4,0) (0,4), boundary in
    rect = np.zeros((6, 8), bool)
    rect[3:5, 5:8] = True
    np.testing.assert_array_equal(masks[..., 0], triangle)
    np.testing.assert_array_equal(masks[..., 1], rect)
    np.testing.assert_array_equal(class_ids, [1, 2])
    masks, class_ids = dataset.load_mask(1)
    np.testing.assert_array_equal(masks[..., 0], rect)
    np.testing.assert_array_equal(class_ids, [2])


def test_via_strict_names_the_first_malformed_region(via_file):
    with pytest.raises(MalformedAnnotationError,
                       match=r"image 'b\.png', region 0: unsupported VIA shape 'point'"):
        ViaDataset.from_file(via_file, class_attribute="type")
    with pytest.raises(MalformedAnnotationError, match=r"class 'dog' is not one of class_names"):
        ViaDataset.from_file(via_file, class_attribute="type", class_names=["cat"], strict=True)


def test_via_is_lazy(via_file, monkeypatch):
    calls = []
    monkeypatch.setattr(via_module, "shape_to_mask", lambda *a: calls.append(a) or np.ones(a[1:], bool))
    with pytest.warns(MalformedAnnotationWarning):
        dataset = ViaDataset.from_file(via_file, class_name="thing", strict=False)
    assert calls == [] and dataset.class_names == ["BG", "thing"]
    dataset.load_mask(1)
    assert len(calls) == 2                          # the two valid regions of b.png


def test_via_on_the_balloon_set(shared_data):
    path = os.path.join(shared_data, "balloon", "val", "via_region_data.json")
    dataset = ViaDataset.from_file(path, class_name="balloon")
    assert dataset.num_images == 13 and dataset.class_names == ["BG", "balloon"]
    with open(path) as f:
        first = next(iter(json.load(f).values()))
    regions = first["regions"]
    regions = [regions[k] for k in sorted(regions, key=int)] if isinstance(regions, dict) else regions
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape[-1] == len(regions)
    shape = regions[0]["shape_attributes"]
    y, x = int(round(np.mean(shape["all_points_y"]))), int(round(np.mean(shape["all_points_x"])))
    import skimage.draw
    rr, cc = skimage.draw.polygon(shape["all_points_y"], shape["all_points_x"],
                                  shape=masks.shape[:2])
    expected = np.zeros(masks.shape[:2], bool)
    expected[rr, cc] = True
    np.testing.assert_array_equal(masks[..., 0], expected)
    assert masks[y, x, 0]
