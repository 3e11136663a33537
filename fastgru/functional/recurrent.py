"""Public functions of the GRU family (gru, gru_cell): validate inputs, then hand them to the
chosen backend.

Every check happens here, before any kernel runs, and raises the exception type nn.GRU raises
for the same mistake, with a message naming the expected shape, dtype or device.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import backend, reference
from ..ops.gru_cell import gru_cell_op
from ..ops.gru_layer import gru_layer_op
from ..ops.guard import autocast_entry
from .checks import check_cell_states, check_lengths, check_sequence, check_state
from .cpu_reset_before import gru_reset_before
from .dispatch import check_strategy, choose, stack_directions
from .layers import pytorch_packed, pytorch_padded, run_layers

# (w_ih, w_hh, b_ih, b_hh) for one layer and direction; biases may be None.
LayerWeights = Sequence[torch.Tensor | None]


def check_gru_inputs(input, hx, weights, num_layers, bidirectional, batch_first, lengths) -> None:
    """Validate a batched GRU call (input 3-D, hx (L*D, B, H)). Raises before any kernel runs."""
    T, B = check_sequence("GRU", input, weights[0][0], batch_first)
    rows = num_layers * (2 if bidirectional else 1)
    check_state(hx, (rows, B, weights[0][1].shape[1]), input, "hidden", "hx")
    if lengths is not None:
        check_lengths(lengths, B, 1, T, "the sequence length", input.device)


@autocast_entry
def gru(input: torch.Tensor, hx: torch.Tensor, weights: Sequence[LayerWeights], num_layers: int,
        bidirectional: bool = False, batch_first: bool = False, dropout: float = 0.0, training: bool = False,
        lengths: torch.Tensor | None = None, strategy: str | None = None, reset_after: bool = True):
    """A stack of GRU layers, nn.GRU's equations (``reset_after=False``: the reset gate scales
    the state before the recurrent matmul, n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)).

    input (T, B, I) or (B, T, I) with ``batch_first``; hx (L*D, B, H); weights: one
    (w_ih (3H, I_l), w_hh (3H, H), b_ih (3H,) or None, b_hh (3H,) or None) per layer and direction,
    forward direction first (nn.GRU's parameter order). lengths (B,): rows run over their first
    lengths[b] steps; outputs past a row's length are zero and its state is carried.
    Returns (output (..., D*H) laid out like input, h_n (L*D, B, H)).
    """
    check_gru_inputs(input, hx, weights, num_layers, bidirectional, batch_first, lengths)
    if not isinstance(reset_after, bool):
        raise TypeError(f"GRU: reset_after must be a bool, got {type(reset_after).__name__}")
    check_strategy(strategy)
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
    B = input.shape[0] if batch_first else input.shape[1]
    which = backend.backend_for(input)
    if strategy == "cudnn" or which in ("triton", "interpret"):
        # The measured table may send the call to PyTorch's own operator (cuDNN): see dispatch.py.
        strategy, _ = choose(input, hx, weights, bidirectional, batch_first, training, lengths, strategy, reset_after)
        if strategy == "cudnn" and which != "reference" and B > 0:
            return _torch_gru(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths)
    if which == "reference" or B == 0:
        # B == 0: nothing to compute; the reference's loop over empty tensors keeps autograd intact.
        return _reference_gru(
            input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths, reset_after
        )
    if which == "torch" and not reset_after:  # PyTorch has no operator for it
        x = input.transpose(0, 1) if batch_first else input
        out, h_n = gru_reset_before(x, hx, weights, num_layers, bidirectional, dropout, training, lengths)
        return (out.transpose(0, 1) if batch_first else out), h_n
    if which == "torch":
        return _torch_gru(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths)

    out, (h_n,) = run_layers(
        input, (hx,), weights, num_layers, bidirectional, batch_first, dropout, training, lengths,
        lambda x, state, ws, lengths: _kernel_layer(x, state, ws, lengths, batch_first, strategy, reset_after),
    )
    return out, h_n


def _kernel_layer(x, state, ws, lengths, batch_first, strategy, reset_after):
    """One layer through fastgru::gru_layer_fwd, both directions in one launch."""
    w_ih, w_hh, b_ih, b_hh = stack_directions(ws)
    out, h_n = gru_layer_op(x, state[0], w_ih, w_hh, b_ih, b_hh, lengths, batch_first, strategy, reset_after)
    return out, (h_n,)


def _reference_gru(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths, reset_after):
    x = input.transpose(0, 1) if batch_first else input
    out, h_n = reference.gru(x, hx, weights, num_layers, bidirectional, lengths, dropout, training, reset_after)
    return (out.transpose(0, 1) if batch_first else out), h_n


def _torch_gru(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths):
    """PyTorch's own GRU operator: the CPU default, and the ``cudnn`` strategy on CUDA, on the
    module's own parameters (with lengths: packed, run, padded again)."""
    out, (h_n,) = pytorch_padded(torch.gru, input, (hx,), weights, num_layers, bidirectional, batch_first, dropout,
                                 training, lengths)
    return out, h_n


def pytorch_packed_gru(packed, hx, weights, num_layers, bidirectional, dropout, training):
    """PyTorch's own GRU operator on a PackedSequence's data, exactly as nn.GRU runs it (hx and
    h_n in the caller's batch order, permuted by the sequence's indices on the device)."""
    out, (h_n,) = pytorch_packed(torch.gru, packed, (hx,), weights, num_layers, bidirectional, dropout, training)
    return out, h_n


@autocast_entry
def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True):
    """One GRU step: input (B, I), hx (B, H) -> h' (B, H); nn.GRUCell's equations
    (``reset_after=False``: the reset gate before the recurrent matmul, as in gru)."""
    if input.dim() != 2 or hx.dim() != 2:
        raise ValueError(f"gru_cell: expected 2-D input and hx, got {input.dim()}-D and {hx.dim()}-D")
    check_cell_states(input, (hx,), w_ih, w_hh, ("hx",))
    if not isinstance(reset_after, bool):
        raise TypeError(f"GRUCell: reset_after must be a bool, got {type(reset_after).__name__}")
    which = backend.backend_for(input)
    if which == "reference" or input.shape[0] == 0 or (which == "torch" and not reset_after):
        return reference.gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh, reset_after)
    if which == "torch":
        return torch.gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh)
    if not reset_after:
        # Two phases per step (r before the candidate's matmul): one step of the layer kernels.
        lengths = torch.ones(input.shape[0], dtype=torch.int64, device=input.device)
        b_hh = b_hh.unsqueeze(0) if b_hh is not None else None
        out, _ = gru_layer_op(input.unsqueeze(0), hx.unsqueeze(0), w_ih, w_hh.unsqueeze(0), b_ih, b_hh, lengths,
                              False, None, False)
        return out[0]
    return gru_cell_op(input, hx, w_ih, w_hh, b_ih, b_hh)
