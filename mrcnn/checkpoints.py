"""Checkpoint names and lookup, without TensorFlow (command lines check them before it starts).

Layout: ``<model_dir>/<name lowercased><YYYYmmddTHHMM>/`` holds

- ``mask_rcnn_<name>_<epoch:04d>.h5``: weights at the end of epoch ``epoch`` (1-based), in
  matterport's HDF5 layout (matterport and older mrcnn files are exactly this);
- ``mask_rcnn_<name>_<epoch:04d>.step<step:06d>.h5``: weights after ``step`` steps of epoch
  ``epoch`` (mid-epoch checkpoints, ``Config.CHECKPOINT_EVERY_STEPS``);
- beside each, ``<weights file without .h5>.state.npz``: the rest of the training state
  (optimizer momentum and iteration count, learning rate, epoch, step; mrcnn.training).

Other ``.h5`` files in a run folder (e.g. ``mask_rcnn_<name>_best.h5``) are not resume points.
A position is ``(completed epochs, steps done in the next epoch)``: ``_0003.h5`` is (3, 0),
``_0003.step000050.h5`` is (2, 50).
"""
import os
import re

# A checkpoint's full path: the run folder's name and stamp, the epoch, and the step if any.
CHECKPOINT_PATTERN = re.compile(
    r".*[/\\](?P<name>[\w.-]+?)(?P<stamp>\d{8}T\d{4})[/\\]mask_rcnn_[\w.-]+?_(?P<epoch>\d{4})"
    r"(\.step(?P<step>\d{6}))?\.h5$")
# A checkpoint's file name (epoch-end or mid-epoch).
CHECKPOINT_FILE = re.compile(r"mask_rcnn_[\w.-]+?_(?P<epoch>\d{4})(\.step(?P<step>\d{6}))?\.h5")
STATE_SUFFIX = ".state.npz"


def checkpoint_name(name, epoch, step=0):
    """File name of the checkpoint at ``(epoch completed epochs, step)`` for config ``name``.

    step 0 gives the epoch-end name ``mask_rcnn_<name>_<epoch:04d>.h5``; step > 0 the
    mid-epoch name of epoch ``epoch + 1``.
    """
    name = name.lower()
    if step:
        return f"mask_rcnn_{name}_{epoch + 1:04d}.step{step:06d}.h5"
    return f"mask_rcnn_{name}_{epoch:04d}.h5"


def checkpoint_position(path):
    """``(completed epochs, step)`` of a checkpoint file name or path, or None if not one."""
    match = CHECKPOINT_FILE.fullmatch(os.path.basename(os.fspath(path)))
    if not match:
        return None
    epoch, step = int(match.group("epoch")), int(match.group("step") or 0)
    return (epoch - 1, step) if step else (epoch, 0)


def state_path(weights_path):
    """Path of the training-state file beside a checkpoint's weights file."""
    weights_path = os.fspath(weights_path)
    base = weights_path[:-3] if weights_path.endswith(".h5") else weights_path
    return base + STATE_SUFFIX


def epoch_checkpoints(folder):
    """Sorted file names of the epoch-end checkpoints in ``folder`` ([] if it does not exist)."""
    return [f for f in resume_points(folder) if checkpoint_position(f)[1] == 0]


def resume_points(folder):
    """File names of all checkpoints (epoch-end and mid-epoch) in ``folder``, oldest position first."""
    if not os.path.isdir(folder):
        return []
    files = [f for f in os.listdir(folder) if CHECKPOINT_FILE.fullmatch(f)]
    return sorted(files, key=lambda f: (checkpoint_position(f), f))


def find_last_checkpoint(model_dir, name):
    """Latest checkpoint (furthest position) of the newest run folder of ``name`` under ``model_dir``.

    Older run folders are searched when the newest has none (a run that died before its
    first checkpoint). Returns the path, or None when there is none.
    """
    name = name.lower()
    if not os.path.isdir(model_dir):
        return None
    folders = sorted(d for d in os.listdir(model_dir)
                     if d.startswith(name) and os.path.isdir(os.path.join(model_dir, d)))
    for folder in reversed(folders):
        files = resume_points(os.path.join(model_dir, folder))
        if files:
            return os.path.join(model_dir, folder, files[-1])
    return None
