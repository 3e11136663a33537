"""The fused attention GRU decoder (one layer) as custom ops: ``fastgru::decoder_fwd`` /
``fastgru::decoder_bwd``, their fake implementations and the autograd registration.

Inputs are the projected ones (fastgru.functional.decoder): gx (N, T, 3H) = x @ W_ix^T + b_ih +
[b_hr, b_hz, 0], the keys (N, T_in, K) as values, their projection for the score kp (N, T_in, F),
the additive score vector v (F,) and query weight W_q (F, H) (None for dot), the context's input
weight W_ic (3H, K), W_hh (3H, H), b_hn (H,) or None, h0 (N, H).

Saved for backward (launchers/decoder.py): the state entering each step, the gates, each step's
query (N, T, F), context (N, T, K) and softmax statistics (N, 2, T); the scores are recomputed,
so nothing of size (N, T, T_in, F) ever exists.
"""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.decoder import DECODER_SCORES, decoder_backward, decoder_forward
from ..launchers.gru_layer import acc_dtype
from .guard import op_entry

_EMPTY = (0,)


@torch.library.custom_op("fastgru::decoder_fwd", mutates_args=())
@op_entry()
def decoder_fwd(
    gx: Tensor, keys: Tensor, kp: Tensor, v: Optional[Tensor], wq: Optional[Tensor], wic: Tensor, whh: Tensor,
    bhn: Optional[Tensor], h0: Tensor, lengths: Optional[Tensor], mask: Optional[Tensor], score: str,
    need_weights: bool, save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    r = decoder_forward(gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths, mask, score, need_weights, save)
    out, ctx, weights, h_n, saved = r
    empty = lambda: gx.new_empty(_EMPTY)  # noqa: E731  (a fresh one each: outputs may not alias)
    weights = weights.to(keys.dtype) if need_weights else empty()
    saved = (ctx, *saved) if save else tuple(empty() for _ in range(5))
    return out, ctx.to(keys.dtype, copy=True), weights, h_n, *saved


@decoder_fwd.register_fake
def _(gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths, mask, score, need_weights, save):
    (N, T, H3), (T_in, K), F = gx.shape, keys.shape[1:], kp.shape[-1]
    H, acc = H3 // 3, acc_dtype(keys.dtype)
    new = lambda *s: gx.new_empty(s, dtype=acc) if save else gx.new_empty(_EMPTY)  # noqa: E731
    weights = keys.new_empty((N, T, T_in)) if need_weights else gx.new_empty(_EMPTY)
    return (keys.new_empty((N, T, H)), keys.new_empty((N, T, K)), weights, keys.new_empty((N, H)),
            new(N, T, K), new(1, T, N, H), new(1, T, N, 4 * H), new(N, T, F), new(N, 2, T))


@torch.library.custom_op("fastgru::decoder_bwd", mutates_args=())
@op_entry()
def decoder_bwd(
    dout: Tensor, dctx: Tensor, dweights: Optional[Tensor], dh_n: Tensor, keys: Tensor, kp: Tensor,
    v: Optional[Tensor], wq: Optional[Tensor], wic: Tensor, whh: Tensor, lengths: Optional[Tensor],
    mask: Optional[Tensor], ctx: Tensor, hprev: Tensor, gates: Tensor, q: Tensor, stats: Tensor, score: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = decoder_backward(dout, dctx, dweights, dh_n, keys, kp, v, wq, wic, whh, lengths, mask, ctx, hprev, gates,
                             q, stats, score)
    return tuple(keys.new_empty(_EMPTY) if g is None else g for g in grads)  # distinct empties: no aliasing


@decoder_bwd.register_fake
def _(dout, dctx, dweights, dh_n, keys, kp, v, wq, wic, whh, lengths, mask, ctx, hprev, gates, q, stats, score):
    N, T, H = dout.shape
    like = lambda t: keys.new_empty(_EMPTY) if t is None else torch.empty_like(t)  # noqa: E731
    return (dout.new_empty((N, T, 3 * H)), torch.empty_like(keys), torch.empty_like(kp), like(v), like(wq),
            torch.empty_like(wic), torch.empty_like(whh), whh.new_empty((H,)), dout.new_empty((N, H)))


def _setup(ctx, inputs, output):
    gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths, mask, score, need_weights, save = inputs
    context, hprev, gates, q, stats = output[4:]
    ctx.save_for_backward(keys, kp, v, wq, wic, whh, lengths, mask, context, hprev, gates, q, stats)
    ctx.score, ctx.has_bhn, ctx.dtype = score, bhn is not None, gx.dtype


def _backward(ctx, dout, dctx, dweights, dh_n, *_saved):
    keys, kp, v, wq, wic, whh, lengths, mask, context, hprev, gates, q, stats = ctx.saved_tensors
    if gates.numel() == 0:
        raise RuntimeError("fastgru: backward through a decoder forward that ran without saving (save=False)")
    N, T = q.shape[0], q.shape[1]
    H = whh.shape[1]
    zeros = lambda *s: keys.new_zeros(s)  # noqa: E731
    dout = zeros(N, T, H) if dout is None else dout
    dctx = zeros(N, T, keys.shape[-1]) if dctx is None else dctx
    dh_n = zeros(N, H) if dh_n is None else dh_n
    if dweights is not None and dweights.numel() == 0:
        dweights = None
    dgx, dkeys, dkp, dv, dwq, dwic, dwhh, dbhn, dh0 = decoder_bwd(
        dout, dctx, dweights, dh_n, keys, kp, v, wq, wic, whh, lengths, mask, context, hprev, gates, q, stats, ctx.score)
    return (dgx.to(ctx.dtype), dkeys, dkp, dv if v is not None else None, dwq if wq is not None else None, dwic, dwhh,
            dbhn if ctx.has_bhn else None, dh0, None, None, None, None, None)


decoder_fwd.register_autograd(_backward, setup_context=_setup)


def decoder_op(gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths, mask, score, need_weights):
    """Differentiable fused decoder over T = gx.shape[1] steps: returns (outputs (N, T, H),
    contexts (N, T, K), weights (N, T, T_in) or None, h_n (N, H)) in the inputs' dtype.
    score "additive" attends with h_{t-1} before each step, "dot" with h_t after it."""
    if score not in DECODER_SCORES:
        raise ValueError(f"score must be one of {DECODER_SCORES}, got {score!r}")
    tensors = (gx, keys, kp, v, wq, wic, whh, bhn, h0)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, ctx, weights, h_n = decoder_fwd(gx, keys, kp, v, wq, wic, whh, bhn, h0, lengths, mask, score,
                                         bool(need_weights), save)[:4]
    return out, ctx, (weights if need_weights else None), h_n
