"""Attention modules and GRUAttention vs the same math written with torch.nn layers (weights
copied), layouts (2-D query, batch_first=False, values defaulting to keys), the CPU backends."""

import copy

import pytest
import torch
from torch import nn

import fastgru
import fastgru.functional.attention as AF
from fastgru.testing import check_close


def torch_softmax(scores, ignore):
    """Masked softmax written out; fully masked rows -> 0. scores (N, Tq, T), ignore (N, T)."""
    if ignore is None:
        return scores.softmax(-1)
    ignore = ignore[:, None, :]
    empty = ignore.all(-1, keepdim=True)
    w = scores.masked_fill(ignore, -1e30).softmax(-1).masked_fill(ignore, 0.0)
    return w.masked_fill(empty, 0.0)


def ignore_of(lengths, mask, N, T):
    ig = torch.zeros(N, T, dtype=torch.bool)
    if lengths is not None:
        ig |= torch.arange(T)[None, :] >= lengths[:, None].cpu()
    if mask is not None:
        ig |= mask.cpu()
    return ig


class TorchPooling(nn.Module):
    def __init__(self, d, a):
        super().__init__()
        self.proj, self.context = nn.Linear(d, a), nn.Parameter(torch.zeros(a))

    def forward(self, h, lengths=None, key_padding_mask=None):
        s = (torch.tanh(self.proj(h)) @ self.context)[:, None, :]
        w = torch_softmax(s, ignore_of(lengths, key_padding_mask, h.shape[0], h.shape[1]).to(h.device))
        return (w @ h)[:, 0], w[:, 0]


class TorchAdditive(nn.Module):
    def __init__(self, dq, dk, a):
        super().__init__()
        self.query_proj, self.key_proj = nn.Linear(dq, a, bias=False), nn.Linear(dk, a)
        self.v = nn.Parameter(torch.zeros(a))

    def forward(self, q, k, v, lengths=None, key_padding_mask=None):
        s = torch.tanh(self.query_proj(q)[:, :, None] + self.key_proj(k)[:, None]) @ self.v
        w = torch_softmax(s, ignore_of(lengths, key_padding_mask, k.shape[0], k.shape[1]).to(k.device))
        return w @ v, w


class TorchDot(nn.Module):
    def __init__(self, dq, dk, general, scale):
        super().__init__()
        self.proj, self.scale = (nn.Linear(dk, dq, bias=False) if general else None), scale

    def forward(self, q, k, v, lengths=None, key_padding_mask=None):
        kk = self.proj(k) if self.proj is not None else k
        w = torch_softmax(self.scale * q @ kk.transpose(1, 2), ignore_of(lengths, key_padding_mask, k.shape[0], k.shape[1]).to(k.device))
        return w @ v, w


def twin_of(module, twin):
    twin.load_state_dict(module.state_dict())
    return twin.double()


def check_module(module, twin, args, kwargs):
    """Forward, weights and parameter/input gradients of module(...) vs the fp64 twin."""
    out, w = module(*args, **kwargs, need_weights=True)
    args64 = [a.detach().double().requires_grad_() for a in args]
    ref_out, ref_w = twin(*args64, **kwargs)
    g = torch.randn_like(ref_out)
    names = [n for n, _ in module.named_parameters()] + [f"input {i}" for i in range(len(args))]
    grads = torch.autograd.grad((out * g.float()).sum() + w.square().sum(), list(module.parameters()) + list(args))
    ref_grads = torch.autograd.grad((ref_out * g).sum() + ref_w.square().sum(), list(twin.parameters()) + args64)
    twin32 = copy.deepcopy(twin).float()  # PyTorch's own fp32 result: the contract's baseline
    args32 = [a.detach().float().requires_grad_() for a in args]
    own_out, own_w = twin32(*args32, **kwargs)
    check_close(out, ref_out, torch.float32, baseline=own_out, name="context")
    check_close(w, ref_w, torch.float32, baseline=own_w, name="weights")
    own_grads = torch.autograd.grad((own_out * g.float()).sum() + own_w.square().sum(),
                                    list(twin32.parameters()) + args32)
    for name, a, b, own in zip(names, grads, ref_grads, own_grads):
        check_close(a, b, torch.float32, baseline=own, name=name)


