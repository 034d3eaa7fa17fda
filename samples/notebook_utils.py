"""Helpers shared by the sample notebooks (which run with ``samples/`` as working folder).

``MRCNN_NOTEBOOK_SMALL=1`` in the environment switches every notebook to small settings
(toy model, few images, a few training steps, the Agg backend): that is how CI executes
them end to end. Nothing here runs at import time.
"""
import logging
import os

logger = logging.getLogger(__name__)

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS_DIR = os.path.join(ROOT_DIR, "logs")
SMALL_ENV = "MRCNN_NOTEBOOK_SMALL"


def small_mode(environ=None):
    """True when ``MRCNN_NOTEBOOK_SMALL`` is set to something other than "", "0", "false", "no"."""
    value = (os.environ if environ is None else environ).get(SMALL_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def get_ax(rows=1, cols=1, size=6):
    """A figure of rows x cols axes, ``size`` inches each; returns the Axes (array if several)."""
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows))
    return axes


def shapes_inference_model(small, logs_dir=LOGS_DIR):
    """An inference MaskRCNN for the shapes sample, with the newest trained weights if any.

    small: use SmallShapesConfig (random weights: a toy model is never looked up in logs).
    logs_dir: where ``python samples/shapes.py train`` writes its checkpoints.

    Returns (model, config, weights_path or None). When no checkpoint of the full model
    exists, the model keeps its random initial weights and a note says so.
    """
    from mrcnn.checkpoints import choose_last_checkpoint
    from mrcnn.model import MaskRCNN
    from samples import shapes

    config_class = shapes.SmallShapesConfig if small else shapes.ShapesConfig
    config = shapes.inference_config(config_class)
    model = MaskRCNN("inference", config, logs_dir)
    weights = None
    if not small:
        # The newest full-size run: a newer --small run's checkpoint does not fit this model.
        weights, _, _ = choose_last_checkpoint(logs_dir, shapes.ShapesConfig.NAME,
                                               {"small": False}, toy_key="small")
    if weights:
        model.load_weights(weights, by_name=True)
        print(f"Loaded trained weights {weights}")
    else:
        print("No trained shapes checkpoint is used: the model has RANDOM weights, so its "
              "detections mean nothing (run `python samples/shapes.py train` first).")
    return model, config, weights
