"""Round trips to COCO (dataset -> COCO JSON -> pycocotools -> the same masks) and the
``python -m mrcnn convert`` command."""
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from mrcnn.__main__ import main as mrcnn_main
from mrcnn.datasets import (CocoDataset, InstancePngDataset, LabelmeDataset, MaskFolderDataset,
                            ViaDataset, dataset_to_coco, write_coco_json)
from mrcnn.datasets.coco import mask_to_polygons
from tests.datasets.helpers import write_image
from tests.datasets.test_labelme import labelme_folder  # noqa: F401  (fixture)
from tests.datasets.test_masks import dsb_folder, instance_folder  # noqa: F401  (fixtures)
from tests.datasets.test_via import via_file  # noqa: F401  (fixture)


def assert_round_trip(dataset, path, image_ids=None):
    """Write ``dataset`` (its ``image_ids`` or all) to COCO at ``path``, read it with
    pycocotools and CocoDataset, and check both give back load_mask's masks and classes
    exactly. Returns the number of annotations."""
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    data = write_coco_json(dataset, path, image_ids=image_ids)
    coco = COCO(str(path))
    assert [c["name"] for c in data["categories"]] == dataset.class_names[1:]
    reread = CocoDataset()
    reread.load_coco(path, data["info"]["image_root"])
    reread.prepare()
    assert reread.num_images == len(image_ids)
    total = 0
    for new_id, (image_id, image) in enumerate(zip(image_ids, data["images"])):
        masks, class_ids = dataset.load_mask(image_id)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert len(anns) == masks.shape[-1]
        for k, ann in enumerate(anns):
            # np.array_equal: assert_array_equal is slow on photo-sized masks.
            assert np.array_equal(coco.annToMask(ann).astype(bool), masks[..., k]), (image_id, k)
            assert ann["category_id"] == abs(class_ids[k])
            assert ann["iscrowd"] == int(class_ids[k] < 0)
        again, again_ids = reread.load_mask(new_id)
        assert np.array_equal(again, masks), image_id
        np.testing.assert_array_equal(again_ids, class_ids)
        assert os.path.samefile(reread.image_info[new_id]["path"],
                                dataset.image_info[image_id]["path"])
        total += len(anns)
    return total


def test_round_trip_labelme(labelme_folder, tmp_path):  # noqa: F811
    dataset = LabelmeDataset.from_folder(labelme_folder)
    assert assert_round_trip(dataset, tmp_path / "labelme.json") == 4


def test_round_trip_via(via_file, tmp_path):  # noqa: F811
    with pytest.warns(UserWarning):
        dataset = ViaDataset.from_file(via_file, class_attribute="type", strict=False)
    assert assert_round_trip(dataset, tmp_path / "via.json") == 3


def test_round_trip_instance_png(instance_folder, tmp_path):  # noqa: F811
    dataset = InstancePngDataset.from_folder(instance_folder / "images", instance_folder / "masks",
                                             "{stem}_mask.png", class_map={3: "a", 7: "b", 9: "a"})
    assert assert_round_trip(dataset, tmp_path / "ids.json") == 3


def test_round_trip_mask_folder(dsb_folder, tmp_path):  # noqa: F811
    dataset = MaskFolderDataset.from_folder(dsb_folder, class_name="nucleus")
    assert assert_round_trip(dataset, tmp_path / "masks.json") == 2


def test_round_trip_coco_with_crowd(tmp_path):
    write_image(str(tmp_path / "im.png"), 6, 8)
    crowd = np.zeros((6, 8), np.uint8)
    crowd[4:, :] = 1
    counts = []                                   # uncompressed, column-major RLE
    flat = crowd.ravel(order="F")
    run_value, run = 0, 0
    for v in flat:
        if v != run_value:
            counts.append(run)
            run_value, run = v, 0
        run += 1
    counts.append(run)
    source = {"images": [{"id": 5, "file_name": "im.png", "height": 6, "width": 8}],
              "categories": [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}],
              "annotations": [
                  {"id": 1, "image_id": 5, "category_id": 9, "iscrowd": 0,
                   "segmentation": [[0, 0, 3, 0, 3, 2, 0, 2], [5, 0, 7, 0, 7, 2]]},
                  {"id": 2, "image_id": 5, "category_id": 3, "iscrowd": 1,
                   "segmentation": {"size": [6, 8], "counts": counts}}]}
    (tmp_path / "in.json").write_text(json.dumps(source))
    dataset = CocoDataset()
    dataset.load_coco(tmp_path / "in.json", tmp_path)
    dataset.prepare()
    np.testing.assert_array_equal(dataset.load_mask(0)[1], [2, -1])
    assert assert_round_trip(dataset, tmp_path / "out.json") == 2


def test_round_trip_balloon(shared_data, tmp_path):
    path = os.path.join(shared_data, "balloon", "val", "via_region_data.json")
    dataset = ViaDataset.from_file(path, class_name="balloon")
    # Three photos (14 balloons) keep the test fast; all 13 give 50 annotations.
    expected = sum(len(dataset.image_info[i]["polygons"]) for i in range(3))
    assert assert_round_trip(dataset, tmp_path / "balloon_val.json", image_ids=[0, 1, 2]) == expected


def test_polygons_are_traced_outlines():
    mask = np.zeros((20, 20), bool)
    mask[3:15, 4:12] = True
    mask[7:9, 7:9] = False                        # a hole: polygons cannot keep it
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2                     # the outline and the hole's outline
    outer = np.asarray(polygons[0]).reshape(-1, 2)
    np.testing.assert_allclose(outer.min(axis=0), [3.5, 2.5])   # x, y half a pixel outside
    np.testing.assert_allclose(outer.max(axis=0), [11.5, 14.5])


def test_dataset_to_coco_polygon_mode(dsb_folder):  # noqa: F811
    dataset = MaskFolderDataset.from_folder(dsb_folder)
    data = dataset_to_coco(dataset, segmentation="polygon")
    assert all(isinstance(a["segmentation"], list) for a in data["annotations"])
    with pytest.raises(ValueError, match="segmentation must be one of .*got 'mesh'"):
        dataset_to_coco(dataset, segmentation="mesh")


def test_convert_command(labelme_folder, instance_folder, tmp_path, capsys):  # noqa: F811
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "out.json"
    assert mrcnn_main(["convert", "--from", "labelme", str(labelme_folder / "one.json"),
                       "--to", "coco", str(out)]) == 0
    assert "Wrote" in capsys.readouterr().out
    coco = COCO(str(out))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["cat", "dog"]
    assert len(coco.getAnnIds()) == 3
    assert mrcnn_main(["convert", "--from", "instance-png", str(instance_folder / "images"),
                       "--masks", str(instance_folder / "masks"), "--mask-pattern",
                       "{stem}_mask.png", "--class-map", "3=a,7=b", "--to", "coco",
                       str(out), "--segmentation", "polygon"]) == 0
    assert len(COCO(str(out)).getAnnIds()) == 2
    assert mrcnn_main(["convert", "--from", "instance-png", str(instance_folder / "images"),
                       "--to", "coco", str(out)]) == 2
    assert "needs --masks DIR" in capsys.readouterr().err
    assert mrcnn_main(["convert", "--from", "mask-folder", str(tmp_path / "nowhere"),
                       "--to", "coco", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert mrcnn_main(["convert", "--from", "labelme", str(labelme_folder), "--class-attribute",
                       "x", "--to", "coco", str(out)]) == 2
    assert "--class-attribute do(es) not apply to --from labelme" in capsys.readouterr().err
    (labelme_folder / "bad.json").write_text(json.dumps({"shapes": "no"}))
    assert mrcnn_main(["convert", "--from", "labelme", str(labelme_folder),
                       "--to", "coco", str(out)]) == 2
    with pytest.warns(UserWarning, match="bad.json"):
        assert mrcnn_main(["convert", "--from", "labelme", str(labelme_folder),
                           "--skip-malformed", "--to", "coco", str(out)]) == 0
