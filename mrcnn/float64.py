"""IEEE float64 arithmetic emulated with int64 TensorFlow ops, for runtimes without float64.

TFLite has no float64 kernels, and its int64 kernels stop at Add, Sub, Mul, FloorMod,
comparisons, Select, Gather and Cast (no FloorDiv, no shifts, no bitwise ops). Matterport's
molding (skimage's bilinear resize in float64, then a truncating cast to uint8) moves a
value that lies a hair below an integer by a whole grey level, so nothing but float64's own
roundings gives its image. This module gives them with exactly those kernels:

- ``linear_taps``: skimage's two taps per output position of one axis, and their float64
  weights as exact integers on the 2**-53 grid (every such weight lies on it);
- ``resize_uint8``: the resized uint8 image, bit for bit with ``mrcnn.utils.resize``.

The resize works in two passes. The exact rational value of an output pixel (the weights
as the fractions skimage's float64 approximates) has denominator 4 * out_h * out_w; where
it is not an integer, float64's error (~1e-9 at most) cannot carry it across one, and its
floor, found with int32 arithmetic, is skimage's value. Where it is an integer (flat 2x2
regions, taps on whole pixels: ~1-5% of a photo's values) float64's last bit decides, so
those values are recomputed in emulated float64, in skimage's order of operations.

A float64 number x >= 0 is held as a pair (m, e) of int64 tensors: x = m * 2**e with
m in [2**52, 2**53), or m = 0 for zero. Only non-negative values occur, so there is no sign,
and no subnormals, infinities or NaNs (sizes are bounded, see ``resize_uint8``).
Functions here are traced into graphs; importing the module imports no TensorFlow.
"""
import numpy as np

_HIDDEN = 1 << 52  # the implicit leading bit of a normalized mantissa
_LIMIT = 1 << 53   # one past the largest mantissa


def _tf():
    import tensorflow as tf
    return tf


def _pow2(k):
    """2**k as int64 for int k in [0, 62] (clipped into it)."""
    tf = _tf()
    table = tf.constant(np.left_shift(np.int64(1), np.arange(63, dtype=np.int64)))
    return tf.gather(table, tf.clip_by_value(tf.cast(k, tf.int32), 0, 62))


def _inv_pow2(k):
    """2**-k as float32 for int k in [0, 140] (clipped into it)."""
    tf = _tf()
    table = tf.constant(np.ldexp(np.float32(1), -np.arange(141)).astype(np.float32))
    return tf.gather(table, tf.clip_by_value(tf.cast(k, tf.int32), 0, 140))


def _int64(x):
    return _tf().cast(x, "int64")


def shift_right(x, k):
    """floor(x / 2**k) for int64 x in [0, 2**62) and int k >= 0 (k may be a tensor).

    Without int64 FloorDiv or RightShift: x's bits from k up are cut into 24-bit pieces
    (differences of x mod 2**(k + 24 j)), which float32 holds exactly, and scaled by 2**-k
    in float32 (exact: powers of two)."""
    tf = _tf()
    k = tf.cast(k, tf.int32)
    scale = _inv_pow2(k)
    low = tf.math.floormod(x, _pow2(k))
    mid = tf.math.floormod(x, _pow2(tf.minimum(k + 24, 62)))
    high = tf.math.floormod(x, _pow2(tf.minimum(k + 48, 62)))
    pieces = ((mid - low, 1.0, 1), (high - mid, 2.0 ** -24, 1 << 24),
              (x - high, 2.0 ** -48, 1 << 48))
    return sum(_int64(tf.cast(piece, tf.float32) * (scale * np.float32(down))) * up
               for piece, down, up in pieces)


def bit_length(x):
    """Number of significant bits of int64 x in [0, 2**62) (0 for 0), as int32."""
    tf = _tf()
    # float32's exponent gives it to within one; two corrections each way make it exact.
    estimate = tf.cast(tf.floor(tf.math.log(tf.cast(tf.maximum(x, 1), tf.float32))
                                * np.float32(1 / np.log(2)) + 1), tf.int32)
    for _ in range(2):
        estimate = estimate + tf.cast(x >= _pow2(estimate), tf.int32)
        estimate = estimate - tf.cast((estimate > 0) & (x < _pow2(estimate - 1)), tf.int32)
    return tf.where(x > 0, estimate, 0)