def rand(*s, device="cpu"):
    return torch.randn(*s, device=device, requires_grad=True)


@pytest.mark.parametrize("masking", ["none", "lengths", "kpm"])
def test_attention_pooling_matches_torch_nn(masking, device):
    N, T, Dm, A = 3, 9, 13, 11
    m = fastgru.AttentionPooling(Dm, A).to(device)
    twin = twin_of(m, TorchPooling(Dm, A)).to(device)
    h = rand(N, T, Dm, device=device)
    kw = {}
    if masking == "lengths":
        kw["lengths"] = torch.tensor([9, 1, 0])
    if masking == "kpm":
        kw["key_padding_mask"] = torch.rand(N, T, device=device) < 0.5
    check_module(m, twin, [h], kw)


@pytest.mark.parametrize("query_dims", [2, 3], ids=["query2d", "query3d"])
def test_additive_attention_matches_torch_nn(query_dims, device):
    N, Tq, T, Dq, Dk, A, Dv = 2, 4, 7, 5, 6, 9, 3
    m = fastgru.AdditiveAttention(Dq, Dk, A).to(device)
    twin = twin_of(m, TorchAdditive(Dq, Dk, A)).to(device)
    q = rand(N, Dq, device=device) if query_dims == 2 else rand(N, Tq, Dq, device=device)
    k, v = rand(N, T, Dk, device=device), rand(N, T, Dv, device=device)
    lengths = torch.tensor([7, 3])
    out, w = m(q, k, v, lengths=lengths, need_weights=True)
    assert out.shape == ((N, Dv) if query_dims == 2 else (N, Tq, Dv))
    assert w.shape == ((N, T) if query_dims == 2 else (N, Tq, T))
    q3 = q if query_dims == 3 else q[:, None]
    ref_out, ref_w = twin(q3.detach().double(), k.detach().double(), v.detach().double(), lengths=lengths)
    check_close(out, ref_out.reshape(out.shape), torch.float32, name="context")
    check_close(w, ref_w.reshape(w.shape), torch.float32, name="weights")


@pytest.mark.parametrize("method", ["dot", "general"])
@pytest.mark.parametrize("masking", ["none", "kpm"])
def test_dot_attention_matches_torch_nn(method, masking, device):
    N, Tq, T, Dq, Dv = 2, 5, 8, 6, 7
    Dk = Dq if method == "dot" else 10
    m = fastgru.DotAttention(Dq, Dk, method=method, scale=0.5).to(device)
    twin = twin_of(m, TorchDot(Dq, Dk, method == "general", 0.5)).to(device)
    kw = {"key_padding_mask": torch.rand(N, T, device=device) < 0.4} if masking == "kpm" else {}
    check_module(m, twin, [rand(N, Tq, Dq, device=device), rand(N, T, Dk, device=device), rand(N, T, Dv, device=device)], kw)


def test_time_first_layout_and_values_default(device):
    N, Tq, T, Dq, Dk, A = 2, 3, 6, 4, 5, 7
    bf = fastgru.AdditiveAttention(Dq, Dk, A).to(device)
    tf = fastgru.AdditiveAttention(Dq, Dk, A, batch_first=False).to(device)
    tf.load_state_dict(bf.state_dict())
    q, k = torch.randn(N, Tq, Dq, device=device), torch.randn(N, T, Dk, device=device)
    out, w = bf(q, k, need_weights=True)  # values default to keys
    out_t, w_t = tf(q.transpose(0, 1), k.transpose(0, 1), need_weights=True)
    assert out.shape == (N, Tq, Dk) and out_t.shape == (Tq, N, Dk)
    torch.testing.assert_close(out_t.transpose(0, 1), out)
    torch.testing.assert_close(w_t, w)
    pool = fastgru.AttentionPooling(Dk, A, batch_first=False).to(device)
    pooled, pw = pool(k.transpose(0, 1), need_weights=True)
    ref, ref_w = fastgru.reference.attention_pooling(k, pool.proj.weight, pool.proj.bias, pool.context)
    torch.testing.assert_close(pooled, ref)
    torch.testing.assert_close(pw, ref_w)


