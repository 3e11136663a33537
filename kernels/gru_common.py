"""Helpers shared by the GRU kernels: the rows of a batch block at a step, the MMA step with
its operand dtypes, and the grid barriers of the persistent strategy: one counter per group of
programs (grid_barrier), or an arrive / wait pair over a counter or one flag per program
(barrier_arrive, barrier_wait) (activations: activations.py)."""

import triton
import triton.language as tl


@triton.jit
def step_rows(i_b, s, lengths_ptr, B, BLOCK_B: tl.constexpr, REVERSE):
    """Rows of batch block ``i_b`` at step ``s``: offsets, in-batch mask, "still running" mask
    and each row's time index (a reverse direction starts each row at its own last step)."""
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    m_b = o_b < B
    len_b = tl.load(lengths_ptr + o_b, mask=m_b, other=0)
    live = m_b & (s < len_b)
    t = tl.where(REVERSE, len_b - 1 - s, s)
    t = tl.maximum(t, 0).to(tl.int64)
    return o_b, m_b, live, t


@triton.jit
def step_tile(i_b, i_n, s, lengths_ptr, B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, REVERSE):
    """step_rows for the (batch block i_b, hidden block i_n) tile: the rows' offsets, running mask
    and time index, the tile's hidden units, and the masks of the tile's elements in range
    (m_tile) and of those whose row still runs (m_live)."""
    o_b, m_b, live, t = step_rows(i_b, s, lengths_ptr, B, BLOCK_B, REVERSE)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_n = o_n < H
    return o_b, live, t, o_n, m_b[:, None] & m_n[None, :], live[:, None] & m_n[None, :]


