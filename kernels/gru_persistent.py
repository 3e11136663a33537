"""`persistent` strategy: programs stay resident for the whole sequence, each holding its slice
of W_hh on-chip across all steps; a grid barrier separates steps.

Grid (hidden blocks, batch blocks, D). Program (i_n, i_b, i_d) owns hidden units
[i_n*BLOCK_H, (i_n+1)*BLOCK_H) of batch rows i_b for direction i_d. Per step it reads the whole
previous state (BLOCK_B x H, written by its peers) and multiplies its resident weight tiles by
it, hidden units on the MMA's M side and the batch on N:

  forward   [BLOCK_H, BLOCK_B] = W_h{r,z,n}[units, :] @ h_{t-1}^T
  backward  [BLOCK_H, BLOCK_B] = sum_g W_hg[:, units]^T @ dgh_g^T

With BLOCK_H = 64 this is Hopper's wgmma shape (M = 64 per warpgroup; a batch of 1..16 padded
to N = 16), where batch-on-M would need 64 rows of batch. The weight tiles are loaded once,
before the time loop; being loop-invariant MMA operands, the compiler stages them in shared
memory once and every step's MMA reads them there (wgmma takes both operands from shared
memory), so the registers hold only the state tile and the gate math. The dispatcher sizes the
blocks from the compiled kernel's own registers and shared memory (dispatch.py).

RESET_AFTER=False (the reset gate before the candidate's matmul) splits every step into the
phases of gru_forward.py / gru_backward.py with a grid barrier after each: two per forward step
(reset, update), two per backward step (gates, reset; the carry phase only feeds this program's
own next step). The counter's target counts phases, not steps.

Only the programs of one (batch block, direction) meet at a barrier, on their own counter.
With a single hidden block there are no peers and no barrier (what the dispatcher picks under
the interpreter; tests/test_gru_persistent_barrier.py runs several hidden blocks there, the
programs as threads). Layouts
as in gru_forward.py / gru_backward.py; the gate math is theirs (fwd_finish, _bwd_gates_block,
bwd_carry_finish), so all strategies compute the same thing.
"""

import triton
import triton.language as tl

from .gru_backward import _bwd_gates_block, bwd_carry_finish, bwd_reset_finish
from .gru_common import dot_acc, grid_barrier, step_rows
from .gru_forward import fwd_finish, fwd_reset_finish


@triton.jit
def _weight_tiles(whh_ptr, i_d, o_n, o_k, H, stride_n, stride_k):
    """The r, z, n tiles [BLOCK_H, BLOCK_HP] of direction i_d's W_hh for hidden units o_n:
    W_g[o_n, :] (stride_n = H, stride_k = 1) or W_g[:, o_n]^T (stride_n = 1, stride_k = H)."""
    m = (o_n[:, None] < H) & (o_k[None, :] < H)
    p = whh_ptr + i_d * 3 * H * H + o_n[:, None] * stride_n + o_k[None, :] * stride_k
    return tl.load(p, mask=m, other=0.0), tl.load(p + H * H, mask=m, other=0.0), tl.load(p + 2 * H * H, mask=m, other=0.0)


@triton.jit
def _program(count_ptr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr):
    """This program's hidden block, batch block and direction, its hidden units o_n, all of H
    (padded) o_k, and the barrier counter of its (batch block, direction)."""
    i_n, i_b, i_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    o_k = tl.arange(0, BLOCK_HP)
    return i_n, i_b, i_d, o_n, o_k, count_ptr + i_d * tl.num_programs(1) + i_b


@triton.jit
def _meet(p_count, arrivals, n_peers):
    """End of a phase: every peer's writes visible to every peer (a block barrier alone when
    there are no peers)."""
    if n_peers > 1:
        grid_barrier(p_count, arrivals)
    else:
        tl.debug_barrier()


@triton.jit
def _state_tile(p_base, o_b, o_k, B, H):
    """[HP, BB] = the transposed rows o_b (all H columns) of a (B, H) state at p_base, read with
    .cg: the peers' fresh values from L2, never a stale L1 line."""
    m = (o_k[:, None] < H) & (o_b[None, :] < B)
    return tl.load(p_base + o_b[None, :] * H + o_k[:, None], mask=m, other=0.0, cache_modifier=".cg")


