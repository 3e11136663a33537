"""Fused GRU cell: both matmuls and the gate math of one step in a single launch (decoding).

  x (B, I), h (B, H), w_ih (3H, I), w_hh (3H, H), b_ih / b_hh (3H,) -> h_new (B, H)
  gates (B, 4H): r, z, n and W_hn h + b_hn, written when SAVE (for backward, which reuses
  the recurrence's gate-gradient kernel with T = 1).
Grid (batch blocks, hidden blocks).
"""

import triton
import triton.language as tl

from .activations import sigmoid, tanh
from .gru_common import dot_acc, store_slots


@triton.jit
def _gate_matmul(p_a, m_row, p_w, m_n, K, stride_w_gate, acc_r, acc_z, acc_n,
                 MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    """acc_g += a @ W_g^T for the r, z, n row blocks of W (rows p_w, K columns)."""
    for k in range(0, K, BLOCK_K):
        o_k = k + tl.arange(0, BLOCK_K)
        m_k = o_k < K
        b_a = tl.load(p_a + o_k[None, :], mask=m_row[:, None] & m_k[None, :], other=0.0).to(acc_r.dtype)
        m_w = m_k[:, None] & m_n[None, :]
        acc_r = dot_acc(b_a, tl.load(p_w + o_k[:, None], mask=m_w, other=0.0), acc_r, MMA_LOWP, DOT_PRECISION)
        acc_z = dot_acc(b_a, tl.load(p_w + stride_w_gate + o_k[:, None], mask=m_w, other=0.0), acc_z, MMA_LOWP, DOT_PRECISION)
        acc_n = dot_acc(b_a, tl.load(p_w + 2 * stride_w_gate + o_k[:, None], mask=m_w, other=0.0), acc_n, MMA_LOWP, DOT_PRECISION)
    return acc_r, acc_z, acc_n


@triton.jit
def gru_cell_fwd_kernel(
    x_ptr, h_ptr, wih_ptr, whh_ptr, bih_ptr, bhh_ptr, out_ptr, gates_ptr,
    B, I, H,
    stride_x_b, stride_h_b, stride_out_b,
    HAS_BIAS: tl.constexpr, SAVE: tl.constexpr, MMA_LOWP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    i_b = tl.program_id(0)
    i_n = tl.program_id(1)
    o_b = (i_b * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    m_b = o_b < B
    o_n = i_n * BLOCK_H + tl.arange(0, BLOCK_H)
    m_n = o_n < H
    ACC_DTYPE = gates_ptr.dtype.element_ty
    zero = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC_DTYPE)
    # Input side and hidden side kept apart: n needs r * (W_hn h + b_hn) alone.
    xi_r, xi_z, xi_n = _gate_matmul(x_ptr + o_b[:, None] * stride_x_b, m_b, wih_ptr + o_n[None, :] * I, m_n,
                                    I, H * I, zero, zero, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    hh_r, hh_z, hh_n = _gate_matmul(h_ptr + o_b[:, None] * stride_h_b, m_b, whh_ptr + o_n[None, :] * H, m_n,
                                    H, H * H, zero, zero, zero, MMA_LOWP, DOT_PRECISION, BLOCK_K)
    if HAS_BIAS:
        for g in tl.static_range(3):
            b_i = tl.load(bih_ptr + g * H + o_n, mask=m_n, other=0.0).to(ACC_DTYPE)[None, :]
            b_h = tl.load(bhh_ptr + g * H + o_n, mask=m_n, other=0.0).to(ACC_DTYPE)[None, :]
            if g == 0:
                xi_r += b_i + b_h
            elif g == 1:
                xi_z += b_i + b_h
            else:
                xi_n += b_i
                hh_n += b_h
    r = sigmoid(xi_r + hh_r, MMA_LOWP)  # FAST math where the contract is bf16's / fp16's
    z = sigmoid(xi_z + hh_z, MMA_LOWP)
    n = tanh(xi_n + r * hh_n, MMA_LOWP)
    m_tile = m_b[:, None] & m_n[None, :]
    h_old = tl.load(h_ptr + o_b[:, None] * stride_h_b + o_n[None, :], mask=m_tile, other=0.0).to(ACC_DTYPE)
    h_new = (1.0 - z) * n + z * h_old
    tl.store(out_ptr + o_b[:, None] * stride_out_b + o_n[None, :], h_new.to(out_ptr.dtype.element_ty), mask=m_tile)
    if SAVE:
        store_slots(gates_ptr + o_b[:, None] * 4 * H + o_n[None, :], H, r, z, n, hh_n, m_tile, 4)
