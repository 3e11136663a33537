"""The fused attention decoder on CUDA at realistic sizes (skipped without a GPU): against the
float64 reference and the same math in PyTorch ops in the same dtype (the 2x baseline), outputs
and every gradient; bitwise repeatability; a decoding step captured in a CUDA graph."""

import copy

import pytest
import torch

import fastgru
from fastgru import backend
from fastgru.testing import check_close

pytestmark = pytest.mark.gpu

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _case(attention, N, T_out, T_in, H, K, dtype):
    feeding = attention != "additive"
    dec = fastgru.AttentionGRUDecoder(64, H, K, attention=attention, input_feeding=feeding).cuda().to(dtype)
    x = torch.randn(N, T_out, 64, device="cuda", dtype=dtype)
    keys = torch.randn(N, T_in, K, device="cuda", dtype=dtype)
    lengths = torch.randint(1, T_in + 1, (N,), device="cuda")
    return dec, x, keys, lengths


def _fwd_bwd(dec, x, keys, lengths, which=None):
    x, keys = x.detach().requires_grad_(), keys.detach().requires_grad_()
    ctx = backend.using(which) if which else torch.enable_grad()
    with ctx:
        outs = dec(x, keys, key_lengths=lengths, need_weights=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    loss = sum((o * torch.randn(o.shape, generator=gen, device="cuda").to(o)).sum() for o in outs)
    grads = torch.autograd.grad(loss, [x, keys, *dec.parameters()])
    return [o.detach() for o in outs] + list(grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("attention", ["additive", "general"])
@pytest.mark.parametrize("N,T_in,H,K", [(1, 64, 256, 256), (8, 512, 256, 512), (64, 64, 512, 512)],
                         ids=["N1-Tin64-H256", "N8-Tin512-H256-K512", "N64-Tin64-H512"])
def test_decoder_cuda_parity(N, T_in, H, K, attention, dtype):
    dec, x, keys, lengths = _case(attention, N, 32, T_in, H, K, dtype)
    ref = _fwd_bwd(copy.deepcopy(dec).double(), x.double(), keys.double(), lengths, "reference")
    base = _fwd_bwd(dec, x, keys, lengths, "reference")
    got = _fwd_bwd(dec, x, keys, lengths)
    tf32 = dtype == torch.float32 and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    for i, (g, r, b) in enumerate(zip(got, ref, base)):
        check_close(g, r, dtype, tf32=tf32, baseline=b, name=f"result {i}")


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_decoder_is_bitwise_repeatable(attention):
    dec, x, keys, lengths = _case(attention, 16, 24, 128, 256, 256, torch.bfloat16)
    first, second = _fwd_bwd(dec, x, keys, lengths), _fwd_bwd(dec, x, keys, lengths)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_decoding_step_in_a_cuda_graph():
    dec, x, keys, lengths = _case("additive", 8, 1, 128, 256, 256, torch.bfloat16)
    with torch.no_grad():
        state = dec.init_state(keys, key_lengths=lengths)
        x_t = x[:, 0].clone()
        eager_out, eager_state = dec.step(x_t, state)  # also compiles the kernel before capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, new_state = dec.step(x_t, state)
        graph.replay()
        torch.cuda.synchronize()
    assert torch.equal(out, eager_out) and torch.equal(new_state.context, eager_state.context)
