"""How the launchers allocate kernel outputs and scratch buffers.

Only launchers allocate what a kernel writes (each launcher owns its kernels' outputs), so the
allocation helper lives in their layer. ``set_nan_fill(True)`` (the test suite turns it on, as
does ``FASTGRU_NAN_FILL=1``, read by backend.py) fills every fresh floating buffer with NaN, so
an element a kernel forgot to write fails the comparison instead of passing as leftover memory.
"""

from __future__ import annotations

import torch

from .. import backend

_nan_fill = backend.NAN_FILL


def set_nan_fill(enabled: bool) -> None:
    """Fill every buffer the launchers allocate with NaN (tests turn this on)."""
    global _nan_fill
    _nan_fill = bool(enabled)


def new_empty(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """Allocate a kernel output; NaN-filled under ``set_nan_fill(True)`` so holes fail tests."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if _nan_fill and out.is_floating_point():
        out.fill_(float("nan"))
    return out
