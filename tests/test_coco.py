"""Tests of mrcnn/coco.py: COCO loading, masks, results conversion and COCOeval metrics."""
import json
import logging
import os

import numpy as np
import pytest
import skimage.io
from pycocotools import mask as mask_utils

from mrcnn import utils
from mrcnn.coco import (COCO_METRIC_NAMES, CocoDataset, ann_to_mask, ann_to_rle,
                        build_coco_results, detections_to_coco_results, evaluate_coco,
                        read_coco_json, write_results_json)

LOGGER = "mrcnn.coco"
# pycocotools 2.0.x decode() trips NumPy 2's __array__(copy=...) deprecation; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
# pycocotools computes precision as tp / (tp + fp + eps), so a perfect score can read
# 0.9999999999999999: "exact" below means within 1e-12.


# --------------------------------------------------------------------------- helpers
def rect_polygon(x1, y1, x2, y2):
    """Rectangle polygon covering pixel columns x1..x2-1 and rows y1..y2-1."""
    return [float(x1), float(y1), float(x2), float(y1), float(x2), float(y2),
            float(x1), float(y2)]


def box_mask(height, width, y1, x1, y2, x2):
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def uncompressed_rle(mask):
    """COCO uncompressed RLE of a [H, W] bool mask (column-major runs, zeros first)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def mask_bbox(mask):
    """COCO [x, y, w, h] of a bool mask (integer bounds, exclusive end)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]),
            float(rows[-1] + 1 - rows[0])]


def write_coco(root, images, annotations, categories, write_files=True):
    """Write a COCO JSON at root/ann.json and black PNG images in root/img/.

    images: list of (id, height, width). Returns (json path, image folder).
    """
    image_dir = os.path.join(root, "img")
    os.makedirs(image_dir, exist_ok=True)
    entries = []
    for image_id, height, width in images:
        name = f"{image_id:06d}.png"
        if write_files:
            skimage.io.imsave(os.path.join(image_dir, name),
                              np.full((height, width, 3), 40, dtype=np.uint8),
                              check_contrast=False)
        entries.append({"id": image_id, "file_name": name, "height": height, "width": width})
    path = os.path.join(root, "ann.json")
    with open(path, "w") as f:
        json.dump({"images": entries, "annotations": annotations,
                   "categories": categories}, f)
    return path, image_dir


CATS = [{"id": 1, "name": "cube"}, {"id": 5, "name": "ball"}, {"id": 9, "name": "cone"}]
H, W = 40, 50


def ann(ann_id, image_id, cat, segmentation, mask=None, iscrowd=0):
    out = {"id": ann_id, "image_id": image_id, "category_id": cat,
           "segmentation": segmentation, "iscrowd": iscrowd}
    if mask is not None:
        out["bbox"] = mask_bbox(mask)
        out["area"] = float(mask.sum())
    return out


@pytest.fixture
def tiny_coco(tmp_path):
    """3 images 40x50: polygon + crowd RLE; uncompressed RLE + polygon; no annotation."""
    m1 = box_mask(H, W, 4, 5, 20, 15)
    m2 = box_mask(H, W, 25, 30, 35, 45)
    m3 = box_mask(H, W, 2, 3, 12, 30)
    m4 = box_mask(H, W, 20, 10, 38, 22)
    anns = [
        ann(11, 1, 1, [rect_polygon(5, 4, 15, 20)], m1),
        ann(12, 1, 5, compressed_rle(m2), m2, iscrowd=1),
        ann(21, 2, 5, uncompressed_rle(m3), m3),
        ann(22, 2, 9, [rect_polygon(10, 20, 22, 38)], m4),
    ]
    path, image_dir = write_coco(str(tmp_path), [(1, H, W), (2, H, W), (3, H, W)], anns, CATS)
    return path, image_dir, {11: m1, 12: m2, 21: m3, 22: m4}


def load(path, image_dir, **kwargs):
    dataset = CocoDataset()
    coco = dataset.load_coco(path, image_dir, return_coco=True, **kwargs)
    dataset.prepare()
    return dataset, coco


def gt_as_detections(dataset, image_ids):
    """Ground-truth masks as score-1 detections (crowd skipped), in COCO result format."""
    results = []
    for image_id in image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        keep = class_ids > 0
        masks, class_ids = masks[:, :, keep], class_ids[keep]
        rois = utils.extract_bboxes(masks)
        results += build_coco_results(dataset, [image_id], rois, class_ids,
                                      np.ones(len(class_ids)), masks)
    return results