def round_to_float64(x, e):
    """The float64 nearest (ties to even) to x * 2**e, for int64 x in [0, 2**62) and int64 e.

    Returns (m, e) normalized (see the module docstring). Callers that dropped low bits
    fold a sticky bit into x's last bit, below the rounding position.
    """
    tf = _tf()
    x, e = _int64(x), _int64(e)
    length = bit_length(x)
    excess = length - 53  # bits to drop (> 0) or to make up (<= 0)
    up_shift = tf.maximum(-excess, 0)
    down_shift = tf.maximum(excess, 0)
    q = shift_right(x, down_shift)
    rest = x - q * _pow2(down_shift)
    half = _pow2(down_shift - 1)
    up = (down_shift > 0) & ((rest > half) | ((rest == half) & (tf.math.floormod(q, 2) == 1)))
    q = q + tf.cast(up, tf.int64)
    carry = q >= _LIMIT
    q = tf.where(carry, _HIDDEN, q)
    m = tf.where(excess > 0, q, x * _pow2(up_shift))
    exponent = e + _int64(excess) + tf.cast(carry, tf.int64)
    zero = x <= 0
    return tf.where(zero, tf.zeros_like(m), m), tf.where(zero, tf.zeros_like(exponent), exponent)


def _split18(m):
    """m < 2**54 as three 18-bit limbs (low first), by exact float32 shifts."""
    tf = _tf()
    low = tf.math.floormod(m, 1 << 18)
    mid = _int64(tf.cast(tf.math.floormod(m, 1 << 36) - low, tf.float32) * np.float32(2 ** -18))
    high = _int64(tf.cast(m - tf.math.floormod(m, 1 << 36), tf.float32) * np.float32(2 ** -36))
    return low, mid, high


def _carry18(column):
    """(column mod 2**18, column // 2**18) for 0 <= column < 2**42."""
    tf = _tf()
    digit = tf.math.floormod(column, 1 << 18)
    return digit, _int64(tf.cast(column - digit, tf.float32) * np.float32(2 ** -18))


def multiply(a, b):
    """fl(a * b) for emulated float64 pairs a = (m, e), b = (m, e) >= 0."""
    tf = _tf()
    (ma, ea), (mb, eb) = a, b
    a0, a1, a2 = _split18(ma)
    b0, b1, b2 = _split18(mb)
    # Schoolbook product in base 2**18: columns < 3 * 2**36, carries < 2**21.
    d0, carry = _carry18(a0 * b0)
    d1, carry = _carry18(a0 * b1 + a1 * b0 + carry)
    d2, carry = _carry18(a0 * b2 + a1 * b1 + a2 * b0 + carry)
    d3, carry = _carry18(a1 * b2 + a2 * b1 + carry)
    top = a2 * b2 + carry  # product = top * 2**72 + d3 * 2**54 + (d2, d1, d0)
    high = top * (1 << 18) + d3  # product // 2**54, in [2**50, 2**52) for normalized inputs
    low = d2 * (1 << 36) + d1 * (1 << 18) + d0  # product mod 2**54
    wide = high >= (1 << 51)
    # Keep 53 bits: drop 53 (wide) or 52 bits, i.e. high's bits plus the top one or two of low.
    two_bits = (tf.cast(low >= (1 << 52), tf.int64) + tf.cast(low >= (2 << 52), tf.int64)
                + tf.cast(low >= (3 << 52), tf.int64))
    q = tf.where(wide, high * 2 + tf.cast(low >= (2 << 52), tf.int64), high * 4 + two_bits)
    rest = tf.where(wide, tf.math.floormod(low, 1 << 53), tf.math.floormod(low, 1 << 52))
    half = tf.where(wide, tf.constant(1 << 52, tf.int64), tf.constant(1 << 51, tf.int64))
    up = (rest > half) | ((rest == half) & (tf.math.floormod(q, 2) == 1))
    q = q + tf.cast(up, tf.int64)
    carry_out = q >= _LIMIT
    q = tf.where(carry_out, _HIDDEN, q)
    e = ea + eb + tf.where(wide, tf.constant(53, tf.int64), tf.constant(52, tf.int64))
    e = e + tf.cast(carry_out, tf.int64)
    zero = (ma <= 0) | (mb <= 0)
    return tf.where(zero, tf.zeros_like(q), q), tf.where(zero, tf.zeros_like(e), e)