@triton.jit
def gru_fwd_persistent_kernel(
    gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr, count_ptr,
    T, B, H, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr,
):
    i_n, i_b, i_d, o_n, o_k, p_count = _program(count_ptr, BLOCK_H, BLOCK_HP)
    n_peers = tl.num_programs(0)
    PHASES: tl.constexpr = 1 if RESET_AFTER else 2
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    w_r, w_z, w_n = _weight_tiles(whh_ptr, i_d, o_n, o_k, H, H, 1)  # [BH, HP], resident
    acc_dtype = hbuf_ptr.dtype.element_ty
    zero = tl.zeros((BLOCK_H, BLOCK_B), dtype=acc_dtype)
    for s in range(T):
        cur = s % 2
        h_t = _state_tile(hbuf_ptr + (cur * D + i_d) * B * H, o_b, o_k, B, H)   # [HP, BB] = h_{t-1}^T
        acc_r = dot_acc(w_r, h_t, zero, MMA_LOWP, DOT_PRECISION)
        acc_z = dot_acc(w_z, h_t, zero, MMA_LOWP, DOT_PRECISION)
        if RESET_AFTER:
            acc_n = dot_acc(w_n, h_t, zero, MMA_LOWP, DOT_PRECISION)
        else:
            fwd_reset_finish(tl.trans(acc_r), gx_ptr, lengths_ptr, hbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur,
                             T, B, H, D, stride_gx_t, stride_gx_b, SAVE, MMA_LOWP, BLOCK_B, BLOCK_H)
            _meet(p_count, (s * PHASES + 1) * n_peers, n_peers)  # every unit's r * h_{t-1} written
            rh_t = _state_tile(hbuf_ptr + (2 * D + i_d) * B * H, o_b, o_k, B, H)
            acc_n = dot_acc(w_n, rh_t, zero, MMA_LOWP, DOT_PRECISION)
        fwd_finish(
            tl.trans(acc_r), tl.trans(acc_z), tl.trans(acc_n),
            gx_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr,
            i_b, i_n, i_d, s, cur, T, B, H, D, stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
            HAS_BHN, SAVE, RESET_AFTER, MMA_LOWP, BLOCK_B, BLOCK_H,
        )
        # Ping-pong state: one barrier per step suffices (no peer can still be reading the
        # buffer written next step once all have arrived here; nor the r * h slot, RESET_AFTER=False).
        _meet(p_count, (s + 1) * PHASES * n_peers, n_peers)


@triton.jit
def gru_bwd_persistent_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr, count_ptr,
    T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr,
):
    i_n, i_b, i_d, o_n, o_k, p_count = _program(count_ptr, BLOCK_H, BLOCK_HP)
    n_peers = tl.num_programs(0)
    PHASES: tl.constexpr = 1 if RESET_AFTER else 2
    w_r, w_z, w_n = _weight_tiles(whh_ptr, i_d, o_n, o_k, H, 1, H)  # [BH, HP] = W_g[:, units]^T, resident
    acc_dtype = dbuf_ptr.dtype.element_ty
    for step in range(T):
        s = T - 1 - step
        cur = step % 2
        _bwd_gates_block(
            dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
            i_b, i_n, i_d, s, cur, T, B, H, D,
            stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b, RESET_AFTER, BLOCK_B, BLOCK_H,
        )
        # dgh_t of every hidden unit is needed below. dh is carried per hidden block, so this is
        # the only barrier of the step (RESET_AFTER=False: one more after the reset phase); dgh
        # has a slot per time step, so nothing is overwritten.
        _meet(p_count, (step * PHASES + 1) * n_peers, n_peers)
        o_b, _, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, i_d == 1)
        p_dgh = dgh_ptr + ((i_d * T + t[None, :]) * B + o_b[None, :]) * 3 * H + o_k[:, None]   # [HP, BB]
        m_dg = (o_k[:, None] < H) & live[None, :]
        acc = tl.zeros((BLOCK_H, BLOCK_B), dtype=acc_dtype)
        if RESET_AFTER:
            acc = dot_acc(w_n, tl.load(p_dgh + 2 * H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP, DOT_PRECISION)
        else:
            drh = dot_acc(w_n, tl.load(p_dgh + 2 * H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP, DOT_PRECISION)
            bwd_reset_finish(tl.trans(drh), dout_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr,
                             i_b, i_n, i_d, s, cur, T, B, H, D, stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
                             BLOCK_B, BLOCK_H)
            _meet(p_count, (step * PHASES + 2) * n_peers, n_peers)  # every unit's da_r written
        acc = dot_acc(w_r, tl.load(p_dgh, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP, DOT_PRECISION)
        acc = dot_acc(w_z, tl.load(p_dgh + H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP, DOT_PRECISION)
        bwd_carry_finish(tl.trans(acc), dout_ptr, lengths_ptr, dbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
                         stride_dout_t, stride_dout_b, RESET_AFTER, BLOCK_B, BLOCK_H)
        tl.debug_barrier()  # this block's dh_{t-1} complete before the next step's gates read it
