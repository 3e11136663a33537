"""pytest-benchmark cases for the attention GRU decoder: ``pytest bench --benchmark-only``.

fastgru.AttentionGRUDecoder (additive attention) vs the tutorial-style decoder of
decoder_providers.py run eagerly (``eager_ref``), and on a GPU under torch.compile
(``compiled_ref``, the decoding step only: compiling the training step's unrolled loop takes tens
of seconds or more). Two ops: a teacher-forced training step and one decoding step. Small shapes on
CPU, the suite's shapes on a GPU; each fastgru case passes the numerics check before it is timed.
On CPU each benchmark runs a few short rounds (a check of the harness, not a measurement). Plain
``pytest`` also runs tiny cases of both ops through the sweep's runner, every provider (the
compiled decoder too) held to the float64 ground truth.
"""

import pytest

from fastgru import testing
from fastgru.bench import runner
from fastgru.bench.cases import Case

from bench._common import FORMS, ON_GPU, bench_provider
from bench.decoder_providers import decoder_setup
from bench.suites import decoder_shape

B, TIN, H, TOUT = (8, 512, 512, 32) if ON_GPU else (4, 32, 32, 8)
STEP_BATCHES = (1, 64) if ON_GPU else (1, 8)
PROVIDERS = ("fastgru", "eager_ref")
STEP_PROVIDERS = PROVIDERS + (("compiled_ref",) if ON_GPU else ())

# CPU: a few short rounds per benchmark (pytest-benchmark's defaults take a second or more each).
pytestmark = [] if ON_GPU else [pytest.mark.benchmark(max_time=0.05, min_rounds=2, warmup=False)]


def _case(op, shape, providers):
    mode = "training" if op == "attention_decoder" else "inference"
    return Case("decoder", op, mode, "fp32", shape, providers, providers[1:])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("form", FORMS)
def test_decoder_training(benchmark, provider, form):
    case = _case("attention_decoder", decoder_shape(B, H, TIN, TOUT), PROVIDERS)
    bench_provider(benchmark, case, decoder_setup, provider, form=form)


@pytest.mark.parametrize("provider", STEP_PROVIDERS)
@pytest.mark.parametrize("batch", STEP_BATCHES)
@pytest.mark.parametrize("form", FORMS)
def test_decoder_step(benchmark, batch, provider, form):
    case = _case("attention_decoder_step", decoder_shape(batch, H, TIN), STEP_PROVIDERS)
    bench_provider(benchmark, case, decoder_setup, provider, form=form)


@pytest.mark.parametrize("op", ["attention_decoder", "attention_decoder_step"])
def test_decoder_every_provider_checks(op):
    """Tiny cases through the sweep's runner on CPU: fastgru, the tutorial decoder and the
    tutorial decoder under torch.compile each within the fp32 limit of the float64 ground truth
    (the training step over 3 target positions, so that compiling its unrolled loop is quick)."""
    providers = ("fastgru", "eager_ref", "compiled_ref")
    shape = {"B": 3, "Tout": 3, "Tin": 7, "I": 8, "H": 16, "K": 32, "A": 12}
    if op == "attention_decoder_step":
        del shape["Tout"]
    case = _case(op, shape, providers)
    rows = {r["provider"]: r for r in runner.run_case(case, "cpu", decoder_setup, warmup_ms=1.0, rep_ms=2.0)}
    limit = testing.tolerance(case.torch_dtype)
    for name, r in rows.items():
        assert r["status"] == "ok", (name, r["error"])
        assert r["rel_error"] <= limit, (name, r["rel_error"])
    assert rows["compiled_ref"]["compile_s"] > 0
    assert set(rows["fastgru"]["speedup"]) == set(providers[1:])
