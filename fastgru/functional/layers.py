"""How a stack of recurrent layers runs, whatever the family (GRU, LSTM): the kernels' loop over
layers, and PyTorch's own recurrent operator (torch.gru, torch.lstm) on padded or packed input.

A family's state is a tuple of tensors, each (L*D, B, .): (h,) for the GRU, (h, c) for the LSTM.
functional/recurrent.py and functional/lstm.py say only which layer op or operator runs it.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def run_layers(input, states, weights, num_layers, bidirectional, batch_first, dropout, training, lengths, run_layer):
    """nn's stacking of layers on the kernel backends: ``run_layer(layer_input, states_l,
    weights_l, lengths) -> (output, final states_l)`` runs one layer, all its directions in one
    launch (states_l: each state's rows of that layer, (D, B, .); weights_l: its directions'
    tuples); dropout between layers (training only). lengths (B,) default to the whole sequence.
    Returns (the last layer's output, the final states stacked layer by layer)."""
    D = 2 if bidirectional else 1
    T, B = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=input.device)
    lengths = lengths.to(device=input.device, dtype=torch.int64)
    layer_in, finals = input, []
    for layer in range(num_layers):
        rows = slice(layer * D, (layer + 1) * D)
        out, final = run_layer(layer_in, tuple(s[rows] for s in states), weights[rows], lengths)
        finals.append(final)
        if dropout > 0 and training and layer < num_layers - 1:
            out = F.dropout(out, p=dropout, training=True)
        layer_in = out
    return layer_in, tuple(torch.cat(parts) for parts in zip(*finals))


def _flat_params(weights):
    """nn's flat parameter list (w_ih, w_hh[, b_ih, b_hh][, w_hr] per layer and direction) and
    whether it has biases (PyTorch's LSTM operator infers the projection from the count)."""
    return [w for ws in weights for w in ws if w is not None], weights[0][2] is not None


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


def _call_operator(op, leading, state, weights, num_layers, dropout, training, bidirectional, *trailing):
    """``op(*leading, hx, params, has_bias, num_layers, dropout, training, bidirectional,
    *trailing)`` on the module's own parameters -> (output, final state tuple). PyTorch's
    operators take a single state bare (torch.gru) and several as a tuple (torch.lstm), and
    return the final states after the output."""
    params, has_bias = _flat_params(weights)
    hx = state[0] if len(state) == 1 else state
    with _separate_weights_ok(leading[0].is_cuda):
        out, *final = op(*leading, hx, params, has_bias, num_layers, dropout, training, bidirectional, *trailing)
    return out, tuple(final)


def pytorch_packed(op, packed, state, weights, num_layers, bidirectional, dropout, training):
    """PyTorch's recurrent operator ``op`` (torch.gru, torch.lstm) on a PackedSequence's data,
    exactly as nn's modules run it: the state tuple and the final one in the caller's batch order,
    permuted by the sequence's indices on the device. Returns (packed output, final state tuple)."""
    if packed.sorted_indices is not None:
        state = tuple(s.index_select(1, packed.sorted_indices) for s in state)
    data, final = _call_operator(op, (packed.data, packed.batch_sizes), state, weights, num_layers, dropout, training,
                                 bidirectional)
    if packed.unsorted_indices is not None:
        final = tuple(s.index_select(1, packed.unsorted_indices) for s in final)
    # A new PackedSequence, not packed._replace(data=...): Dynamo rebuilds a _replace'd one
    # wrongly across a graph break (an IndexError in pad_packed_sequence under torch.compile).
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), final


def pytorch_padded(op, input, state, weights, num_layers, bidirectional, batch_first, dropout, training, lengths):
    """PyTorch's recurrent operator ``op`` on a padded input (the CPU default, and the ``cudnn``
    strategy), on the module's own parameters. With lengths, packed (on the host, as PyTorch
    packs), run as pytorch_packed and padded again to the input's length.
    Returns (output laid out like input, final state tuple)."""
    if lengths is None:
        return _call_operator(op, (input,), state, weights, num_layers, dropout, training, bidirectional, batch_first)
    T = input.shape[1] if batch_first else input.shape[0]
    packed = pack_padded_sequence(input, lengths.cpu(), batch_first=batch_first, enforce_sorted=False)
    out, final = pytorch_packed(op, packed, state, weights, num_layers, bidirectional, dropout, training)
    return pad_packed_sequence(out, batch_first=batch_first, total_length=T)[0], final
