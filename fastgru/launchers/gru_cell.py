"""Launchers of the GRU cell's kernels: one fused step forward (both matmuls and the gates);
the backward is the recurrence's gate-gradient kernel with T = 1, followed by GEMMs.

Saved for backward: r, z, n and W_hn h + b_hn (B, 4H) in the accumulator dtype.
"""

import torch

from .. import backend
from .gru_layer import acc_dtype, dot_options
from .launch import launch, resources
from .loader import kernels
from .plan import plan_gru


def _cell_dot_options(w_hh):
    """The cell follows nn.GRUCell's flag, cuda.matmul.allow_tf32 (nn.GRUCell runs through
    cuBLAS, which follows it; off by default): plain TF32 exactly when cuBLAS uses it."""
    return dot_options(w_hh, "matmul", "tf32")


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, save):
    cell = kernels("gru_cell")
    B, I = x.shape
    H = w_hh.shape[1]
    acc = acc_dtype(x.dtype)
    out = backend.new_empty((B, H), x.dtype, x.device)
    # Without SAVE the kernel writes no gates; the empty buffer still tells it the accumulator dtype.
    gates = backend.new_empty((B, 4 * H) if save else (0,), acc, x.device)
    has_bias = b_ih is not None
    meta = dict(HAS_BIAS=has_bias, SAVE=save, **_cell_dot_options(w_hh))

    def job(plan):
        return (cell.gru_cell_fwd_kernel, (plan.batch_blocks, plan.hidden_blocks),
                [x, h, w_ih, w_hh, b_ih if has_bias else x, b_hh if has_bias else x, out, gates,
                 B, I, H, x.stride(0), h.stride(0), out.stride(0)],
                dict(meta, num_warps=plan.num_warps, **plan.blocks()))

    launch(*job(plan_gru(B, H, 1, x.device, "stepwise", w_hh.dtype, resources=lambda p: resources(*job(p)))))
    return out, gates


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, gates):
    bwd = kernels("gru_backward")
    B, H = h.shape
    acc = gates.dtype
    plan = plan_gru(B, H, 1, x.device, "stepwise")
    dbuf = torch.zeros((2, 1, B, H), dtype=acc, device=x.device)
    hprev = h.to(acc).contiguous()
    dgx = backend.new_empty((1, B, 3 * H), x.dtype, x.device)
    dgh = backend.new_empty((1, 1, B, 3 * H), acc, x.device)
    lengths = torch.ones(B, dtype=torch.int64, device=x.device)
    launch(
        bwd.gru_bwd_gates_kernel, (plan.batch_blocks, plan.hidden_blocks, 1),
        [dh_new, lengths, dbuf, hprev, gates, dgx, dgh, 0, 0, 1, B, H, 1, 0, dh_new.stride(0), 0, dgx.stride(1)],
        dict(RESET_AFTER=True, BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, num_warps=plan.num_warps),
    )
    dgx, dgh = dgx[0], dgh[0, 0]
    z = gates[:, H : 2 * H]
    dh = dh_new.to(acc) * z + dgh @ w_hh.to(acc)
    dx = dgx @ w_ih
    dw_ih = dgx.t() @ x
    dw_hh = dgh.t() @ hprev
    return dx, dh.to(h.dtype), dw_ih, dw_hh.to(w_hh.dtype), dgx.sum(0, dtype=acc).to(w_ih.dtype), dgh.sum(0).to(w_hh.dtype)
