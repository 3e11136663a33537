"""Input checks shared by the families' public functions."""

from __future__ import annotations

import torch


def check_lengths(lengths, n: int, lo: int, hi: int, meaning: str, device=None) -> torch.Tensor:
    """``lengths`` as an int64 tensor of shape (n,) on ``device`` (default: where it is), after
    checking it: integers, one per batch row, each in [lo, hi] (``meaning`` says what hi is).

    The range needs the values: in eager mode it is read and a ValueError names the offending
    range; inside torch.compile (where reading a value would break the graph) the same condition
    becomes an asynchronous assertion that fails the run with the same message."""
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"lengths must be an integer tensor of shape ({n},), got dtype {lengths.dtype}")
    if tuple(lengths.shape) != (n,):
        raise ValueError(f"lengths must have shape ({n},) (one length per batch row), got {tuple(lengths.shape)}")
    if device is not None and lengths.device.type != "cpu" and lengths.device != torch.device(device):
        raise RuntimeError(f"lengths is on {lengths.device} but the inputs are on {device}")
    message = f"lengths must lie in [{lo}, {hi}] ({meaning})"
    if torch.compiler.is_compiling():
        torch._assert_async(((lengths >= lo) & (lengths <= hi)).all(), message)
    elif n and (int(lengths.min()) < lo or int(lengths.max()) > hi):
        raise ValueError(f"{message}, got values in [{int(lengths.min())}, {int(lengths.max())}]")
    return lengths.to(device=device if device is not None else lengths.device, dtype=torch.int64)
