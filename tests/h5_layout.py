"""Test helpers: the reference matterport weight layout and models that match it.

``parse_layout`` reads ``../shared/reference/matterport_h5_layout.txt`` (beside
the checkout); ``write_reference_h5`` writes an ``.h5`` file with exactly that
layout (random values) in the Keras-2 legacy format, as tf_keras writes it
(byte-string attrs, an empty ``top_level_model_weights`` group).
"""
import os
import re

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(REPO_ROOT, "..", "shared", "reference")
LAYOUT_PATH = os.path.join(REFERENCE_DIR, "matterport_h5_layout.txt")

_LAYER_RE = re.compile(r"^\s*(\d+)\s+(\S+)\s+\((\d+) weights\)\s*$")
_WEIGHT_RE = re.compile(r"^\s+(\S+)\s+\(([\d,\s]*)\)\s+(\w+)\s*$")


def layout_path_or_skip():
    """Absolute path of the layout file, or skip the test when it is absent."""
    path = os.path.abspath(LAYOUT_PATH)
    if not os.path.isfile(path):
        pytest.skip(f"reference layout {path} is absent (it lives beside the checkout in ../shared/reference)")
    return path


def parse_layout(path):
    """Parse the layout file.

    Args:
        path: path of ``matterport_h5_layout.txt``.

    Returns:
        list of (layer_name, [(weight_name, shape tuple)]) in file order, one
        entry per layer (an empty list for layers without weights).
    """
    layers = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            m = _LAYER_RE.match(line)
            if m:
                layers.append((m.group(2), []))
                continue
            m = _WEIGHT_RE.match(line)
            if not m or not layers:
                raise ValueError(f"unexpected line in {path}: {line!r}")
            shape = tuple(int(d) for d in m.group(2).replace(" ", "").split(",") if d)
            layers[-1][1].append((m.group(1), shape))
    return layers


def weighted(layout):
    """{layer_name: [(weight_name, shape)]} for the layers that have weights."""
    return {name: weights for name, weights in layout if weights}


def expand_to_resnet101(layout):
    """The ResNet-101 layout: stage-4 identity blocks g..w copied from block f."""
    out = []
    for name, weights in layout:
        out.append((name, weights))
        if name == "res4f_out":
            block_f = [(n, w) for n, w in layout if re.fullmatch(r"(res|bn)4f_.*", n)]
            for letter in "ghijklmnopqrstuvw":
                for n, w in block_f:
                    new = n.replace("4f_", f"4{letter}_")
                    out.append((new, [(wn.replace("4f_", f"4{letter}_"), s) for wn, s in w]))
    return out


def write_reference_h5(path, layout, rng, layers=None, str_attrs=False):
    """Write an ``.h5`` file with the given layout and random float32 values.

    Args:
        path: output file.
        layout: ``parse_layout`` output (or a filtered copy).
        rng: ``np.random.Generator``; values are standard normal, moving
            variances are |normal| + 0.5.
        layers: optional collection of layer names to keep (others are left out
            of the file entirely).
        str_attrs: False: byte-string attrs as Keras 2 writes them; True: str.

    Returns:
        {layer_name: [np.ndarray, ...]} the values written, in weight order.
    """
    import h5py

    def encode(names):
        if str_attrs:
            return np.array(names, dtype=h5py.string_dtype())
        return np.array([n.encode("utf8") for n in names], dtype=bytes if names else "S1")

    kept = [(n, w) for n, w in layout if layers is None or n in layers]
    values = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = encode([n for n, _ in kept])
        f.attrs["backend"] = "tensorflow" if str_attrs else b"tensorflow"
        f.attrs["keras_version"] = "2.21.0" if str_attrs else b"2.21.0"
        f.create_group("top_level_model_weights")
        for name, weights in kept:
            group = f.create_group(name)
            group.attrs["weight_names"] = encode([wn for wn, _ in weights])
            arrays = []
            for wn, shape in weights:
                data = rng.standard_normal(shape).astype(np.float32)
                if wn.endswith("moving_variance:0"):
                    data = np.abs(data) + 0.5
                group.create_dataset(wn, data=data)
                arrays.append(data)
            if weights:
                values[name] = arrays
    return values


def build_layout_model(architecture, num_classes=81, image_size=64, num_rois=2, norm="batch"):
    """Backbone + FPN + RPN + both heads as one functional model (no ROI layers).

    Inputs: "input_image" [B, S, S, 3], "pooled_classifier" [B, num_rois, 7, 7, 256],
    "pooled_mask" [B, num_rois, 14, 14, 256]. The weighted layers are those of
    a matterport model of the same architecture and class count.
    """
    import keras

    from mrcnn.backbone import build_fpn, resnet_graph
    from mrcnn.heads import build_rpn_model, fpn_classifier_head, fpn_mask_head

    image = keras.Input((image_size, image_size, 3), name="input_image")
    _, c2, c3, c4, c5 = resnet_graph(image, architecture, stage5=True, train_bn=False, norm=norm)
    pyramid = build_fpn(c2, c3, c4, c5, 256)
    rpn = build_rpn_model(1, 3, 256)
    rpn_outputs = [rpn(p) for p in pyramid]
    pooled_classifier = keras.Input((num_rois, 7, 7, 256), name="pooled_classifier")
    pooled_mask = keras.Input((num_rois, 14, 14, 256), name="pooled_mask")
    head = fpn_classifier_head(pooled_classifier, num_classes, False, 1024, norm=norm)
    mask = fpn_mask_head(pooled_mask, num_classes, False, norm=norm)
    outputs = list(pyramid) + [t for out in rpn_outputs for t in out] + list(head) + [mask]
    return keras.Model([image, pooled_classifier, pooled_mask], outputs, name=f"layout_{architecture}")
