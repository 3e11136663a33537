"""The GRU cell as custom ops: ``fastgru::gru_cell_fwd`` / ``fastgru::gru_cell_bwd``, their fake
implementations and the autograd registration that connects them."""

from typing import Optional

import torch
from torch import Tensor

from ..launchers.gru_cell import gru_cell_backward, gru_cell_forward
from ..launchers.gru_layer import acc_dtype
from .guard import op_entry


@torch.library.custom_op("fastgru::gru_cell_fwd", mutates_args=())
@op_entry()
def gru_cell_fwd(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor], save: bool
) -> tuple[Tensor, Tensor]:
    out, gates = gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, save)
    return out, gates


@gru_cell_fwd.register_fake
def _(x, h, w_ih, w_hh, b_ih, b_hh, save):
    B, H = h.shape
    gates = x.new_empty((B, 4 * H) if save else (0,), dtype=acc_dtype(x.dtype))
    return x.new_empty((B, H)), gates


@torch.library.custom_op("fastgru::gru_cell_bwd", mutates_args=())
@op_entry()
def gru_cell_bwd(
    dh_new: Tensor, x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, gates: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return gru_cell_backward(dh_new, x, h, w_ih, w_hh, gates)


@gru_cell_bwd.register_fake
def _(dh_new, x, h, w_ih, w_hh, gates):
    H3 = w_hh.shape[0]
    return (torch.empty_like(x), torch.empty_like(h), torch.empty_like(w_ih), torch.empty_like(w_hh),
            w_ih.new_empty(H3), w_hh.new_empty(H3))


def _gru_cell_setup(ctx, inputs, output):
    x, h, w_ih, w_hh, b_ih, b_hh, save = inputs
    ctx.save_for_backward(x, h, w_ih, w_hh, output[1])
    ctx.has_bias = b_ih is not None


def _gru_cell_backward(ctx, dh_new, _dgates):
    x, h, w_ih, w_hh, gates = ctx.saved_tensors
    if gates.numel() == 0 and x.numel() > 0:
        raise RuntimeError("fastgru: backward through a GRU cell forward that ran without saving (save=False)")
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = gru_cell_bwd(dh_new, x, h, w_ih, w_hh, gates)
    if not ctx.has_bias:
        db_ih = db_hh = None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh, None


gru_cell_fwd.register_autograd(_gru_cell_backward, setup_context=_gru_cell_setup)


def gru_cell_op(x, h, w_ih, w_hh, b_ih, b_hh):
    """Differentiable GRU cell step through the fused kernel."""
    tensors = (x, h, w_ih, w_hh, b_ih, b_hh)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return gru_cell_fwd(x, h, w_ih, w_hh, b_ih, b_hh, save)[0]
