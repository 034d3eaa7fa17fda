"""mrcnn.backend.jax's functions against TensorFlow's kernels and mrcnn.backend.tensorflow.

The JAX seam is plain jax.numpy, so it runs here beside TensorFlow (this process's Keras
backend may be either): NMS must select TensorFlow's boxes in TensorFlow's order (ties,
zero-area boxes, IoU exactly at the threshold), crops must sample as tf.image.crop_and_resize.
"""
import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the JAX backend tests need jax (the [jax] extra)")
tf = pytest.importorskip("tensorflow")

from mrcnn.backend import jax as jb  # noqa: E402
from mrcnn.backend import tensorflow as tb  # noqa: E402


def _boxes(rng, n, ties=True):
    """n random boxes in [0, 1] (some zero-area, some duplicated) and scores with ties."""
    y1, x1 = rng.uniform(0, 0.8, n), rng.uniform(0, 0.8, n)
    h, w = rng.uniform(0, 0.3, n), rng.uniform(0, 0.3, n)
    h[rng.random(n) < 0.05] = 0.0
    boxes = np.stack([y1, x1, y1 + h, x1 + w], axis=1).astype(np.float32)
    dup = rng.random(n) < 0.1
    boxes[dup] = boxes[0]
    scores = rng.random(n).astype(np.float32)
    if ties:
        scores = np.round(scores * 8) / 8  # many equal scores
    return boxes, scores


@pytest.mark.parametrize("n,max_out,threshold,tile", [
    (300, 100, 0.5, 256), (300, 300, 0.7, 64), (1000, 50, 0.3, 256), (7, 10, 0.5, 4),
    (600, 600, 0.0, 128)])
def test_greedy_nms_is_tf_non_max_suppression(n, max_out, threshold, tile):
    rng = np.random.default_rng(n + max_out)
    boxes, scores = _boxes(rng, n)
    expected = tf.image.non_max_suppression(boxes, scores, max_out, iou_threshold=threshold).numpy()
    indices, count = jax.jit(
        lambda b, s: jb.greedy_nms(b, s, np.ones(n, bool), max_out, threshold, tile=tile))(
            boxes, scores)
    count = int(count)
    assert count == len(expected)
    np.testing.assert_array_equal(np.asarray(indices)[:count], expected)
    assert not np.asarray(indices)[count:].any()


def test_greedy_nms_decides_a_tie_at_the_threshold_as_tf():
    # IoU exactly 0.5 in float32 is not above 0.5: both kept; at 0.4999 one goes.
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0.5, 1, 1]], np.float32)
    scores = np.array([0.9, 0.8, 0.8], np.float32)
    for threshold in (0.5, 0.4999):
        expected = tf.image.non_max_suppression(boxes, scores, 3, iou_threshold=threshold).numpy()
        indices, count = jb.greedy_nms(boxes, scores, np.ones(3, bool), 3, threshold)
        np.testing.assert_array_equal(np.asarray(indices)[:int(count)], expected)


