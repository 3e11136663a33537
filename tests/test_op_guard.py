"""The guard every op family passes through (fastgru/ops/guard.py): the TF32 rule, contiguity,
the device context and the autocast policy."""

import pytest
import torch

import fastgru
from fastgru import backend, gpu
from fastgru.launchers import tf32
from fastgru.ops import guard


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("cudnn, matmul", [(True, False), (False, True), (True, True), (False, False)])
def test_tf32_rule_follows_the_replaced_modules_flag(cudnn, matmul, tf32_flags):
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
    x = torch.empty(2)
    assert not tf32.tf32_allowed(x, "cudnn") and not tf32.tf32_allowed(x, "matmul")  # not compiled for a GPU
    with gpu.assume_gpu(132):
        assert tf32.tf32_allowed(x, "cudnn") == cudnn
        assert tf32.tf32_allowed(x, "matmul") == matmul
        for dtype in (torch.bfloat16, torch.float16, torch.float64):
            assert not tf32.tf32_allowed(x.to(dtype), "cudnn") and not tf32.tf32_allowed(x.to(dtype), "matmul")
    with pytest.raises(ValueError, match="follows must be one of"):
        tf32.tf32_allowed(x, "cublas")


def test_op_entry_contiguity_and_strided_arguments():
    seen = {}

    @guard.op_entry(strided=("s",))
    def op(a, s, n=3):
        seen.update(a=a, s=s, n=n)

    a = torch.randn(4, 5).t()  # not contiguous
    s = torch.randn(4, 5, 6).transpose(0, 1)  # not contiguous, unit last stride: kept as it is
    op(a, s)
    assert seen["a"].is_contiguous() and torch.equal(seen["a"], a)
    assert seen["s"] is s and seen["n"] == 3
    s2 = torch.randn(4, 5).t()  # last stride not 1: made contiguous even though strided
    op(a, s2, n=1)
    assert seen["s"].stride(-1) == 1 and torch.equal(seen["s"], s2) and seen["n"] == 1
    with pytest.raises(ValueError, match="has no arguments"):
        guard.op_entry(strided=("x",))(lambda a: a)


def test_every_op_runs_inside_the_device_guard(monkeypatch, device):
    """Each family's op implementation enters device_of with its own tensors."""
    calls = []
    real = guard.device_of

    def recording(*tensors):
        calls.append([t for t in tensors if isinstance(t, torch.Tensor)])
        return real(*tensors)

    monkeypatch.setattr(guard, "device_of", recording)
    if not backend.uses_kernels(torch.empty(0, device=device)):
        pytest.skip("the ops run only on the kernel backends")
    x = torch.randn(3, 2, 4, device=device, requires_grad=True)
    out, _ = fastgru.GRU(4, 5).to(device)(x)
    out.sum().backward()
    fastgru.GRUCell(4, 5).to(device)(x[0]).sum().backward()
    fastgru.AttentionPooling(5, 3).to(device)(out.detach().transpose(0, 1).requires_grad_())[0].sum().backward()
    fastgru.DotAttention(5)(out.detach().transpose(0, 1), out.detach().transpose(0, 1))
    assert len(calls) == 7  # layer fwd/bwd, cell fwd/bwd, attention fwd/bwd (pooling), attention fwd (dot)
    assert all(any(t.device == x.device for t in c) for c in calls)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_module_on_second_device_launches_there():
    m = fastgru.GRU(8, 16).to("cuda:1")
    pool = fastgru.AttentionPooling(16, 8).to("cuda:1")
    x = torch.randn(5, 3, 8, device="cuda:1")
    with torch.cuda.device(1):
        expected, _ = m(x)
        expected_pool, _ = pool(expected.transpose(0, 1))
    with torch.cuda.device(0):
        out, _ = m(x)
        pooled, _ = pool(out.transpose(0, 1))
    assert torch.equal(out, expected) and torch.equal(pooled, expected_pool)


def test_autocast_entry_casts_floating_tensors_only():
    seen = {}

    @guard.autocast_entry
    def fn(x, weights, lengths=None):
        seen.update(x=x, weights=weights, lengths=lengths, enabled=torch.is_autocast_enabled("cpu"))

    x, w, lengths = torch.randn(2), [(torch.randn(2), None)], torch.tensor([1, 2])
    fn(x, w, lengths=lengths)
    assert seen["x"] is x and seen["weights"][0][0] is w[0][0] and not seen["enabled"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fn(x, w, lengths=lengths)
    assert seen["x"].dtype == seen["weights"][0][0].dtype == torch.bfloat16
    assert seen["weights"][0][1] is None and seen["lengths"] is lengths and not seen["enabled"]
