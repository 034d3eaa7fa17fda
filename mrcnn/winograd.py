"""Winograd F(4x4, 3x3): a 3x3 stride-1 "same" convolution with 2.25x fewer multiplications.

A 3x3 convolution computes each 4x4 block of outputs from a 6x6 block of inputs. Winograd's
minimal filtering algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016) writes that block as

    Y = A^T [ (G g G^T) * (B^T d B) ] A

with fixed matrices B (6x6), G (6x3), A (6x4): the input tile d and the filter g are each
transformed into 36 numbers per channel, multiplied elementwise (which over channels is a
matrix product: 36 matrix products of [tiles, C_in] x [C_in, C_out]) and transformed back.
That is 36 multiplications per channel pair per 16 outputs instead of 144.

The transforms cost memory traffic, so on a CPU the algorithm pays for wide layers on large
maps. On a 2-core CPU, against TensorFlow's (oneDNN) direct convolution in float32: 1.3x
faster at 128 channels in and out on 128 x 128 pixels, 2x to 3x at 256 to 512 channels on 32
to 256 pixels a side, but 0.7x at 64 channels and 0.6x on 8 x 8 pixels.
The result differs from the direct convolution by rounding only: about 2e-5 of the output's
largest magnitude in float32. The transforms magnify rounding too much for 16-bit floats, so
callers use it for float32 only.

``winograd_conv3x3`` (NumPy, float64) and ``winograd_conv3x3_graph`` (TensorFlow) compute the
same thing; both equal a direct 3x3 "same" convolution with zero padding.
"""
import logging

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

TILE = 4  # output pixels per tile side
WINDOW = TILE + 2  # input pixels per tile side

# The F(4, 3) matrices for the interpolation points 0, 1, -1, 2, -2 and infinity.
B_T = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)

# Two-dimensional transforms on a row-major flattened tile: vec(M X N^T) = kron(M, N) vec(X).
INPUT_TRANSFORM = np.kron(B_T, B_T)  # [36, 36]: 6x6 input tile -> 36 products' inputs
FILTER_TRANSFORM = np.kron(G, G)  # [36, 9]: 3x3 filter -> 36 products' filters
OUTPUT_TRANSFORM = np.kron(A_T, A_T)  # [16, 36]: 36 products -> 4x4 output tile


def _check_operands(images_shape, kernel_shape):
    if len(images_shape) != 4:
        raise ValueError(f"images must be [batch, H, W, C], got shape {tuple(images_shape)}")
    if len(kernel_shape) != 4 or tuple(kernel_shape[:2]) != (3, 3):
        raise ValueError(f"kernel must be [3, 3, C_in, C_out], got shape {tuple(kernel_shape)}")
    channels = images_shape[-1]
    if channels is not None and kernel_shape[2] is not None and channels != kernel_shape[2]:
        raise ValueError(f"images have {channels} channels but the kernel expects "
                         f"{kernel_shape[2]} (kernel shape {tuple(kernel_shape)})")