# --------------------------------------------------------------------------- coco128
@pytest.fixture
def coco128(shared_data):
    root = os.path.join(shared_data, "coco128")
    if not os.path.isdir(root):
        pytest.skip(f"{root} is absent")
    return root


def test_load_coco128_val_all_classes(coco128):
    path = os.path.join(coco128, "annotations", "instances_val.json")
    with open(path) as f:
        data = json.load(f)
    dataset, coco = load(path, os.path.join(coco128, "images"))
    cats = sorted(data["categories"], key=lambda c: c["id"])
    assert dataset.num_classes == len(cats) + 1 == 81
    assert dataset.class_names == ["BG"] + [c["name"] for c in cats]
    assert [info["id"] for info in dataset.class_info[1:]] == [c["id"] for c in cats]
    assert dataset.num_images == len(data["images"]) == 28
    assert [info["id"] for info in dataset.image_info] == sorted(i["id"] for i in data["images"])
    assert sum(len(info["annotations"]) for info in dataset.image_info) == \
        len(data["annotations"]) == 188
    first = dataset.image_info[0]
    entry = min(data["images"], key=lambda i: i["id"])
    assert (first["width"], first["height"]) == (entry["width"], entry["height"])
    assert first["path"] == os.path.join(coco128, "images", entry["file_name"])
    assert dataset.image_reference(0) == first["path"]  # no coco_url in this JSON
    assert dataset.map_source_class_id("coco.90") == 80
    assert dataset.class_names[80] == "toothbrush"
    assert dataset.get_source_class_id(3, "coco") == 3
    assert sorted(coco.getImgIds()) == [info["id"] for info in dataset.image_info]


def test_load_coco128_val_class_subset(coco128):
    path = os.path.join(coco128, "annotations", "instances_val.json")
    with open(path) as f:
        data = json.load(f)
    subset = [1, 3]  # person, car
    expected_anns = [a for a in data["annotations"] if a["category_id"] in subset]
    expected_images = sorted({a["image_id"] for a in expected_anns})
    dataset, _ = load(path, os.path.join(coco128, "images"), class_ids=subset)
    assert dataset.class_names == ["BG", "person", "car"]
    assert [info["id"] for info in dataset.image_info] == expected_images
    assert 0 < len(expected_images) < len(data["images"])
    got = sorted(a["id"] for info in dataset.image_info for a in info["annotations"])
    assert got == sorted(a["id"] for a in expected_anns)
    for image_id in dataset.image_ids[:3]:
        _, class_ids = dataset.load_mask(image_id)
        assert set(class_ids.tolist()) <= {1, 2}


def test_load_coco128_limit_and_train_unannotated(coco128):
    images = os.path.join(coco128, "images")
    path = os.path.join(coco128, "annotations", "instances_train.json")
    with open(path) as f:
        data = json.load(f)
    annotated = {a["image_id"] for a in data["annotations"]}
    empty_ids = sorted(i["id"] for i in data["images"] if i["id"] not in annotated)
    assert len(empty_ids) == 2
    dataset, _ = load(path, images)
    assert dataset.num_images == 100  # unannotated images are kept
    for source_id in empty_ids:
        image_id = dataset.image_from_source_map[f"coco.{source_id}"]
        info = dataset.image_info[image_id]
        masks, class_ids = dataset.load_mask(image_id)
        assert masks.shape == (info["height"], info["width"], 0) and masks.dtype == bool
        assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    limited, _ = load(path, images, limit=5)
    assert [i["id"] for i in limited.image_info] == sorted(i["id"] for i in data["images"])[:5]


def test_load_mask_matches_pycocotools(coco128):
    path = os.path.join(coco128, "annotations", "instances_val.json")
    dataset, coco = load(path, os.path.join(coco128, "images"))
    image_id = 0
    info = dataset.image_info[image_id]
    masks, class_ids = dataset.load_mask(image_id)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))
    assert masks.shape == (info["height"], info["width"], len(anns)) and masks.dtype == bool
    assert class_ids.dtype == np.int32
    np.testing.assert_array_equal(
        class_ids, [dataset.map_source_class_id(f"coco.{a['category_id']}") for a in anns])
    for k, a in enumerate(anns):
        expected = coco.annToMask(a).astype(bool)
        assert expected.sum() > 0
        np.testing.assert_array_equal(masks[:, :, k], expected)
        np.testing.assert_array_equal(ann_to_mask(a, info["height"], info["width"]), expected)
    assert dataset.load_image(image_id).shape == (info["height"], info["width"], 3)


