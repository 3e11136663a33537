"""autograd.Functions for the GRU recurrence, and the launchers that run its kernels.

One layer, all its directions in one launch. Around the recurrence kernels, the work that is a
large matrix product runs as one (cuBLAS on GPU):
  forward   gx = x @ W_ih^T + b_ih + [b_hr, b_hz, 0]          (all steps, all directions)
  backward  dx = dgx @ W_ih,  dW_ih = dgx^T x,  dW_hh = dgh^T h_prev,  db = sums of dgx / dgh

Saved for backward (not recomputed): the gates r, z, n and W_hn h + b_hn of every step, and the
state entering every step (h_prev), in the accumulator dtype (fp32; fp64 for fp64 inputs).
Recomputing them would mean re-running the sequential recurrence, the expensive part; h_prev is
needed for dW_hh anyway. Cost: 5 * D * T * B * H accumulator elements per layer.
"""

from typing import Optional

import torch
from torch import Tensor
import torch.nn.functional as F

from . import backend
from .dispatch import plan_gru
from .launch import launch, resources

_LOWP = (torch.float16, torch.bfloat16)


def _kernels():
    # Imported on first use: triton.jit must see TRITON_INTERPRET as backend.py set it.
    from .kernels import gru_backward, gru_forward, gru_persistent

    return gru_forward, gru_backward, gru_persistent


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dot_options(w: torch.Tensor, cell: bool = False) -> dict:
    """Matmul precision inside the kernels; bf16/fp16 feed the tensor cores directly, fp32
    accumulate. fp32 follows the flag of the PyTorch module it replaces, never less accurate:
      layer  torch.backends.cudnn.allow_tf32 (nn.GRU's flag). cuDNN decides per shape whether it
             really uses TF32 (measured on an H100: full fp32 at T=96, I=64, H=256), so the layer
             takes 3xTF32 ("tf32x3": tensor cores, fp32-level error) rather than plain TF32,
             which would be 1000x worse than nn.GRU wherever cuDNN stayed in fp32.
      cell   torch.backends.cuda.matmul.allow_tf32 (nn.GRUCell runs through cuBLAS, which
             follows it; off by default): plain TF32 exactly when cuBLAS uses it."""
    lowp = w.dtype in _LOWP and not backend.INTERPRET
    allow = torch.backends.cuda.matmul.allow_tf32 if cell else torch.backends.cudnn.allow_tf32
    tf32 = backend.on_gpu(w) and w.dtype == torch.float32 and allow
    precision = ("tf32" if cell else "tf32x3") if tf32 else "ieee"
    return {"MMA_LOWP": lowp, "DOT_PRECISION": precision}


def _time_batch_strides(t: torch.Tensor, batch_first: bool):
    return (t.stride(1), t.stride(0)) if batch_first else (t.stride(0), t.stride(1))


def _folded_input_bias(b_ih, b_hh, D, H):
    """b_ih + [b_hr, b_hz, 0] per direction: the part of the bias that can ride on the GEMM."""
    if b_ih is None:
        return None
    b_hh_rz = b_hh.view(D, 3, H).clone()
    b_hh_rz[:, 2] = 0
    return b_ih + b_hh_rz.reshape(-1)


