"""Public functions of the GRU family (gru, gru_cell): validate inputs, then hand them to the
chosen backend.

Every check happens here, before any kernel runs, and raises the exception type nn.GRU raises
for the same mistake, with a message naming the expected shape, dtype or device.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import backend, reference
from ..ops.gru_cell import gru_cell_op
from ..ops.gru_layer import gru_layer_op
from ..ops.guard import autocast_entry
from .checks import check_lengths
from .dispatch import check_strategy, choose, stack_directions
from .cpu_reset_before import gru_reset_before

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# (w_ih, w_hh, b_ih, b_hh) for one layer and direction; biases may be None.
LayerWeights = Sequence[torch.Tensor | None]


def _check_weights_match(x: torch.Tensor, w: torch.Tensor, what: str) -> None:
    if x.dtype != w.dtype:
        raise ValueError(
            f"{what} dtype ({x.dtype}) does not match weight dtype ({w.dtype}). "
            f"Convert the input: {what}.to({w.dtype}), or the module: module.to({x.dtype})"
        )
    if x.device != w.device:
        raise RuntimeError(f"{what} is on {x.device} but the weights are on {w.device}; move both to one device")


def check_gru_inputs(input, hx, weights, num_layers, bidirectional, batch_first, lengths) -> None:
    """Validate a batched GRU call (input 3-D). Raises before any kernel runs."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"GRU: input must be a Tensor, got {type(input).__name__}")
    if input.dim() != 3:
        raise ValueError(f"GRU: expected a 3-D batched input, got {input.dim()}-D")
    w_ih, w_hh = weights[0][0], weights[0][1]
    if input.dtype not in FLOAT_DTYPES:
        raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({w_ih.dtype})")
    _check_weights_match(input, w_ih, "input")
    input_size, hidden_size = w_ih.shape[1], w_hh.shape[1]
    if input.shape[-1] != input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {input_size}, got {input.shape[-1]}"
        )
    T, B = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    if T == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    D = 2 if bidirectional else 1
    expected = (num_layers * D, B, hidden_size)
    if hx.dim() != 3 or tuple(hx.shape) != expected:
        raise RuntimeError(f"Expected hidden size {expected}, got {list(hx.shape)}")
    if hx.dtype != input.dtype:
        raise RuntimeError(f"hx dtype ({hx.dtype}) must match input dtype ({input.dtype})")
    if hx.device != input.device:
        raise RuntimeError(f"Input and hidden tensors are not at the same device, found input on {input.device} and hx on {hx.device}")
    if lengths is not None:
        check_lengths(lengths, B, 1, T, "the sequence length", input.device)


@autocast_entry
def gru(
    input: torch.Tensor,
    hx: torch.Tensor,
    weights: Sequence[LayerWeights],
    num_layers: int,
    bidirectional: bool = False,
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    lengths: torch.Tensor | None = None,
    strategy: str | None = None,
    reset_after: bool = True,
):
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

    D = 2 if bidirectional else 1
    T = input.shape[1] if batch_first else input.shape[0]
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=input.device)
    lengths = lengths.to(device=input.device, dtype=torch.int64)
    layer_in, h_n = input, []
    for layer in range(num_layers):
        w_ih, w_hh, b_ih, b_hh = stack_directions(weights[layer * D : (layer + 1) * D])
        out, h = gru_layer_op(
            layer_in, hx[layer * D : (layer + 1) * D], w_ih, w_hh, b_ih, b_hh, lengths, batch_first, strategy, reset_after
        )
        h_n.append(h)
        if dropout > 0 and training and layer < num_layers - 1:
            out = F.dropout(out, p=dropout, training=True)
        layer_in = out
    return layer_in, torch.cat(h_n)


def _reference_gru(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths, reset_after):
    x = input.transpose(0, 1) if batch_first else input
    out, h_n = reference.gru(x, hx, weights, num_layers, bidirectional, lengths, dropout, training, reset_after)
    return (out.transpose(0, 1) if batch_first else out), h_n


