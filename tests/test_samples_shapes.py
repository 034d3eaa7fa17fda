"""samples/shapes.py: the synthetic dataset, the learning-rate schedule and the command line."""
import contextlib
import io
import json
import os
import re

import numpy as np
import pytest

from mrcnn import utils
from samples import shapes
from samples.shapes import SHAPE_NAMES, ShapesDataset, learning_rate_at, main, shape_box


def _dataset(count=12, seed=0, size=128):
    dataset = ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset


def _hand_made(shape_list, size=64, bg_color=(10, 20, 30)):
    """One image with the given (name, color, (cy, cx, size)) shapes, bottom to top."""
    dataset = ShapesDataset()
    for class_id, name in enumerate(SHAPE_NAMES, start=1):
        dataset.add_class(shapes.SOURCE, class_id, name)
    dataset.add_image(shapes.SOURCE, image_id=0, path=None, height=size, width=size,
                      bg_color=bg_color, shapes=shape_list)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------- dataset
def test_same_seed_same_images_and_masks_other_seed_differs():
    first, again, other = _dataset(seed=7), _dataset(seed=7), _dataset(seed=8)
    assert first.image_info == again.image_info
    for image_id in first.image_ids:
        np.testing.assert_array_equal(first.load_image(image_id), again.load_image(image_id))
        masks_a, ids_a = first.load_mask(image_id)
        masks_b, ids_b = again.load_mask(image_id)
        np.testing.assert_array_equal(masks_a, masks_b)
        np.testing.assert_array_equal(ids_a, ids_b)
    differing = sum(not np.array_equal(first.load_image(i), other.load_image(i))
                    for i in first.image_ids)
    assert differing == len(first.image_ids)


def test_masks_match_the_pixels_of_their_shapes():
    dataset = _dataset(count=20, seed=3)
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert masks.dtype == bool and masks.shape[:2] == (128, 128)
        assert class_ids.dtype == np.int32 and masks.shape[2] == class_ids.shape[0] >= 1
        assert set(class_ids.tolist()) <= {1, 2, 3}
        # Masks are visible pixels: disjoint, non-empty, and every pixel outside them is background.
        assert masks.sum(axis=2).max() == 1
        assert np.all(masks.any(axis=(0, 1)))
        np.testing.assert_array_equal(image[~masks.any(axis=2)].reshape(-1, 3) - info["bg_color"], 0)
        # Each mask covers pixels of exactly one colour: that of a shape of its class.
        for k, class_id in enumerate(class_ids):
            colors = np.unique(image[masks[..., k]], axis=0)
            assert colors.shape == (1, 3), (image_id, k, colors)
            allowed = {tuple(c) for name, c, _ in info["shapes"] if name == SHAPE_NAMES[class_id - 1]}
            assert tuple(int(v) for v in colors[0]) in allowed


def test_occlusion_hides_lower_shapes_and_drops_hidden_ones():
    shape_list = [
        ("square", (200, 0, 0), (20, 20, 4)),     # fully under the big square: dropped
        ("square", (0, 200, 0), (20, 20, 10)),    # big square, bottom-right quarter under the circle
        ("circle", (0, 0, 200), (32, 32, 6)),
        ("triangle", (250, 250, 0), (50, 12, 8)),
    ]
    dataset = _hand_made(shape_list)
    image = dataset.load_image(0)
    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, 2, 3])
    # The big square keeps its box (the circle bites a corner), the circle is whole.
    triangle = shapes.shape_mask("triangle", (50, 12, 8), 64, 64)
    np.testing.assert_array_equal(masks[..., 2], triangle)
    np.testing.assert_array_equal(utils.extract_bboxes(masks),
                                  [shape_box(20, 20, 10), shape_box(32, 32, 6),
                                   utils.extract_bboxes(triangle[..., None])[0]])
    square, circle = masks[..., 0], masks[..., 1]
    assert square[10, 10] and square[30, 10] and square[10, 30]
    assert circle[30, 30] and not square[30, 30]
    assert square.sum() == 21 * 21 - np.sum(circle[10:31, 10:31])
    assert circle.sum() == np.sum((np.mgrid[:64, :64][0] - 32) ** 2
                                  + (np.mgrid[:64, :64][1] - 32) ** 2 < 6.5 ** 2)
    np.testing.assert_array_equal(image[30, 30], (0, 0, 200))
    np.testing.assert_array_equal(image[12, 12], (0, 200, 0))
    np.testing.assert_array_equal(image[0, 63], (10, 20, 30))
    assert dataset.image_reference(0) == "square, square, circle, triangle"


def test_boxes_of_masks_lie_in_their_shapes_boxes():
    dataset = _dataset(count=20, seed=11)
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, class_ids = dataset.load_mask(image_id)
        boxes = utils.extract_bboxes(masks)
        for box, class_id in zip(boxes, class_ids):
            assert box[2] > box[0] and box[3] > box[1]
            candidates = [np.array(shape_box(*dims)) for name, _, dims in info["shapes"]
                          if name == SHAPE_NAMES[class_id - 1]]
            inside = [np.all(box[:2] >= c[:2]) and np.all(box[2:] <= c[2:]) for c in candidates]
            assert any(inside), (image_id, box, candidates)
            assert np.all(box[:2] >= 0) and np.all(box[2:] <= 128)


