"""`persistent` strategy for the LSTM layer: programs stay resident for the whole sequence, each
holding its slices of W_hh (and W_hr) on-chip across all steps; grid barriers separate the phases.

Grid (hidden blocks, batch blocks, D), hidden blocks = cdiv(H, BLOCK_H). Program (i_n, i_b, i_d)
owns H units [i_n*BLOCK_H, (i_n+1)*BLOCK_H) of batch rows i_b in direction i_d for the gates
phase, and R units with the same offsets for the projection / carry phase (R <= H, so the
programs past cdiv(R, BLOCK_H) own none: their tiles are masked out). Layouts, the phases' math
and the tile finishers are lstm_common.py's (so every strategy computes the same thing); the
barrier and the state loads are gru_persistent.py's (_program, _sync, _state_tile), the counter
barrier of the base variant: one int32 counter per (batch block, direction), its target counting
phases. As the GRU's, each matmul puts hidden units on the MMA's M side and the batch on N
([BLOCK_H, BLOCK_B] accumulators, passed to the finishers transposed), the previous state read
whole (.cg: the peers' fresh values) as the N operand:

  forward   gates       acc_g [BH, BB] = W_hh[g*H + own H units, :R] @ h_{t-1}^T      (g = i, f, g, o)
            projection  acc   [BH, BB] = W_hr[own R units, :H] @ m_t^T
  backward  gates       dm    [BH, BB] = W_hr[:R, own H units]^T @ dh_t^T       (projection only)
            carry       acc   [BH, BB] = sum_g W_hh[g*H + :H, own R units]^T @ dgh_g^T

The weight tiles (forward: four [BLOCK_H, BLOCK_RP] of W_hh, with a projection one
[BLOCK_H, BLOCK_HP] of W_hr; backward: four [BLOCK_H, BLOCK_HP] of W_hh^T, with a projection one
[BLOCK_H, BLOCK_RP] of W_hr^T) are loaded once, before the time loop; loop-invariant MMA operands,
the compiler stages them in shared memory once.

Barriers a step (the counter's target is phase * hidden blocks; with a single hidden block a
block barrier alone):
  forward, no projection: 1. The gates phase reads all of hbuf[cur] (h_{t-1}) and writes its own
    units of hbuf[1 - cur]; the step's closing barrier makes h_t whole before step t+1 reads it.
    One barrier suffices for the ping-pong: step t+1 writes slot cur (now 1 - cur') only after
    that barrier, which every peer reached after its last read of slot cur in step t.
  forward, projection: 2. Gates phase (c, m = o tanh(c) into mbuf) | barrier 2s+1: all of m_t
    written | projection phase (reads all of mbuf, writes its own R units of hbuf[1 - cur]) |
    barrier 2s+2, the step's close: h_t whole for the next gates phase, AND every peer done
    reading mbuf before the next gates phase overwrites it (mbuf has one slot). hbuf[cur] is
    read by both phases of step t and rewritten only in step t+1's projection phase, two
    barriers later.
  backward, projection: 2. Gates phase (dm from all of dh_t = dbuf[cur] + dout_t; dgh, dcbuf) |
    barrier 2k+1: dgh_t whole | carry phase (reads all of dgh_t, writes its own R units of
    dbuf[1 - cur] and dhs_t) | barrier 2k+2: dh_{t-1} whole for the next gates phase; dbuf[cur]
    is read by step k's phases and rewritten by step k+1's carry phase, after barrier 2k+3.
  backward, no projection: 1, after the gates phase (dgh_t whole before any carry reads it);
    then a block barrier. The carry tile's R units are the gates tile's H units (R = H, same
    offsets), and the next gates phase reads dbuf[1 - cur] elementwise (its own units only), so
    what the carry phase writes feeds only the same program. dgh has a slot per time step: a
    peer already in step k+1's gates phase writes slot t-1 (or, for padded rows, slot s-1 which
    no live row reads at step k), never the slot step k's carry reads.
cbuf / dcbuf (c, dc) are read and written by their owning program only (the gates tile's), so
they need no barrier.
"""

import triton
import triton.language as tl

from .gru_common import dot_acc, step_rows
from .gru_persistent import _program, _state_tile, _sync
from .lstm_common import lstm_bwd_carry_finish, lstm_bwd_gates_finish, lstm_fwd_finish, lstm_proj_finish


@triton.jit
def _tile(p_w, o_n, o_k, N, K, stride_n, stride_k):
    """A resident weight tile [len(o_n), len(o_k)]: p_w + o_n * stride_n + o_k * stride_k for
    o_n < N, o_k < K (zero elsewhere: the padding of M and K)."""
    m = (o_n[:, None] < N) & (o_k[None, :] < K)
    return tl.load(p_w + o_n[:, None] * stride_n + o_k[None, :] * stride_k, mask=m, other=0.0)


