"""What the GPU is: its SM count and per-SM limits, whether kernels are compiled for one, and the
driver's occupancy answer for a compiled kernel.

The planner (launchers/plan.py), the launch runner (launchers/launch.py) and the TF32 rule
(launchers/tf32.py) ask here. ``assume_gpu`` makes every answer that of a given GPU whatever the
tensors' device, so the compile check and the host-sync tests plan and build real launches from
CPU tensors. Whether the kernels run compiled or interpreted is backend.py's (``INTERPRET``,
read at each call so ``backend.enable_interpreter`` and tests' patches take effect here).
Named ``gpu``, not ``device``, so that it never shadows the ``device`` arguments of its callers.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

import torch

from . import backend

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
    return device.type == "cuda" and not backend.INTERPRET


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
