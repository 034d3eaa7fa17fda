"""Resizing of images and masks exactly as matterport computes it, and faster.

matterport resizes images with ``skimage.transform.resize(order=1, mode="constant", cval=0,
clip=True, preserve_range=True, anti_aliasing=False)`` followed by ``astype`` (truncation),
and masks with ``scipy.ndimage.zoom(order=0)``. The functions here give the same arrays, bit
for bit, with their own vectorized NumPy code (tests/test_resizing.py compares them with the
library calls). ``mrcnn.utils`` re-exports the public names.

This module imports only NumPy and scikit-image.
"""
import numpy as np
import skimage.transform

RESIZE_MODES = ("none", "square", "pad64", "crop")

# matterport resizes with skimage.transform.resize(order=1, mode="constant", cval=0, clip=True,
# preserve_range=True, anti_aliasing=False). That call is scipy.ndimage.zoom(grid_mode=True,
# mode="grid-constant"): output pixel k samples the input at (k + 0.5) * in / out - 0.5 with two
# taps per axis, zeros outside the image, weights w0 = 1 - frac and w1 = 1 - w0, and, for every
# output value, t = 0 + ((v00 * wy0) * wx0) + ((v01 * wy0) * wx1) + ((v10 * wy1) * wx0) +
# ((v11 * wy1) * wx1), summed left to right in float64. _resize_linear computes exactly that, in
# the same order (so the same roundings), vectorized: a truncating cast afterwards turns a last-bit
# difference into a whole level, so nothing less than the same arithmetic gives the same image.
RESIZE_METHODS = ("exact", "opencv")
_BLOCK_ELEMENTS = 1 << 16  # values per block of the column pass (~0.5 MB float64, cache sized)


def _linear_taps(n_in, n_out):
    """Two-tap linear weights of one axis, as scipy.ndimage.zoom(order=1, grid_mode=True).

    Returns (i0, i1 [n_out] int indices clipped into [0, n_in), w0, w1 [n_out] float64); a tap
    that falls outside the input has weight 0 (the zero border of mode "grid-constant").
    """
    cc = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    start = np.floor(cc)
    w0 = 1.0 - (cc - start)
    w1 = 1.0 - w0
    i0 = start.astype(np.intp)
    i1 = i0 + 1
    w0[(i0 < 0) | (i0 >= n_in)] = 0.0
    w1[(i1 < 0) | (i1 >= n_in)] = 0.0
    return np.clip(i0, 0, n_in - 1), np.clip(i1, 0, n_in - 1), w0, w1


def _gather_columns(image, index):
    """image[:, index] for a C-contiguous [H, W, C] array, moving each pixel's C values at once."""
    h, w, c = image.shape
    pixels = image.reshape(h, w * c).view(np.dtype((np.void, c * image.itemsize)))
    return np.take(pixels, index, axis=1).view(image.dtype).reshape(h, len(index), c)


def _dyadic_bits(weights, max_bits=24):
    """Smallest k <= max_bits with every weight a multiple of 2**-k, else None."""
    for k in range(max_bits + 1):
        scaled = [w * float(2 ** k) for w in weights]  # exact: a power-of-two scaling
        if all(np.array_equal(v, np.floor(v)) for v in scaled):
            return k
    return None


def _resize_linear_integer(src, taps_y, taps_x, bits, lo, hi, out_dtype):
    """_resize_linear for integer images whose weights are multiples of 2**-bits per axis.

    Then every product and sum of scipy's float64 arithmetic is exact (the caller checks that
    max|v| * 2**(bits_y + bits_x) < 2**53), so the result is the exact rational value and integer
    arithmetic in any order gives it: out = sum(v * my * mx) / 2**(bits_y + bits_x) with
    my = wy * 2**bits_y, mx = wx * 2**bits_x. This is the common case of molding (an axis
    scaled to 1024 = 2**10 pixels has dyadic weights), and several times faster.
    """
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = taps_y, taps_x
    by, bx = bits
    height, _, channels = src.shape
    bound = max(abs(int(lo)), abs(int(hi))) << (by + bx)
    itype = np.uint16 if lo >= 0 and bound < 2 ** 16 else np.int32 if bound < 2 ** 31 else np.int64
    my0, my1 = ((w * float(2 ** by)).astype(itype)[:, None] for w in (wy0, wy1))
    mx0, mx1 = (np.repeat(w * float(2 ** bx), channels).astype(itype) for w in (wx0, wx1))
    # Integer sums are exact in any order: columns first, on the input's rows (fewer pixels to
    # gather), then the rows by whole-row gathers.
    row_len = len(x0) * channels
    cols = np.multiply(_gather_columns(src, x0).reshape(height, row_len), mx0, dtype=itype)
    cols += np.multiply(_gather_columns(src, x1).reshape(height, row_len), mx1, dtype=itype)
    total = np.multiply(cols[y0], my0, dtype=itype)
    total += np.multiply(cols[y1], my1, dtype=itype)
    if np.issubdtype(out_dtype, np.integer) and lo >= 0:
        # t >= 0: truncation is the floor, a shift; clipping commutes with it (integer bounds).
        total >>= by + bx
        np.clip(total, lo, hi, out=total)
        return total.astype(out_dtype)
    result = total * (2.0 ** -(by + bx))  # exact: |total| < 2**53
    np.clip(result, lo, hi, out=result)
    return result.astype(out_dtype, copy=False)


def _resize_linear(image, output_hw, out_dtype=None):
    """skimage.transform.resize(image, output_hw, order=1, mode="constant", cval=0, clip=True,
    preserve_range=True, anti_aliasing=False), bit for bit, 6-12x faster.

    image: [H, W] or [H, W, ...] bool, integer or float array (bool is read as 0/1, as
        matterport's float64 cast does).
    output_hw: (h, w) ints >= 1; trailing axes are kept.
    out_dtype: dtype of the result, cast with ``astype`` (truncation for integers) block by
        block; default skimage's: float32 for float16/float32 input, else float64.

    Returns: [h, w, ...] array. Values are clipped to the input's [min, max] (widened to 0
    where skimage does so). NaN inputs are not supported (skimage switches to nanmin/nanmax).
    """
    image = np.asarray(image)
    if image.dtype == np.float16:
        image = image.astype(np.float32)
    height, width = image.shape[:2]
    out_h, out_w = (int(s) for s in output_hw)
    channels = int(np.prod(image.shape[2:], dtype=np.int64))
    float_dtype = np.float32 if image.dtype == np.float32 else np.float64
    if out_dtype is None:
        out_dtype = float_dtype
    if image.size == 0 or out_h * out_w * channels == 0:
        return np.zeros((out_h, out_w) + image.shape[2:], dtype=out_dtype)
    src = np.ascontiguousarray(image.view(np.uint8) if image.dtype == bool else image)
    src = src.reshape(height, width, channels)
    y0, y1, wy0, wy1 = _linear_taps(height, out_h)
    x0, x1, wx0, wx1 = _linear_taps(width, out_w)
    lo, hi = src.min(), src.max()
    if src.dtype.kind in "iu" and image.dtype.kind != "f":
        bits = (_dyadic_bits((wy0, wy1)), _dyadic_bits((wx0, wx1)))
        if None not in bits and max(abs(int(lo)), abs(int(hi))) << sum(bits) < 2 ** 53:
            out = _resize_linear_integer(src, (y0, y1, wy0, wy1), (x0, x1, wx0, wx1), bits,
                                         lo, hi, out_dtype)
            return out.reshape((out_h, out_w) + image.shape[2:])
    # The column taps of every input row; the row taps are then whole-row gathers.
    cols0 = _gather_columns(src, x0).reshape(height, out_w * channels)
    cols1 = _gather_columns(src, x1).reshape(height, out_w * channels)
    row_len = out_w * channels
    step = max(1, _BLOCK_ELEMENTS // row_len)
    rw0 = np.tile(np.repeat(wx0, channels), (min(step, out_h), 1))
    rw1 = np.tile(np.repeat(wx1, channels), (min(step, out_h), 1))
    # skimage widens the clip range to cval=0 when 0 is outside the input's range but inside
    # the output's. Every output has a tap inside the image with weight >= 1/2 per axis, so
    # that happens only when values so close to 0 underflow; then the whole output is needed
    # before clipping.
    whole = (not lo <= 0 <= hi and src.dtype.kind == "f"
             and min(abs(float(lo)), abs(float(hi))) < 1e-30)
    result = np.empty((out_h, row_len), dtype=float_dtype if whole else out_dtype)
    acc = np.empty((min(step, out_h), row_len))
    tmp = np.empty_like(acc)
    for i in range(0, out_h, step):
        n = min(step, out_h - i)
        rows = slice(i, i + n)
        t, u = acc[:n], tmp[:n]
        c0, c1 = wy0[rows, None], wy1[rows, None]
        np.multiply(cols0[y0[rows]], c0, out=t)
        t *= rw0[:n]
        np.multiply(cols1[y0[rows]], c0, out=u)
        u *= rw1[:n]
        t += u
        np.multiply(cols0[y1[rows]], c1, out=u)
        u *= rw0[:n]
        t += u
        np.multiply(cols1[y1[rows]], c1, out=u)
        u *= rw1[:n]
        t += u
        if float_dtype is np.float32:
            t = t.astype(np.float32)
        if not whole:
            np.clip(t, lo, hi, out=t)
        result[rows] = t
    if whole:
        if result.min() <= 0 <= result.max():
            lo, hi = min(lo, 0), max(hi, 0)
        np.clip(result, lo, hi, out=result)
        result = result.astype(out_dtype, copy=False)
    return result.reshape((out_h, out_w) + image.shape[2:])


def _resize_opencv(image, output_hw):
    """OpenCV's bilinear resize: NOT matterport's result (edge pixels replicated instead of
    zeros outside the image, 8-bit fixed-point weights, rounding); the explicit fast option."""
    try:
        import cv2
    except ImportError:
        raise ImportError("resize method 'opencv' needs OpenCV: pip install "
                          "opencv-python-headless") from None
    image = np.asarray(image)
    if image.ndim == 3 and not 1 <= image.shape[2] <= 512:
        raise ValueError(f"resize method 'opencv' takes 1 to 512 channels, got {image.shape}")
    src = image if image.dtype in (np.uint8, np.uint16, np.float32) else image.astype(np.float32)
    out = cv2.resize(src, (int(output_hw[1]), int(output_hw[0])), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[..., None]
    return out


def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=True, anti_aliasing=False, anti_aliasing_sigma=None):
    """skimage.transform.resize with matterport's defaults, and bool masks.

    image: [H, W] or [H, W, C]. output_shape: (h, w) (trailing dims are kept).
    A bool image is resized with nearest neighbour (order 0) and returned as bool.
    Other images give skimage's result and dtype (float32 for float32 input, else float64);
    matterport's own call (order 1, mode "constant", cval 0, clip, preserve_range, no
    anti-aliasing) runs through a faster, bit-exact NumPy twin, anything else through skimage.
    """
    image = np.asarray(image)
    output_shape = tuple(int(s) for s in output_shape)
    if len(output_shape) < image.ndim:
        output_shape = output_shape + image.shape[len(output_shape):]
    if image.dtype == bool:
        return skimage.transform.resize(image, output_shape, order=0, mode=mode, cval=cval,
                                        clip=clip, preserve_range=preserve_range,
                                        anti_aliasing=False).astype(bool)
    if (order == 1 and mode == "constant" and cval == 0 and clip and preserve_range
            and not anti_aliasing and output_shape[2:] == image.shape[2:]):
        return _resize_linear(image, output_shape[:2])
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)


