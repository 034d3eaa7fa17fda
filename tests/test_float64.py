"""mrcnn.float64: float64 arithmetic from int64 kernels, bit for bit with NumPy's, and the
molding resize built on it, bit for bit with matterport's (skimage) on TensorFlow and on
ai_edge_litert."""
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from mrcnn import float64, resizing, utils
from tests.export_helpers import litert_function


def as_pair(values):
    """NumPy float64 >= 0 as the module's (m, e) int64 tensors."""
    values = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(values)
    m = np.where(values == 0, 0, (mantissa * 2.0 ** 53).astype(np.int64))
    e = np.where(values == 0, 0, exponent.astype(np.int64) - 53)
    return tf.constant(m), tf.constant(e)


def hard_operands(n=20000, seed=0):
    """Pairs of non-negative float64s: pixel-sized values, 2**-53-grid weights, tiny and huge
    exponents, zeros, and sums that land exactly on a tie (half a last bit)."""
    rng = np.random.default_rng(seed)

    def spread():
        return np.ldexp(rng.integers(2 ** 52, 2 ** 53, n).astype(np.float64),
                        rng.integers(-170, 20, n))
    a = np.concatenate([rng.random(n) * 255, rng.integers(0, 256, n).astype(np.float64),
                        rng.integers(0, 2 ** 53, n) / 2.0 ** 53, spread()])
    b = np.concatenate([rng.random(n), rng.integers(0, 2 ** 53, n) / 2.0 ** 53,
                        rng.random(n) * 1e-17, spread()])
    a[::97] = 0
    b[::89] = 0
    b[1::50] = a[1::50] * 2.0 ** -53  # exactly half of a's last bit: a tie
    b[2::50] = a[2::50] * 3 * 2.0 ** -54  # a tie after a carry
    b[3::50] = a[3::50]  # equal operands
    return a, b


def test_multiply_and_add_are_numpy_float64():
    a, b = hard_operands()
    product = float64.to_numpy(*float64.multiply(as_pair(a), as_pair(b)))
    total = float64.add(as_pair(a), as_pair(b))
    np.testing.assert_array_equal(product, a * b)
    np.testing.assert_array_equal(float64.to_numpy(*total), a + b)
    np.testing.assert_array_equal(float64.greater_equal(as_pair(a), as_pair(b)).numpy(), a >= b)


def test_integer_helpers():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2 ** 61, 5000)
    x[:62] = 2 ** np.arange(62)  # powers of two: where float32's log2 estimate is off by one
    x[62:124] = 2 ** np.arange(62) - 1
    k = rng.integers(0, 63, 5000)
    np.testing.assert_array_equal(float64.shift_right(tf.constant(x), tf.constant(k)).numpy(),
                                  x >> k)
    np.testing.assert_array_equal(float64.bit_length(tf.constant(x)).numpy(),
                                  [int(v).bit_length() for v in x])
    rounded = float64.round_to_float64(tf.constant(x), tf.zeros(5000, tf.int64))
    np.testing.assert_array_equal(float64.to_numpy(*rounded), x.astype(np.float64))


def test_divide_is_numpy_float64():
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.integers(1, 70000, 3000), [1, 1, 3, 65535, 7]])
    b = np.concatenate([rng.integers(1, 70000, 3000), [1, 65535, 1024, 1, 7]])
    got = float64.to_numpy(*float64.divide(tf.constant(a), tf.constant(b)))
    np.testing.assert_array_equal(got, a / b)


SIZES = [(1, 1), (1, 1024), (3, 1024), (512, 128), (640, 1024), (427, 1024), (1024, 1024),
         (2000, 1024), (300, 451), (7, 5), (5, 7), (60000, 1000), (1000, 60000), (64, 65535)]


@pytest.mark.parametrize("n_in,n_out", SIZES + [
    tuple(int(v) for v in np.random.default_rng(3).integers(1, 3000, 2)) for _ in range(12)])
def test_linear_taps_are_scipys(n_in, n_out):
    i0, i1, w0, w1 = resizing._linear_taps(n_in, n_out)
    taps = {k: v.numpy() for k, v in float64.linear_taps(n_in, n_out).items()}
    np.testing.assert_array_equal(taps["i0"], i0)
    np.testing.assert_array_equal(taps["i1"], i1)
    np.testing.assert_array_equal(taps["w0"].astype(np.float64), w0 * 2.0 ** 53)
    np.testing.assert_array_equal(taps["w1"].astype(np.float64), w1 * 2.0 ** 53)
    # The rational weights are what float64 approximates, to far better than 1 / den.
    den = taps["den"]
    assert den == 2 * n_out
    np.testing.assert_allclose(taps["r0"] / den, w0, atol=1e-9)
    np.testing.assert_allclose(taps["r1"] / den, w1, atol=1e-9)
    # "short": both weights have at most 21 fractional bits and equal their rationals.
    expected = np.ones(n_out, bool)
    for w, r in ((w0, taps["r0"]), (w1, taps["r1"])):
        expected &= (w * 2.0 ** 21 % 1 == 0) & (w * den == r)
    np.testing.assert_array_equal(taps["short"], expected)


def reference_resize(image, out_hw):
    return utils.resize(image, out_hw, preserve_range=True).astype(np.uint8)


def resize_cases():
    """(image, out_hw): photos down and up, noise, and flat images (where nearly every value
    is an integer that float64 may land a hair below)."""
    rng = np.random.default_rng(4)
    astronaut, coffee = skimage.data.astronaut(), skimage.data.coffee()
    cases = [(astronaut, (128, 128)), (astronaut, (700, 700)), (coffee, (128, 171)),
             (coffee, (1024, 1365)), (skimage.data.chelsea(), (97, 131))]
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        out = tuple(int(v) for v in rng.integers(1, 240, 2))
        cases.append(((rng.integers(0, 3, (h, w, 3)) * 100 + 7).astype(np.uint8), out))
        cases.append((rng.integers(0, 256, (h, w, 3), dtype=np.uint8), out))
    return cases


def test_resize_uint8_is_matterports_resize():
    cases = resize_cases()  # the LiteRT test below takes the others
    for image, out_hw in [cases[1], cases[3]] + cases[9:]:
        got = float64.resize_uint8(tf.constant(image[None]), *out_hw)[0].numpy()
        np.testing.assert_array_equal(got, reference_resize(image, out_hw),
                                      err_msg=f"{image.shape} -> {out_hw}")


def test_resize_uint8_on_litert():
    """TFLite builtins only (ai_edge_litert, no Flex delegate), still bit for bit: float32
    arithmetic (the LiteRT graph's molding before this module) differs on ~0.3% of values."""
    run = litert_function(lambda images, hw: float64.resize_uint8(images, hw[0], hw[1]),
                          [tf.TensorSpec([1, None, None, 3], tf.uint8),
                           tf.TensorSpec([2], tf.int32)])
    cases = resize_cases()
    for image, out_hw in [cases[0], cases[2], cases[4]] + cases[5:9]:
        got = run(image[None], np.array(out_hw, np.int32))[0]
        np.testing.assert_array_equal(got, reference_resize(image, out_hw),
                                      err_msg=f"{image.shape} -> {out_hw}")