def test_reprs_and_parameters():
    assert "input_size=8, attention_size=4" in repr(fastgru.AttentionPooling(8, 4))
    add = fastgru.AdditiveAttention(3, 5, 7, bias=False)
    assert "query_size=3, key_size=5, attention_size=7, bias=False" in repr(add)
    assert add.key_proj.bias is None and add.v.shape == (7,) and add.query_proj.weight.shape == (7, 3)
    dot = fastgru.DotAttention(6, 4, method="general")
    assert "method='general'" in repr(dot) and dot.proj.weight.shape == (6, 4)
    assert fastgru.DotAttention(6).proj is None
    assert {n for n, _ in fastgru.AttentionPooling(8, 4).named_parameters()} == {"proj.weight", "proj.bias", "context"}


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("variant", ["pooling", "additive", "dot"])
def test_cpu_backends_agree_with_kernels(backend, variant, monkeypatch):
    """The plain-PyTorch paths (CPU default, reference) give what the kernels give, fully
    masked rows included (SDPA alone would give NaN there)."""
    N, Tq, T, Dm = 3, 4, 6, 5
    lengths = torch.tensor([6, 0, 2])
    m = {"pooling": fastgru.AttentionPooling(Dm, 7), "additive": fastgru.AdditiveAttention(Dm, Dm, 7),
         "dot": fastgru.DotAttention(Dm, method="general")}[variant]
    k = torch.randn(N, T, Dm)
    args = (k,) if variant == "pooling" else (torch.randn(N, Tq, Dm), k)
    for need_weights in (False, True):
        expected = m(*args, lengths=lengths, need_weights=need_weights)
        with monkeypatch.context() as mp:
            mp.setattr(AF, "backend_for", lambda *t: backend)
            got = m(*args, lengths=lengths, need_weights=need_weights)
        assert torch.isfinite(got[0]).all()
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
        assert (got[1] is None) == (not need_weights)
        if need_weights:
            torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ GRUAttention


class TorchGRUAttention(nn.Module):
    def __init__(self, i, h, o, bidirectional):
        super().__init__()
        d = 2 if bidirectional else 1
        self.encoder = nn.GRU(i, h, batch_first=True, bidirectional=bidirectional)
        self.pooling, self.head = TorchPooling(d * h, h), nn.Linear(d * h, o)

    def forward(self, x, lengths=None):
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h = nn.utils.rnn.pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        else:
            h = self.encoder(x)[0]
        pooled, w = self.pooling(h, lengths)
        return self.head(pooled), w


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["padded", "lengths"])
def test_gru_attention_matches_torch_nn(bidirectional, with_lengths, device):
    N, T, I, H, O = 3, 5, 4, 8, 3
    model = fastgru.GRUAttention(I, H, O, bidirectional=bidirectional).to(device)
    twin = twin_of(model, TorchGRUAttention(I, H, O, bidirectional)).to(device)
    x = torch.randn(N, T, I, device=device)
    lengths = torch.tensor([5, 2, 4]) if with_lengths else None
    logits, w = model(x, lengths)
    ref_logits, ref_w = twin(x.double(), lengths)
    assert logits.shape == (N, O) and w.shape == (N, T)
    check_close(logits, ref_logits, torch.float32, name="logits")
    check_close(w, ref_w, torch.float32, name="weights")
    if with_lengths:
        assert torch.all(w[1, 2:] == 0)
    grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad(ref_logits.square().sum(), list(twin.parameters()))
    twin32 = twin.float()
    own_grads = torch.autograd.grad(twin32(x, lengths)[0].square().sum(), list(twin32.parameters()))
    for (name, _), a, b, own in zip(model.named_parameters(), grads, ref_grads, own_grads):
        check_close(a, b, torch.float32, baseline=own, name=name)