def test_coco128_ground_truth_as_detections_scores_ap_1(coco128, capsys):
    """THE acceptance test: ground truth fed back as detections gives AP 1.0.

    coco128's gt "bbox" values are the integer bounds of the rasterised polygons (checked
    below), so the boxes from utils.extract_bboxes match them exactly and bbox AP is exactly
    1.0, like segm AP (the masks are the same rasterisation pycocotools uses).
    """
    path = os.path.join(coco128, "annotations", "instances_val.json")
    dataset, coco = load(path, os.path.join(coco128, "images"))
    image_ids = dataset.image_ids[:5]
    results = gt_as_detections(dataset, image_ids)
    coco_ids = [dataset.image_info[i]["id"] for i in image_ids]
    gt_anns = coco.loadAnns(coco.getAnnIds(imgIds=coco_ids))
    assert len(results) == len(gt_anns) > 5
    by_key = sorted((a["image_id"], a["category_id"], a["bbox"]) for a in gt_anns)
    assert sorted((r["image_id"], r["category_id"], r["bbox"]) for r in results) == by_key
    metrics = evaluate_coco(coco, results, image_ids=coco_ids)
    for eval_type in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "AR100"):
            assert metrics[eval_type][name] == pytest.approx(1.0, abs=1e-12), (eval_type, name)
    assert "Average Precision" in capsys.readouterr().out  # pycocotools' summary table


# --------------------------------------------------------------------------- synthetic
def test_tiny_coco_masks_crowd_rle_and_empty(tiny_coco):
    path, image_dir, truth = tiny_coco
    dataset, _ = load(path, image_dir)
    assert dataset.class_names == ["BG", "cube", "ball", "cone"]
    assert dataset.num_images == 3
    masks, class_ids = dataset.load_mask(0)  # polygon + crowd compressed RLE
    assert masks.shape == (H, W, 2)
    np.testing.assert_array_equal(class_ids, [1, -2])
    np.testing.assert_array_equal(masks[:, :, 0], truth[11])
    np.testing.assert_array_equal(masks[:, :, 1], truth[12])
    masks, class_ids = dataset.load_mask(1)  # uncompressed RLE + polygon
    np.testing.assert_array_equal(class_ids, [2, 3])
    np.testing.assert_array_equal(masks[:, :, 0], truth[21])
    np.testing.assert_array_equal(masks[:, :, 1], truth[22])
    masks, class_ids = dataset.load_mask(2)  # no annotation: kept, empty
    assert masks.shape == (H, W, 0) and class_ids.shape == (0,)
    assert dataset.image_reference(2).endswith("000003.png")


def test_ann_to_rle_formats_agree():
    mask = box_mask(H, W, 3, 4, 17, 29)
    poly = {"id": 1, "segmentation": [rect_polygon(4, 3, 29, 17)]}
    for a in (poly, {"id": 2, "segmentation": uncompressed_rle(mask)},
              {"id": 3, "segmentation": compressed_rle(mask)}):
        rle = ann_to_rle(a, H, W)
        assert isinstance(rle, dict) and list(rle["size"]) == [H, W]
        np.testing.assert_array_equal(ann_to_mask(a, H, W), mask)
    with pytest.raises(ValueError, match=r"annotation 7: RLE size \[10, 10\]"):
        ann_to_rle({"id": 7, "segmentation": uncompressed_rle(np.ones((10, 10), bool))}, H, W)
    with pytest.raises(ValueError, match="annotation 8: no polygon with at least 3"):
        ann_to_rle({"id": 8, "segmentation": [[1, 2, 3, 4]]}, H, W)


def test_tiny_coco_ground_truth_gives_exact_ap_1(tiny_coco):
    path, image_dir, _ = tiny_coco
    dataset, coco = load(path, image_dir)
    results = gt_as_detections(dataset, dataset.image_ids)
    assert len(results) == 3  # the crowd region is not a detection
    metrics = evaluate_coco(coco, results)
    for eval_type in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
            assert metrics[eval_type][name] == pytest.approx(1.0, abs=1e-12), (eval_type, name)


