"""Datasets whose annotations are mask images: instance-id PNGs and binary-mask folders.

* :class:`MaskFolderDataset`: one binary PNG per instance (the Kaggle DSB2018 layout
  ``<root>/<id>/images/<id>.png`` + ``<root>/<id>/masks/*.png``, generalised by two
  globs). A pixel > 0 belongs to the instance.
* :class:`InstancePngDataset`: one PNG per image whose pixel values are instance ids
  (0 = background), as Penn-Fudan pedestrians (``PedMasks/<stem>_mask.png``) or
  Cityscapes instance maps (``<class id> * 1000 + <instance>``); a class map names the
  class of each value.

Both read the folders when loaded (file names and PNG headers only) and decode masks in
``load_mask``. Masks whose size differs from their image are malformed entries (see
:mod:`mrcnn.datasets.common`); masks with no pixel are dropped with a log line.
"""
import glob
import logging
import numbers
import os

import numpy as np

from mrcnn.dataset import Dataset
from mrcnn.datasets.common import (
    check_source, check_strict, image_size, is_image_file, read_mask_png, report_malformed,
    sorted_glob, stack_masks)

logger = logging.getLogger(__name__)

DSB_IMAGE_PATTERN = "*/images/*.png"
DSB_MASK_PATTERN = "{image_dir}/../masks/*.png"


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _expand(pattern, image_path, root):
    """A mask glob for one image: ``{stem}``, ``{image_dir}`` and ``{image_rel_dir}``."""
    image_dir = os.path.dirname(os.path.abspath(image_path))
    return pattern.format(stem=glob.escape(_stem(image_path)), image_dir=glob.escape(image_dir),
                          image_rel_dir=glob.escape(os.path.relpath(image_dir, os.path.abspath(root))))


def _select(found, image_ids, root):
    """Keep the (id, path) pairs whose id is in image_ids, in image_ids' order."""
    if image_ids is None:
        return found
    by_id = dict(found)
    wanted = [str(i) for i in image_ids]
    unknown = [i for i in wanted if i not in by_id]
    if unknown:
        raise ValueError(f"image_ids {unknown[:10]} are not images found under {root!r}")
    return [(i, by_id[i]) for i in wanted]


class MaskFolderDataset(Dataset):
    """Instances given as one binary mask image each (pixel > 0 is the instance).

    Usage (DSB2018 layout)::

        dataset = MaskFolderDataset.from_folder("stage1_train", class_name="nucleus")

    Other layouts name their images and masks by globs, e.g. ``images/a.png`` with
    ``masks/a_0.png, masks/a_1.png, ...``::

        dataset = MaskFolderDataset.from_folder(
            "data", image_pattern="images/*.png", mask_pattern="masks/{stem}_*.png")
    """

    def __init__(self, class_map=None):
        super().__init__(class_map=class_map)
        self._mask_folder_sources = set()

    @classmethod
    def from_folder(cls, root, image_pattern=DSB_IMAGE_PATTERN, mask_pattern=DSB_MASK_PATTERN,
                    class_name="object", image_ids=None, strict=True):
        """A prepared dataset of the images and masks under ``root`` (see load_mask_folder)."""
        dataset = cls()
        dataset.load_mask_folder(root, image_pattern=image_pattern, mask_pattern=mask_pattern,
                                 class_name=class_name, image_ids=image_ids, strict=strict)
        dataset.prepare()
        return dataset

    def load_mask_folder(self, root, image_pattern=DSB_IMAGE_PATTERN,
                         mask_pattern=DSB_MASK_PATTERN, class_name="object", image_ids=None,
                         source="mask_folder", strict=True):
        """Add the images under ``root`` and the paths of their instance masks.

        root: the dataset folder.
        image_pattern: glob of the images, relative to root (``**`` recursive); the
            image id is the file name without extension (ids must be unique).
        mask_pattern: glob of one image's masks, relative to root, after substituting
            ``{stem}`` (the image file name without extension), ``{image_dir}`` (the
            image's folder, absolute) and ``{image_rel_dir}`` (relative to root).
            Masks are taken in sorted file-name order. An image without masks is kept
            with no instances (a negative / test image).
        class_name: the one class of every instance (source class id 1).
        image_ids: None for every image found, or the ids to keep, in that order
            (ValueError naming ids that were not found).
        source: source name of the class and images.
        strict: see :mod:`mrcnn.datasets.common`. Malformed: a mask whose size (read
            from its header) differs from its image's.

        Returns: the number of images added.
        """
        root = os.fspath(root)
        check_source(source)
        check_strict(strict)
        if not isinstance(class_name, str) or not class_name:
            raise ValueError(f"class_name must be a non-empty str, got {class_name!r}")
        if not os.path.isdir(root):
            raise FileNotFoundError(f"mask folder dataset root not found: {root!r}")
        found = [(_stem(p), p) for p in sorted_glob(root, image_pattern) if is_image_file(p)]
        counts = {}
        for image_id, _ in found:
            counts[image_id] = counts.get(image_id, 0) + 1
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"image file names must be unique under {root!r} (they are the "
                             f"image ids); repeated: {duplicates[:10]}")
        found = _select(found, image_ids, root)
        self.add_class(source, 1, class_name)
        self._mask_folder_sources.add(source)
        for image_id, path in found:
            height, width = image_size(path)
            masks = []
            for k, mask_path in enumerate(sorted_glob(root, _expand(mask_pattern, path, root))):
                if os.path.abspath(mask_path) == os.path.abspath(path):
                    continue
                mask_hw = image_size(mask_path)
                if mask_hw != (height, width):
                    report_malformed(strict, f"{mask_path} (mask {k} of image {image_id!r})",
                                     f"mask size {mask_hw} differs from the image size "
                                     f"{(height, width)}")
                    continue
                masks.append(mask_path)
            self.add_image(source, image_id=image_id, path=path, height=height, width=width,
                           mask_paths=masks)
        logger.info("%s: %d images from %r, %d masks", root, len(found), image_pattern,
                    sum(len(self.image_info[i]["mask_paths"]) for i in
                        range(len(self.image_info) - len(found), len(self.image_info))))
        return len(found)

    def load_mask(self, image_id):
        """masks [H, W, N] bool (pixel > 0 of each mask file, in file-name order) and
        class_ids [N] int32 (all the class's id). Empty mask files are dropped."""
        info = self.image_info[image_id]
        if info["source"] not in self._mask_folder_sources:
            return super().load_mask(image_id)
        masks = []
        for path in info["mask_paths"]:
            mask = read_mask_png(path) > 0
            if not mask.any():
                logger.info("%s has no pixel > 0; skipped", path)
                continue
            masks.append(mask)
        class_id = self.map_source_class_id(f"{info['source']}.1")
        return stack_masks(masks, [class_id] * len(masks), info["height"], info["width"])

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]


def _class_table(class_map, class_names):
    """(class names in id order, lookup value -> name or None) of an instance-PNG class map."""
    if class_map is None:
        names = list(class_names) if class_names is not None else ["object"]
        if len(names) != 1:
            raise ValueError(f"without a class_map every instance has one class; class_names "
                             f"must hold one name, got {class_names!r}")
        return names, lambda value: names[0]
    if isinstance(class_map, dict):
        for value, name in class_map.items():
            if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1
                    or not isinstance(name, str) or not name):
                raise ValueError(f"class_map must map pixel values >= 1 to class names, got "
                                 f"{value!r}: {name!r}")
        names = list(class_names) if class_names is not None else list(
            dict.fromkeys(class_map.values()))
        missing = sorted(set(class_map.values()) - set(names))
        if missing:
            raise ValueError(f"class_map names {missing} are not in class_names {names}")
        table = {int(v): n for v, n in class_map.items()}
        return names, table.get
    if callable(class_map):
        if not class_names:
            raise ValueError("a callable class_map needs class_names (the classes it may "
                             "return, in class id order)")
        return list(class_names), class_map
    raise ValueError(f"class_map must be None, a dict or a callable, got {class_map!r}")


