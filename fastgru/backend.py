"""The one place that decides which implementation runs, and the only reader of the environment.
What the GPU is (its SMs and per-SM limits) is gpu.py's; how kernel outputs are allocated,
launchers/alloc.py's.

Backends:
  ``triton``     CUDA tensors: the Triton kernels.
  ``torch``      CPU tensors by default: PyTorch's own operators (our kernels are GPU kernels).
  ``interpret``  ``FASTGRU_BACKEND=interpret``: the Triton kernels on CPU through ``TRITON_INTERPRET=1``.
  ``reference``  ``FASTGRU_BACKEND=reference``: the pure-PyTorch statement of the math in reference.py.

Triton reads ``TRITON_INTERPRET`` when ``@triton.jit`` decorates a function, so interpret mode is
switched on here, at import, before ``fastgru.kernels`` is ever imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import contextmanager

import torch

_CHOICES = ("auto", "interpret", "reference", "torch")

_requested = os.environ.get("FASTGRU_BACKEND", "auto").strip().lower() or "auto"
if _requested not in _CHOICES:
    raise ValueError(f"FASTGRU_BACKEND must be one of {_CHOICES}, got {_requested!r}")
if _requested == "interpret":
    os.environ["TRITON_INTERPRET"] = "1"

INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# Debug aid: FASTGRU_NAN_FILL=1 fills fresh kernel outputs with NaN so an unwritten element shows
# (the switch itself, and the allocation, are launchers/alloc.py's).
NAN_FILL: bool = os.environ.get("FASTGRU_NAN_FILL", "0") not in ("", "0")

# Triton only installs on Linux. Not imported here: importing it decorates triton's own jit
# helpers, which must happen after the interpreter choice is made.
HAS_TRITON = importlib.util.find_spec("triton") is not None


def enable_interpreter() -> None:
    """Run the Triton kernels through the interpreter from now on (CPU tensors can use them).
    Must happen before the kernels are imported: triton.jit reads the mode when it decorates."""
    global INTERPRET
    if INTERPRET:
        return
    if "triton" in sys.modules:
        raise RuntimeError("fastgru: interpreter mode must be enabled before triton is imported")
    os.environ["TRITON_INTERPRET"] = "1"
    INTERPRET = True


@contextmanager
def using(name: str):
    """Temporarily route ops to backend ``name`` (auto, interpret, reference or torch)."""
    global _requested
    if name not in _CHOICES:
        raise ValueError(f"backend must be one of {_CHOICES}, got {name!r}")
    if name == "interpret":
        enable_interpreter()
    previous, _requested = _requested, name
    try:
        yield
    finally:
        _requested = previous


def requested() -> str:
    """The backend asked for in the environment: auto, interpret, reference or torch."""
    return _requested


def backend_for(*tensors: torch.Tensor) -> str:
    """Which implementation handles an op on these tensors: triton, interpret, torch or reference.
    While torch.onnx.export traces a model, always ``reference``: plain PyTorch ops, which the
    exporter turns into standard ONNX operators (the kernels' custom ops have no ONNX form; GRU
    modules export as ONNX GRU nodes before they get here). torch.compile reads the flag as False."""
    if _requested == "reference" or torch.onnx.is_in_onnx_export():
        return "reference"
    on_cuda = any(t.is_cuda for t in tensors if t is not None)
    if on_cuda:
        if not HAS_TRITON:
            raise RuntimeError("fastgru: CUDA tensors need triton, which is not installed")
        return "interpret" if INTERPRET else "triton"
    if _requested == "interpret":
        if not HAS_TRITON:
            raise RuntimeError("fastgru: FASTGRU_BACKEND=interpret needs triton, which is not installed")
        return "interpret"
    return "torch"


def capturing() -> bool:
    """True while the current CUDA stream is being captured into a CUDA graph. Inside a capture
    nothing may read a device value on the host or copy host memory to the device (the capture
    fails, or the copy is baked into the graph), so value checks take their asynchronous form
    (functional/checks.py). False without CUDA. The one place fastgru asks; tests patch it to
    walk the capture paths on the CPU (tests/host_sync.py)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def uses_kernels(*tensors: torch.Tensor) -> bool:
    """True when the Triton kernels (compiled or interpreted) run for these tensors."""
    return backend_for(*tensors) in ("triton", "interpret")
