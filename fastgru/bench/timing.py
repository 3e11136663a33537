"""Timing and peak memory of one benchmark step.

CUDA: ``triton.testing.do_bench`` (device events; its warm-up is excluded, and it clears L2 before
every repetition) with quantiles [0.5, 0.2, 0.8]. When a step's inputs fit in L2 the caller passes
several input copies and the step rotates among them, so no repetition finds its inputs cached.
CPU: wall-clock repeats after a warm-up; the median and the 20th/80th percentiles.
Peak memory (CUDA only): the most memory allocated during one call beyond what was allocated
before it, i.e. the step's own workspace and outputs (inputs and weights excluded). None on CPU.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

QUANTILES = (0.5, 0.2, 0.8)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    repeats: int


def l2_bytes(device: torch.device) -> int:
    """L2 cache size of a CUDA device (0 on CPU or when unknown)."""
    if device.type != "cuda":
        return 0
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or 0)


def copies_needed(input_bytes: float, device: torch.device, max_copies: int = 8) -> int:
    """How many input copies to rotate among so that, together, they overflow L2 twice over."""
    l2 = l2_bytes(device)
    if l2 == 0 or input_bytes <= 0 or input_bytes >= l2:
        return 1
    return int(min(max_copies, max(2, -(-2 * l2 // int(input_bytes)))))


def _rotating(fns: Sequence[Callable[[], object]]) -> Callable[[], object]:
    if len(fns) == 1:
        return fns[0]
    cycle = itertools.cycle(fns)
    return lambda: next(cycle)()


def _quantiles(samples_ms: Sequence[float]) -> tuple[float, float, float]:
    t = torch.tensor(list(samples_ms), dtype=torch.float64)
    q = torch.quantile(t, torch.tensor(QUANTILES, dtype=torch.float64))
    return float(q[0]), float(q[1]), float(q[2])


def time_steps(
    fns: Sequence[Callable[[], object]],
    device: torch.device,
    warmup_ms: float = 25.0,
    rep_ms: float = 100.0,
    min_repeats: int = 5,
    max_repeats: int = 1000,
) -> Timing:
    """Time one step, rotating among ``fns`` (the same step on different input copies)."""
    fn = _rotating(fns)
    if device.type == "cuda":
        import triton.testing

        med, p20, p80 = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=list(QUANTILES))
        return Timing(float(med), float(p20), float(p80), -1)
    # CPU: warm up for warmup_ms (at least twice), then repeat for rep_ms.
    start = time.perf_counter()
    for n in itertools.count():
        fn()
        if n >= 1 and (time.perf_counter() - start) * 1e3 >= warmup_ms:
            break
    samples = []
    start = time.perf_counter()
    while len(samples) < max_repeats:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= min_repeats and (time.perf_counter() - start) * 1e3 >= rep_ms:
            break
    med, p20, p80 = _quantiles(samples)
    return Timing(med, p20, p80, len(samples))


def peak_memory(fn: Callable[[], object], device: torch.device) -> int | None:
    """Bytes allocated at the peak of one call beyond those allocated before it (CUDA), else None."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del result
    return int(peak - before)
