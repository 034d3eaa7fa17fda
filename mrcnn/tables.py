"""Text and HTML tables for notebooks: display_table and display_weight_stats.

Part of the visualize surface (``mrcnn.visualize`` re-exports both); NumPy only.
"""
import html
import logging
import sys

import numpy as np

logger = logging.getLogger("mrcnn.visualize")


def _table_text(rows):
    """Plain-text table: columns padded to their widest cell, a rule under the first row."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        return ""
    ncols = max(len(r) for r in cells)
    cells = [r + [""] * (ncols - len(r)) for r in cells]
    widths = [max(len(r[k]) for r in cells) for k in range(ncols)]
    lines_ = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines_.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines_)


def _table_html(rows):
    """HTML table, the first row as header cells, every cell escaped."""
    out = ["<table>"]
    for index, row in enumerate(rows):
        tag = "th" if index == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _in_notebook():
    """True inside a Jupyter kernel (IPython already imported and running a kernel shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and (hasattr(shell, "kernel") or type(shell).__name__ == "ZMQInteractiveShell")


def display_table(table):
    """Show a table whose first row is the header.

    table: list of rows, each a list of cells (anything ``str()`` can show).
    Inside Jupyter (IPython importable and a kernel running) the table is displayed as HTML and
    the HTML string is returned; elsewhere nothing is displayed and the plain-text table is
    returned (columns padded, a dashed rule under the header).
    """
    rows = [list(row) for row in table]
    if _in_notebook():
        from IPython.display import HTML, display  # optional dependency, only in notebooks
        markup = _table_html(rows)
        display(HTML(markup))
        return markup
    return _table_text(rows)


_ZERO_OK = ("bias", "beta", "moving_mean")
WEIGHT_STATS_HEADER = ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD", "FLAG"]


def _weight_flag(name, array):
    """Why a weight array looks wrong, or "" when it looks fine."""
    if array.size == 0:
        return "empty"
    if not np.all(np.isfinite(array)):
        return "nan/inf"
    if not np.any(array) and not name.rsplit("/", 1)[-1].startswith(_ZERO_OK):
        return "all zero"
    if np.max(np.abs(array)) > 1000:
        return "|w| > 1000"
    return ""


def _model_layers(model):
    """The layers of a MaskRCNN (get_trainable_layers / keras_model.layers) or a Keras model."""
    if hasattr(model, "get_trainable_layers"):
        return list(model.get_trainable_layers())
    keras_model = getattr(model, "keras_model", model)
    if not hasattr(keras_model, "layers"):
        raise ValueError(f"model must have get_trainable_layers(), keras_model.layers or layers; "
                         f"got {type(model).__name__}")
    return list(keras_model.layers)


def display_weight_stats(model):
    """Table of min / max / std of every weight array, flagging suspicious ones.

    model: a MaskRCNN (``get_trainable_layers()`` is walked), or anything with ``keras_model``
    or ``layers``. Each layer needs ``name`` and ``get_weights()`` (NumPy arrays); the weight names
    come from ``layer.weights[k].path`` (Keras 3) or ``.name``, else "<layer>/<k>".
    Flags: "nan/inf", "all zero" (except bias, beta and moving_mean, which start at zero),
    "|w| > 1000", "empty".

    Returns: rows [name, shape tuple, min, max, std, flag] (floats; NaN for empty arrays), one per
    weight array. The table (``WEIGHT_STATS_HEADER`` + rows) goes to ``display_table`` and the log.
    """
    rows = []
    for layer in _model_layers(model):
        arrays = layer.get_weights()
        variables = list(getattr(layer, "weights", []) or [])
        for k, array in enumerate(arrays):
            array = np.asarray(array)
            name = None
            if k < len(variables):
                name = getattr(variables[k], "path", None) or getattr(variables[k], "name", None)
            name = str(name) if name else f"{layer.name}/{k}"
            stats = ([float(array.min()), float(array.max()), float(array.std())]
                     if array.size else [float("nan")] * 3)
            rows.append([name, tuple(array.shape), *stats, _weight_flag(name, array)])
    table = [WEIGHT_STATS_HEADER] + [
        [r[0], str(r[1]), f"{r[2]:+9.4f}", f"{r[3]:+10.4f}", f"{r[4]:+9.4f}", r[5]] for r in rows]
    text = display_table(table)
    logger.info("weight stats:\n%s", text)
    return rows
