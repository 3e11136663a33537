"""Launchers of the fused attention kernels (kernels/attention.py), one pair for every score:
``attention_forward`` and ``attention_backward`` take the score by name ("additive":
s_ij = w . tanh(q_i + k_j) over projected queries and keys; "dot": s_ij = scale * q_i . k_j)
and hand it to the kernels as their ``SCORE`` constexpr.

Inputs arrive checked and batch-first (fastgru.ops.attention). The forward returns the context
in the compute dtype (float32 for bf16/fp16 inputs; the caller casts) with the log-sum-exp per
query row, which is all the backward needs beside the inputs: it recomputes the scores
blockwise, query blocks first (they form delta_i = sum_j p_ij dp_ij and dq), then key blocks
(dk, dvalues, the additive score vector's per-key shares). The probabilities are formed only
when asked for (``need_weights``); their gradient then enters the backward as ``d_probs``.
Every kernel's arguments are built here, in one function per pass.
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
    """The kernel module and its configuration module, imported on first use."""
    return kernels("attention"), kernels("attention_configs")


def _launch(kernel, score, shape, dtype, grid, *args, **meta):
    """Launch an autotuned attention kernel with ``SCORE=score``; the configurations that suit
    the score, ``shape`` and ``dtype`` travel with it (the interpreter, which cannot time them,
    runs its own single one). The kernel's arguments carry the shape's bucket as its autotune key."""
    configs = _k()[1].attention_configs(score, *shape, dtype=dtype, interpret=backend.INTERPRET)
    launch(kernel, grid, args, dict(meta, SCORE=score), configs)


def _types(values: torch.Tensor):
    """(torch compute dtype, triton compute dtype, triton dot-operand dtype, dot precision).
    fp32 dots follow the matmul modules' TF32 flag (cuda.matmul.allow_tf32), as nn.Linear and
    torch's attention do."""
    configs, dtype = _k()[1], values.dtype
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    tf32 = tf32_allowed(values, "matmul")
    return cdt, configs.compute_dtype(dtype), configs.dot_dtype(dtype, backend.INTERPRET), "tf32" if tf32 else "ieee"


def _operands(score, q, k, w, values, lengths, mask, scale):
    """What every attention kernel takes, in its order: the input pointers (``w`` None for
    dot; the key padding mask as uint8), the sizes (Tq, T, F, D), the score's scale (1 for
    additive) and the shape's bucket (the autotune key), the inputs' strides. Also the shape."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    additive = score == "additive"
    Tq, F = q.shape[1], q.shape[2]
    T, D = values.shape[1], values.shape[2]
    shape = (Tq, T, F, D)
    mask_u8, s_mn, s_mt = (None, 0, 0) if mask is None else (mask.view(torch.uint8), mask.stride(0), mask.stride(1))
    inputs = (q, k, w if additive else None, values, lengths, mask_u8)
    sizes = (*shape, 1.0 if additive else float(scale), *_k()[1].bucket(*shape))
    strides = (*q.stride(), *k.stride(), w.stride(0) if additive else 0, *values.stride(), s_mn, s_mt)
    return inputs, sizes, strides, shape


def attention_forward(score, q, k, w, values, lengths, mask, scale, need_weights):
    """q (N, Tq, F), k (N, T, F), values (N, T, D); ``w`` (F,) the additive score vector (None for
    dot), ``scale`` the dot score's factor. Returns (out (N, Tq, D), lse (N, Tq), probabilities
    (N, Tq, T) or None), all in the compute dtype (float32, or float64). The context is kept in
    the compute dtype: the backward's delta = dO . O needs it."""
    inputs, sizes, strides, shape = _operands(score, q, k, w, values, lengths, mask, scale)
    N, (Tq, T, _, D) = q.shape[0], shape
    cdt, CDT, DOT_DT, prec = _types(values)
    out = new_empty((N, Tq, D), cdt, values.device)
    lse = new_empty((N, Tq), cdt, values.device)
    scores = new_empty((N, Tq, T), cdt, values.device) if need_weights else None
    grid = lambda m: (N, _cdiv(Tq, m["BLOCK_Q"]), _cdiv(D, m["BLOCK_D"]))  # noqa: E731
    _launch(_k()[0].attention_fwd, score, shape, values.dtype, grid, *inputs, out, lse, scores, *sizes, *strides,
            *out.stride(), NEED_WEIGHTS=need_weights, CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec)
    probs = torch.exp(scores - lse[..., None]) if need_weights else None  # masked: exp(-inf) = 0
    return out, lse, probs


def attention_backward(score, q, k, w, values, lengths, mask, scale, lse, d_out, d_probs, need_dq):
    """Gradients (dq or None, dk, dw (None for dot), dvalues) in the inputs' dtypes; ``d_probs``
    the gradient of the returned probabilities, or None."""
    inputs, sizes, strides, shape = _operands(score, q, k, w, values, lengths, mask, scale)
    N, (Tq, T, F, D) = q.shape[0], shape
    K = _k()[0]
    cdt, CDT, DOT_DT, prec = _types(values)
    meta = dict(CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec)
    new = lambda *size: new_empty(size, cdt, values.device)  # noqa: E731
    # delta [N, Tq] is written by the query-block kernel, which runs first, and read by the
    # key-block kernel; the weights' gradient enters in the compute dtype.
    delta = new(N, Tq)
    dprob = d_probs.to(cdt).contiguous() if d_probs is not None else None
    common, tail = (*inputs, d_out, lse, delta, dprob), (*sizes, *strides, *d_out.stride())
    dq = new(N, Tq, F) if need_dq else None
    grid = lambda m: (N, _cdiv(Tq, m["BLOCK_Q"]))  # noqa: E731
    _launch(K.attention_bwd_dq, score, shape, values.dtype, grid, *common, dq if need_dq else delta, *tail,
            NEED_DQ=need_dq, **meta)
    dk, dval = new(N, T, F), new(N, T, D)
    dw_part = new(N, T, F) if score == "additive" else None
    grid = lambda m: (N, _cdiv(T, m["BLOCK_T"]))  # noqa: E731
    _launch(K.attention_bwd_dkv, score, shape, values.dtype, grid, *common, dk, dval, dw_part, *tail, **meta)
    dq = dq.to(q.dtype) if need_dq else None
    dw = dw_part.sum(dim=(0, 1)).to(w.dtype) if dw_part is not None else None
    return dq, dk.to(k.dtype), dw, dval.to(values.dtype)
