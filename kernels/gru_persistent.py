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

Only the programs of one (batch block, direction) meet at a barrier, on their own counter
(BARRIER_FLAGS: their own flags).
With a single hidden block there are no peers and no barrier (what the dispatcher picks under
the interpreter; tests/test_gru_persistent_barrier.py runs several hidden blocks there, the
programs as threads). Layouts
as in gru_forward.py / gru_backward.py; the gate math is theirs (fwd_finish, _bwd_gates_block,
bwd_carry_finish), so all strategies compute the same thing.

Variants (constexpr switches, all off by default: the kernel as it always ran; the launcher
passes them from plan.PersistentVariant):

  BARRIER_FLAGS   (both kernels) the barrier's group memory is one int32 flag per program of the
                  (batch block, direction), each program release-storing the phase it reached
                  into its own flag and polling all of them as one vector, instead of one counter
                  every program increments (gru_common.barrier_arrive / barrier_wait). No atomic
                  add contends on one word; every poll reads n_peers words. Phases count as the
                  counter's targets do (1, 2, ... per phase; two a step for RESET_AFTER=False).
  PREFETCH_GX     (forward) the gx tile of step t+1 (x_r, x_z, x_n of this program's units and
                  rows) is loaded before step t's closing barrier and carried into the next step
                  in registers (the first step's before the loop), so after the barrier only the
                  state exchange and the matmul remain before the gate math.
  SPLIT_BARRIER   (forward) the closing barrier is split: a program arrives as soon as h_t is in
                  hbuf, then stores the output and what backward saves (and, PREFETCH_GX, loads
                  the next gx), and only then waits for its peers. The ping-pong buffer stays
                  safe: a program arrives after its last read of slot cur (the state tile, and
                  its own units' h_{t-1}), so once its wait has seen every peer arrive, no peer
                  still reads slot cur, which it overwrites next step; what it does between
                  arrive and wait writes only out, hprev and gates, which no peer reads, and reads
                  only gx. The r * h slot (RESET_AFTER=False) is read before the arrival too.
  RECOMPUTE_RESET (forward, RESET_AFTER=False only) one barrier a step instead of two: every
                  program computes r for ALL units (W_hr's rows streamed from global memory, i.e.
                  L2, BLOCK_H rows at a time, K = all of H, against the state tile it already
                  holds) and r * h_{t-1} chunk by chunk, accumulating W_hn[own units, chunk] @
                  (r * h)[chunk] (W_hn's chunks also from global memory). No peer's r * h is
                  waited for, so the reset phase's barrier goes; its own units' r and r * h are
                  saved as the reset phase saves them. Costs H / BLOCK_H extra weight streams a
                  step.
"""

import triton
import triton.language as tl

from .gru_backward import _bwd_gates_block, bwd_carry_finish, bwd_reset_finish
from .gru_common import barrier_arrive, barrier_wait, dot_acc, grid_barrier, step_rows, step_tile
from .gru_forward import (fwd_gx, fwd_outputs, fwd_reset_finish, fwd_reset_gate, fwd_reset_save, fwd_reset_state,
                          fwd_state)


@triton.jit
def _weight_tiles(whh_ptr, i_d, o_n, o_k, H, stride_n, stride_k):
    """The r, z, n tiles [BLOCK_H, BLOCK_HP] of direction i_d's W_hh for hidden units o_n:
    W_g[o_n, :] (stride_n = H, stride_k = 1) or W_g[:, o_n]^T (stride_n = 1, stride_k = H)."""
    m = (o_n[:, None] < H) & (o_k[None, :] < H)
    p = whh_ptr + i_d * 3 * H * H + o_n[:, None] * stride_n + o_k[None, :] * stride_k
    return tl.load(p, mask=m, other=0.0), tl.load(p + H * H, mask=m, other=0.0), tl.load(p + 2 * H * H, mask=m, other=0.0)


@triton.jit
def _program(barrier_ptr, FLAGS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr):
    """This program's hidden block, batch block and direction, its hidden units o_n, all of H
    (padded) o_k, and the barrier memory of its (batch block, direction): one counter each
    (buffer (D, batch blocks)), or FLAGS one flag per hidden block (buffer (D, batch blocks,
    hidden blocks))."""
    i_n, i_b, i_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    o_k = tl.arange(0, BLOCK_HP)
    group = i_d * tl.num_programs(1) + i_b
    if FLAGS:
        p_group = barrier_ptr + group * tl.num_programs(0)
    else:
        p_group = barrier_ptr + group
    return i_n, i_b, i_d, o_n, o_k, p_group


@triton.jit
def _meet(p_count, arrivals, n_peers):
    """End of a phase: every peer's writes visible to every peer (a block barrier alone when
    there are no peers). The counter barrier: ``arrivals`` is the counter's target."""
    if n_peers > 1:
        grid_barrier(p_count, arrivals)
    else:
        tl.debug_barrier()


@triton.jit
def _sync(p_group, i_n, phase, n_peers, FLAGS: tl.constexpr, BLOCK_P: tl.constexpr):
    """A whole barrier at ``phase`` (1, 2, ...): _meet's counter, or FLAGS the flags."""
    if FLAGS:
        _arrive(p_group, i_n, phase, n_peers, FLAGS)
        _wait(p_group, phase, n_peers, FLAGS, BLOCK_P)
    else:
        _meet(p_group, phase * n_peers, n_peers)


@triton.jit
def _arrive(p_group, i_n, phase, n_peers, FLAGS: tl.constexpr):
    """The arrival half of a barrier at ``phase`` (nothing without peers: _wait's block barrier
    orders the block's own threads)."""
    if n_peers > 1:
        barrier_arrive(p_group, i_n, phase, FLAGS)


@triton.jit
def _wait(p_group, phase, n_peers, FLAGS: tl.constexpr, BLOCK_P: tl.constexpr):
    """The waiting half of a barrier at ``phase`` (a block barrier alone without peers)."""
    if n_peers > 1:
        barrier_wait(p_group, n_peers, phase, FLAGS, BLOCK_P)
    else:
        tl.debug_barrier()


@triton.jit
def _state_tile(p_base, o_b, o_k, B, H):
    """[HP, BB] = the transposed rows o_b (all H columns) of a (B, H) state at p_base, read with
    .cg: the peers' fresh values from L2, never a stale L1 line."""
    m = (o_k[:, None] < H) & (o_b[None, :] < B)
    return tl.load(p_base + o_b[None, :] * H + o_k[:, None], mask=m, other=0.0, cache_modifier=".cg")


@triton.jit
def _gx_at(gx_ptr, lengths_ptr, i_b, i_n, i_d, s, B, H, stride_gx_t, stride_gx_b,
           BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """PREFETCH_GX: this program's gx tiles x_r, x_z, x_n [BB, BH] of step s (nothing read at s = T)."""
    o_b, live, t, o_n, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
    return fwd_gx(gx_ptr, o_b, t, o_n, m_live, i_d, H, stride_gx_t, stride_gx_b)


@triton.jit
def _recomputed_reset(
    h_t, whh_ptr, gx_ptr, lengths_ptr, hbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, n_peers, T, B, H, D,
    stride_gx_t, stride_gx_b, o_k,
    SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """RECOMPUTE_RESET: W_hn[own units, :] @ (r * h_{t-1}) [BLOCK_H, BLOCK_B] with the r of every
    unit computed here, one hidden block (chunk) of units at a time: W_hr's chunk rows (from
    global memory) times the state tile h_t [HP, BB], r and r * h_{t-1} of the chunk (the chunk's
    x_r and h_{t-1} read from global memory, h with .cg: the peers' fresh values), then
    W_hn[own units, chunk] (from global memory) times (r * h)^T. The chunk that is this program's
    own saves its r and r * h (SAVE), as the reset phase does."""
    p_w = whh_ptr + i_d * 3 * H * H
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_k = o_k < H
    acc_dtype = hbuf_ptr.dtype.element_ty
    zero = tl.zeros((BLOCK_H, BLOCK_B), dtype=acc_dtype)
    acc_n = zero
    for c in range(n_peers):
        o_b, live, t, o_c, m_tile, m_live = step_tile(i_b, c, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
        m_c = o_c < H
        w_rc = tl.load(p_w + o_c[:, None] * H + o_k[None, :], mask=m_c[:, None] & m_k[None, :], other=0.0)
        acc_r = dot_acc(w_rc, h_t, zero, MMA_LOWP, DOT_PRECISION)                       # [BH, BB]
        x_r, _, _ = fwd_gx(gx_ptr, o_b, t, o_c, m_live, i_d, H, stride_gx_t, stride_gx_b)
        p_h = hbuf_ptr + ((cur * D + i_d) * B + o_b[:, None]) * H + o_c[None, :]
        r, rh = fwd_reset_gate(tl.trans(acc_r), x_r, tl.load(p_h, mask=m_tile, other=0.0, cache_modifier=".cg"),
                               MMA_LOWP)                                                    # [BB, BH]
        if SAVE:
            if c == i_n:
                fwd_reset_save(r, rh, gates_ptr, o_b, live, t, o_c, m_tile, m_live, i_d, s, T, B, H)
        w_nc = tl.load(p_w + 2 * H * H + o_n[:, None] * H + o_c[None, :], mask=(o_n < H)[:, None] & m_c[None, :],
                       other=0.0)                                                           # [BH, BH(chunk)]
        acc_n = dot_acc(w_nc, tl.trans(rh), acc_n, MMA_LOWP, DOT_PRECISION)
    return acc_n


@triton.jit
def gru_fwd_persistent_kernel(
    gx_ptr, whh_ptr, bhn_ptr, lengths_ptr, hbuf_ptr, out_ptr, hprev_ptr, gates_ptr, barrier_ptr,
    T, B, H, D,
    stride_gx_t, stride_gx_b, stride_out_t, stride_out_b,
    HAS_BHN: tl.constexpr, SAVE: tl.constexpr, RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr,
    PREFETCH_GX: tl.constexpr = False, SPLIT_BARRIER: tl.constexpr = False, BARRIER_FLAGS: tl.constexpr = False,
    RECOMPUTE_RESET: tl.constexpr = False, BLOCK_P: tl.constexpr = 1,
):
    i_n, i_b, i_d, o_n, o_k, p_group = _program(barrier_ptr, BARRIER_FLAGS, BLOCK_H, BLOCK_HP)
    n_peers = tl.num_programs(0)
    PHASES: tl.constexpr = 1 if RESET_AFTER or RECOMPUTE_RESET else 2
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    w_r, w_z, w_n = _weight_tiles(whh_ptr, i_d, o_n, o_k, H, H, 1)  # [BH, HP], resident
    acc_dtype = hbuf_ptr.dtype.element_ty
    zero = tl.zeros((BLOCK_H, BLOCK_B), dtype=acc_dtype)
    if PREFETCH_GX:  # step 0's gx; each step loads the next one's before its closing barrier
        x_r, x_z, x_n = _gx_at(gx_ptr, lengths_ptr, i_b, i_n, i_d, 0, B, H, stride_gx_t, stride_gx_b, BLOCK_B, BLOCK_H)
    for s in range(T):
        cur = s % 2
        h_t = _state_tile(hbuf_ptr + (cur * D + i_d) * B * H, o_b, o_k, B, H)   # [HP, BB] = h_{t-1}^T
        acc_r = dot_acc(w_r, h_t, zero, MMA_LOWP, DOT_PRECISION)
        acc_z = dot_acc(w_z, h_t, zero, MMA_LOWP, DOT_PRECISION)
        if RESET_AFTER:
            acc_n = dot_acc(w_n, h_t, zero, MMA_LOWP, DOT_PRECISION)
        elif RECOMPUTE_RESET:
            acc_n = _recomputed_reset(h_t, whh_ptr, gx_ptr, lengths_ptr, hbuf_ptr, gates_ptr,
                                      i_b, i_n, i_d, s, cur, n_peers, T, B, H, D, stride_gx_t, stride_gx_b,
                                      o_k, SAVE, MMA_LOWP, DOT_PRECISION, BLOCK_B, BLOCK_H)
        else:
            if PREFETCH_GX:
                tb, live, t, tn, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
                r, rh = fwd_reset_state(tl.trans(acc_r), x_r, hbuf_ptr, tb, tn, m_tile, i_d, cur, B, H, D, MMA_LOWP)
                if SAVE:
                    fwd_reset_save(r, rh, gates_ptr, tb, live, t, tn, m_tile, m_live, i_d, s, T, B, H)
            else:
                fwd_reset_finish(tl.trans(acc_r), gx_ptr, lengths_ptr, hbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur,
                                 T, B, H, D, stride_gx_t, stride_gx_b, SAVE, MMA_LOWP, BLOCK_B, BLOCK_H)
            _sync(p_group, i_n, s * PHASES + 1, n_peers, BARRIER_FLAGS, BLOCK_P)  # every unit's r * h_{t-1} written
            rh_t = _state_tile(hbuf_ptr + (2 * D + i_d) * B * H, o_b, o_k, B, H)
            acc_n = dot_acc(w_n, rh_t, zero, MMA_LOWP, DOT_PRECISION)
        tb, live, t, tn, m_tile, m_live = step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B, BLOCK_H, i_d == 1)
        if not PREFETCH_GX:
            x_r, x_z, x_n = fwd_gx(gx_ptr, tb, t, tn, m_live, i_d, H, stride_gx_t, stride_gx_b)
        r, z, n, hn, h_old, h_new = fwd_state(tl.trans(acc_r), tl.trans(acc_z), tl.trans(acc_n), x_r, x_z, x_n,
                                              bhn_ptr, hbuf_ptr, tb, tn, m_tile, m_live, i_d, cur, B, H, D,
                                              HAS_BHN, RESET_AFTER, MMA_LOWP)
        if SPLIT_BARRIER:  # h_t is out: the peers may go on while the outputs are stored
            _arrive(p_group, i_n, (s + 1) * PHASES, n_peers, BARRIER_FLAGS)
        fwd_outputs(r, z, n, hn, h_old, h_new, out_ptr, hprev_ptr, gates_ptr, tb, live, t, tn, m_tile, m_live,
                    i_d, s, T, B, H, stride_out_t, stride_out_b, SAVE, RESET_AFTER)
        if PREFETCH_GX:
            x_r, x_z, x_n = _gx_at(gx_ptr, lengths_ptr, i_b, i_n, i_d, s + 1, B, H, stride_gx_t, stride_gx_b,
                                   BLOCK_B, BLOCK_H)
        # Ping-pong state: one barrier per step suffices (no peer can still be reading the
        # buffer written next step once all have arrived here; nor the r * h slot, RESET_AFTER=False).
        if SPLIT_BARRIER:
            _wait(p_group, (s + 1) * PHASES, n_peers, BARRIER_FLAGS, BLOCK_P)
        else:
            _sync(p_group, i_n, (s + 1) * PHASES, n_peers, BARRIER_FLAGS, BLOCK_P)


@triton.jit
def gru_bwd_persistent_kernel(
    dout_ptr, whh_ptr, lengths_ptr, dbuf_ptr, hprev_ptr, gates_ptr, dgx_ptr, dgh_ptr, barrier_ptr,
    T, B, H, D,
    stride_dout_t, stride_dout_b, stride_dgx_t, stride_dgx_b,
    RESET_AFTER: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HP: tl.constexpr,
    BARRIER_FLAGS: tl.constexpr = False, BLOCK_P: tl.constexpr = 1,
):
    i_n, i_b, i_d, o_n, o_k, p_group = _program(barrier_ptr, BARRIER_FLAGS, BLOCK_H, BLOCK_HP)
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
        _sync(p_group, i_n, step * PHASES + 1, n_peers, BARRIER_FLAGS, BLOCK_P)
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
            _sync(p_group, i_n, step * PHASES + 2, n_peers, BARRIER_FLAGS, BLOCK_P)  # every unit's da_r written
        acc = dot_acc(w_r, tl.load(p_dgh, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP, DOT_PRECISION)
        acc = dot_acc(w_z, tl.load(p_dgh + H, mask=m_dg, other=0.0, cache_modifier=".cg"), acc, MMA_LOWP, DOT_PRECISION)
        bwd_carry_finish(tl.trans(acc), dout_ptr, lengths_ptr, dbuf_ptr, gates_ptr, i_b, i_n, i_d, s, cur, T, B, H, D,
                         stride_dout_t, stride_dout_b, RESET_AFTER, BLOCK_B, BLOCK_H)
        tl.debug_barrier()  # this block's dh_{t-1} complete before the next step's gates read it