def test_batched_nms_matches_tf_standard():
    rng = np.random.default_rng(5)
    pairs = [_boxes(rng, 400) for _ in range(3)]
    boxes = np.stack([b for b, _ in pairs])
    scores = np.stack([s for _, s in pairs])
    order = np.argsort(-scores, axis=1, kind="stable")  # the proposal layer's sorted input
    boxes = np.take_along_axis(boxes, order[..., None], axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    want_boxes, want_valid = tb.batched_nms(tf.constant(boxes), tf.constant(scores), 120, 0.6)
    got_boxes, got_valid = jax.jit(lambda b, s: jb.batched_nms(b, s, 120, 0.6))(boxes, scores)
    np.testing.assert_array_equal(np.asarray(got_valid), want_valid.numpy())
    np.testing.assert_array_equal(np.asarray(got_boxes), want_boxes.numpy())


@pytest.mark.parametrize("max_instances", [5, 40])
def test_detection_nms_matches_matterports_per_class_nms(max_instances):
    rng = np.random.default_rng(max_instances)
    batch, n, classes = 2, 200, 6
    boxes = np.stack([_boxes(rng, n)[0] for _ in range(batch)])
    scores = np.round(rng.random((batch, n)) * 16).astype(np.float32) / 16
    class_ids = rng.integers(0, classes, (batch, n)).astype(np.int32)
    keep = (class_ids > 0) & (scores >= 0.25)
    want = tb.detection_nms(tf.constant(boxes), tf.constant(class_ids), tf.constant(scores),
                            tf.constant(keep), classes, max_instances, 0.3).numpy()
    got = jax.jit(lambda *a: jb.detection_nms(*a, classes, max_instances, 0.3))(
        boxes, class_ids, scores, keep)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_crop_and_resize_is_tf_crop_and_resize():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 17, 23, 4)).astype(np.float32)
    boxes = rng.uniform(-0.2, 1.2, (40, 4)).astype(np.float32)  # outside too: extrapolation 0
    boxes[:5] = [[0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0], [0, 0, 1, 0.3], [0.2, 0.1, 0.2, 0.9]]
    indices = rng.integers(0, 3, 40).astype(np.int32)
    for size in ((7, 7), (14, 14), (1, 1), (1, 5)):
        want = tf.image.crop_and_resize(images, boxes, indices, size).numpy()
        got = np.asarray(jb.crop_and_resize(images, boxes, indices, size))
        # XLA may fuse the blend's multiply-adds: float rounding, not another sample.
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=str(size))


@pytest.mark.parametrize("mode", ["crop_and_resize", "paper"])
def test_pyramid_roi_align_matches_the_tf_partition(mode):
    rng = np.random.default_rng(1)
    maps = [rng.normal(size=(2, s, s + 3, 8)).astype(np.float32) for s in (32, 16, 8, 4)]
    n = 60
    y1, x1 = rng.uniform(0, 0.9, n), rng.uniform(0, 0.9, n)
    boxes = np.stack([y1, x1, y1 + rng.uniform(0, 0.5, n), x1 + rng.uniform(0, 0.5, n)],
                     1).clip(0, 1).astype(np.float32)
    levels = rng.integers(2, 6, n).astype(np.int32)
    indices = rng.integers(0, 2, n).astype(np.int32)

    def pooler(xp):
        # mrcnn.layers.roi_align._pool's two modes in one array namespace (this process's
        # keras.ops are TensorFlow's, which JAX cannot trace).
        def pool(crop, b, i):
            if mode == "crop_and_resize":
                return crop(b, i, (7, 7))
            half_y, half_x = (b[:, 2] - b[:, 0]) / 28.0, (b[:, 3] - b[:, 1]) / 28.0
            shrunk = xp.stack([b[:, 0] + half_y, b[:, 1] + half_x, b[:, 2] - half_y,
                               b[:, 3] - half_x], axis=1)
            samples = xp.reshape(crop(shrunk, i, (14, 14)), (-1, 7, 2, 7, 2, 8))
            return xp.reduce_mean(samples, axis=(2, 4)) if xp is tf else samples.mean(axis=(2, 4))
        return pool

    want = tb.pyramid_roi_align([tf.constant(m) for m in maps], tf.constant(boxes),
                                tf.constant(indices), tf.constant(levels), 2, pooler(tf),
                                "partition").numpy()
    got = np.asarray(jax.jit(lambda *a: jb.pyramid_roi_align(
        list(a[:4]), a[4], a[5], a[6], 2, pooler(jax.numpy), "partition"))(
            *maps, boxes, indices, levels))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_batch_gather_and_argmax():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    rows = rng.integers(0, 5, (2, 7)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(jb.batch_gather(values, rows)),
                                  tf.gather(values, rows, batch_dims=1).numpy())
    classes = rng.integers(0, 3, (2, 5)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(jb.batch_gather(values, classes, batch_dims=2)),
                                  tf.gather(values, classes, batch_dims=2).numpy())
    probs = np.array([[0.2, 0.5, 0.5], [0.7, 0.1, 0.7]], np.float32)  # ties: first maximum
    np.testing.assert_array_equal(np.asarray(jb.argmax_int32(probs)), [1, 0])
