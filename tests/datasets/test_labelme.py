"""Tests of mrcnn/datasets/labelme.py: shapes, group ids, embedded images, malformed entries."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from mrcnn.datasets import LabelmeDataset, MalformedAnnotationError, MalformedAnnotationWarning
from mrcnn.datasets import labelme as labelme_module
from tests.datasets.helpers import grid, write_image

H, W = 7, 8
CIRCLE = grid(["........",
               "..###...",
               ".#####..",
               ".#####..",
               ".#####..",
               "..###...",
               "........"])
SQUARE = grid(["........",
               ".####...",
               ".####...",
               ".####...",
               "........",
               "........",
               "........"])
# A triangle sticking out of the left border, and a rectangle touching the right border.
TRIANGLE = grid(["###.....",
                 "###.....",
                 "..#.....",
                 "........",
                 "........",
                 "........",
                 "........"])
RECTANGLE = grid([".....###",
                  ".....###",
                  ".....###",
                  "........",
                  "........",
                  "........",
                  "........"])
RING = grid(["###",
             "#.#",
             "###"])


def _png64(mask):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, np.uint8) * 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _shape(label, points, kind="polygon", group_id=None, **extra):
    return dict({"label": label, "points": points, "group_id": group_id, "shape_type": kind,
                 "flags": {}, "description": ""}, **extra)


def _labelme(image_path, shapes, **extra):
    return dict({"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image_path,
                 "imageData": None, "imageHeight": H, "imageWidth": W}, **extra)


@pytest.fixture
def labelme_folder(tmp_path):
    write_image(str(tmp_path / "one.png"), H, W)
    shapes = [
        _shape("dog", [[3, 3], [3, 5]], "circle"),
        _shape("cat", [[1, 1], [4, 1], [4, 3], [1, 3]], group_id=1),     # two parts of a cat
        _shape("cat", [[-3, 0], [2, 0], [2, 2]]),                        # ... not grouped
        _shape("cat", [[7, 2], [5, 0]], "rectangle", group_id=1),        # second part
        _shape("nose", [[3, 3]], "point"),                              # not an instance
    ]
    (tmp_path / "one.json").write_text(json.dumps(_labelme("one.png", shapes)))
    two_image = np.full((4, 5, 3), 7, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(two_image).save(buffer, format="PNG")
    holed = _shape("cat", [[1, 0], [3, 2]], "mask", mask=_png64(RING))
    embedded = _labelme("gone/two.jpg", [holed], imageHeight=4, imageWidth=5,
                        imageData=base64.b64encode(buffer.getvalue()).decode("ascii"))
    (tmp_path / "two.json").write_text(json.dumps(embedded))
    return tmp_path


def test_labelme_shapes_groups_and_borders(labelme_folder):
    dataset = LabelmeDataset.from_folder(labelme_folder)
    assert dataset.class_names == ["BG", "cat", "dog"]
    assert [info["id"] for info in dataset.image_info] == ["one", "two"]
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (H, W, 3)
    np.testing.assert_array_equal(class_ids, [2, 1, 1])   # file order of first parts
    np.testing.assert_array_equal(masks[..., 0], CIRCLE)
    np.testing.assert_array_equal(masks[..., 1], SQUARE | RECTANGLE)   # group 1 merged
    np.testing.assert_array_equal(masks[..., 2], TRIANGLE)


def test_labelme_mask_shape_with_a_hole_and_embedded_image(labelme_folder):
    dataset = LabelmeDataset.from_folder(labelme_folder, class_names=["cat", "dog"])
    masks, class_ids = dataset.load_mask(1)
    expected = np.zeros((4, 5), bool)
    expected[0:3, 1:4] = RING
    np.testing.assert_array_equal(masks[..., 0], expected)
    np.testing.assert_array_equal(class_ids, [1])
    image = dataset.load_image(1)
    assert image.shape == (4, 5, 3) and (image == 7).all()


def test_labelme_is_lazy(labelme_folder, monkeypatch):
    calls = []
    real = labelme_module.shape_to_mask
    monkeypatch.setattr(labelme_module, "shape_to_mask",
                        lambda *a: calls.append(a) or real(*a))
    dataset = LabelmeDataset.from_folder(labelme_folder)
    assert calls == []
    dataset.load_mask(0)
    assert len(calls) == 4


def test_labelme_malformed_entries(labelme_folder):
    bad = [_shape("cat", [[0, 0], [1, 1]]),                       # 2-point polygon
           _shape("cat", [[0, 0], [1, 1], [2, 2]], "rectangle"),   # 3-point rectangle
           _shape("", [[0, 0], [3, 0], [0, 3]]),                   # no label
           _shape("cat", [[0, 0], [3, 0], [0, 3]], group_id="a"),
           _shape("cat", [[0, 0], [3, 0], [0, 3]])]                # fine
    (labelme_folder / "bad.json").write_text(json.dumps(_labelme("one.png", bad)))
    (labelme_folder / "other.json").write_text(json.dumps({"foo": 1}))
    (labelme_folder / "three.json").write_text(json.dumps(_labelme("nothing.png", [])))
    with pytest.raises(MalformedAnnotationError,
                       match=r"bad\.json, shape 0: a polygon needs at least 3 points, got 2"):
        LabelmeDataset.from_folder(labelme_folder)
    with pytest.warns(MalformedAnnotationWarning) as record:
        dataset = LabelmeDataset.from_folder(labelme_folder, strict=False)
    messages = [str(w.message) for w in record]
    assert len(messages) == 6
    assert "bad.json, shape 1: a rectangle needs 2 points, got 3" in messages[1]
    assert "bad.json, shape 2: label must be a non-empty str" in messages[2]
    assert "bad.json, shape 3: group_id must be an integer or null, got 'a'" in messages[3]
    assert "other.json: not a labelme file" in messages[4]
    assert "three.json: image 'nothing.png' not found and no imageData" in messages[5]
    assert [info["id"] for info in dataset.image_info] == ["bad", "one", "two"]
    assert dataset.load_mask(0)[0].shape == (H, W, 1)
    with pytest.raises(MalformedAnnotationError, match=r"one\.json, shape 0: label 'dog' is not"):
        LabelmeDataset.from_folder(labelme_folder / "one.json", class_names=["cat"])
