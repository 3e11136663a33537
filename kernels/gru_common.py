"""Helpers shared by the GRU kernels: the rows of a batch block at a step, the MMA step with
its operand dtypes, and the grid barrier of the persistent strategy (activations:
activations.py)."""

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
def grid_barrier(p_count, target):
    """Wait until ``target`` arrivals have been counted at ``p_count`` (a monotonic int32 counter
    shared by the programs that must meet), after adding this program's own arrival.
    Block barrier, release-add, acquire-spin, block barrier: all of this program's prior writes
    are visible to every program that passes the barrier. Every participating program must be
    resident at once (cooperative launch), or this deadlocks."""
    tl.debug_barrier()
    tl.atomic_add(p_count, 1, sem="release", scope="gpu")
    count = tl.atomic_add(p_count, 0, sem="acquire", scope="gpu")
    while count < target:
        count = tl.atomic_add(p_count, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()
