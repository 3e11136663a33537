"""Launchers of the LSTM layer's kernels (the recurrence, forward and backward).

One layer, all its directions in one launch, built as the GRU layer's (launchers/gru_layer.py):
one ``job(plan)`` builder serves both running a plan and compiling it for its fit, the plan comes
from plan.plan_gru(..., family="lstm"), and around the recurrence the large products are GEMMs:
  forward   gx = x @ W_ih^T + b_ih + b_hh                         (all steps, all directions)
  backward  dx = dgx @ W_ih,  dW_ih = dgx^T x,  dW_hh = dgh^T h_prev,  db = sum of dgh,
            dW_hr = dhs^T m   (dgx: dgh laid out like gx)

H hidden units, R the size of h (the projection's P, else H), D directions. Saved for backward
(not recomputed): the gates i, f, g, o, c_{t-1}, c_t (and m = o tanh(c_t) with a projection) of
every step, and the state entering every step (h_prev), in the accumulator dtype (fp32; fp64 for
fp64): D * T * B * (6H + R) elements a layer (7H + R with a projection). The cell state is always
carried in the accumulator dtype. Layouts and phases: kernels/lstm_common.py.
"""

import torch
import torch.nn.functional as F

from .alloc import new_empty
from .gru_layer import _layer_dot_options, _run_planned, _time_batch_strides, acc_dtype
from .launch import launch, resources
from .loader import kernels
from .plan import MMA_MIN, _pow2, plan_gru, plan_with_reason


def _sizes(x, w_hh, w_hr, batch_first):
    """(T, B, H, R, D) of a call."""
    D, H4, R = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    return T, B, H4 // 4, R, D


def _persistent_meta(plan, R: int) -> dict:
    """What a persistent launch adds to its meta: the plan's blocks, BLOCK_RP (R padded to a
    power of two and to the MMA's minimum) and the cooperative launch. Only the base variant
    exists for the LSTM's persistent kernels: any other raises a ValueError naming it."""
    if plan.variant.name != "base":
        raise ValueError(f"persistent variant {plan.variant.name!r}: the LSTM's persistent kernels run the 'base' "
                         "variant only")
    return dict(plan.blocks(), BLOCK_RP=max(MMA_MIN, _pow2(R)), launch_cooperative_grid=True)


def _barrier(plan, D: int, device) -> torch.Tensor:
    """The persistent grid barrier's memory: one int32 counter per (direction, batch block),
    zeroed by the launch that uses it (graph-safe)."""
    return torch.zeros(plan.batch_blocks * D, dtype=torch.int32, device=device)


def _fit(*footprints):
    """The footprint that decides whether a plan fits when it runs several kernels (stepwise:
    one per phase): None when one of them cannot run, else the one that spills most (then holds
    the most registers), so a plan fits only where every kernel it launches does."""
    if any(f is None for f in footprints):
        return None
    return max(footprints, key=lambda f: (f.spill_bytes, f.registers))


