"""Gate order between fastgru / nn.GRU (r, z, n) and Keras / ONNX (z, r, h): the same three
blocks, the first two swapped. Works on torch tensors and numpy arrays alike."""

from __future__ import annotations

import torch


def swap_rz(w, axis: int = 0):
    """(r, z, n) blocks along ``axis`` -> (z, r, n), and back: swapping the first two of three
    equal blocks is its own inverse, so one function converts both ways."""
    size = w.shape[axis]
    if size % 3:
        raise ValueError(f"gate axis {axis} of a shape {tuple(w.shape)} tensor is not 3 * hidden_size")
    h = size // 3
    index = list(range(h, 2 * h)) + list(range(h)) + list(range(2 * h, 3 * h))
    if hasattr(w, "index_select"):  # torch
        return w.index_select(axis, torch.tensor(index, device=w.device))
    return w.take(index, axis=axis)
