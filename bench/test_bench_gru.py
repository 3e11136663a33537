"""pytest-benchmark cases for the GRU ops: ``pytest bench --benchmark-only``.

Small shapes on CPU (where fastgru runs PyTorch's own operators), bigger ones on a GPU. Each
fastgru case passes the numerics check against the float64 reference before it is timed.
"""

import pytest

from fastgru.bench import cases as C
from fastgru.bench.gru_providers import gru_setup

from bench._common import FORMS, ON_GPU, bench_provider
from bench.cell_providers import cell_setup

if ON_GPU:
    SHAPES = [(8, 256, 512), (128, 256, 512), (32, 1024, 512)]
    DTYPES = ["fp32", "bf16"]
else:
    SHAPES = [(4, 64, 32), (32, 128, 32)]
    DTYPES = ["fp32"]
SHAPE_IDS = [f"B{b}-H{h}-T{t}" for b, h, t in SHAPES]


@pytest.mark.parametrize("provider", ["fastgru", "nn.GRU"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("form", FORMS)
def test_gru(benchmark, shape, mode, dtype, provider, form):
    B, H, T = shape
    case = C.gru_case(mode, dtype, C.gru_shape(B, H, T))
    bench_provider(benchmark, case, gru_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "nn.GRU"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_gru_packed(benchmark, mode, provider, form):
    B, H, T = (128, 256, 512) if ON_GPU else (16, 64, 32)
    case = C.gru_case(mode, "fp32", C.gru_shape(B, H, T, packed=True))
    bench_provider(benchmark, case, gru_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "eager_ref"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("form", FORMS)
def test_gru_reset_before(benchmark, mode, provider, form):
    """reset_after=False against the same math in PyTorch (no cuDNN equivalent exists)."""
    B, H, T = (8, 512, 512) if ON_GPU else (8, 64, 32)
    case = C.gru_case(mode, "bf16" if ON_GPU else "fp32", C.gru_shape(B, H, T, reset_after=False))
    bench_provider(benchmark, case, gru_setup, provider, form=form)


@pytest.mark.parametrize("provider", ["fastgru", "nn.GRUCell"])
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("form", FORMS)
def test_gru_cell(benchmark, batch, provider, form):
    H = 1024 if ON_GPU else 128
    case = C.Case("cell", "gru_cell", "inference", "fp32", {"B": batch, "I": H, "H": H},
                  ("fastgru", "nn.GRUCell"), ("nn.GRUCell",))
    bench_provider(benchmark, case, cell_setup, provider, form=form)
