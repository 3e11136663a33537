"""The LSTM's gate math and the tile-level finishers every LSTM kernel calls (the layer's rows,
stepwise and persistent kernels, the fused cell), so that all strategies compute the same thing.
The math is nn.LSTM's (fastgru/reference.py lstm_cell): gate order i, f, g, o;
  c' = f c + i g,   m = o tanh(c'),   h' = m (no projection) or W_hr m (proj_size > 0).

Sizes: H hidden units (the gates and c), R the size of h (= P with a projection, else H), D
directions. Layouts (the launcher's, fastgru/launchers/lstm_layer.py):
  gx     (T, B, D*4H) or (B, T, D*4H) via strides: x @ W_ih^T + b_ih + b_hh, last dim contiguous
  whh    (D, 4H, R)   contiguous
  whr    (D, R, H)    contiguous (projection only)
  hbuf   (2, D, B, R) ping-pong h in the accumulator dtype (fp32; fp64 for fp64)
  cbuf   (D, B, H)    c in the accumulator dtype; each element read and written only by the
                      program owning its (rows, hidden units) tile
  mbuf   (D, B, H)    projection only: this step's m = o tanh(c_t), read by the projection phase
  out    (T, B, D*R) or (B, T, D*R) via strides
  hprev  (D, T, B, R) h entering each step (saved; zero at padded positions)
  gates  (D, T, B, G) G = 6H (7H with projection): slots i, f, g, o, c_{t-1}, c_t (, m), saved,
                      zero at padded positions
backward:
  dout   like out: the output's gradient (ignored at padded positions)
  dbuf   (2, D, B, R) ping-pong carried dh (accumulator dtype)
  dcbuf  (D, B, H)    carried dc (accumulator dtype), owned per tile as cbuf
  dgh    (D, T, B, 4H) [da_i, da_f, da_g, da_o], zero at padded positions
  dhs    (D, T, B, R) projection only: the total gradient reaching h_t (dout_t + carried), zero
                      at padded positions (dW_hr = dhs^T m)

Phases of a step (each a barrier / block barrier / launch apart):
  forward  gates phase, tiles of H units (four accumulators over K = R: lstm_fwd_finish);
           projection only: projection phase, tiles of R units (h_t = m @ W_hr^T over K = H:
           lstm_proj_finish)
  backward gates phase, tiles of H units (the gradient reaching m: elementwise without a
           projection, dh_t @ W_hr with one: lstm_bwd_gates_finish); carry phase, tiles of R
           units (dh_{t-1} = sum_g dgh_g @ W_hh_g over K = H: lstm_bwd_carry_finish)

Every finisher takes its tile's accumulators as [BLOCK_B, BLOCK_H] (rows, units): the
persistent kernel, whose MMAs put units on M and the batch on N, passes tl.trans of its
[BLOCK_H, BLOCK_B] accumulators. Masks come from gru_common.step_tile: rows past their length
carry h, c, dh and dc unchanged, and their padded positions of out, hprev, gates, dgh and dhs
are written as zeros (at time index s, the step, which covers every padded position once).
"""

import triton
import triton.language as tl

from .activations import sigmoid, tanh
from .gru_common import step_tile, store_h_outputs, store_step


@triton.jit
def lstm_gate_math(a_i, a_f, a_g, a_o, c_old, FAST: tl.constexpr):
    """The cell's gates from the pre-activations a_* (x and h sides summed, in the accumulator
    dtype) and c_{t-1}: returns i, f, g, o, c_t = f c_{t-1} + i g and tanh(c_t). FAST: the
    activations' compiled approximations (callers pass MMA_LOWP: bf16/fp16)."""
    i = sigmoid(a_i, FAST)
    f = sigmoid(a_f, FAST)
    g = tanh(a_g, FAST)
    o = sigmoid(a_o, FAST)
    c_new = f * c_old + i * g
    return i, f, g, o, c_new, tanh(c_new, FAST)


@triton.jit
def lstm_gate_grads(dm, dc_in, i, f, g, o, c_old, tc):
    """The pre-activation gradients of one step: dm is the gradient reaching m = o tanh(c_t),
    dc_in the carried gradient of c_t (from step t+1), tc = tanh(c_t) (recomputed from the saved
    c_t with lstm_gate_math's tanh, so bitwise the forward's). Returns da_i, da_f, da_g, da_o and
    dc_{t-1} = dc f. No transcendental is evaluated here, so there is no FAST."""
    dc = dc_in + dm * o * (1.0 - tc * tc)
    da_i = dc * g * i * (1.0 - i)
    da_f = dc * c_old * f * (1.0 - f)
    da_g = dc * i * (1.0 - g * g)
    da_o = dm * tc * o * (1.0 - o)
    return da_i, da_f, da_g, da_o, dc * f


