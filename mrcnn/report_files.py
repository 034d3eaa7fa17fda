"""The files of an evaluation report: JSON, CSV, PNG figures and one HTML page.

:func:`write` puts into one folder:

==========================  ======================================================
``metrics.json``            :meth:`mrcnn.report.Report.to_dict` and the PR curves
``confusion.csv``           the confusion matrix (rows ground truth, columns predictions)
``confusion.png``           the same as a heat map with counts
``pr_curves.png``           pycocotools' precision-recall curve of each class, AP50 in
                            the legend, the operating point of the score threshold marked
``errors/NN_<name>.png``    the images with the most FP + FN: ground truth beside the
                            predictions, misses, false detections and class swaps marked
``detections.json``         every detection, COCO results format (RLE masks)
``ground_truth.json``       the ground truth, COCO instances format
``report.html``             one page showing all of it (relative links only: the folder
                            can be moved or zipped)
==========================  ======================================================

The confusion matrix and the curves are drawn on ``matplotlib.figure.Figure`` objects (no
pyplot state, no display); the gallery with PIL (a matplotlib figure per image would cost
more than the rest of the report).
"""
import csv
import html
import json
import logging
import os

import numpy as np

from mrcnn.coco import json_default as _json_default

logger = logging.getLogger(__name__)

MISS_COLOR = (0.9, 0.1, 0.1)
FALSE_COLOR = (0.9, 0.1, 0.1)
SWAP_COLOR = (1.0, 0.6, 0.0)
MATCH_COLOR = (0.1, 0.7, 0.2)
FILES = ("metrics.json", "confusion.csv", "confusion.png", "pr_curves.png",
         "detections.json", "ground_truth.json", "report.html")


def _save(fig, path, dpi=100):
    fig.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})
    return path


def _write_json(data, path):
    text = json.dumps(data, default=_json_default)     # the C encoder; json.dump is not
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------------------- figures
def confusion_figure(report):
    """Heat map of ``report.confusion`` with the count in each cell; returns a Figure."""
    from matplotlib.figure import Figure

    labels = report.confusion_labels
    matrix = report.confusion
    many = len(labels) > 25          # e.g. COCO's 80 classes: small type, zeros left blank
    size = min(max(4.0, (0.25 if many else 0.6) * len(labels) + 2.5), 24.0)
    fontsize = 5 if many else 9
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if not many else 90,
                  ha="right" if not many else "center", fontsize=fontsize + 1)
    ax.set_yticks(range(len(labels)), labels, fontsize=fontsize + 1)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"Confusion at {report.iou_type} IoU {report.iou_threshold:g}, "
                 f"score >= {report.score_threshold:g}")
    top = matrix.max() if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        if row == col == len(labels) - 1 or (many and count == 0):
            continue
        ax.text(col, row, str(int(count)), ha="center", va="center", fontsize=fontsize,
                color="white" if top and count > top / 2 else "black")
    return fig


def pr_figure(report):
    """pycocotools' PR curve of each class at IoU 0.5, AP50 in the legend; a Figure."""
    from matplotlib.figure import Figure

    from mrcnn.report import operating_point

    columns = -(-len(report.per_class) // 24)      # legend columns beside the axes
    fig = Figure(figsize=(7 + (2.6 * columns if columns > 1 else 0), 5.5), layout="constrained")
    ax = fig.add_subplot()
    colors = _class_colors(len(report.class_names))
    for row in report.per_class:
        curve = report.curves[row["class_id"]]
        if curve["AP50"] is None:
            continue        # no ground truth: no curve
        color = colors[row["class_id"]]
        ax.plot(curve["recall"], np.maximum(curve["precision"], 0), color=color,
                label=f"{row['name']} (AP50 {curve['AP50']:.3f})")
        recall, precision = operating_point(curve, report.score_threshold)
        ax.plot([recall], [precision], "o", color=color, markersize=6)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall, {report.iou_type} IoU {report.iou_threshold:g} "
                 f"(dots: score >= {report.score_threshold:g})")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        if columns > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, ncols=columns)
        else:
            ax.legend(loc="lower left", fontsize=9)
    return fig