@pytest.fixture
def hand_coco(tmp_path):
    """Image 10: one 25x20 gt. Image 20: two 10x10 gts. One class, 64x64 images."""
    g = box_mask(64, 64, 10, 10, 35, 30)
    a = box_mask(64, 64, 0, 0, 10, 10)
    b = box_mask(64, 64, 40, 40, 50, 50)
    anns = [ann(1, 10, 1, compressed_rle(g), g), ann(2, 20, 1, compressed_rle(a), a),
            ann(3, 20, 1, compressed_rle(b), b)]
    path, image_dir = write_coco(str(tmp_path), [(10, 64, 64), (20, 64, 64)], anns,
                                 [{"id": 1, "name": "thing"}])
    return load(path, image_dir)


def hand_results(dataset):
    # Image 10: a 20x17 detection inside the 25x20 gt: IoU = 340 / 500 = 0.68 (box and mask).
    results = build_coco_results(dataset, [0], np.array([[10, 10, 30, 27]]), [1], [0.9],
                                 box_mask(64, 64, 10, 10, 30, 27)[..., None])
    # Image 20: exact A (0.9), a false positive touching nothing (0.8), exact B (0.7).
    rois = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 40, 50, 50]])
    masks = np.stack([box_mask(64, 64, *r) for r in rois], axis=-1)
    results += build_coco_results(dataset, 1, rois, [1, 1, 1], [0.9, 0.8, 0.7], masks)
    return results


def test_hand_computed_iou_068(hand_coco):
    """IoU 0.68 passes the thresholds 0.50, 0.55, 0.60, 0.65 and fails 0.70 ... 0.95.

    Per threshold the AP is 1 (match) or 0 (miss), so AP = 4/10, AP50 = 1, AP75 = 0;
    recall likewise 4/10. The gt has area 500 < 32**2, so it is "small": APs = 0.4 and
    APm = APl = -1 (no medium or large ground truth).
    """
    dataset, coco = hand_coco
    results = hand_results(dataset)
    assert results[0]["bbox"] == [10.0, 10.0, 17.0, 20.0]
    metrics = evaluate_coco(coco, results, image_ids=[10])
    for eval_type in ("bbox", "segm"):
        m = metrics[eval_type]
        assert m["AP"] == pytest.approx(0.4, abs=1e-12)
        assert m["AP50"] == pytest.approx(1.0, abs=1e-12)
        assert m["AP75"] == 0.0
        assert m["APs"] == pytest.approx(0.4, abs=1e-12)
        assert (m["APm"], m["APl"]) == (-1.0, -1.0)
        assert m["AR100"] == pytest.approx(0.4, abs=1e-12)


def test_hand_computed_false_positive(hand_coco):
    """Two gts, detections TP (0.9), FP (0.8), TP (0.7), at every IoU threshold.

    Precision/recall after each: (1, 1/2), (1/2, 1/2), (2/3, 1). Interpolated precision is 1
    for recall <= 0.5 (51 of COCO's 101 recall points: 0.00 ... 0.50) and 2/3 above (50
    points), so AP = (51 + 50 * 2/3) / 101 = 253/303, the same for AP50 and AP75; recall 1.
    """
    dataset, coco = hand_coco
    metrics = evaluate_coco(coco, hand_results(dataset), image_ids=[20])
    for eval_type in ("bbox", "segm"):
        m = metrics[eval_type]
        for name in ("AP", "AP50", "AP75"):
            assert m[name] == pytest.approx(253 / 303, abs=1e-12), (eval_type, name)
        assert m["AR100"] == pytest.approx(1.0, abs=1e-12)


def test_results_json_round_trip(hand_coco, tmp_path):
    dataset, coco = hand_coco
    results = hand_results(dataset)
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    out = write_results_json(results, tmp_path / "results.json")
    with open(out) as f:
        loaded = json.load(f)
    assert loaded == results
    assert sorted(os.listdir(tmp_path)) == sorted(["ann.json", "img", "results.json"])
    coco_dt = coco.loadRes(loaded)
    assert len(coco_dt.getAnnIds()) == 4
    from_file = evaluate_coco(coco, str(out), image_ids=[20], eval_types="segm")
    assert list(from_file) == ["segm"]
    assert from_file["segm"]["AP"] == pytest.approx(253 / 303, abs=1e-12)
    gt_from_file = evaluate_coco(str(tmp_path / "ann.json"), loaded, image_ids=[10],
                                 eval_types=["bbox"])
    assert gt_from_file["bbox"]["AP"] == pytest.approx(0.4, abs=1e-12)
    # NumPy scalars and bytes are converted on write.
    write_results_json([{"image_id": np.int64(10), "score": np.float32(0.5),
                         "counts": b"abc"}], tmp_path / "np.json")
    with open(tmp_path / "np.json") as f:
        assert json.load(f) == [{"image_id": 10, "score": 0.5, "counts": "abc"}]
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        write_results_json(results, tmp_path / "no_such_dir" / "r.json")


