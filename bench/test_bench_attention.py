"""pytest-benchmark cases for the attention ops: ``pytest bench --benchmark-only``.

fastgru's fused modules vs the naive reference (and SDPA for dot attention); small shapes on CPU,
bigger on a GPU; each fastgru case passes the numerics check before it is timed.
"""

import pytest

from fastgru.bench.cases import Case

from bench._common import ON_GPU, bench_provider
from bench.attention_providers import attention_setup

N, T, D, A = (32, 2048, 256, 128) if ON_GPU else (4, 64, 64, 32)


def _case(op, mode, Tq, providers):
    shape = {"N": N, "Tq": Tq, "T": T, "D": D, "A": A}
    if op == "attention_pooling":
        del shape["Tq"]
    if op == "dot_attention":
        del shape["A"]
    return Case("attention", op, mode, "fp32", shape, providers, providers[1:])


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_attention_pooling(benchmark, mode, provider):
    bench_provider(benchmark, _case("attention_pooling", mode, 1, ("fastgru", "naive_ref")),
                   attention_setup, provider)


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref"])
@pytest.mark.parametrize("tq", ["1", "T"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_additive_attention(benchmark, mode, tq, provider):
    Tq = 1 if tq == "1" else (256 if ON_GPU else T)  # the naive (N, Tq, T, A) tensor must fit
    bench_provider(benchmark, _case("additive_attention", mode, Tq, ("fastgru", "naive_ref")),
                   attention_setup, provider)


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref", "sdpa"])
@pytest.mark.parametrize("tq", ["1", "T"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_dot_attention(benchmark, mode, tq, provider):
    Tq = 1 if tq == "1" else T
    bench_provider(benchmark, _case("dot_attention", mode, Tq, ("fastgru", "naive_ref", "sdpa")),
                   attention_setup, provider)
