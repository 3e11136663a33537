"""Benchmark cases: what a case is, how a GRU or LSTM case is built, and the quick cases.

A case is one (op, mode, dtype, shape); each of its providers gives one result row. The GRU
providers (gru_providers.py):
  fastgru       this package (Triton kernels on CUDA; PyTorch's own ops on CPU)
  nn.GRU        torch.nn.GRU (cuDNN on CUDA)
  compiled_ref  torch.compile of the reference loop (fastgru.reference); compile time kept apart
  eager_ref     the reference loop run eagerly: the baseline of reset_after=False cases, which
                PyTorch has no operator for (the same math written in PyTorch)
The LSTM providers (lstm_providers.py): fastgru (fastgru.LSTM) and nn.LSTM (cuDNN on CUDA).
Every provider is timed twice: eager, and its step captured in a CUDA graph and replayed (CUDA
only; compiled_ref is not captured, see fastgru.bench.timing). The full case lists (every suite
and shape) live in the repository's bench/ folder.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("inference", "training")
QUICK_COMPILE_SKIP = "skipped in --quick (compile takes tens of seconds)"


@dataclass
class Case:
    suite: str
    op: str
    mode: str  # "inference" (forward under no_grad) or "training" (forward + backward)
    dtype: str  # key of DTYPES
    shape: dict
    providers: tuple
    baselines: tuple
    skip: dict = field(default_factory=dict)  # provider -> reason it is not run

    @property
    def id(self) -> str:
        dims = "-".join(f"{_ABBREV.get(k, k)}{_short(v)}" for k, v in self.shape.items() if _show(k, v, self.shape))
        return f"{self.op}-{self.mode}-{self.dtype}-{dims}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


_ABBREV = {"layers": "L", "bidirectional": "bi", "packed": "pk", "reset_after": "ra", "proj": "P"}


def _short(v):
    return int(v) if isinstance(v, bool) else v


def _show(k, v, shape) -> bool:
    """Case ids leave out the defaults (input size = hidden, one layer, one direction, padded)."""
    if k == "I":
        return v != shape.get("H")
    if k == "layers":
        return v != 1
    if k == "reset_after":
        return not v
    if k == "proj":
        return v != 0
    return bool(v) if k in ("bidirectional", "packed") else True


def default_dtypes(device) -> tuple:
    """bf16 runs by default only on CUDA."""
    return ("fp32", "bf16") if torch.device(device).type == "cuda" else ("fp32",)


def gru_shape(B, H, T, layers=1, bidirectional=False, packed=False, reset_after=True) -> dict:
    """A GRU case's shape; ``reset_after`` is recorded only when False (the original formulation)."""
    shape = {"B": B, "T": T, "I": H, "H": H, "layers": layers, "bidirectional": bidirectional, "packed": packed}
    return shape if reset_after else dict(shape, reset_after=False)


def gru_case(mode, dtype, shape) -> Case:
    """nn.GRU (cuDNN) is the baseline; reset_after=False has none in PyTorch: the reference loop,
    eager and compiled, is."""
    if shape.get("reset_after", True):
        return Case("gru", "gru", mode, dtype, shape, ("fastgru", "nn.GRU", "compiled_ref"), ("nn.GRU", "compiled_ref"))
    return Case("gru", "gru", mode, dtype, shape, ("fastgru", "eager_ref", "compiled_ref"), ("eager_ref", "compiled_ref"))


def compile_split(case: Case, compiled: bool, reason: str) -> list[Case]:
    """A case without its compiled_ref row, plus -- where it compiles -- a compile-only case with
    the same id, run after every other case of its suite: compiling takes tens of seconds per
    shape, so a sweep under a time budget drops those first. Rows of one id share speedups."""
    main = replace(case, providers=tuple(p for p in case.providers if p != "compiled_ref"), skip=dict(case.skip))
    if not compiled:
        main.providers += ("compiled_ref",)
        main.skip["compiled_ref"] = reason
        return [main]
    only = replace(case, providers=("compiled_ref",), skip={})
    return [main, only]


def quick_gru_cases(dtypes=("fp32",)) -> list[Case]:
    """The quick GRU cases (``python -m fastgru``, ``python -m bench --quick``): H=128, T=64 at
    batch 1 and 32, packed, a 2-layer bidirectional stack and reset_after=False at batch 8;
    compiled_ref is skipped."""
    grid = [gru_shape(B, 128, 64) for B in (1, 32)]
    grid.append(gru_shape(32, 128, 64, packed=True))
    grid.append(gru_shape(8, 128, 64, layers=2, bidirectional=True))
    grid.append(gru_shape(8, 128, 64, reset_after=False))
    return [compile_split(gru_case(m, d, s), False, QUICK_COMPILE_SKIP)[0]
            for d in dtypes for m in MODES for s in grid]


# -- the LSTM: nn.LSTM (cuDNN) is its baseline; every shape has one.

LSTM_PROVIDERS = ("fastgru", "nn.LSTM")


def lstm_shape(B, H, T, I=None, layers=1, bidirectional=False, packed=False, proj=0) -> dict:
    """An LSTM case's shape: input size ``I`` (default H), ``proj`` = proj_size (0: none)."""
    return {"B": B, "T": T, "I": H if I is None else I, "H": H, "proj": proj, "layers": layers,
            "bidirectional": bidirectional, "packed": packed}


def lstm_case(mode, dtype, shape) -> Case:
    return Case("lstm", "lstm", mode, dtype, shape, LSTM_PROVIDERS, ("nn.LSTM",))


def quick_lstm_cases(dtypes=("fp32",)) -> list[Case]:
    """The quick LSTM cases (``python -m fastgru``, ``python -m bench --quick``): H=128, T=64 at
    batch 1, packed at batch 8 with proj_size 64, and a 2-layer bidirectional stack at batch 8; where
    a 16-bit dtype runs (CUDA), also the headline shape of cuDNN's persistent LSTM, fp16
    inference at B=16, H=768, T=512 (CUDNN_PERSISTENT)."""
    grid = [lstm_shape(1, 128, 64), lstm_shape(8, 128, 64, packed=True, proj=64)]
    grid.append(lstm_shape(8, 128, 64, layers=2, bidirectional=True))
    cases = [lstm_case(m, d, s) for d in dtypes for m in MODES for s in grid]
    if set(dtypes) & {"bf16", "fp16"}:
        cases.append(lstm_case("inference", "fp16", lstm_shape(*CUDNN_PERSISTENT)))
    return cases


# (B, H, T): where PyTorch runs cuDNN's persistent LSTM (fp16, one layer, one direction, H and the
# input size multiples of 128, H <= 1024, B a multiple of 8 up to 128, on sm >= 8 with >= 98 SMs):
# cuDNN at its best, about 2 us a step here on an H100 (published figure, not measured here).
CUDNN_PERSISTENT = (16, 768, 512)
