"""Small files the dataset tests write: PNG images and masks."""
import os

import numpy as np
from PIL import Image


def write_png(path, array):
    """Write a 2-D (grey, uint8 or uint16) or [H, W, 3] uint8 array as a PNG; returns path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path)
    return path


def write_image(path, height, width, value=100):
    """A plain RGB image of height x width pixels."""
    return write_png(path, np.full((height, width, 3), value, dtype=np.uint8))


def grid(rows):
    """A bool mask from strings of '#' (on) and '.' (off), one string a row."""
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)
