"""The persistent kernel's step variants on CUDA (skipped without a GPU): each variant forced
(plan.persistent_choice) against the float64 reference with cuDNN's own error as the baseline,
forward and every gradient, with variable lengths and both directions; and bitwise
repeatability, where a barrier that lets a peer run ahead shows as results that move between
runs. The interpreter runs the same variants with their programs as threads
(tests/test_gru_persistent_variants.py); this is where the GPU's own memory model meets them."""

import copy

import pytest
import torch
from torch import nn

import fastgru
from fastgru.launchers.plan import persistent_choice
from fastgru.testing import check_close, rel_error, tolerance
from helpers import forward_backward
from test_gpu_gru import check_cuda_parity, forward_backward_params

pytestmark = pytest.mark.gpu

VARIANTS = ["prefetch", "split", "flags", "prefetch+split+flags"]
SHAPES = [(1, 256, False, False), (8, 512, True, True)]  # B, H, bidirectional, packed with lengths


def _forced(module, x, variant, block_h=None, num_warps=None):
    """forward_backward of ``module`` under the forced variant; skips where it cannot plan."""
    try:
        with persistent_choice(variant, block_h, num_warps):
            return forward_backward(module, x)
    except ValueError as e:
        if "cannot hold" in str(e):
            pytest.skip(f"persistent {variant} cannot hold this shape: {e}")
        raise


def _pair(I, H, bi, dtype, **kw):
    ref = nn.GRU(I, H, bidirectional=bi).cuda().to(dtype)
    ours = fastgru.GRU(I, H, bidirectional=bi, strategy="persistent", **kw).cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


# Each switch at the dispatcher's block; the combined variant also at the smallest block.
CASES = [(v, None) for v in VARIANTS] + [("prefetch+split+flags", 16)]


@pytest.mark.parametrize("variant,block_h", CASES, ids=[f"{v}-{b or 'dispatcher'}" for v, b in CASES])
@pytest.mark.parametrize("B,H,bi,packed", SHAPES, ids=["B1-H256", "B8-H512-bi-packed"])
def test_variant_cuda_parity(variant, block_h, B, H, bi, packed):
    with persistent_choice(variant, block_h):
        check_cuda_parity(B, H, bi, packed, "persistent", torch.bfloat16)


@pytest.mark.parametrize("variant", ["recompute", "prefetch+split+flags+recompute"])
def test_recompute_cuda_parity(variant):
    """reset_after=False with one barrier a step, where it plans (H = 256), against the float64
    reference; the baseline is the same math in PyTorch in bf16 (the reference backend)."""
    T, B, H, dtype = 96, 8, 256, torch.bfloat16
    ours = fastgru.GRU(H, H, bidirectional=True, strategy="persistent", reset_after=False).cuda().to(dtype)
    x = torch.randn(T, B, H, device="cuda", dtype=dtype)
    lens = torch.randint(1, T + 1, (B,))
    with fastgru.backend.using("reference"):
        outs64, grads64 = forward_backward_params(copy.deepcopy(ours).double(), x.double(), lens)
        base, base_g = forward_backward_params(copy.deepcopy(ours), x, lens)
    try:
        with persistent_choice(variant):
            outs, grads = forward_backward_params(ours, x, lens)
    except ValueError as e:
        if "cannot hold" in str(e):
            pytest.skip(f"persistent {variant} cannot hold this shape: {e}")
        raise
    for i, (o, o64, ob) in enumerate(zip([*outs, *grads], [*outs64, *grads64], [*base, *base_g])):
        check_close(o, o64, dtype, baseline=ob, name=f"{variant} quantity {i}")


@pytest.mark.parametrize("precision", ["tf32x3", "tf32"])
def test_fp32_precision_variants(precision, monkeypatch):
    """fp32 with TF32 allowed: 3xTF32 meets the parity contract against cuDNN; plain TF32 (never
    the dispatcher's choice) stays within TF32's own limit."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    T, B, H, I, dtype = 64, 1, 256, 64, torch.float32
    ref, ours = _pair(I, H, False, dtype)
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    outs64, grads64 = forward_backward(copy.deepcopy(ref).double(), x.double().requires_grad_())
    base, base_g = forward_backward(ref, x.detach().requires_grad_())
    outs, grads = _forced(ours, x.detach().requires_grad_(), precision, block_h=16)
    for i, (o, o64, ob) in enumerate(zip([*outs, *grads], [*outs64, *grads64], [*base, *base_g])):
        if precision == "tf32x3":
            check_close(o, o64, dtype, tf32=True, baseline=ob, name=f"{precision} quantity {i}")
        else:
            assert rel_error(o, o64) <= tolerance(dtype, tf32=True), f"{precision} quantity {i}"


@pytest.mark.parametrize("variant,reset_after", [("flags", True), ("prefetch+split+flags", True),
                                                 ("prefetch+split+flags", False), ("recompute", False)])
def test_variant_cuda_runs_are_bitwise_repeatable(variant, reset_after):
    T, B, H = 64, 8, 256 if "recompute" in variant else 512
    m = fastgru.GRU(H, H, bidirectional=True, strategy="persistent", reset_after=reset_after).cuda().to(torch.bfloat16)
    x = torch.randn(T, B, H, device="cuda", dtype=torch.bfloat16)
    try:
        with persistent_choice(variant, block_h=16):
            runs = [forward_backward_params(m, x, None) for _ in range(3)]
    except ValueError as e:
        if "cannot hold" in str(e):
            pytest.skip(f"persistent {variant} cannot hold this shape: {e}")
        raise
    for outs, grads in runs[1:]:
        for a, b in zip([*runs[0][0], *runs[0][1]], [*outs, *grads]):
            assert torch.equal(a, b), f"{variant}: two runs on the same inputs differ"
