"""mrcnn.layers: NormBoxes, PyramidAnchors, ProposalLayer, PyramidROIAlign, DetectionLayer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import data, utils
from mrcnn.layers.common import NormBoxes, PyramidAnchors
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.proposal import ProposalLayer, batched_nms
from mrcnn.layers.roi_align import PyramidROIAlign, roi_pyramid_levels

NUM_CLASSES = 4


def meta_rows(image_shape=(128, 128, 3), windows=((0, 0, 128, 128),)):
    """[len(windows), 12 + NUM_CLASSES] float32 meta rows for molded images of image_shape."""
    return np.stack([
        data.compose_image_meta(i, image_shape, image_shape, w, 1.0, [1] * NUM_CLASSES)
        for i, w in enumerate(windows)]).astype(np.float32)


def assert_config_round_trip(layer, inputs):
    """from_config(get_config()) builds a layer that computes the same outputs."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.name == layer.name
    assert clone.get_config() == config
    np.testing.assert_array_equal(np.asarray(clone(inputs)), np.asarray(layer(inputs)))


def run_functional(layer, inputs):
    """Wrap the layer in a keras.Model built from keras.Input (batch and sizes dynamic) and run it."""
    symbolic = [keras.Input(shape=(None,) * (x.ndim - 1), dtype=str(x.dtype)) for x in inputs]
    model = keras.Model(symbolic, layer(symbolic))
    return model.predict([x for x in inputs], verbose=0)


# ================================================================== NormBoxes
def test_norm_boxes_layer():
    boxes = np.array([[[0, 0, 64, 32], [16, 8, 48, 24]]], np.int32)
    image = np.zeros((1, 64, 32, 3), np.float32)
    layer = NormBoxes(name="norm_gt_boxes")
    got = np.asarray(layer([boxes, image]))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0], utils.norm_boxes(boxes[0], (64, 32)), atol=1e-6)
    np.testing.assert_allclose(run_functional(layer, [boxes, image]), got, atol=1e-6)
    assert layer.compute_output_shape([(None, 5, 4), (None, 64, 32, 3)]) == (None, 5, 4)
    assert_config_round_trip(layer, [boxes, image])


# ================================================================== PyramidAnchors
def test_pyramid_anchors_parity_and_shape(tiny_config):
    cfg = tiny_config
    image_shape = (128, 96, 3)
    shapes = utils.compute_backbone_shapes(cfg, image_shape)
    image = np.zeros((2,) + image_shape, np.float32)
    features = [np.zeros((2, h, w, 1), np.float32) for h, w in shapes]
    layer = PyramidAnchors(cfg.RPN_ANCHOR_SCALES, cfg.RPN_ANCHOR_RATIOS, cfg.BACKBONE_STRIDES,
                           cfg.RPN_ANCHOR_STRIDE, name="anchors")
    got = np.asarray(layer([image] + features))
    want = utils.norm_boxes(utils.generate_pyramid_anchors(
        cfg.RPN_ANCHOR_SCALES, cfg.RPN_ANCHOR_RATIOS, shapes, cfg.BACKBONE_STRIDES,
        cfg.RPN_ANCHOR_STRIDE), image_shape)
    assert got.shape == (2,) + want.shape
    np.testing.assert_allclose(got[0], want, atol=1e-6)
    np.testing.assert_array_equal(got[0], got[1])
    static = layer.compute_output_shape([(2,) + image_shape] + [(2, h, w, 1) for h, w in shapes])
    assert static == (2, want.shape[0], 4)
    assert layer.compute_output_shape([(None, None, None, 3)] + [(None, None, None, 1)] * 5) \
        == (None, None, 4)
    # Dynamic sizes in a functional model; another image size gives other anchors.
    np.testing.assert_allclose(run_functional(layer, [image] + features), got, atol=1e-6)
    assert_config_round_trip(layer, [image] + features)


def test_pyramid_anchors_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scales=.*strides="):
        PyramidAnchors((8, 16), [1], [4, 8, 16])
    with pytest.raises(ValueError, match="-1"):
        PyramidAnchors((8,), [1, -1], [4])