def gru_layer_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy=None):
    """Run one layer (all directions) through the kernels.

    x (T, B, I) or (B, T, I); h0 (D, B, H); w_ih (D*3H, I); w_hh (D, 3H, H); b_ih (D*3H,) or None;
    b_hh (D, 3H) or None; lengths (B,) int64 on x's device.
    Returns out (like x with D*H features), h_n (D, B, H), and (h_prev, gates) when ``save``.
    """
    fwd, _, persistent = _kernels()
    D, H3, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    acc = _acc_dtype(x.dtype)

    gx = F.linear(x, w_ih, _folded_input_bias(b_ih, b_hh, D, H))
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    out = backend.new_empty(out_shape, x.dtype, x.device)
    hbuf = backend.new_empty((2, D, B, H), acc, x.device)
    hbuf[0].copy_(h0)
    if save:
        hprev = backend.new_empty((D, T, B, H), acc, x.device)
        gates = backend.new_empty((D, T, B, 4 * H), acc, x.device)
    else:
        hprev = gates = hbuf  # never written (SAVE=False)
    bhn = b_hh.view(D, 3, H)[:, 2].contiguous() if b_hh is not None else hbuf

    args = [gx, w_hh, bhn, lengths, hbuf, out, hprev, gates]
    sizes = [T, B, H, D, *_time_batch_strides(gx, batch_first), *_time_batch_strides(out, batch_first)]
    meta = dict(HAS_BHN=b_hh is not None, SAVE=save, **_dot_options(w_hh))

    def job(plan, s=0):
        """The launch (kernel, grid, args, meta) of ``plan``; stepwise: its step ``s``."""
        m = dict(meta, **plan.blocks(), num_warps=plan.num_warps)
        if plan.strategy == "rows":
            return fwd.gru_fwd_rows_kernel, (plan.batch_blocks, D), [*args, *sizes], m
        if plan.strategy == "persistent":
            counters = torch.zeros(plan.batch_blocks * D, dtype=torch.int32, device=x.device)
            return (persistent.gru_fwd_persistent_kernel, (plan.hidden_blocks, plan.batch_blocks, D),
                    [*args, counters, *sizes], dict(m, launch_cooperative_grid=True))
        return fwd.gru_fwd_step_kernel, (plan.batch_blocks, plan.hidden_blocks, D), [*args, s, *sizes], m

    plan = plan_gru(B, H, D, x.device, strategy, w_hh.dtype, resources=lambda p: resources(*job(p)))
    for s in range(T if plan.strategy == "stepwise" else 1):
        launch(*job(plan, s))
    h_n = hbuf[T % 2].to(x.dtype, copy=True)  # a fresh tensor, not a view into the scratch buffer
    return out, h_n, (hprev, gates)


def gru_layer_backward(dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, batch_first, strategy=None):
    """Reverse-time kernels, then the GEMMs. Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh
    (bias gradients in the accumulator dtype; the caller casts). The strategy is planned anew:
    the saved state's layout is the same whichever strategy ran the forward."""
    _, bwd, persistent = _kernels()
    D, H3, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    acc = gates.dtype

    dbuf = backend.new_empty((2, D, B, H), acc, x.device)
    dbuf[0].copy_(dh_n)
    dgx_shape = (B, T, D * H3) if batch_first else (T, B, D * H3)
    dgx = backend.new_empty(dgx_shape, x.dtype, x.device)
    dgh = backend.new_empty((D, T, B, H3), acc, x.device)
    dout = dout.contiguous() if dout.stride(-1) != 1 else dout
    d_strides = [*_time_batch_strides(dout, batch_first)]
    g_strides = [*_time_batch_strides(dgx, batch_first)]
    dot = _dot_options(w_hh)
    state = [lengths, dbuf, hprev, gates, dgx, dgh]
    sizes = [T, B, H, D, *d_strides, *g_strides]

    def job(plan, step=0):
        """The launch of ``plan``; stepwise: the matmul phase (carry) of reverse step ``step``,
        the kernel whose tiles the plan sizes."""
        blocks = plan.blocks()
        if plan.strategy == "rows":
            return (bwd.gru_bwd_rows_kernel, (plan.batch_blocks, D), [dout, w_hh, *state, *sizes],
                    dict(num_warps=plan.num_warps, **dot, **blocks))
        if plan.strategy == "persistent":
            counters = torch.zeros(plan.batch_blocks * D, dtype=torch.int32, device=x.device)
            return (persistent.gru_bwd_persistent_kernel, (plan.hidden_blocks, plan.batch_blocks, D),
                    [dout, w_hh, *state, counters, *sizes],
                    dict(num_warps=plan.backward_warps, launch_cooperative_grid=True, **dot, **blocks))
        s, cur = T - 1 - step, step % 2
        return (bwd.gru_bwd_carry_kernel, (plan.batch_blocks, plan.hidden_blocks, D),
                [dout, w_hh, lengths, dbuf, gates, dgh, s, cur, T, B, H, D, *d_strides],
                dict(num_warps=plan.num_warps, **dot, **blocks))

    fit = lambda p: resources(*job(p))  # noqa: E731
    try:
        plan = plan_gru(B, H, D, x.device, strategy, w_hh.dtype, resources=fit)
    except ValueError:
        if strategy != "persistent":
            raise
        # The forward held the shape but the backward kernel does not fit (it holds more live
        # state): the dispatcher's own choice runs the backward; the result is the same.
        plan = plan_gru(B, H, D, x.device, None, w_hh.dtype, resources=fit)
    if plan.strategy != "stepwise":
        launch(*job(plan))
    else:
        gates_tile = dict(num_warps=plan.num_warps, BLOCK_B=plan.block_b, BLOCK_H=plan.block_h)
        for step in range(T):
            s, cur = T - 1 - step, step % 2
            launch(bwd.gru_bwd_gates_kernel, (plan.batch_blocks, plan.hidden_blocks, D),
                   [dout, *state, s, cur, *sizes], gates_tile)
            launch(*job(plan, step))
    dh0 = dbuf[T % 2]

    flat_dgx = dgx.reshape(-1, D * H3)
    dx = (dgx @ w_ih).to(x.dtype)
    dw_ih = flat_dgx.t().to(x.dtype) @ x.reshape(-1, x.shape[-1])
    dw_hh = torch.bmm(dgh.reshape(D, -1, H3).transpose(1, 2), hprev.reshape(D, -1, H))
    db_ih = flat_dgx.sum(0, dtype=acc)
    db_hh = dgh.sum(dim=(1, 2))
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


@torch.library.custom_op("fastgru::gru_layer_fwd", mutates_args=())
def gru_layer_fwd(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    lengths: Tensor, batch_first: bool, save: bool, strategy: Optional[str],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    out, h_n, (hprev, gates) = gru_layer_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy)
    if not save:
        hprev, gates = x.new_empty(0), x.new_empty(0)
    return out, h_n, hprev, gates


@gru_layer_fwd.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy):
    D, _, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    out = x.new_empty((*x.shape[:2], D * H))
    acc = _acc_dtype(x.dtype)
    if not save:
        return out, x.new_empty((D, B, H)), x.new_empty(0), x.new_empty(0)
    return out, x.new_empty((D, B, H)), x.new_empty((D, T, B, H), dtype=acc), x.new_empty((D, T, B, 4 * H), dtype=acc)


@torch.library.custom_op("fastgru::gru_layer_bwd", mutates_args=())
def gru_layer_bwd(
    dout: Tensor, dh_n: Tensor, x: Tensor, w_ih: Tensor, w_hh: Tensor, lengths: Tensor,
    hprev: Tensor, gates: Tensor, batch_first: bool, strategy: Optional[str],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_layer_backward(
        dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, batch_first, strategy
    )
    wd = w_hh.dtype
    return dx, dh0.to(x.dtype, copy=True), dw_ih.to(wd), dw_hh.to(wd), db_ih.to(wd), db_hh.to(wd)


@gru_layer_bwd.register_fake
def _(dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, batch_first, strategy):
    D, H3, _ = w_hh.shape
    return (
        torch.empty_like(x), x.new_empty(dh_n.shape), torch.empty_like(w_ih), torch.empty_like(w_hh),
        w_hh.new_empty(D * H3), w_hh.new_empty((D, H3)),
    )


def _gru_layer_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy = inputs
    _, _, hprev, gates = output
    ctx.save_for_backward(x, w_ih, w_hh, lengths, hprev, gates)
    ctx.batch_first, ctx.strategy, ctx.has_bias = batch_first, strategy, b_ih is not None


def _gru_layer_backward(ctx, dout, dh_n, _dhprev, _dgates):
    x, w_ih, w_hh, lengths, hprev, gates = ctx.saved_tensors
    if hprev.numel() == 0 and x.numel() > 0:
        raise RuntimeError("fastgru: backward through a GRU forward that ran without saving (save=False)")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_layer_bwd(
        dout.contiguous(), dh_n.contiguous(), x, w_ih, w_hh, lengths, hprev, gates, ctx.batch_first, ctx.strategy
    )
    if not ctx.has_bias:
        db_ih = db_hh = None
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None


gru_layer_fwd.register_autograd(_gru_layer_backward, setup_context=_gru_layer_setup)


def gru_layer_op(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, strategy=None):
    """Differentiable one-layer GRU through the kernels (see gru_layer_forward for shapes).
    Saves for backward only when a gradient can flow."""
    tensors = (x, h0, w_ih, w_hh, b_ih, b_hh)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, h_n, _, _ = gru_layer_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy)
    return out, h_n


