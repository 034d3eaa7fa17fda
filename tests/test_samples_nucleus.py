"""samples/nucleus.py: DSB2018 layout (RGBA images), Kaggle RLE, submit.csv round trip."""
import os

import numpy as np
import pytest
import skimage.io
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samples import nucleus
from tests.conftest import SHARED_DATA

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


def test_evaluate_scores_perfect_predictions_one(dsb, capsys):
    root, train, _ = dsb
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, "train")
    dataset.prepare()
    metrics = nucleus.evaluate_nucleus(_FakeModel(train), dataset, max_dets=400)
    # The duplicate of instance 0 (lowest score) is a false positive for COCO AP at the
    # end of the ranking (precision stays 1 up to full recall), and removed as an overlap
    # for the DSB2018 metric.
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["segm"]["AP50"] == pytest.approx(1.0)
    ids = ("stage101", "stage102", "stage103", "stage104")
    assert [p["id"] for p in metrics["per_image"]] == list(ids)
    assert [p["gt"] for p in metrics["per_image"]] == [train[i][1].shape[-1] for i in ids]
    # Nuclei that touch no other score 1 on the DSB2018 metric; where two synthetic
    # discs overlap, the lower-scored one loses the shared pixels and may miss IoU 0.95.
    separate = [p["dsb2018"] for p in metrics["per_image"]
                if train[p["id"]][1].sum(axis=-1).max() <= 1]
    assert len(separate) >= 1 and separate == [1.0] * len(separate)
    assert metrics["dsb2018"] == np.mean([p["dsb2018"] for p in metrics["per_image"]])
    assert "maxDets=400" in capsys.readouterr().out


def test_evaluate_min_score_and_misses(dsb):
    root, train, _ = dsb
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, "train")
    dataset.prepare()
    # min_score 0.95 keeps no detection: every image scores 0 on the DSB2018 metric
    metrics = nucleus.evaluate_nucleus(_FakeModel(train), dataset, max_dets=100, min_score=0.95)
    assert metrics["dsb2018"] == 0.0
    assert [p["detections"] for p in metrics["per_image"]] == [0, 0, 0, 0]


def test_remove_overlaps_keeps_score_order():
    masks = np.zeros((4, 4, 3), bool)
    masks[0:2, 0:2, 0] = True
    masks[1:3, 1:3, 1] = True
    masks[1:2, 1:2, 2] = True
    kept, indices = nucleus.remove_overlaps(masks, [0.2, 0.9, 0.5])
    np.testing.assert_array_equal(indices, [1, 0])
    np.testing.assert_array_equal(kept[..., 0], masks[..., 1])
    np.testing.assert_array_equal(kept[..., 1], masks[..., 0] & ~masks[..., 1])


def test_detect_dataset_writes_an_overlay_per_image(dsb, tmp_path):
    root, train, _ = dsb
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, "train")
    dataset.prepare()
    out = tmp_path / "submit"
    nucleus.detect_dataset(_FakeModel(train), dataset, str(out), min_score=0.5, overlays=True)
    assert sorted(os.listdir(out)) == ["stage101.png", "stage102.png", "stage103.png",
                                       "stage104.png", "submit.csv"]
    picture = skimage.io.imread(out / "stage101.png")
    assert picture.ndim == 3 and min(picture.shape[:2]) > 32


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


# ----------------------------------------------------------------------------- real data
CROWDED = {"432f367a4c5b5674de2e2977744d10289a064e5704b21af6607b4975be47c580": 329,
           "d6eb7ce7723e2f6dc13b90b41a29ded27dbd815bad633fdf582447c686018896": 249}


@pytest.fixture(scope="module")
def crowded():
    """A NucleusDataset of the two crowdest shared images (masks cached after one read)."""
    root = os.path.join(SHARED_DATA, "dsb2018_45")
    if not os.path.isdir(os.path.join(root, nucleus.TRAIN_FOLDER)):
        pytest.skip(f"real data folder {root} is absent (it lives beside the checkout as "
                    "../shared/data)")
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, "train")
    dataset.image_info = [info for info in dataset.image_info if info["id"] in CROWDED]
    dataset.prepare()
    return dataset


def test_validation_split_is_nine_fixed_images(shared_data):
    root = os.path.join(shared_data, "dsb2018_45")
    val = nucleus.NucleusDataset()
    val.load_nucleus(root, "val")
    train = nucleus.NucleusDataset()
    train.load_nucleus(root, "train")
    ids = sorted(os.listdir(os.path.join(root, nucleus.TRAIN_FOLDER)))
    assert [info["id"] for info in val.image_info] == ids[::5]
    assert len(val.image_info) == 9 and len(train.image_info) == 36


def test_crowded_images_keep_every_instance_up_to_max_gt(crowded):
    """329 and 249 nuclei pass load_image_gt / build_batch, all of them or MAX_GT_INSTANCES."""
    from mrcnn import utils
    from mrcnn.data import AnchorCache, build_batch

    for max_gt in (400, 100):
        class Whole(nucleus.NucleusConfig):   # whole images: no crop may cut a nucleus away
            IMAGES_PER_GPU = 1
            IMAGE_RESIZE_MODE = "pad64"
            IMAGE_MIN_SCALE = 1.0
            MAX_GT_INSTANCES = max_gt

        config = Whole()
        for image_id in crowded.image_ids:
            expected = CROWDED[crowded.image_info[image_id]["id"]]
            masks, class_ids = crowded.load_mask(image_id)
            assert masks.shape == (520, 348, expected)
            np.testing.assert_array_equal(class_ids, [1] * expected)
            batch = build_batch(crowded, config, [image_id], AnchorCache(config),
                                np.random.default_rng(0))
            gt_class_ids, gt_boxes = batch[4][0], batch[5][0]
            kept = min(expected, max_gt)
            np.testing.assert_array_equal(gt_class_ids, [1] * kept + [0] * (max_gt - kept))
            assert batch[0].shape == (1, 576, 384, 3)       # 520 x 348 padded to 64s
            boxes = utils.extract_bboxes(np.pad(masks, [(28, 28), (18, 18), (0, 0)]))
            if kept == expected:
                np.testing.assert_array_equal(gt_boxes[:kept], boxes)
            else:   # a random subset of distinct instances
                rows = {tuple(b) for b in boxes.tolist()}
                picked = [tuple(b) for b in gt_boxes[:kept].astype(int).tolist()]
                assert set(picked) <= rows and len(set(picked)) == kept


def test_mask_cache_gives_the_files_masks(crowded):
    image_id = crowded.image_ids[0]
    first, _ = crowded.load_mask(image_id)
    assert "mask_labels" in crowded.image_info[image_id]
    read, _ = nucleus.MaskFolderDataset.load_mask(crowded, image_id)   # from the files
    np.testing.assert_array_equal(first, read)


def test_trains_steps_on_two_crowded_images(crowded, tmp_path):
    """Two steps of the sample's model on the two crowdest images; checkpoint written."""
    import keras

    from mrcnn.model import MaskRCNN

    dataset = crowded

    class Short(nucleus.NucleusConfig):
        IMAGES_PER_GPU = 2
        STEPS_PER_EPOCH = 2
        VALIDATION_STEPS = 1

    keras.utils.set_random_seed(0)
    model = MaskRCNN("training", Short(), str(tmp_path))
    history = model.train(dataset, dataset, learning_rate=0.002, epochs=1, layers="all",
                          augmentation=nucleus.nucleus_augmentation(), verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert os.path.isfile(os.path.join(model.log_dir, "mask_rcnn_nucleus_0001.h5"))
