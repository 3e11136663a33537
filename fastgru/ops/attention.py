"""Attention as custom ops: ``fastgru::attention_fwd`` / ``fastgru::attention_bwd`` for every score
(``"additive"``, ``"dot"``), their fake implementations and the autograd registration.

Saved for backward: the inputs and each query row's score maximum and softmax denominator
(``stats`` (B, 2, Tq)), and with dropout the seed tensor; the backward recomputes the scores
and the dropout mask blockwise.

Dropout's seed is a one-element int64 tensor drawn per call by torch's generator on the inputs'
device (``torch.randint``), handed to the kernels as a pointer. No host value is read, so a
call can be captured in a CUDA graph, and every replay draws a new mask: torch's CUDA generator
advances its Philox offset per replay, the launch arguments stay the same. The same
torch.manual_seed repeats the mask. The probabilities are computed only
when the caller asked for them (``need_weights``), since they are an output then, and gradients
flow to them too: their gradient enters the backward as ``d_probs``.

Optional results are empty tensors inside the ops (a custom op returns tensors only): the
probabilities without ``need_weights``, dq when the query needs no gradient, dw for the dot score.
"""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.attention import SCORES, attention_backward, attention_forward, stats_dtype
from .guard import op_entry

_STRIDED = ("q", "k", "values", "mask")  # the kernels take their strides


@torch.library.custom_op("fastgru::attention_fwd", mutates_args=())
@op_entry(strided=_STRIDED)
def attention_fwd(
    q: Tensor, k: Tensor, w: Optional[Tensor], values: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor],
    scale: float, score: str, need_weights: bool, heads: int, dropout_p: float, seed: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    out, stats, probs = attention_forward(score, q, k, w, values, lengths, mask, scale, need_weights, heads, dropout_p, seed)
    probs = probs.to(values.dtype) if need_weights else values.new_empty(0)
    return out.to(values.dtype), stats, probs


@attention_fwd.register_fake
def _(q, k, w, values, lengths, mask, scale, score, need_weights, heads, dropout_p, seed):
    (B, Tq), (T, D) = q.shape[:2], values.shape[1:]
    probs = values.new_empty((B, Tq, T)) if need_weights else values.new_empty(0)
    return values.new_empty((B, Tq, D)), q.new_empty((B, 2, Tq), dtype=stats_dtype(values)), probs


@torch.library.custom_op("fastgru::attention_bwd", mutates_args=())
@op_entry(strided=_STRIDED)
def attention_bwd(
    q: Tensor, k: Tensor, w: Optional[Tensor], values: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor],
    stats: Tensor, d_out: Tensor, d_probs: Optional[Tensor], scale: float, score: str, need_dq: bool, heads: int,
    dropout_p: float, seed: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dq, dk, dw, dval = attention_backward(score, q, k, w, values, lengths, mask, scale, stats, d_out, d_probs, need_dq,
                                          heads, dropout_p, seed)
    empty = lambda: values.new_empty(0)  # noqa: E731  (a fresh one each: outputs may not alias)
    return (dq if need_dq else empty()), dk, (dw if dw is not None else empty()), dval


@attention_bwd.register_fake
def _(q, k, w, values, lengths, mask, stats, d_out, d_probs, scale, score, need_dq, heads, dropout_p, seed):
    empty = values.new_empty(0)
    dq = q.new_empty(q.shape) if need_dq else empty
    dw = w.new_empty(w.shape) if w is not None else empty
    return dq, k.new_empty(k.shape), dw, values.new_empty(values.shape)


def _setup(ctx, inputs, output):
    q, k, w, values, lengths, mask, scale, score, need_weights, heads, dropout_p, seed = inputs
    ctx.save_for_backward(q, k, w, values, lengths, mask, output[1], seed)
    ctx.scale, ctx.score, ctx.heads, ctx.dropout_p = scale, score, heads, dropout_p


def _backward(ctx, d_out, _d_stats, d_probs):
    q, k, w, values, lengths, mask, stats, seed = ctx.saved_tensors
    if d_out is None:
        d_out = values.new_zeros((stats.shape[0], stats.shape[2], values.shape[-1]))
    if d_probs is not None and d_probs.numel() == 0:
        d_probs = None
    need_dq = ctx.needs_input_grad[0]
    dq, dk, dw, dval = attention_bwd(q, k, w, values, lengths, mask, stats, d_out, d_probs, ctx.scale, ctx.score, need_dq,
                                     ctx.heads, ctx.dropout_p, seed)
    return (dq if need_dq else None), dk, (dw if w is not None else None), dval, *([None] * 8)


attention_fwd.register_autograd(_backward, setup_context=_setup)


def attention_op(score, q, k, w, values, lengths, mask, scale, need_weights, dropout_p=0.0, heads=1):
    """Differentiable fused attention: returns (context (B, Tq, D), weights (B, Tq, T) or None)
    in the inputs' dtype. q (B, Tq, F), k (B, T, F), values (B, T, D) with B = N * heads, row
    n * heads + h holding head h of batch row n; ``w`` (F,) or (heads, F) for the additive
    score, None for dot; ``lengths`` (N,) and ``mask`` (N, T) per batch row. ``dropout_p`` > 0
    drops attention weights (a Philox mask made in the kernels from a seed drawn per call by
    torch's generator on the inputs' device, so a given torch.manual_seed repeats it and a CUDA
    graph's replays draw new ones; regenerated in the backward from the same seed tensor); the
    returned weights are those after dropout."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if heads < 1 or q.shape[0] % heads:
        raise ValueError(f"heads must be a positive divisor of the batch of heads {q.shape[0]}, got {heads}")
    seed = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64, device=q.device) if dropout_p > 0 else None
    out, _, probs = attention_fwd(q, k, w, values, lengths, mask, float(scale), score, need_weights, int(heads),
                                  float(dropout_p), seed)
    return out, (probs if need_weights else None)
