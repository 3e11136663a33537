"""Launchers of the fused attention kernels: ``attention_forward`` and ``attention_backward`` for
every score (``score="additive"``: s_ij = w . tanh(q_i + k_j) over projected queries and keys;
``score="dot"``: s_ij = scale * q_i . k_j).

Inputs arrive checked and batch-first from fastgru.functional. What is saved for
backward: the inputs, the context and the log-sum-exp per query row (``lse``, +inf for a fully
masked row); the probabilities only when the caller asked for them (``need_weights``), since
they are an output then. The context is computed and saved in the compute dtype (float32 for
bf16/fp16 inputs, cast on return): delta = dO . O taken from a bf16-rounded O would add a
cancellation error to every score gradient. The backward recomputes the scores blockwise.

Gradients flow to the returned weights too: d(weights) enters the backward as ``dprob``
(ds = p (dO . v + dprob - delta), with delta = dO . O + sum_j p dprob).
"""

from __future__ import annotations

import torch

from .. import backend
from ..backend import new_empty
from ..ops.guard import tf32_allowed
from .launch import launch
from .loader import kernels

SCORES = ("additive", "dot")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _k():
    """The kernel modules (additive, dot, common), imported on first use."""
    return kernels("attention_additive"), kernels("attention_dot"), kernels("attention_common")


def _launch(kernel, configs_fn, shape, dtype, grid, *args, **kwargs):
    """Launch an autotuned attention kernel; the configurations that suit ``shape`` and ``dtype``
    travel with it (the interpreter, which cannot time them, runs its own single one). The
    kernel's arguments carry ``_k()[2].bucket(*shape)`` as its autotune key."""
    launch(kernel, grid, args, kwargs, configs_fn(*shape, dtype=dtype, interpret=backend.INTERPRET))


def _types(values: torch.Tensor):
    """(torch compute dtype, triton compute dtype, triton dot-operand dtype, dot precision).
    fp32 dots follow the matmul modules' TF32 flag (cuda.matmul.allow_tf32), as nn.Linear and
    torch's attention do."""
    common, dtype = _k()[2], values.dtype
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    tf32 = tf32_allowed(values, "matmul")
    return cdt, common.compute_dtype(dtype), common.dot_dtype(dtype, backend.INTERPRET), "tf32" if tf32 else "ieee"


def _mask_args(mask):
    if mask is None:
        return None, 0, 0
    return mask.view(torch.uint8), mask.stride(0), mask.stride(1)


def _backward_buffers(N, Tq, d_probs, cdt, device):
    """delta [N, Tq] (written by the query-block kernel, read by the key-block kernel) and the
    weights' gradient in the compute dtype (or None)."""
    dprob = d_probs.to(cdt).contiguous() if d_probs is not None else None
    return new_empty((N, Tq), cdt, device), dprob


# ------------------------------------------------------------------------------ additive


def _forward_buffers(N, Tq, T, D, cdt, device, need_weights):
    """Outputs of a fused attention forward and its grid (N, query blocks, value blocks).
    The context is kept in the compute dtype: the backward's delta = dO . O needs it."""
    out = new_empty((N, Tq, D), cdt, device)
    lse = new_empty((N, Tq), cdt, device)
    scores = new_empty((N, Tq, T), cdt, device) if need_weights else None
    grid = lambda m: (N, _cdiv(Tq, m["BLOCK_Q"]), _cdiv(D, m["BLOCK_D"]))  # noqa: E731
    return out, lse, scores, grid


def additive_forward(qp, kp, w, values, lengths, mask, need_weights):
    """qp (N, Tq, A), kp (N, T, A), w (A,), values (N, T, D) -> (out (N, Tq, D), lse (N, Tq),
    probabilities (N, Tq, T) or None), all in the compute dtype (float32, or float64)."""
    KA = _k()[0]
    N, Tq, A = qp.shape
    T, D = values.shape[1], values.shape[2]
    cdt, CDT, DOT_DT, prec = _types(values)
    out, lse, scores, grid = _forward_buffers(N, Tq, T, D, cdt, values.device, need_weights)
    mask_u8, s_mn, s_mt = _mask_args(mask)
    _launch(
        KA.additive_fwd, KA.additive_configs, (Tq, T, A, D), values.dtype, grid,
        qp, kp, w, values, lengths, mask_u8, out, lse, scores, Tq, T, A, D, *_k()[2].bucket(Tq, T, A, D),
        *qp.stride(), *kp.stride(), w.stride(0), *values.stride(), s_mn, s_mt, *out.stride(),
        NEED_WEIGHTS=need_weights, CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec,
    )
    probs = torch.exp(scores - lse[..., None]) if need_weights else None  # masked: exp(-inf) = 0
    return out, lse, probs


