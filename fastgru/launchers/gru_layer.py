"""Launchers of the GRU layer's kernels (the recurrence, forward and backward).

One layer, all its directions in one launch. Around the recurrence kernels, the work that is a
large matrix product runs as one (cuBLAS on GPU):
  forward   gx = x @ W_ih^T + b_ih + [b_hr, b_hz, 0]          (all steps, all directions)
  backward  dx = dgx @ W_ih,  dW_ih = dgx^T x,  dW_hh = dgh^T h_prev,  db = sums of dgx / dgh

Saved for backward (not recomputed): the gates r, z, n and W_hn h + b_hn of every step, and the
state entering every step (h_prev), in the accumulator dtype (fp32; fp64 for fp64 inputs).
``reset_after=False`` (n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)): all of b_hh rides on the
GEMM, the gates' fourth slot holds r * h instead, and dW_hh's n rows are da_n^T (r * h).
Recomputing them would mean re-running the sequential recurrence, the expensive part; h_prev is
needed for dW_hh anyway. Cost: 5 * D * T * B * H accumulator elements per layer.
"""

from typing import Optional

import torch
from torch import Tensor
import torch.nn.functional as F

from .. import backend
from .alloc import new_empty
from .launch import launch, resources
from .loader import kernels
from .plan import GRUPlan, _pow2, persistent_refused, plan_gru, plan_with_reason
from .tf32 import tf32_allowed

_LOWP = (torch.float16, torch.bfloat16)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulator and carried-state dtype of the recurrence: fp64 for fp64, else fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_options(w: torch.Tensor, follows: str, tf32: str) -> dict:
    """Matmul precision inside the recurrence kernels: bf16/fp16 feed the tensor cores directly
    with fp32 accumulation; fp32 runs ``tf32`` ("tf32" or "tf32x3") where the TF32 rule
    (tf32.tf32_allowed under the flag ``follows``) allows it, IEEE fp32 otherwise."""
    lowp = w.dtype in _LOWP and not backend.INTERPRET
    return {"MMA_LOWP": lowp, "DOT_PRECISION": tf32 if tf32_allowed(w, follows) else "ieee"}


def _layer_dot_options(w_hh: torch.Tensor) -> dict:
    """The layer follows nn.GRU's flag (cudnn.allow_tf32). cuDNN decides per shape whether it
    really uses TF32 (measured on an H100: full fp32 at T=96, I=64, H=256), so the layer takes
    3xTF32 ("tf32x3": tensor cores, fp32-level error) rather than plain TF32, which would be
    1000x worse than nn.GRU wherever cuDNN stayed in fp32."""
    return dot_options(w_hh, "cudnn", "tf32x3")


def _persistent_launch(plan: GRUPlan, w_hh: torch.Tensor, dot: dict, variant_meta: dict, device):
    """What a persistent launch adds to its kernel's meta and arguments for ``plan``'s variant:
    (meta, barrier buffer). The variant's constexprs (``variant_meta``: its forward_meta() or
    backward_meta()) and BLOCK_P (the hidden blocks padded to a power of two, the flags' poll;
    1 for the counter, which never reads it); its precision where the TF32 rule allows TF32 for
    the call, a ValueError where it does not (a variant is never ignored silently). The barrier
    memory, zeroed by the launch that uses it (graph-safe): one int32 counter per (direction,
    batch block), or BARRIER_FLAGS one flag per program, (D, batch blocks, hidden blocks)."""
    D = w_hh.shape[0]
    meta = dict(dot, **variant_meta)
    precision = plan.variant.precision
    if precision is not None:
        if w_hh.dtype != torch.float32:
            raise ValueError(f"persistent variant {plan.variant.name!r}: precision {precision!r} applies to float32 only, "
                             f"got {w_hh.dtype}")
        if dot["DOT_PRECISION"] == "ieee":
            raise ValueError(f"persistent variant {plan.variant.name!r}: precision {precision!r} needs TF32, which the "
                             "TF32 rule does not allow for this call (torch.backends.cudnn.allow_tf32 off, or not on a GPU)")
        meta["DOT_PRECISION"] = precision
    flags = bool(meta.get("BARRIER_FLAGS"))
    meta["BLOCK_P"] = _pow2(plan.hidden_blocks) if flags else 1
    size = plan.batch_blocks * D * (plan.hidden_blocks if flags else 1)
    return meta, torch.zeros(size, dtype=torch.int32, device=device)