def winograd_conv3x3(images, kernel):
    """NumPy reference of ``winograd_conv3x3_graph``, computed in float64.

    images: [batch, H, W, C_in] float, channels last, any H, W >= 1.
    kernel: [3, 3, C_in, C_out] float, Keras/TensorFlow layout (rows, cols, in, out).

    Returns: [batch, H, W, C_out] float64, the 3x3 stride-1 convolution (cross-correlation,
    as in TensorFlow) with one pixel of zero padding on every side ("same").
    """
    images = np.asarray(images, np.float64)
    kernel = np.asarray(kernel, np.float64)
    _check_operands(images.shape, kernel.shape)
    batch, height, width, channels = images.shape
    rows, cols = -(-height // TILE), -(-width // TILE)
    padded = np.zeros((batch, rows * TILE + 2, cols * TILE + 2, channels))
    padded[:, 1:height + 1, 1:width + 1] = images
    # [batch, rows, cols, 6, 6, C] overlapping input tiles, flattened to [tiles, 36, C].
    windows = np.lib.stride_tricks.sliding_window_view(padded, (WINDOW, WINDOW), axis=(1, 2))
    tiles = windows[:, ::TILE, ::TILE].transpose(0, 1, 2, 4, 5, 3).reshape(-1, WINDOW * WINDOW, channels)
    transformed = np.einsum("ij,tjc->itc", INPUT_TRANSFORM, tiles)  # [36, tiles, C_in]
    filters = np.einsum("ij,jck->ick", FILTER_TRANSFORM, kernel.reshape(9, channels, -1))
    products = np.matmul(transformed, filters)  # [36, tiles, C_out]
    out = np.einsum("ij,jtk->tik", OUTPUT_TRANSFORM, products)  # [tiles, 16, C_out]
    out = out.reshape(batch, rows, cols, TILE, TILE, -1).transpose(0, 1, 3, 2, 4, 5)
    return out.reshape(batch, rows * TILE, cols * TILE, -1)[:, :height, :width]


def winograd_conv3x3_graph(images, kernel):
    """3x3 stride-1 "same" convolution by Winograd F(4x4, 3x3), in TensorFlow.

    images: [batch, H, W, C_in] float32 tensor, channels last; batch, H and W may be dynamic,
        C_in must be static.
    kernel: [3, 3, C_in, C_out] float32 tensor (a Conv2D kernel), C_out static.

    Returns: [batch, H, W, C_out] float32, equal to ``tf.nn.conv2d(images, kernel, 1, "SAME")``
    up to rounding (see the module doc).
    """
    _check_operands(images.shape, kernel.shape)
    dtype = images.dtype
    channels, filters = int(kernel.shape[2]), int(kernel.shape[3])
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    rows = (height + TILE - 1) // TILE
    cols = (width + TILE - 1) // TILE
    # One pixel of "same" padding on the top and left; zeros at the bottom and right up to
    # one whole block of 4 beyond the last tile, so that the padded image is (rows + 1) x
    # (cols + 1) blocks of 4 x 4 pixels. Tile (r, c) reads blocks r, r + 1 (first two rows
    # only) and c, c + 1 (first two columns only). Slicing and concatenating whole blocks
    # copies contiguous memory, which is several times faster than extract_patches or
    # strided slices.
    padded = tf.pad(images, [[0, 0], [1, (rows + 1) * TILE - height - 1],
                             [1, (cols + 1) * TILE - width - 1], [0, 0]])
    blocks = tf.reshape(padded, [batch, rows + 1, TILE, cols + 1, TILE, channels])
    tiles = tf.concat([blocks[:, :rows], blocks[:, 1:, :2]], axis=2)  # [b, rows, 6, cols + 1, 4, C]
    tiles = tf.concat([tiles[:, :, :, :cols], tiles[:, :, :, 1:, :2]], axis=4)  # [b, rows, 6, cols, 6, C]
    tiles = tf.transpose(tiles, [2, 4, 0, 1, 3, 5])  # [6, 6, b, rows, cols, C]
    transformed = tf.matmul(tf.constant(INPUT_TRANSFORM, dtype),
                            tf.reshape(tiles, [WINDOW * WINDOW, -1]))  # [36, tiles * C]
    transformed = tf.reshape(transformed, [WINDOW * WINDOW, -1, channels])  # [36, tiles, C_in]
    kernel = tf.cast(kernel, dtype)
    transformed_filters = tf.einsum("ij,jck->ick", tf.constant(FILTER_TRANSFORM, dtype),
                                    tf.reshape(kernel, [9, channels, filters]))  # [36, C_in, C_out]
    products = tf.matmul(transformed, transformed_filters)  # [36, tiles, C_out]
    out = tf.matmul(tf.constant(OUTPUT_TRANSFORM, dtype),
                    tf.reshape(products, [WINDOW * WINDOW, -1]))  # [16, tiles * C_out]
    out = tf.reshape(out, [TILE, TILE, batch, rows, cols, filters])
    out = tf.reshape(tf.transpose(out, [2, 3, 0, 4, 1, 5]), [batch, rows * TILE, cols * TILE, filters])
    return out[:, :height, :width]
