"""The benchmark case lists: which ops, shapes, dtypes, modes and providers each suite runs.

A case is one (op, mode, dtype, shape); each of its providers gives one result row. Providers:
  fastgru       this package (Triton kernels on CUDA; PyTorch's own ops on CPU)
  nn.GRU        torch.nn.GRU (cuDNN on CUDA) / nn.GRUCell for the cell suite
  compiled_ref  torch.compile of the reference loop (fastgru.reference); compile time kept apart
  naive_ref     the reference attention in plain PyTorch (materializes the score tensors)
  sdpa          torch.nn.functional.scaled_dot_product_attention (dot attention only)
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field, replace

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SUITES = ("gru", "cell", "attention")

BATCHES = (1, 8, 32, 128, 512)
HIDDENS = (128, 256, 512, 1024)
SEQ_LENS = (64, 512)
CELL_BATCHES = (1, 8, 64, 256)
ATTN_N = (8, 32)
ATTN_T = (128, 512, 2048)
ATTN_DIM = 256  # query, key and value width
ATTN_SIZE = 128  # attention_size of the pooling and additive scorers

# torch.compile unrolls the reference's time loop, so compiling costs seconds to minutes per
# shape. It runs only at T=64 and on a few (batch, hidden) points, enough to place it.
COMPILE_T = 64
COMPILE_POINTS = {(8, 256), (128, 256), (8, 1024), (128, 1024)}
CELL_COMPILE_POINTS = {(1, 256), (64, 256), (1, 1024), (64, 1024)}


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


_ABBREV = {"layers": "L", "bidirectional": "bi", "packed": "pk"}


def _short(v):
    return int(v) if isinstance(v, bool) else v


def _show(k, v, shape) -> bool:
    """Case ids leave out the defaults (input size = hidden, one layer, one direction, padded)."""
    if k == "I":
        return v != shape.get("H")
    if k == "layers":
        return v != 1
    return bool(v) if k in ("bidirectional", "packed") else True


def _gru_shape(B, H, T, layers=1, bidirectional=False, packed=False):
    return {"B": B, "T": T, "I": H, "H": H, "layers": layers, "bidirectional": bidirectional, "packed": packed}


def _compile_split(case: Case, compiled: bool, reason: str) -> list[Case]:
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


def _gru_case(mode, dtype, shape, quick):
    return Case("gru", "gru", mode, dtype, shape, ("fastgru", "nn.GRU", "compiled_ref"), ("nn.GRU", "compiled_ref"))


def _gru_compiles(shape, quick):
    if quick:
        return False, "skipped in --quick (compile takes tens of seconds)"
    if shape["packed"]:
        return False, "not run on packed input"
    if shape["T"] != COMPILE_T or (shape["B"], shape["H"]) not in COMPILE_POINTS or shape["layers"] != 1:
        return False, f"compile only at T={COMPILE_T}, (B, H) in {sorted(COMPILE_POINTS)} (compile time)"
    return True, ""


def _ordered(pairs):
    """Main cases first, then the compile-only ones (see _compile_split)."""
    first, last = [], []
    for split in pairs:
        first.append(split[0])
        last += split[1:]
    return first + last


def gru_cases(quick=False, dtypes=("fp32", "bf16")):
    modes = ("inference", "training")
    if quick:
        grid = [_gru_shape(B, 128, 64) for B in (1, 32)]
        grid.append(_gru_shape(32, 128, 64, packed=True))
        grid.append(_gru_shape(8, 128, 64, layers=2, bidirectional=True))
    else:
        grid = [_gru_shape(B, H, T) for T, H, B in itertools.product(SEQ_LENS, HIDDENS, BATCHES)]
        grid += [_gru_shape(B, H, 512, packed=True) for H in (256, 1024) for B in (32, 128)]
        grid += [_gru_shape(B, H, 512, layers=2, bidirectional=True) for H in (256, 512) for B in (8, 64)]
    return _ordered(_compile_split(_gru_case(m, d, s, quick), *_gru_compiles(s, quick))
                    for d in dtypes for m in modes for s in grid)


def cell_cases(quick=False, dtypes=("fp32", "bf16")):
    batches, hiddens = ((1, 64), (128,)) if quick else (CELL_BATCHES, HIDDENS)
    splits = []
    for d, H, B in itertools.product(dtypes, hiddens, batches):
        case = Case("cell", "gru_cell", "inference", d, {"B": B, "I": H, "H": H},
                    ("fastgru", "nn.GRUCell", "compiled_ref"), ("nn.GRUCell", "compiled_ref"))
        if quick:
            splits.append(_compile_split(case, False, "skipped in --quick (compile time)"))
        else:
            compiles = (B, H) in CELL_COMPILE_POINTS
            splits.append(_compile_split(case, compiles, f"compile only at (B, H) in {sorted(CELL_COMPILE_POINTS)}"))
    return _ordered(splits)


def attention_cases(quick=False, dtypes=("fp32", "bf16")):
    ns, ts = ((8,), (128,)) if quick else (ATTN_N, ATTN_T)
    modes = ("inference",) if quick else ("inference", "training")
    cases = []
    for d, mode, N, T in itertools.product(dtypes, modes, ns, ts):
        shape = {"N": N, "T": T, "D": ATTN_DIM, "A": ATTN_SIZE}
        cases.append(Case("attention", "attention_pooling", mode, d, shape, ("fastgru", "naive_ref"), ("naive_ref",)))
        for Tq in (1, T):
            shape = {"N": N, "Tq": Tq, "T": T, "D": ATTN_DIM, "A": ATTN_SIZE}
            cases.append(
                Case("attention", "additive_attention", mode, d, shape, ("fastgru", "naive_ref"), ("naive_ref",))
            )
            shape = {"N": N, "Tq": Tq, "T": T, "D": ATTN_DIM}
            cases.append(
                Case("attention", "dot_attention", mode, d, shape, ("fastgru", "naive_ref", "sdpa"),
                     ("naive_ref", "sdpa"))
            )
    return cases


def select(suite="all", quick=False, dtypes=None, device="cpu"):
    """The cases of one suite (or all), in run order. bf16 runs by default only on CUDA."""
    if dtypes is None:
        dtypes = ("fp32", "bf16") if torch.device(device).type == "cuda" else ("fp32",)
    unknown = set(dtypes) - set(DTYPES)
    if unknown:
        raise ValueError(f"unknown dtype(s) {sorted(unknown)}; choose from {sorted(DTYPES)}")
    suites = SUITES if suite == "all" else (suite,)
    makers = {"gru": gru_cases, "cell": cell_cases, "attention": attention_cases}
    cases = []
    for s in suites:
        if s not in makers:
            raise ValueError(f"unknown suite {s!r}; choose from {SUITES + ('all',)}")
        cases += makers[s](quick=quick, dtypes=tuple(dtypes))
    return cases
