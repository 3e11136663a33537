"""The measured dispatch table on a real GPU (skipped without one): the shipped table's choice is
what runs, cudnn gives nn.GRU's own result, and explain names the entry. Which entries exist
depends on the device's arch: on one the table does not cover, the rules run and the tests say so."""

import pytest
import torch

import fastgru
from fastgru.launchers import plan_table

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def pair(H, dtype):
    torch.manual_seed(0)
    ref = torch.nn.GRU(H, H).cuda().to(dtype)
    ours = fastgru.GRU(H, H).cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("dtype,H,B", [(torch.float32, 256, 8), (torch.bfloat16, 256, 1), (torch.bfloat16, 1024, 32)])
@pytest.mark.parametrize("grad", [False, True])
def test_the_tables_choice_runs(dtype, H, B, grad):
    ref, ours = pair(H, dtype)
    x = torch.randn(16, B, H, device="cuda", dtype=dtype, requires_grad=grad)
    mode = "training" if grad else "inference"
    entry = plan_table.lookup(plan_table.key_for(x.device, dtype, mode, True, 1, H, B))
    with torch.set_grad_enabled(grad):
        e = fastgru.explain(ours, x)
        out, h_n = ours(x)
        want, want_h = ref(x)
    if entry is None:
        assert e.reason.startswith(("rule:", "forced")), e
        pytest.skip(f"no table entry on {torch.cuda.get_device_name()} (arch {plan_table.device_arch(x.device)})")
    assert e.strategy == entry["strategy"], e
    assert "table entry" in e.reason
    if entry["strategy"] == "cudnn":  # PyTorch's own operator on the same parameters: nn.GRU's result
        torch.testing.assert_close(out, want, rtol=1e-6 if dtype == torch.float32 else 1e-2, atol=1e-6)
        torch.testing.assert_close(h_n, want_h, rtol=1e-6 if dtype == torch.float32 else 1e-2, atol=1e-6)
    if grad:
        out.float().square().sum().backward()
        assert ours.weight_hh_l0.grad is not None and torch.isfinite(ours.weight_hh_l0.grad).all()


def test_forced_cudnn_in_eval_with_grad_is_refused():
    _, ours = pair(64, torch.float32)
    ours.eval()
    ours.strategy = "cudnn"
    x = torch.randn(4, 2, 64, device="cuda", requires_grad=True)
    with pytest.raises(ValueError, match="training mode"):
        ours(x)
    with torch.no_grad():
        assert ours(x)[0].shape == (4, 2, 64)
