"""COCO person-keypoint files, keypoint results, OKS evaluation and display_keypoints."""
import json

import numpy as np
import pytest
import skimage.io

from mrcnn.coco import CocoDataset, build_coco_results, evaluate_coco

NAMES = ["nose", "left_eye", "right_eye"]


def _write_keypoint_coco(tmp_path):
    image = np.full((40, 60, 3), 120, np.uint8)
    skimage.io.imsave(tmp_path / "a.png", image, check_contrast=False)
    data = {
        "images": [{"id": 5, "file_name": "a.png", "width": 60, "height": 40}],
        "categories": [{"id": 1, "name": "person", "keypoints": NAMES,
                        "skeleton": [[1, 2], [1, 3]]}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 1, "iscrowd": 0, "area": 200.0,
             "bbox": [10, 5, 20, 10], "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]],
             "keypoints": [20, 8, 2, 15, 6, 1, 0, 0, 0], "num_keypoints": 2},
            {"id": 2, "image_id": 5, "category_id": 1, "iscrowd": 0, "area": 0.0,
             "bbox": [0, 0, 1, 1], "segmentation": [[50, 50, 51, 50, 51, 51]],
             "keypoints": [0] * 9, "num_keypoints": 0},   # off the image
            {"id": 3, "image_id": 5, "category_id": 1, "iscrowd": 1, "area": 100.0,
             "bbox": [35, 20, 10, 10], "segmentation": [[35, 20, 45, 20, 45, 30, 35, 30]],
             "keypoints": [0] * 9, "num_keypoints": 0},
        ],
    }
    path = tmp_path / "person_keypoints_val.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_coco_dataset_reads_person_keypoints(tmp_path):
    path = _write_keypoint_coco(tmp_path)
    dataset = CocoDataset()
    coco = dataset.load_coco(path, str(tmp_path), return_coco=True)
    dataset.prepare()
    assert dataset.keypoint_names() == tuple(NAMES)
    masks, class_ids = dataset.load_mask(0)
    keypoints = dataset.load_keypoints(0)
    np.testing.assert_array_equal(class_ids, [1, -1])   # the one off the image is skipped
    assert keypoints.shape == (2, 3, 3)
    np.testing.assert_array_equal(keypoints[0], [[20, 8, 2], [15, 6, 1], [0, 0, 0]])
    np.testing.assert_array_equal(keypoints[1], np.zeros((3, 3)))   # crowd: no keypoints

    from samples.coco import keypoint_attrs
    assert keypoint_attrs(dataset) == {"KEYPOINT_NAMES": tuple(NAMES),
                                       "KEYPOINT_FLIP_MAP": (("left_eye", "right_eye"),)}

    # The ground truth itself as results: OKS AP 1.0; one keypoint 3 px off lowers it.
    rois = np.array([[5, 10, 15, 30]])
    perfect = build_coco_results(dataset, [0], rois, [1], [0.9], None,
                                 keypoints=np.array([[[20, 8, 1], [15, 6, 1], [0, 0, 1]]]))
    assert perfect[0]["keypoints"] == [20, 8, 1, 15, 6, 1, 0, 0, 1]
    with pytest.raises(ValueError, match=r"have \[3\] keypoints, but there are 17 OKS sigmas"):
        evaluate_coco(coco, perfect, eval_types=("keypoints",))
    metrics = evaluate_coco(coco, perfect, eval_types=("keypoints",), kpt_oks_sigmas=[0.05] * 3)
    assert metrics["keypoints"]["AP"] == pytest.approx(1.0)
    off = build_coco_results(dataset, [0], rois, [1], [0.9], None,
                             keypoints=np.array([[[23, 8, 1], [15, 6, 1], [0, 0, 1]]]))
    worse = evaluate_coco(coco, off, eval_types=("keypoints",), kpt_oks_sigmas=[0.05] * 3)
    assert worse["keypoints"]["AP"] < 1.0
    assert set(worse["keypoints"]) == {"AP", "AP50", "AP75", "APm", "APl",
                                       "AR", "AR50", "AR75", "ARm", "ARl"}
    with pytest.raises(ValueError, match="'keypoints' evaluation needs 'keypoints'"):
        evaluate_coco(coco, build_coco_results(dataset, [0], rois, [1], [0.9], None),
                      eval_types=("keypoints",), kpt_oks_sigmas=[0.05] * 3)


def test_load_coco_standard_person_keypoints_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="person_keypoints_val2017.json"):
        CocoDataset().load_coco_standard(str(tmp_path), "val", annotations="person_keypoints")
    with pytest.raises(ValueError, match="annotations must be 'instances' or 'person_keypoints'"):
        CocoDataset().load_coco_standard(str(tmp_path), "val", annotations="captions")


def test_display_keypoints_draws_shown_keypoints_and_skeleton():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrcnn import visualize

    image = np.zeros((20, 30, 3), np.uint8)
    keypoints = np.array([[[5, 5, 0.9], [10, 5, 0.8], [7, 12, 0.0]]])
    _, ax = plt.subplots()
    visualize.display_keypoints(image, np.array([[2, 3, 15, 14]]), keypoints, NAMES,
                                skeleton=[("nose", "left_eye"), ("nose", "right_eye")], ax=ax)
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    segments = [line for line in ax.lines if line.get_marker() != "o"]
    assert sorted(m.get_label() for m in markers) == ["0:left_eye", "0:nose"]
    assert len(segments) == 1                                   # right_eye is not shown
    np.testing.assert_array_equal(segments[0].get_xdata(), [5, 10])
    with pytest.raises(ValueError, match="skeleton must hold pairs"):
        visualize.display_keypoints(image, None, keypoints, NAMES, skeleton=[("nose", "ear")], ax=ax)
    plt.close("all")
