"""Input checks shared by the families' public functions."""

from __future__ import annotations

import torch

from .. import backend


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Same device, an unindexed device ("cuda") matching any index of its type."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_lengths(lengths, n: int, lo: int, hi: int, meaning: str, device=None) -> torch.Tensor:
    """``lengths`` as an int64 tensor of shape (n,) on ``device`` (default: where it is), after
    checking it: integers, one per batch row, each in [lo, hi] (``meaning`` says what hi is).

    The range needs the values. In eager mode they are read and a ValueError names the offending
    range. Where reading a value on the host is not allowed -- inside torch.compile (it would
    break the graph) and while a CUDA graph is being captured (backend.capturing: a host read
    synchronises, which a capture forbids) -- the same condition becomes an asynchronous
    assertion with the same message, checked on the device when the graph runs. Under capture
    ``lengths`` must already be on ``device``: copying host memory into a graph would replay the
    values of the capture, so a RuntimeError says to pass it on the device instead."""
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
    elif backend.capturing():
        target = torch.device(device) if device is not None else lengths.device
        if not _same_device(lengths.device, target):
            raise RuntimeError(
                f"lengths is on {lengths.device} while a CUDA graph is being captured: a graph cannot copy host "
                f"memory at replay, nor check host values. Pass lengths as an integer tensor on the inputs' device "
                f"({target}), e.g. lengths.to(device) before the capture"
            )
        torch._assert_async(((lengths >= lo) & (lengths <= hi)).all(), message)
    elif n and (int(lengths.min()) < lo or int(lengths.max()) > hi):
        raise ValueError(f"{message}, got values in [{int(lengths.min())}, {int(lengths.max())}]")
    return lengths.to(device=device if device is not None else lengths.device, dtype=torch.int64)