@triton.jit
def _gate_tiles(p_w, o_n, o_k, N, K, stride_g, stride_n, stride_k):
    """The four gate tiles (i, f, g, o) of _tile, gate g at p_w + g * stride_g."""
    w_i = _tile(p_w, o_n, o_k, N, K, stride_n, stride_k)
    w_f = _tile(p_w + stride_g, o_n, o_k, N, K, stride_n, stride_k)
    w_g = _tile(p_w + 2 * stride_g, o_n, o_k, N, K, stride_n, stride_k)
    w_o = _tile(p_w + 3 * stride_g, o_n, o_k, N, K, stride_n, stride_k)
    return w_i, w_f, w_g, w_o


@triton.jit
def _dh_state(dout_ptr, dbuf_ptr, o_b, live, t, o_r, i_d, cur, B, R, D, stride_dout_t, stride_dout_b):
    """[RP, BB] = dh_t^T, the total gradient reaching h_t for every R unit o_r of rows o_b: the
    carried dbuf[cur] (written by every peer: _state_tile's .cg load) plus dout_t on running
    rows. lstm_common.lstm_dh_total's sum, transposed, for the MMA's N operand.
    The sum goes through a select on running rows (the same values: dout is zero on stopped
    rows), which Triton's dot-operand hoisting does not pass, so it is made in this tile's
    layout. A sum of two loads alone is moved into the MMA's operand layout, where every warp
    holds the whole [RP, BB] operand, dbuf's fp32 and dout beside it: at H 512, P 256, B 16
    (bf16, sm_90, Triton 3.6 and 3.9) 255 registers and 108 bytes spilled, 162 and none with
    the select."""
    dh = _state_tile(dbuf_ptr + (cur * D + i_d) * B * R, o_b, o_r, B, R)
    p_dout = dout_ptr + t[None, :] * stride_dout_t + o_b[None, :] * stride_dout_b + i_d * R + o_r[:, None]
    dout = tl.load(p_dout, mask=(o_r[:, None] < R) & live[None, :], other=0.0).to(dh.dtype)
    return tl.where(live[None, :], dh + dout, dh)


@triton.jit
def lstm_fwd_persistent_kernel(
    gx_ptr, whh_ptr, whr_ptr, lengths_ptr, hbuf_ptr, cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr, barrier_ptr,
    T, B, H, R, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_PROJ: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr, BLOCK_RP: tl.constexpr,
):
    """The forward recurrence, all T steps in one launch (see the module docstring). Without a
    projection whr_ptr and mbuf_ptr are never read or written."""
    i_n, i_b, i_d, o_n, o_h, p_group = _program(barrier_ptr, False, BLOCK_H, BLOCK_HP)  # o_n: own units
    n_peers = tl.num_programs(0)
    PHASES: tl.constexpr = 2 if HAS_PROJ else 1
    o_r = tl.arange(0, BLOCK_RP)  # all of R (padded): the gates' K
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    # Resident: W_hh[g*H + own units, :R] [BH, RP]; W_hr[own R units, :H] [BH, HP].
    w_i, w_f, w_g, w_o = _gate_tiles(whh_ptr + i_d * 4 * H * R, o_n, o_r, H, R, H * R, R, 1)
    if HAS_PROJ:
        w_r = _tile(whr_ptr + i_d * R * H, o_n, o_h, R, H, H, 1)
    zero = tl.zeros((BLOCK_H, BLOCK_B), dtype=hbuf_ptr.dtype.element_ty)
    for s in range(T):
        cur = s % 2
        h_t = _state_tile(hbuf_ptr + (cur * D + i_d) * B * R, o_b, o_r, B, R)   # [RP, BB] = h_{t-1}^T
        acc_i = dot_acc(w_i, h_t, zero, MMA_LOWP, DOT_PRECISION)
        acc_f = dot_acc(w_f, h_t, zero, MMA_LOWP, DOT_PRECISION)
        acc_g = dot_acc(w_g, h_t, zero, MMA_LOWP, DOT_PRECISION)
        acc_o = dot_acc(w_o, h_t, zero, MMA_LOWP, DOT_PRECISION)
        lstm_fwd_finish(
            tl.trans(acc_i), tl.trans(acc_f), tl.trans(acc_g), tl.trans(acc_o), gx_ptr, lengths_ptr, hbuf_ptr,
            cbuf_ptr, mbuf_ptr, out_ptr, hprev_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
            stride_gx_t, stride_gx_b, stride_out_t, stride_out_b, HAS_PROJ, SAVE, MMA_LOWP, BLOCK_B, BLOCK_H,
        )
        if HAS_PROJ:
            _sync(p_group, i_n, s * PHASES + 1, n_peers, False, 1)  # every unit's m_t in mbuf
            m_t = _state_tile(mbuf_ptr + i_d * B * H, o_b, o_h, B, H)  # [HP, BB] = m_t^T
            acc = dot_acc(w_r, m_t, zero, MMA_LOWP, DOT_PRECISION)
            lstm_proj_finish(tl.trans(acc), lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, i_b, i_n, i_d, s, cur,
                             T, B, R, D, stride_out_t, stride_out_b, SAVE, BLOCK_B, BLOCK_H)
        # The step's close: h_t whole for the next step; with a projection also every peer's
        # reads of mbuf done before the next gates phase overwrites it.
        _sync(p_group, i_n, (s + 1) * PHASES, n_peers, False, 1)


@triton.jit
def lstm_bwd_persistent_kernel(
    dout_ptr, whh_ptr, whr_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, hprev_ptr, gates_ptr, dgh_ptr, dhs_ptr, barrier_ptr,
    T, B, H, R, D,
    stride_dout_t, stride_dout_b,
    HAS_PROJ: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr, BLOCK_RP: tl.constexpr,
):
    """The backward recurrence, all T steps in reverse in one launch (see the module docstring).
    Writes dgh (and with a projection dhs); dh_0 / dc_0 are left in dbuf / dcbuf. hprev_ptr is
    not read (the weight gradients' GEMMs read it); without a projection whr_ptr and dhs_ptr are
    never read or written."""
    i_n, i_b, i_d, o_n, o_h, p_group = _program(barrier_ptr, False, BLOCK_H, BLOCK_HP)  # o_n: own units
    n_peers = tl.num_programs(0)
    PHASES: tl.constexpr = 2 if HAS_PROJ else 1
    o_r = tl.arange(0, BLOCK_RP)  # all of R (padded): the projection's K
    # Resident: W_hh[g*H + :H, own R units]^T [BH, HP]; W_hr[:R, own H units]^T [BH, RP].
    w_i, w_f, w_g, w_o = _gate_tiles(whh_ptr + i_d * 4 * H * R, o_n, o_h, R, H, H * R, 1, R)
    if HAS_PROJ:
        w_r = _tile(whr_ptr + i_d * R * H, o_n, o_r, H, R, 1, H)
    zero = tl.zeros((BLOCK_H, BLOCK_B), dtype=dbuf_ptr.dtype.element_ty)
    for step in range(T):
        s = T - 1 - step
        cur = step % 2
        o_b, _, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, i_d == 1)
        dm = zero  # without a projection the finisher reads dh_t itself (elementwise)
        if HAS_PROJ:
            dh_t = _dh_state(dout_ptr, dbuf_ptr, o_b, live, t, o_r, i_d, cur, B, R, D, stride_dout_t, stride_dout_b)
            dm = dot_acc(w_r, dh_t, zero, MMA_LOWP, DOT_PRECISION)
        lstm_bwd_gates_finish(tl.trans(dm), dout_ptr, lengths_ptr, dbuf_ptr, dcbuf_ptr, gates_ptr, dgh_ptr,
                              i_b, i_n, i_d, s, cur, T, B, H, D, stride_dout_t, stride_dout_b, HAS_PROJ, MMA_LOWP,
                              BLOCK_B, BLOCK_H)
        _sync(p_group, i_n, step * PHASES + 1, n_peers, False, 1)  # dgh_t of every unit written
        p_dgh = dgh_ptr + ((i_d * T + t[None, :]) * B + o_b[None, :]) * 4 * H + o_h[:, None]   # [HP, BB]
        m_dg = (o_h[:, None] < H) & live[None, :]
        acc = dot_acc(w_i, tl.load(p_dgh, mask=m_dg, other=0.0, cache_modifier=".cg"), zero, MMA_LOWP, DOT_PRECISION)
        acc = dot_acc(w_f, tl.load(p_dgh + H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP,
                      DOT_PRECISION)
        acc = dot_acc(w_g, tl.load(p_dgh + 2 * H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP,
                      DOT_PRECISION)
        acc = dot_acc(w_o, tl.load(p_dgh + 3 * H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP,
                      DOT_PRECISION)
        lstm_bwd_carry_finish(tl.trans(acc), dout_ptr, lengths_ptr, dbuf_ptr, dhs_ptr, i_b, i_n, i_d, s, cur,
                              T, B, R, D, stride_dout_t, stride_dout_b, HAS_PROJ, BLOCK_B, BLOCK_H)
        if HAS_PROJ:
            _sync(p_group, i_n, (step + 1) * PHASES, n_peers, False, 1)  # dh_{t-1} of every R unit written
        else:
            tl.debug_barrier()  # this block's dh_{t-1} complete before its next gates phase reads it
