"""The ``mrcnn`` command (mrcnn.cli): inputs, class names, detect on real photos, export."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mrcnn import cli
from mrcnn.cli_args import CliError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = "tests.export_helpers:ExportConfig"


def test_expand_inputs_takes_files_folders_and_globs(tmp_path):
    for name in ("b.jpg", "a.PNG", "notes.txt", "c.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    got = cli.expand_inputs([str(tmp_path), str(tmp_path / "sub" / "*.png"),
                             str(tmp_path / "b.jpg"), str(tmp_path / "missing.jpg")])
    names = [os.path.relpath(p, tmp_path) for p in got]
    assert names == ["a.PNG", "b.jpg", "c.jpeg", os.path.join("sub", "d.png"), "missing.jpg"]


def test_class_names_with_and_without_background(tmp_path):
    assert cli.class_names(None, 3) == ["BG", "class 1", "class 2"]
    path = tmp_path / "names.txt"
    path.write_text("cat\ndog\n")
    assert cli.class_names(str(path), 3) == ["BG", "cat", "dog"]
    path.write_text("BG\ncat\ndog\n")
    assert cli.class_names(str(path), 3) == ["BG", "cat", "dog"]
    with pytest.raises(CliError, match="has 2 names; the model has 4 classes"):
        path.write_text("cat\ndog\n")
        cli.class_names(str(path), 4)


def test_config_flag_must_name_a_config_class():
    with pytest.raises(CliError, match="MODULE:CLASS"):
        cli.load_config_class("tests.export_helpers")
    with pytest.raises(CliError, match="not a Config subclass"):
        cli.load_config_class("tests.export_helpers:small_backbone")
    assert cli.load_config_class(SMALL).NAME == "export"


def test_usage_errors_exit_2_without_a_traceback(tmp_path, capsys):
    rc = cli.main(["detect", "--weights", "random", "--config", "nope:Nope", "x.jpg",
                   "--out", str(tmp_path)])
    assert rc == 2
    assert "cannot import 'nope'" in capsys.readouterr().err


def test_python_dash_m_mrcnn_lists_the_subcommands():
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", "mrcnn", "--help"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"detect .*\n.*export .*\n(.*\n)*.*convert ", done.stdout), done.stdout


def test_setup_py_installs_the_console_script_and_extras():
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        text = f.read()
    assert '"mrcnn = mrcnn.cli:main"' in text
    assert '"onnx": [' in text and '"litert": [' in text
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert 'pip install -e ".[dev,onnx,litert,jax]"' in f.read()


def test_detect_on_demo_images_writes_overlays_and_coco_results(shared_data, tmp_path, capsys):
    from pycocotools.coco import COCO
    folder = os.path.join(shared_data, "demo_images")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    rc = cli.main(["detect", "--weights", "random", "--config", SMALL, folder, str(broken),
                   "--out", str(out)])
    assert rc == 0
    pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    expected = sorted(os.path.splitext(p)[0] + ".png" for p in os.listdir(folder)
                      if p.endswith(".jpg"))
    assert len(pngs) == 29 and pngs == expected
    summary = capsys.readouterr().out
    assert re.search(r"29 images, \d+ detections, 1 skipped \(unreadable\): .*broken\.jpg", summary)
    gt = COCO(str(out / "images.json"))
    with open(out / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert len(gt.getImgIds()) == 29
    if results:  # random weights may detect nothing; the file must load either way
        dt = gt.loadRes(str(out / "results.json"))
        ann = dt.loadAnns(dt.getAnnIds())[0]
        mask = dt.annToMask(ann)
        image = gt.loadImgs(ann["image_id"])[0]
        assert mask.shape == (image["height"], image["width"])
        # loadRes takes the box area when a bbox is given; the mask lies inside the box.
        assert ann["area"] == ann["bbox"][2] * ann["bbox"][3]
        assert mask.sum() <= ann["area"]


def test_export_subcommand_writes_a_saved_model(tmp_path, capsys):
    out = tmp_path / "model"
    rc = cli.main(["detect", "--weights", "random", "--config", SMALL, "--export",
                   "tf_saved_model", "--out", str(out)])
    assert rc == 0
    assert os.path.isfile(out / "saved_model.pb")
    assert f"exported tf_saved_model to {out}" in capsys.readouterr().out
