"""mrcnn.report: per-class AP against pycocotools, hand-counted confusion and TP / FP / FN,
the operating point on the PR curve, and the checks on bad input. No model is built here."""
import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from mrcnn import report as rep
from mrcnn.coco import coco_from_dict
from mrcnn.dataset import Dataset

H = W = 64
NAMES = ["BG", "a", "b", "c"]


def box_mask(y1, x1, y2, x2, height=H, width=W):
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def ground_truth(items):
    """items: [((y1, x1, y2, x2), class id (negative: crowd))] -> (masks, class_ids)."""
    if not items:
        return np.zeros((H, W, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
    return (np.stack([box_mask(*b) for b, _ in items], axis=-1),
            np.array([c for _, c in items], dtype=np.int32))


def detections(items):
    """items: [((y1, x1, y2, x2), class id, score)] -> a detect() result dict."""
    if not items:
        return {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
                "scores": np.zeros(0, np.float32), "masks": np.zeros((H, W, 0), bool)}
    return {"rois": np.array([b for b, _, _ in items], dtype=np.int32),
            "class_ids": np.array([c for _, c, _ in items], dtype=np.int32),
            "scores": np.array([s for _, _, s in items], dtype=np.float32),
            "masks": np.stack([box_mask(*b) for b, _, _ in items], axis=-1)}


def hand_made_report(score_threshold=0.5, iou_type="segm"):
    """Three images, each error kind once:

    image 1: a found (TP a); b missed (FN b); a c where nothing is (FP c).
    image 2: an a called b (swap: FP b, FN a); c found twice (TP c, then a duplicate: FP c);
             a b inside a crowd region of b (not counted); an a below the threshold.
    image 3: a c found only at score 0.4 (below 0.5: FN c).
    """
    builder = rep.ReportBuilder(NAMES, score_threshold=score_threshold, iou_type=iou_type)
    builder.add_image(*ground_truth([((0, 0, 10, 10), 1), ((20, 20, 30, 30), 2)]),
                      detections([((0, 0, 10, 10), 1, 0.9), ((40, 40, 50, 50), 3, 0.8)]))
    builder.add_image(*ground_truth([((0, 0, 10, 10), 1), ((20, 20, 30, 30), 3),
                                     ((40, 40, 60, 60), -2)]),
                      detections([((0, 0, 10, 10), 2, 0.9), ((20, 20, 30, 30), 3, 0.95),
                                  ((20, 20, 30, 30), 3, 0.7), ((45, 45, 55, 55), 2, 0.6),
                                  ((50, 0, 60, 10), 1, 0.3)]))
    builder.add_image(*ground_truth([((0, 0, 10, 10), 3)]),
                      detections([((0, 0, 10, 10), 3, 0.4)]))
    return builder.finish()


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_confusion_matrix_and_counts_equal_the_hand_count(iou_type):
    result = hand_made_report(iou_type=iou_type)
    assert result.confusion_labels == ["a", "b", "c", "background"]
    # rows: ground truth a, b, c, background; columns: predicted a, b, c, background
    np.testing.assert_array_equal(result.confusion, [[1, 1, 0, 0],     # a: found, swapped to b
                                                     [0, 0, 0, 1],     # b: missed
                                                     [0, 0, 1, 1],     # c: found, missed
                                                     [0, 0, 2, 0]])    # 2 false c
    counts = {c["name"]: (c["gt"], c["TP"], c["FP"], c["FN"]) for c in result.per_class}
    assert counts == {"a": (2, 1, 0, 1), "b": (1, 0, 1, 1), "c": (2, 1, 2, 1)}
    by_name = {c["name"]: c for c in result.per_class}
    assert (by_name["a"]["precision"], by_name["a"]["recall"]) == (1.0, 0.5)
    assert by_name["a"]["F1"] == pytest.approx(2 / 3, abs=1e-15)
    assert (by_name["b"]["precision"], by_name["b"]["recall"], by_name["b"]["F1"]) == (0, 0, 0)
    assert (by_name["c"]["precision"], by_name["c"]["recall"]) == (1 / 3, 0.5)
    rows = [(im["TP"], im["FP"], im["FN"], im["misses"], im["false_detections"], im["swaps"],
             im["on_crowd"]) for im in result.images]
    assert rows == [(1, 1, 1, [1], [1], [], []),
                    (1, 2, 1, [], [2], [(0, 0)], [3]),
                    (0, 0, 1, [0], [], [], [])]
    assert [im["image_id"] for im in result.worst_images(2)] == [2, 1]


def test_a_lower_threshold_counts_the_low_detections():
    result = hand_made_report(score_threshold=0.25)
    # image 2's a at 0.3 is now a false detection; image 3's c at 0.4 is found.
    np.testing.assert_array_equal(result.confusion, [[1, 1, 0, 0], [0, 0, 0, 1],
                                                     [0, 0, 2, 0], [1, 0, 2, 0]])


def test_class_swap_takes_the_best_overlap_and_each_object_once():
    builder = rep.ReportBuilder(NAMES, score_threshold=0.5, iou_type="bbox")
    # two b detections over one a object: the higher score takes the swap, the other is false
    builder.add_image(*ground_truth([((0, 0, 20, 20), 1)]),
                      detections([((0, 0, 20, 18), 2, 0.6), ((0, 0, 20, 20), 2, 0.8)]))
    result = builder.finish()
    np.testing.assert_array_equal(result.confusion, [[0, 1, 0, 0], [0, 0, 0, 0],
                                                     [0, 0, 0, 0], [0, 1, 0, 0]])
    assert result.images[0]["swaps"] == [(1, 0)]
    assert result.images[0]["false_detections"] == [0]


def random_fixture(seed=7, images=12):
    """Several classes, jittered and spurious detections, random scores, a crowd region."""
    rng = np.random.default_rng(seed)
    builder_items = []
    for k in range(images):
        gts, dets = [], []
        for _ in range(rng.integers(1, 5)):
            y, x = rng.integers(0, 44, size=2)
            h, w = rng.integers(6, 20, size=2)
            cls = int(rng.integers(1, 4))
            gts.append(((y, x, y + h, x + w), cls))
            if rng.random() < 0.85:
                dy, dx = rng.integers(-3, 4, size=2)
                label = cls if rng.random() < 0.8 else int(rng.integers(1, 4))
                dets.append(((max(y + dy, 0), max(x + dx, 0), y + h + dy, x + w + dx), label,
                             float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, 50, size=2)
            dets.append(((y, x, y + 10, x + 12), int(rng.integers(1, 4)), float(rng.random())))
        if k == 3:
            gts.append(((40, 40, 64, 64), -1))
            dets.append(((44, 44, 60, 60), 1, 0.77))
        builder_items.append((gts, dets))
    return builder_items


def pycocotools_class_ap(result, iou_type, class_id):
    """(AP, AP50, AP75) of one category from COCOeval with params.catIds = [class_id]."""
    coco_gt = coco_from_dict(result.ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(d) for d in result.detections])
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.catIds = [class_id]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return tuple(None if v == -1 else float(v) for v in evaluator.stats[:3])


def test_per_class_ap_equals_pycocotools_per_category():
    builder = rep.ReportBuilder(NAMES, score_threshold=0.5)
    for gts, dets in random_fixture():
        builder.add_image(*ground_truth(gts), detections(dets))
    result = builder.finish()
    assert len(result.detections) > 20
    seen = set()
    for row in result.per_class:
        for iou_type, suffix in (("segm", ""), ("bbox", "_bbox")):
            expected = pycocotools_class_ap(result, iou_type, row["class_id"])
            got = (row["AP" + suffix], row["AP50" + suffix], row["AP75" + suffix])
            assert got == expected, (row["name"], iou_type)
            seen.update(expected)
    assert len(seen) >= 6 and max(seen) < 1.0   # a fixture with distinct, imperfect values


def test_counts_at_the_threshold_are_the_pr_curve_at_that_score():
    builder = rep.ReportBuilder(NAMES, score_threshold=0.45)
    for gts, dets in random_fixture(seed=11):
        builder.add_image(*ground_truth(gts), detections(dets))
    result = builder.finish()
    coco_gt = coco_from_dict(result.ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes([dict(d) for d in result.detections]),
                             "segm")
        evaluator.evaluate()
        evaluator.accumulate()
    for k, row in enumerate(result.per_class):
        curve = result.curves[row["class_id"]]
        recall, precision = rep.operating_point(curve, 0.45)
        assert (recall, precision) == (row["recall"], row["precision"]), row["name"]
        # pycocotools' own curve: the score where each recall level is first reached is
        # >= the threshold exactly up to the recall of the counts.
        reach = evaluator.eval["scores"][0, :, k, 0, -1]
        reached = evaluator.params.recThrs <= recall
        assert np.all(reach[reached] >= 0.45) and np.all(reach[~reached] < 0.45), row["name"]
        np.testing.assert_array_equal(curve["precision"],
                                      evaluator.eval["precision"][0, :, k, 0, -1])
        assert row["TP"] > 0 and row["FP"] > 0 and row["FN"] > 0


def test_no_detection_at_all_gives_zero_ap_and_all_misses():
    builder = rep.ReportBuilder(NAMES)
    builder.add_image(*ground_truth([((0, 0, 10, 10), 1), ((20, 20, 30, 30), 3)]),
                      detections([]))
    result = builder.finish()
    assert [(c["AP"], c["FN"]) for c in result.per_class] == [(0.0, 1), (None, 0), (0.0, 1)]
    np.testing.assert_array_equal(result.confusion[:, 3], [1, 0, 1, 0])


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True])
def test_score_threshold_outside_zero_one_is_refused(value):
    with pytest.raises(ValueError, match=r"score_threshold must be a number in \[0, 1\], got"):
        rep.ReportBuilder(NAMES, score_threshold=value)


