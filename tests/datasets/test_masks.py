"""Tests of mrcnn/datasets/masks.py: binary-mask folders and instance-id PNGs."""
import os

import numpy as np
import pytest

from mrcnn.datasets import (InstancePngDataset, MalformedAnnotationError,
                            MalformedAnnotationWarning, MaskFolderDataset)
from mrcnn.datasets import masks as masks_module
from tests.datasets.helpers import grid, write_image, write_png

# A ring touching the top-left border (a hole in the middle) and a two-part instance.
RING = grid(["###...",
             "#.#...",
             "###...",
             "......",
             "......"])
TWO_PARTS = grid(["......",
                  "....##",
                  "......",
                  "##....",
                  "##...."])


@pytest.fixture
def dsb_folder(tmp_path):
    """DSB2018 layout: img1 with a ring, a two-part instance and an empty mask; img2 none."""
    root = tmp_path / "stage1_train"
    write_image(str(root / "img1" / "images" / "img1.png"), 5, 6)
    write_png(str(root / "img1" / "masks" / "a.png"), RING)
    write_png(str(root / "img1" / "masks" / "b.png"), TWO_PARTS)
    write_png(str(root / "img1" / "masks" / "c.png"), np.zeros((5, 6), np.uint8))
    write_image(str(root / "img2" / "images" / "img2.png"), 4, 4)
    return root


def test_mask_folder_reads_dsb_layout_exactly(dsb_folder):
    dataset = MaskFolderDataset.from_folder(dsb_folder, class_name="nucleus")
    assert [info["id"] for info in dataset.image_info] == ["img1", "img2"]
    assert dataset.class_names == ["BG", "nucleus"]
    masks, class_ids = dataset.load_mask(0)
    assert masks.dtype == bool and masks.shape == (5, 6, 2)  # the empty c.png is dropped
    np.testing.assert_array_equal(masks[..., 0], RING)
    np.testing.assert_array_equal(masks[..., 1], TWO_PARTS)
    np.testing.assert_array_equal(class_ids, [1, 1])
    masks, class_ids = dataset.load_mask(1)
    assert masks.shape == (4, 4, 0) and class_ids.shape == (0,)


def test_mask_folder_is_lazy(dsb_folder, monkeypatch):
    calls = []
    real = masks_module.read_mask_png
    monkeypatch.setattr(masks_module, "read_mask_png", lambda p: calls.append(p) or real(p))
    dataset = MaskFolderDataset.from_folder(dsb_folder)
    assert calls == []
    dataset.load_mask(0)
    assert len(calls) == 3


def test_mask_folder_custom_globs_and_image_ids(tmp_path):
    write_image(str(tmp_path / "images" / "a.png"), 5, 6)
    write_image(str(tmp_path / "images" / "b.png"), 5, 6)
    write_png(str(tmp_path / "masks" / "a_0.png"), TWO_PARTS)
    write_png(str(tmp_path / "masks" / "a_1.png"), RING)
    write_png(str(tmp_path / "masks" / "b_0.png"), RING)
    dataset = MaskFolderDataset.from_folder(tmp_path, image_pattern="images/*.png",
                                            mask_pattern="masks/{stem}_*.png", image_ids=["b", "a"])
    assert [info["id"] for info in dataset.image_info] == ["b", "a"]
    masks, _ = dataset.load_mask(1)
    np.testing.assert_array_equal(masks[..., 0], TWO_PARTS)
    np.testing.assert_array_equal(masks[..., 1], RING)
    with pytest.raises(ValueError, match=r"\['zzz'\]"):
        MaskFolderDataset.from_folder(tmp_path, image_pattern="images/*.png",
                                      mask_pattern="masks/{stem}_*.png", image_ids=["zzz"])


def test_mask_folder_wrong_size_mask_is_malformed(dsb_folder):
    bad = write_png(str(dsb_folder / "img1" / "masks" / "d.png"), np.ones((3, 3), np.uint8))
    with pytest.raises(MalformedAnnotationError, match=r"d\.png \(mask 3 of image 'img1'\).*\(3, 3\)"):
        MaskFolderDataset.from_folder(dsb_folder)
    with pytest.warns(MalformedAnnotationWarning, match=os.path.basename(bad)):
        dataset = MaskFolderDataset.from_folder(dsb_folder, strict=False)
    assert dataset.load_mask(0)[0].shape == (5, 6, 2)


def test_mask_folder_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MaskFolderDataset.from_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="strict must be True or False, got 'no'"):
        MaskFolderDataset.from_folder(tmp_path, strict="no")


