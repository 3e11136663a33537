"""pytest-benchmark cases for the LSTM: ``pytest bench --benchmark-only -k lstm``.

Small shapes on CPU (where fastgru runs PyTorch's own operators), and on a GPU the shape where
PyTorch runs cuDNN's persistent LSTM (fp16, B 16, H 768, T 512) beside a bf16 one. Each fastgru
case passes the numerics check against the float64 reference before it is timed.
"""

import pytest

from fastgru.bench import cases as C
from fastgru.bench.lstm_providers import lstm_setup

from bench._common import FORMS, ON_GPU, bench_provider

if ON_GPU:
    CASES = [("fp16", C.CUDNN_PERSISTENT), ("bf16", (8, 512, 512))]
else:
    CASES = [("fp32", (4, 64, 32))]
IDS = [f"{d}-B{b}-H{h}-T{t}" for d, (b, h, t) in CASES]


@pytest.mark.parametrize("provider", ["fastgru", "nn.LSTM"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("dtype,shape", CASES, ids=IDS)
@pytest.mark.parametrize("form", FORMS)
def test_lstm(benchmark, dtype, shape, mode, provider, form):
    B, H, T = shape
    bench_provider(benchmark, C.lstm_case(mode, dtype, C.lstm_shape(B, H, T)), lstm_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "nn.LSTM"])
@pytest.mark.parametrize("form", FORMS)
def test_lstm_proj_packed(benchmark, provider, form):
    B, H, T, P = (64, 1024, 512, 256) if ON_GPU else (8, 64, 32, 32)
    case = C.lstm_case("training", "bf16" if ON_GPU else "fp32", C.lstm_shape(B, H, T, packed=True, proj=P))
    bench_provider(benchmark, case, lstm_setup, provider, form=form)
