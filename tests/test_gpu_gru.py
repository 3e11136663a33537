"""GRU kernels on CUDA at realistic sizes (skipped without a GPU): every strategy, direction,
dtype, variable lengths, against the float64 reference and against cuDNN's own error."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastgru
from fastgru.testing import check_close
from helpers import forward_backward

pytestmark = pytest.mark.gpu

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent"])
@pytest.mark.parametrize("B,H,bi,packed", [(1, 256, False, False), (8, 512, True, True), (64, 128, True, False), (5, 1024, False, True)],
                         ids=["B1-H256", "B8-H512-bi-packed", "B64-H128-bi", "B5-H1024-packed"])
def test_gru_cuda_parity(B, H, bi, packed, strategy, dtype):
    check_cuda_parity(B, H, bi, packed, strategy, dtype)


def check_cuda_parity(B, H, bi, packed, strategy, dtype):
    """fastgru.GRU with ``strategy`` against the float64 reference, outputs and every gradient,
    cuDNN's own error in ``dtype`` the baseline; a persistent plan that cannot hold the shape skips."""
    T, I = 96, 64
    ref = nn.GRU(I, H, bidirectional=bi).cuda().to(dtype)
    ours = fastgru.GRU(I, H, bidirectional=bi, strategy=strategy).cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    lengths = torch.randint(1, T + 1, (B,)) if packed else None

    def inp(t):
        t = t.detach().requires_grad_()
        return pack_padded_sequence(t, lengths, enforce_sorted=False) if packed else t

    outs64, grads64 = forward_backward(copy.deepcopy(ref).double(), inp(x.double()))
    base, base_g = forward_backward(ref, inp(x))
    try:
        outs, grads = forward_backward(ours, inp(x))
    except ValueError as e:
        if strategy == "persistent" and "cannot hold" in str(e):
            pytest.skip(f"persistent cannot hold this shape: {e}")
        raise
    tf32 = dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    for i, (o, o64, ob) in enumerate(zip(outs, outs64, base)):
        check_close(o, o64, dtype, tf32=tf32, baseline=ob, name=f"output {i}")
    for i, (g, g64, gb) in enumerate(zip(grads, grads64, base_g)):
        check_close(g, g64, dtype, tf32=tf32, baseline=gb, name=f"grad {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("B", [1, 64, 256])
def test_gru_cell_cuda_parity(B, dtype):
    ref = nn.GRUCell(256, 512).cuda().to(dtype)
    ours = fastgru.GRUCell(256, 512).cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(B, 256, device="cuda", dtype=dtype, requires_grad=True)
    h = torch.randn(B, 512, device="cuda", dtype=dtype, requires_grad=True)
    outs64, grads64 = forward_backward(copy.deepcopy(ref).double(), x.detach().double().requires_grad_(), h.detach().double().requires_grad_())
    base, base_g = forward_backward(ref, x, h)
    outs, grads = forward_backward(ours, x, h)
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    check_close(outs[0], outs64[0], dtype, tf32=tf32, baseline=base[0])
    for i, (g, g64, gb) in enumerate(zip(grads, grads64, base_g)):
        check_close(g, g64, dtype, tf32=tf32, baseline=gb, name=f"grad {i}")


def test_saved_state_memory_is_as_documented():
    T, B, H = 256, 32, 512
    m = fastgru.GRU(H, H).cuda()
    x = torch.randn(T, B, H, device="cuda", requires_grad=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    out, h = m(x)
    saved = torch.cuda.memory_allocated() - before - out.numel() * 4 - h.numel() * 4
    # gx (3H) is freed after the forward; saved: gates (4H) + entering state (H), fp32.
    assert saved <= 1.1 * (5 * T * B * H * 4)


@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gru_cuda_runs_are_bitwise_repeatable(strategy, dtype):
    """The same inputs give bitwise the same outputs and gradients, run after run: an error that
    moves between runs is a race (a missing barrier, a read of state a peer has not written)."""
    T, B, H = 64, 8, 512
    m = fastgru.GRU(H, H, bidirectional=True, strategy=strategy).cuda().to(dtype)
    x = torch.randn(T, B, H, device="cuda", dtype=dtype)
    runs = [forward_backward(m, x.detach().requires_grad_()) for _ in range(3)]
    (outs0, grads0) = runs[0]
    for outs, grads in runs[1:]:
        for a, b in zip([*outs0, *grads0], [*outs, *grads]):
            assert torch.equal(a, b), "two runs on the same inputs differ"


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent"])
@pytest.mark.parametrize("B,H,bi,lengths", [(1, 256, False, False), (8, 512, True, True), (5, 1024, False, True)],
                         ids=["B1-H256", "B8-H512-bi-lengths", "B5-H1024-lengths"])
def test_gru_reset_before_cuda_parity(B, H, bi, lengths, strategy, dtype):
    """reset_after=False (no cuDNN equivalent) against the float64 reference; the baseline of the
    2x rule is the same math in PyTorch in the same dtype (fastgru's reference backend)."""
    T, I = 96, 64
    ours = fastgru.GRU(I, H, bidirectional=bi, strategy=strategy, reset_after=False).cuda().to(dtype)
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    lens = torch.randint(1, T + 1, (B,)) if lengths else None
    with fastgru.backend.using("reference"):
        ref64 = copy.deepcopy(ours).double()
        outs64, grads64 = forward_backward_params(ref64, x.double(), lens)
        base, base_g = forward_backward_params(copy.deepcopy(ours), x, lens)
    try:
        outs, grads = forward_backward_params(ours, x, lens)
    except ValueError as e:
        if strategy == "persistent" and "cannot hold" in str(e):
            pytest.skip(f"persistent cannot hold this shape: {e}")
        raise
    tf32 = dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    for i, (o, o64, ob) in enumerate(zip([*outs, *grads], [*outs64, *grads64], [*base, *base_g])):
        check_close(o, o64, dtype, tf32=tf32, baseline=ob, name=f"quantity {i}")


def forward_backward_params(module, x, lengths):
    """Outputs and the gradients of x and every parameter, for a GRU called with ``lengths``."""
    x = x.detach().requires_grad_()
    out, h_n = module(x, lengths=lengths)
    gen = torch.Generator().manual_seed(0)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)).sum() for o in (out, h_n))
    return [out.detach(), h_n.detach()], list(torch.autograd.grad(loss, [x, *module.parameters()]))


@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent"])
def test_gru_reset_before_cuda_runs_are_bitwise_repeatable(strategy):
    """Two phases a step forward and three backward, each behind a barrier: any missing one shows
    as results that move between runs."""
    T, B, H = 64, 8, 512
    m = fastgru.GRU(H, H, bidirectional=True, strategy=strategy, reset_after=False).cuda().to(torch.bfloat16)
    x = torch.randn(T, B, H, device="cuda", dtype=torch.bfloat16)
    runs = [forward_backward_params(m, x, None) for _ in range(3)]
    for outs, grads in runs[1:]:
        for a, b in zip([*runs[0][0], *runs[0][1]], [*outs, *grads]):
            assert torch.equal(a, b), "two runs on the same inputs differ"
