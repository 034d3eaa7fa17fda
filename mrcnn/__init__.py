"""mrcnn: Mask R-CNN for TensorFlow 2 and Keras 3, in the shape of matterport/Mask_RCNN.

``Config``, ``Dataset`` and ``MaskRCNN`` are exported lazily so that
``import mrcnn`` does not start TensorFlow.
"""
__version__ = "0.1.0"

__all__ = ["Config", "Dataset", "MaskRCNN", "__version__"]


def __getattr__(name):
    if name == "Config":
        from mrcnn.config import Config
        return Config
    if name == "Dataset":
        from mrcnn.utils import Dataset
        return Dataset
    if name == "MaskRCNN":
        from mrcnn.model import MaskRCNN
        return MaskRCNN
    raise AttributeError(f"module 'mrcnn' has no attribute {name!r}")