# ---------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------


@triton.jit
def lstm_fwd_gx(gx_ptr, o_b, t, o_n, m_live, i_d, H, stride_gx_t, stride_gx_b):
    """x_i, x_f, x_g, x_o of a gates-phase tile (rows o_b at time indices t, units o_n:
    step_tile's over H), in gx's dtype, zero where a row has stopped."""
    p = gx_ptr + t[:, None] * stride_gx_t + o_b[:, None] * stride_gx_b + i_d * 4 * H + o_n[None, :]
    x_i = tl.load(p, mask=m_live, other=0.0)
    x_f = tl.load(p + H, mask=m_live, other=0.0)
    x_g = tl.load(p + 2 * H, mask=m_live, other=0.0)
    x_o = tl.load(p + 3 * H, mask=m_live, other=0.0)
    return x_i, x_f, x_g, x_o


@triton.jit
def lstm_fwd_state(
    acc_i, acc_f, acc_g, acc_o, x_i, x_f, x_g, x_o, hbuf_ptr, cbuf_ptr, mbuf_ptr,
    o_b, o_n, m_tile, m_live, i_d, cur, B, H, D, HAS_PROJ: tl.constexpr, FAST: tl.constexpr,
):
    """The state part of the gates phase for a tile of H units, given its hidden-side
    pre-activations acc_* = h_{t-1} @ W_h*[units]^T ([BLOCK_B, BLOCK_H], accumulator dtype), its
    gx (lstm_fwd_gx) and step_tile's offsets and masks: the gates, c_t into cbuf (stopped rows
    keep c_{t-1}), and m = o tanh(c_t) -- without a projection h_t = m into hbuf slot 1 - cur
    (stopped rows keep h_{t-1}); with one, m into mbuf (zero on stopped rows) for the projection
    phase. Returns i, f, g, o, c_{t-1}, c_t, m and h_{t-1} (without a projection; with one, m
    again: the projection phase owns h), what lstm_fwd_outputs stores."""
    acc_dtype = cbuf_ptr.dtype.element_ty
    p_c = cbuf_ptr + (i_d * B + o_b[:, None]) * H + o_n[None, :]
    c_old = tl.load(p_c, mask=m_tile, other=0.0)
    i, f, g, o, c_new, tc = lstm_gate_math(x_i.to(acc_dtype) + acc_i, x_f.to(acc_dtype) + acc_f,
                                           x_g.to(acc_dtype) + acc_g, x_o.to(acc_dtype) + acc_o, c_old, FAST)
    tl.store(p_c, tl.where(m_live, c_new, c_old), mask=m_tile)
    m = o * tc
    if HAS_PROJ:
        tl.store(mbuf_ptr + (i_d * B + o_b[:, None]) * H + o_n[None, :], tl.where(m_live, m, 0.0), mask=m_tile)
        h_old = m
    else:
        h_old = lstm_h_state(m, hbuf_ptr, o_b, o_n, m_tile, m_live, i_d, cur, B, H, D)
    return i, f, g, o, c_old, c_new, m, h_old


@triton.jit
def lstm_fwd_outputs(
    i, f, g, o, c_old, c_new, m, h_old, out_ptr, hprev_ptr, gates_ptr, o_b, live, t, o_n, m_tile, m_live,
    i_d, s, T, B, H, stride_out_t, stride_out_b, HAS_PROJ: tl.constexpr, SAVE: tl.constexpr,
):
    """The outputs part of the gates phase, given lstm_fwd_state's results: without a
    projection h_t = m into out and (SAVE) h_{t-1} into hprev (gru_common.store_h_outputs; R =
    H); SAVE: the gates' slots i, f, g, o, c_{t-1}, c_t (, m) of the tile, zero at padded
    positions. Nothing in the recurrence reads them."""
    m_pad = m_tile & ~live[:, None]
    if not HAS_PROJ:
        store_h_outputs(m, h_old, out_ptr, hprev_ptr, o_b, t, o_n, m_live, m_pad, i_d, s, T, B, H,
                        stride_out_t, stride_out_b, SAVE)
    if SAVE:
        G: tl.constexpr = 7 if HAS_PROJ else 6
        p_g = gates_ptr + (i_d * T * B + o_b[:, None]) * G * H + o_n[None, :]
        store_step(p_g, t, s, B * G * H, H, i, f, g, o, m_live, m_pad, 4)
        store_step(p_g + 4 * H, t, s, B * G * H, H, c_old, c_new, m, m, m_live, m_pad, G - 4)


