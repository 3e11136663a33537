"""LSTM forward recurrence: the `rows` and `stepwise` kernels. Layouts, phases and the gate math
are lstm_common.py's; this file holds only the matmuls of a tile and the loops around them.

  gates phase       tile of H units: acc_g = h_{t-1} @ W_hh[g*H + units, :]^T over K = R (g = i, f,
                    g, o), then lstm_fwd_finish (c, and h_t or m, out, saved gates / hprev)
  projection phase  (HAS_PROJ) tile of R units: h_t = m_t @ W_hr[units, :]^T over K = H (m from
                    mbuf), then lstm_proj_finish (h_t, out, saved hprev)

rows: grid (batch blocks, D), the whole time loop, block barriers between phases. stepwise: one
launch per phase per step, grid (batch blocks, blocks of H, D) for the gates phase and (batch
blocks, blocks of R, D) for the projection phase, one tile size for both.

The stepwise kernels take the step as an argument that is never specialized
(do_not_specialize): Triton would otherwise compile step 1 (an int equal to 1) and steps
divisible by 16 into binaries of their own, and the plan's fit, which compiles one of them,
would not speak for the others (an fp32 step kernel spilled 4 B at s = 1 only).
"""

import triton
import triton.language as tl

from .gru_common import state_matmul
from .lstm_common import lstm_fwd_finish, lstm_proj_finish


@triton.jit
def _fwd_gates_block(
    gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, R, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_PROJ: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The gates phase of step s for the (i_b, i_n) tile of H units: the four hidden-side
    pre-activations over K = R, then lstm_fwd_finish."""
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    m_b = o_b < B
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_n = o_n < H
    p_h = hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * R        # [BB, 1] rows of h_{t-1}
    p_w = whh_ptr + i_d * 4 * H * R + o_n[None, :] * R                # [1, BH] rows of W_hi
    zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=hbuf_ptr.dtype.element_ty)
    acc_i = state_matmul(p_h, m_b, p_w, 1, m_n, R, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    acc_f = state_matmul(p_h, m_b, p_w + H * R, 1, m_n, R, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    acc_g = state_matmul(p_h, m_b, p_w + 2 * H * R, 1, m_n, R, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    acc_o = state_matmul(p_h, m_b, p_w + 3 * H * R, 1, m_n, R, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    lstm_fwd_finish(
        acc_i, acc_f, acc_g, acc_o, gx_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
        i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
        HAS_PROJ, SAVE, MMA_LOWP, BLOCK_B, BLOCK_H,
    )


@triton.jit
def _fwd_proj_block(
    whr_ptr, lengths_ptr, hbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_out_t, stride_out_b,
    SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The projection phase of step s for the (i_b, i_n) tile of R units: m_t @ W_hr[units]^T
    over K = H, then lstm_proj_finish."""
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    o_r = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    p_m = mbuf_ptr + (i_d * B + o_b[:, None]) * H                     # [BB, 1] rows of m_t
    p_w = whr_ptr + i_d * R * H + o_r[None, :] * H                    # [1, BH] rows of W_hr
    zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=hbuf_ptr.dtype.element_ty)
    acc = state_matmul(p_m, o_b < B, p_w, 1, o_r < R, H, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    lstm_proj_finish(acc, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, i_b, i_n, i_d, s, cur, T, B, R, D,
                     stride_out_t, stride_out_b, SAVE, BLOCK_B, BLOCK_H)


@triton.jit
def lstm_fwd_rows_kernel(
    gx_ptr, whh_ptr, whr_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    T, B, H, R, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_PROJ: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`rows` strategy: grid (batch blocks, D). Each program owns its rows, all of H and all of
    R for the whole sequence; block barriers separate the phases (every unit's h_{t-1} is read
    by every tile, every unit's m by every projection tile). Without a projection whr_ptr and
    mbuf_ptr are never read."""
    i_b = tl.program_id(0)
    i_d = tl.program_id(1)
    for s in range(T):
        cur = s % 2
        for i_n in range(tl.cdiv(H, BLOCK_H)):
            _fwd_gates_block(
                gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
                i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
                HAS_PROJ, SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
            )
        if HAS_PROJ:
            tl.debug_barrier()  # every unit's m_t in mbuf before the projection reads whole rows
            for i_n in range(tl.cdiv(R, BLOCK_H)):
                _fwd_proj_block(
                    whr_ptr, lengths_ptr, hbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr,
                    i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_out_t, stride_out_b,
                    SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
                )
        tl.debug_barrier()  # h_t complete (and mbuf read) before the next step


@triton.jit(do_not_specialize=["s"])
def lstm_fwd_step_kernel(
    gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    s, T, B, H, R, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_PROJ: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise` gates phase of step s: grid (batch blocks, hidden blocks of H, D)."""
    _fwd_gates_block(
        gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, s % 2, T, B, H, R, D,
        stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
        HAS_PROJ, SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )


@triton.jit(do_not_specialize=["s"])
def lstm_fwd_proj_kernel(
    whr_ptr, lengths_ptr, hbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr,
    s, T, B, H, R, D, stride_out_t, stride_out_b,
    SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise` projection phase of step s (after lstm_fwd_step_kernel's launch): grid (batch
    blocks, blocks of R, D)."""
    _fwd_proj_block(
        whr_ptr, lengths_ptr, hbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, s % 2, T, B, H, R, D, stride_out_t, stride_out_b,
        SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )
