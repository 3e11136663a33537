"""LSTM backward recurrence (BPTT, reverse time): the `rows` and `stepwise` kernels. Layouts,
phases and the gate math are lstm_common.py's; this file holds only the matmuls of a tile and
the loops around them.

  gates phase  tile of H units: the gradient reaching m = o tanh(c_t) -- without a projection
               dh_t itself (elementwise, in lstm_bwd_gates_finish), with one dm = dh_t @ W_hr[:, units]
               over K = R, dh_t = dbuf[cur] + dout_t -- then lstm_bwd_gates_finish (dgh, dc)
  carry phase  tile of R units: dh_{t-1} = sum_g dgh_g @ W_hh[g*H:(g+1)*H, units] over K = H,
               then lstm_bwd_carry_finish (dbuf[1 - cur]; with a projection dhs_t)

dW_ih, dW_hh, dW_hr, the bias and dx are GEMMs over dgh / dhs outside the loop (the launcher).
rows: grid (batch blocks, D), the whole reverse loop, block barriers between phases. stepwise:
two launches per step, grid (batch blocks, blocks of H, D) then (batch blocks, blocks of R, D).

The stepwise kernels never specialize on the step or its slot (why: lstm_forward.py).
"""

import triton
import triton.language as tl

from .gru_common import dot_acc, state_matmul, step_rows
from .lstm_common import lstm_bwd_carry_finish, lstm_bwd_gates_finish, lstm_dh_total


@triton.jit
def _bwd_gates_block(
    dout_ptr, whr_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
    HAS_PROJ: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The gates phase of reverse step s for the (i_b, i_n) tile of H units (with a projection
    dm = dh_t @ W_hr[:, units] streamed over K = R first), then lstm_bwd_gates_finish."""
    dm = tl.zeros((BLOCK_B, BLOCK_H), dtype=dbuf_ptr.dtype.element_ty)
    if HAS_PROJ:
        o_b, m_b, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, i_d == 1)
        o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
        m_n = o_n < H
        p_w = whr_ptr + i_d * R * H + o_n[None, :]                    # [1, BH] columns of W_hr
        for k in range(0, R, BLOCK_K):
            o_k = k + tl.arange(0, BLOCK_K)
            m_k = o_k < R
            _, dh = lstm_dh_total(dout_ptr, dbuf_ptr, o_b, m_b, live, t, o_k, m_k, i_d, cur, B, R, D,
                                  stride_dout_t, stride_dout_b)        # [BB, BK]
            b_w = tl.load(p_w + o_k[:, None] * H, mask=m_k[:, None] & m_n[None, :], other=0.0)  # [BK, BH]
            dm = dot_acc(dh, b_w, dm, MMA_LOWP, DOT_PRECISION)
    lstm_bwd_gates_finish(dm, dout_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr, i_b, i_n, i_d, s, cur,
                          T, B, H, D, stride_dout_t, stride_dout_b, HAS_PROJ, MMA_LOWP, BLOCK_B, BLOCK_H)


@triton.jit
def _bwd_carry_block(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, dgh_ptr, dhs_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
    HAS_PROJ: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The carry phase of reverse step s for the (i_b, i_n) tile of R units: sum_g dgh_g @ W_hh_g
    over K = H (stopped rows' dgh not read), then lstm_bwd_carry_finish."""
    o_b, m_b, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, i_d == 1)
    o_r = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    p_dgh = dgh_ptr + ((i_d * T + t[:, None]) * B + o_b[:, None]) * 4 * H    # [BB, 1]
    p_w = whh_ptr + i_d * 4 * H * R + o_r[None, :]                           # [1, BH] columns of W_hh
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=dbuf_ptr.dtype.element_ty)
    for g in tl.static_range(4):
        acc = state_matmul(p_dgh + g * H, live, p_w + g * H * R, R, o_r < R, H, acc, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    lstm_bwd_carry_finish(acc, dout_ptr, lengths_ptr, dbuf_ptr, dhs_ptr, i_b, i_n, i_d, s, cur, T, B, R, D,
                          stride_dout_t, stride_dout_b, HAS_PROJ, BLOCK_B, BLOCK_H)


@triton.jit
def lstm_bwd_rows_kernel(
    dout_ptr, whh_ptr, whr_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr, dhs_ptr,
    T, B, H, R, D, stride_dout_t, stride_dout_b,
    HAS_PROJ: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`rows` strategy: grid (batch blocks, D); the whole reverse-time loop in one launch.
    Without a projection whr_ptr and dhs_ptr are never read or written."""
    i_b = tl.program_id(0)
    i_d = tl.program_id(1)
    for step in range(T):
        s = T - 1 - step
        cur = step % 2
        for i_n in range(tl.cdiv(H, BLOCK_H)):
            _bwd_gates_block(
                dout_ptr, whr_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr,
                i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
                HAS_PROJ, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
            )
        tl.debug_barrier()  # dgh_t of every unit written before the carry reads whole rows
        for i_n in range(tl.cdiv(R, BLOCK_H)):
            _bwd_carry_block(
                dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, dgh_ptr, dhs_ptr,
                i_b, i_n, i_d, s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
                HAS_PROJ, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
            )
        tl.debug_barrier()  # dh_{t-1} complete before the next step reads it


@triton.jit(do_not_specialize=["s", "cur"])
def lstm_bwd_gates_kernel(
    dout_ptr, whr_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr,
    s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
    HAS_PROJ: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise` gates phase of reverse step s: grid (batch blocks, blocks of H, D)."""
    _bwd_gates_block(
        dout_ptr, whr_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
        HAS_PROJ, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )


@triton.jit(do_not_specialize=["s", "cur"])
def lstm_bwd_carry_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, dgh_ptr, dhs_ptr,
    s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
    HAS_PROJ: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise` carry phase of reverse step s (after the gates launch): grid (batch blocks,
    blocks of R, D)."""
    _bwd_carry_block(
        dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, dgh_ptr, dhs_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, cur, T, B, H, R, D, stride_dout_t, stride_dout_b,
        HAS_PROJ, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )
