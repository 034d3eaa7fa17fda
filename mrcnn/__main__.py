"""``python -m mrcnn <command>``: the package's command line (``convert``: annotations to COCO)."""
import argparse
import logging
import sys


def main(argv=None):
    """Parse ``argv`` and run its command; returns the exit status."""
    from mrcnn.datasets import convert

    parser = argparse.ArgumentParser(prog="python -m mrcnn", description="Mask R-CNN tools.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    convert.add_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