def test_detections_to_coco_results_and_bad_inputs(hand_coco):
    dataset, _ = hand_coco
    r = {"rois": np.array([[1, 2, 5, 9]]), "class_ids": np.array([1]),
         "scores": np.array([0.25], np.float32), "masks": box_mask(64, 64, 1, 2, 5, 9)[..., None]}
    (res,) = detections_to_coco_results(dataset, 1, r)
    assert res["image_id"] == 20 and res["category_id"] == 1
    assert res["bbox"] == [2.0, 1.0, 7.0, 4.0] and res["score"] == 0.25
    np.testing.assert_array_equal(mask_utils.decode(res["segmentation"]), r["masks"][..., 0])
    (box_only,) = detections_to_coco_results(dataset, 1, {k: r[k] for k in
                                                          ("rois", "class_ids", "scores")})
    assert "segmentation" not in box_only
    assert build_coco_results(dataset, [0], None, None, None, None) == []
    with pytest.raises(ValueError, match=r"one id, got \[0, 1\]"):
        build_coco_results(dataset, [0, 1], r["rois"], r["class_ids"], r["scores"], None)
    with pytest.raises(ValueError, match=r"masks must be \[H, W, 1\]"):
        build_coco_results(dataset, [0], r["rois"], r["class_ids"], r["scores"],
                           np.zeros((64, 64, 2), bool))
    with pytest.raises(ValueError, match="lacks \\['scores'\\]"):
        detections_to_coco_results(dataset, 0, {"rois": r["rois"], "class_ids": [1]})


def test_evaluate_coco_empty_and_bad_arguments(hand_coco, caplog):
    dataset, coco = hand_coco
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        metrics = evaluate_coco(coco, [], image_ids=[10])
    assert "no detections" in caplog.text
    assert metrics == {t: {n: 0.0 for n in COCO_METRIC_NAMES} for t in ("bbox", "segm")}
    results = hand_results(dataset)
    with pytest.raises(ValueError, match=r"image_ids \[99\]"):
        evaluate_coco(coco, results, image_ids=[99])
    with pytest.raises(ValueError, match="eval_types"):
        evaluate_coco(coco, results, eval_types=("captions",))
    # "keypoints" is a known type (Keypoint R-CNN), but these results have no keypoints.
    with pytest.raises(ValueError, match="'keypoints' evaluation needs 'keypoints'"):
        evaluate_coco(coco, results, eval_types=("keypoints",))
    with pytest.raises(ValueError, match="result 0 \\(image 10\\) has none"):
        evaluate_coco(coco, [{k: v for k, v in results[0].items() if k != "segmentation"}])
    with pytest.raises(ValueError, match=r"image ids \[777\]"):
        evaluate_coco(coco, [dict(results[0], image_id=777)])


# --------------------------------------------------------------------------- error paths
def test_bad_annotation_files(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset().load_coco(str(missing), str(tmp_path))
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.json.*is empty"):
        CocoDataset().load_coco(str(empty), str(tmp_path))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="garbage.json.*not valid JSON"):
        read_coco_json(garbage)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(ValueError, match=r"partial.json.*lacks the key\(s\) \['annotations'\]"):
        CocoDataset().load_coco(str(partial), str(tmp_path))
    with pytest.raises(ValueError, match="load_coco_standard"):
        CocoDataset().load_coco(str(tmp_path), "val")


def test_bad_arguments(tiny_coco):
    path, image_dir, _ = tiny_coco
    with pytest.raises(ValueError, match=r"class_ids \[2\] are not categories"):
        CocoDataset().load_coco(path, image_dir, class_ids=[1, 2])
    with pytest.raises(ValueError, match="limit must be None or an integer >= 1, got 0"):
        CocoDataset().load_coco(path, image_dir, limit=0)


