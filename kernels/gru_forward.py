"""GRU forward recurrence.

Layouts (D = directions, gate order r, z, n as in nn.GRU):
  gx      (T, B, D*3H) or (B, T, D*3H) via strides: x @ W_ih^T + b_ih + [b_hr, b_hz, 0], last dim contiguous
          (RESET_AFTER=False: + all of b_hh, which sits outside the reset gate there)
  whh     (D, 3H, H)   contiguous
  bhn     (D, H)       b_hn, kept apart because it sits inside r * (W_hn h + b_hn)
  hbuf    (2, D, B, H) ping-pong carried state in the accumulator dtype (fp32, or fp64 for fp64);
          RESET_AFTER=False: (3, D, B, H), slot 2 holding r * h_{t-1} of the current step
  out     (T, B, D*H) or (B, T, D*H) via strides
  hprev   (D, T, B, H) state entering each step (saved for backward; zero past a row's length)
  gates   (D, T, B, 4H) r, z, n and W_hn h + b_hn per step (saved for backward);
          RESET_AFTER=False: r, z, n and r * h_{t-1}
Past its length a row's state is carried unchanged and its output is zero.

RESET_AFTER=False (n = tanh(x_n + W_hn (r * h_{t-1}))) needs every unit's r before the
candidate's matmul, so each step is two phases with a barrier between them: the reset phase
(W_hr h -> r, r * h) and the update phase (W_hz h and W_hn (r * h) -> z, n, h_t).
"""

import triton
import triton.language as tl

from .activations import sigmoid, tanh
from .gru_common import dot_acc, state_matmul, step_tile, store_h_outputs, store_step


