"""The activations every kernel uses, GRU and attention alike: one ``tanh`` and one ``sigmoid``.

Both are built from ``tl.exp``: the interpreter has no ``tl.math.tanh``, and one formula for
every backend keeps the interpreter's results those of the compiled kernels.
"""

import triton
import triton.language as tl

# Below this |x|, tanh(x) is its Taylor series (accurate to fp64 precision); above it the
# exp form, whose 1 - e^(-2|x|) would cancel for tiny |x|.
TANH_SERIES_BELOW = tl.constexpr(0.0625)


@triton.jit
def tanh(x):
    """tanh(x), NaN-free for any finite x, and keeping its relative precision near 0, where
    the plain 1 - 2 / (e^(2x) + 1) cancels (its error there is that of 1, not of x)."""
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)  # in (0, 1]: never overflows
    big = (1.0 - e) / (1.0 + e)
    x2 = x * x  # Taylor series to x^9: relative error < 1e-14 below the threshold
    small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
    r = tl.where(ax < TANH_SERIES_BELOW, small, big)
    return tl.where(x < 0, -r, r)


@triton.jit
def sigmoid(x):
    """1 / (1 + e^-x): e^-x overflows to inf for very negative x, which gives 0, never NaN."""
    return 1.0 / (1.0 + tl.exp(-x))