def test_skipped_annotations_warn(tmp_path, caplog):
    anns = [
        ann(101, 1, 1, [rect_polygon(2, 2, 10, 10)]),        # fine
        ann(102, 1, 42, [rect_polygon(2, 2, 10, 10)]),       # unknown category
        ann(103, 1, 1, [rect_polygon(60, 5, 70, 15)]),       # entirely outside (W = 50)
        ann(104, 1, 1, [[1.0, 1.0, 8.0, 8.0]]),              # 2 points
        ann(105, 1, 1, [[0.0, 0.0, 5.0, 5.0, 10.0, 10.0]]),  # collinear: zero area
        ann(106, 1, 5, [rect_polygon(40, 30, 60, 50)]),      # partly outside: clipped
        ann(107, 1, 5, [rect_polygon(-5, 0, 0.4, 10)]),      # rasterises to no pixel
        ann(108, 1, 9, [rect_polygon(20, 20, 30, 30), [1.0, 2.0]]),  # one bad part dropped
    ]
    path, image_dir = write_coco(str(tmp_path), [(1, H, W)], anns, CATS)
    dataset = CocoDataset()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset.load_coco(path, image_dir)
    dataset.prepare()
    text = caplog.text
    assert "annotation 102 has unknown category id 42" in text
    assert "annotation 103 (image 1): polygon entirely outside" in text
    assert "annotation 104 (image 1): no polygon with at least 3 points" in text
    assert "annotation 105 (image 1): degenerate polygon" in text
    assert "annotation 108 (image 1): dropped 1 polygon part(s)" in text
    kept = [a["id"] for a in dataset.image_info[0]["annotations"]]
    assert kept == [101, 106, 107, 108]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        masks, class_ids = dataset.load_mask(0)
    assert "annotation 107 (image 1) covers no pixel" in caplog.text
    np.testing.assert_array_equal(class_ids, [1, 2, 3])
    np.testing.assert_array_equal(masks[:, :, 1], box_mask(H, W, 30, 40, 40, 50))
    np.testing.assert_array_equal(masks[:, :, 2], box_mask(H, W, 20, 20, 30, 30))


def test_missing_image_file_warns_and_is_skipped(tiny_coco, caplog):
    path, image_dir, _ = tiny_coco
    gone = os.path.join(image_dir, "000002.png")
    os.remove(gone)
    dataset = CocoDataset()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset.load_coco(path, image_dir)
    dataset.prepare()
    assert f"image file not found: {gone}" in caplog.text
    assert [info["id"] for info in dataset.image_info] == [1, 3]
    os.remove(os.path.join(image_dir, "000003.png"))  # disappears after loading
    with pytest.raises(FileNotFoundError, match="000003.png"):
        dataset.load_image(1)


def test_load_coco_standard_layout(tmp_path):
    mask = box_mask(H, W, 4, 5, 20, 15)
    path, image_dir = write_coco(str(tmp_path), [(7, H, W)],
                                 [ann(1, 7, 5, compressed_rle(mask), mask)], CATS)
    os.makedirs(tmp_path / "annotations")
    os.replace(path, tmp_path / "annotations" / "instances_minival2014.json")
    os.replace(image_dir, tmp_path / "val2014")
    dataset = CocoDataset()
    coco = dataset.load_coco_standard(str(tmp_path), "minival", 2014, return_coco=True)
    dataset.prepare()
    assert coco.getImgIds() == [7]
    assert dataset.image_info[0]["path"] == os.path.join(str(tmp_path), "val2014", "000007.png")
    _, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [2])
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        CocoDataset().load_coco_standard(str(tmp_path), "train")


def test_second_file_duplicates_and_other_sources(tiny_coco, caplog):
    path, image_dir, _ = tiny_coco
    dataset = CocoDataset()
    dataset.load_coco(path, image_dir)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset.load_coco(path, image_dir)  # e.g. train + valminusminival sharing an image
    assert "image 1 of source 'coco' was already loaded" in caplog.text
    dataset.add_image("shapes", image_id=0, path="none.png")
    dataset.prepare()
    assert dataset.num_images == 4 and dataset.num_classes == 4
    masks, class_ids = dataset.load_mask(3)  # not a COCO image: base class behaviour
    assert masks.shape == (0, 0, 0) and class_ids.shape == (0,)
    assert dataset.image_reference(3) == ""
