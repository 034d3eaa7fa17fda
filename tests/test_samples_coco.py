"""samples/coco.py: evaluate and train end to end on coco128, weight lookup and CLI errors."""
import json
import os
import urllib.error
import urllib.request

import pytest

from mrcnn import cli_args
from samples import coco as sample


def _coco128(shared_data):
    root = os.path.join(shared_data, "coco128")
    return (os.path.join(root, "annotations", "instances_val.json"),
            os.path.join(root, "annotations", "instances_train.json"),
            os.path.join(root, "images"))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A weight file of a random tiny COCO model (81 classes), as --model PATH."""
    from mrcnn.model import MaskRCNN

    config = sample.make_config(sample.CocoConfig, NUM_CLASSES=81, **sample.TINY_OVERRIDES)
    folder = tmp_path_factory.mktemp("weights")
    model = MaskRCNN("inference", config, str(folder))
    path = str(folder / "tiny_random.h5")
    model.save_weights(path)
    return path


def test_evaluate_end_to_end_prints_bbox_and_segm_tables(shared_data, tiny_weights, tmp_path,
                                                         capsys):
    val_json, _, images = _coco128(shared_data)
    results_path = tmp_path / "results.json"
    status = sample.main(["evaluate", "--annotations", val_json, "--images", images,
                          "--model", tiny_weights, "--limit", "5", "--tiny",
                          "--image-size", "128", "--logs", str(tmp_path),
                          "--results", str(results_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "=== COCO bbox evaluation (5 images) ===" in out
    assert "=== COCO segm evaluation (5 images) ===" in out
    # pycocotools' own tables: 6 AP and 6 AR lines for each type.
    assert out.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]") == 2
    assert out.count("Average Recall") == 12
    assert "Evaluate annotation type *bbox*" in out and "Evaluate annotation type *segm*" in out
    with open(val_json) as f:
        gt = json.load(f)
    first_five = sorted(img["id"] for img in gt["images"])[:5]
    category_ids = {c["id"] for c in gt["categories"]}
    with open(results_path) as f:
        results = json.load(f)
    assert results, "DETECTION_MIN_CONFIDENCE 0 gives detections even with random weights"
    assert {r["image_id"] for r in results} <= set(first_five)
    assert {r["category_id"] for r in results} <= category_ids
    assert all(len(r["bbox"]) == 4 and "counts" in r["segmentation"] for r in results)


def test_short_train_on_coco128_writes_a_checkpoint(shared_data, tmp_path, capsys):
    _, train_json, images = _coco128(shared_data)
    status = sample.main(["train", "--annotations", train_json, "--images", images,
                          "--model", "random", "--tiny", "--image-size", "128", "--steps", "2",
                          "--epochs", "1", "--logs", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "Training heads to epoch 1 at learning rate 0.001" in out
    runs = [d for d in os.listdir(tmp_path) if d.startswith("coco")]
    assert len(runs) == 1
    assert sorted(f for f in os.listdir(tmp_path / runs[0]) if f.endswith(".h5")) == [
        "mask_rcnn_coco_0001.h5"]


def test_scaled_schedule():
    assert sample.scaled_schedule() == [("heads", 40, 1.0), ("4+", 120, 1.0), ("all", 160, 0.1)]
    assert sample.scaled_schedule(160) == sample.scaled_schedule()
    assert [s[1] for s in sample.scaled_schedule(8)] == [2, 6, 8]
    assert [s[1] for s in sample.scaled_schedule(1)] == [1, 1, 1]
    assert [s[1] for s in sample.scaled_schedule(2)] == [1, 2, 2]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_download_without_network_gives_a_clear_message(shared_data, tmp_path, monkeypatch,
                                                        no_network, capsys):
    val_json, _, images = _coco128(shared_data)
    monkeypatch.setattr(cli_args, "ROOT_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    status = sample.main(["evaluate", "--annotations", val_json, "--images", images,
                          "--model", "coco", "--download", "--tiny", "--logs", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "could not download mask_rcnn_coco.h5" in err
    assert f"save it as {tmp_path / 'mask_rcnn_coco.h5'}" in err
    assert "Traceback" not in err
    assert not [f for f in os.listdir(tmp_path) if "mask_rcnn_coco" in f]   # no partial file


def test_missing_coco_weights_say_where_to_put_them(shared_data, tmp_path, monkeypatch, capsys):
    val_json, _, images = _coco128(shared_data)
    monkeypatch.setattr(cli_args, "ROOT_DIR", str(tmp_path / "repo"))
    monkeypatch.chdir(tmp_path)
    status = sample.main(["evaluate", "--annotations", val_json, "--images", images,
                          "--model", "coco", "--tiny", "--logs", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"Put the file at {tmp_path / 'repo' / 'mask_rcnn_coco.h5'}" in err
    assert str(tmp_path / "mask_rcnn_coco.h5") in err        # the current folder is searched too
    assert "--download" in err


def test_missing_imagenet_weights_say_where_to_put_them(shared_data, tmp_path, monkeypatch,
                                                        capsys):
    val_json, _, images = _coco128(shared_data)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    status = sample.main(["evaluate", "--annotations", val_json, "--images", images,
                          "--model", "imagenet", "--tiny", "--logs", str(tmp_path)])
    assert status == 2
    expected = tmp_path / "keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    err = capsys.readouterr().err
    assert f"ImageNet weights not found at {expected}" in err and "--download" in err


def test_model_last_without_checkpoints(shared_data, tmp_path, capsys):
    val_json, _, images = _coco128(shared_data)
    status = sample.main(["evaluate", "--annotations", val_json, "--images", images,
                          "--model", "last", "--tiny", "--logs", str(tmp_path / "nothing")])
    assert status == 2
    assert "--model last: no checkpoint mask_rcnn_coco_*.h5 trained with --tiny" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--annotations", "/no/such.json", "--images", "."],
     "COCO annotation file not found: '/no/such.json'"),
    (["--annotations", "{val}", "--images", "/no/images"], "image folder not found: '/no/images'"),
    (["--annotations", "{val}"], "--annotations and --images go together"),
    (["--dataset", "/no/coco"], "COCO dataset folder not found: '/no/coco'"),
    ([], "give --dataset DIR"),
    (["--annotations", "{val}", "--images", "{images}", "--image-size", "100"],
     "--image-size must be a positive multiple of 64, got 100"),
    (["--annotations", "{val}", "--images", "{images}", "--model", "/no/weights.h5"],
     "weights file not found: '/no/weights.h5'"),
])
def test_bad_arguments_exit_2(shared_data, tmp_path, capsys, extra, message):
    val_json, _, images = _coco128(shared_data)
    extra = [e.format(val=val_json, images=images) for e in extra]
    argv = ["evaluate", "--tiny", "--logs", str(tmp_path)] + extra
    if "--model" not in argv:
        argv += ["--model", "random"]
    assert sample.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_empty_annotation_file_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert sample.main(["evaluate", "--annotations", str(empty), "--images", str(tmp_path),
                        "--model", "random"]) == 2
    assert f"COCO annotation file '{empty}' is empty" in capsys.readouterr().err