@triton.jit
def lstm_fwd_finish(
    acc_i, acc_f, acc_g, acc_o, gx_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
    i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_PROJ: tl.constexpr, SAVE: tl.constexpr, FAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """The gates phase of step s for the (batch block i_b, hidden block i_n) tile of H units,
    given acc_* = h_{t-1} @ W_h{i,f,g,o}[units]^T ([BLOCK_B, BLOCK_H]): lstm_fwd_gx,
    lstm_fwd_state, lstm_fwd_outputs (which the persistent kernel may also call apart)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    x_i, x_f, x_g, x_o = lstm_fwd_gx(gx_ptr, o_b, t, o_n, m_live, i_d, H, stride_gx_t, stride_gx_b)
    i, f, g, o, c_old, c_new, m, h_old = lstm_fwd_state(acc_i, acc_f, acc_g, acc_o, x_i, x_f, x_g, x_o, hbuf_ptr,
                                                        cbuf_ptr, mbuf_ptr, o_b, o_n, m_tile, m_live, i_d, cur,
                                                        B, H, D, HAS_PROJ, FAST)
    lstm_fwd_outputs(i, f, g, o, c_old, c_new, m, h_old, out_ptr, hprev_ptr, gates_ptr, o_b, live, t, o_n, m_tile,
                     m_live, i_d, s, T, B, H, stride_out_t, stride_out_b, HAS_PROJ, SAVE)


@triton.jit
def lstm_h_state(h_new, hbuf_ptr, o_b, o_r, m_tile, m_live, i_d, cur, B, R, D):
    """h_t of a tile of R units (o_r) into hbuf slot 1 - cur, stopped rows keeping h_{t-1} (read
    from slot cur, and returned)."""
    p_h = hbuf_ptr + (i_d * B + o_b[:, None]) * R + o_r[None, :]
    h_old = tl.load(p_h + cur * D * B * R, mask=m_tile, other=0.0)
    tl.store(p_h + (1 - cur) * D * B * R, tl.where(m_live, h_new, h_old), mask=m_tile)
    return h_old


@triton.jit
def lstm_proj_finish(
    acc, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, i_b, i_n, i_d, s, cur, T, B, R, D,
    stride_out_t, stride_out_b, SAVE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """The projection phase of step s for the (batch block i_b, block i_n) tile of R units,
    given acc = m_t @ W_hr[units]^T ([BLOCK_B, BLOCK_H], accumulator dtype; m from mbuf): h_t
    into hbuf slot 1 - cur (lstm_h_state), out and (SAVE) hprev (gru_common.store_h_outputs)."""
    o_b, live, t, o_r, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, R, BLOCK_B, BLOCK_H, i_d == 1)
    h_old = lstm_h_state(acc, hbuf_ptr, o_b, o_r, m_tile, m_live, i_d, cur, B, R, D)
    store_h_outputs(acc, h_old, out_ptr, hprev_ptr, o_b, t, o_r, m_live, m_tile & ~live[:, None], i_d, s, T, B, R,
                    stride_out_t, stride_out_b, SAVE)


# ---------------------------------------------------------------------------------------------
# Backward
# ---------------------------------------------------------------------------------------------


@triton.jit
def lstm_saved_gates(p_g, H, mask, FAST: tl.constexpr):
    """A tile's saved i, f, g, o and c_{t-1} (the gates' slots 0-4 at p_g, H apart) and tanh(c_t)
    recomputed from slot 5 with lstm_gate_math's tanh (FAST as there), so bitwise the forward's:
    what lstm_gate_grads takes. Shared by the layer's and the cell's backward."""
    i = tl.load(p_g, mask=mask, other=0.0)
    f = tl.load(p_g + H, mask=mask, other=0.0)
    g = tl.load(p_g + 2 * H, mask=mask, other=0.0)
    o = tl.load(p_g + 3 * H, mask=mask, other=0.0)
    c_old = tl.load(p_g + 4 * H, mask=mask, other=0.0)
    return i, f, g, o, c_old, tanh(tl.load(p_g + 5 * H, mask=mask, other=0.0), FAST)


@triton.jit
def lstm_dh_total(dout_ptr, dbuf_ptr, o_b, m_b, live, t, o_r, m_r, i_d, cur, B, R, D, stride_dout_t, stride_dout_b):
    """For rows o_b (in range m_b, running live, at time indices t) and R-units o_r (in range
    m_r; a tile or a K block): the carried gradient dbuf[cur] (zero out of range) and the total
    gradient reaching h_t, carried plus dout_t on running rows, both [rows, units] in the
    accumulator dtype."""
    p_d = dbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * R + o_r[None, :]
    dh_carry = tl.load(p_d, mask=m_b[:, None] & m_r[None, :], other=0.0)
    p_dout = dout_ptr + t[:, None] * stride_dout_t + o_b[:, None] * stride_dout_b + i_d * R + o_r[None, :]
    dh = dh_carry + tl.load(p_dout, mask=live[:, None] & m_r[None, :], other=0.0).to(dbuf_ptr.dtype.element_ty)
    return dh_carry, dh


@triton.jit
def lstm_bwd_gates_finish(
    dm, dout_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
    stride_dout_t, stride_dout_b, HAS_PROJ: tl.constexpr, FAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """The backward gates phase of step s for the (i_b, i_n) tile of H units. dm
    ([BLOCK_B, BLOCK_H], accumulator dtype): with a projection the gradient reaching m,
    dh_t @ W_hr[:, units] (dh_t the total reaching h_t, lstm_dh_total over all of R); without
    one it is unused (pass any tile, e.g. zeros) and dm = dh_t is read here elementwise
    (dbuf[cur] + dout_t, R = H). Then lstm_gate_grads with the saved gates and dcbuf's carried
    dc: [da_i, da_f, da_g, da_o] into dgh (zero at padded positions), dc_{t-1} into dcbuf
    (stopped rows keep dc). FAST: tanh(c_t) as the forward computed it."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    if not HAS_PROJ:
        _, dm = lstm_dh_total(dout_ptr, dbuf_ptr, o_b, o_b < B, live, t, o_n, o_n < H, i_d, cur, B, H, D,
                              stride_dout_t, stride_dout_b)
    G: tl.constexpr = 7 if HAS_PROJ else 6
    row0 = i_d * T * B + o_b[:, None]  # the tile's rows at time index 0
    p_g = gates_ptr + (row0 + t[:, None] * B) * G * H + o_n[None, :]
    i, f, g, o, c_old, tc = lstm_saved_gates(p_g, H, m_live, FAST)
    p_dc = dcbuf_ptr + (i_d * B + o_b[:, None]) * H + o_n[None, :]
    dc_in = tl.load(p_dc, mask=m_tile, other=0.0)
    da_i, da_f, da_g, da_o, dc_old = lstm_gate_grads(dm, dc_in, i, f, g, o, c_old, tc)
    tl.store(p_dc, tl.where(m_live, dc_old, dc_in), mask=m_tile)
    store_step(dgh_ptr + row0 * 4 * H + o_n[None, :], t, s, B * 4 * H, H, da_i, da_f, da_g, da_o, m_live,
               m_tile & ~live[:, None], 4)


