"""The LSTM cell as custom ops: ``fastgru::lstm_cell_fwd`` / ``fastgru::lstm_cell_bwd``, their
fake implementations and the autograd registration that connects them."""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.gru_layer import acc_dtype
from ..launchers.lstm_cell import lstm_cell_backward, lstm_cell_forward
from .guard import op_entry


@torch.library.custom_op("fastgru::lstm_cell_fwd", mutates_args=())
@op_entry()
def lstm_cell_fwd(
    x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    save: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> h' (B, H), c' (B, H), and what backward needs (B, 6H) in the accumulator dtype (empty
    without ``save``)."""
    return lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, save)


@lstm_cell_fwd.register_fake
def _(x, h, c, w_ih, w_hh, b_ih, b_hh, save):
    B, H = h.shape
    gates = x.new_empty((B, 6 * H) if save else (0,), dtype=acc_dtype(x.dtype))
    return x.new_empty((B, H)), x.new_empty((B, H)), gates


@torch.library.custom_op("fastgru::lstm_cell_bwd", mutates_args=())
@op_entry()
def lstm_cell_bwd(
    dh_new: Optional[Tensor], dc_new: Optional[Tensor], x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor,
    gates: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> dx, dh, dc, dw_ih, dw_hh, db (the gradient of b_ih and of b_hh alike). A None dh_new or
    dc_new is a zero gradient."""
    return lstm_cell_backward(dh_new, dc_new, x, h, w_ih, w_hh, gates)


@lstm_cell_bwd.register_fake
def _(dh_new, dc_new, x, h, w_ih, w_hh, gates):
    return (torch.empty_like(x), torch.empty_like(h), torch.empty_like(h), torch.empty_like(w_ih),
            torch.empty_like(w_hh), w_ih.new_empty(w_ih.shape[0]))


def _lstm_cell_setup(ctx, inputs, output):
    x, h, c, w_ih, w_hh, b_ih, b_hh, save = inputs
    ctx.save_for_backward(x, h, w_ih, w_hh, output[2])  # c itself is in the gates (slot 4)
    ctx.has_bias = b_ih is not None
    ctx.set_materialize_grads(False)  # an output without a gradient reaches backward as None


def _lstm_cell_backward(ctx, dh_new, dc_new, _dgates):
    x, h, w_ih, w_hh, gates = ctx.saved_tensors
    if gates.numel() == 0 and x.numel() > 0:
        raise RuntimeError("fastgru: backward through an LSTM cell forward that ran without saving (save=False)")
    dx, dh, dc, dw_ih, dw_hh, db = lstm_cell_bwd(dh_new, dc_new, x, h, w_ih, w_hh, gates)
    db_ih = db_hh = db if ctx.has_bias else None
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, None


lstm_cell_fwd.register_autograd(_lstm_cell_backward, setup_context=_lstm_cell_setup)


def lstm_cell_op(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """Differentiable LSTM cell step through the fused kernel -> (h', c'). Saves for backward only
    when a gradient can flow."""
    tensors = (x, h, c, w_ih, w_hh, b_ih, b_hh)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    h_new, c_new, _ = lstm_cell_fwd(x, h, c, w_ih, w_hh, b_ih, b_hh, save)
    return h_new, c_new