def add(a, b):
    """fl(a + b) for emulated float64 pairs a, b >= 0."""
    tf = _tf()
    (ma, ea), (mb, eb) = a, b
    # Order by size so that a is the larger (zero counts as smallest).
    a_first = (mb <= 0) | ((ma > 0) & ((ea > eb) | ((ea == eb) & (ma >= mb))))
    big_m, big_e = tf.where(a_first, ma, mb), tf.where(a_first, ea, eb)
    small_m, small_e = tf.where(a_first, mb, ma), tf.where(a_first, eb, ea)
    gap = tf.clip_by_value(big_e - small_e, 0, 60)
    # Three guard bits and a sticky bit (all dropped bits ORed into the last one) round
    # a sum of two non-negative numbers correctly.
    scaled = small_m * 8
    kept = shift_right(scaled, gap)
    sticky = (kept * _pow2(gap)) != scaled
    kept = kept + tf.cast(sticky & (tf.math.floormod(kept, 2) == 0), tf.int64)
    far = (gap >= 56) | (small_m <= 0)  # below a quarter of the larger one's last bit
    total = big_m * 8 + tf.where(far, tf.zeros_like(kept), kept)
    m, e = round_to_float64(total, big_e - 3)
    # A far operand is below half the larger one's last bit: the sum rounds to the larger.
    return tf.where(far, big_m, m), tf.where(far, big_e, e)


def from_int(n):
    """Emulated float64 of non-negative integers n < 2**53 (exact)."""
    return round_to_float64(_int64(n), _tf().zeros_like(_int64(n)))


def greater_equal(a, b):
    """a >= b for emulated float64 pairs (bool)."""
    tf = _tf()
    (ma, ea), (mb, eb) = a, b
    a_zero, b_zero = ma <= 0, mb <= 0
    ordered = (ea > eb) | ((ea == eb) & (ma >= mb))
    return b_zero | (~a_zero & ordered)


def to_numpy(m, e):
    """The float64 values of emulated pairs (NumPy arrays), for tests."""
    return np.ldexp(np.asarray(m, dtype=np.float64), np.asarray(e, dtype=np.int64))


def divide(a, b):
    """fl(a / b) for positive integers a, b < 2**31 (int tensors of one shape), emulated.

    Restoring long division, one quotient bit a step (int64 has no FloorDiv in TFLite)."""
    tf = _tf()
    a, b = _int64(a), _int64(b)
    la, lb = bit_length(a), bit_length(b)
    # Scale the smaller one up to the other's bit length: then 1/2 < a/b < 2.
    a = a * _pow2(tf.maximum(lb - la, 0))
    b = b * _pow2(tf.maximum(la - lb, 0))
    q = tf.cast(a >= b, tf.int64)
    rest = a - q * b

    def step(i, q, rest):
        rest = rest * 2
        bit = rest >= b
        return i + 1, q * 2 + tf.cast(bit, tf.int64), rest - tf.where(bit, b, tf.zeros_like(b))
    _, q, rest = tf.while_loop(lambda i, q, rest: i < 60, step, (tf.constant(0), q, rest))
    # q in [2**59, 2**61): a sticky last bit stands for the remainder.
    q = q + tf.cast((rest > 0) & (tf.math.floormod(q, 2) == 0), tf.int64)
    return round_to_float64(q, _int64(la - lb) - 60)


def linear_taps(in_size, out_size):
    """skimage's bilinear taps of one axis (``mrcnn.resizing._linear_taps``), exactly.

    Output position o samples input coordinate c = fl(fl((o + 0.5) * fl(in / out)) - 0.5)
    and blends taps floor(c) and floor(c) + 1 with float64 weights w0 = 1 - (c - floor(c)),
    w1 = 1 - w0. Those weights are multiples of 2**-53 and are returned as those multiples.

    in_size, out_size: scalar int tensors, 0 < in_size, out_size < 2**16 and
        in_size / out_size >= 2**-10 (an upscale of at most 1024x).
    Returns a dict of [out_size] tensors:
        i0, i1: int32 tap indices clipped into [0, in_size);
        w0, w1: int64, the float64 weights times 2**53 (0 for a tap outside the input);
        r0, r1: int32, the exact rational weights times ``den`` (same zeros);
        den: int32 scalar, 2 * out_size;
        short: bool, both weights equal their rational values and have at most 21
            fractional bits (then skimage's sums of products are exact).
    """
    tf = _tf()
    o = tf.range(_int64(out_size), dtype=tf.int64)
    taps = _taps(o, tf.fill(tf.shape(o), _int64(in_size)), tf.fill(tf.shape(o), _int64(out_size)))
    taps["den"] = tf.cast(2 * out_size, tf.int32)
    return taps


