"""Shared by the pytest-benchmark cases: run one provider of a harness case, check it, time it."""

import pytest
import torch

from fastgru.bench import runner
from fastgru.bench.providers import Unavailable

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"


def bench_provider(benchmark, case, setup_fn, provider):
    """Check ``provider`` against the float64 reference (checked providers only), then benchmark it."""
    setup = setup_fn(case, DEVICE, 1)
    try:
        prep = setup.providers[provider]()
    except Unavailable as exc:
        pytest.skip(str(exc))
    if provider in setup.checked:
        ref = {k: v.cpu() for k, v in setup.reference().items()}
        runner.check(prep.result(), ref, case.torch_dtype, runner.tf32(case, DEVICE, setup.tf32_follows))
    step = prep.calls[0]

    def run():
        step()
        if ON_GPU:
            torch.cuda.synchronize()

    benchmark.extra_info.update(case=case.id, provider=provider, device=str(DEVICE))
    benchmark(run)
