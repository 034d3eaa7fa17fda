"""``python -m mrcnn``: the ``mrcnn`` command (see mrcnn.cli)."""
import sys

from mrcnn.cli import main

sys.exit(main())