def _forward_launches(gx, x, w_hh, w_hr, lengths, batch_first, save):
    """The forward's buffers and its launch builders, one place for running and planning:
    (job(plan, s), proj_phase(plan, s), fit(plan), hbuf, cbuf, out, hprev, gates)."""
    fwd = kernels("lstm_forward")
    T, B, H, R, D = _sizes(x, w_hh, w_hr, batch_first)
    has_proj = w_hr is not None
    acc = acc_dtype(x.dtype)
    out = new_empty((B, T, D * R) if batch_first else (T, B, D * R), x.dtype, x.device)
    hbuf = new_empty((2, D, B, R), acc, x.device)
    cbuf = new_empty((D, B, H), acc, x.device)
    mbuf = new_empty((D, B, H), acc, x.device) if has_proj else hbuf  # never touched without proj
    whr = w_hr if has_proj else w_hh  # a dummy pointer without proj
    if save:
        hprev = new_empty((D, T, B, R), acc, x.device)
        gates = new_empty((D, T, B, (7 if has_proj else 6) * H), acc, x.device)
    else:
        hprev = gates = hbuf  # never written (SAVE=False)

    strides = [*_time_batch_strides(gx, batch_first), *_time_batch_strides(out, batch_first)]
    sizes = [T, B, H, R, D]
    dot = _layer_dot_options(w_hh)
    meta = dict(HAS_PROJ=has_proj, SAVE=save, **dot)

    def job(plan, s=0):
        """The launch (kernel, grid, args, meta) of ``plan``; stepwise: step ``s``'s gates phase
        (the projection phase follows it: proj_phase)."""
        m = dict(meta, **plan.blocks(), num_warps=plan.num_warps)
        if plan.strategy == "rows":
            return (fwd.lstm_fwd_rows_kernel, (plan.batch_blocks, D),
                    [gx, w_hh, whr, lengths, hbuf, cbuf, mbuf, out, hprev, gates, *sizes, *strides], m)
        if plan.strategy == "persistent":
            m = dict(meta, **_persistent_meta(plan, R), num_warps=plan.num_warps)
            return (kernels("lstm_persistent").lstm_fwd_persistent_kernel, (plan.hidden_blocks, plan.batch_blocks, D),
                    [gx, w_hh, whr, lengths, hbuf, cbuf, mbuf, out, hprev, gates, _barrier(plan, D, x.device),
                     *sizes, *strides], m)
        return (fwd.lstm_fwd_step_kernel, (plan.batch_blocks, plan.hidden_blocks, D),
                [gx, w_hh, lengths, hbuf, cbuf, mbuf, out, hprev, gates, s, *sizes, *strides], m)

    def proj_phase(plan, s):
        """stepwise with a projection: the launch of step s's projection phase (after job's)."""
        return (fwd.lstm_fwd_proj_kernel, (plan.batch_blocks, -(-R // plan.block_h), D),
                [w_hr, lengths, hbuf, mbuf, out, hprev, s, *sizes, *strides[2:]],
                dict(SAVE=save, **dot, **plan.blocks(), num_warps=plan.num_warps))

    def fit(plan):
        """The compiled footprint of ``plan``'s kernels (stepwise with a projection: both phases')."""
        if plan.strategy == "stepwise" and has_proj:
            return _fit(resources(*job(plan)), resources(*proj_phase(plan, 0)))
        return resources(*job(plan))

    return job, proj_phase, fit, hbuf, cbuf, out, hprev, gates


def _gx_shape(x, w_ih, batch_first):
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    return (B, T, w_ih.shape[0]) if batch_first else (T, B, w_ih.shape[0])


def lstm_layer_forward_plan(x, w_ih, w_hh, w_hr, batch_first, save, strategy=None):
    """(plan, reason): what lstm_layer_forward would run for these arguments, planned exactly as
    it plans (the same launches, compiled for their fit), without running anything."""
    T, B, H, R, D = _sizes(x, w_hh, w_hr, batch_first)
    gx = torch.empty(_gx_shape(x, w_ih, batch_first), dtype=x.dtype, device=x.device)
    lengths = torch.empty(B, dtype=torch.int64, device=x.device)
    fit = _forward_launches(gx, x, w_hh, w_hr, lengths, batch_first, save)[2]
    mode = "training" if save else "inference"
    return plan_with_reason(B, H, D, x.device, strategy, w_hh.dtype, fit, mode, family="lstm")


def _input_bias(b_ih, b_hh):
    """All of b_ih + b_hh rides on the input GEMM (no LSTM bias sits inside a gate product)."""
    if b_hh is None:
        return b_ih
    b_hh = b_hh.reshape(-1)
    return b_hh if b_ih is None else b_ih + b_hh


def lstm_layer_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, save, strategy=None):
    """Run one layer (all directions) through the kernels.

    x (T, B, I) or (B, T, I); h0 (D, B, R); c0 (D, B, H); w_ih (D*4H, I); w_hh (D, 4H, R);
    b_ih (D*4H,) or None; b_hh (D, 4H) or None; w_hr (D, R, H) or None; lengths (B,) int64 on
    x's device. Returns out (like x with D*R features), h_n (D, B, R) and c_n (D, B, H) in x's
    dtype, and (hprev (D, T, B, R), gates (D, T, B, 6H or 7H)) in the accumulator dtype when
    ``save`` (otherwise scratch buffers standing in for them).
    """
    T, B, H, R, D = _sizes(x, w_hh, w_hr, batch_first)
    gx = F.linear(x, w_ih, _input_bias(b_ih, b_hh))
    job, proj_phase, fit, hbuf, cbuf, out, hprev, gates = _forward_launches(gx, x, w_hh, w_hr, lengths, batch_first,
                                                                           save)
    hbuf[0].copy_(h0)
    cbuf.copy_(c0)

    def run(plan):
        for s in range(T if plan.strategy == "stepwise" else 1):
            launch(*job(plan, s))
            if plan.strategy == "stepwise" and w_hr is not None:
                launch(*proj_phase(plan, s))

    mode = "training" if save else "inference"
    plan = plan_gru(B, H, D, x.device, strategy, w_hh.dtype, resources=fit, mode=mode, family="lstm")
    _run_planned(plan, run, fit, B, H, D, x.device, w_hh.dtype, strategy, mode, True, "lstm")
    h_n = hbuf[T % 2].to(x.dtype, copy=True)  # fresh tensors, not views into the scratch buffers
    c_n = cbuf.to(x.dtype, copy=True)
    return out, h_n, c_n, (hprev, gates)


def lstm_layer_backward(dout, dh_n, dc_n, x, w_ih, w_hh, w_hr, lengths, hprev, gates, batch_first, strategy=None):
    """Reverse-time kernels, then the GEMMs. Returns dx (x's dtype), dh0, dc0, dw_ih, dw_hh,
    db (D, 4H) -- the gradient of b_ih and of b_hh alike -- and dw_hr (D, R, H) or None, all but
    dx in the accumulator dtype (the caller casts). dh_n / dc_n None mean zero. The strategy is
    planned anew: the saved state's layout is the same whichever strategy ran the forward."""
    bwd = kernels("lstm_backward")
    T, B, H, R, D = _sizes(x, w_hh, w_hr, batch_first)
    has_proj = w_hr is not None
    acc = gates.dtype

    dbuf = new_empty((2, D, B, R), acc, x.device)
    dcbuf = new_empty((D, B, H), acc, x.device)
    if dh_n is None:
        dbuf[0].zero_()
    else:
        dbuf[0].copy_(dh_n)
    if dc_n is None:
        dcbuf.zero_()
    else:
        dcbuf.copy_(dc_n)
    dgh = new_empty((D, T, B, 4 * H), acc, x.device)
    dhs = new_empty((D, T, B, R), acc, x.device) if has_proj else dbuf  # never touched without proj
    whr = w_hr if has_proj else w_hh
    dout = dout.contiguous() if dout.stride(-1) != 1 else dout
    d_strides = [*_time_batch_strides(dout, batch_first)]
    sizes = [T, B, H, R, D]
    dot = dict(HAS_PROJ=has_proj, **_layer_dot_options(w_hh))

    def job(plan, step=0):
        """The launch of ``plan``; stepwise: the carry phase of reverse step ``step`` (the kernel
        with the K = H matmul; the gates launch precedes it: gates_phase)."""
        blocks = dict(plan.blocks(), num_warps=plan.num_warps)
        if plan.strategy == "rows":
            return (bwd.lstm_bwd_rows_kernel, (plan.batch_blocks, D),
                    [dout, w_hh, whr, lengths, dbuf, dcbuf, gates, dgh, dhs, *sizes, *d_strides], dict(dot, **blocks))
        if plan.strategy == "persistent":
            m = dict(dot, **_persistent_meta(plan, R), num_warps=plan.backward_warps)
            return (kernels("lstm_persistent").lstm_bwd_persistent_kernel, (plan.hidden_blocks, plan.batch_blocks, D),
                    [dout, w_hh, whr, lengths, dbuf, dcbuf, hprev, gates, dgh, dhs, _barrier(plan, D, x.device),
                     *sizes, *d_strides], m)
        s, cur = T - 1 - step, step % 2
        return (bwd.lstm_bwd_carry_kernel, (plan.batch_blocks, -(-R // plan.block_h), D),
                [dout, w_hh, lengths, dbuf, dgh, dhs, s, cur, *sizes, *d_strides], dict(dot, **blocks))

    def gates_phase(plan, step):
        """stepwise: the launch of reverse step ``step``'s gates phase."""
        return (bwd.lstm_bwd_gates_kernel, (plan.batch_blocks, plan.hidden_blocks, D),
                [dout, whr, lengths, dbuf, dcbuf, gates, dgh, T - 1 - step, step % 2, *sizes, *d_strides],
                dict(dot, **plan.blocks(), num_warps=plan.num_warps))

    def fit(plan):
        """The compiled footprint of ``plan``'s kernels (stepwise: both phases')."""
        if plan.strategy == "stepwise":
            return _fit(resources(*job(plan)), resources(*gates_phase(plan, 0)))
        return resources(*job(plan))

    try:
        plan = plan_gru(B, H, D, x.device, strategy, w_hh.dtype, resources=fit, mode="training", family="lstm")
    except ValueError:
        if strategy != "persistent":
            raise
        # The forward held the shape but the backward kernel does not fit (it holds more live
        # state): the dispatcher's own choice runs the backward; the result is the same.
        plan = plan_gru(B, H, D, x.device, None, w_hh.dtype, resources=fit, mode="training", family="lstm")

    def run(plan):
        if plan.strategy != "stepwise":
            launch(*job(plan))
            return
        for step in range(T):
            launch(*gates_phase(plan, step))
            launch(*job(plan, step))

    _run_planned(plan, run, fit, B, H, D, x.device, w_hh.dtype, strategy, "training", True, "lstm")
    dh0, dc0 = dbuf[T % 2], dcbuf

    # dgh (D, T, B, 4H) laid out as gx: (T, B, D*4H), or (B, T, D*4H) batch-first.
    dgx = dgh.permute(2, 1, 0, 3) if batch_first else dgh.permute(1, 2, 0, 3)
    dgx = dgx.reshape(*dgx.shape[:2], D * 4 * H).to(x.dtype)
    dx = dgx @ w_ih
    dw_ih = (dgx.reshape(-1, D * 4 * H).t() @ x.reshape(-1, x.shape[-1])).to(acc)
    dw_hh = torch.bmm(dgh.reshape(D, -1, 4 * H).transpose(1, 2), hprev.reshape(D, -1, R))
    db = dgh.sum(dim=(1, 2))
    dw_hr = None
    if has_proj:  # m, the projection's input, is the gates' seventh slot
        dw_hr = torch.bmm(dhs.reshape(D, -1, R).transpose(1, 2), gates[..., 6 * H:].reshape(D, -1, H))
    return dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr
