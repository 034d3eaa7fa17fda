"""Make ``import tensorflow`` fail in this process, as on an install without TensorFlow.

Python imports ``sitecustomize`` at start-up from the first folder of ``sys.path`` that has
one; a test puts this folder first on the PYTHONPATH of a subprocess, so the finder below is
in place before anything (Keras included) can import TensorFlow. Every name ``tensorflow``
or ``tensorflow.*`` (and the TensorFlow-only ``tf_keras``) then raises ModuleNotFoundError,
``importlib.util.find_spec`` raises the same error for them (where the wheel is truly
absent it returns None, so code that probes must handle both: catch ImportError).
MRCNN_BLOCK_MODULES (comma-separated top-level names, e.g. "pycocotools,albumentations")
blocks more packages the same way, to check what a machine without them can run.
Each refused name is appended to the file named by MRCNN_TF_BLOCK_LOG, when it is set, with
the functions that asked (innermost first) and their file:line, tab-separated, so that a test
can say who asked.
"""
import os
import sys
import traceback

BLOCKED = ("tensorflow", "tf_keras") + tuple(
    name for name in os.environ.get("MRCNN_BLOCK_MODULES", "").split(",") if name)


class _NoTensorFlow:
    """A sys.meta_path finder that refuses the blocked top-level packages."""

    @staticmethod
    def _blocked(fullname):
        top = fullname.partition(".")[0]
        return top in BLOCKED

    def find_spec(self, fullname, path=None, target=None):
        if not self._blocked(fullname):
            return None
        log = os.environ.get("MRCNN_TF_BLOCK_LOG")
        if log:
            # The innermost frames outside importlib: who asked for the module (function
            # names first, then file:line).
            stack = [f for f in traceback.extract_stack()[:-1]
                     if "importlib" not in f.filename and "<frozen" not in f.filename]
            inner = list(reversed(stack[-3:]))
            names = ",".join(f.name for f in inner)
            where = " <- ".join(f"{f.filename}:{f.lineno}" for f in inner)
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{fullname}\t{names}\t{where}\n")
        raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by "
                                  f"tests/no_tensorflow/sitecustomize.py)", name=fullname)


sys.meta_path.insert(0, _NoTensorFlow())