def _time_batch_strides(t: torch.Tensor, batch_first: bool):
    return (t.stride(1), t.stride(0)) if batch_first else (t.stride(0), t.stride(1))


def _folded_input_bias(b_ih, b_hh, D, H, reset_after):
    """b_ih + [b_hr, b_hz, 0] per direction: the part of the bias that can ride on the GEMM
    (reset_after=False: b_ih + b_hh, none of b_hh being inside the reset gate)."""
    if b_ih is None:
        return None
    if not reset_after:
        return b_ih + b_hh.reshape(-1)
    b_hh_rz = b_hh.view(D, 3, H).clone()
    b_hh_rz[:, 2] = 0
    return b_ih + b_hh_rz.reshape(-1)


def _run_planned(plan, run, fit, B, H, D, device, dtype, strategy, mode, reset_after, family="gru"):
    """``run(plan)``. Where the device refuses a persistent plan's cooperative launch (a
    RuntimeError at launch: its grid was not co-resident after all), the dispatcher's next
    choice for the shape runs instead, with one warning a process (plan.persistent_refused); a
    forced ``strategy='persistent'`` gets a RuntimeError that says so. Nothing has been written
    when a launch is refused, so the other strategy starts from the same buffers."""
    if plan.strategy != "persistent":
        return run(plan)
    try:
        return run(plan)
    except RuntimeError as exc:
        persistent_refused(B, H, D, device, dtype, exc, forced=strategy == "persistent")
    return run(plan_gru(B, H, D, device, None, dtype, resources=fit, mode=mode, reset_after=reset_after, family=family))


def _forward_launches(gx, x, w_hh, b_hh, lengths, batch_first, save, reset_after):
    """The forward's buffers and its launch builders, one place for running and planning:
    (job(plan, s), reset_phase(plan, s), hbuf, out, hprev, gates)."""
    fwd, persistent = kernels("gru_forward"), kernels("gru_persistent")
    D, H3, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    acc = acc_dtype(x.dtype)
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    out = new_empty(out_shape, x.dtype, x.device)
    # Ping-pong state; reset_after=False adds a slot for r * h_{t-1}.
    hbuf = new_empty((2 if reset_after else 3, D, B, H), acc, x.device)
    if save:
        hprev = new_empty((D, T, B, H), acc, x.device)
        gates = new_empty((D, T, B, 4 * H), acc, x.device)
    else:
        hprev = gates = hbuf  # never written (SAVE=False)
    has_bhn = b_hh is not None and reset_after
    bhn = b_hh.view(D, 3, H)[:, 2].contiguous() if has_bhn else hbuf

    args = [gx, w_hh, bhn, lengths, hbuf, out, hprev, gates]
    gx_strides = _time_batch_strides(gx, batch_first)
    sizes = [T, B, H, D, *gx_strides, *_time_batch_strides(out, batch_first)]
    dot = _layer_dot_options(w_hh)
    meta = dict(HAS_BHN=has_bhn, SAVE=save, RESET_AFTER=reset_after, **dot)

    def job(plan, s=0):
        """The launch (kernel, grid, args, meta) of ``plan``; stepwise: its step ``s``. The
        persistent barrier's memory is allocated (zeroed) here, with the launch, and its meta
        takes the plan's variant (_persistent_launch)."""
        m = dict(meta, **plan.blocks(), num_warps=plan.num_warps)
        if plan.strategy == "rows":
            return fwd.gru_fwd_rows_kernel, (plan.batch_blocks, D), [*args, *sizes], m
        if plan.strategy == "persistent":
            variant, barrier = _persistent_launch(plan, w_hh, dot, plan.variant.forward_meta(), x.device)
            return (persistent.gru_fwd_persistent_kernel, (plan.hidden_blocks, plan.batch_blocks, D),
                    [*args, barrier, *sizes], dict(m, **variant, launch_cooperative_grid=True))
        return fwd.gru_fwd_step_kernel, (plan.batch_blocks, plan.hidden_blocks, D), [*args, s, *sizes], m

    def reset_phase(plan, s):
        """stepwise, reset_after=False: the launch of step s's reset phase (before job's)."""
        return (fwd.gru_fwd_reset_kernel, (plan.batch_blocks, plan.hidden_blocks, D),
                [gx, w_hh, lengths, hbuf, gates, s, T, B, H, D, *gx_strides],
                dict(SAVE=save, **dot, **plan.blocks(), num_warps=plan.num_warps))

    return job, reset_phase, hbuf, out, hprev, gates


