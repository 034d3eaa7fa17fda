"""The JAX backend's inference against TensorFlow's: same weights, same photos, same answers.

Each backend runs in its own process (tests/backend_worker.py; one process has one Keras
backend): TensorFlow makes seeded random weights (matterport .h5 layout), JAX loads that
file. Both run detect() on the photos the export tests use (skimage's three and the 29
demo_images when ../shared/data is present) and run_graph on the first one.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax", reason="the JAX backend tests need jax (the [jax] extra)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_worker(backend, out, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "tests.backend_worker", "--out", out, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{backend} worker failed:\n{proc.stderr[-3000:]}"
    return dict(np.load(out))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """Path of the seeded random weights (matterport .h5 layout) TensorFlow writes."""
    return str(tmp_path_factory.mktemp("parity_weights") / "weights.h5")


@pytest.fixture(scope="module")
def answers(tmp_path_factory, weights_file):
    """(TensorFlow's arrays, JAX's arrays) from tests/backend_worker.py."""
    folder = tmp_path_factory.mktemp("parity")
    weights = weights_file
    tf_answers = _run_worker("tensorflow", str(folder / "tf.npz"), "--save-weights", weights)
    jax_answers = _run_worker("jax", str(folder / "jax.npz"), "--weights", weights)
    return tf_answers, jax_answers


def _box_iou(a, b):
    """IoU of two (y1, x1, y2, x2) pixel boxes; two equal empty boxes count as 1."""
    if np.array_equal(a, b):
        return 1.0
    h = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = h * w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _masks(arrays, i):
    width = int(arrays[f"shape_{i}"][1])
    return np.unpackbits(arrays[f"masks_{i}"], axis=-1)[..., :width].astype(bool)


def photo_mismatches(tf_answers, jax_answers, i):
    """Why photo i's detections differ (empty list when they match).

    Each TensorFlow detection must have an unused JAX detection of the same class with box
    IoU > 0.9 (of those, the closest score is taken: random weights give identical boxes),
    score within 1e-3 and mask IoU >= 0.95; the counts must be equal.
    """
    t_ids, j_ids = tf_answers[f"class_ids_{i}"], jax_answers[f"class_ids_{i}"]
    if len(t_ids) != len(j_ids):
        return [f"{len(t_ids)} detections against {len(j_ids)}"]
    t_boxes, j_boxes = tf_answers[f"rois_{i}"], jax_answers[f"rois_{i}"]
    t_scores, j_scores = tf_answers[f"scores_{i}"], jax_answers[f"scores_{i}"]
    t_masks, j_masks = _masks(tf_answers, i), _masks(jax_answers, i)
    used, problems = set(), []
    for d in range(len(t_ids)):
        candidates = [k for k in range(len(j_ids)) if k not in used and j_ids[k] == t_ids[d]
                      and _box_iou(t_boxes[d], j_boxes[k]) > 0.9]
        if not candidates:
            problems.append(f"detection {d} (class {t_ids[d]}) has no JAX twin")
            continue
        k = min(candidates, key=lambda k: abs(j_scores[k] - t_scores[d]))
        used.add(k)
        if abs(j_scores[k] - t_scores[d]) > 1e-3:
            problems.append(f"detection {d}: score {t_scores[d]} against {j_scores[k]}")
        union = (t_masks[d] | j_masks[k]).sum()
        iou = (t_masks[d] & j_masks[k]).sum() / union if union else 1.0
        if iou < 0.95:
            problems.append(f"detection {d}: mask IoU {iou:.3f}")
    return problems


def test_rpn_outputs_agree(answers):
    # The same molded image through both backends' backbone, FPN and RPN.
    tf_answers, jax_answers = answers
    for key in ("rpn_class", "rpn_bbox", "proposals"):
        assert tf_answers[key].shape == jax_answers[key].shape, key
        np.testing.assert_allclose(jax_answers[key], tf_answers[key], atol=1e-4, rtol=0,
                                   err_msg=key)


def test_detections_agree_on_the_photos(answers):
    tf_answers, jax_answers = answers
    names = [str(n) for n in tf_answers["names"]]
    assert [str(n) for n in jax_answers["names"]] == names
    counts = [len(tf_answers[f"class_ids_{i}"]) for i in range(len(names))]
    assert sum(c > 0 for c in counts) >= len(names) - 1, counts  # something to compare
    failed = {name: problems for i, name in enumerate(names)
              if (problems := photo_mismatches(tf_answers, jax_answers, i))}
    # At least 95% of the photos match detection for detection (measured: all 32).
    assert len(failed) <= 0.05 * len(names), failed
    assert "astronaut" not in failed, failed


def test_mismatch_check_catches_a_moved_box(answers):
    # The comparison itself can fail: a shifted box and a changed score are reported.
    tf_answers, _ = answers
    i = next(i for i in range(len(tf_answers["names"])) if len(tf_answers[f"class_ids_{i}"]))
    moved = dict(tf_answers)
    moved[f"rois_{i}"] = tf_answers[f"rois_{i}"].copy()
    moved[f"rois_{i}"][0] += np.array([0, 50, 0, 50])
    moved[f"scores_{i}"] = tf_answers[f"scores_{i}"] + 0.01
    problems = photo_mismatches(tf_answers, moved, i)
    assert problems and any("score" in p or "twin" in p for p in problems), problems


def test_detect_compiles_once(answers):
    # JAX compiles per input shape; the molded size is fixed by the config, so detect() on
    # photos of many sizes compiles on the first call only.
    tf_answers, jax_answers = answers
    count = len(tf_answers["names"])
    sizes = {tuple(tf_answers[f"shape_{i}"]) for i in range(count)}
    # skimage's three photos have three sizes; with the 29 demo images there are more.
    assert len(sizes) >= (5 if count >= 20 else 3), sizes
    assert int(jax_answers["compilations"]) == 0


def test_load_weights_on_jax(answers, weights_file, tmp_path):
    # matterport .h5 by name with exclude, and a Keras .weights.h5 round trip, on JAX.
    from tests.backend_worker import EXCLUDED
    got = _run_worker("jax", str(tmp_path / "loading.npz"), "--weights", weights_file,
                      "--check-loading")
    assert sorted(str(n) for n in got["excluded"]) == sorted(EXCLUDED)
    full = {k[5:]: v for k, v in got.items() if k.startswith("full_")}
    assert len(full) > 100
    for key, value in full.items():
        layer = key.rsplit("_", 1)[0]
        np.testing.assert_array_equal(got["keras_" + key], value, err_msg=key)
        if layer in EXCLUDED:
            np.testing.assert_array_equal(got["byname_" + key], got["init_" + key], err_msg=key)
        else:
            np.testing.assert_array_equal(got["byname_" + key], value, err_msg=key)
    # The excluded layers really differ from the file (the check above could fail).
    assert not np.array_equal(got["byname_mrcnn_class_logits_0"], full["mrcnn_class_logits_0"])