@triton.jit
def _fwd_step_block(
    gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One step for a (batch block, hidden block) tile: h_{t-1} @ W_hh[r,z,n rows]^T streamed
    over K blocks, then the gates (fwd_finish). RESET_AFTER=False: the update phase, the z rows
    times h_{t-1} and the n rows times r * h_{t-1} (slot 2 of hbuf, written by the reset phase)."""
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    m_b = o_b < B
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_n = o_n < H
    p_hcur = hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * H        # [BB, 1]
    p_w = whh_ptr + i_d * 3 * H * H + o_n[None, :] * H                  # [1, BH] rows of W_hh
    acc_dtype = hbuf_ptr.dtype.element_ty
    zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=acc_dtype)

    if RESET_AFTER:
        acc_r = zero
        acc_z = zero
        acc_n = zero
        for k in range(0, H, BLOCK_K):
            o_k = k + tl.arange(0, BLOCK_K)
            m_k = o_k < H
            b_h = tl.load(p_hcur + o_k[None, :], mask=m_b[:, None] & m_k[None, :], other=0.0)  # [BB, BK]
            m_w = m_k[:, None] & m_n[None, :]
            b_wr = tl.load(p_w + o_k[:, None], mask=m_w, other=0.0)            # [BK, BH] = W_hr^T tile
            b_wz = tl.load(p_w + H * H + o_k[:, None], mask=m_w, other=0.0)
            b_wn = tl.load(p_w + 2 * H * H + o_k[:, None], mask=m_w, other=0.0)
            acc_r = dot_acc(b_h, b_wr, acc_r, MMA_LOWP, DOT_PRECISION)
            acc_z = dot_acc(b_h, b_wz, acc_z, MMA_LOWP, DOT_PRECISION)
            acc_n = dot_acc(b_h, b_wn, acc_n, MMA_LOWP, DOT_PRECISION)
    else:
        p_rh = hbuf_ptr + ((2 * D + i_d) * B + o_b[:, None]) * H
        acc_r = zero
        acc_z = state_matmul(p_hcur, m_b, p_w + H * H, 1, m_n, H, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
        acc_n = state_matmul(p_rh, m_b, p_w + 2 * H * H, 1, m_n, H, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    fwd_finish(
        acc_r, acc_z, acc_n, gx_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
        i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
        HAS_BHN, SAVE, RESET_AFTER, MMA_LOWP, BLOCK_B, BLOCK_H,
    )


@triton.jit
def _fwd_reset_block(
    gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, gates_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b,
    SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """RESET_AFTER=False, the reset phase for a tile: W_hr h_{t-1} over K blocks, then r and
    r * h_{t-1} (fwd_reset_finish)."""
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    p_hcur = hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * H
    p_w = whh_ptr + i_d * 3 * H * H + o_n[None, :] * H
    zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=hbuf_ptr.dtype.element_ty)
    acc_r = state_matmul(p_hcur, o_b < B, p_w, 1, o_n < H, H, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    fwd_reset_finish(acc_r, gx_ptr, lengths_ptr, hbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
                     stride_gx_t, stride_gx_b, SAVE, MMA_LOWP, BLOCK_B, BLOCK_H)


@triton.jit
def fwd_gx(gx_ptr, o_b, t, o_n, m_live, i_d, H, stride_gx_t, stride_gx_b):
    """The input projections x_r, x_z, x_n of a tile (rows o_b at time indices t, units o_n:
    step_tile's), in gx's dtype, zero where a row has stopped (at a step past the end every row
    has, so a prefetch one step too far reads nothing)."""
    p_gx = gx_ptr + t[:, None] * stride_gx_t + o_b[:, None] * stride_gx_b + i_d * 3 * H + o_n[None, :]
    x_z = tl.load(p_gx + H, mask=m_live, other=0.0)
    x_n = tl.load(p_gx + 2 * H, mask=m_live, other=0.0)
    return tl.load(p_gx, mask=m_live, other=0.0), x_z, x_n


@triton.jit
def fwd_reset_finish(
    acc_r, gx_ptr, lengths_ptr, hbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_gx_t, stride_gx_b, SAVE: tl.constexpr, FAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Given the tile's W_hr h_{t-1}: r, and r * h_{t-1} into slot 2 of hbuf (every row of the
    tile: a finished row's value is never used) and, SAVE, r and r * h_{t-1} into gates (zero at
    padded positions). Shared by every strategy. FAST: the activations' compiled approximations
    (callers pass MMA_LOWP: bf16/fp16, whose contract affords them)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    p_gx = gx_ptr + t[:, None] * stride_gx_t + o_b[:, None] * stride_gx_b + i_d * 3 * H + o_n[None, :]
    r, rh = fwd_reset_state(acc_r, tl.load(p_gx, mask=m_live, other=0.0), hbuf_ptr, o_b, o_n, m_tile, i_d, cur,
                            B, H, D, FAST)
    if SAVE:
        fwd_reset_save(r, rh, gates_ptr, o_b, live, t, o_n, m_tile, m_live, i_d, s, T, B, H)


@triton.jit
def fwd_reset_state(acc_r, x_r, hbuf_ptr, o_b, o_n, m_tile, i_d, cur, B, H, D, FAST: tl.constexpr):
    """The state part of fwd_reset_finish, given the tile's x_r and step_tile's o_b, o_n, m_tile:
    r and r * h_{t-1} (fwd_reset_gate), the latter into hbuf slot 2. Returns (r, r * h)."""
    h_old = tl.load(hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * H + o_n[None, :], mask=m_tile, other=0.0)
    r, rh = fwd_reset_gate(acc_r, x_r, h_old, FAST)
    tl.store(hbuf_ptr + ((2 * D + i_d) * B + o_b[:, None]) * H + o_n[None, :], rh, mask=m_tile)
    return r, rh


@triton.jit
def fwd_reset_gate(acc_r, x_r, h_old, FAST: tl.constexpr):
    """r = sigmoid(x_r + W_hr h_{t-1}) and r * h_{t-1}, in h_old's (the accumulator's) dtype."""
    r = sigmoid(x_r.to(h_old.dtype) + acc_r, FAST)
    return r, r * h_old


@triton.jit
def fwd_reset_save(r, rh, gates_ptr, o_b, live, t, o_n, m_tile, m_live, i_d, s, T, B, H):
    """r and r * h_{t-1} of a tile (step_tile's) into the gates' slots 0 and 3, zero at padded
    positions."""
    p_g = gates_ptr + (i_d * T * B + o_b[:, None]) * 4 * H + o_n[None, :]
    store_step(p_g, t, s, B * 4 * H, 3 * H, r, rh, r, r, m_live, m_tile & ~live[:, None], 2)


@triton.jit
def fwd_finish(
    acc_r, acc_z, acc_n, gx_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr, FAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Given the tile's hidden-side pre-activations W_h{r,z,n} h_{t-1}: the gate math, h_t into
    the carried state, the output, and (SAVE) what backward needs. Shared by every strategy.
    FAST as in fwd_reset_finish.
    RESET_AFTER=False: acc_r is unused (r came from the reset phase) and acc_n is W_hn (r * h).
    Three parts, which the persistent kernel also calls apart: fwd_gx (gx's loads), fwd_state
    (the gates and h_t into hbuf: what the next step waits for) and fwd_outputs (the output and
    what backward saves: what nothing in the recurrence waits for)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    x_r, x_z, x_n = fwd_gx(gx_ptr, o_b, t, o_n, m_live, i_d, H, stride_gx_t, stride_gx_b)
    r, z, n, hn, h_old, h_new = fwd_state(acc_r, acc_z, acc_n, x_r, x_z, x_n, bhn_ptr, hbuf_ptr,
                                          o_b, o_n, m_tile, m_live, i_d, cur, B, H, D, HAS_BHN, RESET_AFTER, FAST)
    fwd_outputs(r, z, n, hn, h_old, h_new, out_ptr, hprev_ptr, gates_ptr, o_b, live, t, o_n, m_tile, m_live,
                i_d, s, T, B, H, stride_out_t, stride_out_b, SAVE, RESET_AFTER)


@triton.jit
def fwd_state(
    acc_r, acc_z, acc_n, x_r, x_z, x_n, bhn_ptr, hbuf_ptr, o_b, o_n, m_tile, m_live, i_d, cur, B, H, D,
    HAS_BHN: tl.constexpr, RESET_AFTER: tl.constexpr, FAST: tl.constexpr,
):
    """The state part of fwd_finish, given the tile's gx (fwd_gx) and step_tile's offsets and
    masks: the gates, and h_t into hbuf slot 1 - cur (rows that have stopped carry h_{t-1}).
    Returns r, z, n, acc_n + b_hn (RESET_AFTER=False: W_hn (r * h)), h_{t-1} and h_t, what
    fwd_outputs stores. RESET_AFTER=False: x_r and acc_r are unused."""
    acc_dtype = hbuf_ptr.dtype.element_ty
    if HAS_BHN:
        acc_n += tl.load(bhn_ptr + i_d * H + o_n, mask=o_n < H, other=0.0).to(acc_dtype)[None, :]
    z = sigmoid(x_z.to(acc_dtype) + acc_z, FAST)
    if RESET_AFTER:
        r = sigmoid(x_r.to(acc_dtype) + acc_r, FAST)
        n = tanh(x_n.to(acc_dtype) + r * acc_n, FAST)
    else:
        r = acc_r  # unused: gates' r was saved by the reset phase
        n = tanh(x_n.to(acc_dtype) + acc_n, FAST)
    p_hcur = hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * H + o_n[None, :]
    p_hnext = hbuf_ptr + (((1 - cur) * D + i_d) * B + o_b[:, None]) * H + o_n[None, :]
    h_old = tl.load(p_hcur, mask=m_tile, other=0.0)
    h_new = (1.0 - z) * n + z * h_old
    tl.store(p_hnext, tl.where(m_live, h_new, h_old), mask=m_tile)
    return r, z, n, acc_n, h_old, h_new


@triton.jit
def fwd_outputs(
    r, z, n, hn, h_old, h_new, out_ptr, hprev_ptr, gates_ptr, o_b, live, t, o_n, m_tile, m_live,
    i_d, s, T, B, H, stride_out_t, stride_out_b, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr,
):
    """The outputs part of fwd_finish, given fwd_state's results and step_tile's offsets and
    masks: h_t into out, and (SAVE) h_{t-1} into hprev and the gates into gates. Nothing in the
    recurrence reads them."""
    m_pad = m_tile & ~live[:, None]
    store_h_outputs(h_new, h_old, out_ptr, hprev_ptr, o_b, t, o_n, m_live, m_pad, i_d, s, T, B, H,
                    stride_out_t, stride_out_b, SAVE)
    if SAVE:
        p_g = gates_ptr + (i_d * T * B + o_b[:, None]) * 4 * H + o_n[None, :]
        if RESET_AFTER:
            store_step(p_g, t, s, B * 4 * H, H, r, z, n, hn, m_live, m_pad, 4)
        else:  # slots 0 and 3 (r, r * h) were written by the reset phase
            store_step(p_g + H, t, s, B * 4 * H, H, z, n, z, z, m_live, m_pad, 2)


@triton.jit
def gru_fwd_rows_kernel(
    gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    T, B, H, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`rows` strategy: grid (batch blocks, D). Each program owns its rows and all of H for the
    whole sequence, so steps need only a block-level barrier, no cross-program sync."""
    i_b = tl.program_id(0)
    i_d = tl.program_id(1)
    for s in range(T):
        if not RESET_AFTER:
            for i_n in range(tl.cdiv(H, BLOCK_H)):
                _fwd_reset_block(
                    gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, gates_ptr, i_b, i_n, i_d, s, s % 2, T, B, H, D,
                    stride_gx_t, stride_gx_b, SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
                )
            tl.debug_barrier()  # r * h_{t-1} of every unit written before the update phase reads it
        for i_n in range(tl.cdiv(H, BLOCK_H)):
            _fwd_step_block(
                gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
                i_b, i_n, i_d, s, s % 2, T, B, H, D,
                stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
                HAS_BHN, SAVE, RESET_AFTER, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
            )
        # h_t was written to global scratch by every thread of the program; make it visible
        # before the next step reads it.
        tl.debug_barrier()


@triton.jit
def gru_fwd_step_kernel(
    gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    s, T, B, H, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise` strategy: one launch per step s, grid (batch blocks, hidden blocks, D)
    (RESET_AFTER=False: the update phase, after gru_fwd_reset_kernel's launch for the step)."""
    _fwd_step_block(
        gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, s % 2, T, B, H, D,
        stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
        HAS_BHN, SAVE, RESET_AFTER, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )


@triton.jit
def gru_fwd_reset_kernel(
    gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, gates_ptr,
    s, T, B, H, D, stride_gx_t, stride_gx_b,
    SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """`stepwise`, RESET_AFTER=False: the reset phase of step s, grid (batch blocks, hidden blocks, D)."""
    _fwd_reset_block(
        gx_ptr, whh_ptr, lengths_ptr, hbuf_ptr, gates_ptr,
        tl.program_id(0), tl.program_id(1), tl.program_id(2), s, s % 2, T, B, H, D, stride_gx_t, stride_gx_b,
        SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H, BLOCK_K,
    )