def _taps(o, in_size, out_size):
    """linear_taps for positions o (int64 [n]) of axes in_size -> out_size (int64 [n] each),
    so that several axes cost one pass; without ``den`` (one per axis, the callers add it)."""
    tf = _tf()
    scale = divide(in_size, out_size)
    m, e = from_int(2 * o + 1)
    m, e = multiply((m, e - 1), scale)  # (o + 0.5) * scale
    # c = x - 0.5. For x >= 0.5 (e >= -53) it is exact and so is its fraction: split x into
    # integer and 53-bit fraction.
    frac_bits = tf.clip_by_value(-e, 0, 62)
    whole = shift_right(m, frac_bits)
    f53 = (m - whole * _pow2(frac_bits)) * _pow2(53 - frac_bits)
    upper = f53 >= _HIDDEN
    start = tf.where(upper, whole, whole - 1)
    frac = tf.where(upper, f53 - _HIDDEN, f53 + _HIDDEN)
    # For x < 0.5, c = fl(x - 0.5) rounds (its magnitude is computed on the 2**-63 grid) and
    # so does the fraction fl(c + 1), to the 2**-53 grid.
    magnitude = (1 << 62) - m * _pow2(tf.clip_by_value(e + 63, 0, 62))
    mc, ec = round_to_float64(tf.maximum(magnitude, 1), -63)
    drop = tf.clip_by_value(-(ec + 53), 0, 62)
    cq = shift_right(mc, drop)
    cr = mc - cq * _pow2(drop)
    base = _LIMIT - cq - tf.cast(cr > 0, tf.int64)
    gap = _pow2(drop) - cr  # the part of 1 - |c| below base's last bit, times 2**drop
    half = _pow2(drop - 1)
    up = (cr > 0) & ((gap > half) | ((gap == half) & (tf.math.floormod(base, 2) == 1)))
    small = e < -53
    start = tf.where(small, tf.constant(-1, tf.int64), start)
    frac = tf.where(small, base + tf.cast(up, tf.int64), frac)
    w1, w0 = frac, _LIMIT - frac
    i0, i1 = start, start + 1
    inside0 = (i0 >= 0) & (i0 < in_size)
    inside1 = (i1 >= 0) & (i1 < in_size)
    zero = tf.zeros_like(w0)
    w0, w1 = tf.where(inside0, w0, zero), tf.where(inside1, w1, zero)
    den = 2 * out_size
    r1 = (2 * o + 1) * in_size - out_size - start * den
    r0 = den - r1
    r0, r1 = tf.where(inside0, r0, zero), tf.where(inside1, r1, zero)
    short = tf.ones_like(inside0)
    for w, r in ((w0, r0), (w1, r1)):
        short &= (tf.math.floormod(w, 1 << 32) == 0) & (shift_right(w, 32) * den == r * (1 << 21))
    last = in_size - 1
    return {"i0": tf.cast(tf.clip_by_value(i0, 0, last), tf.int32),
            "i1": tf.cast(tf.clip_by_value(i1, 0, last), tf.int32),
            "w0": w0, "w1": w1, "r0": tf.cast(r0, tf.int32), "r1": tf.cast(r1, tf.int32),
            "short": short}


def _two_axes_taps(in_h, out_h, in_w, out_w):
    """linear_taps of both axes of an image in one pass: (rows, columns)."""
    tf = _tf()
    in_h, out_h, in_w, out_w = (_int64(v) for v in (in_h, out_h, in_w, out_w))
    o = tf.concat([tf.range(out_h), tf.range(out_w)], 0)
    taps = _taps(o, tf.concat([tf.fill([out_h], in_h), tf.fill([out_w], in_w)], 0),
                 tf.concat([tf.fill([out_h], out_h), tf.fill([out_w], out_w)], 0))
    rows = {k: v[:out_h] for k, v in taps.items()}
    columns = {k: v[out_h:] for k, v in taps.items()}
    rows["den"] = tf.cast(2 * out_h, tf.int32)
    columns["den"] = tf.cast(2 * out_w, tf.int32)
    return rows, columns


