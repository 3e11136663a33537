"""Which cuDNN RNN algorithm PyTorch asks for when nn.LSTM runs on CUDA, and why: the LSTM's
branch of ``get_algo`` (aten/src/ATen/native/cudnn/RNN.cpp; bench/cudnn_algo.py states the GRU's
and where it was read). It differs from the GRU's in two places:

* proj_size > 0: always ``STANDARD`` (cuDNN's projected LSTM has only that algorithm);
* ``PERSIST_STATIC`` (the recurrent weights resident on chip for the whole sequence) is used on
  sm >= 8.0 with at least 98 SMs, sm_86 excepted, for an fp16, unpacked, one-layer, one-direction
  LSTM with H <= 1024, H and the input size multiples of 128 and B a multiple of 8 up to 128
  (the GRU never gets it there). On an H100 that is cuDNN at its best: about 2 us a step at
  B = 16, H = 768 (a published figure, not measured here).

The small-H algorithm (H <= 192 forward, <= 128 backward) is the GRU's rule, shared by the LSTM.
"""

from __future__ import annotations

from bench.cudnn_algo import DTYPES, MODES, _sm

H100_SMS = 132


def persist_static(dtype: str, H: int, B: int, D: int = 1, layers: int = 1, input_size: int | None = None,
                   sm=90, sm_count: int = H100_SMS) -> tuple[bool, str]:
    """(whether PyTorch runs cuDNN's persistent LSTM, why) for unpacked input without proj_size."""
    major, minor = _sm(sm)
    I = H if input_size is None else input_size
    if dtype != "fp16":
        return False, f"PERSIST_STATIC is only tried for fp16 ({dtype} here)"
    if not (layers == 1 and D == 1 and H <= 1024 and H % 128 == 0 and I % 128 == 0):
        return False, "PERSIST_STATIC needs one layer, one direction, H <= 1024, H and input size multiples of 128"
    if major == 7 and minor != 5:
        ok = (B % 16 == 0 and B not in (80, 112)) or B == 8
        return ok, f"sm_7{minor}: B = {B} {'passes' if ok else 'fails'} PyTorch's Volta batch rule"
    if major >= 8 and sm_count >= 98 and minor != 6:
        ok = B % 8 == 0 and B <= 128
        return ok, f"sm_{major}{minor}: B = {B} {'is' if ok else 'is not'} a multiple of 8 up to 128 (the LSTM's rule)"
    return False, f"PyTorch does not use PERSIST_STATIC on sm_{major}{minor} with {sm_count} SMs"


def pass_algorithm(forward: bool, dtype: str, H: int, B: int, D: int = 1, sm=90, *, layers: int = 1,
                   input_size: int | None = None, proj_size: int = 0, packed: bool = False,
                   sm_count: int = H100_SMS) -> tuple[str, str]:
    """(algorithm, reason) PyTorch's get_algo returns for one pass of an nn.LSTM."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    if proj_size:
        return "STANDARD", "proj_size > 0: cuDNN's projected LSTM runs the standard algorithm only"
    if packed:
        return "STANDARD", "packed input: PyTorch uses the persistent algorithms only for unpacked input"
    major, _ = _sm(sm)
    limit = 192 if forward else 128
    if dtype != "fp64" and major >= 6 and H <= limit:
        return "PERSIST_STATIC_SMALL_H", f"H = {H} <= {limit}, the small-H limit of the {'forward' if forward else 'backward'} pass"
    ok, why = persist_static(dtype, H, B, D, layers, input_size, sm, sm_count)
    return ("PERSIST_STATIC", why) if ok else ("STANDARD", why)


def lstm_algorithm(mode: str, dtype: str, H: int, B: int, D: int = 1, sm=90, **kw) -> tuple[str, str]:
    """(algorithm, reason) for nn.LSTM in ``mode`` ("fwd X / bwd Y" where the passes differ)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    fwd, why_fwd = pass_algorithm(True, dtype, H, B, D, sm, **kw)
    if mode == "inference":
        return fwd, why_fwd
    bwd, why_bwd = pass_algorithm(False, dtype, H, B, D, sm, **kw)
    if fwd == bwd:
        return fwd, f"forward: {why_fwd}; backward: {why_bwd}"
    return f"fwd {fwd} / bwd {bwd}", f"forward: {why_fwd}; backward: {why_bwd}"
