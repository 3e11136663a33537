"""Shared by the pytest-benchmark cases: run one provider of a harness case, check it, time it,
eager or (``form="graphed"``, CUDA only) its step captured in a CUDA graph and replayed."""

import pytest
import torch

from fastgru.bench import runner, timing
from fastgru.bench.providers import Unavailable

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"
# The timed forms: a CPU has no CUDA graphs, so its cases run eager only (no skipped duplicates).
FORMS = ("eager", "graphed") if ON_GPU else ("eager",)


def bench_provider(benchmark, case, setup_fn, provider, form="eager"):
    """Check ``provider`` against the float64 reference (checked providers only), then benchmark
    it: its step as is (``form="eager"``) or captured in a CUDA graph (``"graphed"``; skipped,
    saying why, where the provider cannot be captured)."""
    if form not in ("eager", "graphed"):
        raise ValueError(f"bench_provider: form must be 'eager' or 'graphed', not {form!r}")
    if form == "graphed" and timing.graph_blocker(DEVICE) is not None:
        pytest.skip(timing.graph_blocker(DEVICE))
    setup = setup_fn(case, DEVICE, 1)
    try:
        prep = setup.providers[provider]()
    except Unavailable as exc:
        pytest.skip(str(exc))
    if provider in setup.checked:
        ref = {k: v.cpu() for k, v in setup.reference().items()}
        runner.check(prep.result(), ref, case.torch_dtype, runner.tf32(case, DEVICE, setup.tf32_follows))
    step = prep.calls[0]
    if form == "graphed":
        blocker = timing.graph_blocker(DEVICE, prep.no_graph)
        if blocker is not None:
            pytest.skip(blocker)
        try:
            step = timing.capture([step], DEVICE)[0]
        except timing.CaptureError as exc:
            pytest.skip(f"cannot be captured: {exc}")

    def run():
        step()
        if ON_GPU:
            torch.cuda.synchronize()

    benchmark.extra_info.update(case=case.id, provider=provider, device=str(DEVICE), form=form)
    benchmark(run)
