"""fastgru.GRUCell (fused single-step kernel) against nn.GRUCell and the reference."""

import copy

import pytest
import torch
from torch import nn

import fastgru
from fastgru.testing import check_close
from helpers import forward_backward


def pair(I, H, bias=True, dtype=torch.float32, device="cpu"):
    ref = nn.GRUCell(I, H, bias=bias).to(device=device, dtype=dtype)
    ours = fastgru.GRUCell(I, H, bias=bias).to(device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("B,I,H,bias", [(1, 4, 8, True), (3, 5, 20, True), (5, 70, 33, False)], ids=lambda v: str(v))
def test_cell_matches_nn_gru_cell(B, I, H, bias, device):
    ref, ours = pair(I, H, bias, device=device)
    x = torch.randn(B, I, device=device, requires_grad=True)
    hx = torch.randn(B, H, device=device, requires_grad=True)
    outs64, grads64 = forward_backward(copy.deepcopy(ref).double(), x.detach().double().requires_grad_(), hx.detach().double().requires_grad_())
    base, base_g = forward_backward(ref, x, hx)
    outs, grads = forward_backward(ours, x, hx)
    check_close(outs[0], outs64[0], baseline=base[0], name="h'")
    for i, (g, g64, gb) in enumerate(zip(grads, grads64, base_g)):
        check_close(g, g64, torch.float32, baseline=gb, name=f"grad {i}")


def test_cell_unbatched_and_default_hx(device):
    ref, ours = pair(4, 6, device=device)
    x = torch.randn(4, device=device)
    assert ours(x).shape == (6,)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)
    h = torch.randn(6, device=device)
    torch.testing.assert_close(ours(x, h), ref(x, h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cell_low_precision(dtype, device):
    ref, ours = pair(8, 16, dtype=dtype, device=device)
    x = torch.randn(3, 8, device=device, dtype=dtype)
    hx = torch.randn(3, 16, device=device, dtype=dtype)
    ref64 = copy.deepcopy(ref).double()
    check_close(ours(x, hx), ref64(x.double(), hx.double()), dtype)


def test_cell_gradcheck(device):
    ours = fastgru.GRUCell(3, 5).double().to(device)
    x = torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)
    h = torch.randn(2, 5, dtype=torch.float64, device=device, requires_grad=True)
    ps = list(ours.parameters())
    assert torch.autograd.gradcheck(lambda x, h, *p: fastgru.functional.gru_cell(x, h, *p), (x, h, *ps), fast_mode=True)


def test_cell_repr():
    assert repr(fastgru.GRUCell(5, 3, bias=False)) == repr(nn.GRUCell(5, 3, bias=False))