def _class_colors(count):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 11 else "tab20"]
    return [cmap(i % cmap.N)[:3] for i in range(-1, count - 1)]


def _decode(annotation):
    from pycocotools import mask as mask_utils

    rle = dict(annotation["segmentation"])
    rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:               # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _panel(image, items, title, scale):
    """One panel: ``image`` with tinted masks, boxes and captions, a title above; PIL Image.

    items: [(annotation, (r, g, b) floats, caption, emphasised)]; emphasised boxes are
    drawn thicker. scale: > 1 enlarges small images (nearest neighbour), < 1 shrinks large
    ones, so that captions stay legible and files small.
    """
    from PIL import Image, ImageDraw

    shown = image.astype(np.float32)
    for ann, color, _, _ in items:
        mask = _decode(ann)
        shown[mask] = 0.65 * shown[mask] + 0.35 * 255.0 * np.asarray(color, np.float32)
    shown = Image.fromarray(np.clip(shown, 0, 255).astype(np.uint8))
    if scale != 1:
        size = (max(1, round(shown.width * scale)), max(1, round(shown.height * scale)))
        shown = shown.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    shown = np.asarray(shown)
    font = _font(13)
    bar = 22
    panel = Image.new("RGB", (shown.shape[1], shown.shape[0] + bar), "white")
    panel.paste(Image.fromarray(shown), (0, bar))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 4), title, fill="black", font=font)
    for ann, color, caption, emphasised in items:
        rgb = tuple(int(255 * c) for c in color)
        x, y, w, h = (v * scale for v in ann["bbox"])
        draw.rectangle([x, y + bar, x + w - 1, y + h - 1 + bar], outline=rgb,
                       width=3 if emphasised else 1)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        height, width = bottom - top + 3, right - left + 4
        ty = y + bar - height if y - height >= 0 else y + bar      # above the box, or inside
        draw.rectangle([x, ty, x + width, ty + height], fill=rgb)
        draw.text((x + 2 - left, ty + 1 - top), caption, fill="white", font=font)
    return panel


