"""``python -m mrcnn``: the ``mrcnn`` command (detect, export, convert; see mrcnn.cli)."""
import sys

from mrcnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
