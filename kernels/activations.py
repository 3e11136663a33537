"""The activations every kernel uses, GRU and attention alike: one ``tanh`` (with its gradient,
``tanh_and_grad``) and one ``sigmoid``, and the precise ``exp`` and ``div`` they (and the
decoder's softmax) are built from.

One formula for every backend: the interpreter has no ``tl.math.tanh`` and computes ``tl.exp``
and ``/`` exactly (numpy), while the compiled fp32 ``tl.exp`` is ``ex2.approx.f32`` of x log2(e)
(about |x| 2^-24 relative error on top of 2 ulp) and fp32 ``/`` is ``div.full.f32`` (2 ulp). So
fp32 takes ``exp`` from fma, integer and bit operations, ``div`` from ``tl.math.div_rn`` (IEEE
division, ``div.rn.f32``), and every fp32 polynomial is written with explicit ``tl.math.fma``
(which the GPU runs as written, where it would contract a multiply and add on its own): the
interpreter of Triton 3.9 then computes bit for bit what the GPU does, and the ulp bounds that
tests/test_activations.py measures there hold for the compiled kernels. fp64 keeps ``tl.exp``
(libdevice's exp, fma only) and ``/`` (``div.rn.f64``).

Every function takes ``FAST`` (a constexpr): True where the caller's numerics contract is bf16's or
fp16's (2e-2), whose error dwarfs ex2.approx's; there sigmoid, tanh and the decoder's softmax use
the compiled approximations (``tl.exp``, ``/``), which cost fewer instructions and registers on the
recurrence's critical path. The GRU and decoder kernels pass their ``MMA_LOWP`` (bf16/fp16 weights
on a GPU), attention passes True (its fp32 inputs compute in float64, where FAST changes nothing).
fp64 ignores FAST.
"""

import triton
import triton.language as tl

# exp's range reduction (Cody-Waite): k = round(x log2 e), r = (x - k LN2_HI) - k LN2_LO, |r| <=
# ln2 / 2 + tiny. LN2_HI has 16 significant bits, so k LN2_HI is exact for |k| < 256 and x - k LN2_HI
# exact or nearly; LN2_LO = ln 2 - LN2_HI. Adding 1.5 * 2^23 rounds an fp32 below 2^22 to an integer.
EXP_LOG2E = tl.constexpr(1.4426950408889634)
EXP_LN2_HI = tl.constexpr(0.693145751953125)
EXP_LN2_LO = tl.constexpr(1.428606765330187e-06)
EXP_ROUND = tl.constexpr(12582912.0)
# Inputs are clamped here first: e^89 overflows fp32 (max e^88.72), e^-104 rounds to 0 (below
# half the smallest subnormal, 2^-150); so k stays in [-150, 128] and 2^k splits into two normal
# factors 2^(k >> 1) 2^(k - (k >> 1)), the second rounding once into the subnormals.
EXP_LO = tl.constexpr(-104.0)
EXP_HI = tl.constexpr(89.0)

# Below these |x|, tanh(x) is its Taylor series; above, the exp form (1 - e) / (1 + e), e = e^(-2|x|),
# whose 1 - e cancels as |x| shrinks: its error is about eps / (2|x|) relative, 8 ulp at 0.0625.
# fp64 keeps the short series (to x^9, < 1e-14 below 0.0625: 8 fp64 ulp is far below any fp64
# limit). fp32 takes the series to x^21 up to 0.7 (measured in fp32 arithmetic: at most 0.9 ulp
# below, 1.4 ulp above, where the short series left 8 ulp): the attention score gradients
# amplify tanh's rounding wherever one key dominates a softmax row.
TANH_SERIES_BELOW = tl.constexpr(0.0625)
TANH_SERIES_BELOW_FP32 = tl.constexpr(0.7)