def error_image(report, row, image, min_side=360, max_side=640):
    """Ground truth (left) beside predictions >= threshold (right) of one image.

    row: one entry of ``report.images``. image: [H, W, 3] (or [H, W]) uint8.
    Matched instances are green, misses and false detections red, class swaps orange
    (thick boxes), crowd regions and detections on them grey. Images smaller than
    ``min_side`` are enlarged (nearest neighbour), larger than ``max_side`` shrunk.
    Returns: a PIL Image.
    """
    from PIL import Image, ImageDraw

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    names = report.class_names
    (a0, a1), (d0, d1) = row["annotation_range"], row["detection_range"]
    gts = report.ground_truth["annotations"][a0:a1]
    dets = report.detections[d0:d1]
    swapped_gt = {g: d for d, g in row["swaps"]}
    swapped_dt = {d: g for d, g in row["swaps"]}
    gt_items = []
    for g, ann in enumerate(gts):
        name = names[ann["category_id"]]
        if ann["iscrowd"]:
            gt_items.append((ann, (0.5, 0.5, 0.5), f"crowd {name}", False))
        elif g in row["misses"]:
            gt_items.append((ann, MISS_COLOR, f"MISS {name}", True))
        elif g in swapped_gt:
            called = names[dets[swapped_gt[g]]["category_id"]]
            gt_items.append((ann, SWAP_COLOR, f"{name} (called {called})", True))
        else:
            gt_items.append((ann, MATCH_COLOR, name, False))
    dt_items = []
    for d, det in enumerate(dets):
        if det["score"] < report.score_threshold:
            continue
        caption = f"{names[det['category_id']]} {det['score']:.2f}"
        if d in row["on_crowd"]:
            dt_items.append((det, (0.5, 0.5, 0.5), caption + " (on crowd)", False))
        elif d in row["false_detections"]:
            dt_items.append((det, FALSE_COLOR, "FP " + caption, True))
        elif d in swapped_dt:
            truth = names[gts[swapped_dt[d]]["category_id"]]
            dt_items.append((det, SWAP_COLOR, f"SWAP {caption} (is {truth})", True))
        else:
            dt_items.append((det, MATCH_COLOR, caption, False))
    side = max(image.shape[:2])
    scale = max(1, -(-min_side // side)) if side < min_side else min(1.0, max_side / side)
    left = _panel(image, gt_items, f"ground truth: {row['gt']}, {len(row['misses'])} missed",
                  scale)
    right = _panel(image, dt_items, f"predictions: {row['detections']}, FP {row['FP']}, "
                                    f"FN {row['FN']}", scale)
    head, gap = 24, 10
    out = Image.new("RGB", (left.width + right.width + gap, left.height + head), "white")
    out.paste(left, (0, head))
    out.paste(right, (left.width + gap, head))
    ImageDraw.Draw(out).text((4, 4), os.path.basename(str(row["file_name"])), fill="black",
                             font=_font(14))
    return out


# ---------------------------------------------------------------------------- the folder
def write_confusion_csv(report, path):
    """The confusion matrix as CSV: a header row of predictions, one row per ground truth."""
    labels = report.confusion_labels
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ground truth \\ prediction"] + labels)
        for label, counts in zip(labels, report.confusion):
            writer.writerow([label] + [int(c) for c in counts])
    return path


def write(report, out_dir, dataset=None, gallery=8, load_image=None):
    """Write the report's files (see the module docstring) into ``out_dir``.

    report: a :class:`mrcnn.report.Report`.
    dataset: the Dataset the images come from (``load_image(row["reference"])``), or
        None; load_image: a callable(row) -> [H, W, 3] image instead. Without either, the
        gallery is left out.
    gallery: how many error images to draw (the most FP + FN first); 0 for none.
    Returns: {name: path} of the files written.
    """
    if isinstance(gallery, bool) or not isinstance(gallery, (int, np.integer)) or gallery < 0:
        raise ValueError(f"gallery must be an integer >= 0, got {gallery!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in FILES}
    metrics = report.to_dict()
    metrics["curves"] = {str(c["name"]): {
        "AP50": report.curves[c["class_id"]]["AP50"],
        "recall": report.curves[c["class_id"]]["recall"],
        "precision": report.curves[c["class_id"]]["precision"]} for c in report.per_class}
    _write_json(metrics, paths["metrics.json"])
    _write_json(report.detections, paths["detections.json"])
    _write_json(report.ground_truth, paths["ground_truth.json"])
    write_confusion_csv(report, paths["confusion.csv"])
    _save(confusion_figure(report), paths["confusion.png"])
    _save(pr_figure(report), paths["pr_curves.png"])
    if load_image is None and dataset is not None:
        def load_image(row):
            return dataset.load_image(row["reference"])
    errors = []
    if load_image is not None and gallery:
        os.makedirs(os.path.join(out_dir, "errors"), exist_ok=True)
        for k, row in enumerate(report.worst_images(gallery), start=1):
            stem = os.path.splitext(os.path.basename(str(row["file_name"])))[0]
            name = f"errors/{k:02d}_{_safe(stem)}.png"
            error_image(report, row, load_image(row)).save(os.path.join(out_dir, name),
                                                           compress_level=1)
            errors.append((name, row))
    for name, _ in errors:
        paths[name] = os.path.join(out_dir, name)
    with open(paths["report.html"], "w", encoding="utf-8") as f:
        f.write(render_html(report, errors))
    logger.info("wrote the report to %s", out_dir)
    return paths


def _safe(text):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60] or "image"


# ---------------------------------------------------------------------------- HTML
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.gallery img { display: block; margin-bottom: 1em; }
.note { color: #666; font-size: 0.9em; }
"""

# Sets data-state="loaded", data-errors (script errors) and data-broken (images that do not
# decode) on <body> once the page has loaded, so that a headless browser can check it.
_CHECK_SCRIPT = """
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener("load", function () {
  var broken = [];
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-natural", img.naturalWidth + "x" + img.naturalHeight);
    if (!img.complete || img.naturalWidth === 0) { broken.push(img.getAttribute("src")); }
  });
  document.body.setAttribute("data-broken", broken.join(" "));
  document.body.setAttribute("data-errors", window.__errors.join(" | "));
  document.body.setAttribute("data-state", "loaded");
});
"""


def _fmt(value, digits=3):
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report, errors=()):
    """The report page as a str; errors: [(relative PNG path, image row)] of the gallery."""
    from mrcnn.report import COCO_SUMMARY_NAMES

    esc = html.escape
    summary = _table(["metric"] + list(COCO_SUMMARY_NAMES),
                     [[t] + [None if report.summary[t][n] == -1 else report.summary[t][n]
                             for n in COCO_SUMMARY_NAMES]
                      for t in ("bbox", "segm")])
    per_class = _table(
        ["class", "gt", "AP", "AP50", "AP75", "AP bbox", "AP50 bbox", "AP75 bbox", "TP", "FP",
         "FN", "precision", "recall", "F1"],
        [[c["name"], c["gt"], c["AP"], c["AP50"], c["AP75"], c["AP_bbox"], c["AP50_bbox"],
          c["AP75_bbox"], c["TP"], c["FP"], c["FN"], c["precision"], c["recall"], c["F1"]]
         for c in report.per_class])
    labels = report.confusion_labels
    confusion = _table(["ground truth \\ prediction"] + labels,
                       [[label] + [int(v) for v in row]
                        for label, row in zip(labels, report.confusion)])
    gallery = "".join(
        f'<figure><img class="error" src="{esc(name)}" alt="errors of {esc(str(row["file_name"]))}">'
        f'<figcaption>{esc(str(row["file_name"]))}: FP {row["FP"]}, FN {row["FN"]}'
        f'</figcaption></figure>' for name, row in errors) or \
        '<p class="note">No image with errors (or the gallery was not asked for).</p>'
    skipped = "".join(f"<li>{esc(str(s['file_name']))}: {esc(s['reason'])}</li>"
                      for s in report.skipped)
    skipped = f"<h2>Skipped images</h2><ul>{skipped}</ul>" if skipped else ""
    links = " &middot; ".join(f'<a href="{n}">{n}</a>' for n in
                              ("metrics.json", "confusion.csv", "detections.json",
                               "ground_truth.json"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mrcnn evaluation report</title>
<style>{_STYLE}</style><script>{_CHECK_SCRIPT}</script></head>
<body>
<h1>Evaluation report</h1>
<p>{len(report.images)} images, {len(report.skipped)} skipped, {len(report.detections)}
detections. Counts at score &ge; {report.score_threshold:g} and {esc(report.iou_type)}
IoU &ge; {report.iou_threshold:g}. Files: {links}.</p>
<h2>COCO metrics (pycocotools)</h2>{summary}
<p class="note">&ndash;: no ground truth in that size range (pycocotools' -1).</p>
<h2>Per class</h2>{per_class}
<p class="note">AP, AP50, AP75: pycocotools' per-category values (masks; "bbox": boxes).
TP / FP / FN at the score threshold; a class swap is a FP of the predicted class and a FN
of the true one.</p>
<div class="figures">
<div><h2>Confusion matrix</h2><img id="confusion" src="confusion.png" alt="confusion matrix">
{confusion}</div>
<div><h2>Precision-recall</h2><img id="pr-curves" src="pr_curves.png" alt="precision-recall curves"></div>
</div>
<h2>Error gallery</h2>
<p class="note">The images with the most FP + FN. Left: ground truth (green: found; red,
thick: missed; orange: detected as another class; grey: crowd). Right: predictions at score
&ge; {report.score_threshold:g} (green: true; red, thick: false detection; orange: class
swap; grey: on a crowd region, not counted).</p>
<div class="gallery">{gallery}</div>
{skipped}
</body></html>
"""