# ================================================================== ProposalLayer
def proposals_reference(probs, deltas, anchors, proposal_count, nms_threshold, pre_nms_limit, std):
    """NumPy ProposalLayer, one image at a time."""
    out = np.zeros((probs.shape[0], proposal_count, 4), np.float32)
    for b in range(probs.shape[0]):
        scores = probs[b, :, 1]
        top = np.argsort(-scores, kind="stable")[:min(pre_nms_limit, len(scores))]
        boxes = utils.apply_box_deltas(anchors[b, top], deltas[b, top] * std)
        boxes = np.clip(boxes, 0.0, 1.0)
        keep = utils.non_max_suppression(boxes, scores[top], nms_threshold)[:proposal_count]
        out[b, :len(keep)] = boxes[keep]
    return out


def random_rpn_outputs(rng, batch, num_anchors):
    yx = rng.uniform(0.0, 0.8, (batch, num_anchors, 2))
    hw = rng.uniform(0.05, 0.3, (batch, num_anchors, 2))
    anchors = np.concatenate([yx, yx + hw], axis=-1).astype(np.float32)
    logits = rng.normal(size=(batch, num_anchors, 2))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 1.0, (batch, num_anchors, 4)).astype(np.float32)
    return probs, deltas, anchors


@pytest.mark.parametrize("nms_method", ["standard", "combined", "padded"])
def test_proposal_layer_matches_numpy_reference(rng, nms_method):
    probs, deltas, anchors = random_rpn_outputs(rng, 2, 200)
    std = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    layer = ProposalLayer(proposal_count=30, nms_threshold=0.5, pre_nms_limit=120,
                          rpn_bbox_std_dev=std, nms_method=nms_method, name="ROI")
    got = np.asarray(layer([probs, deltas, anchors]))
    want = proposals_reference(probs, deltas, anchors, 30, 0.5, 120, std)
    assert got.shape == (2, 30, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_proposal_layer_pads_with_zero_rows():
    # Three anchors: two almost identical, one apart. pre_nms_limit > number of anchors.
    anchors = np.array([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.49], [0.6, 0.6, 0.9, 0.9]]],
                       np.float32)
    probs = np.array([[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]], np.float32)
    deltas = np.zeros((1, 3, 4), np.float32)
    layer = ProposalLayer(proposal_count=5, nms_threshold=0.7, pre_nms_limit=100)
    got = np.asarray(layer([probs, deltas, anchors]))
    expected = [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0, 0, 0, 0], [0, 0, 0, 0],
                [0, 0, 0, 0]]
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_proposal_layer_applies_std_dev_and_clips():
    # dy = 1 with std 0.5 moves the box by half its height; it then gets clipped at 1.
    anchors = np.array([[[0.6, 0.2, 0.8, 0.4]]], np.float32)
    probs = np.array([[[0.0, 1.0]]], np.float32)
    deltas = np.array([[[1.0, 0.0, 0.0, 0.0]]], np.float32)
    layer = ProposalLayer(proposal_count=2, nms_threshold=0.7, pre_nms_limit=10,
                          rpn_bbox_std_dev=[0.5, 1.0, 1.0, 1.0])
    got = np.asarray(layer([probs, deltas, anchors]))
    np.testing.assert_allclose(got[0], [[0.7, 0.2, 0.9, 0.4], [0, 0, 0, 0]], atol=1e-6)
    layer = ProposalLayer(proposal_count=1, nms_threshold=0.7, pre_nms_limit=10,
                          rpn_bbox_std_dev=[2.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(np.asarray(layer([probs, deltas, anchors]))[0],
                               [[1.0, 0.2, 1.0, 0.4]], atol=1e-6)


def test_nms_methods_agree(rng):
    probs, deltas, anchors = random_rpn_outputs(rng, 2, 300)
    boxes = tf.constant(anchors)
    scores, order = tf.math.top_k(probs[..., 1], k=300)
    boxes = tf.gather(boxes, order, batch_dims=1)
    a, va = batched_nms(boxes, scores, 50, 0.6, "combined")
    b, vb = batched_nms(boxes, scores, 50, 0.6, "padded")
    c, vc = batched_nms(boxes, scores, 50, 0.6, "standard")
    np.testing.assert_array_equal(va.numpy(), vb.numpy())
    np.testing.assert_array_equal(va.numpy(), vc.numpy())
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    np.testing.assert_array_equal(a.numpy(), c.numpy())
    with pytest.raises(ValueError, match="'greedy'"):
        batched_nms(boxes, scores, 5, 0.5, "greedy")


def test_proposal_layer_functional_and_config(rng):
    probs, deltas, anchors = random_rpn_outputs(rng, 2, 50)
    layer = ProposalLayer(proposal_count=8, nms_threshold=0.7, pre_nms_limit=30, name="ROI")
    eager = np.asarray(layer([probs, deltas, anchors]))
    np.testing.assert_allclose(run_functional(layer, [probs, deltas, anchors]), eager, atol=1e-6)
    assert layer.compute_output_shape([(None, None, 2), (None, None, 4), (None, None, 4)]) \
        == (None, 8, 4)
    assert_config_round_trip(layer, [probs, deltas, anchors])


def test_proposal_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1.5"):
        ProposalLayer(proposal_count=8, nms_threshold=1.5)
    with pytest.raises(ValueError, match="rpn_bbox_std_dev"):
        ProposalLayer(proposal_count=8, nms_threshold=0.7, rpn_bbox_std_dev=[0.1, 0.2])
    with pytest.raises(ValueError, match="'fast'"):
        ProposalLayer(proposal_count=8, nms_threshold=0.7, nms_method="fast")


# ================================================================== PyramidROIAlign
def bilinear(fmap, y, x):
    """fmap [H, W, C] sampled at float (y, x) inside the map."""
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, fmap.shape[0] - 1), min(x0 + 1, fmap.shape[1] - 1)
    dy, dx = y - y0, x - x0
    top = fmap[y0, x0] * (1 - dx) + fmap[y0, x1] * dx
    bottom = fmap[y1, x0] * (1 - dx) + fmap[y1, x1] * dx
    return top * (1 - dy) + bottom * dy


def crop_reference(fmap, box, out_h, out_w):
    """NumPy crop_and_resize of one normalized box: grid from edge to edge, y * (H - 1)."""
    h, w = fmap.shape[0] - 1, fmap.shape[1] - 1
    y1, x1, y2, x2 = box

    def grid(lo, hi, n, size):
        if n == 1:
            return [0.5 * (lo + hi) * size]
        return [lo * size + i * (hi - lo) * size / (n - 1) for i in range(n)]

    return np.array([[bilinear(fmap, y, x) for x in grid(x1, x2, out_w, w)]
                     for y in grid(y1, y2, out_h, h)])


def paper_reference(fmap, box, ph, pw, s):
    """NumPy RoIAlign (paper): s x s bilinear samples at sub-bin centres, averaged per bin."""
    h, w = fmap.shape[0] - 1, fmap.shape[1] - 1
    y1, x1, y2, x2 = box[0] * h, box[1] * w, box[2] * h, box[3] * w
    out = np.zeros((ph, pw, fmap.shape[2]))
    for i in range(ph):
        for j in range(pw):
            ys = [y1 + (i + (a + 0.5) / s) * (y2 - y1) / ph for a in range(s)]
            xs = [x1 + (j + (b + 0.5) / s) * (x2 - x1) / pw for b in range(s)]
            out[i, j] = np.mean([bilinear(fmap, y, x) for y in ys for x in xs], axis=0)
    return out


def pyramid(batch=2, side=64, channels=3, fill=None, rng=None):
    """Feature maps P2..P5 of a side x side image (strides 4..32); filled or random."""
    maps = []
    for level in range(2, 6):
        size = side // 2 ** level
        if fill == "level":
            maps.append(np.full((batch, size, size, channels), level, np.float32))
        else:
            maps.append(rng.normal(size=(batch, size, size, channels)).astype(np.float32))
    return maps


def square(centre, side):
    """Normalized square box of the given normalized side around a normalized centre."""
    half = side / 2
    return [centre - half, centre - half, centre + half, centre + half]


def test_roi_level_assignment():
    # Image 1024 x 1024: a 224 px box is level 4; each factor 2 moves one level.
    image = 1024.0
    sides_px = [224, 112, 56, 448, 896, 10, 224 * 2 ** 0.49, 224 * 2 ** 0.51, 224 * 2 ** -1.49,
                224 * 2 ** -1.51, 1023]
    expected = [4, 3, 2, 5, 5, 2, 4, 5, 3, 2, 5]
    boxes = np.array([square(0.5, s / image) for s in sides_px], np.float32)
    got = roi_pyramid_levels(boxes, image * image).numpy()
    np.testing.assert_array_equal(got, expected)
    # Zero (padding) boxes go to level 2; a 2:1 box uses sqrt(h * w).
    extra = np.array([[0, 0, 0, 0], [0, 0, 448 / image, 112 / image]], np.float32)
    np.testing.assert_array_equal(roi_pyramid_levels(extra, image * image).numpy(), [2, 4])


def test_roi_align_survives_non_finite_boxes():
    # A diverged model proposes NaN / inf boxes: they go to level 2 and come out non-finite,
    # so that the loss becomes NaN (training then stops with a message) instead of the level
    # partition failing on an out-of-range index.
    nan, inf = float("nan"), float("inf")
    bad = np.array([[nan, 0, 1, 1], [0, 0, inf, 1], [0, -inf, 1, inf], [0, 0, 0.5, 0.5]],
                   np.float32)
    side = 512  # the last box is 256 px: level 4
    np.testing.assert_array_equal(roi_pyramid_levels(bad, side * side).numpy(), [2, 5, 5, 4])
    maps = pyramid(batch=1, side=side, channels=2, fill="level")
    meta = meta_rows((side, side, 3))
    got = np.asarray(PyramidROIAlign((2, 2))([bad[None], meta] + maps))
    assert got.shape == (1, 4, 2, 2, 2)
    assert np.isnan(got[0, :3]).all()
    np.testing.assert_allclose(got[0, 3], 4.0, atol=1e-5)


def test_roi_align_reads_the_right_level_in_input_order():
    side = 512
    maps = pyramid(batch=2, side=side, channels=2, fill="level")
    meta = meta_rows((side, side, 3), [(0, 0, side, side)] * 2)
    # The level of a box of s px is 4 + round(log2(s / 224)) whatever the image size:
    # level 2 up to 79 px, 3 up to 158 px, 4 up to 317 px, then 5. Mixed across the batch.
    sides = np.array([[56, 224, 112, 400], [112, 10, 240, 56]], np.float32) / side
    levels = [[2, 4, 3, 5], [3, 2, 4, 2]]
    boxes = np.array([[square(0.5, s) for s in row] for row in sides], np.float32)
    # The maps hold their level number, and image 1 holds 10 + level.
    maps = [np.stack([m[0], m[1] + 10]) for m in maps]
    layer = PyramidROIAlign((3, 3), name="roi_align_classifier")
    got = np.asarray(layer([boxes, meta] + maps))
    assert got.shape == (2, 4, 3, 3, 2)
    np.testing.assert_allclose(got[:, :, 1, 1, 0], np.array(levels) + [[0], [10]], atol=1e-5)
    np.testing.assert_allclose(got.min(axis=(2, 3, 4)), got.max(axis=(2, 3, 4)), atol=1e-5)


def test_roi_align_crop_matches_numpy_bilinear(rng):
    side = 512  # large enough for boxes on every level (level 5 starts at 317 px)
    maps = pyramid(batch=2, side=side, channels=3, rng=rng)
    meta = meta_rows((side, side, 3), [(0, 0, side, side)] * 2)
    boxes = np.array([[[0.1, 0.2, 0.35, 0.4], [0.05, 0.1, 0.9, 0.95], [0.3, 0.3, 0.4, 0.45]],
                      [[0.4, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0], [0.2, 0.6, 0.25, 0.66]]],
                     np.float32)
    levels = roi_pyramid_levels(boxes, side * side).numpy()
    layer = PyramidROIAlign((4, 5), name="roi_align_mask")
    got = np.asarray(layer([boxes, meta] + maps))
    for b in range(2):
        for n in range(3):
            fmap = maps[levels[b, n] - 2][b]
            np.testing.assert_allclose(got[b, n], crop_reference(fmap, boxes[b, n], 4, 5),
                                       atol=1e-4, err_msg=f"box {b},{n}")
    np.testing.assert_array_equal(levels, [[3, 5, 2], [4, 5, 2]])


def test_roi_align_paper_mode_on_linear_ramp():
    side = 64
    # f(y, x) = 3 y + 0.5 x + 1 in feature-map cells on every level; channel 1 = 2 f.
    maps = []
    for level in range(2, 6):
        size = side // 2 ** level
        yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        ramp = 3.0 * yy + 0.5 * xx + 1.0
        maps.append(np.stack([ramp, 2 * ramp], -1)[None].astype(np.float32))
    meta = meta_rows((side, side, 3))
    box = [0.2, 0.1, 0.6, 0.9]  # sqrt(0.4 * 0.8) * 64 = 36 px: level 2, a 16 x 16 map
    boxes = np.array([[box]], np.float32)
    assert roi_pyramid_levels(boxes, side * side).numpy()[0, 0] == 2
    got = np.asarray(PyramidROIAlign((2, 4), mode="paper", sampling_ratio=2)([boxes, meta] + maps))
    # Bin (i, j) centre in cells: y = 15 * (0.2 + 0.4 (i + 0.5) / 2), x = 15 * (0.1 + 0.8 (j + 0.5) / 4).
    ys = 15 * (0.2 + 0.4 * (np.arange(2) + 0.5) / 2)
    xs = 15 * (0.1 + 0.8 * (np.arange(4) + 0.5) / 4)
    expected = 3.0 * ys[:, None] + 0.5 * xs[None, :] + 1.0
    np.testing.assert_allclose(got[0, 0, :, :, 0], expected, atol=1e-4)
    np.testing.assert_allclose(got[0, 0, :, :, 1], 2 * expected, atol=1e-4)
    # crop_and_resize mode samples the box edges instead: its corner is f(3, 1.5).
    crop = np.asarray(PyramidROIAlign((2, 4))([boxes, meta] + maps))
    np.testing.assert_allclose(crop[0, 0, 0, 0, 0], 3.0 * 3 + 0.5 * 1.5 + 1.0, atol=1e-4)


@pytest.mark.parametrize("sampling_ratio", [1, 3])
def test_roi_align_paper_mode_matches_numpy(rng, sampling_ratio):
    side = 64
    maps = pyramid(batch=1, side=side, channels=2, rng=rng)
    meta = meta_rows((side, side, 3))
    boxes = np.array([[[0.1, 0.15, 0.5, 0.7], [0.3, 0.2, 0.45, 0.3]]], np.float32)
    levels = roi_pyramid_levels(boxes, side * side).numpy()
    layer = PyramidROIAlign((3, 2), mode="paper", sampling_ratio=sampling_ratio)
    got = np.asarray(layer([boxes, meta] + maps))
    for n in range(2):
        want = paper_reference(maps[levels[0, n] - 2][0], boxes[0, n], 3, 2, sampling_ratio)
        np.testing.assert_allclose(got[0, n], want, atol=1e-4)


def test_roi_align_gradients_reach_features_not_boxes(rng):
    side = 64
    maps = [tf.constant(m) for m in pyramid(batch=1, side=side, channels=2, rng=rng)]
    meta = meta_rows((side, side, 3))
    boxes = tf.constant([[[0.1, 0.1, 0.6, 0.6]]], tf.float32)
    layer = PyramidROIAlign((2, 2))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(boxes)
        tape.watch(maps)
        total = tf.reduce_sum(layer([boxes, meta] + maps))
    assert tape.gradient(total, boxes) is None
    grads = tape.gradient(total, maps)
    assert float(tf.reduce_sum(tf.abs(grads[0]))) > 0  # a 32 px box is on level 2


def test_roi_align_functional_and_config(rng):
    side = 64
    maps = pyramid(batch=2, side=side, channels=3, rng=rng)
    meta = meta_rows((side, side, 3), [(0, 0, side, side)] * 2)
    boxes = rng.uniform(0, 0.5, (2, 5, 2))
    boxes = np.concatenate([boxes, boxes + 0.4], -1).astype(np.float32)
    for mode in ("crop_and_resize", "paper"):
        layer = PyramidROIAlign((3, 3), mode=mode, name=f"roi_align_{mode}")
        eager = np.asarray(layer([boxes, meta] + maps))
        np.testing.assert_allclose(run_functional(layer, [boxes, meta] + maps), eager, atol=1e-5)
        assert_config_round_trip(layer, [boxes, meta] + maps)
    shape = layer.compute_output_shape([(None, 7, 4), (None, 16)] + [(None, None, None, 3)] * 4)
    assert shape == (None, 7, 3, 3, 3)


def test_roi_align_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'bogus'"):
        PyramidROIAlign((7, 7), mode="bogus")
    with pytest.raises(ValueError, match="0"):
        PyramidROIAlign((7, 7), mode="paper", sampling_ratio=0)
    with pytest.raises(ValueError, match="pool_shape"):
        PyramidROIAlign((7,))


# ================================================================== DetectionLayer
def detections_reference(rois, probs, deltas, meta, max_instances, min_confidence, nms_threshold,
                         std):
    """NumPy DetectionLayer, one image and one class at a time."""
    parsed = data.parse_image_meta(meta)
    out = np.zeros((rois.shape[0], max_instances, 6), np.float32)
    for b in range(rois.shape[0]):
        class_ids = np.argmax(probs[b], axis=1)
        scores = probs[b][np.arange(len(class_ids)), class_ids]
        d = deltas[b][np.arange(len(class_ids)), class_ids] * std
        boxes = utils.apply_box_deltas(rois[b], d)
        window = utils.norm_boxes(parsed["window"][b][None], parsed["image_shape"][b][:2])[0]
        boxes = np.concatenate([np.clip(boxes[:, i:i + 1], window[i % 2], window[2 + i % 2])
                                for i in range(4)], axis=1)
        keep = np.flatnonzero((class_ids > 0) & (scores >= min_confidence))
        kept = []
        for c in np.unique(class_ids[keep]):
            idx = keep[class_ids[keep] == c]
            kept.extend(idx[utils.non_max_suppression(boxes[idx], scores[idx], nms_threshold)])
        kept = np.array(sorted(kept, key=lambda i: -scores[i])[:max_instances], dtype=int)
        rows = [np.concatenate([boxes[i], [class_ids[i], scores[i]]]) for i in kept]
        if rows:
            out[b, :len(rows)] = rows
    return out


def one_hot_probs(class_ids, scores, num_classes=NUM_CLASSES):
    """[N, num_classes] probabilities whose arg-max is class_ids with the given scores."""
    probs = np.zeros((len(class_ids), num_classes), np.float32)
    for i, (c, s) in enumerate(zip(class_ids, scores)):
        probs[i] = (1 - s) / (num_classes - 1)
        probs[i, c] = s
    return probs


def test_detection_layer_hand_case():
    rois = np.array([
        [0.10, 0.10, 0.40, 0.40],  # 0: class 1, 0.90: kept
        [0.12, 0.10, 0.42, 0.40],  # 1: class 2, 0.80, overlaps 0 but other class: kept
        [0.11, 0.10, 0.41, 0.40],  # 2: class 1, 0.85, overlaps 0 in its class: suppressed
        [0.60, 0.60, 0.90, 0.90],  # 3: class 3, 0.60 < min_confidence: dropped
        [0.50, 0.50, 0.70, 0.70],  # 4: background, 0.95: dropped
        [0.00, 0.00, 1.00, 1.00],  # 5: class 3, 0.75, clipped to the window
        [0.50, 0.10, 0.60, 0.20],  # 6: class 2, 0.70 == min_confidence, moved by its deltas
    ], np.float32)
    class_ids = [1, 2, 1, 3, 0, 3, 2]
    scores = [0.9, 0.8, 0.85, 0.6, 0.95, 0.75, 0.7]
    probs = one_hot_probs(class_ids, scores)[None]
    deltas = np.zeros((1, 7, NUM_CLASSES, 4), np.float32)
    deltas[0, 6, 2] = [10.0, 0.0, 0.0, 0.0]  # * 0.1 = 1 box height down
    deltas[0, 6, 1] = [-50.0, 0.0, 0.0, 0.0]  # not its class: ignored
    # 128 px image, real content in rows 32..96: window (32/127, 0, 95/127, 1).
    meta = meta_rows((128, 128, 3), [(32, 0, 96, 128)])
    layer = DetectionLayer(max_instances=6, min_confidence=0.7, nms_threshold=0.3,
                           bbox_std_dev=[0.1, 0.1, 0.2, 0.2], name="mrcnn_detection")
    got = np.asarray(layer([rois[None], probs, deltas, meta]))
    wy1, wy2 = 32 / 127, 95 / 127
    expected = np.array([
        [wy1, 0.10, 0.40, 0.40, 1, 0.90],
        [wy1, 0.10, 0.42, 0.40, 2, 0.80],
        [wy1, 0.00, wy2, 1.00, 3, 0.75],
        [0.60, 0.10, 0.70, 0.20, 2, 0.70],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ], np.float32)
    assert got.shape == (1, 6, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    want = detections_reference(rois[None], probs, deltas, meta, 6, 0.7, 0.3,
                                np.array([0.1, 0.1, 0.2, 0.2], np.float32))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_detection_layer_keeps_top_max_instances():
    # Five separate class-1 boxes; only the three best come out, best first.
    rois = np.array([[[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(5)]], np.float32)
    scores = [0.75, 0.95, 0.8, 0.9, 0.85]
    probs = one_hot_probs([1] * 5, scores)[None]
    deltas = np.zeros((1, 5, NUM_CLASSES, 4), np.float32)
    meta = meta_rows()
    got = np.asarray(DetectionLayer(3, 0.5, 0.3)([rois, probs, deltas, meta]))
    np.testing.assert_allclose(got[0, :, 5], [0.95, 0.9, 0.85], atol=1e-6)
    np.testing.assert_allclose(got[0, :, 0], [0.1, 0.3, 0.4], atol=1e-6)


def test_detection_layer_nothing_detected_gives_zeros():
    rois = np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.8, 0.8]]], np.float32)
    probs = one_hot_probs([0, 2], [0.9, 0.3])[None]
    deltas = np.zeros((1, 2, NUM_CLASSES, 4), np.float32)
    got = np.asarray(DetectionLayer(4, 0.5, 0.3)([rois, probs, deltas, meta_rows()]))
    np.testing.assert_array_equal(got, np.zeros((1, 4, 6), np.float32))


