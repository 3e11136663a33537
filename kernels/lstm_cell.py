"""Fused LSTM cell (nn.LSTMCell: no projection): one step's two matmuls, biases and gate math in
a single launch, and the elementwise half of its backward.

  x (B, I), h (B, H), c (B, H), w_ih (4H, I), w_hh (4H, H), b_ih / b_hh (4H,)
      -> h' (B, H), c' (B, H) in x's dtype; c is carried in the accumulator dtype inside.
  gates (B, 6H) in the accumulator dtype, written when SAVE: i, f, g, o, c, c' (the layer's
      saved slots without its m), all the backward needs.
Forward grid (batch blocks, hidden blocks). The backward's kernel turns dh' and dc' (either may
be absent) into the pre-activation gradients [da_i, da_f, da_g, da_o] (B, 4H) and dc; the
launcher's GEMMs give dx, dh and the weight gradients from them.

The gate math is kernels/lstm_common.py's, shared with every LSTM layer kernel.
"""

import triton
import triton.language as tl

from .gru_common import state_matmul, store_slots
from .lstm_common import lstm_gate_grads, lstm_gate_math, lstm_saved_gates


@triton.jit
def gate_columns(i_n, H, GATES: tl.constexpr, BLOCK_H: tl.constexpr):
    """The weight rows one hidden block needs, as GATES * BLOCK_H columns of a wide tile, gate
    major: column j is unit i_n * BLOCK_H + j % BLOCK_H of gate j // BLOCK_H, i.e. row
    (j // BLOCK_H) * H + unit of a gate-stacked weight (W_ih, W_hh, the biases). Returns the rows
    and their mask. One dot over these columns computes every gate of the block at once
    (N = GATES * BLOCK_H) with gru_common.state_matmul as it is; ``split_gates4`` takes the
    LSTM's four apart. GATES * BLOCK_H must be a power of two (tl.arange)."""
    o_j = tl.arange(0, GATES * BLOCK_H)
    unit = i_n * BLOCK_H + o_j % BLOCK_H
    return (o_j // BLOCK_H) * H + unit, unit < H


@triton.jit
def split_gates4(acc, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """A [BLOCK_B, 4 * BLOCK_H] tile laid out by gate_columns (GATES = 4) as its four gates'
    [BLOCK_B, BLOCK_H] tiles, in gate order. Gate 2a + b's columns are viewed as [a, b, unit],
    moved to [unit, a, b] and split on b, then on a (tl.split halves a last dimension of 2).
    (Compiled for sm_90 with Triton 3.6 against a unit-major column order, whose split needs no
    permute: fewer registers all the same, 168 against 202 for bf16 at B = 1.)"""
    quads = tl.permute(tl.reshape(acc, (BLOCK_B, 2, 2, BLOCK_H)), (0, 3, 1, 2))
    even, odd = tl.split(quads)  # b = 0: gates 0, 2; b = 1: gates 1, 3
    g0, g2 = tl.split(even)
    g1, g3 = tl.split(odd)
    return g0, g1, g2, g3


@triton.jit
def lstm_cell_fwd_kernel(
    x_ptr, h_ptr, c_ptr, wih_ptr, whh_ptr, bih_ptr, bhh_ptr, hout_ptr, cout_ptr, gates_ptr,
    B, I, H,
    stride_x_b, stride_h_b, stride_c_b, stride_hout_b, stride_cout_b,
    HAS_BIAS: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program: the rows of batch block program_id(0) and the units of hidden block
    program_id(1), all four gates. Both matmuls accumulate into one [BLOCK_B, 4 * BLOCK_H] tile
    (x @ W_ih^T over K = I, then h @ W_hh^T over K = H), streamed over K in BLOCK_K steps.
    Rows of x, h, c, h' and c' are their stride_*_b apart."""
    i_b = tl.program_id(0)
    i_n = tl.program_id(1)
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    m_b = o_b < B
    ACC_DTYPE = gates_ptr.dtype.element_ty
    rows, m_rows = gate_columns(i_n, H, 4, BLOCK_H)
    acc = tl.zeros((BLOCK_B, 4 * BLOCK_H), dtype=ACC_DTYPE)
    acc = state_matmul(x_ptr + o_b[:, None] * stride_x_b, m_b, wih_ptr + rows[None, :].to(tl.int64) * I, 1, m_rows,
                       I, acc, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    acc = state_matmul(h_ptr + o_b[:, None] * stride_h_b, m_b, whh_ptr + rows[None, :].to(tl.int64) * H, 1, m_rows,
                       H, acc, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    if HAS_BIAS:
        bias = tl.load(bih_ptr + rows, mask=m_rows, other=0.0).to(ACC_DTYPE) + \
            tl.load(bhh_ptr + rows, mask=m_rows, other=0.0).to(ACC_DTYPE)
        acc += bias[None, :]
    a_i, a_f, a_g, a_o = split_gates4(acc, BLOCK_B, BLOCK_H)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_tile = m_b[:, None] & (o_n < H)[None, :]
    c_old = tl.load(c_ptr + o_b[:, None] * stride_c_b + o_n[None, :], mask=m_tile, other=0.0).to(ACC_DTYPE)
    i, f, g, o, c_new, tc = lstm_gate_math(a_i, a_f, a_g, a_o, c_old, MMA_LOWP)  # FAST where bf16/fp16
    p_h = hout_ptr + o_b[:, None] * stride_hout_b + o_n[None, :]
    p_c = cout_ptr + o_b[:, None] * stride_cout_b + o_n[None, :]
    tl.store(p_h, (o * tc).to(hout_ptr.dtype.element_ty), mask=m_tile)
    tl.store(p_c, c_new.to(cout_ptr.dtype.element_ty), mask=m_tile)
    if SAVE:
        p_g = gates_ptr + o_b[:, None] * 6 * H + o_n[None, :]
        store_slots(p_g, H, i, f, g, o, m_tile, 4)
        store_slots(p_g + 4 * H, H, c_old, c_new, c_new, c_new, m_tile, 2)


@triton.jit
def lstm_cell_bwd_kernel(
    dh_ptr, dc_ptr, gates_ptr, dg_ptr, dcold_ptr,
    B, H,
    HAS_DH: tl.constexpr, HAS_DC: tl.constexpr, FAST: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Elementwise: from dh' and dc' (contiguous (B, H); absent ones are zero: HAS_DH / HAS_DC)
    and the saved gates, dg (B, 4H) = [da_i, da_f, da_g, da_o] in the accumulator dtype and
    dc (B, H) in dcold_ptr's dtype. Grid (batch blocks, hidden blocks)."""
    i_b = tl.program_id(0)
    i_n = tl.program_id(1)
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_tile = (o_b < B)[:, None] & (o_n < H)[None, :]
    ACC_DTYPE = dg_ptr.dtype.element_ty
    p_s = o_b[:, None] * H + o_n[None, :]
    i, f, g, o, c_old, tc = lstm_saved_gates(gates_ptr + o_b[:, None] * 6 * H + o_n[None, :], H, m_tile, FAST)
    zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC_DTYPE)
    dm = zero
    if HAS_DH:
        dm = tl.load(dh_ptr + p_s, mask=m_tile, other=0.0).to(ACC_DTYPE)
    dc_in = zero
    if HAS_DC:
        dc_in = tl.load(dc_ptr + p_s, mask=m_tile, other=0.0).to(ACC_DTYPE)
    da_i, da_f, da_g, da_o, dc_old = lstm_gate_grads(dm, dc_in, i, f, g, o, c_old, tc)
    store_slots(dg_ptr + o_b[:, None] * 4 * H + o_n[None, :], H, da_i, da_f, da_g, da_o, m_tile, 4)
    tl.store(dcold_ptr + p_s, dc_old.to(dcold_ptr.dtype.element_ty), mask=m_tile)