def test_class_name_mismatch_lists_both_sides():
    with pytest.raises(ValueError) as err:
        rep.match_class_names(["BG", "cat", "dog"], ["BG", "cat", "cow"])
    message = str(err.value)
    assert "the dataset has ['cow'] that the model does not know" in message
    assert "the model has ['dog'] that the dataset lacks" in message
    np.testing.assert_array_equal(rep.match_class_names(["BG", "a", "b"], ["BG", "b", "a"]),
                                  [0, 2, 1])


def test_builder_refuses_unknown_class_ids_and_nothing_to_score():
    builder = rep.ReportBuilder(NAMES)
    with pytest.raises(ValueError, match=r"class ids \[4\] .* are not among the 3 classes"):
        builder.add_image(*ground_truth([((0, 0, 5, 5), 1)]),
                          detections([((0, 0, 5, 5), 4, 0.9)]))
    with pytest.raises(ValueError, match="no image to evaluate"):
        builder.finish()


# ---------------------------------------------------------------------------- report()
class BoxDataset(Dataset):
    """Images of hand-made ground truth; an image whose path is "broken" cannot be read."""

    def __init__(self, names, items):
        super().__init__()
        for k, name in enumerate(names[1:], start=1):
            self.add_class("boxes", k, name)
        for k, (gts, dets) in enumerate(items):
            self.add_image("boxes", k, "broken" if gts is None else f"img{k}.png",
                           gts=gts, dets=dets)
        self.prepare()

    def load_image(self, image_id):
        if self.image_info[image_id]["gts"] is None:
            raise OSError("cannot identify image file 'broken'")
        return np.full((H, W, 3), 100, dtype=np.uint8)

    def load_mask(self, image_id):
        return ground_truth(self.image_info[image_id]["gts"])