@triton.jit
def lstm_bwd_carry_finish(
    acc, dout_ptr, lengths_ptr, dbuf_ptr, dhs_ptr, i_b, i_n, i_d, s, cur, T, B, R, D,
    stride_dout_t, stride_dout_b, HAS_PROJ: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """The carry phase of step s for the (i_b, i_n) tile of R units, given acc = sum_g
    dgh_g @ W_hh_g[:, units] ([BLOCK_B, BLOCK_H], accumulator dtype): dh_{t-1} = acc into dbuf
    slot 1 - cur (stopped rows keep their carried dh); with a projection, the total gradient
    reaching h_t (dbuf[cur] + dout_t) into dhs (zero at padded positions)."""
    o_b, live, t, o_r, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, R, BLOCK_B, BLOCK_H, i_d == 1)
    p_d = dbuf_ptr + (i_d * B + o_b[:, None]) * R + o_r[None, :]
    if HAS_PROJ:
        dh_carry, dh = lstm_dh_total(dout_ptr, dbuf_ptr, o_b, o_b < B, live, t, o_r, o_r < R, i_d, cur, B, R, D,
                                     stride_dout_t, stride_dout_b)
        p_dhs = dhs_ptr + (i_d * T * B + o_b[:, None]) * R + o_r[None, :]
        store_step(p_dhs, t, s, B * R, R, dh, dh, dh, dh, m_live, m_tile & ~live[:, None], 1)
    else:
        dh_carry = tl.load(p_d + cur * D * B * R, mask=m_tile, other=0.0)
    tl.store(p_d + (1 - cur) * D * B * R, tl.where(m_live, acc, dh_carry), mask=m_tile)
