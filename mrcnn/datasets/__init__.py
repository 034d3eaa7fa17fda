"""Ready ``Dataset`` subclasses for common annotation formats, and writers to COCO.

=====================  =========================================  ==========================
class                  format                                     entry point
=====================  =========================================  ==========================
``CocoDataset``        COCO instances JSON (polygons, RLE, crowd)  ``load_coco``
``LabelmeDataset``     labelme JSON files                          ``from_folder``
``ViaDataset``         VIA 1.x / 2.x JSON                          ``from_file``
``InstancePngDataset`` one instance-id PNG per image               ``from_folder``
``MaskFolderDataset``  one binary PNG per instance (DSB2018)       ``from_folder``
=====================  =========================================  ==========================

Every loader is lazy (no mask is decoded before ``load_mask``) and reports malformed
entries by file and index (``strict=False`` skips them with a
``MalformedAnnotationWarning``). :func:`dataset_to_coco` / :func:`write_coco_json` write
any prepared dataset as a COCO instances file; ``python -m mrcnn convert`` does it from
the command line.
"""
from mrcnn.datasets.coco import CocoDataset, dataset_to_coco, write_coco_json
from mrcnn.datasets.common import MalformedAnnotationError, MalformedAnnotationWarning
from mrcnn.datasets.labelme import LabelmeDataset
from mrcnn.datasets.masks import InstancePngDataset, MaskFolderDataset
from mrcnn.datasets.via import ViaDataset

__all__ = [
    "CocoDataset",
    "InstancePngDataset",
    "LabelmeDataset",
    "MalformedAnnotationError",
    "MalformedAnnotationWarning",
    "MaskFolderDataset",
    "ViaDataset",
    "dataset_to_coco",
    "write_coco_json",
]
