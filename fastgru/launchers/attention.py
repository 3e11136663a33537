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
from .alloc import new_empty
from .launch import launch
from .loader import kernels
from .tf32 import tf32_allowed

SCORES = ("additive", "dot")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _k():
    """The kernel module and its configuration module, imported on first use."""
    return kernels("attention"), kernels("attention_configs")


def _launch(kernel, score, shape, dtype, grid, *args, **meta):
    """Launch an autotuned attention kernel with ``SCORE=score``; the configurations that suit
    the score, ``shape`` and ``dtype`` (the dtype the kernel computes in, _types) travel with it (the interpreter, which cannot time them,
    runs its own single one). The kernel's arguments carry the shape's bucket as its autotune key."""
    configs = _k()[1].attention_configs(score, *shape, dtype=dtype, interpret=backend.INTERPRET)
    launch(kernel, grid, args, dict(meta, SCORE=score), configs)


def _types(values: torch.Tensor):
    """(the dtype the kernels compute in, as a torch dtype; triton compute dtype; triton
    dot-operand dtype; dot precision). fp32 inputs compute in float64 unless TF32 is allowed
    (cuda.matmul.allow_tf32, which nn.Linear and torch's attention follow too): every
    reduction of fp32 attention then carries no rounding of its own, so the results hold to
    the input and output roundings alone, never worse than PyTorch's own fp32 arithmetic
    (docs/DECISIONS.md 19). With TF32, fp32 dots run on TF32 tensor cores in float32; bf16 and
    fp16 compute in float32 with tensor-core dots of the input dtype."""
    configs, dtype = _k()[1], values.dtype
    tf32 = tf32_allowed(values, "matmul")
    kdt = torch.float64 if dtype == torch.float64 or (dtype == torch.float32 and not tf32) else dtype
    return kdt, configs.compute_dtype(kdt), configs.dot_dtype(kdt, backend.INTERPRET), "tf32" if tf32 else "ieee"


def _accumulator(kdt: torch.dtype) -> torch.dtype:
    """The dtype of the kernels' outputs and saved row statistics for compute dtype ``kdt``."""
    return torch.float64 if kdt == torch.float64 else torch.float32


def stats_dtype(values: torch.Tensor) -> torch.dtype:
    """The dtype of the forward's saved row statistics for ``values`` (_types)."""
    return _accumulator(_types(values)[0])


def _seed(seed, dropout_p, device):
    """The kernels' dropout seed argument: None without dropout, else the one-element int64
    tensor on ``device`` that the ops drew there and the kernels read (a CUDA graph then replays
    the launch unchanged while torch's generator draws a new seed)."""
    if dropout_p <= 0.0:
        return None
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError(f"seed must be a one-element int64 tensor when dropout_p > 0, got {seed!r}")
    if seed.device != device:
        raise RuntimeError(f"seed is on {seed.device} but the attention inputs are on {device}")
    return seed


