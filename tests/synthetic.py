"""A tiny synthetic dataset for tests: bright rectangles and discs on a dark background."""
import numpy as np

from mrcnn.dataset import Dataset


class BlobDataset(Dataset):
    """``count`` images of ``size`` px with up to ``max_objects`` objects (class 1 squares,
    class 2 discs), deterministic under ``seed``. ``empty_every``: every k-th image has no
    objects (0 disables)."""

    def __init__(self, count=4, size=128, max_objects=2, seed=0, empty_every=0):
        super().__init__()
        self.add_class("blobs", 1, "square")
        self.add_class("blobs", 2, "disc")
        rng = np.random.default_rng(seed)
        for i in range(count):
            objects = []
            n = 0 if (empty_every and i % empty_every == empty_every - 1) else rng.integers(1, max_objects + 1)
            for _ in range(n):
                side = int(rng.integers(size // 5, size // 3))
                y = int(rng.integers(0, size - side))
                x = int(rng.integers(0, size - side))
                objects.append((int(rng.integers(1, 3)), y, x, side))
            self.add_image("blobs", image_id=i, path=None, size=size, objects=objects)
        self.prepare()

    def load_image(self, image_id):
        info = self.image_info[image_id]
        size = info["size"]
        image = np.full((size, size, 3), 30, np.uint8)
        masks, _ = self.load_mask(image_id)
        for k, (class_id, *_rest) in enumerate(info["objects"]):
            color = (220, 60, 60) if class_id == 1 else (60, 220, 60)
            image[masks[..., k]] = color
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        size = info["size"]
        objects = info["objects"]
        masks = np.zeros((size, size, len(objects)), bool)
        yy, xx = np.mgrid[:size, :size]
        for k, (class_id, y, x, side) in enumerate(objects):
            if class_id == 1:
                masks[y:y + side, x:x + side, k] = True
            else:
                r = side / 2
                masks[..., k] = (yy - y - r + 0.5) ** 2 + (xx - x - r + 0.5) ** 2 <= r * r
        # Later objects occlude earlier ones.
        for k in range(len(objects) - 1):
            masks[..., k] &= ~np.any(masks[..., k + 1:], axis=-1)
        class_ids = np.array([o[0] for o in objects], np.int32)
        return masks, class_ids
