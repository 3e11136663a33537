"""Launchers of the LSTM cell's kernels (nn.LSTMCell: no projection): one fused step forward
(both matmuls, the biases, the gates, h' and c'), and a backward of one elementwise launch (the
pre-activation gradients and dc) followed by GEMMs.

Saved for backward: i, f, g, o, c and c' (B, 6H) in the accumulator dtype. The cell follows
nn.LSTMCell's TF32 flag, cuda.matmul.allow_tf32, with plain TF32 (the GRU cell's rule).
"""

from .alloc import new_empty
from .gru_cell import _cell_dot_options, cell_forward, cell_plan
from .launch import launch
from .loader import kernels


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, save):
    """x (B, I), h (B, H), c (B, H), w_ih (4H, I), w_hh (4H, H), b_ih / b_hh (4H,) or None (both
    or neither) -> h' (B, H), c' (B, H) in x's dtype, gates (B, 6H) in the accumulator dtype
    (empty without ``save``): gru_cell.cell_forward with the LSTM's kernel and gate tiles."""
    (h_new, c_new), gates = cell_forward(kernels("lstm_cell").lstm_cell_fwd_kernel, x, (h, c), w_ih, w_hh, b_ih, b_hh,
                                         save, 6, "lstm")
    return h_new, c_new, gates


def lstm_cell_backward(dh_new, dc_new, x, h, w_ih, w_hh, gates):
    """dh_new, dc_new (B, H) or None (a zero gradient), the forward's inputs and saved gates ->
    dx, dh, dc in the inputs' dtype; dw_ih, dw_hh and db (4H,) in the weights' dtype (db is the
    gradient of b_ih and of b_hh alike).

    The elementwise kernel writes dg = [da_i, da_f, da_g, da_o] (B, 4H) in the accumulator dtype;
    the GEMMs take it in x's dtype (bf16/fp16 as nn.LSTMCell's own backward does; fp32 and fp64
    unchanged), db sums it in the accumulator dtype."""
    cell = kernels("lstm_cell")
    B, H = h.shape
    acc = gates.dtype
    dg = new_empty((B, 4 * H), acc, x.device)
    dc = new_empty((B, H), x.dtype, x.device)
    meta = dict(HAS_DH=dh_new is not None, HAS_DC=dc_new is not None, FAST=_cell_dot_options(w_hh)["MMA_LOWP"])

    def job(plan):
        return (cell.lstm_cell_bwd_kernel, (plan.batch_blocks, plan.hidden_blocks),
                [dh_new if dh_new is not None else gates, dc_new if dc_new is not None else gates, gates, dg, dc, B, H],
                dict(meta, BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, num_warps=plan.num_warps))

    launch(*job(cell_plan(B, H, x.device, w_hh.dtype, job, "lstm")))
    dgx = dg if dg.dtype == x.dtype else dg.to(x.dtype)
    dx = dgx @ w_ih
    dh = dgx @ w_hh
    dw_ih = dgx.t() @ x
    dw_hh = dgx.t() @ h
    db = dg.sum(0).to(w_ih.dtype)
    return dx, dh, dc, dw_ih, dw_hh, db
