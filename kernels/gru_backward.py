"""GRU backward recurrence (BPTT), reverse time. Layouts as in gru_forward.py, plus
  dout   (T, B, D*H) or (B, T, D*H) via strides      gradient of the output sequence
  dbuf   (2, D, B, H) ping-pong carried dh (starts as dh_n, ends as dh_0), accumulator dtype
  dgx    like gx: gradient of the input-side pre-activations [da_r, da_z, da_n]
  dgh    (D, T, B, 3H): gradient of the hidden-side pre-activations [da_r, da_z, da_n * r]

With dh the total gradient reaching h_t (output + carried):
  dn = dh (1 - z)          dz = dh (h_{t-1} - n)
  da_n = dn (1 - n^2)      da_r = da_n hn r (1 - r)     da_z = dz z (1 - z)
  dh_{t-1} = dh z + [da_r, da_z, da_n r] @ W_hh
dW_hh, dW_ih, the biases and dx are GEMMs over dgh / dgx outside the loop. Each step is two
phases: gates (writes dgh), then the matmul over all of dgh's hidden units, so a barrier (or a
second launch, stepwise) sits between them.

RESET_AFTER=False (n = tanh(a_n), a_n = x_n + W_hn (r h_{t-1})), with dgh = [da_r, da_z, da_n]:
  da_n = dh (1 - z) (1 - n^2)      da_z = dh (h_{t-1} - n) z (1 - z)               (gates)
  d(rh) = da_n @ W_hn              da_r = d(rh) h_{t-1} r (1 - r)                  (reset)
  dh_{t-1} = dh z + d(rh) r + [da_r, da_z] @ W_h{r,z}                             (carry)
Three phases, each needing the previous one's dgh of every hidden unit; dW_hn is da_n^T (r h),
from the r * h_{t-1} the forward saved in the gates' fourth slot.
"""

import triton
import triton.language as tl

from .gru_common import state_matmul, step_rows, step_tile


