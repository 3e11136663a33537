"""`persistent` strategy: programs stay resident for the whole sequence, each holding its slice
of W_hh on-chip (registers) across all steps; a grid barrier separates steps.

Grid (hidden blocks, batch blocks, D). Program (i_n, i_b, i_d) owns hidden units
[i_n*BLOCK_H, (i_n+1)*BLOCK_H) of batch rows i_b for direction i_d. Per step it reads the whole
previous state h_{t-1} (BLOCK_B x H, written by its peers) and multiplies it by its resident
W_hh tiles. Only the programs of one (batch block, direction) meet at a barrier, on their own
counter. With a single hidden block there are no peers and no barrier (the interpreter case).
Layouts as in gru_forward.py / gru_backward.py; the gate math is theirs (fwd_finish,
_bwd_gates_block, bwd_carry_finish), so all strategies compute the same thing.
"""

import triton
import triton.language as tl

from .gru_backward import _bwd_gates_block, bwd_carry_finish
from .gru_common import dot_acc, grid_barrier
from .gru_forward import fwd_finish


@triton.jit
def gru_fwd_persistent_kernel(
    gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr, count_ptr,
    T, B, H, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr,
):
    i_n = tl.program_id(0)
    i_b = tl.program_id(1)
    i_d = tl.program_id(2)
    n_peers = tl.num_programs(0)
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    m_b = o_b < B
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    o_k = tl.arange(0, BLOCK_HP)                                     # all of H (padded)
    m_w = (o_k[:, None] < H) & (o_n[None, :] < H)
    p_w = whh_ptr + i_d * 3 * H * H + o_n[None, :] * H + o_k[:, None]
    w_r = tl.load(p_w, mask=m_w, other=0.0)                          # [HP, BH] = W_hr^T slice, resident
    w_z = tl.load(p_w + H * H, mask=m_w, other=0.0)
    w_n = tl.load(p_w + 2 * H * H, mask=m_w, other=0.0)
    acc_dtype = hbuf_ptr.dtype.element_ty
    p_count = count_ptr + i_d * tl.num_programs(1) + i_b
    m_h = m_b[:, None] & (o_k[None, :] < H)
    for s in range(T):
        cur = s % 2
        # .cg: read the peers' fresh h_{t-1} from L2, never a stale L1 line.
        p_h = hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * H + o_k[None, :]
        b_h = tl.load(p_h, mask=m_h, other=0.0, cache_modifier=".cg")   # [BB, HP]
        zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=acc_dtype)
        acc_r = dot_acc(b_h, w_r, zero, MMA_LOWP, DOT_PRECISION)
        acc_z = dot_acc(b_h, w_z, zero, MMA_LOWP, DOT_PRECISION)
        acc_n = dot_acc(b_h, w_n, zero, MMA_LOWP, DOT_PRECISION)
        fwd_finish(
            acc_r, acc_z, acc_n, gx_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
            i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
            HAS_BHN, SAVE, BLOCK_B, BLOCK_H,
        )
        if n_peers > 1:
            # Ping-pong state: one barrier per step suffices (no peer can still be reading the
            # buffer written next step once all have arrived here).
            grid_barrier(p_count, (s + 1) * n_peers)
        else:
            tl.debug_barrier()


@triton.jit
def gru_bwd_persistent_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr, count_ptr,
    T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr,
):
    i_n = tl.program_id(0)
    i_b = tl.program_id(1)
    i_d = tl.program_id(2)
    n_peers = tl.num_programs(0)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    o_k = tl.arange(0, BLOCK_HP)
    m_w = (o_k[:, None] < H) & (o_n[None, :] < H)
    p_w = whh_ptr + i_d * 3 * H * H + o_k[:, None] * H + o_n[None, :]
    w_r = tl.load(p_w, mask=m_w, other=0.0)                          # [HP, BH] = W_hr[:, slice], resident
    w_z = tl.load(p_w + H * H, mask=m_w, other=0.0)
    w_n = tl.load(p_w + 2 * H * H, mask=m_w, other=0.0)
    acc_dtype = dbuf_ptr.dtype.element_ty
    p_count = count_ptr + i_d * tl.num_programs(1) + i_b
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    for step in range(T):
        s = T - 1 - step
        cur = step % 2
        _bwd_gates_block(
            dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
            i_b, i_n, i_d, s, cur, T, B, H, D,
            stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b, BLOCK_B, BLOCK_H,
        )
        # dgh_t of every hidden unit is needed below. dh is carried per hidden block, so this is
        # the only barrier of the step; dgh has a slot per time step, so nothing is overwritten.
        if n_peers > 1:
            grid_barrier(p_count, (step + 1) * n_peers)
        else:
            tl.debug_barrier()
        len_b = tl.load(lengths_ptr + o_b, mask=o_b < B, other=0)
        live = (o_b < B) & (s < len_b)
        t = tl.maximum(tl.where(i_d == 1, len_b - 1 - s, s), 0).to(tl.int64)
        p_dgh = dgh_ptr + ((i_d * T + t[:, None]) * B + o_b[:, None]) * 3 * H + o_k[None, :]
        m_dg = live[:, None] & (o_k[None, :] < H)
        acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=acc_dtype)
        acc = dot_acc(tl.load(p_dgh, mask=m_dg, other=0.0, cache_modifier=".cg"), w_r, acc, MMA_LOWP, DOT_PRECISION)
        acc = dot_acc(tl.load(p_dgh + H, mask=m_dg, other=0.0, cache_modifier=".cg"), w_z, acc, MMA_LOWP, DOT_PRECISION)
        acc = dot_acc(tl.load(p_dgh + 2 * H, mask=m_dg, other=0.0, cache_modifier=".cg"), w_n, acc, MMA_LOWP, DOT_PRECISION)
        bwd_carry_finish(acc, dout_ptr, lengths_ptr, dbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
                         stride_dout_t, stride_dout_b, BLOCK_B, BLOCK_H)
        tl.debug_barrier()  # this block's dh_{t-1} complete before the next step's gates read it
