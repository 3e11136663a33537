"""The LSTM layer as custom ops: ``fastgru::lstm_layer_fwd`` / ``fastgru::lstm_layer_bwd``, their
fake implementations and the autograd registration that connects them.

One layer, all its directions in one launch (shapes in launchers.lstm_layer.lstm_layer_forward).
The forward saves for backward only when a gradient can flow (``save``); what it saves is the
launcher's layout (the gates, both cell states and, with a projection, m = o * tanh(c) of every
step, and the state entering every step, in the accumulator dtype).
"""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.gru_layer import acc_dtype
from ..launchers.lstm_layer import lstm_layer_backward, lstm_layer_forward
from ..launchers.lstm_layer import lstm_layer_forward_plan  # noqa: F401  (what functional's explain asks: nothing launches)
from .guard import op_entry


@torch.library.custom_op("fastgru::lstm_layer_fwd", mutates_args=())
@op_entry()
def lstm_layer_fwd(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    w_hr: Optional[Tensor], lengths: Tensor, batch_first: bool, save: bool, strategy: Optional[str],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> out, h_n, c_n, and (empty without ``save``) hprev (D, T, B, R) and gates (D, T, B, 6H or 7H)."""
    out, h_n, c_n, (hprev, gates) = lstm_layer_forward(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, save, strategy
    )
    if not save:
        hprev, gates = x.new_empty(0), x.new_empty(0)
    return out, h_n, c_n, hprev, gates


@lstm_layer_fwd.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, save, strategy):
    D, H4, R = w_hh.shape
    H = H4 // 4
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    out, h_n, c_n = x.new_empty((*x.shape[:2], D * R)), x.new_empty((D, B, R)), x.new_empty((D, B, H))
    if not save:
        return out, h_n, c_n, x.new_empty(0), x.new_empty(0)
    acc = acc_dtype(x.dtype)
    G = 7 * H if w_hr is not None else 6 * H
    return out, h_n, c_n, x.new_empty((D, T, B, R), dtype=acc), x.new_empty((D, T, B, G), dtype=acc)


@torch.library.custom_op("fastgru::lstm_layer_bwd", mutates_args=())
@op_entry()
def lstm_layer_bwd(
    dout: Tensor, dh_n: Tensor, dc_n: Tensor, x: Tensor, w_ih: Tensor, w_hh: Tensor, w_hr: Optional[Tensor],
    lengths: Tensor, hprev: Tensor, gates: Tensor, batch_first: bool, strategy: Optional[str],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> dx, dh0, dc0, dw_ih, dw_hh, db_ih (D*4H,), db_hh (D, 4H) (the same values: every bias
    sits outside a gate product), dw_hr (empty without a projection), each in its input's dtype."""
    dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr = lstm_layer_backward(
        dout, dh_n, dc_n, x, w_ih, w_hh, w_hr, lengths, hprev, gates, batch_first, strategy
    )
    wd = w_hh.dtype
    dw_hr = w_hh.new_empty(0) if dw_hr is None else dw_hr.to(wd)
    # Outputs of a custom op may not alias each other or an input: copies where a cast may be a no-op.
    return (dx, dh0.to(x.dtype, copy=True), dc0.to(x.dtype, copy=True), dw_ih.to(wd), dw_hh.to(wd),
            db.reshape(-1).to(wd, copy=True), db.to(wd, copy=True), dw_hr)


@lstm_layer_bwd.register_fake
def _(dout, dh_n, dc_n, x, w_ih, w_hh, w_hr, lengths, hprev, gates, batch_first, strategy):
    D, H4, _ = w_hh.shape
    return (
        torch.empty_like(x), x.new_empty(dh_n.shape), x.new_empty(dc_n.shape), torch.empty_like(w_ih),
        torch.empty_like(w_hh), w_hh.new_empty(D * H4), w_hh.new_empty((D, H4)),
        w_hh.new_empty(0) if w_hr is None else torch.empty_like(w_hr),
    )


def _lstm_layer_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, save, strategy = inputs
    ctx.save_for_backward(x, w_ih, w_hh, w_hr, lengths, output[3], output[4])
    ctx.batch_first, ctx.strategy, ctx.has_bias = batch_first, strategy, b_ih is not None


def _lstm_layer_backward(ctx, dout, dh_n, dc_n, _dhprev, _dgates):
    x, w_ih, w_hh, w_hr, lengths, hprev, gates = ctx.saved_tensors
    if hprev.numel() == 0 and x.numel() > 0:
        raise RuntimeError("fastgru: backward through an LSTM forward that ran without saving (save=False)")
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = lstm_layer_bwd(
        dout, dh_n, dc_n, x, w_ih, w_hh, w_hr, lengths, hprev, gates, ctx.batch_first, ctx.strategy
    )
    if not ctx.has_bias:
        db_ih = db_hh = None
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr if w_hr is not None else None, None, None, None, None


lstm_layer_fwd.register_autograd(_lstm_layer_backward, setup_context=_lstm_layer_setup)


def lstm_layer_op(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, strategy=None):
    """Differentiable one-layer LSTM through the kernels -> (out, h_n, c_n) (see
    lstm_layer_forward for shapes). Saves for backward only when a gradient can flow."""
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, h_n, c_n, _, _ = lstm_layer_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, save, strategy)
    return out, h_n, c_n
