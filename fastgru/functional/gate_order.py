"""Gate orders between fastgru / torch.nn and the formats it converts to. Works on torch tensors
and numpy arrays alike.

* GRU: fastgru / nn.GRU (r, z, n); Keras and ONNX (z, r, h): the same three blocks, the first two
  swapped (``swap_rz``).
* LSTM: fastgru / nn.LSTM (i, f, g, o); Keras (i, f, c, o), the same order (c is PyTorch's g), so
  no reordering; ONNX (i, o, f, c) (``lstm_to_onnx`` / ``lstm_from_onnx``).
"""

from __future__ import annotations

import torch

# ONNX's LSTM block k is fastgru's block _ONNX_LSTM[k]: (i, o, f, c) <- (i, f, g, o).
_ONNX_LSTM = (0, 3, 1, 2)
# and back: fastgru's block j is ONNX's block _FROM_ONNX_LSTM[j].
_FROM_ONNX_LSTM = (0, 2, 3, 1)


def permute_gates(w, order, axis: int = 0):
    """The ``len(order)`` equal gate blocks of ``w`` along ``axis``, rearranged so that block k
    of the result is block ``order[k]`` of ``w``."""
    n = len(order)
    size = w.shape[axis]
    if size % n:
        raise ValueError(f"gate axis {axis} of a shape {tuple(w.shape)} tensor is not {n} * hidden_size")
    h = size // n
    index = [b * h + j for b in order for j in range(h)]
    if hasattr(w, "index_select"):  # torch
        return w.index_select(axis, torch.tensor(index, device=w.device))
    return w.take(index, axis=axis)


def swap_rz(w, axis: int = 0):
    """(r, z, n) blocks along ``axis`` -> (z, r, n), and back: swapping the first two of three
    equal blocks is its own inverse, so one function converts both ways."""
    return permute_gates(w, (1, 0, 2), axis)


def lstm_to_onnx(w, axis: int = 0):
    """fastgru / nn.LSTM's (i, f, g, o) blocks along ``axis`` -> ONNX's (i, o, f, c)."""
    return permute_gates(w, _ONNX_LSTM, axis)


def lstm_from_onnx(w, axis: int = 0):
    """ONNX's (i, o, f, c) blocks along ``axis`` -> fastgru / nn.LSTM's (i, f, g, o)."""
    return permute_gates(w, _FROM_ONNX_LSTM, axis)