def additive_backward(qp, kp, w, values, lengths, mask, lse, d_out, d_probs, need_dqp):
    """Gradients (dqp or None, dkp, dw, dvalues) in the inputs' dtypes."""
    KA = _k()[0]
    N, Tq, A = qp.shape
    T, D = values.shape[1], values.shape[2]
    cdt, CDT, DOT_DT, prec = _types(values)
    delta, dprob = _backward_buffers(N, Tq, d_probs, cdt, values.device)
    mask_u8, s_mn, s_mt = _mask_args(mask)
    common = (qp, kp, w, values, lengths, mask_u8, d_out, lse, delta, dprob)
    strides = (*qp.stride(), *kp.stride(), w.stride(0), *values.stride(), s_mn, s_mt, *d_out.stride())
    meta = dict(CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec)
    shape = (Tq, T, A, D)
    sizes = (*shape, *_k()[2].bucket(*shape))
    # Query blocks first: they write delta, which the key-block kernel reads.
    dqp = new_empty((N, Tq, A), cdt, values.device) if need_dqp else None
    grid = lambda m: (N, _cdiv(Tq, m["BLOCK_Q"]))  # noqa: E731
    _launch(KA.additive_bwd_dq, KA.additive_configs, shape, values.dtype, grid, *common, dqp if need_dqp else delta,
            *sizes, *strides, NEED_DQ=need_dqp, **meta)
    dkp = new_empty((N, T, A), cdt, values.device)
    dval = new_empty((N, T, D), cdt, values.device)
    dw_part = new_empty((N, T, A), cdt, values.device)
    grid = lambda m: (N, _cdiv(T, m["BLOCK_T"]))  # noqa: E731
    _launch(KA.additive_bwd_dkv, KA.additive_configs, shape, values.dtype, grid, *common, dkp, dval, dw_part, *sizes,
            *strides, **meta)
    if need_dqp:
        dqp = dqp.to(qp.dtype)
    dw = dw_part.sum(dim=(0, 1)).to(w.dtype)
    return dqp, dkp.to(kp.dtype), dw, dval.to(values.dtype)


# ------------------------------------------------------------------------------ dot


def dot_forward(q, k, values, lengths, mask, scale, need_weights):
    """q (N, Tq, K), k (N, T, K), values (N, T, D) -> (out, lse, probabilities or None)."""
    KD = _k()[1]
    N, Tq, K = q.shape
    T, D = values.shape[1], values.shape[2]
    cdt, CDT, DOT_DT, prec = _types(values)
    out, lse, scores, grid = _forward_buffers(N, Tq, T, D, cdt, values.device, need_weights)
    mask_u8, s_mn, s_mt = _mask_args(mask)
    _launch(
        KD.dot_fwd, KD.dot_configs, (Tq, T, K, D), values.dtype, grid,
        q, k, values, lengths, mask_u8, out, lse, scores, Tq, T, K, D, float(scale), *_k()[2].bucket(Tq, T, K, D),
        *q.stride(), *k.stride(), *values.stride(), s_mn, s_mt, *out.stride(),
        NEED_WEIGHTS=need_weights, CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec,
    )
    probs = torch.exp(scores - lse[..., None]) if need_weights else None
    return out, lse, probs


def dot_backward(q, k, values, lengths, mask, scale, lse, d_out, d_probs, need_dq):
    """Gradients (dq or None, dk, dvalues) in the inputs' dtypes."""
    KD = _k()[1]
    N, Tq, K = q.shape
    T, D = values.shape[1], values.shape[2]
    cdt, CDT, DOT_DT, prec = _types(values)
    delta, dprob = _backward_buffers(N, Tq, d_probs, cdt, values.device)
    mask_u8, s_mn, s_mt = _mask_args(mask)
    common = (q, k, values, lengths, mask_u8, d_out, lse, delta, dprob)
    shape = (Tq, T, K, D)
    sizes = (*shape, float(scale), *_k()[2].bucket(*shape))
    strides = (*q.stride(), *k.stride(), *values.stride(), s_mn, s_mt, *d_out.stride())
    meta = dict(CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec)
    # Query blocks first: they write delta, which the key-block kernel reads.
    dq = new_empty((N, Tq, K), cdt, values.device) if need_dq else None
    grid = lambda m: (N, _cdiv(Tq, m["BLOCK_Q"]))  # noqa: E731
    _launch(KD.dot_bwd_dq, KD.dot_configs, shape, values.dtype, grid, *common, dq if need_dq else delta, *sizes, *strides,
            NEED_DQ=need_dq, **meta)
    dk = new_empty((N, T, K), cdt, values.device)
    dval = new_empty((N, T, D), cdt, values.device)
    grid = lambda m: (N, _cdiv(T, m["BLOCK_T"]))  # noqa: E731
    _launch(KD.dot_bwd_dkv, KD.dot_configs, shape, values.dtype, grid, *common, dk, dval, *sizes, *strides, **meta)
    if need_dq:
        dq = dq.to(q.dtype)
    return dq, dk.to(k.dtype), dval.to(values.dtype)


def attention_forward(score, q, k, w, values, lengths, mask, scale, need_weights):
    """q (N, Tq, F), k (N, T, F), values (N, T, D); ``w`` (F,) the additive score vector (None for
    dot), ``scale`` the dot score's factor. Returns (out (N, Tq, D), lse (N, Tq), probabilities
    (N, Tq, T) or None), all in the compute dtype (float32, or float64)."""
    if score == "additive":
        return additive_forward(q, k, w, values, lengths, mask, need_weights)
    return dot_forward(q, k, values, lengths, mask, scale, need_weights)


def attention_backward(score, q, k, w, values, lengths, mask, scale, lse, d_out, d_probs, need_dq):
    """Gradients (dq or None, dk, dw (None for dot), dvalues) in the inputs' dtypes; ``d_probs``
    the gradient of the returned probabilities, or None."""
    if score == "additive":
        return additive_backward(q, k, w, values, lengths, mask, lse, d_out, d_probs, need_dq)
    dq, dk, dval = dot_backward(q, k, values, lengths, mask, scale, lse, d_out, d_probs, need_dq)
    return dq, dk, None, dval
