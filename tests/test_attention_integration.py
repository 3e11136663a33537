"""The attention ops as custom ops: torch.library.opcheck on both ops of every score, and
torch.compile(fullgraph=True) through every attention module and GRUAttention, forward and
backward, against eager; autocast on the attention functions."""

import pytest
import torch

import fastgru
from fastgru.ops import attention as attn_ops
from fastgru.testing import check_close

N, TQ, T, F, D = 2, 3, 5, 4, 6


def _inputs(score, device, masked, need_weights, dropout_p=0.0):
    q = torch.randn(N, TQ, F, device=device, requires_grad=True)
    k = torch.randn(N, T, F, device=device, requires_grad=True)
    w = torch.randn(F, device=device, requires_grad=True) if score == "additive" else None
    v = torch.randn(N, T, D, device=device, requires_grad=True)
    lengths = torch.tensor([T, 2], device=device) if masked else None
    mask = torch.zeros(N, T, dtype=torch.bool, device=device) if masked else None
    if masked:
        mask[0, 1] = True
    seed = torch.tensor([7], device=device) if dropout_p > 0 else None  # the dropout seed: a device tensor
    return q, k, w, v, lengths, mask, 0.5 if score == "dot" else 1.0, score, need_weights, 1, dropout_p, seed


@pytest.mark.parametrize("need_weights, dropout_p", [(False, 0.0), (True, 0.0), (True, 0.25)],
                         ids=["context", "weights", "weights-dropout"])
@pytest.mark.parametrize("masked", [False, True], ids=["open", "masked"])
@pytest.mark.parametrize("score", ["additive", "dot"])
def test_opcheck_attention(score, masked, need_weights, dropout_p, device):
    args = _inputs(score, device, masked, need_weights, dropout_p)
    torch.library.opcheck(attn_ops.attention_fwd, args)
    q, k, w, v, lengths, mask, scale, _, _, heads, _, seed = args
    with torch.no_grad():
        out, stats, probs = attn_ops.attention_fwd(*args)
    d_out = torch.randn_like(out)
    d_probs = torch.randn_like(probs) if need_weights else None
    bwd_args = (q.detach(), k.detach(), None if w is None else w.detach(), v.detach(), lengths, mask, stats, d_out,
                d_probs, scale, score, True, heads, dropout_p, seed)
    torch.library.opcheck(attn_ops.attention_bwd, bwd_args)


def _modules(device):
    return {
        "pooling": (fastgru.AttentionPooling(D, 5), lambda x: (x["values"],)),
        "additive": (fastgru.AdditiveAttention(F, D, 5), lambda x: (x["query"], x["values"])),
        "dot": (fastgru.DotAttention(D), lambda x: (x["query_d"], x["values"])),
        "general": (fastgru.DotAttention(F, D, method="general", scale=0.5), lambda x: (x["query"], x["values"])),
    }


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("name", ["pooling", "additive", "dot", "general"])
def test_compile_fullgraph_attention_modules(name, backend, device):
    torch._dynamo.reset()
    module, args_of = _modules(device)[name]
    module = module.to(device)
    x = {
        "query": torch.randn(N, TQ, F, device=device, requires_grad=True),
        "query_d": torch.randn(N, TQ, D, device=device, requires_grad=True),
        "values": torch.randn(N, T, D, device=device, requires_grad=True),
    }
    lengths = torch.tensor([T, 3], device=device)
    compiled = torch.compile(module, fullgraph=True, backend=backend)

    def run(m):
        out, weights = m(*args_of(x), lengths=lengths, need_weights=True)
        loss = out.square().sum() + (weights * torch.arange(T, device=device)).sum()
        return [out, weights, *torch.autograd.grad(loss, [*args_of(x), *module.parameters()])]

    for a, b in zip(run(compiled), run(module)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compile_fullgraph_gru_attention(backend, device):
    torch._dynamo.reset()
    model = fastgru.GRUAttention(4, 6, 3, num_layers=2, bidirectional=True).to(device)
    x = torch.randn(3, 5, 4, device=device, requires_grad=True)
    lengths = torch.tensor([5, 2, 4], device=device)
    compiled = torch.compile(model, fullgraph=True, backend=backend)

    def run(m):
        logits, weights = m(x, lengths)
        return [logits, weights, *torch.autograd.grad(logits.square().sum(), [x, *model.parameters()])]

    for a, b in zip(run(compiled), run(model)):
        torch.testing.assert_close(a, b)


def test_gru_attention_takes_lengths_without_packing(device, monkeypatch):
    """The encoder runs on per-row lengths: nothing packs or pads on the kernel path."""
    import fastgru.functional.layers as functional_layers
    import fastgru.nn.recurrent as modules_gru

    model = fastgru.GRUAttention(4, 6, 3, bidirectional=True).to(device)
    x = torch.randn(3, 5, 4, device=device)
    lengths = torch.tensor([5, 2, 4])
    expected = model(x, lengths)

    def boom(*args, **kwargs):
        raise AssertionError("GRUAttention packed or padded its input")

    for module in (functional_layers, modules_gru):
        for name in ("pack_padded_sequence", "pad_packed_sequence"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, boom)
    if fastgru.backend.uses_kernels(x):
        for a, b in zip(model(x, lengths), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["pooling", "additive", "general"])
def test_attention_autocast_runs_in_low_precision(name, device):
    module, args_of = _modules(device)[name]
    module = module.to(device)
    x = {"query": torch.randn(N, TQ, F, device=device), "query_d": torch.randn(N, TQ, D, device=device),
         "values": torch.randn(N, T, D, device=device)}
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out, weights = module(*args_of(x), need_weights=True)
    assert out.dtype == weights.dtype == torch.bfloat16
    ref, ref_w = module.double()(*[a.double() for a in args_of(x)], need_weights=True)
    check_close(out, ref, torch.bfloat16, name="context")
    check_close(weights, ref_w, torch.bfloat16, name="weights")
