"""Attention as custom ops: ``fastgru::attention_fwd`` / ``fastgru::attention_bwd`` for every score
(``"additive"``, ``"dot"``), their fake implementations and the autograd registration.

Saved for backward: the inputs and the log-sum-exp per query row (``lse``, +inf for a fully
masked row); the backward recomputes the scores blockwise. The probabilities are computed only
when the caller asked for them (``need_weights``), since they are an output then, and gradients
flow to them too: their gradient enters the backward as ``d_probs``.

Optional results are empty tensors inside the ops (a custom op returns tensors only): the
probabilities without ``need_weights``, dq when the query needs no gradient, dw for the dot score.
"""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.attention import SCORES, attention_backward, attention_forward
from .guard import op_entry

_STRIDED = ("q", "k", "values", "mask")  # the kernels take their strides


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("fastgru::attention_fwd", mutates_args=())
@op_entry(strided=_STRIDED)
def attention_fwd(
    q: Tensor, k: Tensor, w: Optional[Tensor], values: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor],
    scale: float, score: str, need_weights: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    out, lse, probs = attention_forward(score, q, k, w, values, lengths, mask, scale, need_weights)
    probs = probs.to(values.dtype) if need_weights else values.new_empty(0)
    return out.to(values.dtype), lse, probs


@attention_fwd.register_fake
def _(q, k, w, values, lengths, mask, scale, score, need_weights):
    (N, Tq), (T, D) = q.shape[:2], values.shape[1:]
    probs = values.new_empty((N, Tq, T)) if need_weights else values.new_empty(0)
    return values.new_empty((N, Tq, D)), q.new_empty((N, Tq), dtype=_compute_dtype(values.dtype)), probs


@torch.library.custom_op("fastgru::attention_bwd", mutates_args=())
@op_entry(strided=_STRIDED)
def attention_bwd(
    q: Tensor, k: Tensor, w: Optional[Tensor], values: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor],
    lse: Tensor, d_out: Tensor, d_probs: Optional[Tensor], scale: float, score: str, need_dq: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dq, dk, dw, dval = attention_backward(score, q, k, w, values, lengths, mask, scale, lse, d_out, d_probs, need_dq)
    empty = values.new_empty(0)
    return (dq if need_dq else empty), dk, (dw if dw is not None else empty), dval


@attention_bwd.register_fake
def _(q, k, w, values, lengths, mask, lse, d_out, d_probs, scale, score, need_dq):
    empty = values.new_empty(0)
    dq = q.new_empty(q.shape) if need_dq else empty
    dw = w.new_empty(w.shape) if w is not None else empty
    return dq, k.new_empty(k.shape), dw, values.new_empty(values.shape)


def _setup(ctx, inputs, output):
    q, k, w, values, lengths, mask, scale, score, need_weights = inputs
    ctx.save_for_backward(q, k, w, values, lengths, mask, output[1])
    ctx.scale, ctx.score = scale, score


def _backward(ctx, d_out, _d_lse, d_probs):
    q, k, w, values, lengths, mask, lse = ctx.saved_tensors
    if d_out is None:
        d_out = values.new_zeros((*lse.shape, values.shape[-1]))
    if d_probs is not None and d_probs.numel() == 0:
        d_probs = None
    need_dq = ctx.needs_input_grad[0]
    dq, dk, dw, dval = attention_bwd(q, k, w, values, lengths, mask, lse, d_out, d_probs, ctx.scale, ctx.score, need_dq)
    return (dq if need_dq else None), dk, (dw if w is not None else None), dval, None, None, None, None, None


attention_fwd.register_autograd(_backward, setup_context=_setup)


def attention_op(score, q, k, w, values, lengths, mask, scale, need_weights):
    """Differentiable fused attention (shapes in launchers.attention.attention_forward):
    returns (context (N, Tq, D), weights (N, Tq, T) or None) in the inputs' dtype."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    out, _, probs = attention_fwd(q, k, w, values, lengths, mask, float(scale), score, need_weights)
    return out, (probs if need_weights else None)
