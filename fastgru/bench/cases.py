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
from dataclasses import dataclass, field

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
    return not ((k == "I" and v == shape.get("H")) or (k == "layers" and v == 1) or (k in ("bidirectional", "packed") and not v))


def _gru_shape(B, H, T, layers=1, bidirectional=False, packed=False):
    return {"B": B, "T": T, "I": H, "H": H, "layers": layers, "bidirectional": bidirectional, "packed": packed}


def _gru_case(mode, dtype, shape, quick):
    providers = ("fastgru", "nn.GRU", "compiled_ref")
    skip = {}
    if quick:
        skip["compiled_ref"] = "skipped in --quick (compile takes tens of seconds)"
    elif shape["packed"]:
        skip["compiled_ref"] = "not run on packed input"
    elif shape["T"] != COMPILE_T or (shape["B"], shape["H"]) not in COMPILE_POINTS or shape["layers"] != 1:
        skip["compiled_ref"] = f"compile only at T={COMPILE_T}, (B, H) in {sorted(COMPILE_POINTS)} (compile time)"
    return Case("gru", "gru", mode, dtype, shape, providers, ("nn.GRU", "compiled_ref"), skip)


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
    return [_gru_case(m, d, s, quick) for d in dtypes for m in modes for s in grid]


def cell_cases(quick=False, dtypes=("fp32", "bf16")):
    batches, hiddens = ((1, 64), (128,)) if quick else (CELL_BATCHES, HIDDENS)
    cases = []
    for d, H, B in itertools.product(dtypes, hiddens, batches):
        skip = {"compiled_ref": "skipped in --quick (compile time)"} if quick else {}
        shape = {"B": B, "I": H, "H": H}
        cases.append(
            Case("cell", "gru_cell", "inference", d, shape, ("fastgru", "nn.GRUCell", "compiled_ref"),
                 ("nn.GRUCell", "compiled_ref"), skip)
        )
    return cases


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
