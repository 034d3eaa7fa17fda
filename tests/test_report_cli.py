"""``mrcnn evaluate``: the report of a (random-weights, small) model on COCO and labelme data,
its files, its bad-input errors; and the HTML page opened in a real headless Chromium."""
import csv
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import skimage.io

from mrcnn import cli, report_files
from mrcnn.datasets import write_coco_json
from tests.test_report import hand_made_report

SMALL = "tests.export_helpers:ExportConfig"   # 4 classes: background + the 3 shapes
SHAPES = ["square", "circle", "triangle"]


@pytest.fixture(scope="module")
def coco_shapes(tmp_path_factory):
    """A COCO JSON of 4 shapes images (PNG files) and one unreadable image file."""
    from samples.shapes import make_dataset

    root = tmp_path_factory.mktemp("coco_shapes")
    dataset = make_dataset(4, seed=5, size=128)
    for i in dataset.image_ids:
        path = root / f"shape_{i}.png"
        skimage.io.imsave(path, dataset.load_image(i), check_contrast=False)
        dataset.image_info[i]["path"] = str(path)
    data = write_coco_json(dataset, root / "instances.json")
    data["images"].append({"id": 99, "file_name": "broken.png", "height": 128, "width": 128})
    (root / "broken.png").write_bytes(b"not a png")
    with open(root / "instances.json", "w") as f:
        json.dump(data, f)
    return root


def test_evaluate_writes_every_file_and_prints_the_table(coco_shapes, tmp_path, capsys):
    out = tmp_path / "report"
    rc = cli.main(["evaluate", "--weights", "random", "--config", SMALL, "--from", "coco",
                   str(coco_shapes / "instances.json"), "--out", str(out), "--gallery", "2",
                   "--score-threshold", "0.3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for name in report_files.FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 4 and metrics["score_threshold"] == 0.3
    assert [s["file_name"] for s in metrics["skipped"]] == [str(coco_shapes / "broken.png")]
    assert [c["name"] for c in metrics["per_class"]] == SHAPES
    assert set(metrics["summary"]) == {"bbox", "segm"}
    ground_truth = json.loads((out / "ground_truth.json").read_text())
    assert len(ground_truth["annotations"]) == sum(c["gt"] for c in metrics["per_class"])
    assert sum(c["gt"] for c in metrics["per_class"]) > 3
    with open(out / "confusion.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ground truth \\ prediction"] + SHAPES + ["background"]
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_array_equal(matrix, metrics["confusion"]["matrix"])
    # misses + matches of each class = its ground truth count
    assert matrix[:3].sum(axis=1).tolist() == [c["gt"] for c in metrics["per_class"]]
    detections = json.loads((out / "detections.json").read_text())
    assert all(d["image_id"] in {im["id"] for im in ground_truth["images"]} for d in detections)
    assert "5/5" in captured.err                         # the progress bar
    assert "class        gt    AP  AP50" in captured.out
    assert f"1 image(s) skipped (unreadable): {coco_shapes / 'broken.png'}" in captured.out


def test_evaluate_reads_labelme_data_with_the_convert_flags(tmp_path, capsys):
    image = np.full((96, 96, 3), 60, dtype=np.uint8)
    skimage.io.imsave(tmp_path / "one.png", image, check_contrast=False)
    shapes = [{"label": "circle", "points": [[10, 10], [40, 10], [40, 40], [10, 40]],
               "shape_type": "polygon"}]
    (tmp_path / "one.json").write_text(json.dumps({
        "imagePath": "one.png", "imageHeight": 96, "imageWidth": 96, "shapes": shapes}))
    out = tmp_path / "report"
    rc = cli.main(["evaluate", "--weights", "random", "--config", SMALL, "--from", "labelme",
                   str(tmp_path), "--data-class-names", "square,circle,triangle",
                   "--out", str(out), "--gallery", "0"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(c["name"], c["gt"]) for c in metrics["per_class"]] == [
        ("square", 0), ("circle", 1), ("triangle", 0)]


def test_evaluate_refuses_a_score_threshold_outside_zero_one(coco_shapes, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--weights", "random", "--config", SMALL, "--from", "coco",
                  str(coco_shapes / "instances.json"), "--out", str(tmp_path),
                  "--score-threshold", "1.5"])
    assert exit_info.value.code == 2
    assert "--score-threshold: must be a number in [0, 1], got 1.5" in capsys.readouterr().err


def test_evaluate_refuses_a_flag_of_another_format(coco_shapes, tmp_path, capsys):
    rc = cli.main(["evaluate", "--weights", "random", "--config", SMALL, "--from", "coco",
                   str(coco_shapes / "instances.json"), "--out", str(tmp_path),
                   "--data-class-names", "a,b"])
    assert rc == 2
    assert "--data-class-names do(es) not apply to --from coco" in capsys.readouterr().err


def test_evaluate_names_both_sides_of_a_class_mismatch(coco_shapes, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("square\ncircle\nhexagon\n")
    rc = cli.main(["evaluate", "--weights", "random", "--config", SMALL, "--from", "coco",
                   str(coco_shapes / "instances.json"), "--class-names", str(names),
                   "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the dataset has ['triangle'] that the model does not know" in err
    assert "the model has ['hexagon'] that the dataset lacks" in err
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_an_empty_coco_file(tmp_path, capsys):
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "annotations": [],
                                                     "categories": [{"id": 1, "name": "a"}]}))
    rc = cli.main(["evaluate", "--weights", "random", "--config", SMALL, "--from", "coco",
                   str(tmp_path / "empty.json"), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "the dataset is empty" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH: the CI installs Debian's `chromium` package "
                "(apt-get install -y chromium); the HTML page is not checked in a browser")


def test_report_page_loads_in_headless_chromium(tmp_path):
    browser = _chromium()
    result = hand_made_report()
    folder = tmp_path / "report"
    report_files.write(result, str(folder), gallery=3,
                       load_image=lambda row: np.full((64, 64, 3), 90, dtype=np.uint8))
    moved = tmp_path / "moved"                  # relative links: the folder can move
    shutil.move(str(folder), str(moved))
    url = (moved / "report.html").as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=60)
    dom = done.stdout
    assert done.returncode == 0 and "<body" in dom, done.stderr[-2000:]
    assert 'data-state="loaded"' in dom, dom[:500]
    assert 'data-errors=""' in dom and 'data-broken=""' in dom, dom[:500]
    sizes = dict(re.findall(r'<img[^>]*src="([^"]+)"[^>]*data-natural="(\d+x\d+)"', dom))
    assert set(sizes) == {"confusion.png", "pr_curves.png", "errors/01_image_2.png",
                          "errors/02_image_1.png", "errors/03_image_3.png"}
    for src, size in sizes.items():
        width, height = (int(v) for v in size.split("x"))
        assert width > 100 and height > 100, (src, size)
    shot = tmp_path / "screenshot.png"
    done = subprocess.run(flags + ["--window-size=1200,1600", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    pixels = skimage.io.imread(shot)
    assert pixels.shape[:2] == (1600, 1200) and pixels.std() > 10
    keep = os.environ.get("MRCNN_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "report_page.png"))
