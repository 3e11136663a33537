"""Which cuDNN RNN algorithm PyTorch asks for when nn.GRU runs on CUDA, and why.

PyTorch does not let cuDNN choose: ``get_algo`` in aten/src/ATen/native/cudnn/RNN.cpp (read at
PyTorch commit 00fc08aa; the 0.74 us per step measured at H = 128 on torch 2.11 is its small-H
algorithm) picks one of three algorithms per pass (the forward pass, and separately the
backward pass of training) from the shape, the dtype and the device:

* ``PERSIST_STATIC_SMALL_H`` (the recurrent weights stay on chip for the whole sequence, small
  hidden sizes only): any non-double, unpacked input on sm >= 6.0 whose hidden size is at most
  192 for the forward pass, at most 128 for the backward pass (GRU and LSTM; plain RNNs have
  larger limits).
* ``PERSIST_STATIC`` (persistent for larger H): fp16 only (not bf16, not fp32), unpacked, one
  layer, one direction, H <= 1024, H and the input size multiples of 128, and a device rule. For
  a GRU the device rule holds only on sm 7.0-7.2 (Volta) with B = 8 or a multiple of 16 other than
  80 and 112, and T >= 40 with B <= 128 (or T >= 20 with B <= 96, or T >= 10 with B <= 32). On
  sm_75 never; on sm >= 8 never for a GRU ("persistent GRU performance is flakier than other RNN
  types"), and on sm_86 or devices with fewer than 98 SMs never for any RNN.
* ``STANDARD`` otherwise: the input projection as one GEMM, then kernels launched from the host
  for every step. That is what nn.GRU runs at H >= 256 on an H100, in every dtype; its per-step
  launch cost is what a CUDA graph removes.

``cudnn_algorithm`` restates those conditions for the benchmark rows; it is tested on CPU
(tests/test_plan_emit.py). It assumes what bench/strategy_table.py measures unless told
otherwise: a GRU, unpacked input, input size equal to H.
"""

from __future__ import annotations

DTYPES = ("fp16", "bf16", "fp32", "fp64")
MODES = ("inference", "training")


def _sm(sm) -> tuple[int, int]:
    """(major, minor) from 90, "sm_90", "9.0" or (9, 0)."""
    if isinstance(sm, tuple) and len(sm) == 2 and all(isinstance(v, int) for v in sm):
        return sm
    text = str(sm).removeprefix("sm_").replace(".", "")
    if not text.isdigit() or len(text) < 2:
        raise ValueError(f"sm: expected a compute capability such as 90, 'sm_90' or (9, 0), got {sm!r}")
    return int(text[:-1]), int(text[-1])


def _small_h(forward: bool, H: int) -> tuple[bool, str]:
    limit = 192 if forward else 128
    return H <= limit, f"H = {H} {'<=' if H <= limit else '>'} {limit}, the small-H limit for a GRU's {'forward' if forward else 'backward'} pass"


def _persist_static(dtype, H, B, T, D, layers, input_size, major, minor, sm_count) -> tuple[bool, str]:
    if dtype != "fp16":
        return False, f"PERSIST_STATIC is only tried for fp16 ({dtype} here)"
    if not (layers == 1 and H <= 1024 and D == 1 and H % 128 == 0 and input_size % 128 == 0):
        return False, "PERSIST_STATIC needs one layer, one direction, H <= 1024, H and input size multiples of 128"
    if major == 7:
        if minor == 5:
            return False, "PyTorch never uses PERSIST_STATIC on sm_75"
        batch_ok = (B % 16 == 0 and B not in (80, 112)) or B == 8
        length_ok = (T >= 40 and B <= 128) or (T >= 20 and B <= 96) or (T >= 10 and B <= 32)
        if batch_ok and length_ok:
            return True, f"sm_7{minor}: B = {B} and T = {T} pass PyTorch's Volta batch/length rule"
        return False, f"sm_7{minor}: B = {B}, T = {T} fail PyTorch's Volta batch/length rule"
    if major >= 8:
        return False, "PyTorch never uses PERSIST_STATIC for a GRU on sm >= 8 (its persistent GRU is 'flakier')"
    return False, f"PyTorch does not use PERSIST_STATIC on sm_{major}{minor}"


def pass_algorithm(forward: bool, dtype: str, H: int, B: int, T: int, D: int = 1, sm=90, *,
                   layers: int = 1, input_size: int | None = None, packed: bool = False,
                   sm_count: int | None = None) -> tuple[str, str]:
    """(algorithm, reason) PyTorch's get_algo returns for one pass (forward or backward) of a GRU."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    for name, value in (("H", H), ("B", B), ("T", T), ("layers", layers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if D not in (1, 2):
        raise ValueError(f"D: expected 1 or 2 directions, got {D!r}")
    major, minor = _sm(sm)
    if packed:
        return "STANDARD", "packed input: PyTorch uses the persistent algorithms only for unpacked input"
    if dtype != "fp64" and major >= 6:
        small, why = _small_h(forward, H)
        if small:
            return "PERSIST_STATIC_SMALL_H", why
    else:
        why = "fp64 is never persistent" if dtype == "fp64" else f"sm_{major}{minor} < 6.0: no persistent algorithm"
    static, why_static = _persist_static(dtype, H, B, T, D, layers, H if input_size is None else input_size,
                                         major, minor, sm_count)
    if static:
        return "PERSIST_STATIC", why_static
    return "STANDARD", f"{why}; {why_static}"


def cudnn_algorithm(mode: str, dtype: str, H: int, B: int, T: int, D: int = 1, sm=90, **kw) -> tuple[str, str]:
    """(algorithm, reason) for nn.GRU in ``mode``: inference runs the forward pass only; training
    runs the forward and the backward pass, each with its own algorithm (named "fwd X / bwd Y"
    when they differ, e.g. at 128 < H <= 192)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    fwd, why_fwd = pass_algorithm(True, dtype, H, B, T, D, sm, **kw)
    if mode == "inference":
        return fwd, why_fwd
    bwd, why_bwd = pass_algorithm(False, dtype, H, B, T, D, sm, **kw)
    if fwd == bwd:
        return fwd, f"forward: {why_fwd}; backward: {why_bwd}"
    return f"fwd {fwd} / bwd {bwd}", f"forward: {why_fwd}; backward: {why_bwd}"


def arch_of_device_name(name: str) -> str | None:
    """sm_XY for the data-centre GPUs the committed results came from (older files recorded only
    the device name); None for a name not known here."""
    known = (("H100", "sm_90"), ("H200", "sm_90"), ("GH200", "sm_90"), ("H800", "sm_90"),
             ("A100", "sm_80"), ("A800", "sm_80"), ("L40", "sm_89"), ("L4", "sm_89"), ("V100", "sm_70"))
    for token, arch in known:
        if token in (name or ""):
            return arch
    return None