class ReplayModel:
    """A model whose detect() returns the dataset's prepared detections, in order."""

    def __init__(self, results, class_names=None):
        self.results, self.calls = list(results), 0
        if class_names is not None:
            self.class_names = class_names

    def detect(self, images):
        out = self.results[self.calls:self.calls + len(images)]
        self.calls += len(images)
        return out


def test_report_runs_a_model_skips_unreadable_images_and_maps_classes_by_name(caplog):
    items = random_fixture(seed=3, images=4)
    data_names = ["BG", "c", "a", "b"]          # the dataset's ids differ from the model's
    to_data = {1: 2, 2: 3, 3: 1}
    data_items = [([(b, to_data[abs(c)] * np.sign(c)) for b, c in gts], dets)
                  for gts, dets in items]
    data_items.insert(2, (None, None))
    dataset = BoxDataset(data_names, data_items)
    model = ReplayModel([detections(d) for _, d in items], class_names=NAMES)
    with caplog.at_level("WARNING", logger="mrcnn.report"):
        result = rep.report(model, dataset)
    assert [s["reference"] for s in result.skipped] == [2]
    assert "cannot identify image file" in result.skipped[0]["reason"]
    assert "skipped image 2 (broken)" in caplog.text
    builder = rep.ReportBuilder(NAMES)
    for gts, dets in items:
        builder.add_image(*ground_truth(gts), detections(dets))
    direct = builder.finish()
    np.testing.assert_array_equal(result.confusion, direct.confusion)
    assert result.per_class == direct.per_class
    assert [im["reference"] for im in result.images] == [0, 1, 3, 4]
    assert set(result.timings) == {"images", "read_s", "detect_s", "report_s", "write_s"}


