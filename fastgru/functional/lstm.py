"""Public functions of the LSTM family (lstm, lstm_cell): validate inputs, then hand them to the
chosen backend, as functional/recurrent.py does for the GRU.

Every check happens here, before any kernel runs, and raises the exception type nn.LSTM raises
for the same mistake, with a message naming the argument (``hidden[0]`` is h_0, ``hidden[1]``
c_0, as in nn.LSTM's messages). Backends (fastgru.backend): ``torch`` runs PyTorch's own LSTM
operator, as does ``strategy='cudnn'`` on any device; ``interpret`` and ``triton`` the layer op
(both directions of a layer in one launch) and the fused cell op; ``reference`` reference.lstm.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import backend, reference
from ..ops.guard import autocast_entry
from ..ops.lstm_cell import lstm_cell_op
from ..ops.lstm_layer import lstm_layer_forward_plan, lstm_layer_op
from .checks import check_cell_states, check_lengths, check_sequence, check_state
from .dispatch import Explanation, check_strategy, choose, needs_grad, stack_directions
from .layers import pytorch_packed, pytorch_padded, run_layers

# (w_ih, w_hh, b_ih, b_hh, w_hr) for one layer and direction; biases and w_hr may be None.
LayerWeights = Sequence[torch.Tensor | None]


def state_pair(hx, what: str = "LSTM: hx", error: type = RuntimeError) -> tuple[torch.Tensor, torch.Tensor]:
    """``hx`` as the tuple (h, c), or ``error`` saying what it is instead (nn.LSTM raises a
    RuntimeError for a wrong number of states, nn.LSTMCell a TypeError)."""
    if isinstance(hx, (tuple, list)) and len(hx) == 2 and all(isinstance(t, torch.Tensor) for t in hx):
        return hx[0], hx[1]
    got = type(hx).__name__ + (f" of {len(hx)}" if isinstance(hx, (tuple, list)) else "")
    raise error(f"{what} must be a tuple (h_0, c_0) of two tensors, got {got}")


def check_lstm_inputs(input, hx, weights, num_layers, bidirectional, batch_first, lengths) -> None:
    """Validate a batched LSTM call (input 3-D, hx = (h_0 (L*D, B, R), c_0 (L*D, B, H))), in
    nn.LSTM's order: the input, then hidden[0], then hidden[1]. Raises before any kernel runs."""
    h0, c0 = state_pair(hx)
    w_hh = weights[0][1]
    T, B = check_sequence("LSTM", input, weights[0][0], batch_first)
    rows = num_layers * (2 if bidirectional else 1)
    for k, (state, features) in enumerate(((h0, w_hh.shape[1]), (c0, w_hh.shape[0] // 4))):
        check_state(state, (rows, B, features), input, f"hidden[{k}]", f"hx[{k}]")
    if lengths is not None:
        check_lengths(lengths, B, 1, T, "the sequence length", input.device)


def _check_cudnn(input, hx, weights, bidirectional, batch_first, training, lengths) -> None:
    """A forced ``strategy='cudnn'`` runs PyTorch's own operator only where its result means what
    the kernels' would (dispatch.cudnn_refusal); elsewhere a ValueError says why. The LSTM has no
    measured table: ``cudnn`` is never chosen for it, only forced."""
    h0, c0 = hx
    choose(input, h0, [*weights, (c0,)], bidirectional, batch_first, training, lengths, "cudnn", True)


@autocast_entry
def lstm(input: torch.Tensor, hx, weights: Sequence[LayerWeights], num_layers: int, bidirectional: bool = False,
         batch_first: bool = False, dropout: float = 0.0, training: bool = False,
         lengths: torch.Tensor | None = None, strategy: str | None = None):
    """A stack of LSTM layers, nn.LSTM's equations (reference.lstm states them).

    input (T, B, I) or (B, T, I) with ``batch_first``; hx = (h_0 (L*D, B, R), c_0 (L*D, B, H)),
    R = proj_size or H; weights: one (w_ih (4H, I_l), w_hh (4H, R), b_ih (4H,) or None,
    b_hh (4H,) or None, w_hr (R, H) or None) per layer and direction, forward direction first
    (nn.LSTM's parameter order). lengths (B,): rows run over their first lengths[b] steps; outputs
    past a row's length are zero and its state is carried. strategy: None, 'rows', 'stepwise',
    'persistent' (the kernels), or 'cudnn' (PyTorch's own operator).
    Returns (output (..., D*R) laid out like input, (h_n (L*D, B, R), c_n (L*D, B, H))).
    """
    check_lstm_inputs(input, hx, weights, num_layers, bidirectional, batch_first, lengths)
    check_strategy(strategy)
    hx = state_pair(hx)
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
    B = input.shape[0] if batch_first else input.shape[1]
    which = backend.backend_for(input)
    if strategy == "cudnn":
        _check_cudnn(input, hx, weights, bidirectional, batch_first, training, lengths)
    if which == "reference" or B == 0:
        # B == 0: nothing to compute; the reference's loop over empty tensors keeps autograd intact.
        x = input.transpose(0, 1) if batch_first else input
        out, state = reference.lstm(x, hx, weights, num_layers, bidirectional, lengths, dropout, training)
        return (out.transpose(0, 1) if batch_first else out), state
    if which == "torch" or strategy == "cudnn":
        return _torch_lstm(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths)
    return run_layers(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths,
                      lambda x, state, ws, lengths: _kernel_layer(x, state, ws, lengths, batch_first, strategy))


def _stacked(ws):
    """One layer's weights for the layer kernels, both directions in one launch: dispatch's
    stack_directions, and w_hr (D, P, H) or None."""
    return (*stack_directions(ws), None if ws[0][4] is None else torch.stack([w[4] for w in ws]))


def _kernel_layer(x, state, ws, lengths, batch_first, strategy):
    """One layer through fastgru::lstm_layer_fwd, both directions in one launch."""
    w_ih, w_hh, b_ih, b_hh, w_hr = _stacked(ws)
    out, h_n, c_n = lstm_layer_op(x, state[0], state[1], w_ih, w_hh, b_ih, b_hh, w_hr, lengths, batch_first, strategy)
    return out, (h_n, c_n)


def explain_lstm(input, hx, weights, bidirectional, batch_first, training, lengths, strategy) -> Explanation:
    """The Explanation of one batched LSTM call (input 3-D, hx = (h_0, c_0)), decided as lstm()
    decides: the backend, PyTorch's operator where forced (``cudnn``; the LSTM has no measured
    table), else the first layer's plan as its launcher plans it (compiled for the fit, nothing run)."""
    check_strategy(strategy)
    hx = state_pair(hx)
    which = backend.backend_for(input)
    mode = "training" if needs_grad(input, hx[0], [*weights, (hx[1],)]) else "inference"
    if which == "reference":
        return Explanation(which, None, "FASTGRU_BACKEND=reference: the readable PyTorch loop (fastgru/reference.py)", mode)
    if strategy == "cudnn":
        _check_cudnn(input, hx, weights, bidirectional, batch_first, training, lengths)
        return Explanation(which, None if which == "torch" else "cudnn", "forced", mode)
    if which == "torch":
        return Explanation(which, None, "CPU: PyTorch's own LSTM operator (the kernels are GPU kernels)", mode)
    w_ih, w_hh, _, _, w_hr = _stacked(weights[: 2 if bidirectional else 1])
    plan, reason = lstm_layer_forward_plan(input, w_ih, w_hh, w_hr, batch_first, mode == "training", strategy)
    return Explanation(which, plan.strategy, reason, mode, plan)


def _torch_lstm(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths):
    """PyTorch's own LSTM operator: the CPU default, and the ``cudnn`` strategy, on the module's
    own parameters. With lengths, packed (on the host, as PyTorch packs) and padded again."""
    return pytorch_padded(torch.lstm, input, hx, weights, num_layers, bidirectional, batch_first, dropout, training,
                          lengths)


def pytorch_packed_lstm(packed, hx, weights, num_layers, bidirectional, dropout, training):
    """PyTorch's own LSTM operator on a PackedSequence's data, exactly as nn.LSTM runs it (hx and
    the final state in the caller's batch order, permuted by the sequence's indices on the device)."""
    return pytorch_packed(torch.lstm, packed, tuple(hx), weights, num_layers, bidirectional, dropout, training)


def lstm_packed_runs_pytorch(data, hx, weights, bidirectional, training, strategy) -> bool:
    """Whether a PackedSequence call runs PyTorch's own operator on the packed data directly, as
    nn.LSTM does (no padding, no host read of the lengths): on the CPU backend, and wherever
    ``cudnn`` is forced (checked as lstm checks it). The reference backend pads instead."""
    which = backend.backend_for(data)
    if which == "reference":
        return False
    if strategy == "cudnn":
        _check_cudnn(data, state_pair(hx), weights, bidirectional, False, training, None)
    return which == "torch" or strategy == "cudnn"


@autocast_entry
def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: input (B, I), hx = (h (B, H), c (B, H)) -> (h' (B, H), c' (B, H));
    nn.LSTMCell's equations, checked as nn.LSTMCell checks them."""
    h, c = state_pair(hx, "lstm_cell: hx", TypeError)
    if input.dim() != 2 or h.dim() != 2 or c.dim() != 2:
        raise ValueError(f"lstm_cell: expected 2-D input, hx[0] and hx[1], got {input.dim()}-D, {h.dim()}-D and "
                         f"{c.dim()}-D")
    check_cell_states(input, (h, c), w_ih, w_hh, ("hx[0]", "hx[1]"))
    which = backend.backend_for(input)
    if which == "reference" or input.shape[0] == 0:
        return reference.lstm_cell(input, h, c, w_ih, w_hh, b_ih, b_hh)
    if which == "torch":
        return torch.lstm_cell(input, (h, c), w_ih, w_hh, b_ih, b_hh)
    return lstm_cell_op(input, h, c, w_ih, w_hh, b_ih, b_hh)
