"""The GRU layer as custom ops: ``fastgru::gru_layer_fwd`` / ``fastgru::gru_layer_bwd``, their fake
implementations and the autograd registration that connects them.

One layer, all its directions in one launch (shapes in launchers.gru_layer.gru_layer_forward).
The forward saves for backward only when a gradient can flow (``save``); what it saves is the
launcher's layout (gates and the state entering every step, in the accumulator dtype).
"""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.gru_layer import acc_dtype, gru_layer_backward, gru_layer_forward
from .guard import op_entry


@torch.library.custom_op("fastgru::gru_layer_fwd", mutates_args=())
@op_entry()
def gru_layer_fwd(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    lengths: Tensor, batch_first: bool, save: bool, strategy: Optional[str], reset_after: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    out, h_n, (hprev, gates) = gru_layer_forward(
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy, reset_after
    )
    if not save:
        hprev, gates = x.new_empty(0), x.new_empty(0)
    return out, h_n, hprev, gates


@gru_layer_fwd.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy, reset_after=True):
    D, _, H = w_hh.shape
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    out = x.new_empty((*x.shape[:2], D * H))
    acc = acc_dtype(x.dtype)
    if not save:
        return out, x.new_empty((D, B, H)), x.new_empty(0), x.new_empty(0)
    return out, x.new_empty((D, B, H)), x.new_empty((D, T, B, H), dtype=acc), x.new_empty((D, T, B, 4 * H), dtype=acc)


@torch.library.custom_op("fastgru::gru_layer_bwd", mutates_args=())
@op_entry()
def gru_layer_bwd(
    dout: Tensor, dh_n: Tensor, x: Tensor, w_ih: Tensor, w_hh: Tensor, lengths: Tensor,
    hprev: Tensor, gates: Tensor, batch_first: bool, strategy: Optional[str], reset_after: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_layer_backward(
        dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, batch_first, strategy, reset_after
    )
    wd = w_hh.dtype
    return dx, dh0.to(x.dtype, copy=True), dw_ih.to(wd), dw_hh.to(wd), db_ih.to(wd), db_hh.to(wd)


@gru_layer_bwd.register_fake
def _(dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, batch_first, strategy, reset_after=True):
    D, H3, _ = w_hh.shape
    return (
        torch.empty_like(x), x.new_empty(dh_n.shape), torch.empty_like(w_ih), torch.empty_like(w_hh),
        w_hh.new_empty(D * H3), w_hh.new_empty((D, H3)),
    )


def _gru_layer_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy, reset_after = inputs
    _, _, hprev, gates = output
    ctx.save_for_backward(x, w_ih, w_hh, lengths, hprev, gates)
    ctx.batch_first, ctx.strategy, ctx.has_bias = batch_first, strategy, b_ih is not None
    ctx.reset_after = reset_after


def _gru_layer_backward(ctx, dout, dh_n, _dhprev, _dgates):
    x, w_ih, w_hh, lengths, hprev, gates = ctx.saved_tensors
    if hprev.numel() == 0 and x.numel() > 0:
        raise RuntimeError("fastgru: backward through a GRU forward that ran without saving (save=False)")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_layer_bwd(
        dout, dh_n, x, w_ih, w_hh, lengths, hprev, gates, ctx.batch_first, ctx.strategy, ctx.reset_after
    )
    if not ctx.has_bias:
        db_ih = db_hh = None
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None, None


gru_layer_fwd.register_autograd(_gru_layer_backward, setup_context=_gru_layer_setup)


def gru_layer_op(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, strategy=None, reset_after=True):
    """Differentiable one-layer GRU through the kernels (see gru_layer_forward for shapes).
    Saves for backward only when a gradient can flow."""
    tensors = (x, h0, w_ih, w_hh, b_ih, b_hh)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, h_n, _, _ = gru_layer_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, save, strategy, reset_after)
    return out, h_n