def _flat_params(weights):
    """nn.GRU's flat parameter list (w_ih, w_hh[, b_ih, b_hh] per layer and direction) and bias."""
    has_bias = weights[0][2] is not None
    return [w for ws in weights for w in (ws if has_bias else ws[:2])], has_bias


@contextlib.contextmanager
def _separate_weights_ok(on_cuda: bool):
    """cuDNN copies separate (not flattened) parameters into its flat buffer at each call, and
    warns that they are not one contiguous chunk; for the module's own parameters that is
    expected (they are separate by design), so the warning is silenced for that call only."""
    if not on_cuda:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk of memory.*")
        yield


def _torch_gru(input, hx, weights, num_layers, bidirectional, batch_first, dropout, training, lengths):
    """PyTorch's own GRU operator: the CPU default, and the ``cudnn`` strategy on CUDA, on the
    module's own parameters."""
    params, has_bias = _flat_params(weights)
    with _separate_weights_ok(input.is_cuda):
        return _torch_gru_call(input, hx, params, has_bias, num_layers, bidirectional, batch_first, dropout, training,
                               lengths)


def pytorch_packed_gru(packed, hx, weights, num_layers, bidirectional, dropout, training):
    """PyTorch's own GRU operator on a PackedSequence's data, exactly as nn.GRU runs it (hx and
    h_n in the caller's batch order, permuted by the sequence's indices on the device)."""
    params, has_bias = _flat_params(weights)
    if packed.sorted_indices is not None:
        hx = hx.index_select(1, packed.sorted_indices)
    with _separate_weights_ok(packed.data.is_cuda):
        data, h_n = torch.gru(packed.data, packed.batch_sizes, hx, params, has_bias, num_layers, dropout, training,
                              bidirectional)
    if packed.unsorted_indices is not None:
        h_n = h_n.index_select(1, packed.unsorted_indices)
    return packed._replace(data=data), h_n


def _torch_gru_call(input, hx, params, has_bias, num_layers, bidirectional, batch_first, dropout, training, lengths):
    if lengths is None:
        return torch.gru(input, hx, params, has_bias, num_layers, dropout, training, bidirectional, batch_first)
    T = input.shape[1] if batch_first else input.shape[0]
    packed = pack_padded_sequence(input, lengths.cpu(), batch_first=batch_first, enforce_sorted=False)
    hx = hx.index_select(1, packed.sorted_indices.to(hx.device))
    data, h_n = torch.gru(
        packed.data, packed.batch_sizes, hx, params, has_bias, num_layers, dropout, training, bidirectional
    )
    h_n = h_n.index_select(1, packed.unsorted_indices.to(h_n.device))
    out = packed._replace(data=data)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return out, h_n


@autocast_entry
def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True):
    """One GRU step: input (B, I), hx (B, H) -> h' (B, H); nn.GRUCell's equations
    (``reset_after=False``: the reset gate before the recurrent matmul, as in gru)."""
    if input.dim() != 2 or hx.dim() != 2:
        raise ValueError(f"gru_cell: expected 2-D input and hx, got {input.dim()}-D and {hx.dim()}-D")
    if input.shape[1] != w_ih.shape[1]:
        raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} expected {w_ih.shape[1]}")
    if input.shape[0] != hx.shape[0]:
        raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match hidden0 batch size {hx.shape[0]}")
    if hx.shape[1] != w_hh.shape[1]:
        raise RuntimeError(f"hidden0 has inconsistent hidden_size: got {hx.shape[1]}, expected {w_hh.shape[1]}")
    _check_weights_match(input, w_ih, "input")
    if hx.dtype != input.dtype or hx.device != input.device:
        raise RuntimeError(f"hx must have input's dtype and device ({input.dtype}, {input.device}), got ({hx.dtype}, {hx.device})")
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