def test_mask_folder_on_dsb2018(shared_data):
    root = os.path.join(shared_data, "dsb2018_45", "stage1_train")
    dataset = MaskFolderDataset.from_folder(root, class_name="nucleus")
    assert dataset.num_images == 45
    info = dataset.image_info[0]
    files = sorted(os.listdir(os.path.join(root, info["id"], "masks")))
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (info["height"], info["width"], len(files))
    np.testing.assert_array_equal(class_ids, np.ones(len(files)))
    from PIL import Image
    last = np.asarray(Image.open(os.path.join(root, info["id"], "masks", files[-1]))) > 0
    np.testing.assert_array_equal(masks[..., -1], last)


# ----------------------------------------------------------------------- instance PNGs
IDS = np.array([[3, 3, 3, 0, 0, 7, 7],
                [3, 0, 3, 0, 0, 0, 0],
                [3, 3, 3, 0, 9, 0, 0],
                [0, 0, 0, 0, 0, 0, 0],
                [7, 0, 0, 0, 0, 0, 3000]], dtype=np.uint16)


@pytest.fixture
def instance_folder(tmp_path):
    write_image(str(tmp_path / "images" / "p1.jpg"), 5, 7)
    write_png(str(tmp_path / "masks" / "p1_mask.png"), IDS)
    return tmp_path


def test_instance_png_with_a_class_map(instance_folder):
    dataset = InstancePngDataset.from_folder(
        instance_folder / "images", instance_folder / "masks", mask_pattern="{stem}_mask.png",
        class_map={3: "cat", 7: "dog", 3000: "cat"})
    assert dataset.class_names == ["BG", "cat", "dog"]
    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 2, 1])   # values 3, 7, 3000; 9 unmapped
    np.testing.assert_array_equal(masks[..., 0], IDS == 3)  # a ring at the border, with a hole
    np.testing.assert_array_equal(masks[..., 1], IDS == 7)  # two parts
    np.testing.assert_array_equal(masks[..., 2], IDS == 3000)  # a 16-bit value
    assert masks[..., 0].sum() == 8 and masks[..., 1].sum() == 3


def test_instance_png_one_class_and_callable_map(instance_folder):
    dataset = InstancePngDataset.from_folder(instance_folder / "images",
                                             instance_folder / "masks", "{stem}_mask.png",
                                             class_names=["pedestrian"])
    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 1, 1, 1])  # values 3, 7, 9, 3000
    np.testing.assert_array_equal(masks[..., 2], IDS == 9)
    cityscapes = InstancePngDataset.from_folder(
        instance_folder / "images", instance_folder / "masks", "{stem}_mask.png",
        class_map=lambda v: {3: "car"}.get(v // 1000), class_names=["car"])
    masks, class_ids = cityscapes.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1])
    np.testing.assert_array_equal(masks[..., 0], IDS == 3000)
    with pytest.raises(ValueError, match="callable class_map needs class_names"):
        InstancePngDataset.from_folder(instance_folder / "images", instance_folder / "masks",
                                       class_map=lambda v: "x")


def test_instance_png_malformed(instance_folder):
    write_image(str(instance_folder / "images" / "p2.png"), 5, 7)   # no mask
    write_image(str(instance_folder / "images" / "p3.png"), 5, 7)
    write_png(str(instance_folder / "masks" / "p3_mask.png"), np.zeros((2, 2), np.uint8))
    args = (instance_folder / "images", instance_folder / "masks", "{stem}_mask.png")
    with pytest.raises(MalformedAnnotationError, match=r"p2\.png: no instance mask"):
        InstancePngDataset.from_folder(*args)
    with pytest.warns(MalformedAnnotationWarning) as record:
        dataset = InstancePngDataset.from_folder(*args, strict=False)
    messages = [str(w.message) for w in record]
    assert any("p2_mask.png" in m for m in messages)
    assert any("p3_mask.png" in m and "(2, 2)" in m for m in messages)
    assert [info["id"] for info in dataset.image_info] == ["p1"]
    bad_map = InstancePngDataset.from_folder(*args[:2], "{stem}_mask.png", image_pattern="p1*",
                                             class_map=lambda v: "cow", class_names=["cat"])
    with pytest.raises(MalformedAnnotationError, match="instance value 3: class map gives 'cow'"):
        bad_map.load_mask(0)


def test_instance_png_is_lazy(instance_folder, monkeypatch):
    calls = []
    real = masks_module.read_mask_png
    monkeypatch.setattr(masks_module, "read_mask_png", lambda p: calls.append(p) or real(p))
    dataset = InstancePngDataset.from_folder(instance_folder / "images",
                                             instance_folder / "masks", "{stem}_mask.png")
    assert calls == []
    dataset.load_mask(0)
    assert len(calls) == 1