def test_report_refuses_a_class_count_mismatch_an_empty_dataset_and_no_readable_image():
    class Config:
        NUM_CLASSES = 3
        BATCH_SIZE = 1

    model = ReplayModel([])
    model.config = Config()
    dataset = BoxDataset(NAMES, [([((0, 0, 5, 5), 1)], [])])
    with pytest.raises(ValueError, match=r"the model has 3 classes .* the dataset 4: "
                                         r"\['a', 'b', 'c'\]"):
        rep.report(model, dataset)
    with pytest.raises(ValueError, match=r"dataset has \['c'\] that the model does not know"):
        rep.report(model, dataset, class_names=["a", "b"])
    with pytest.raises(ValueError, match="has no image to evaluate"):
        rep.report(ReplayModel([]), dataset, image_ids=[])
    with pytest.raises(ValueError, match=r"no image of the 1 could be read: \['broken'\]"):
        rep.report(ReplayModel([]), BoxDataset(NAMES, [(None, None)]))
    with pytest.raises(ValueError, match="score_threshold must be a number in"):
        rep.report(ReplayModel([]), dataset, score_threshold=2)


def test_report_modules_do_not_import_tensorflow():
    code = ("import sys, mrcnn.report, mrcnn.report_files; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class SyntheticBig:
    """``count`` 512 x 512 images, 3 objects and 6 detections each, made on the fly."""

    size = 512

    def __init__(self, count):
        self.count = count

    def items(self):
        rng = np.random.default_rng(0)
        for _ in range(self.count):
            masks = np.zeros((self.size, self.size, 9), dtype=bool)
            for k in range(9):
                y, x = rng.integers(0, 400, size=2)
                masks[y:y + 100, x:x + 100, k] = True
            rois = np.array([[0, 0, 100, 100]] * 6, dtype=np.int32)
            yield masks[..., :3], np.array([1, 2, 3]), {
                "rois": rois, "class_ids": np.array([1, 2, 3, 1, 2, 3]),
                "scores": np.linspace(0.9, 0.4, 6), "masks": masks[..., 3:]}


def _peak_bytes(count):
    import tracemalloc

    tracemalloc.start()
    builder = rep.ReportBuilder(NAMES)
    for gt_masks, gt_ids, result in SyntheticBig(count).items():
        builder.add_image(gt_masks, gt_ids, result)
    builder.finish()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_stays_flat_masks_are_not_held():
    one_image_masks = 512 * 512 * 9          # bytes of one image's bool masks
    small, large = _peak_bytes(10), _peak_bytes(70)
    # 60 more images may add their RLEs and pycocotools' tables, not their masks
    # (holding them would add 60 * 2.4 MB).
    assert large - small < 2 * one_image_masks, (small, large)


def test_report_batches_by_batch_size_and_by_shape_when_molding_keeps_shapes():
    class Sized(BoxDataset):
        def load_image(self, image_id):
            side = self.image_info[image_id]["side"]
            return np.zeros((side, side, 3), dtype=np.uint8)

        def load_mask(self, image_id):
            side = self.image_info[image_id]["side"]
            return np.zeros((side, side, 0), dtype=bool), np.zeros(0, np.int32)

    class Recorder:
        class_names = NAMES

        def __init__(self, mode):
            self.config = type("C", (), {"NUM_CLASSES": 4, "BATCH_SIZE": 2,
                                         "IMAGE_RESIZE_MODE": mode})()
            self.batches = []

        def detect(self, images):
            self.batches.append([im.shape[0] for im in images])
            return [{"rois": np.zeros((0, 4)), "class_ids": np.zeros(0, int),
                     "scores": np.zeros(0), "masks": np.zeros(im.shape[:2] + (0,), bool)}
                    for im in images]

    dataset = Sized(NAMES, [([], [])] * 5)
    for info, side in zip(dataset.image_info, (64, 64, 32, 64, 64)):
        info["side"] = side
    for mode, expected in (("square", [[64, 64], [32, 64], [64]]),
                           ("none", [[64, 64], [32], [64, 64]])):
        model = Recorder(mode)
        result = rep.report(model, dataset)
        assert model.batches == expected, mode
        assert [im["reference"] for im in result.images] == [0, 1, 2, 3, 4]
