"""pytest-benchmark cases for the attention ops: ``pytest bench --benchmark-only``.

fastgru's fused modules vs the naive reference (and SDPA for dot attention, nn.MultiheadAttention
for multi-head dot attention); small shapes on CPU, bigger on a GPU; each fastgru case passes the
numerics check before it is timed. On CPU each benchmark runs a few short rounds (a check of the
harness, not a measurement), so the file takes well under a minute. Plain ``pytest`` also runs
the multi-head and multi-hop cases through the sweep's runner, every provider's result held to
the float64 ground truth.
"""

import pytest

from fastgru import testing
from fastgru.bench import runner
from fastgru.bench.cases import Case

from bench._common import FORMS, ON_GPU, bench_provider
from bench.attention_providers import attention_setup

N, T, D, A = (32, 2048, 256, 128) if ON_GPU else (4, 64, 64, 32)
HEADS, HOPS = 4, 4
MH_N, MH_T, MH_D, MH_HEADS = (32, 512, 512, 8) if ON_GPU else (4, 64, 64, 4)  # multi-head dot attention
MHA_PROVIDERS = ("fastgru", "naive_ref", "nn.MultiheadAttention", "sdpa")

# CPU: a few short rounds per benchmark (pytest-benchmark's defaults take a second or more each).
pytestmark = [] if ON_GPU else [pytest.mark.benchmark(max_time=0.05, min_rounds=2, warmup=False)]


def _case(op, mode, Tq, providers):
    shape = {"N": N, "Tq": Tq, "T": T, "D": D, "A": A}
    if op == "attention_pooling":
        del shape["Tq"]
    if op == "dot_attention":
        del shape["A"]
    return Case("attention", op, mode, "fp32", shape, providers, providers[1:])


def _multi_case(op, mode, providers, tiny=False):
    """A multi-head or multi-hop case; ``tiny``: N=3, T=6 for the runner's check."""
    n, t = (3, 6) if tiny else (N, T)
    if op == "multihead_dot_attention":
        n, t = (n, t) if tiny else (MH_N, MH_T)
        shape = {"N": n, "Tq": t, "T": t, "D": 32 if tiny else MH_D, "heads": MH_HEADS}
    elif op == "multihead_additive_attention":
        Tq = t if tiny or not ON_GPU else 256  # the naive (N, Tq, T, A) tensor must fit
        shape = {"N": n, "Tq": Tq, "T": t, "D": D, "A": A, "heads": HEADS}
    else:
        shape = {"N": n, "T": t, "D": D, "A": A, "hops": HOPS}
    return Case("attention", op, mode, "fp32", shape, providers, providers[1:])


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_attention_pooling(benchmark, mode, provider, form):
    bench_provider(benchmark, _case("attention_pooling", mode, 1, ("fastgru", "naive_ref")),
                   attention_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref"])
@pytest.mark.parametrize("tq", ["1", "T"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_additive_attention(benchmark, mode, tq, provider, form):
    Tq = 1 if tq == "1" else (256 if ON_GPU else T)  # the naive (N, Tq, T, A) tensor must fit
    bench_provider(benchmark, _case("additive_attention", mode, Tq, ("fastgru", "naive_ref")),
                   attention_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref", "sdpa"])
@pytest.mark.parametrize("tq", ["1", "T"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_dot_attention(benchmark, mode, tq, provider, form):
    Tq = 1 if tq == "1" else T
    bench_provider(benchmark, _case("dot_attention", mode, Tq, ("fastgru", "naive_ref", "sdpa")),
                   attention_setup, provider, form=form)


@pytest.mark.parametrize("provider", MHA_PROVIDERS)
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_multihead_dot_attention(benchmark, mode, provider, form):
    bench_provider(benchmark, _multi_case("multihead_dot_attention", mode, MHA_PROVIDERS), attention_setup, provider,
                   form=form)


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_multihead_additive_attention(benchmark, mode, provider, form):
    bench_provider(benchmark, _multi_case("multihead_additive_attention", mode, ("fastgru", "naive_ref")),
                   attention_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "naive_ref"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_multihop_pooling(benchmark, mode, provider, form):
    bench_provider(benchmark, _multi_case("multihop_pooling", mode, ("fastgru", "naive_ref")),
                   attention_setup, provider, form=form)


@pytest.mark.parametrize("op", ["multihead_dot_attention", "multihead_additive_attention", "multihop_pooling"])
def test_multi_case_every_provider_checks(op):
    """Tiny multi-head / multi-hop training case through the sweep's runner on CPU: every provider
    (the naive formulation, nn.MultiheadAttention and SDPA too) within the fp32 limit of the float64
    ground truth; fastgru's multi-head dot row names the path it took."""
    providers = MHA_PROVIDERS if op == "multihead_dot_attention" else ("fastgru", "naive_ref")
    case = _multi_case(op, "training", providers, tiny=True)
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", attention_setup, warmup_ms=1.0, rep_ms=2.0)}
    limit = testing.tolerance(case.torch_dtype)
    for name, r in rows.items():
        if name == "fastgru" and r["status"] == "unavailable":
            continue  # a build without num_heads
        assert r["status"] == "ok", (name, r["error"])
        assert r["rel_error"] <= limit, (name, r["rel_error"])
    fg = rows["fastgru"]
    if fg["status"] == "ok":
        assert set(fg["speedup"]) == set(providers[1:])
        if op == "multihead_dot_attention":
            backend, _, path = fg["backend"].partition("/")
            assert backend in ("torch", "reference", "triton", "interpret") and path in ("sdpa", "fused", "reference")