def gru_layer_forward_plan(x, w_ih, w_hh, b_hh, batch_first, save, strategy=None, reset_after=True):
    """(plan, reason): what gru_layer_forward would run for these arguments, planned exactly as
    it plans (the same launches, compiled for their fit), without running anything."""
    D, H3, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    gx_shape = (B, T, w_ih.shape[0]) if batch_first else (T, B, w_ih.shape[0])
    gx = torch.empty(gx_shape, dtype=x.dtype, device=x.device)
    lengths = torch.empty(B, dtype=torch.int64, device=x.device)
    job = _forward_launches(gx, x, w_hh, b_hh, lengths, batch_first, save, reset_after)[0]
    mode = "training" if save else "inference"
    return plan_with_reason(B, H, D, x.device, strategy, w_hh.dtype, lambda p: resources(*job(p)), mode, reset_after)


def gru_layer_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy=None, reset_after=True):
    """Run one layer (all directions) through the kernels.

    x (T, B, I) or (B, T, I); h0 (D, B, H); w_ih (D*3H, I); w_hh (D, 3H, H); b_ih (D*3H,) or None;
    b_hh (D, 3H) or None; lengths (B,) int64 on x's device.
    Returns out (like x with D*H features), h_n (D, B, H), and (h_prev, gates) when ``save``.
    """
    D, H3, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    gx = F.linear(x, w_ih, _folded_input_bias(b_ih, b_hh, D, H, reset_after))
    job, reset_phase, hbuf, out, hprev, gates = _forward_launches(gx, x, w_hh, b_hh, lengths, batch_first, save,
                                                                  reset_after)
    hbuf[0].copy_(h0)

    def run(plan):
        for s in range(T if plan.strategy == "stepwise" else 1):
            if plan.strategy == "stepwise" and not reset_after:
                launch(*reset_phase(plan, s))
            launch(*job(plan, s))

    mode = "training" if save else "inference"
    fit = lambda p: resources(*job(p))  # noqa: E731
    plan = plan_gru(B, H, D, x.device, strategy, w_hh.dtype, resources=fit, mode=mode, reset_after=reset_after)
    _run_planned(plan, run, fit, B, H, D, x.device, w_hh.dtype, strategy, mode, reset_after)
    h_n = hbuf[T % 2].to(x.dtype, copy=True)  # a fresh tensor, not a view into the scratch buffer
    return out, h_n, (hprev, gates)