class InstancePngDataset(Dataset):
    """Instances given as one PNG per image whose pixel values are instance ids.

    0 is background; each other value is one instance. The class of a value comes from
    ``class_map``: None (one class), a dict ``{value: class name}`` (values not in it are
    ignored, e.g. unlabelled regions), or a callable ``value -> class name or None``
    with ``class_names`` listing its classes (Cityscapes: ``lambda v: NAMES.get(v // 1000)
    if v >= 1000 else None``).

    Usage (Penn-Fudan)::

        dataset = InstancePngDataset.from_folder(
            "PennFudanPed/PNGImages", "PennFudanPed/PedMasks",
            mask_pattern="{stem}_mask.png", class_names=["pedestrian"])
    """

    def __init__(self, class_map=None):
        super().__init__(class_map=class_map)
        self._instance_png_sources = set()
        self._value_classes = {}

    @classmethod
    def from_folder(cls, image_dir, mask_dir, mask_pattern="{stem}.png", class_map=None,
                    class_names=None, image_pattern="*", strict=True):
        """A prepared dataset of ``image_dir`` and ``mask_dir`` (see load_instance_png)."""
        dataset = cls()
        dataset.load_instance_png(image_dir, mask_dir, mask_pattern=mask_pattern,
                                  class_map=class_map, class_names=class_names,
                                  image_pattern=image_pattern, strict=strict)
        dataset.prepare()
        return dataset

    def load_instance_png(self, image_dir, mask_dir, mask_pattern="{stem}.png", class_map=None,
                          class_names=None, image_pattern="*", source="instance_png",
                          strict=True):
        """Add the images of ``image_dir`` and the paths of their instance-id PNGs.

        image_dir: folder of the images; image_pattern: their glob inside it (files with
            an image extension only). The image id is the file name without extension.
        mask_dir: folder of the instance PNGs; mask_pattern: one image's PNG inside it,
            ``{stem}`` being the image file name without extension.
        class_map, class_names: see the class docstring; the classes get source ids
            1, 2, ... in class_names order.
        strict: see :mod:`mrcnn.datasets.common`. Malformed: an image without its
            instance PNG, a PNG whose size differs from the image's, and (in
            load_mask) a value that the class map gives an unknown class name.

        Returns: the number of images added.
        """
        image_dir, mask_dir = os.fspath(image_dir), os.fspath(mask_dir)
        check_source(source)
        check_strict(strict)
        names, lookup = _class_table(class_map, class_names)
        for folder, what in ((image_dir, "image_dir"), (mask_dir, "mask_dir")):
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{what} not found: {folder!r}")
        for k, name in enumerate(names, start=1):
            self.add_class(source, k, name)
        self._instance_png_sources.add(source)
        self._value_classes[source] = (lookup, {n: k for k, n in enumerate(names, start=1)},
                                       strict)
        added = 0
        for path in sorted_glob(image_dir, image_pattern):
            if not is_image_file(path):
                continue
            stem = _stem(path)
            mask_path = os.path.join(mask_dir, mask_pattern.format(stem=stem))
            if not os.path.isfile(mask_path):
                report_malformed(strict, f"{path}", f"no instance mask {mask_path!r}")
                continue
            height, width = image_size(path)
            mask_hw = image_size(mask_path)
            if mask_hw != (height, width):
                report_malformed(strict, f"{mask_path} (instance mask of {path})",
                                 f"mask size {mask_hw} differs from the image size "
                                 f"{(height, width)}")
                continue
            self.add_image(source, image_id=stem, path=path, height=height, width=width,
                           mask_path=mask_path)
            added += 1
        logger.info("%s: %d images with instance masks in %s", image_dir, added, mask_dir)
        return added

    def load_mask(self, image_id):
        """masks [H, W, N] bool, one per instance value in increasing value order, and
        class_ids [N] int32. Values the class map ignores are background."""
        info = self.image_info[image_id]
        if info["source"] not in self._instance_png_sources:
            return super().load_mask(image_id)
        lookup, class_ids_of, strict = self._value_classes[info["source"]]
        ids = read_mask_png(info["mask_path"])
        masks, class_ids = [], []
        for value in np.unique(ids):
            if value == 0:
                continue
            name = lookup(int(value))
            if name is None:
                continue
            if name not in class_ids_of:
                report_malformed(strict, f"{info['mask_path']}, instance value {int(value)}",
                                 f"class map gives {name!r}, not one of {list(class_ids_of)}")
                continue
            masks.append(ids == value)
            class_ids.append(self.map_source_class_id(
                f"{info['source']}.{class_ids_of[name]}"))
        return stack_masks(masks, class_ids, info["height"], info["width"])

    def image_reference(self, image_id):
        """The image's file path."""
        return self.image_info[image_id]["path"]