def test_load_shapes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="count.*0"):
        ShapesDataset().load_shapes(0, 128, 128)
    with pytest.raises(ValueError, match="at least 16.*8 x 128"):
        ShapesDataset().load_shapes(2, 8, 128)
    with pytest.raises(ValueError, match="shape name.*'hexagon'"):
        shapes.shape_mask("hexagon", (5, 5, 3), 16, 16)


def test_learning_rate_schedule_values():
    base = 0.02
    assert learning_rate_at(0, base, 1000, 100) == pytest.approx(0.002)
    assert learning_rate_at(50, base, 1000, 100) == pytest.approx(0.002 + 0.9 * 0.02 * 0.5)
    assert learning_rate_at(100, base, 1000, 100) == pytest.approx(base)
    assert learning_rate_at(550, base, 1000, 100) == pytest.approx((base + base / 100) / 2)
    assert learning_rate_at(1000, base, 1000, 100) == pytest.approx(base / 100)
    assert learning_rate_at(5000, base, 1000, 100) == pytest.approx(base / 100)


# ---------------------------------------------------------------------------- command line
def _numbers(text):
    found = {}
    for key, label in (("mAP50", r"mAP@0\.5"), ("mAP", r"mAP@\[\.5:\.95\]")):
        match = re.search(label + r"\s+([0-9.]+)", text)
        assert match, text
        found[key] = float(match.group(1))
    return found


@pytest.fixture(scope="module")
def trained_logs(tmp_path_factory):
    """A tiny training run through the command line: (logs dir, its stdout)."""
    logs = tmp_path_factory.mktemp("shapes_logs")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", "--small", "--logs", str(logs)])
    assert code == 0, out.getvalue()
    return logs, out.getvalue()


def test_train_small_writes_checkpoint_picture_and_scores(trained_logs):
    logs, output = trained_logs
    (run_dir,) = [d for d in os.listdir(logs) if d.startswith("shapes")]
    files = os.listdir(logs / run_dir)
    assert "mask_rcnn_shapes_0001.h5" in files
    assert os.path.getsize(logs / run_dir / "detections.png") > 1000
    with open(logs / run_dir / "settings.json", encoding="utf-8") as f:
        assert json.load(f)["small"] is True
    scores = _numbers(output)
    assert 0.0 <= scores["mAP"] <= scores["mAP50"] <= 1.0


def test_evaluate_and_detect_on_the_last_checkpoint(trained_logs, tmp_path, capsys):
    logs, _ = trained_logs
    assert main(["evaluate", "--weights", "last", "--logs", str(logs), "--limit", "2"]) == 0
    output = capsys.readouterr().out
    assert "on 2 held-out images" in output
    scores = _numbers(output)
    assert 0.0 <= scores["mAP"] <= scores["mAP50"] <= 1.0
    assert re.search(r"images\s+2\b", output)

    report_dir = tmp_path / "report"
    assert main(["evaluate", "--weights", "last", "--logs", str(logs), "--limit", "3",
                 "--report", str(report_dir)]) == 0
    output = capsys.readouterr().out
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["images"] == 3
    assert [c["name"] for c in metrics["per_class"]] == ["square", "circle", "triangle"]
    assert (report_dir / "report.html").stat().st_size > 1000
    assert re.search(r"^square\s+\d+ ", output, re.M), output

    picture = tmp_path / "out" / "detect.png"
    assert main(["detect", "--weights", "last", "--logs", str(logs), "--out", str(picture)]) == 0
    assert picture.stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--weights", "last"], r"--weights last: no trained shapes checkpoint in '.*empty'"),
    (["detect", "--weights", "last", "--out", "x.png"], r"no trained shapes checkpoint"),
    (["train", "--weights", "last"], r"no trained shapes checkpoint"),
    (["evaluate", "--weights", "missing.h5"], r"file not found: 'missing.h5'"),
    (["train", "--epochs", "0"], r"--epochs must be a positive integer, got 0"),
    (["evaluate", "--weights", "last", "--limit", "-3"], r"--limit must be a positive integer, got -3"),
])
def test_command_line_errors_exit_2_with_a_message(tmp_path, capsys, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(argv + ["--logs", str(empty)]) == 2
    captured = capsys.readouterr()
    assert re.search(message, captured.err), captured.err
    assert "Traceback" not in captured.err


def test_argparse_errors_exit_2(capsys):
    assert main(["detect", "--weights", "last"]) == 2          # --out is required
    assert "--out" in capsys.readouterr().err
    assert main(["fly"]) == 2
    assert main([]) == 2


def test_a_weight_file_that_is_not_hdf5_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    assert main(["evaluate", "--weights", str(bad), "--small", "--logs", str(tmp_path)]) == 2
    assert "could not load weights" in capsys.readouterr().err
