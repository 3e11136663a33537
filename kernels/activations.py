"""The activations every kernel uses, GRU and attention alike: one ``tanh`` (with its gradient,
``tanh_and_grad``) and one ``sigmoid``.

Both are built from ``tl.exp``: the interpreter has no ``tl.math.tanh``, and one formula for
every backend keeps the interpreter's results those of the compiled kernels.
"""

import triton
import triton.language as tl

# Below these |x|, tanh(x) is its Taylor series; above, the exp form (1 - e) / (1 + e), e = e^(-2|x|),
# whose 1 - e cancels as |x| shrinks: its error is about eps / (2|x|) relative, 8 ulp at 0.0625.
# fp64 keeps the short series (to x^9, < 1e-14 below 0.0625: 8 fp64 ulp is far below any fp64
# limit). fp32 takes the series to x^21 up to 0.7 (measured in fp32 arithmetic: at most 0.9 ulp
# below, 1.4 ulp above, where the short series left 8 ulp): the attention score gradients
# amplify tanh's rounding wherever one key dominates a softmax row.
TANH_SERIES_BELOW = tl.constexpr(0.0625)
TANH_SERIES_BELOW_FP32 = tl.constexpr(0.7)


@triton.jit
def tanh_and_grad(x):
    """(tanh(x), 1 - tanh(x)^2) of a float32 or float64 tensor, NaN-free for any finite x. tanh
    keeps its relative precision near 0, where the plain 1 - 2 / (e^(2x) + 1) cancels; the
    gradient is 4e / (1 + e)^2 with e = e^(-2|x|), which never cancels, where 1 - tanh^2 loses
    every digit as tanh nears 1 (its error is eps / (1 - tanh^2) relative there)."""
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)  # in (0, 1]: never overflows
    big = (1.0 - e) / (1.0 + e)
    x2 = x * x
    if x.dtype == tl.float64:
        small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
        r = tl.where(ax < TANH_SERIES_BELOW, small, big)
    else:  # tanh's Taylor coefficients 2^2n (2^2n - 1) B_2n / (2n)!, n = 1..11
        c = -2.3912911424355248e-04 + x2 * 9.691537956929451e-05
        c = 0.003592128036572481 + x2 * (-0.0014558343870513183 + x2 * (0.000590027440945586 + x2 * c))
        c = 1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (0.021869488536155203 + x2 * (
            -0.008863235529902197 + x2 * c)))))
        r = tl.where(ax < TANH_SERIES_BELOW_FP32, ax * c, big)
    return tl.where(x < 0, -r, r), 4.0 * e / ((1.0 + e) * (1.0 + e))


@triton.jit
def tanh(x):
    """tanh(x) of a float32 or float64 tensor (tanh_and_grad's first half)."""
    t, _ = tanh_and_grad(x)
    return t


@triton.jit
def sigmoid(x):
    """1 / (1 + e^-x): e^-x overflows to inf for very negative x, which gives 0, never NaN."""
    return 1.0 / (1.0 + tl.exp(-x))
