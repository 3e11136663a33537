"""Timing and peak memory of one benchmark step.

CUDA: ``triton.testing.do_bench`` (device events; its warm-up is excluded, and it clears L2 before
every repetition) with quantiles [0.5, 0.2, 0.8]. When a step's inputs fit in L2 the caller passes
several input copies and the step rotates among them, so no repetition finds its inputs cached.
CPU: wall-clock repeats after a warm-up; the median and the 20th/80th percentiles.
Peak memory (CUDA only): the most memory allocated during one call beyond what was allocated
before it, i.e. the step's own workspace and outputs (inputs and weights excluded). None on CPU.

CUDA graphs: ``capture`` records each closure (one per input copy, its inputs static) in its own
``torch.cuda.CUDAGraph`` after a warm-up on a side stream, and returns closures that replay them;
``time_steps`` times those replays exactly as it times the eager calls (same rotation, same L2
clearing), so the two times differ only by what the graph removes: the host's work per launch.
``graph_blocker`` says, without touching a GPU, why a step cannot be captured at all.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

QUANTILES = (0.5, 0.2, 0.8)
GRAPH_WARMUP = 3  # eager calls on a side stream before capture (autograd and allocator state settle)
NEEDS_CUDA = "CUDA graphs need a CUDA device"
GRAPHED = " graphed"  # speedup key suffix: "<baseline> graphed" = its graphed time / this row's graphed time
COMPILED = ("torch.compile'd provider: not captured here (its CUDA-graph form is "
            "torch.compile(mode='reduce-overhead'), a different provider)")


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


# ------------------------------------------------------------------------------ CUDA graphs


class CaptureError(RuntimeError):
    """A step could not be captured in a CUDA graph; the message is the first line of the cause."""


def graph_blocker(device, reason: str | None = None) -> str | None:
    """Why a step on ``device`` is not captured in a CUDA graph, or None when capture is tried.

    ``reason`` is the provider's own (e.g. ``COMPILED``); it wins over the device's. Nothing here
    touches a GPU, so the decision is the same (and testable) on a CPU-only machine.
    """
    if reason:
        return reason
    if torch.device(device).type != "cuda":
        return NEEDS_CUDA
    if not torch.cuda.is_available():
        return NEEDS_CUDA + " (torch.cuda.is_available() is False)"
    return None


def first_line(exc: BaseException) -> str:
    """``Type: message``'s first line (at most 300 characters): what a row records of an error."""
    msg = f"{type(exc).__name__}: {exc}".strip()
    return msg.splitlines()[0][:300] if msg else type(exc).__name__


def _capture_one(fn: Callable[[], object], device: torch.device, warmup: int):
    """Warm ``fn`` up on a side stream, capture one call, and return (graph, its outputs)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph, body_error, out = torch.cuda.CUDAGraph(), None, None
    try:
        with torch.cuda.graph(graph):
            try:
                out = fn()
            except Exception as exc:  # keep the body's error: ending the capture may raise another
                body_error = exc
                raise
    except Exception as exc:  # noqa: BLE001 - reported as the row's graphed_error
        cause = body_error if body_error is not None else exc
        try:
            torch.cuda.synchronize(device)
        except Exception:  # noqa: BLE001 - the capture's own error is the one to report
            pass
        raise CaptureError(first_line(cause)) from cause
    return graph, out


def capture(fns: Sequence[Callable[[], object]], device, warmup: int = GRAPH_WARMUP) -> list[Callable[[], object]]:
    """Each step of ``fns`` (the same step on different input copies) captured in its own CUDA
    graph; returns one replay closure per step, in the same order.

    A replay returns the outputs recorded at capture (the graph's own tensors, refreshed by every
    replay); the closure holds them, so the graph's output memory lives as long as the closure.
    Raises CaptureError (its message the cause's first line) when a step cannot be captured, and
    ValueError when ``device`` is not a CUDA device.
    """
    device = torch.device(device)
    blocker = graph_blocker(device)
    if blocker is not None:
        raise ValueError(f"capture: device {device} cannot be captured: {blocker}")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    replays = []
    with torch.cuda.device(device):
        for fn in fns:
            graph, out = _capture_one(fn, device, warmup)

            def replay(graph=graph, out=out):
                graph.replay()
                return out
            replays.append(replay)
    return replays


def tensors(obj) -> list[torch.Tensor]:
    """The tensors of a step's result, in order (tuples, lists, dicts, PackedSequence flattened)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in tensors(v)]
    return []
