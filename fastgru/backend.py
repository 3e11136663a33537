"""The one place that decides which implementation runs, and the only reader of the environment.

Backends:
  ``triton``     CUDA tensors: the Triton kernels.
  ``torch``      CPU tensors by default: PyTorch's own operators (our kernels are GPU kernels).
  ``interpret``  ``FASTGRU_BACKEND=interpret``: the Triton kernels on CPU through ``TRITON_INTERPRET=1``.
  ``reference``  ``FASTGRU_BACKEND=reference``: the pure-PyTorch statement of the math in reference.py.

Triton reads ``TRITON_INTERPRET`` when ``@triton.jit`` decorates a function, so interpret mode is
switched on here, at import, before ``fastgru.kernels`` is ever imported.
"""

from __future__ import annotations

import ctypes
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

# Debug aid for tests: fresh kernel outputs are filled with NaN so an unwritten element shows.
_nan_fill = os.environ.get("FASTGRU_NAN_FILL", "0") not in ("", "0")

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


# Per-SM limits of an H100 (sm_90): 64K registers, 228 KB of shared memory per SM of which one
# block may take 227 KB. The default of assume_gpu, and the fallback where torch does not report them.
HOPPER_LIMITS = (65536, 233472, 232448)
# An A100 (sm_80): 164 KB per SM, 163 KB per block.
AMPERE_LIMITS = (65536, 167936, 166912)

_assumed_sms: int | None = None
_assumed_limits = HOPPER_LIMITS


@contextmanager
def assume_gpu(sms: int, limits: tuple[int, int, int] = HOPPER_LIMITS):
    """Plan and pick kernel options as for a CUDA GPU with ``sms`` SMs and per-SM ``limits``
    (see sm_limits), whatever device the tensors are on: the compile check
    (``python -m bench.compile``) builds real launches from CPU tensors and compiles them for a
    GPU it does not have."""
    global _assumed_sms, _assumed_limits
    previous = _assumed_sms, _assumed_limits
    _assumed_sms, _assumed_limits = int(sms), tuple(limits)
    try:
        yield
    finally:
        _assumed_sms, _assumed_limits = previous


def on_gpu(device) -> bool:
    """True when kernels for tensors on ``device`` (a device, or a tensor) are compiled for a GPU:
    a CUDA device outside the interpreter, or any device under ``assume_gpu``."""
    if _assumed_sms is not None:
        return True
    device = device.device if isinstance(device, torch.Tensor) else torch.device(device)
    return device.type == "cuda" and not INTERPRET


def sm_count(device) -> int:
    """Streaming multiprocessors of ``device`` (the assumed count under ``assume_gpu``)."""
    if _assumed_sms is not None:
        return _assumed_sms
    return torch.cuda.get_device_properties(device).multi_processor_count


def sm_limits(device) -> tuple[int, int, int]:
    """(registers per SM, shared memory bytes per SM, shared memory bytes one block may take)."""
    if _assumed_sms is not None:
        return _assumed_limits
    p = torch.cuda.get_device_properties(device)
    return (
        getattr(p, "regs_per_multiprocessor", HOPPER_LIMITS[0]),
        getattr(p, "shared_memory_per_multiprocessor", HOPPER_LIMITS[1]),
        getattr(p, "shared_memory_per_block_optin", HOPPER_LIMITS[2]),
    )


_libcuda = None  # ctypes handle of the CUDA driver, loaded on first use; False where there is none


def _cuda_driver():
    global _libcuda
    if _libcuda is None:
        try:
            _libcuda = ctypes.CDLL("libcuda.so.1")
        except OSError:
            _libcuda = False
    return _libcuda or None


def max_active_blocks(function, threads: int, shared_bytes: int) -> int | None:
    """How many blocks of the loaded kernel ``function`` (a CUfunction handle, as Triton's
    compiled kernels hold it) one SM runs at once with ``threads`` threads a block and
    ``shared_bytes`` of dynamic shared memory: the driver's own answer
    (cuOccupancyMaxActiveBlocksPerMultiprocessor), the bound a cooperative launch is checked
    against. None where no CUDA driver (or no handle) answers: the compile check, the interpreter."""
    if _assumed_sms is not None or not function:
        return None
    cuda = _cuda_driver()
    if cuda is None:
        return None
    blocks = ctypes.c_int(0)
    status = cuda.cuOccupancyMaxActiveBlocksPerMultiprocessor(
        ctypes.byref(blocks), ctypes.c_void_p(int(function)), ctypes.c_int(int(threads)), ctypes.c_size_t(int(shared_bytes)))
    return int(blocks.value) if status == 0 else None


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