def gru_layer_backward(dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, batch_first, strategy=None, reset_after=True):
    """Reverse-time kernels, then the GEMMs. Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh
    (bias gradients in the accumulator dtype; the caller casts). The strategy is planned anew:
    the saved state's layout is the same whichever strategy ran the forward."""
    bwd, persistent = kernels("gru_backward"), kernels("gru_persistent")
    D, H3, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    acc = gates.dtype

    dbuf = new_empty((2, D, B, H), acc, x.device)
    dbuf[0].copy_(dh_n)
    dgx_shape = (B, T, D * H3) if batch_first else (T, B, D * H3)
    dgx = new_empty(dgx_shape, x.dtype, x.device)
    dgh = new_empty((D, T, B, H3), acc, x.device)
    dout = dout.contiguous() if dout.stride(-1) != 1 else dout
    d_strides = [*_time_batch_strides(dout, batch_first)]
    g_strides = [*_time_batch_strides(dgx, batch_first)]
    dot = dict(RESET_AFTER=reset_after, **_layer_dot_options(w_hh))
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
            variant, barrier = _persistent_launch(plan, w_hh, dot, plan.variant.backward_meta(), x.device)
            return (persistent.gru_bwd_persistent_kernel, (plan.hidden_blocks, plan.batch_blocks, D),
                    [dout, w_hh, *state, barrier, *sizes],
                    dict(num_warps=plan.backward_warps, launch_cooperative_grid=True, **variant, **blocks))
        s, cur = T - 1 - step, step % 2
        return (bwd.gru_bwd_carry_kernel, (plan.batch_blocks, plan.hidden_blocks, D),
                [dout, w_hh, lengths, dbuf, gates, dgh, s, cur, T, B, H, D, *d_strides],
                dict(num_warps=plan.num_warps, **dot, **blocks))

    fit = lambda p: resources(*job(p))  # noqa: E731
    try:
        plan = plan_gru(B, H, D, x.device, strategy, w_hh.dtype, resources=fit, mode="training", reset_after=reset_after)
    except ValueError:
        if strategy != "persistent":
            raise
        # The forward held the shape but the backward kernel does not fit (it holds more live
        # state): the dispatcher's own choice runs the backward; the result is the same.
        plan = plan_gru(B, H, D, x.device, None, w_hh.dtype, resources=fit, mode="training", reset_after=reset_after)

    def run(plan):
        if plan.strategy != "stepwise":
            launch(*job(plan))
            return
        gates_tile = dict(num_warps=plan.num_warps, BLOCK_B=plan.block_b, BLOCK_H=plan.block_h)
        grid = (plan.batch_blocks, plan.hidden_blocks, D)
        for step in range(T):
            s, cur = T - 1 - step, step % 2
            launch(bwd.gru_bwd_gates_kernel, grid, [dout, *state, s, cur, *sizes], dict(gates_tile, RESET_AFTER=reset_after))
            if not reset_after:
                launch(bwd.gru_bwd_reset_kernel, grid, [dout, w_hh, *state, s, cur, *sizes],
                       dict(num_warps=plan.num_warps, **_layer_dot_options(w_hh), **plan.blocks()))
            launch(*job(plan, step))

    _run_planned(plan, run, fit, B, H, D, x.device, w_hh.dtype, strategy, "training", reset_after)
    dh0 = dbuf[T % 2]

    flat_dgx = dgx.reshape(-1, D * H3)
    dx = (dgx @ w_ih).to(x.dtype)
    dw_ih = flat_dgx.t().to(x.dtype) @ x.reshape(-1, x.shape[-1])
    dgh_t = dgh.reshape(D, -1, H3).transpose(1, 2)
    if reset_after:
        dw_hh = torch.bmm(dgh_t, hprev.reshape(D, -1, H))
    else:  # the n rows' input was r * h (the gates' fourth slot)
        dw_hh = torch.cat([torch.bmm(dgh_t[:, : 2 * H], hprev.reshape(D, -1, H)),
                           torch.bmm(dgh_t[:, 2 * H :], gates[..., 3 * H :].reshape(D, -1, H))], dim=1)
    db_ih = flat_dgx.sum(0, dtype=acc)
    db_hh = dgh.sum(dim=(1, 2))
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
