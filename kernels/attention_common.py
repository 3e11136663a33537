"""Triton helpers shared by the attention kernels: tanh, a small matmul, key masks, an
accumulate-in-global-memory step, and the launch-configuration helpers (shape buckets, the
target's shared-memory limit).

Conventions (as in the other kernel files): ``o_`` offsets, ``m_`` masks, ``b_`` register
blocks, ``s_`` strides; shapes in comments as ``# [BQ, BT]``.

Numerics: every loaded value is converted to the compute dtype ``CDT`` (float32, or float64
for gradcheck) before arithmetic, except the operands of ``tl.dot`` on a GPU, which stay in
``DOT_DT`` (the input dtype: bf16/fp16 tensor-core dots with fp32 accumulation). Under the
interpreter ``DOT_DT`` is ``CDT`` as well, because bf16 arithmetic is wrong there.
"""

import torch
import triton
import triton.language as tl

# Below this |x|, tanh(x) is its Taylor series (accurate to fp64 precision); above it the
# exp form, whose 1 - e^(-2|x|) would cancel for tiny |x|.
TANH_SERIES_BELOW = tl.constexpr(0.0625)


@triton.jit
def tanh(x):
    """tanh from tl.exp (no tl.math.tanh in the interpreter); NaN-free for any finite |x|."""
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)  # in (0, 1]: never overflows
    big = (1.0 - e) / (1.0 + e)
    x2 = x * x  # Taylor series to x^9: relative error < 1e-14 below the threshold
    small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
    r = tl.where(ax < TANH_SERIES_BELOW, small, big)
    return tl.where(x < 0, -r, r)


@triton.jit
def mm(a, b, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr):
    """a [M, K] @ b [K, N] -> [M, N] in CDT. tl.dot (tensor cores) when every tile side is
    >= 16, else a broadcast multiply-sum (for the small query blocks of attention pooling)."""
    if USE_DOT:
        return tl.dot(a.to(DOT_DT), b.to(DOT_DT), input_precision=PRECISION, out_dtype=CDT)
    else:
        return tl.sum(a.to(CDT)[:, :, None] * b.to(CDT)[None, :, :], axis=1)


@triton.jit
def key_valid(o_t, T, n_valid, mask, mask_row, s_mt, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr):
    """[BT] bool: key t takes part (t < T, t < lengths[n], key_padding_mask[n, t] false).
    ``mask`` may be None (HAS_MASK false), so the row offset is added here, under the flag."""
    m_t = o_t < T
    if HAS_LENGTHS:
        m_t = m_t & (o_t < n_valid)
    if HAS_MASK:
        ignore = tl.load(mask + mask_row + o_t * s_mt, mask=o_t < T, other=1)
        m_t = m_t & (ignore == 0)
    return m_t


@triton.jit
def dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, D, T, s_dq, s_dd, s_vt, s_vd,
           HAS_DPROB: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr,
           PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """From masked scores [BQ, BT]: p = exp(s - lse) and dp = dO . v_j + dprob_ij (0 where masked)."""
    p = tl.exp(s - b_lse[:, None])
    dp = tl.zeros([BLOCK_Q, BLOCK_T], CDT)
    for d0 in range(0, D, BLOCK_D):
        o_d = d0 + tl.arange(0, BLOCK_D)
        m_d = o_d < D
        b_do = tl.load(do + o_q[:, None] * s_dq + o_d[None, :] * s_dd, mask=m_q[:, None] & m_d[None, :], other=0.0)
        b_v = tl.load(val + o_t[:, None] * s_vt + o_d[None, :] * s_vd, mask=m_t[:, None] & m_d[None, :], other=0.0)
        dp += mm(b_do, tl.trans(b_v), USE_DOT, CDT, DOT_DT, PRECISION)
    if HAS_DPROB:
        dp += tl.load(dprob + dprob_row + o_q[:, None] * T + o_t[None, :], mask=m_q[:, None] & m_t[None, :], other=0.0).to(CDT)
    return p, dp