def _operands(score, q, k, w, values, lengths, mask, scale, heads, dropout_p, seed):
    """What every attention kernel takes, in its order: the input pointers (``w`` None for
    dot; the key padding mask as uint8), the sizes (Tq, T, F, D), the score's scale (1 for
    additive), the heads, the dropout probability, the seed's pointer (_seed), the shape's
    bucket (the autotune key), the inputs' strides (``w`` (F,) or (heads, F)). Also the shape."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    additive = score == "additive"
    Tq, F = q.shape[1], q.shape[2]
    T, D = values.shape[1], values.shape[2]
    shape = (Tq, T, F, D)
    mask_u8, s_mn, s_mt = (None, 0, 0) if mask is None else (mask.view(torch.uint8), mask.stride(0), mask.stride(1))
    inputs = (q, k, w if additive else None, values, lengths, mask_u8)
    seed = _seed(seed, float(dropout_p), values.device)
    sizes = (*shape, 1.0 if additive else float(scale), int(heads), float(dropout_p), seed, *_k()[1].bucket(*shape))
    s_w = (w.stride(0) if w.dim() == 2 else 0, w.stride(-1)) if additive else (0, 0)
    strides = (*q.stride(), *k.stride(), *s_w, *values.stride(), s_mn, s_mt)
    return inputs, sizes, strides, shape


def attention_forward(score, q, k, w, values, lengths, mask, scale, need_weights, heads=1, dropout_p=0.0, seed=None):
    """q (B, Tq, F), k (B, T, F), values (B, T, D) with B = N * heads (row n * heads + h is head
    h of batch row n); ``w`` (F,) or (heads, F) the additive score vector(s) (None for dot),
    ``scale`` the dot score's factor; ``lengths`` (N,) and ``mask`` (N, T) per batch row.
    ``dropout_p`` > 0 drops attention weights by a Philox mask of ``seed`` (a one-element
    int64 tensor on the inputs' device, read by the kernels; see _seed). Returns (out
    (B, Tq, D), stats (B, 2, Tq): each row's score maximum and softmax denominator, the weights after dropout (B, Tq, T) or None), all in the compute
    dtype (float32, or float64)."""
    inputs, sizes, strides, shape = _operands(score, q, k, w, values, lengths, mask, scale, heads, dropout_p, seed)
    B, (Tq, T, _, D) = q.shape[0], shape
    kdt, CDT, DOT_DT, prec = _types(values)
    cdt = _accumulator(kdt)
    out = new_empty((B, Tq, D), cdt, values.device)
    stats = new_empty((B, 2, Tq), cdt, values.device)
    scores = new_empty((B, Tq, T), cdt, values.device) if need_weights else None
    grid = lambda m: (B, _cdiv(Tq, m["BLOCK_Q"]), _cdiv(D, m["BLOCK_D"]))  # noqa: E731
    _launch(_k()[0].attention_fwd, score, shape, kdt, grid, *inputs, out, stats, scores, *sizes, *strides,
            *out.stride(), NEED_WEIGHTS=need_weights, CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec)
    probs = None
    if need_weights:  # masked or dropped: exp(-inf) = 0
        probs = torch.exp(scores - stats[:, 0, :, None]) / stats[:, 1, :, None]
        if dropout_p > 0:
            probs = probs / (1.0 - dropout_p)
    return out, stats, probs


def attention_backward(score, q, k, w, values, lengths, mask, scale, stats, d_out, d_probs, need_dq,
                       heads=1, dropout_p=0.0, seed=None):
    """Gradients (dq or None, dk, dw (None for dot), dvalues) in the inputs' dtypes; ``d_probs``
    the gradient of the returned weights, or None; the rest as in attention_forward (the same
    ``seed`` regenerates the forward's dropout mask)."""
    inputs, sizes, strides, shape = _operands(score, q, k, w, values, lengths, mask, scale, heads, dropout_p, seed)
    B, (Tq, T, F, D) = q.shape[0], shape
    K = _k()[0]
    kdt, CDT, DOT_DT, prec = _types(values)
    cdt = _accumulator(kdt)
    meta = dict(CDT=CDT, DOT_DT=DOT_DT, PRECISION=prec)
    new = lambda *size: new_empty(size, cdt, values.device)  # noqa: E731
    # delta [B, Tq] is written by the query-block kernel, which runs first, and read by the
    # key-block kernel; the weights' gradient enters in the compute dtype.
    delta = new(B, Tq)
    dprob = d_probs.to(cdt).contiguous() if d_probs is not None else None
    common, tail = (*inputs, d_out, stats, delta, dprob), (*sizes, *strides, *d_out.stride())
    dq = new(B, Tq, F) if need_dq else None
    grid = lambda m: (B, _cdiv(Tq, m["BLOCK_Q"]), _cdiv(F, m["BLOCK_F"]) if need_dq else 1)  # noqa: E731
    _launch(K.attention_bwd_dq, score, shape, kdt, grid, *common, dq if need_dq else delta, *tail,
            NEED_DQ=need_dq, **meta)
    dk, dval = new(B, T, F), new(B, T, D)
    dw_part = new(B, T, F) if score == "additive" else None
    grid = lambda m: (B, _cdiv(T, m["BLOCK_T"]), max(_cdiv(F, m["BLOCK_F"]), _cdiv(D, m["BLOCK_D"])))  # noqa: E731
    _launch(K.attention_bwd_dkv, score, shape, kdt, grid, *common, dk, dval, dw_part, *tail, **meta)
    dq = dq.to(q.dtype) if need_dq else None
    dw = None
    if dw_part is not None:  # summed over the batch rows and keys, per head
        dw = dw_part.view(B // heads, heads, T, F).sum(dim=(0, 2)).reshape(w.shape).to(w.dtype)
    return dq, dk.to(k.dtype), dw, dval.to(values.dtype)
