"""samples/balloon.py: VIA 1.x / 2.x reading on the real balloon set, color splash, splash CLI."""
import json
import os

import numpy as np
import pytest
import skimage.io

from samples import balloon


def _balloon(shared_data):
    return os.path.join(shared_data, "balloon")


@pytest.mark.parametrize("subset, images", [("train", 61), ("val", 13)])
def test_real_balloon_set_loads(shared_data, subset, images):
    root = _balloon(shared_data)
    dataset = balloon.BalloonDataset()
    dataset.load_balloon(root, subset)
    dataset.prepare()
    assert dataset.num_images == images
    assert dataset.class_names == ["BG", "balloon"]
    with open(os.path.join(root, subset, "via_region_data.json")) as f:
        via = json.load(f)
    expected = {entry["filename"]: len(entry["regions"]) for entry in via.values()}
    counted = {info["id"]: len(info["polygons"]) for info in dataset.image_info}
    assert counted == expected
    assert sum(counted.values()) == {"train": 255, "val": 50}[subset]
    # Masks of a few images: one per region, non-empty, the image's size, class 1.
    for image_id in dataset.image_ids[:3]:
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        info = dataset.image_info[image_id]
        assert image.shape == (info["height"], info["width"], 3)
        assert masks.shape == image.shape[:2] + (expected[info["id"]],)
        assert masks.dtype == bool and masks.any(axis=(0, 1)).all()
        np.testing.assert_array_equal(class_ids, np.ones(len(class_ids), np.int32))


def _write_image(path, height, width):
    skimage.io.imsave(path, np.full((height, width, 3), 90, np.uint8), check_contrast=False)