@triton.jit
def dot_acc(a, b, acc, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """acc += a @ b, where one operand is a weight tile and the other a state tile in the
    accumulator dtype (either order). MMA_LOWP: feed the tensor cores the weights' bf16/fp16
    with an fp32 accumulator; otherwise both operands are taken in the accumulator's dtype (the
    interpreter's bf16 arithmetic is wrong, so it always takes this path)."""
    if MMA_LOWP:
        if a.dtype == acc.dtype:
            return tl.dot(a.to(b.dtype), b, acc)
        return tl.dot(a, b.to(a.dtype), acc)
    return tl.dot(a.to(acc.dtype), b.to(acc.dtype), acc, input_precision=DOT_PRECISION, out_dtype=acc.dtype)


@triton.jit
def state_matmul(p_a, m_b, p_w, stride_wk, m_n, K, acc, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    """acc += a @ w for a tile, streamed over K in BLOCK_K blocks: a's rows at p_a ([BB, 1]
    pointers to K contiguous elements, rows masked by m_b), w's K rows at p_w + k * stride_wk
    (p_w: [1, BH] pointers, masked by m_n) -- W^T with stride_wk = 1 for W's rows, W's columns
    with stride_wk = row length."""
    for k in range(0, K, BLOCK_K):
        o_k = k + tl.arange(0, BLOCK_K)
        m_k = o_k < K
        b_a = tl.load(p_a + o_k[None, :], mask=m_b[:, None] & m_k[None, :], other=0.0)      # [BB, BK]
        b_w = tl.load(p_w + o_k[:, None] * stride_wk, mask=m_k[:, None] & m_n[None, :], other=0.0)  # [BK, BH]
        acc = dot_acc(b_a, b_w, acc, MMA_LOWP, DOT_PRECISION)
    return acc


@triton.jit
def store_slots(p, H, v0, v1, v2, v3, mask, N: tl.constexpr):
    """The first N (1 to 4) of the tiles v0, v1, v2, v3 into slots p, p + H, p + 2H, p + 3H: the
    gate-stacked layout of the saved gates and of their gradients. The tiles past N are not
    stored (pass any, e.g. v0 again)."""
    tl.store(p, v0, mask=mask)
    if N > 1:
        tl.store(p + H, v1, mask=mask)
    if N > 2:
        tl.store(p + 2 * H, v2, mask=mask)
    if N > 3:
        tl.store(p + 3 * H, v3, mask=mask)


@triton.jit
def store_step(p, t, s, stride_t, H, v0, v1, v2, v3, m_live, m_pad, N: tl.constexpr):
    """store_slots into a per-time-step buffer at step s: p holds the tile's [rows, units]
    pointers at time index 0, stride_t apart between time indices. The tiles go to each running
    row's time index t (m_live); zeros go to time index s of the rows that have stopped (m_pad:
    step_tile's m_tile & ~live), so that over the steps every padded position is written once."""
    t_pad = tl.zeros_like(t) + s  # int64: s * stride_t would be an int32 product
    store_slots(p + t[:, None] * stride_t, H, v0, v1, v2, v3, m_live, N)
    zero = tl.zeros_like(v0)
    store_slots(p + t_pad[:, None] * stride_t, H, zero, zero, zero, zero, m_pad, N)


@triton.jit
def store_h_outputs(
    h_new, h_old, out_ptr, hprev_ptr, o_b, t, o_n, m_live, m_pad, i_d, s, T, B, H,
    stride_out_t, stride_out_b, SAVE: tl.constexpr,
):
    """h_t of a tile of the recurrent state (H units o_n, the GRU's hidden or the LSTM's h) into
    out (T, B, D*H) or batch-first via strides, and, SAVE, h_{t-1} into hprev (D, T, B, H); both
    zero at padded positions (store_step), hprev so that the dW_hh GEMM over all (t, b) needs no
    mask."""
    p_out = out_ptr + o_b[:, None] * stride_out_b + i_d * H + o_n[None, :]
    h_out = h_new.to(out_ptr.dtype.element_ty)
    store_step(p_out, t, s, stride_out_t, H, h_out, h_out, h_out, h_out, m_live, m_pad, 1)
    if SAVE:
        p_hprev = hprev_ptr + (i_d * T * B + o_b[:, None]) * H + o_n[None, :]
        store_step(p_hprev, t, s, B * H, H, h_old, h_old, h_old, h_old, m_live, m_pad, 1)


@triton.jit
def _counter_wait(p_count, target):
    """Spin (acquire, gpu scope) until the counter at ``p_count`` reaches ``target``."""
    count = tl.atomic_add(p_count, 0, sem="acquire", scope="gpu")
    while count < target:
        count = tl.atomic_add(p_count, 0, sem="acquire", scope="gpu")


@triton.jit
def barrier_arrive(p_group, i_n, phase, FLAGS: tl.constexpr):
    """This program's arrival at ``phase`` (1, 2, 3, ...: monotonic) of the barrier whose group
    memory starts at ``p_group``, after a block barrier (every thread's prior writes are the
    program's). FLAGS=False: one release-add to the group's counter at p_group (every peer adds
    to the same word). FLAGS=True: a release-store of ``phase`` into this program's own flag
    p_group + i_n (no two programs write the same word; the store is an exchange because Triton's
    plain store has no release form)."""
    tl.debug_barrier()
    if FLAGS:
        tl.atomic_xchg(p_group + i_n, phase, sem="release", scope="gpu")
    else:
        tl.atomic_add(p_group, 1, sem="release", scope="gpu")


@triton.jit
def barrier_wait(p_group, n_peers, phase, FLAGS: tl.constexpr, BLOCK_P: tl.constexpr):
    """Wait (acquire spin, gpu scope) until every one of the group's ``n_peers`` programs has
    arrived at ``phase``, then a block barrier: what they wrote before arriving is visible to
    every thread of this program. FLAGS=False: the counter at p_group reaches phase * n_peers.
    FLAGS=True: every flag p_group[0:n_peers] holds phase or more, polled together as one vector
    (BLOCK_P: n_peers padded to a power of two). A flag is never more than one phase ahead of a
    waiter's, and phases only grow, so ">=" is exact."""
    if FLAGS:
        o_p = tl.arange(0, BLOCK_P)
        m_p = o_p < n_peers
        # The loop carries the scalar least flag, not the polled vector: Triton 3.6 fails to
        # compile a while loop that carries a tensor here (RemoveLayoutConversions).
        least = tl.min(tl.where(m_p, tl.atomic_add(p_group + o_p, 0, mask=m_p, sem="acquire", scope="gpu"), phase), 0)
        while least < phase:
            least = tl.min(tl.where(m_p, tl.atomic_add(p_group + o_p, 0, mask=m_p, sem="acquire", scope="gpu"), phase), 0)
    else:
        _counter_wait(p_group, phase * n_peers)
    tl.debug_barrier()


@triton.jit
def grid_barrier(p_count, target):
    """Wait until ``target`` arrivals have been counted at ``p_count`` (a monotonic int32 counter
    shared by the programs that must meet), after adding this program's own arrival.
    Block barrier, release-add, acquire-spin, block barrier: all of this program's prior writes
    are visible to every program that passes the barrier. Every participating program must be
    resident at once (cooperative launch), or this deadlocks."""
    barrier_arrive(p_count, 0, 0, False)
    _counter_wait(p_count, target)
    tl.debug_barrier()