@triton.jit
def exp(x, FAST: tl.constexpr):
    """e^x of a float32 or float64 tensor, as exp does at the ends: +inf above 88.72, 0 below
    -103.97 (subnormal results between -103.97 and -87.34), NaN for NaN. fp32: e^x = 2^k e^r with
    Cody-Waite's k and r (EXP_*), e^r its Taylor series to r^7 (truncation below 0.1 ulp at
    |r| = ln2 / 2) by Horner in fma, 2^k from exponent bits. fp64, or FAST: tl.exp."""
    if x.dtype == tl.float64 or FAST:
        y = tl.exp(x)
    else:
        xc = tl.minimum(tl.maximum(x, EXP_LO), EXP_HI)  # NaN becomes a bound here, and NaN again below
        kf = tl.math.fma(xc, EXP_LOG2E, EXP_ROUND) - EXP_ROUND  # round(x log2 e), exactly an integer
        r = tl.math.fma(kf, -EXP_LN2_HI, xc)
        r = tl.math.fma(kf, -EXP_LN2_LO, r)
        p = tl.math.fma(r, 1.0 / 5040.0, 1.0 / 720.0)
        p = tl.math.fma(p, r, 1.0 / 120.0)
        p = tl.math.fma(p, r, 1.0 / 24.0)
        p = tl.math.fma(p, r, 1.0 / 6.0)
        p = tl.math.fma(p, r, 0.5)
        p = tl.math.fma(p, r, 1.0)
        p = tl.math.fma(p, r, 1.0)
        k = kf.to(tl.int32)
        k1 = k >> 1
        s1 = ((k1 + 127) << 23).to(tl.float32, bitcast=True)
        s2 = ((k - k1 + 127) << 23).to(tl.float32, bitcast=True)
        y = tl.where(x != x, x, (p * s1) * s2)
    return y


@triton.jit
def div(a, b, FAST: tl.constexpr):
    """a / b rounded as IEEE division (``div.rn``) in float32 and float64 alike, for two tensors
    of broadcastable shapes; FAST: the compiled ``/`` (fp32: ``div.full``, 2 ulp)."""
    if b.dtype == tl.float64 or FAST:
        q = a / b
    else:
        a, b = tl.broadcast(a, b)
        q = tl.math.div_rn(a, b)
    return q


@triton.jit
def tanh_and_grad(x, FAST: tl.constexpr):
    """(tanh(x), 1 - tanh(x)^2) of a float32 or float64 tensor, NaN-free for any finite x. tanh
    keeps its relative precision near 0, where the plain 1 - 2 / (e^(2x) + 1) cancels; the
    gradient is 4e / (1 + e)^2 with e = e^(-2|x|), which never cancels, where 1 - tanh^2 loses
    every digit as tanh nears 1 (its error is eps / (1 - tanh^2) relative there)."""
    ax = tl.abs(x)
    e = exp(-2.0 * ax, FAST)  # in (0, 1]: never overflows
    big = div(1.0 - e, 1.0 + e, FAST)
    x2 = x * x
    if x.dtype == tl.float64:
        small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
        r = tl.where(ax < TANH_SERIES_BELOW, small, big)
    else:  # tanh's Taylor coefficients 2^2n (2^2n - 1) B_2n / (2n)!, n = 0..10, Horner in fma
        c = tl.math.fma(x2, 9.691537956929451e-05, -2.3912911424355248e-04)
        c = tl.math.fma(x2, c, 0.000590027440945586)
        c = tl.math.fma(x2, c, -0.0014558343870513183)
        c = tl.math.fma(x2, c, 0.003592128036572481)
        c = tl.math.fma(x2, c, -0.008863235529902197)
        c = tl.math.fma(x2, c, 0.021869488536155203)
        c = tl.math.fma(x2, c, -17.0 / 315.0)
        c = tl.math.fma(x2, c, 2.0 / 15.0)
        c = tl.math.fma(x2, c, -1.0 / 3.0)
        c = tl.math.fma(x2, c, 1.0)
        r = tl.where(ax < TANH_SERIES_BELOW_FP32, ax * c, big)
    return tl.where(x < 0, -r, r), div(4.0 * e, (1.0 + e) * (1.0 + e), FAST)


@triton.jit
def tanh(x, FAST: tl.constexpr):
    """tanh(x) of a float32 or float64 tensor (tanh_and_grad's first half)."""
    t, _ = tanh_and_grad(x, FAST)
    return t


@triton.jit
def sigmoid(x, FAST: tl.constexpr):
    """1 / (1 + e^-x): e^-x overflows to inf for x < -88.72, which gives 0 (where sigmoid is
    below 3e-39), never NaN."""
    return div(tl.full(x.shape, 1.0, x.dtype), 1.0 + exp(-x, FAST), FAST)