def test_via2_project_with_several_shape_kinds(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    _write_image(folder / "a.png", 20, 30)
    _write_image(folder / "b.png", 10, 10)
    _write_image(folder / "c.png", 10, 10)
    project = {
        "_via_settings": {"ui": {}},
        "_via_attributes": {"region": {}, "file": {}},
        "_via_img_metadata": {
            "a.png123": {"filename": "a.png", "size": 123, "file_attributes": {}, "regions": [
                {"shape_attributes": {"name": "rect", "x": 2, "y": 3, "width": 4, "height": 5},
                 "region_attributes": {}},
                # A triangle that sticks out of the image on the right: clipped.
                {"shape_attributes": {"name": "polygon", "all_points_x": [20, 40, 20],
                                      "all_points_y": [0, 0, 19]}, "region_attributes": {}},
            ]},
            "b.png1": {"filename": "b.png", "size": 1, "file_attributes": {}, "regions": []},
            "c.png1": {"filename": "c.png", "size": 1, "file_attributes": {}, "regions": [
                {"shape_attributes": {"name": "circle", "cx": 5, "cy": 5, "r": 2}}]},
            "gone.png1": {"filename": "gone.png", "size": 1, "regions": [
                {"shape_attributes": {"name": "circle", "cx": 5, "cy": 5, "r": 2}}]},
        },
    }
    (folder / "via_region_data.json").write_text(json.dumps(project))
    dataset = balloon.BalloonDataset()
    dataset.load_balloon(tmp_path, "val")          # b (no region) and gone (no file) skipped
    dataset.prepare()
    assert [info["id"] for info in dataset.image_info] == ["a.png", "c.png"]
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (20, 30, 2)
    rect = np.zeros((20, 30), bool)
    rect[3:8, 2:6] = True                           # 5 rows x 4 columns
    np.testing.assert_array_equal(masks[..., 0], rect)
    # The triangle (20, 0), (40, 0), (20, 19) clipped at x = 29: row y keeps the columns
    # 20 .. min(29, 40 - 20 * y / 19) (boundary included).
    triangle = masks[..., 1]
    assert triangle[0, 20:].all() and not triangle[0, :20].any()
    assert triangle[19, 20] and triangle[19, 21:].sum() == 0
    assert triangle[10].sum() == 10                 # x from 20 to 29 (29.47 clipped)
    circle, _ = dataset.load_mask(1)
    assert circle[5, 5, 0] and not circle[0, 0, 0]
    keep_all = balloon.BalloonDataset()
    keep_all.load_balloon(tmp_path, "val", keep_unannotated=True)
    assert [info["id"] for info in keep_all.image_info] == ["a.png", "b.png", "c.png"]


def test_via1_regions_as_list_and_dict(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    _write_image(folder / "x.jpg", 12, 12)
    square = {"name": "polygon", "all_points_x": [1, 5, 5, 1], "all_points_y": [1, 1, 5, 5]}
    via = {"x.jpg100": {"filename": "x.jpg", "size": 100, "fileref": "", "base64_img_data": "",
                        "file_attributes": {},
                        "regions": {
                            "1": {"shape_attributes": dict(square, all_points_x=[6, 9, 9, 6])},
                            "0": {"shape_attributes": square}}}}
    (folder / "via_region_data.json").write_text(json.dumps(via))
    dataset = balloon.BalloonDataset()
    dataset.load_balloon(tmp_path, "train")
    dataset.prepare()
    masks, _ = dataset.load_mask(0)
    expected = np.zeros((12, 12), bool)
    expected[1:6, 1:6] = True                        # region "0" comes first
    np.testing.assert_array_equal(masks[..., 0], expected)
    as_list = dict(via["x.jpg100"], regions=[{"shape_attributes": square}])
    (folder / "via_region_data.json").write_text(json.dumps({"k": as_list}))
    listed = balloon.BalloonDataset()
    listed.load_balloon(tmp_path, "train")
    listed.prepare()
    np.testing.assert_array_equal(listed.load_mask(0)[0][..., 0], expected)


def test_bad_via_files(tmp_path):
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "via_region_data.json"
    with pytest.raises(FileNotFoundError, match="via_region_data.json"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    path.write_text(json.dumps({"k": {"filename": "x.jpg", "regions": [{"no": 1}]}}))
    with pytest.raises(ValueError, match=r"image 'x.jpg', region 0: lacks 'shape_attributes'"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    with pytest.raises(ValueError, match="subset must be one of"):
        balloon.BalloonDataset().load_balloon(tmp_path, "test")
    with pytest.raises(ValueError, match="unsupported VIA shape 'point'"):
        balloon.shape_to_mask({"name": "point", "cx": 1, "cy": 1}, 5, 5)
    with pytest.raises(ValueError, match="lacks 'r'"):
        balloon.shape_to_mask({"name": "circle", "cx": 1, "cy": 1}, 5, 5)


def test_ellipse_rotation_follows_via():
    # VIA draws theta clockwise on screen (y down): +0.5 tilts the long axis down-right.
    mask = balloon.shape_to_mask({"name": "ellipse", "cx": 20, "cy": 20, "rx": 10, "ry": 2,
                                  "theta": 0.5}, 40, 40)
    assert mask[24, 28] and not mask[16, 28]


def test_color_splash_exact_pixels():
    image = np.array([[[100, 50, 200], [10, 20, 30]],
                      [[255, 255, 255], [0, 0, 0]]], np.uint8)
    mask = np.zeros((2, 2, 2), bool)
    mask[0, 1, 0] = True
    mask[1, 0, 1] = True
    out = balloon.color_splash(image, mask)
    # 0.2125*100 + 0.7154*50 + 0.0721*200 = 71.44 -> 71
    expected = np.array([[[71, 71, 71], [10, 20, 30]],
                         [[255, 255, 255], [0, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    grey = balloon.color_splash(image, np.zeros((2, 2, 0), bool))
    np.testing.assert_array_equal(grey[0, 1], [19, 19, 19])   # 18.596 rounds to 19
    with pytest.raises(ValueError, match=r"mask must be \[H, W, N\] with H, W = \(2, 2\)"):
        balloon.color_splash(image, np.zeros((3, 2, 1), bool))


def test_splash_cli_writes_an_image(shared_data, tmp_path, capsys):
    root = _balloon(shared_data)
    photo = os.path.join(root, "val", sorted(f for f in os.listdir(os.path.join(root, "val"))
                                             if f.endswith(".jpg"))[0])
    status = balloon.main(["splash", "--weights", "random", "--tiny", "--image", photo,
                           "--output", str(tmp_path), "--logs", str(tmp_path / "logs")])
    assert status == 0
    written = [f for f in os.listdir(tmp_path) if f.startswith("splash_") and f.endswith(".png")]
    assert len(written) == 1
    out = skimage.io.imread(tmp_path / written[0])
    assert out.shape == skimage.io.imread(photo).shape
    assert "saved" in capsys.readouterr().out


def test_splash_video(tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    status = balloon.main(["splash", "--weights", "random", "--tiny", "--video", video,
                           "--output", str(tmp_path / "out"), "--logs", str(tmp_path / "logs")])
    assert status == 0
    (written,) = os.listdir(tmp_path / "out")
    capture = cv2.VideoCapture(str(tmp_path / "out" / written))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 3


def test_cli_errors(tmp_path, capsys):
    assert balloon.main(["splash", "--weights", "random", "--tiny"]) == 2
    assert "exactly one of --image PATH or --video PATH" in capsys.readouterr().err
    assert balloon.main(["splash", "--weights", "random", "--image", "/no/img.jpg"]) == 2
    assert "image file not found: '/no/img.jpg'" in capsys.readouterr().err
    assert balloon.main(["train", "--weights", "random", "--dataset", str(tmp_path)]) == 2
    assert "balloon subset folder not found" in capsys.readouterr().err
    assert balloon.main(["train", "--weights", "random"]) == 2
    assert "train needs --dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_short_train_on_balloon(shared_data, tmp_path):
    status = balloon.main(["train", "--dataset", _balloon(shared_data), "--weights", "random",
                           "--tiny", "--steps", "2", "--epochs", "1", "--logs", str(tmp_path)])
    assert status == 0
    (run,) = os.listdir(tmp_path)
    assert "mask_rcnn_balloon_0001.h5" in os.listdir(tmp_path / run)