def test_detection_layer_ignores_padding_rois():
    rois = np.array([[[0.1, 0.1, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]]], np.float32)
    probs = one_hot_probs([1, 2], [0.8, 0.99])[None]
    deltas = np.zeros((1, 2, NUM_CLASSES, 4), np.float32)
    got = np.asarray(DetectionLayer(3, 0.5, 0.3)([rois, probs, deltas, meta_rows()]))
    np.testing.assert_allclose(got[0], [[0.1, 0.1, 0.4, 0.4, 1, 0.8], [0] * 6, [0] * 6],
                               atol=1e-6)


def test_detection_layer_random_batch_matches_numpy(rng):
    batch, n = 2, 40
    yx = rng.uniform(0, 0.7, (batch, n, 2))
    rois = np.concatenate([yx, yx + rng.uniform(0.05, 0.3, (batch, n, 2))], -1).astype(np.float32)
    logits = rng.normal(0, 2, (batch, n, NUM_CLASSES))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, n, NUM_CLASSES, 4)).astype(np.float32)
    meta = meta_rows((128, 128, 3), [(16, 0, 112, 128), (0, 8, 128, 120)])
    std = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    layer = DetectionLayer(max_instances=8, min_confidence=0.4, nms_threshold=0.3,
                           bbox_std_dev=std)
    got = np.asarray(layer([rois, probs, deltas, meta]))
    want = detections_reference(rois, probs, deltas, meta, 8, 0.4, 0.3, std)
    assert (want[:, :, 5] > 0).sum() >= 6  # the case exercises real detections
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_detection_layer_functional_and_config(rng):
    rois = np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.8, 0.8]]] * 2, np.float32)
    probs = np.stack([one_hot_probs([1, 2], [0.9, 0.8])] * 2)
    deltas = rng.normal(0, 1, (2, 2, NUM_CLASSES, 4)).astype(np.float32)
    meta = meta_rows((128, 128, 3), [(0, 0, 128, 128)] * 2)
    layer = DetectionLayer(max_instances=3, min_confidence=0.7, nms_threshold=0.3)
    assert layer.name == "mrcnn_detection"
    eager = np.asarray(layer([rois, probs, deltas, meta]))
    np.testing.assert_allclose(run_functional(layer, [rois, probs, deltas, meta]), eager,
                               atol=1e-6)
    assert layer.compute_output_shape(
        [(None, 5, 4), (None, 5, NUM_CLASSES), (None, 5, NUM_CLASSES, 4), (None, 16)]) \
        == (None, 3, 6)
    assert_config_round_trip(layer, [rois, probs, deltas, meta])


def test_detection_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_confidence.*1.2"):
        DetectionLayer(max_instances=3, min_confidence=1.2, nms_threshold=0.3)
    with pytest.raises(ValueError, match="max_instances.*0"):
        DetectionLayer(max_instances=0, min_confidence=0.5, nms_threshold=0.3)


def test_box_layers_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layers = [NormBoxes(), PyramidAnchors((8,), [1], [4]), ProposalLayer(4, 0.7),
                  PyramidROIAlign((2, 2)), DetectionLayer(3, 0.5, 0.3)]
        for layer in layers:
            assert layer.compute_dtype == "float32", layer.name
        # NMS and per-level partitions have data-dependent shapes: no XLA under jit "auto".
        assert [layer.supports_jit for layer in layers] == [True, True, False, False, False]
    finally:
        keras.config.set_dtype_policy(previous)


# ------------------------------------------------------- detections for the mask head
def test_valid_detection_boxes_keep_the_batch_largest_count():
    from mrcnn.layers.outputs import ValidDetectionBoxes

    detections = np.zeros((2, 5, 6), np.float32)
    detections[0, :2] = [[0.1, 0.1, 0.5, 0.5, 3, 0.9], [0.2, 0.2, 0.6, 0.6, 1, 0.8]]
    detections[1, :3] = [[0.0, 0.0, 0.3, 0.3, 2, 0.95], [0.3, 0.3, 0.9, 0.9, 2, 0.9],
                         [0.5, 0.1, 0.7, 0.4, 1, 0.7]]
    layer = ValidDetectionBoxes()
    boxes = layer(detections).numpy()
    np.testing.assert_array_equal(boxes, detections[:, :3, :4])
    # No detection anywhere: one (zero) row, so that the mask head never sees an empty batch.
    np.testing.assert_array_equal(layer(np.zeros((2, 5, 6), np.float32)).numpy(), np.zeros((2, 1, 4)))
    assert layer.compute_output_shape((2, 5, 6)) == (2, None, 4)


def test_pad_rois_zero_pads_to_the_slot_count(rng):
    from mrcnn.layers.outputs import PadROIs

    x = rng.standard_normal((2, 3, 4, 4, 2)).astype(np.float32)
    out = PadROIs(5)(x).numpy()
    assert out.shape == (2, 5, 4, 4, 2)
    np.testing.assert_array_equal(out[:, :3], x)
    assert not out[:, 3:].any()
    padded = tf.function(lambda v: PadROIs(5)(v)).get_concrete_function(
        tf.TensorSpec([2, None, 4, 4, 2], tf.float32))
    assert tuple(padded.output_shapes) == (None, 5, 4, 4, 2)
    assert PadROIs.from_config(PadROIs(7, name="pad").get_config()).count == 7
    with pytest.raises(ValueError, match="count must be an integer >= 1, got 0"):
        PadROIs(0)