@triton.jit
def _bwd_gates_block(
    dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    RESET_AFTER: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Phase 1 for a tile: pre-activation gradients of step s (zeros at padded positions);
    RESET_AFTER=False: those of z and n (r's come from the reset phase)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    m_pad = m_tile & ~live[:, None]
    row = (i_d * T + t[:, None]) * B + o_b[:, None]
    p_g = gates_ptr + row * 4 * H + o_n[None, :]
    z = tl.load(p_g + H, mask=m_live, other=0.0)
    n = tl.load(p_g + 2 * H, mask=m_live, other=0.0)
    h_old = tl.load(hprev_ptr + row * H + o_n[None, :], mask=m_live, other=0.0)
    _, dh, _ = _dh_reaching(dout_ptr, dbuf_ptr, o_b, t, o_n, i_d, cur, B, H, D, stride_dout_t, stride_dout_b,
                            m_tile, m_live)

    da_n = dh * (1.0 - z) * (1.0 - n * n)
    da_z = dh * (h_old - n) * z * (1.0 - z)
    if RESET_AFTER:
        r = tl.load(p_g, mask=m_live, other=0.0)
        da_r = da_n * tl.load(p_g + 3 * H, mask=m_live, other=0.0) * r * (1.0 - r)
        dgh_n = da_n * r
    else:
        da_r = da_n  # not stored: the reset phase writes da_r
        dgh_n = da_n  # a_n's hidden term is W_hn (r h): its gradient is da_n itself

    zero = tl.zeros_like(da_n)
    p_dgx = dgx_ptr + o_b[:, None] * stride_dgx_b + i_d * 3 * H + o_n[None, :]
    p_dgh = dgh_ptr + row * 3 * H + o_n[None, :]
    p_dgh_pad = dgh_ptr + ((i_d * T + s) * B + o_b[:, None]) * 3 * H + o_n[None, :]
    t_pad = tl.zeros_like(t) + s  # int64: s * stride would be an int32 product
    for g in tl.static_range(3):
        if g == 0:
            gx_val = da_r
            gh_val = da_r
        elif g == 1:
            gx_val = da_z
            gh_val = da_z
        else:
            gx_val = da_n
            gh_val = dgh_n
        if RESET_AFTER or g > 0:
            tl.store(p_dgx + t[:, None] * stride_dgx_t + g * H, gx_val.to(dgx_ptr.dtype.element_ty), mask=m_live)
            tl.store(p_dgh + g * H, gh_val, mask=m_live)
        tl.store(p_dgx + t_pad[:, None] * stride_dgx_t + g * H, zero.to(dgx_ptr.dtype.element_ty), mask=m_pad)
        tl.store(p_dgh_pad + g * H, zero, mask=m_pad)


@triton.jit
def _bwd_carry_block(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, gates_ptr, dgh_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b,
    RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Phase 2 for a tile: dh_{t-1} = dh z + dgh_t @ W_hh (rows past their length carry dh);
    RESET_AFTER=False, the last phase: += [da_r, da_z] @ W_h{r,z}."""
    o_b, m_b, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, i_d == 1)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    p_dgh = dgh_ptr + ((i_d * T + t[:, None]) * B + o_b[:, None]) * 3 * H    # [BB, 1]
    p_w = whh_ptr + i_d * 3 * H * H + o_n[None, :]                           # [1, BH] columns of W_hh
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=dbuf_ptr.dtype.element_ty)
    for g in tl.static_range(3 if RESET_AFTER else 2):
        acc = state_matmul(p_dgh + g * H, live, p_w + g * H * H, H, o_n < H, H, acc, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    bwd_carry_finish(acc, dout_ptr, lengths_ptr, dbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
                     stride_dout_t, stride_dout_b, RESET_AFTER, BLOCK_B, BLOCK_H)


@triton.jit
def _bwd_reset_block(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """RESET_AFTER=False, the reset phase for a tile: d(rh) = da_n @ W_hn, then bwd_reset_finish."""
    o_b, m_b, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, i_d == 1)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    p_dgh = dgh_ptr + ((i_d * T + t[:, None]) * B + o_b[:, None]) * 3 * H + 2 * H
    p_w = whh_ptr + i_d * 3 * H * H + 2 * H * H + o_n[None, :]
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=dbuf_ptr.dtype.element_ty)
    acc = state_matmul(p_dgh, live, p_w, H, o_n < H, H, acc, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    bwd_reset_finish(acc, dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
                     i_b, i_n, i_d, s, cur, T, B, H, D, stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
                     BLOCK_B, BLOCK_H)


@triton.jit
def bwd_reset_finish(
    drh, dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D, stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Given the tile's d(rh) = da_n @ W_hn: da_r into dgx / dgh, and the carried gradient's
    first terms dh z + d(rh) r into the next dbuf slot (the carry phase adds the matmul's)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    row = (i_d * T + t[:, None]) * B + o_b[:, None]
    p_g = gates_ptr + row * 4 * H + o_n[None, :]
    r = tl.load(p_g, mask=m_live, other=0.0)
    z = tl.load(p_g + H, mask=m_live, other=0.0)
    h_old = tl.load(hprev_ptr + row * H + o_n[None, :], mask=m_live, other=0.0)
    da_r = drh * h_old * r * (1.0 - r)
    p_dgx = dgx_ptr + t[:, None] * stride_dgx_t + o_b[:, None] * stride_dgx_b + i_d * 3 * H + o_n[None, :]
    tl.store(p_dgx, da_r.to(dgx_ptr.dtype.element_ty), mask=m_live)
    tl.store(dgh_ptr + row * 3 * H + o_n[None, :], da_r, mask=m_live)
    dh_carry, dh, p_next = _dh_reaching(dout_ptr, dbuf_ptr, o_b, t, o_n, i_d, cur, B, H, D,
                                        stride_dout_t, stride_dout_b, m_tile, m_live)
    tl.store(p_next, tl.where(m_live, dh * z + drh * r, dh_carry), mask=m_tile)


@triton.jit
def bwd_carry_finish(
    acc, dout_ptr, lengths_ptr, dbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b, RESET_AFTER: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Given acc = dgh_t @ W_hh for the tile: dh_{t-1} = dh z + acc into the carried gradient
    (RESET_AFTER=False: acc added to the terms the reset phase put there)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    if RESET_AFTER:
        dh_carry, dh, p_next = _dh_reaching(dout_ptr, dbuf_ptr, o_b, t, o_n, i_d, cur, B, H, D,
                                            stride_dout_t, stride_dout_b, m_tile, m_live)
        row = (i_d * T + t[:, None]) * B + o_b[:, None]
        z = tl.load(gates_ptr + row * 4 * H + H + o_n[None, :], mask=m_live, other=0.0)
        tl.store(p_next, tl.where(m_live, dh * z + acc, dh_carry), mask=m_tile)
    else:
        p_next = dbuf_ptr + (((1 - cur) * D + i_d) * B + o_b[:, None]) * H + o_n[None, :]
        tl.store(p_next, tl.load(p_next, mask=m_live, other=0.0) + acc, mask=m_live)


@triton.jit
def _dh_reaching(dout_ptr, dbuf_ptr, o_b, t, o_n, i_d, cur, B, H, D, stride_dout_t, stride_dout_b, m_tile, m_live):
    """The gradient carried into the tile (dbuf slot cur), the total reaching h_t (carried plus
    the output's, on running rows), and the pointers of the next slot."""
    p_slot = dbuf_ptr + (i_d * B + o_b[:, None]) * H + o_n[None, :]
    dh_carry = tl.load(p_slot + cur * D * B * H, mask=m_tile, other=0.0)
    p_dout = dout_ptr + t[:, None] * stride_dout_t + o_b[:, None] * stride_dout_b + i_d * H + o_n[None, :]
    dh = dh_carry + tl.load(p_dout, mask=m_live, other=0.0).to(dbuf_ptr.dtype.element_ty)
    return dh_carry, dh, p_slot + (1 - cur) * D * B * H


@triton.jit
def gru_bwd_rows_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
    T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`rows` strategy: grid (batch blocks, D); the whole reverse-time loop in one launch."""
    i_b = tl.program_id(0)
    i_d = tl.program_id(1)
    n_blocks = tl.cdiv(H, BLOCK_H)
    for step in range(T):
        s = T - 1 - step
        for i_n in range(n_blocks):
            _bwd_gates_block(
                dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
                i_b, i_n, i_d, s, step % 2, T, B, H, D,
                stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b, RESET_AFTER, BLOCK_B, BLOCK_H,
            )
        tl.debug_barrier()  # dgh of step s complete before the matmul reads all its columns
        if not RESET_AFTER:
            for i_n in range(n_blocks):
                _bwd_reset_block(
                    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
                    i_b, i_n, i_d, s, step % 2, T, B, H, D,
                    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b, MMA_LOWP, DOT_PRECISION,
                    BLOCK_B, BLOCK_H, BLOCK_K,
                )
            tl.debug_barrier()  # da_r of every unit written before the carry phase reads it
        for i_n in range(n_blocks):
            _bwd_carry_block(
                dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, gates_ptr, dgh_ptr,
                i_b, i_n, i_d, s, step % 2, T, B, H, D,
                stride_dout_t, stride_dout_b, RESET_AFTER, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
            )
        tl.debug_barrier()  # dh_{t-1} complete before the next step reads it


@triton.jit
def gru_bwd_gates_kernel(
    dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
    s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    RESET_AFTER: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """`stepwise` phase 1: grid (batch blocks, hidden blocks, D), one launch per step."""
    _bwd_gates_block(
        dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, cur, T, B, H, D,
        stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b, RESET_AFTER, BLOCK_B, BLOCK_H,
    )


@triton.jit
def gru_bwd_reset_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
    s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise`, RESET_AFTER=False: the reset phase, between the gates and carry launches."""
    _bwd_reset_block(
        dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, cur, T, B, H, D,
        stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b, MMA_LOWP, DOT_PRECISION,
        BLOCK_B, BLOCK_H, BLOCK_K,
    )


@triton.jit
def gru_bwd_carry_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, gates_ptr, dgh_ptr,
    s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b,
    RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise` phase 2 (RESET_AFTER=False: 3): grid (batch blocks, hidden blocks, D), one launch per step."""
    _bwd_carry_block(
        dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, gates_ptr, dgh_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, cur, T, B, H, D,
        stride_dout_t, stride_dout_b, RESET_AFTER, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )
