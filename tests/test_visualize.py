"""Tests for mrcnn.visualize: what is drawn (patches, texts, pixels), not only that it runs."""
import matplotlib

matplotlib.use("Agg")

import subprocess  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import patches  # noqa: E402

from mrcnn import visualize  # noqa: E402

CLASS_NAMES = ["BG", "cat", "dog", "bird"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _rectangles(ax):
    return [p for p in ax.patches if isinstance(p, patches.Rectangle)]


def _polygons(ax):
    return [p for p in ax.patches if isinstance(p, patches.Polygon)]


def _texts(ax):
    return [t.get_text() for t in ax.texts]


@pytest.fixture
def scene():
    """A 20x24 grey image with three rectangular instances (cat, dog, bird)."""
    image = np.full((20, 24, 3), 100, dtype=np.uint8)
    image[:, :, 1] = 40
    boxes = np.array([[1, 2, 6, 8], [8, 10, 15, 20], [14, 1, 19, 5]], dtype=np.int32)
    masks = np.zeros((20, 24, 3), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    class_ids = np.array([1, 2, 3], dtype=np.int32)
    scores = np.array([0.9, 0.75, 0.5])
    colors = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)]
    return image, boxes, masks, class_ids, scores, colors


# --------------------------------------------------------------------------- colours and pixels
def test_random_colors_count_range_and_determinism():
    a = visualize.random_colors(7, seed=3)
    b = visualize.random_colors(7, seed=3)
    c = visualize.random_colors(7, seed=4)
    assert len(a) == 7 and a == b and a != c
    assert all(len(col) == 3 and all(0.0 <= v <= 1.0 for v in col) for col in a)
    assert len(set(a)) == 7
    hues = sorted(mcolors.rgb_to_hsv(np.array(a))[:, 0])
    np.testing.assert_allclose(hues, np.arange(7) / 7, atol=1e-9)
    dim = np.array(visualize.random_colors(5, bright=False, seed=0))
    np.testing.assert_allclose(dim.max(axis=1), 0.7)
    assert visualize.random_colors(0) == []
    with pytest.raises(ValueError, match="-1"):
        visualize.random_colors(-1)


def test_apply_mask_exact_values_and_copy():
    image = np.array([[[10.0, 20.0, 30.0], [200.0, 100.0, 0.0]]])
    mask = np.array([[True, False]])
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.5), alpha=0.25)
    np.testing.assert_allclose(out[0, 0], [0.75 * 10 + 0.25 * 255, 0.75 * 20, 0.75 * 30 + 0.25 * 127.5])
    np.testing.assert_array_equal(out[0, 1], [200.0, 100.0, 0.0])
    np.testing.assert_array_equal(image[0, 0], [10.0, 20.0, 30.0])  # input untouched
    assert out is not image

    u8 = np.array([[[11, 0, 255]]], dtype=np.uint8)
    out8 = visualize.apply_mask(u8, np.ones((1, 1), bool), (0.2, 1.0, 0.0))
    assert out8.dtype == np.uint8
    # 0.5*11 + 0.5*51 = 31; 0.5*0 + 127.5 -> 128 (round half to even); 127.5 -> 128.
    np.testing.assert_array_equal(out8[0, 0], [31, 128, 128])


def test_apply_mask_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 2\)"):
        visualize.apply_mask(np.zeros((3, 4, 3)), np.zeros((2, 2), bool), (1, 0, 0))


def test_draw_box_one_pixel_outline_in_a_copy():
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    out = visualize.draw_box(image, (2, 3, 6, 8), (255, 0, 0))
    assert not image.any()
    expected = np.zeros((10, 12), dtype=bool)
    expected[2, 3:8] = expected[5, 3:8] = True
    expected[2:6, 3] = expected[2:6, 7] = True
    np.testing.assert_array_equal(out[:, :, 0] == 255, expected)
    assert expected.sum() == 14 and not out[:, :, 1:].any()
    # float colours in [0, 1] are scaled; boxes past the border are clipped.
    clipped = visualize.draw_box(image, (7, 9, 20, 30), (0.0, 1.0, 0.0))
    assert clipped[7, 9:, 1].tolist() == [255] * 3 and clipped[7:, 9, 1].tolist() == [255] * 3
    assert clipped[9, 11, 1] == 0  # the clipped far sides are outside the image: no outline there
    with pytest.raises(ValueError, match="box"):
        visualize.draw_box(image, (1, 2, 3), (255, 0, 0))


# --------------------------------------------------------------------------- display_instances
def test_display_instances_patches_texts_and_captions(scene):
    image, boxes, masks, class_ids, scores, colors = scene
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores,
                                     title="t", colors=colors)
    rects = _rectangles(ax)
    assert len(rects) == 3
    assert [r.get_edgecolor()[:3] for r in rects] == [tuple(c) for c in colors]
    assert rects[1].get_xy() == (9.5, 7.5) and rects[1].get_width() == 10 and rects[1].get_height() == 7
    assert _texts(ax) == ["cat 0.900", "dog 0.750", "bird 0.500"]
    assert len(_polygons(ax)) == 3
    assert ax.get_title() == "t"

    ax2 = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores,
                                      show_bbox=False, colors=colors)
    assert len(_rectangles(ax2)) == 0
    assert _texts(ax2) == ["cat 0.900", "dog 0.750", "bird 0.500"]

    ax3 = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                      captions=["a", "b", "c"])
    assert _texts(ax3) == ["a", "b", "c"]
    ax4 = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES)
    assert _texts(ax4) == ["cat", "dog", "bird"]


def test_display_instances_mask_pixels_and_contours(scene):
    image, boxes, masks, class_ids, scores, colors = scene
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores, colors=colors)
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (20, 24, 3) and shown.dtype == np.uint8
    expected = visualize.apply_mask(image, masks[:, :, 1], colors[1])
    np.testing.assert_array_equal(shown[10, 12], expected[10, 12])
    np.testing.assert_array_equal(shown[10, 12], [50, 20, 178])  # 0.5*[100,40,100] + 0.5*[0,0,255]
    np.testing.assert_array_equal(shown[0, 23], image[0, 23])  # unmasked: unchanged
    # The outline of mask 0 (rows 1..5, cols 2..7) runs half a pixel outside it.
    xy = _polygons(ax)[0].get_xy()
    np.testing.assert_allclose([xy[:, 0].min(), xy[:, 0].max()], [1.5, 7.5])
    np.testing.assert_allclose([xy[:, 1].min(), xy[:, 1].max()], [0.5, 5.5])

    plain = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, show_mask=False)
    np.testing.assert_array_equal(np.asarray(plain.images[0].get_array()), image)
    assert len(_polygons(plain)) == 3  # outlines still drawn, as in matterport


def test_display_instances_skips_padding_rows(scene):
    image, boxes, masks, class_ids, scores, colors = scene
    boxes = boxes.copy()
    boxes[2] = 0
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores)
    assert len(_rectangles(ax)) == 2 and _texts(ax) == ["cat 0.900", "dog 0.750"]


def test_display_instances_no_instances(scene):
    image = scene[0]
    ax = visualize.display_instances(image, np.zeros((0, 4)), np.zeros((20, 24, 0), bool),
                                     np.zeros((0,), np.int32), CLASS_NAMES)
    assert _texts(ax) == ["No instances to display"]
    assert not ax.patches
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), image)
    ax2 = visualize.display_instances(image, [], None, [], CLASS_NAMES)
    assert _texts(ax2) == ["No instances to display"]


def test_display_instances_errors(scene):
    image, boxes, masks, class_ids, scores, _ = scene
    with pytest.raises(ValueError, match=r"boxes \(3, 4\), masks \(20, 24, 2\), class_ids \(3,\)"):
        visualize.display_instances(image, boxes, masks[:, :, :2], class_ids, CLASS_NAMES)
    with pytest.raises(ValueError, match=r"class_ids \(2,\)"):
        visualize.display_instances(image, boxes, masks, class_ids[:2], CLASS_NAMES)
    with pytest.raises(ValueError, match=r"\(20, 24\).*\(10, 24, 3\)"):
        visualize.display_instances(image, boxes, masks[:10], class_ids, CLASS_NAMES)
    with pytest.raises(ValueError, match="scores has 2"):
        visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores[:2])
    with pytest.raises(ValueError, match="class id 7"):
        visualize.display_instances(image, boxes, masks, np.array([1, 7, 2]), CLASS_NAMES)


def test_display_instances_draws_on_given_axes(scene):
    image, boxes, masks, class_ids, scores, _ = scene
    fig, ax = plt.subplots()
    assert visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, ax=ax) is ax
    assert len(fig.axes) == 1