def _dtype_range(dtype):
    """(min, max) of an integer dtype, (-inf, inf) for floats."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return info.min, info.max
    return -np.inf, np.inf


def _pad_amounts(size, target):
    before = (target - size) // 2
    return before, target - size - before


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None,
                 method="exact"):
    """Resize (and pad or crop) an image for the network, keeping its aspect ratio.

    image: [H, W, C] (or [H, W]) array; its dtype is kept.
    min_dim: scale up so that the short side is at least this (never scale down for it).
    max_dim: in "square" mode, the long side is at most this and the image is padded to
        [max_dim, max_dim].
    min_scale: lower bound of the scale (e.g. 2 to double small images).
    mode: "none" (unchanged), "square" (scale, then pad to max_dim x max_dim, centred),
        "pad64" (scale with min_dim / min_scale, then pad each side to a multiple of 64;
        min_dim must be a multiple of 64), "crop" (scale, then a random
        min_dim x min_dim crop; for training).
    rng: np.random.Generator (or RandomState) for the crop; default the np.random module.
    method: "exact" (default): matterport's ``skimage.transform.resize(order=1,
        mode="constant", cval=0, clip=True, preserve_range=True, anti_aliasing=False)`` then
        ``astype`` (truncation) to the input dtype, bit for bit (12x faster than skimage on
        a 640 x 480 photo, bench/resize.py). "opencv": cv2.resize (bilinear, edges replicated, rounded), several times
        faster again but NOT matterport's pixels (20% of the astronaut's differ, by up to 61), so
        detections from matterport weights can differ; an explicit opt-in.

    Returns:
        image: resized, padded or cropped image, input dtype.
        window: (y1, x1, y2, x2) of the real image inside the result (pixels, exclusive).
        scale: the factor applied to the original image.
        padding: [(top, bottom), (left, right), (0, 0)] pixels added.
        crop: (y, x, h, w) of the crop in the scaled image, or None.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; expected one of {RESIZE_METHODS}")
    image = np.asarray(image)
    dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError(f"resize mode 'square' needs max_dim, got {max_dim!r}")
    if mode == "crop" and not min_dim:
        raise ValueError(f"resize mode 'crop' needs min_dim, got {min_dim!r}")
    if mode == "pad64" and min_dim and min_dim % 64:
        raise ValueError(f"resize mode 'pad64' needs min_dim to be a multiple of 64, got {min_dim!r}")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        target = (round(h * scale), round(w * scale))
        if method == "opencv":
            image = _resize_opencv(image, target)
            if image.dtype != dtype:
                image = np.clip(np.round(image), *_dtype_range(dtype)).astype(dtype)
        else:
            image = _resize_linear(image, target, out_dtype=dtype)

    h, w = image.shape[:2]
    if mode == "square":
        top, bottom = _pad_amounts(h, max_dim)
        left, right = _pad_amounts(w, max_dim)
    elif mode == "pad64":
        top, bottom = _pad_amounts(h, -(-h // 64) * 64)
        left, right = _pad_amounts(w, -(-w // 64) * 64)
    else:  # crop
        if rng is None:
            y, x = np.random.randint(0, h - min_dim + 1), np.random.randint(0, w - min_dim + 1)
        elif hasattr(rng, "integers"):
            y, x = rng.integers(0, h - min_dim + 1), rng.integers(0, w - min_dim + 1)
        else:
            y, x = rng.randint(0, h - min_dim + 1), rng.randint(0, w - min_dim + 1)
        y, x = int(y), int(x)
        crop = (y, x, min_dim, min_dim)
        return image[y:y + min_dim, x:x + min_dim], (0, 0, min_dim, min_dim), scale, padding, crop
    padding = [(top, bottom), (left, right), (0, 0)]
    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (top, left, top + h, left + w)
    return image, window, scale, padding, crop


def _zoom_nearest_index(n_in, n_out):
    """Source index of each output row of scipy.ndimage.zoom(order=0), mode "constant".

    Output k samples the input at k * (n_in - 1) / (n_out - 1) (the corners align,
    grid_mode=False), rounded half up. Where that float64 product overshoots n_in - 1 by a
    last-bit error (e.g. 4 -> 188 rows), scipy's constant mode returns cval, 0: that row gets
    index -1 here. Returns [n_out] intp.
    """
    zoom = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
    cc = np.arange(n_out, dtype=np.float64) * zoom
    index = np.floor(cc + 0.5).astype(np.intp)
    index[cc > n_in - 1] = -1
    return index


def _zoom_nearest(mask, out_hw, crop=None):
    """scipy.ndimage.zoom(mask, (out_h / H, out_w / W, 1, ...), order=0), fast and exact.

    crop: None or (y, x, h, w): return only that window of the zoomed masks, gathering
    only its rows and columns (a 256 px training crop of a 2x-upscaled image with
    hundreds of instances never builds the whole upscaled stack).
    """
    rows = _zoom_nearest_index(mask.shape[0], out_hw[0])
    cols = _zoom_nearest_index(mask.shape[1], out_hw[1])
    if crop is not None:
        y, x, ch, cw = crop
        rows, cols = rows[y:y + ch], cols[x:x + cw]
        out_hw = (len(rows), len(cols))
    src = np.ascontiguousarray(mask)
    if (rows < 0).any() or (cols < 0).any():
        # One zero row/column at the end of the source stands for the constant border.
        src = np.pad(src, [(0, 1), (0, 1)] + [(0, 0)] * (src.ndim - 2))
    out = src[rows]
    channels = int(np.prod(out.shape[2:], dtype=np.int64))
    if channels == 0:
        return np.zeros(tuple(out_hw) + mask.shape[2:], dtype=mask.dtype)
    out = _gather_columns(out.reshape(out.shape[0], out.shape[1], channels), cols)
    return out.reshape(tuple(out_hw) + mask.shape[2:])


def resize_mask(mask, scale, padding, crop=None):
    """Apply resize_image's scale, crop and padding to masks, as matterport does.

    mask: [H, W, N] (or [H, W]) masks of the original image, any dtype, any N (0 included).
    scale, padding, crop: as returned by resize_image for that image.

    Returns: masks of the input dtype whose size equals resize_image's output. The scaling is
    matterport's ``scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)`` exactly (corner
    aligned nearest neighbour, (round(H * scale), round(W * scale)) pixels), computed by index
    gathers, so hundreds of instances cost little more than one; with a crop only the
    cropped window is gathered.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    if scale != 1:
        mask = _zoom_nearest(mask, (int(round(h * scale)), int(round(w * scale))), crop)
    elif crop is not None:
        y, x, ch, cw = crop
        mask = mask[y:y + ch, x:x + cw]
    return np.pad(mask, list(padding)[:mask.ndim], mode="constant", constant_values=0)


def _box_ints(box, index, where):
    y1, x1, y2, x2 = (int(v) for v in np.asarray(box)[:4])
    if y2 <= y1 or x2 <= x1:
        raise ValueError(f"{where}: instance {index} has a zero-area box {[y1, x1, y2, x2]} "
                         "(drop empty instances first)")
    return y1, x1, y2, x2


def minimize_mask(bbox, mask, mini_shape):
    """Cut each mask to its box and resize it to ``mini_shape`` (saves memory).

    bbox: [N, (y1, x1, y2, x2)] int pixels (from extract_bboxes). mask: [H, W, N].
    mini_shape: (mh, mw).

    Returns: [mh, mw, N] bool: matterport's ``np.around(resize(crop, mini_shape))`` of each
    bool crop read as float64 (bilinear, zero border, clipped), i.e. value > 0.5. A zero-area
    box raises ValueError naming the instance; the training loader drops instances emptied by
    a crop first.
    """
    mask = np.asarray(mask)
    mini = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints(bbox[i], i, "minimize_mask")
        cut = mask[y1:y2, x1:x2, i] != 0
        if cut.size == 0:
            raise ValueError(f"minimize_mask: box {i} {[y1, x1, y2, x2]} lies outside the "
                             f"mask of shape {mask.shape}")
        mini[:, :, i] = _resize_linear(cut, mini_shape) > 0.5
    return mini


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of minimize_mask: paste each mini mask back into its box.

    bbox: [N, (y1, x1, y2, x2)] int pixels. mini_mask: [mh, mw, N].
    image_shape: (H, W, ...).

    Returns: [H, W, N] bool: matterport's ``np.around(resize(mini, (y2 - y1, x2 - x1)))``
    of each mini mask read as float64, i.e. value > 0.5 (parts of a box outside the image are
    dropped).
    """
    mini_mask = np.asarray(mini_mask)
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mini_mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints(bbox[i], i, "expand_mask")
        mini = mini_mask[:, :, i]
        if mini.dtype != bool and not np.issubdtype(mini.dtype, np.floating):
            mini = mini.astype(np.float64)
        full = _resize_linear(mini, (y2 - y1, x2 - x1)) > 0.5
        _paste(mask[:, :, i], full, y1, x1)
    return mask


def unmold_mask(mask, bbox, image_shape, out=None):
    """Turn a predicted small mask into a full-image bool mask.

    mask: [h, w] float probabilities (e.g. the 28x28 float32 head output).
    bbox: (y1, x1, y2, x2) int pixels in the image. image_shape: (H, W, ...).
    out: optional [H, W] bool array of zeros (e.g. one channel of an [H, W, N] stack) to
        write into instead of allocating; only the box's pixels are written.

    Returns: [H, W] bool (``out`` when given): matterport's ``resize(mask, (y2 - y1, x2 - x1))
    >= 0.5`` (skimage's arithmetic: float32 stays float32); the part of the box outside the
    image is dropped.
    """
    y1, x1, y2, x2 = _box_ints(bbox, 0, "unmold_mask")
    shape = tuple(int(d) for d in image_shape[:2])
    if out is None:
        out = np.zeros(shape, dtype=bool)
    elif out.shape != shape or out.dtype != bool:
        raise ValueError(f"out must be a {shape} bool array, got {out.shape} {out.dtype}")
    resized = _resize_linear(np.asarray(mask), (y2 - y1, x2 - x1)) >= 0.5
    _paste(out, resized, y1, x1)
    return out


def _paste(dst, src, y1, x1):
    """Write 2-D ``src`` into 2-D ``dst`` at (y1, x1), dropping what falls outside ``dst``."""
    ty1, tx1 = max(y1, 0), max(x1, 0)
    ty2, tx2 = min(y1 + src.shape[0], dst.shape[0]), min(x1 + src.shape[1], dst.shape[1])
    if ty2 > ty1 and tx2 > tx1:
        dst[ty1:ty2, tx1:tx2] = src[ty1 - y1:ty2 - y1, tx1 - x1:tx2 - x1]
