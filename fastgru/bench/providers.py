"""What a provider is: for a case, the timed step (one closure per input copy), the named results
its correctness check compares, and the float64 reference those results are held to.

Each step closes over its inputs (static tensors), so the runner can also capture it in a CUDA
graph and time the replays; a provider that must not be captured says why in ``no_graph``.

Every provider of a case gets the same weights (copied from one torch module) and the same
inputs. Ops that fastgru does not offer yet raise ``Unavailable``; the runner records that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import flops
from .timing import COMPILED

Results = dict  # name -> tensor ("output", "h_n", "grad_x", "grad_weight_hh_l0", ...)


class Unavailable(Exception):
    """The provider's op is not offered by this build of fastgru (or this torch)."""


@dataclass
class Prepared:
    calls: list  # the timed step, one closure per input copy
    result: Callable[[], Results] | None  # named results for the correctness check
    compile_s: float | None = None
    backend: str | None = None
    # Why this provider is not captured in a CUDA graph (None: it is; see timing.graph_blocker).
    no_graph: str | None = None


@dataclass
class Setup:
    reference: Callable[[], Results]  # the float64 ground truth
    providers: dict  # name -> () -> Prepared (built lazily, one at a time)
    checked: tuple = ("fastgru",)  # providers held to the numerics contract (not timed if they fail)
    contract_baseline: str | None = None  # PyTorch's own result in the same dtype (2x rule)
    tokens: int = 0
    cost: flops.Cost = field(default_factory=lambda: flops.Cost(0, 0))
    input_bytes: int = 0
    # The torch flag whose TF32 permission fastgru follows (fastgru.launchers.tf32.tf32_allowed):
    # "cudnn" for the GRU layer (as nn.GRU), "matmul" for the cell and attention.
    tf32_follows: str = "matmul"


def compiled_prepared(prep: Prepared) -> Prepared:
    """Mark a torch.compile'd provider: its first call compiles (its time is kept apart, in
    ``compile_s``), and it is not captured in a CUDA graph (timing.COMPILED says why)."""
    prep.compile_s = timed_first_call(prep.calls[0])
    prep.no_graph = COMPILED
    return prep


def compile_cold(fn):
    """torch.compile with a cold cache (so compile time is honest and the recompile limit is never hit)."""
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True)


def timed_first_call(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def backend_name(device) -> str:
    from .. import backend

    return backend.backend_for(torch.empty(0, device=device))
