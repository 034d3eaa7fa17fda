"""Checkpoint names and lookup, without TensorFlow (command lines check them before it starts).

Layout: ``<model_dir>/<name lowercased><YYYYmmddTHHMM>/mask_rcnn_<name>_<epoch:04d>.h5``.
Other ``.h5`` files in a run folder (e.g. ``mask_rcnn_<name>_best.h5``) are not resume points.
"""
import json
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


# The settings a command line records beside its checkpoints (e.g. {"tiny": true}), so that a
# later ``--weights last`` rebuilds the network they were trained with.
SETTINGS_FILE = "settings.json"


def read_run_settings(path):
    """The settings dict recorded in a run folder, or beside a checkpoint file in it.

    path: the run folder or a checkpoint inside it. Returns {} when there is no settings file
    or it cannot be read (runs trained from Python record none).
    """
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        with open(os.path.join(folder, SETTINGS_FILE), encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def write_run_settings(folder, settings):
    """Write ``settings`` (a JSON-able dict) as the run folder's SETTINGS_FILE."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, SETTINGS_FILE), "w", encoding="utf-8") as f:
        json.dump(settings, f, sort_keys=True)


def run_checkpoints(model_dir, name):
    """[(last checkpoint path, settings dict)] of each run of ``name``, newest run first."""
    name = name.lower()
    if not os.path.isdir(model_dir):
        return []
    folders = sorted((d for d in os.listdir(model_dir)
                      if d.startswith(name) and os.path.isdir(os.path.join(model_dir, d))),
                     reverse=True)
    runs = []
    for folder in folders:
        path = os.path.join(model_dir, folder)
        files = epoch_checkpoints(path)
        if files:
            runs.append((os.path.join(path, files[-1]), read_run_settings(path)))
    return runs


def choose_last_checkpoint(model_dir, name, given, toy_key, defaults=None):
    """The checkpoint ``--weights last`` means, without taking a toy run for a real one.

    model_dir: the logs folder. name: the config NAME (run folders start with it).
    given: {flag: value} of the network flags of the command line; None = not given.
    toy_key: the flag that marks a toy network ("tiny", "small").
    defaults: {flag: value} for runs that recorded no value (default: toy_key False, else None).

    Runs whose recorded flags differ from a given flag are not candidates. When toy_key is not
    given, the newest real run wins over newer toy runs; a toy run is taken only when no real
    one exists. Returns (path, flags, skipped): the checkpoint, the flags of its run (every key
    of ``given``: pass them on so that the same network is built) and the newer toy
    checkpoints passed over. Returns (None, None, []) when no run matches.
    """
    defaults = {toy_key: False, **(defaults or {})}

    def recorded(settings):
        return {key: settings.get(key, defaults.get(key)) for key in given}

    matches = [(path, recorded(settings)) for path, settings in run_checkpoints(model_dir, name)]
    matches = [(path, flags) for path, flags in matches
               if all(value is None or flags[key] == value for key, value in given.items())]
    if not matches:
        return None, None, []
    chosen = 0
    if given.get(toy_key) is None:
        real = [k for k, (_, flags) in enumerate(matches) if not flags[toy_key]]
        chosen = real[0] if real else 0
    skipped = [path for path, _ in matches[:chosen]]
    path, flags = matches[chosen]
    return path, flags, skipped
