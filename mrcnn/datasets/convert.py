"""``python -m mrcnn convert``: labelme, VIA, instance PNGs or mask folders to COCO JSON.

    python -m mrcnn convert --from labelme annotations/ --to coco train.json
    python -m mrcnn convert --from via via_region_data.json --to coco train.json \\
        --class-attribute type
    python -m mrcnn convert --from instance-png PNGImages --masks PedMasks \\
        --mask-pattern "{stem}_mask.png" --class-name pedestrian --to coco peds.json
    python -m mrcnn convert --from mask-folder stage1_train --class-name nucleus \\
        --to coco nuclei.json

SRC is the labelme folder (or file), the VIA JSON file, the image folder of instance
PNGs, or the root of a mask folder. The COCO file's "file_name"s are relative to
--image-root (default: the common folder of the images, printed). Segmentations are
RLE (exact) or, with --segmentation polygon, traced outlines. Malformed entries stop
the conversion unless --skip-malformed (then each is a warning). Exit status: 0 done,
2 usage or data error.
"""
import argparse
import logging
import os
import sys

logger = logging.getLogger(__name__)

FORMATS = ("labelme", "via", "instance-png", "mask-folder")
# What ``mrcnn evaluate`` reads: the formats above and COCO instances JSON.
SOURCE_FORMATS = ("coco",) + FORMATS


def add_parser(subparsers):
    """Add the ``convert`` command to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "convert", help="convert annotations to a COCO instances JSON",
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(parser)
    parser.add_argument("--to", dest="to_format", required=True, choices=("coco",),
                        help="output format")
    parser.add_argument("out", metavar="OUT", help="the COCO JSON file to write")
    parser.add_argument("--segmentation", choices=("rle", "polygon"), default="rle",
                        help="COCO segmentation kind (default rle: exact masks)")
    parser.add_argument("--image-root", metavar="DIR",
                        help="folder the COCO file names are relative to")
    parser.set_defaults(func=main)
    return parser


def add_source_arguments(parser, formats=FORMATS, names_flag="--class-names"):
    """The flags that name annotations to read: ``--from FORMAT SRC`` and the options of
    each format. Shared by ``mrcnn convert`` and ``mrcnn evaluate``.

    formats: the accepted --from values (``SOURCE_FORMATS`` adds "coco": a COCO JSON
        file, its images in --images DIR or beside it).
    names_flag: the flag of the labelme / via class list (``mrcnn evaluate`` names it
        --data-class-names, its --class-names being the model's); dest
        ``source_class_names`` either way.
    """
    parser.add_argument("--from", dest="from_format", required=True, choices=formats,
                        help="annotation format of SRC")
    parser.add_argument("src", metavar="SRC", help="annotations (see above)")
    parser.add_argument("--skip-malformed", action="store_true",
                        help="skip malformed entries with a warning instead of failing")
    parser.add_argument("--class-name", metavar="NAME",
                        help="the one class (via without --class-attribute, instance-png "
                             "without --class-map, mask-folder); default 'object'")
    parser.add_argument(names_flag, dest="source_class_names", metavar="A,B,...",
                        help="labelme / via: the expected classes, in id order")
    parser.add_argument("--class-attribute", metavar="ATTR",
                        help="via: the region attribute that names the class")
    parser.add_argument("--class-map", metavar="V=NAME,...",
                        help="instance-png: class of each pixel value, e.g. 1=cat,2=dog")
    parser.add_argument("--images", metavar="DIR",
                        help="via, coco: image folder (default: the JSON's folder)")
    parser.add_argument("--masks", metavar="DIR", help="instance-png: the instance PNG folder")
    parser.add_argument("--image-pattern", metavar="GLOB",
                        help="instance-png / mask-folder: glob of the images; labelme: "
                             "glob of the JSON files")
    parser.add_argument("--mask-pattern", metavar="PATTERN",
                        help="instance-png: one image's PNG in --masks ({stem}); mask-folder: "
                             "glob of one image's masks ({stem}, {image_dir}, {image_rel_dir})")
    parser.set_defaults(source_class_names_flag=names_flag)


def _names(text):
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--class-names must list names separated by commas, got {text!r}")
    return names


def _class_map(text):
    if text is None:
        return None
    table = {}
    for item in text.split(","):
        value, sep, name = item.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise ValueError(f"--class-map items must be VALUE=NAME (e.g. 1=cat), got {item!r}")
        table[int(value)] = name.strip()
    return table


def load_source(args):
    """The prepared Dataset that ``args`` (the convert options) describe."""
    from mrcnn import datasets

    strict = not args.skip_malformed
    kind = args.from_format
    unused = {"coco": ("class_name", "source_class_names", "class_attribute", "class_map",
                       "masks", "image_pattern", "mask_pattern"),
              "labelme": ("class_name", "class_attribute", "class_map", "images", "masks",
                          "mask_pattern"),
              "via": ("class_map", "masks", "image_pattern", "mask_pattern"),
              "instance-png": ("class_attribute", "images"),
              "mask-folder": ("source_class_names", "class_attribute", "class_map", "images",
                              "masks")}[kind]
    flags = {"source_class_names": getattr(args, "source_class_names_flag", "--class-names")}
    given = [flags.get(name, f"--{name.replace('_', '-')}") for name in unused
             if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} do(es) not apply to --from {kind}")
    if kind == "coco":
        dataset = datasets.CocoDataset()
        dataset.load_coco(args.src, args.images or os.path.dirname(os.path.abspath(args.src)))
        dataset.prepare()
        return dataset
    if kind == "labelme":
        return datasets.LabelmeDataset.from_folder(
            args.src, class_names=_names(args.source_class_names),
            pattern=args.image_pattern or "*.json", strict=strict)
    if kind == "via":
        return datasets.ViaDataset.from_file(
            args.src, image_dir=args.images, class_name=args.class_name or "object",
            class_attribute=args.class_attribute, class_names=_names(args.source_class_names),
            strict=strict)
    if kind == "instance-png":
        if not args.masks:
            raise ValueError("--from instance-png needs --masks DIR (the instance PNGs)")
        class_map = _class_map(args.class_map)
        names = _names(args.source_class_names)
        if class_map is None and names is None:
            names = [args.class_name or "object"]
        elif args.class_name is not None:
            raise ValueError("--class-name and --class-map / --class-names exclude each other")
        return datasets.InstancePngDataset.from_folder(
            args.src, args.masks, mask_pattern=args.mask_pattern or "{stem}.png",
            class_map=class_map, class_names=names, image_pattern=args.image_pattern or "*",
            strict=strict)
    from mrcnn.datasets.masks import DSB_IMAGE_PATTERN, DSB_MASK_PATTERN
    return datasets.MaskFolderDataset.from_folder(
        args.src, image_pattern=args.image_pattern or DSB_IMAGE_PATTERN,
        mask_pattern=args.mask_pattern or DSB_MASK_PATTERN,
        class_name=args.class_name or "object", strict=strict)


def main(args):
    """Run ``convert`` with parsed ``args``; returns the exit status (0 ok, 2 error)."""
    from mrcnn.datasets.coco import write_coco_json

    try:
        dataset = load_source(args)
        data = write_coco_json(dataset, args.out, segmentation=args.segmentation,
                               image_root=args.image_root)
    except (FileNotFoundError, ValueError) as err:
        print(f"convert: error: {err}", file=sys.stderr)
        return 2
    print(f"Wrote {args.out}: {len(data['images'])} images, {len(data['annotations'])} "
          f"annotations, {len(data['categories'])} categories "
          f"({', '.join(c['name'] for c in data['categories'])}); file names relative to "
          f"{data['info']['image_root']}")
    return 0