# --------------------------------------------------------------------------- differences, rois, boxes
def test_display_differences_colours_and_captions(scene):
    image, boxes, masks, _, _, _ = scene
    gt_box, gt_mask, gt_ids = boxes[:2], masks[:, :, :2], np.array([1, 2])
    # pred 0: exact copy of gt 1 (dog), score 0.6; pred 1: half of gt 0 (cat), score 0.8.
    half = np.zeros((20, 24), bool)
    half[1:6, 2:5] = True  # 15 of the 30 pixels of gt 0
    pred_box = np.array([boxes[1], [1, 2, 6, 5]])
    pred_mask = np.stack([masks[:, :, 1], half], axis=2)
    ax = visualize.display_differences(image, gt_box, gt_ids, gt_mask, pred_box, np.array([2, 1]),
                                       np.array([0.6, 0.8]), pred_mask, CLASS_NAMES)
    edge = [r.get_edgecolor()[:3] for r in _rectangles(ax)]
    assert edge == [(0.0, 1.0, 0.0)] * 2 + [(1.0, 0.0, 0.0)] * 2
    # Predictions are drawn by descending score: the half cat (IoU 0.5, matched) then the dog.
    assert _texts(ax) == ["cat", "dog", "0.80 / 0.50", "0.60 / 1.00"]
    ax2 = visualize.display_differences(image, gt_box, gt_ids, gt_mask, pred_box, np.array([2, 1]),
                                        np.array([0.6, 0.8]), pred_mask, CLASS_NAMES,
                                        iou_threshold=0.9, show_box=False)
    assert not _rectangles(ax2)
    assert _texts(ax2)[2:] == ["0.80 / 0.50", "0.60 / 1.00"]  # best IoU when unmatched
    no_gt = visualize.display_differences(image, np.zeros((0, 4)), [], np.zeros((20, 24, 0), bool),
                                          pred_box[:1], [2], [0.6], pred_mask[:, :, :1], CLASS_NAMES)
    assert _texts(no_gt) == ["0.60 / 0.00"]
    with pytest.raises(ValueError, match=r"pred_score \(1,\)"):
        visualize.display_differences(image, gt_box, gt_ids, gt_mask, pred_box, np.array([2, 1]),
                                      np.array([0.6]), pred_mask, CLASS_NAMES)


def test_draw_rois_positive_and_negative(scene):
    image = scene[0]
    rois = np.array([[2, 2, 10, 10], [5, 5, 15, 20]])
    refined = np.array([[3, 3, 9, 9], [5, 5, 15, 20]])
    roi_masks = np.zeros((2, 4, 4, 4), np.float32)
    roi_masks[0, :, :, 2] = 1.0  # the class-2 channel of ROI 0 is full
    ax = visualize.draw_rois(image, rois, refined, roi_masks, np.array([2, 0]), CLASS_NAMES, seed=0)
    assert len(_rectangles(ax)) == 3 and len(ax.lines) == 1
    assert _texts(ax) == ["dog"]
    assert "1 positive, 1 negative" in ax.get_title()
    shown = np.asarray(ax.images[0].get_array())
    assert not np.array_equal(shown[5, 5], image[5, 5]) and np.array_equal(shown[15, 15], image[15, 15])
    many = visualize.draw_rois(image, np.tile(rois, (10, 1)), None, None, np.zeros(20, int),
                               CLASS_NAMES, limit=4, seed=1)
    assert len(_rectangles(many)) == 4 and many.get_title().startswith("4 of 20 ROIs")


def test_draw_boxes_visibility_and_captions(scene):
    image, boxes, masks, *_ = scene
    refined = boxes + 1
    ax = visualize.draw_boxes(image, boxes, refined, masks, captions=["a", "b", "c"],
                              visibilities=[0, 1, 2], colors=[(1, 0, 0)] * 3)
    rects = _rectangles(ax)
    assert len(rects) == 5  # 3 boxes + refined boxes of the two visible ones
    assert [r.get_linestyle() for r in rects] == ["dotted", "dotted", "solid", "solid", "solid"]
    assert len(ax.lines) == 2 and _texts(ax) == ["a", "b", "c"]
    assert len(_polygons(ax)) == 3
    with pytest.raises(ValueError, match="neither"):
        visualize.draw_boxes(image)
    with pytest.raises(ValueError, match="visibilities"):
        visualize.draw_boxes(image, boxes, visibilities=[0, 3, 1])


# --------------------------------------------------------------------------- grids and plots
def test_display_images_grid_and_titles():
    images = [np.zeros((4, 4, 3), np.uint8), np.ones((4, 4)), np.full((4, 4, 3), 9.0)]
    fig = visualize.display_images(images, titles=["a", "b", "c"], cols=2)
    with_images = [a for a in fig.axes if a.images]
    assert len(with_images) == 3 and [a.get_title() for a in with_images] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="titles has 1 entries but images has 3"):
        visualize.display_images(images, titles=["x"])
    with pytest.raises(ValueError, match="empty"):
        visualize.display_images([])


def test_display_top_masks_panels(scene):
    image, _, masks, _, _, _ = scene
    class_ids = np.array([1, 2, 2])  # dog covers 70 + 20 px, cat 30 px
    fig = visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=3)
    axes = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in axes] == ["H x W=20x24", "dog", "cat", "-"]
    dog = np.asarray(axes[1].images[0].get_array())
    assert dog[10, 12] == 1 and dog[16, 2] == 2 and dog[0, 0] == 0


