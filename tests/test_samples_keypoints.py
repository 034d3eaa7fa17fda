"""samples/keypoints.py: the synthetic figures, their COCO ground truth, the command line."""
import numpy as np
import pytest

from samples import keypoints as sample


def test_figures_keypoints_are_the_joint_centres_inside_the_masks():
    dataset = sample.make_dataset(20, seed=4)
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, class_ids = dataset.load_mask(image_id)
        keypoints = dataset.load_keypoints(image_id)
        assert keypoints.shape == (masks.shape[-1], 3, 3)
        np.testing.assert_array_equal(class_ids, np.ones(masks.shape[-1]))
        if masks.shape[-1] == len(info["figures"]):   # no figure hidden completely
            for k, (vertices, _, _) in enumerate(info["figures"]):
                np.testing.assert_array_equal(keypoints[k, :, :2], vertices)
        for k in range(masks.shape[-1]):
            for x, y, v in keypoints[k]:
                if v == 2:   # a visible joint is a pixel of its own figure
                    assert masks[int(round(y)), int(round(x)), k]


def test_flip_map_and_apex_on_top():
    dataset = sample.make_dataset(30, seed=6)
    for image_id in dataset.image_ids:
        for vertices, _, _ in dataset.image_info[image_id]["figures"]:
            # The apex is the top corner (rotation <= 30 degrees).
            assert vertices[0, 1] < vertices[1:, 1].min()
    config = sample.KeypointsConfig()
    assert config.KEYPOINT_FLIP_MAP == (("left", "right"),)


def test_ground_truth_as_results_scores_oks_ap_one():
    from mrcnn import utils
    from mrcnn.coco import build_coco_results, evaluate_coco

    dataset = sample.make_dataset(5, seed=8)
    coco = sample.coco_ground_truth(dataset)
    results = []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        keypoints = dataset.load_keypoints(image_id).copy()
        keypoints[..., 2] = 1.0
        results.extend(build_coco_results(dataset, [image_id], utils.extract_bboxes(masks),
                                          class_ids, np.ones(len(class_ids)), None,
                                          keypoints=keypoints))
    metrics = evaluate_coco(coco, results, eval_types=("keypoints",),
                            kpt_oks_sigmas=[sample.OKS_SIGMA] * 3)
    assert metrics["keypoints"]["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("argv, message", [
    (["train", "--minutes", "0"], "--minutes must be positive"),
    (["evaluate", "--weights", "/nonexistent.h5"], "file not found"),
])
def test_usage_errors(argv, message, capsys):
    assert sample.main(argv) == sample.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--weights", "last"], r"--weights last: no trained keypoints checkpoint in "
                                        r"'.*empty'; run 'python samples/keypoints.py train' first"),
    (["detect", "--weights", "last", "--small", "--out", "x.png"],
     r"no trained --small keypoints checkpoint .*keypoints.py train --small'"),
    (["train", "--steps", "0"], r"--steps must be a positive integer, got 0"),
    (["evaluate", "--weights", "last", "--limit", "-3"], r"--limit must be a positive integer, got -3"),
])
def test_last_and_positive_errors_exit_2(tmp_path, capsys, argv, message):
    import re
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sample.main(argv + ["--logs", str(empty)]) == sample.EXIT_USAGE
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.startswith(f"keypoints.py {argv[0]}: error: ") and "Traceback" not in err


@pytest.mark.slow
def test_small_train_evaluate_detect(tmp_path, capsys):
    logs = str(tmp_path / "logs")
    assert sample.main(["train", "--small", "--logs", logs]) == 0
    out = capsys.readouterr().out
    assert "keypoint OKS AP@[.5:.95]" in out
    picture = str(tmp_path / "kp.png")
    assert sample.main(["detect", "--weights", "last", "--logs", logs, "--out", picture]) == 0
    assert (tmp_path / "kp.png").stat().st_size > 0
