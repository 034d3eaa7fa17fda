"""mrcnn.resizing against the library calls that define matterport's results, bit for bit."""
import glob
import os

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.io
import skimage.transform

from mrcnn import resizing, utils


def _sk(image, shape):
    """matterport's utils.resize: skimage with these arguments (bool read as float64)."""
    if image.dtype == bool:
        image = image.astype(np.float64)
    return skimage.transform.resize(image, shape, order=1, mode="constant", cval=0, clip=True,
                                    preserve_range=True, anti_aliasing=False)


def _matterport_square(image, min_dim, max_dim):
    """matterport's resize_image, mode "square" (scale, astype, centre pad)."""
    h, w = image.shape[:2]
    scale = max(1, min_dim / min(h, w))
    if round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        image = _sk(image, (round(h * scale), round(w * scale))).astype(image.dtype)
    h, w = image.shape[:2]
    top, left = (max_dim - h) // 2, (max_dim - w) // 2
    padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    return np.pad(image, padding[:image.ndim]), scale, padding


def _random_image(rng, kind, h, w):
    if kind == 0:
        return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    if kind == 1:  # flat regions and no zero: integer-valued sums and the clip at the minimum
        return (rng.integers(1, 4, (h, w)) * 50).astype(np.uint8)
    if kind == 2:
        return rng.integers(0, 65536, (h, w, 2)).astype(np.uint16)
    if kind == 3:  # float32 stays float32 in skimage
        return rng.random((h, w)).astype(np.float32) + np.float32(0.25)
    if kind == 4:  # all negative: skimage widens the clip range to cval
        return rng.random((h, w, 4)) - 2.0
    if kind == 5:
        return rng.random((h, w)) < 0.4
    if kind == 7:  # subnormal values: the products underflow to 0, skimage widens the clip
        return (rng.random((h, w)) + 1.0) * 1e-310
    return rng.integers(-100, 100, (h, w, 1)).astype(np.int16)


@pytest.mark.parametrize("kind", range(8))
def test_resize_linear_equals_skimage(kind):
    rng = np.random.default_rng(100 + kind)
    shapes = [(1, 1, 5, 7), (1, 9, 4, 1), (7, 1, 1, 3), (2, 2, 1, 1), (5, 5, 5, 5)]
    shapes += [tuple(int(v) for v in rng.integers(1, 60, 2)) + tuple(int(v) for v in
               rng.integers(1, 130, 2)) for _ in range(40)]
    for h, w, out_h, out_w in shapes:
        image = _random_image(rng, kind, h, w)
        expected = _sk(image, (out_h, out_w))
        got = resizing._resize_linear(image, (out_h, out_w))
        assert got.dtype == expected.dtype, (image.dtype, h, w, out_h, out_w)
        np.testing.assert_array_equal(got, expected, err_msg=f"{image.dtype} {(h, w, out_h, out_w)}")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.int64, bool])
def test_resize_linear_dyadic_scales_equal_skimage(dtype):
    """Scales whose weights are multiples of 2**-k take the integer path: still skimage's."""
    rng = np.random.default_rng(9)
    shapes = [(480, 640, 768, 1024), (37, 53, 74, 106), (3, 5, 8, 16), (60, 40, 32, 64),
              (600, 800, 768, 1024), (9, 7, 1, 2), (1, 1, 4, 4), (1024, 768, 512, 384)]
    shapes += [(int(h), int(w), int(2 ** rng.integers(0, 8)), int(2 ** rng.integers(0, 8)))
               for h, w in rng.integers(1, 90, (10, 2))]
    info = np.iinfo(dtype) if dtype is not bool else None
    for h, w, out_h, out_w in shapes:
        if dtype is bool:
            image = rng.random((h, w, 2)) < 0.5
        else:
            low = max(info.min, -1000) if dtype in (np.int16, np.int64) else 1
            high = min(info.max, 70000)
            image = rng.integers(low, high, (h, w, 3)).astype(dtype)
            image[: h // 3] = image.flat[0]  # a flat band: integer-valued sums
        expected = _sk(image, (out_h, out_w))
        np.testing.assert_array_equal(resizing._resize_linear(image, (out_h, out_w)), expected,
                                      err_msg=f"{dtype} {(h, w, out_h, out_w)}")
        if dtype is not bool:
            got = resizing._resize_linear(image, (out_h, out_w), out_dtype=dtype)
            np.testing.assert_array_equal(got, expected.astype(dtype))


def test_resize_uses_the_exact_path_and_skimage_elsewhere():
    image = np.random.default_rng(0).integers(0, 256, (13, 17, 3)).astype(np.uint8)
    np.testing.assert_array_equal(utils.resize(image, (29, 8)), _sk(image, (29, 8)))
    cubic = skimage.transform.resize(image, (29, 8), order=3, preserve_range=True,
                                     anti_aliasing=False, mode="constant")
    np.testing.assert_array_equal(utils.resize(image, (29, 8), order=3), cubic)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
@pytest.mark.parametrize("size", [(1024, 800), (512, 512), (300, 256)])
def test_resize_image_equals_matterport_on_real_images(name, size):
    image = getattr(skimage.data, name)()
    min_dim, max_dim = size
    expected, scale, padding = _matterport_square(image, min(min_dim, max_dim), max_dim)
    got, window, got_scale, got_padding, _ = utils.resize_image(
        image, min_dim=min(min_dim, max_dim), max_dim=max_dim, mode="square")
    assert got.dtype == image.dtype and got_scale == scale and got_padding[:2] == padding[:2]
    np.testing.assert_array_equal(got, expected)


def test_resize_image_equals_matterport_on_photos(shared_data):
    paths = sorted(glob.glob(os.path.join(shared_data, "demo_images", "*.jpg")))[:3]
    assert paths
    for path in paths:
        image = skimage.io.imread(path)
        expected = _matterport_square(image, 800, 1024)[0]
        np.testing.assert_array_equal(utils.resize_image(image, 800, 1024)[0], expected,
                                      err_msg=path)


def test_resize_image_odd_sizes_and_dtypes():
    rng = np.random.default_rng(7)
    for kind, (h, w) in zip([0, 1, 2, 3, 6, 0, 2], [(37, 53), (61, 13), (9, 99), (45, 45),
                                                     (17, 70), (129, 3), (5, 8)]):
        image = _random_image(rng, kind, h, w)
        expected = _matterport_square(image, 64, 96)[0]
        got = utils.resize_image(image, 64, 96)[0]
        assert got.dtype == image.dtype
        np.testing.assert_array_equal(got, expected, err_msg=f"{image.dtype} {(h, w)}")


def test_resize_image_opencv_is_an_explicit_different_option():
    cv2 = pytest.importorskip("cv2")
    image = skimage.data.astronaut()[::2, ::2]  # 256 x 256
    fast = utils.resize_image(image, 512, 512, method="opencv")[0]
    np.testing.assert_array_equal(fast, cv2.resize(image, (512, 512)))
    exact = utils.resize_image(image, 512, 512)[0]
    assert not np.array_equal(fast, exact)  # the border rows differ: not matterport's pixels
    with pytest.raises(ValueError, match="'cubic'"):
        utils.resize_image(image, 512, 512, method="cubic")


@pytest.mark.parametrize("dtype", [bool, np.uint8])
def test_resize_mask_equals_scipy_zoom(dtype):
    rng = np.random.default_rng(3)
    cases = [(33, 47, 1, 100 / 33), (4, 4, 3, 47.0), (1, 5, 2, 3.3), (60, 41, 0, 1.7)]
    cases += [(int(rng.integers(1, 50)), int(rng.integers(1, 50)), int(rng.integers(1, 30)),
               float(rng.uniform(0.2, 6.0))) for _ in range(30)]
    cases += [(24, 20, n, float(rng.uniform(0.5, 3.0))) for n in (129, 257, 329, 512, 600)]
    for h, w, n, scale in cases:
        mask = (rng.random((h, w, n)) < 0.3).astype(dtype)
        expected = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
        got = utils.resize_mask(mask, scale, [(0, 0), (0, 0), (0, 0)])
        assert got.dtype == expected.dtype and got.shape == expected.shape, (h, w, n, scale)
        np.testing.assert_array_equal(got, expected, err_msg=f"{(h, w, n, scale)}")


def test_resize_mask_crowded_dsb2018(shared_data):
    """The most crowded DSB2018 image (hundreds of nuclei) resizes like scipy, padding included."""
    folders = glob.glob(os.path.join(shared_data, "dsb2018_45", "stage1_train", "*", "masks"))
    crowded = max(folders, key=lambda f: len(os.listdir(f)))
    files = sorted(glob.glob(os.path.join(crowded, "*.png")))
    assert len(files) > 128
    mask = np.stack([skimage.io.imread(f) > 0 for f in files], axis=-1)
    image = np.zeros(mask.shape[:2] + (3,), np.uint8)
    out, _, scale, padding, crop = utils.resize_image(image, 512, 512)
    got = utils.resize_mask(mask, scale, padding, crop)
    expected = np.pad(scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0), padding)
    assert got.shape == out.shape[:2] + (len(files),)
    np.testing.assert_array_equal(got, expected)


def _random_boxes_and_masks(rng, shape, count):
    boxes, masks = [], np.zeros(shape + (count,), bool)
    for i in range(count):
        y1, x1 = rng.integers(0, shape[0] - 1), rng.integers(0, shape[1] - 1)
        y2, x2 = rng.integers(y1 + 1, shape[0] + 1), rng.integers(x1 + 1, shape[1] + 1)
        masks[y1:y2, x1:x2, i] = rng.random((y2 - y1, x2 - x1)) < 0.6
        boxes.append((y1, x1, y2, x2))
    return np.array(boxes, np.int32), masks


def test_minimize_and_expand_mask_equal_matterport():
    rng = np.random.default_rng(11)
    boxes, masks = _random_boxes_and_masks(rng, (90, 70), 60)
    mini = utils.minimize_mask(boxes, masks, (28, 21))
    full = utils.expand_mask(boxes, mini, (90, 70, 3))
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        expected_mini = np.around(_sk(masks[y1:y2, x1:x2, i], (28, 21))).astype(bool)
        np.testing.assert_array_equal(mini[..., i], expected_mini, err_msg=str(i))
        expected_full = np.zeros((90, 70), bool)
        expected_full[y1:y2, x1:x2] = np.around(_sk(mini[..., i], (y2 - y1, x2 - x1)))
        np.testing.assert_array_equal(full[..., i], expected_full, err_msg=str(i))


def test_unmold_mask_equals_matterport_in_float32():
    rng = np.random.default_rng(12)
    for _ in range(40):
        # probabilities on a grid of 1/8: many interpolated values land on 0.5 exactly
        small = (rng.integers(0, 9, (28, 28)) / 8).astype(np.float32)
        y1, x1 = rng.integers(0, 60, 2)
        y2, x2 = y1 + rng.integers(1, 70), x1 + rng.integers(1, 70)
        expected = np.zeros((140, 150), bool)
        expected[y1:y2, x1:x2] = _sk(small, (y2 - y1, x2 - x1)) >= 0.5
        np.testing.assert_array_equal(utils.unmold_mask(small, (y1, x1, y2, x2), (140, 150)),
                                      expected)