# ---------------------------------------------------------------------------------------------
# GRUCell: fused single-step forward; backward = the recurrence's gate-gradient kernel (T = 1)
# followed by GEMMs. Saved: r, z, n and W_hn h + b_hn (B, 4H) in the accumulator dtype.
# ---------------------------------------------------------------------------------------------


def _cell_kernels():
    from .kernels import gru_backward, gru_cell

    return gru_cell, gru_backward


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, save):
    cell, _ = _cell_kernels()
    B, I = x.shape
    H = w_hh.shape[1]
    acc = _acc_dtype(x.dtype)
    out = backend.new_empty((B, H), x.dtype, x.device)
    # Without SAVE the kernel writes no gates; the empty buffer still tells it the accumulator dtype.
    gates = backend.new_empty((B, 4 * H) if save else (0,), acc, x.device)
    has_bias = b_ih is not None
    meta = dict(HAS_BIAS=has_bias, SAVE=save, **_dot_options(w_hh, cell=True))

    def job(plan):
        return (cell.gru_cell_fwd_kernel, (plan.batch_blocks, plan.hidden_blocks),
                [x, h, w_ih, w_hh, b_ih if has_bias else x, b_hh if has_bias else x, out, gates,
                 B, I, H, x.stride(0), h.stride(0), out.stride(0)],
                dict(meta, num_warps=plan.num_warps, **plan.blocks()))

    launch(*job(plan_gru(B, H, 1, x.device, "stepwise", w_hh.dtype, resources=lambda p: resources(*job(p)))))
    return out, gates


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, gates):
    _, bwd = _cell_kernels()
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
        dict(BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, num_warps=plan.num_warps),
    )
    dgx, dgh = dgx[0], dgh[0, 0]
    z = gates[:, H : 2 * H]
    dh = dh_new.to(acc) * z + dgh @ w_hh.to(acc)
    dx = dgx @ w_ih
    dw_ih = dgx.t() @ x
    dw_hh = dgh.t() @ hprev
    return dx, dh.to(h.dtype), dw_ih, dw_hh.to(w_hh.dtype), dgx.sum(0, dtype=acc).to(w_ih.dtype), dgh.sum(0).to(w_hh.dtype)


@torch.library.custom_op("fastgru::gru_cell_fwd", mutates_args=())
def gru_cell_fwd(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor], save: bool
) -> tuple[Tensor, Tensor]:
    out, gates = gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, save)
    return out, gates


@gru_cell_fwd.register_fake
def _(x, h, w_ih, w_hh, b_ih, b_hh, save):
    B, H = h.shape
    gates = x.new_empty((B, 4 * H) if save else (0,), dtype=_acc_dtype(x.dtype))
    return x.new_empty((B, H)), gates


@torch.library.custom_op("fastgru::gru_cell_bwd", mutates_args=())
def gru_cell_bwd(
    dh_new: Tensor, x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, gates: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return gru_cell_backward(dh_new, x, h, w_ih, w_hh, gates)


@gru_cell_bwd.register_fake
def _(dh_new, x, h, w_ih, w_hh, gates):
    H3 = w_hh.shape[0]
    return (torch.empty_like(x), torch.empty_like(h), torch.empty_like(w_ih), torch.empty_like(w_hh),
            w_ih.new_empty(H3), w_hh.new_empty(H3))


def _gru_cell_setup(ctx, inputs, output):
    x, h, w_ih, w_hh, b_ih, b_hh, save = inputs
    ctx.save_for_backward(x, h, w_ih, w_hh, output[1])
    ctx.has_bias = b_ih is not None


def _gru_cell_backward(ctx, dh_new, _dgates):
    x, h, w_ih, w_hh, gates = ctx.saved_tensors
    if gates.numel() == 0 and x.numel() > 0:
        raise RuntimeError("fastgru: backward through a GRU cell forward that ran without saving (save=False)")
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = gru_cell_bwd(dh_new.contiguous(), x, h, w_ih, w_hh, gates)
    if not ctx.has_bias:
        db_ih = db_hh = None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh, None


gru_cell_fwd.register_autograd(_gru_cell_backward, setup_context=_gru_cell_setup)


def gru_cell_op(x, h, w_ih, w_hh, b_ih, b_hh):
    """Differentiable GRU cell step through the fused kernel."""
    tensors = (x, h, w_ih, w_hh, b_ih, b_hh)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return gru_cell_fwd(x, h, w_ih, w_hh, b_ih, b_hh, save)[0]
