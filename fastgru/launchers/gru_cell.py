"""Launchers of the GRU cell's kernels: one fused step forward (both matmuls and the gates);
the backward is the recurrence's gate-gradient kernel with T = 1, followed by GEMMs.

Saved for backward: r, z, n and W_hn h + b_hn (B, 4H) in the accumulator dtype.
"""

import torch

from .alloc import new_empty
from .gru_layer import acc_dtype, dot_options
from .launch import launch, resources
from .loader import kernels
from .plan import plan_gru


def _cell_dot_options(w_hh):
    """The cell follows nn.GRUCell's flag, cuda.matmul.allow_tf32 (nn.GRUCell runs through
    cuBLAS, which follows it; off by default): plain TF32 exactly when cuBLAS uses it."""
    return dot_options(w_hh, "matmul", "tf32")


def cell_plan(B, H, device, dtype, job, family="gru"):
    """A cell's stepwise plan (one step, D = 1) for ``family``'s gate tiles; ``job(plan)``, the
    launch of a candidate plan, is compiled for the fit."""
    return plan_gru(B, H, 1, device, "stepwise", dtype, resources=lambda p: resources(*job(p)), family=family)


def cell_forward(kernel, x, states, w_ih, w_hh, b_ih, b_hh, save, slots, family="gru"):
    """The fused forward step of a gated cell (the GRU's and the LSTM's): x (B, I), ``states``
    (the GRU's h; the LSTM's h, c), each (B, H) -> one new (B, H) tensor per state in x's dtype,
    and gates (B, slots * H) in the accumulator dtype (empty without ``save``: the empty buffer
    still tells the kernel the accumulator dtype). ``kernel`` takes x, the states, w_ih, w_hh,
    b_ih, b_hh (x again without bias), the new states, gates, B, I, H, then the row strides of x,
    of the states and of the new states."""
    B, I = x.shape
    H = w_hh.shape[1]
    new = [new_empty((B, H), x.dtype, x.device) for _ in states]
    gates = new_empty((B, slots * H) if save else (0,), acc_dtype(x.dtype), x.device)
    has_bias = b_ih is not None
    meta = dict(HAS_BIAS=has_bias, SAVE=save, **_cell_dot_options(w_hh))

    def job(plan):
        return (kernel, (plan.batch_blocks, plan.hidden_blocks),
                [x, *states, w_ih, w_hh, b_ih if has_bias else x, b_hh if has_bias else x, *new, gates,
                 B, I, H, *(t.stride(0) for t in (x, *states, *new))],
                dict(meta, num_warps=plan.num_warps, **plan.blocks()))

    launch(*job(cell_plan(B, H, x.device, w_hh.dtype, job, family)))
    return new, gates


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, save):
    """x (B, I), h (B, H) -> h' (B, H) in x's dtype and, with ``save``, gates (B, 4H): cell_forward."""
    (out,), gates = cell_forward(kernels("gru_cell").gru_cell_fwd_kernel, x, (h,), w_ih, w_hh, b_ih, b_hh, save, 4)
    return out, gates


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, gates):
    bwd = kernels("gru_backward")
    B, H = h.shape
    acc = gates.dtype
    plan = plan_gru(B, H, 1, x.device, "stepwise")
    dbuf = torch.zeros((2, 1, B, H), dtype=acc, device=x.device)
    hprev = h.to(acc).contiguous()
    dgx = new_empty((1, B, 3 * H), x.dtype, x.device)
    dgh = new_empty((1, 1, B, 3 * H), acc, x.device)
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
