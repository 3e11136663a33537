"""The first GPU tests a lent GPU runs (bench/gpu_check.sh, under 90 s): one per construct the
interpreter cannot show, each where it would break on CUDA (docs/DECISIONS.md 23-27).

- attention pooling (Tq = 1, the smallest query block) in every dtype: failed on an H100 on
  2026-11-23, never explained;
- additive attention at Tq = 20 (a query block with padded rows) with scores near 100 in fp16:
  the backward's padded rows must contribute nothing, not inf * 0;
- the GRU at H <= 16 in bf16/fp16: tiles below the MMA minimum must never reach the compiler;
- the persistent grid barrier with several hidden and several batch blocks, both directions, both
  formulations: parity and bitwise repeatability (a late or missing barrier shows as results
  that move);
- fp32 parity of every strategy (exp and division must be precise where the contract is fp32's);
- attention dropout captured in a CUDA graph: every replay draws a new mask.
"""

import copy

import pytest
import torch
from torch import nn

import fastgru
import fastgru.functional as AF
from fastgru import reference
from fastgru.testing import check_close
from helpers import forward_backward
from test_attention_kernels import compare, make_inputs, make_masks

pytestmark = pytest.mark.gpu

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
IDS = ["fp32", "bf16", "fp16"]


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("masking", ["none", "lengths"])
def test_pooling_at_one_query_row(masking, dtype):
    x = make_inputs("pooling", 8, 1, 300, dtype, "cuda", dims=(64, 64, 128, 96))
    lengths, mask = make_masks(masking, 8, 300, "cuda")
    compare("pooling", x, lengths, mask, dtype, baseline=dtype != torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_additive_padded_query_rows_with_large_scores(dtype):
    """Tq = 20 leaves padded rows in the last query block; |v| is large enough that scores reach
    ~100, past fp16's exp range (11) and fp32's (88) for an unnormalised probability."""
    N, Tq, T, A = 4, 20, 64, 16
    x = make_inputs("additive", N, Tq, T, dtype, "cuda", dims=(32, 32, A, 48))
    with torch.no_grad():
        x["v"].copy_((12.0 * torch.sign(torch.randn(A, device="cuda"))).to(dtype))
    out, w = AF.additive_attention(x["query"], x["keys"], x["values"], query_weight=x["query_weight"],
                                   key_weight=x["key_weight"], v=x["v"], key_bias=x["key_bias"], need_weights=True)
    grads = torch.autograd.grad((out.float() * torch.randn_like(out.float())).sum(), list(x.values()))
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    for name, g in zip(x, grads):
        assert torch.isfinite(g).all(), f"d{name} has non-finite values"
    x64 = {k: v.detach().double() for k, v in x.items()}
    ref_out, _ = reference.additive_attention(x64["query"], x64["keys"], x64["values"], x64["query_weight"],
                                              x64["key_weight"], x64["v"], None, x64["key_bias"], None, None)
    check_close(out, ref_out, dtype, name="context")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("H", [1, 4, 8, 13, 16])
def test_gru_small_hidden_runs_on_every_pick(H, dtype):
    ref = nn.GRU(24, H, bidirectional=True).cuda()
    ours = fastgru.GRU(24, H, bidirectional=True).cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(40, 3, 24, device="cuda")
    outs64, grads64 = forward_backward(copy.deepcopy(ref).double(), x.double().requires_grad_())
    outs, grads = forward_backward(ours, x.to(dtype).requires_grad_())
    for i, (o, o64) in enumerate(zip([*outs, *grads], [*outs64, *grads64])):
        check_close(o, o64, dtype, name=f"quantity {i}")


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset-after", "reset-before"])
def test_persistent_barrier_several_hidden_and_batch_blocks(reset_after):
    """H = 256 is four 64-unit hidden blocks; B = 100 two batch blocks of 64; both directions;
    unequal lengths. Three runs must be bitwise equal and match the float64 reference."""
    T, B, H, dtype = 48, 100, 256, torch.bfloat16
    m = fastgru.GRU(64, H, bidirectional=True, strategy="persistent", reset_after=reset_after).cuda().to(dtype)
    x = torch.randn(T, B, 64, device="cuda", dtype=dtype)
    lengths = torch.randint(1, T + 1, (B,))

    def run(module, inp):
        inp = inp.detach().requires_grad_()
        out, h_n = module(inp, lengths=lengths)
        gen = torch.Generator().manual_seed(0)
        loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)).sum() for o in (out, h_n))
        return [out.detach(), h_n.detach(), *torch.autograd.grad(loss, [inp, *module.parameters()])]

    runs = [run(m, x) for _ in range(3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b), "two runs on the same inputs differ: a barrier let a program through early"
    with fastgru.backend.using("reference"):
        ref = run(copy.deepcopy(m).double(), x.double())
    for i, (a, r) in enumerate(zip(runs[0], ref)):
        check_close(a, r, dtype, name=f"quantity {i}")


@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent"])
def test_fp32_parity_every_strategy(strategy):
    T, B, H = 32, 8, 256
    ref = nn.GRU(64, H, bidirectional=True).cuda()
    ours = fastgru.GRU(64, H, bidirectional=True, strategy=strategy).cuda()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, 64, device="cuda")
    outs64, grads64 = forward_backward(copy.deepcopy(ref).double(), x.double().requires_grad_())
    base, base_g = forward_backward(ref, x.requires_grad_())
    try:
        outs, grads = forward_backward(ours, x.detach().requires_grad_())
    except ValueError as e:
        if strategy == "persistent" and "cannot hold" in str(e):
            pytest.skip(f"persistent cannot hold this shape in fp32: {e}")
        raise
    tf32 = torch.backends.cudnn.allow_tf32
    for i, (o, o64, ob) in enumerate(zip([*outs, *grads], [*outs64, *grads64], [*base, *base_g])):
        check_close(o, o64, torch.float32, tf32=tf32, baseline=ob, name=f"quantity {i}")


def test_attention_dropout_draws_a_new_mask_on_every_graph_replay():
    q = torch.randn(2, 16, 32, device="cuda")
    k = torch.randn(2, 40, 32, device="cuda")

    def step():
        return AF.dot_attention(q, k, k, dropout_p=0.5, need_weights=True)[1]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up (autotuning, compiling) outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        weights = step()
    graph.replay()
    first = weights.clone()
    graph.replay()
    assert not torch.equal(first != 0, weights != 0), "two replays of a captured dropout drew the same mask"
