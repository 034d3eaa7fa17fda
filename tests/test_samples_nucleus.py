"""samples/nucleus.py: DSB2018 layout (RGBA images), Kaggle RLE, submit.csv round trip."""
import os

import numpy as np
import pytest
import skimage.io
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samples import nucleus

SIZE = 64


def _disc(cy, cx, r):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _write_dataset(root, folder, count, with_masks, seed=0):
    """``count`` RGBA images with 2-3 disc nuclei each; returns {id: (rgba, masks)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for k in range(count):
        image_id = f"{folder[:6]}{k:02d}"
        base = root / folder / image_id
        (base / "images").mkdir(parents=True)
        masks = [_disc(*rng.integers(12, 52, size=2), int(rng.integers(4, 9)))
                 for _ in range(int(rng.integers(2, 4)))]
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 40, size=(SIZE, SIZE, 3))
        for m in masks:
            rgba[m, :3] = (200, 180, 220)
        rgba[..., 3] = 255
        skimage.io.imsave(base / "images" / f"{image_id}.png", rgba, check_contrast=False)
        if with_masks:
            (base / "masks").mkdir()
            for j, m in enumerate(masks):
                skimage.io.imsave(base / "masks" / f"m{j}.png", (m * 255).astype(np.uint8),
                                  check_contrast=False)
        written[image_id] = (rgba, np.stack(masks, axis=-1))
    return written


@pytest.fixture
def dsb(tmp_path):
    train = _write_dataset(tmp_path, "stage1_train", 5, with_masks=True)
    test = _write_dataset(tmp_path, "stage1_test", 2, with_masks=False, seed=1)
    return tmp_path, train, test


def test_dataset_loads_rgba_images_and_masks(dsb):
    root, train, test = dsb
    val = nucleus.NucleusDataset()
    val.load_nucleus(root, "val")
    val.prepare()
    assert [info["id"] for info in val.image_info] == ["stage100"]   # every 10th sorted id
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, "train")
    dataset.prepare()
    assert [info["id"] for info in dataset.image_info] == [
        "stage101", "stage102", "stage103", "stage104"]
    assert dataset.class_names == ["BG", "nucleus"]
    for image_id in dataset.image_ids:
        rgba, masks = train[dataset.image_info[image_id]["id"]]
        image = dataset.load_image(image_id)
        np.testing.assert_array_equal(image, rgba[..., :3])       # alpha dropped
        loaded, class_ids = dataset.load_mask(image_id)
        np.testing.assert_array_equal(loaded, masks)
        np.testing.assert_array_equal(class_ids, np.ones(masks.shape[-1], np.int32))
    stage_test = nucleus.NucleusDataset()
    stage_test.load_nucleus(root, "stage1_test")
    stage_test.prepare()
    assert stage_test.num_images == 2
    masks, class_ids = stage_test.load_mask(0)
    assert masks.shape == (SIZE, SIZE, 0) and class_ids.shape == (0,)


def test_val_ids_file_and_errors(dsb, tmp_path):
    root, _, _ = dsb
    ids = tmp_path / "val.txt"
    ids.write_text("# validation\nstage102\n\nstage104\n")
    val = nucleus.NucleusDataset()
    val.load_nucleus(root, "val", val_ids=nucleus.read_val_ids(str(ids)))
    assert [info["id"] for info in val.image_info] == ["stage102", "stage104"]
    with pytest.raises(ValueError, match=r"val_ids \['nope'\]"):
        nucleus.NucleusDataset().load_nucleus(root, "train", val_ids=["nope"])
    with pytest.raises(FileNotFoundError, match="stage2_test"):
        nucleus.NucleusDataset().load_nucleus(root, "stage2_test")


def test_rle_hand_cases():
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)
    # Column-major pixels: 1 2 3 | 4 5 6 -> values 0 1 0 | 1 1 0.
    assert nucleus.rle_encode(mask) == "2 1 4 2"
    np.testing.assert_array_equal(nucleus.rle_decode("2 1 4 2", (3, 2)), mask)
    assert nucleus.rle_encode(np.zeros((3, 2), bool)) == ""
    assert nucleus.rle_encode(np.ones((3, 2), bool)) == "1 6"
    np.testing.assert_array_equal(nucleus.rle_decode("", (3, 2)), np.zeros((3, 2), bool))


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_round_trip(mask):
    np.testing.assert_array_equal(nucleus.rle_decode(nucleus.rle_encode(mask), mask.shape), mask)


@pytest.mark.parametrize("rle, message", [
    ("1 2 3", "start/length pairs, got 3 numbers"),
    ("1 x", "must hold integers"),
    ("0 2", "starts are >= 1"),
    ("3 0", "lengths >= 1"),
    ("5 3", "ends at pixel 7, past the 3x2 image"),
    ("3 2 2 1", "overlaps or precedes"),
])
def test_rle_decode_errors(rle, message):
    with pytest.raises(ValueError, match=message):
        nucleus.rle_decode(rle, (3, 2))


def test_mask_to_rle_gives_overlaps_to_the_higher_score():
    masks = np.zeros((4, 4, 3), bool)
    masks[0:2, 0:2, 0] = True      # score 0.2: loses its overlap with instance 1
    masks[1:3, 1:3, 1] = True      # score 0.9
    masks[1:2, 1:2, 2] = True      # score 0.5: entirely inside instance 1 -> dropped
    rows = nucleus.mask_to_rle("img", masks, [0.2, 0.9, 0.5])
    assert [r[0] for r in rows] == ["img", "img"]
    np.testing.assert_array_equal(nucleus.rle_decode(rows[0][1], (4, 4)), masks[..., 1])
    np.testing.assert_array_equal(nucleus.rle_decode(rows[1][1], (4, 4)),
                                  masks[..., 0] & ~masks[..., 1])
    assert nucleus.mask_to_rle("empty", np.zeros((4, 4, 0), bool), []) == [("empty", "")]
    with pytest.raises(ValueError, match="N = 2 scores"):
        nucleus.mask_to_rle("x", masks, [0.1, 0.2])


class _FakeModel:
    """Predicts the written masks (plus an overlapping copy) for train images, nothing else."""

    def __init__(self, truth):
        self.truth = truth

    def detect(self, images):
        image = images[0]
        for rgba, masks in self.truth.values():
            if np.array_equal(rgba[..., :3], image):
                doubled = np.concatenate([masks, masks[..., :1]], axis=-1)
                scores = np.linspace(0.9, 0.5, doubled.shape[-1])
                return [{"masks": doubled, "scores": scores, "class_ids": np.ones(len(scores)),
                         "rois": np.zeros((len(scores), 4))}]
        return [{"masks": np.zeros(image.shape[:2] + (0,), bool), "scores": np.zeros(0),
                 "class_ids": np.zeros(0), "rois": np.zeros((0, 4))}]


def test_submit_csv_decodes_back_to_the_predicted_masks(dsb, tmp_path):
    root, train, _ = dsb
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, "train")
    dataset.prepare()
    path, written = nucleus.detect_dataset(_FakeModel(train), dataset, str(tmp_path / "submit"))
    submission = nucleus.read_submission(path)
    assert sorted(submission) == sorted(written) == ["stage101", "stage102", "stage103",
                                                     "stage104"]
    for image_id, rles in submission.items():
        decoded = np.stack([nucleus.rle_decode(r, (SIZE, SIZE)) for r in rles], axis=-1)
        np.testing.assert_array_equal(decoded, written[image_id])
        # The duplicate of instance 0 scored lowest: nothing of it is left. The rest are
        # the true nuclei, overlaps given to the earlier (higher-scored) ones.
        truth = train[image_id][1]
        assert decoded.shape[-1] <= truth.shape[-1]
        assert not np.any(decoded.sum(axis=-1) > 1)
        np.testing.assert_array_equal(decoded.any(axis=-1), truth.any(axis=-1))
    with open(path) as f:
        assert f.readline().strip() == "ImageId,EncodedPixels"


def test_detect_cli_writes_submit_csv(dsb, tmp_path, capsys):
    root, _, test = dsb
    results = tmp_path / "results"
    status = nucleus.main(["detect", "--dataset", str(root), "--subset", "stage1_test",
                           "--weights", "random", "--tiny", "--results", str(results),
                           "--logs", str(tmp_path / "logs")])
    assert status == 0
    (run,) = os.listdir(results)
    assert run.startswith("submit_")
    submission = nucleus.read_submission(results / run / "submit.csv")
    assert sorted(submission) == sorted(test)          # one entry per image, even if empty
    for rles in submission.values():
        if rles:
            decoded = np.stack([nucleus.rle_decode(r, (SIZE, SIZE)) for r in rles], axis=-1)
            assert decoded.any(axis=(0, 1)).all() and decoded.sum(axis=-1).max() == 1


def test_cli_errors(tmp_path, capsys):
    assert nucleus.main(["detect", "--dataset", str(tmp_path), "--weights", "random"]) == 2
    assert "detect needs --subset" in capsys.readouterr().err
    assert nucleus.main(["detect", "--dataset", str(tmp_path), "--subset", "stage1_test",
                         "--weights", "random"]) == 2
    assert "nucleus subset folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_short_train(dsb, tmp_path):
    root, _, _ = dsb
    status = nucleus.main(["train", "--dataset", str(root), "--weights", "random", "--tiny",
                           "--steps", "1", "--epochs", "1", "--logs", str(tmp_path / "logs")])
    assert status == 0
    (run,) = os.listdir(tmp_path / "logs")
    assert sorted(f for f in os.listdir(tmp_path / "logs" / run) if f.endswith(".h5")) == [
        "mask_rcnn_nucleus_0001.h5"]