def resize_uint8(images, out_h, out_w):
    """``mrcnn.utils.resize(image, (out_h, out_w), preserve_range=True).astype(np.uint8)``
    (skimage's order-1 resize, zero border, clipped, truncated) for a batch, bit for bit,
    with int32/int64 kernels only.

    images: [batch, H, W, C] uint8 (any integer dtype holding 0..255), H, W < 2**16.
    out_h, out_w: scalar int32 tensors, 0 < out < 2**14 and at most a 1024x upscale.
    Returns [batch, out_h, out_w, C] int32 values in 0..255.
    """
    tf = _tf()
    pixels = tf.cast(images, tf.int32)
    shape = tf.shape(pixels)
    ty, tx = _two_axes_taps(shape[1], out_h, shape[2], out_w)

    def rows(values):
        return tf.reshape(values, [1, -1, 1, 1])

    def cols(values):
        return tf.reshape(values, [1, 1, -1, 1])
    top = tf.gather(pixels, ty["i0"], axis=1)
    bottom = tf.gather(pixels, ty["i1"], axis=1)
    p00, p01 = tf.gather(top, tx["i0"], axis=2), tf.gather(top, tx["i1"], axis=2)
    p10, p11 = tf.gather(bottom, tx["i0"], axis=2), tf.gather(bottom, tx["i1"], axis=2)

    # The exact value is N / (dx * dy) with N = sum(p * ry * rx): split it so that every
    # intermediate stays in int32 (N itself may not): N = t * dx + u with 0 <= u < dx.
    dx, dy = tx["den"], ty["den"]
    c0 = p00 * cols(tx["r0"]) + p01 * cols(tx["r1"])
    c1 = p10 * cols(tx["r0"]) + p11 * cols(tx["r1"])
    q0, q1 = tf.math.floordiv(c0, dx), tf.math.floordiv(c1, dx)
    rest = (c0 - q0 * dx) * rows(ty["r0"]) + (c1 - q1 * dx) * rows(ty["r1"])
    carry = tf.math.floordiv(rest, dx)
    t = q0 * rows(ty["r0"]) + q1 * rows(ty["r1"]) + carry
    value = tf.math.floordiv(t, dy)
    integer = tf.equal(rest - carry * dx, 0) & tf.equal(t - value * dy, 0)
    # Where that value is an integer, float64 may land a hair below it: recompute those
    # values in emulated float64, unless both axes' weights are short (then it is exact).
    emulate = integer & ~(rows(ty["short"]) & cols(tx["short"]))
    where = tf.where(emulate)  # [n, 4] (image, row, column, channel)
    row, col = where[:, 1], where[:, 2]

    # The column weights as float64 pairs, normalized once per axis (both in one call).
    width = tf.shape(tx["w0"])[0]
    wx_m, wx_e = round_to_float64(tf.concat([tx["w0"], tx["w1"]], 0), -53)
    wx = {"w0": (wx_m[:width], wx_e[:width]), "w1": (wx_m[width:], wx_e[width:])}

    # The four products ((p * wy) * wx) in one pass over [4n] values, then summed in order.
    n = tf.shape(where)[0]
    pixels_wy = [_int64(tf.gather_nd(p, where)) * tf.gather(ty[key], row)
                 for p, key in ((p00, "w0"), (p01, "w0"), (p10, "w1"), (p11, "w1"))]
    first = round_to_float64(tf.concat(pixels_wy, 0), -53)  # p * wy * 2**53 < 2**61: exact
    second = tuple(tf.concat([tf.gather(wx[key][part], col) for key in ("w0", "w1", "w0", "w1")],
                             0) for part in (0, 1))  # (m, e) of wx0, wx1, wx0, wx1
    m, e = multiply(first, second)
    terms = [(m[i * n:(i + 1) * n], e[i * n:(i + 1) * n]) for i in range(4)]
    total = add(add(add(terms[0], terms[1]), terms[2]), terms[3])
    k = tf.gather_nd(value, where)
    below = ~greater_equal(total, from_int(k))
    fixed = tf.scatter_nd(where, k - tf.cast(below, tf.int32), tf.cast(tf.shape(value), tf.int64))
    value = tf.where(emulate, fixed, value)
    # skimage's clip=True into each image's [min, max]; truncation commutes with it.
    low = tf.reduce_min(pixels, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(pixels, axis=[1, 2, 3], keepdims=True)
    return tf.maximum(tf.minimum(value, high), low)
