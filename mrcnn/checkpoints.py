"""Checkpoint names and lookup, without TensorFlow (command lines check them before it starts).

Layout: ``<model_dir>/<name lowercased><YYYYmmddTHHMM>/mask_rcnn_<name>_<epoch:04d>.h5``.
Other ``.h5`` files in a run folder (e.g. ``mask_rcnn_<name>_best.h5``) are not resume points.
"""
import os
import re

# A checkpoint's full path: the run folder's name and stamp, and the epoch it ends.
CHECKPOINT_PATTERN = re.compile(
    r".*[/\\](?P<name>[\w.-]+?)(?P<stamp>\d{8}T\d{4})[/\\]mask_rcnn_[\w.-]+_(?P<epoch>\d{4})\.h5$")
# A checkpoint's file name.
CHECKPOINT_FILE = re.compile(r"mask_rcnn_[\w.-]+_\d{4}\.h5")


def epoch_checkpoints(folder):
    """Sorted file names of the epoch checkpoints in ``folder`` ([] if it does not exist)."""
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if CHECKPOINT_FILE.fullmatch(f))


def find_last_checkpoint(model_dir, name):
    """Last epoch checkpoint of the newest run folder of ``name`` under ``model_dir``.

    Older run folders are searched when the newest has none (a run that died before its
    first epoch). Returns the path, or None when there is none.
    """
    name = name.lower()
    if not os.path.isdir(model_dir):
        return None
    folders = sorted(d for d in os.listdir(model_dir)
                     if d.startswith(name) and os.path.isdir(os.path.join(model_dir, d)))
    for folder in reversed(folders):
        files = epoch_checkpoints(os.path.join(model_dir, folder))
        if files:
            return os.path.join(model_dir, folder, files[-1])
    return None