def test_plot_precision_recall_line_data():
    precisions = np.array([1.0, 1.0, 0.5, 0.5, 0.0])
    recalls = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    ax = visualize.plot_precision_recall(0.75, precisions, recalls)
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), recalls)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), precisions)
    assert ax.get_title() == "Precision-Recall Curve. AP@50 = 0.750"
    with pytest.raises(ValueError, match=r"\(5,\).*\(4,\)"):
        visualize.plot_precision_recall(0.5, precisions, recalls[:4])


def test_plot_overlaps_cells():
    overlaps = np.array([[0.9, 0.0, 0.1], [0.6, 0.2, 0.0]])
    ax = visualize.plot_overlaps(np.array([1, 2, 3]), np.array([1, 3]), np.array([0.95, 0.4]),
                                 overlaps, CLASS_NAMES)
    texts = _texts(ax)
    assert len(texts) == 6
    assert texts[0] == "0.900\nmatch" and texts[3] == "0.600\nwrong" and texts[1] == "0.000\n"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat (0.95)", "bird (0.40)"]
    empty = visualize.plot_overlaps([], [], [], np.zeros((0, 0)), CLASS_NAMES)
    assert _texts(empty) == ["No overlaps to display"]
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        visualize.plot_overlaps([1, 2, 3], [1, 3], [0.9, 0.4], overlaps.T, CLASS_NAMES)


def test_plot_loss_history_and_save_figure(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0], "rpn_class_loss": [1.0, 0.5, 0.2]}
    ax = visualize.plot_loss_history(types.SimpleNamespace(history=history))
    assert [line.get_label() for line in ax.lines] == ["loss", "val_loss", "rpn_class_loss"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [3.5, 2.5, 2.0])
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    with pytest.raises(ValueError, match="mrcnn_mask_loss"):
        visualize.plot_loss_history(history, keys=["mrcnn_mask_loss"])
    path = tmp_path / "sub" / "loss.png"
    assert visualize.save_figure(ax, str(path), close=True) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(ax.figure.number)


def test_auto_show_only_with_interactive_backend(monkeypatch, scene):
    calls = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    image, boxes, masks, class_ids, *_ = scene
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, auto_show=True)
    assert calls == []  # Agg is not interactive
    monkeypatch.setattr(visualize, "_backend_is_interactive", lambda: True)
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES)
    assert calls == []
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, auto_show=True)
    assert calls == [1]


# --------------------------------------------------------------------------- tables and weights
def test_display_table_plain_text():
    text = visualize.display_table([["NAME", "VALUE"], ["a", 1], ["long_name", 2.5]])
    assert text == ("NAME       VALUE\n"
                    "---------  -----\n"
                    "a          1\n"
                    "long_name  2.5")


def test_display_table_html_in_notebook(monkeypatch):
    shown = []
    fake_display = types.ModuleType("IPython.display")
    fake_display.HTML = lambda markup: ("HTML", markup)
    fake_display.display = shown.append
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    fake_ipython.display = fake_display
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", fake_display)
    markup = visualize.display_table([["A", "B"], ["<x>", 1]])
    assert markup == "<table><tr><th>A</th><th>B</th></tr><tr><td>&lt;x&gt;</td><td>1</td></tr></table>"
    assert shown == [("HTML", markup)]


class _FakeVariable:
    def __init__(self, path):
        self.path = path


class _FakeLayer:
    def __init__(self, name, arrays):
        self.name = name
        self._arrays = arrays
        self.weights = [_FakeVariable(f"{name}/{n}") for n in ("kernel", "bias")[:len(arrays)]]

    def get_weights(self):
        return self._arrays


class _FakeModel:
    def __init__(self, layers):
        self._layers = layers

    def get_trainable_layers(self):
        return self._layers


def test_display_weight_stats_rows_and_flags():
    kernel = np.array([[-1.0, 3.0], [1.0, 1.0]])
    model = _FakeModel([
        _FakeLayer("conv1", [kernel, np.zeros(2)]),
        _FakeLayer("dead", [np.zeros((2, 2)), np.array([np.nan, 0.0])]),
    ])
    rows = visualize.display_weight_stats(model)
    assert [r[0] for r in rows] == ["conv1/kernel", "conv1/bias", "dead/kernel", "dead/bias"]
    assert rows[0][1] == (2, 2)
    np.testing.assert_allclose(rows[0][2:5], [-1.0, 3.0, np.sqrt(2.0)])
    assert [r[5] for r in rows] == ["", "", "all zero", "nan/inf"]

    # A plain keras-like object with .layers and unnamed weights.
    bare = types.SimpleNamespace(layers=[types.SimpleNamespace(name="fc", get_weights=lambda: [np.ones(3)])])
    assert visualize.display_weight_stats(bare) == [["fc/0", (3,), 1.0, 1.0, 0.0, ""]]
    with pytest.raises(ValueError, match="int"):
        visualize.display_weight_stats(5)


def test_module_imports_no_tensorflow_or_keras():
    code = ("import sys, mrcnn.visualize; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'IPython') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