@triton.jit
def dscores(s, b_lse, b_delta, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, D, T, s_dq, s_dd, s_vt, s_vd,
            HAS_DPROB: tl.constexpr, USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr,
            PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """From masked scores [BQ, BT]: p and ds = p (dp - delta_i)."""
    p, dp = dprobs(s, b_lse, o_q, o_t, m_q, m_t, do, val, dprob, dprob_row, D, T, s_dq, s_dd, s_vt, s_vd,
                   HAS_DPROB, USE_DOT, CDT, DOT_DT, PRECISION, BLOCK_Q, BLOCK_T, BLOCK_D)
    return p, p * (dp - b_delta[:, None])


@triton.jit
def accumulate(ptrs, val, mask):
    """``*ptrs += val`` in global memory, for rows this program owns alone (deterministic,
    no atomics). The barriers order the read-modify-write across the threads of the program:
    a replicated layout may load in one warp what another warp stores."""
    old = tl.load(ptrs, mask=mask, other=0.0)
    tl.debug_barrier()
    tl.store(ptrs, old + val, mask=mask)
    tl.debug_barrier()


@triton.jit
def accumulate_product(out, o_r, m_r, a, src, o_s, m_s, s_row, s_col, N,
                       USE_DOT: tl.constexpr, CDT: tl.constexpr, DOT_DT: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_N: tl.constexpr):
    """``out[o_r, :N] += a @ src[o_s, :N]`` (``out`` row-major with N columns, rows this program
    owns), BLOCK_N columns at a time: the gradient updates of the backward kernels."""
    for n0 in range(0, N, BLOCK_N):
        o_n = n0 + tl.arange(0, BLOCK_N)
        m_n = o_n < N
        b = tl.load(src + o_s[:, None] * s_row + o_n[None, :] * s_col, mask=m_s[:, None] & m_n[None, :], other=0.0)
        accumulate(out + o_r[:, None] * N + o_n[None, :], mm(a, b, USE_DOT, CDT, DOT_DT, PRECISION),
                   m_r[:, None] & m_n[None, :])


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def bucket(*sizes) -> tuple:
    """The autotune key of a shape: each size rounded up to a power of two, so a new sequence
    length re-tunes only when it crosses one (the kernels take these as ``KEY_*`` arguments)."""
    return tuple(next_pow2(s) for s in sizes)


def clamp(n: int, lo: int, hi: int) -> int:
    return min(max(n, lo), hi)


# Shared memory one program may opt in to, in bytes, by CUDA compute capability: sm_80/87
# 163 KB, sm_86/89 99 KB, sm_90 227 KB (CUDA C Programming Guide, compute capabilities table).
SHARED_LIMIT = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448}
SHARED_LIMIT_OTHER = 65536  # any other target (sm_75, an AMD LDS): the smallest, to be safe


def target_arch():
    """The arch of the target being compiled for (an int such as 90 on CUDA); touches the driver."""
    return triton.runtime.driver.active.get_current_target().arch


def shared_limit(arch=None) -> int:
    return SHARED_LIMIT.get(target_arch() if arch is None else arch, SHARED_LIMIT_OTHER)


def element_bytes(dtype: torch.dtype, interpret: bool = False) -> tuple:
    """(bytes of a tl.dot operand, bytes of a compute-dtype value) for inputs of ``dtype``."""
    cdt = 8 if dtype == torch.float64 else 4
    return (cdt if interpret or dtype in (torch.float32, torch.float64) else 2), cdt


def compute_dtype(dtype: torch.dtype):
    """Triton dtype of the statistics and accumulators: float64 only for float64 inputs."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_dtype(dtype: torch.dtype, interpret: bool):
    """Triton dtype of tl.dot operands: the input dtype on a GPU, the compute dtype when
    interpreting (bf16 arithmetic is wrong in the interpreter)."""
    if interpret or dtype in (torch.float32, torch.float64):
        return compute_dtype(dtype)
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]

