"""Multi-head attention, multi-hop pooling and attention dropout: DotAttention("projected") vs
nn.MultiheadAttention with the same weights; AttentionPooling(num_heads=r) vs Lin et al.'s
structured self-attention written in plain PyTorch; AdditiveAttention's heads vs the single-head
reference per head; dropout's determinism, rate and agreement with the reference replaying the
kernels' own draw; the path dot attention takes; the argument checks."""

import pytest
import torch
from torch import nn

import fastgru
import fastgru.functional as AF
import fastgru.functional.attention as attention_functional
import fastgru.launchers.attention as AA
from fastgru import reference
from fastgru.testing import check_close

F32 = torch.float32


def rand(*shape, device="cpu", dtype=F32):
    return torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)


def grads_of(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def check_all(names, got, ref, baseline=None):
    """check_close every (name, got, ref[, baseline]) at the fp32 contract."""
    baseline = baseline or [None] * len(got)
    for name, a, b, base in zip(names, got, ref, baseline):
        check_close(a, b, F32, baseline=base, name=name)


# ------------------------------------------------------------------------------ nn.MultiheadAttention


def load_from_mha(module, mha):
    """Copy nn.MultiheadAttention's parameters into DotAttention(method="projected")."""
    E = mha.embed_dim
    with torch.no_grad():
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.split(E)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        for lin, w, b in zip((module.q_proj, module.k_proj, module.v_proj), weights, mha.in_proj_bias.split(E)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        module.out_proj.weight.copy_(mha.out_proj.weight)
        module.out_proj.bias.copy_(mha.out_proj.bias)


def mha_grads(mha, grads):
    """MultiheadAttention's parameter gradients in DotAttention's parameter order
    (q_proj.weight, q_proj.bias, k_proj..., v_proj..., out_proj.weight, out_proj.bias)."""
    named = dict(zip([n for n, _ in mha.named_parameters()], grads))
    E = mha.embed_dim
    if mha._qkv_same_embed_dim:
        w = named["in_proj_weight"].split(E)
    else:
        w = (named["q_proj_weight"], named["k_proj_weight"], named["v_proj_weight"])
    b = named["in_proj_bias"].split(E)
    return [w[0], b[0], w[1], b[1], w[2], b[2], named["out_proj.weight"], named["out_proj.bias"]]


@pytest.mark.parametrize("average", [True, False], ids=["averaged", "per-head"])
@pytest.mark.parametrize("kdim, vdim", [(None, None), (6, 5)], ids=["packed", "separate"])
def test_projected_matches_multihead_attention(kdim, vdim, average, device):
    N, Tq, T, E, H = 2, 3, 5, 8, 2
    Dk, Dv = kdim or E, vdim or E
    mha = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=True).to(device)
    with torch.no_grad():
        mha.in_proj_bias.uniform_(-0.5, 0.5)  # nonzero biases (nn's default is zero)
        mha.out_proj.bias.uniform_(-0.5, 0.5)
    m = fastgru.DotAttention(E, kdim, method="projected", num_heads=H, value_size=vdim).to(device)
    load_from_mha(m, mha)
    assert m.scale == (E // H) ** -0.5
    mha64 = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=True).to(device).double()
    mha64.load_state_dict(mha.state_dict())
    q, k, v = rand(N, Tq, E, device=device), rand(N, T, Dk, device=device), rand(N, T, Dv, device=device)
    kpm = torch.zeros(N, T, dtype=torch.bool, device=device)
    kpm[0, 3:] = True
    kpm[1, 1] = True
    g = torch.randn(N, Tq, E, device=device, dtype=torch.float64)
    gw = torch.randn((N, Tq, T) if average else (N, H, Tq, T), device=device, dtype=torch.float64)

    def run(module, inputs, **kw):
        out, w = module(*inputs, key_padding_mask=kpm, need_weights=True, average_attn_weights=average, **kw)
        loss = (out * g.to(out.dtype)).sum() + (w * gw.to(w.dtype)).sum()
        return [out, w, *grads_of(loss, [*inputs, *module.parameters()])]

    got = run(m, [q, k, v])
    inputs64 = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref = run(mha64, inputs64)
    own = run(mha, [q, k, v])
    ref = ref[:5] + mha_grads(mha64, ref[5:])
    own = own[:5] + mha_grads(mha, own[5:])
    names = ["context", "weights", "d query", "d keys", "d values", "q_proj.weight", "q_proj.bias", "k_proj.weight",
             "k_proj.bias", "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"]
    # k_proj.bias shifts every score of a query row by the same amount, which the softmax ignores:
    # its exact gradient is 0, so only its size is checked (both results are rounding noise).
    i = names.index("k_proj.bias")
    assert got[i].norm() <= 1e-5 * got[i - 1].norm(), f"k_proj.bias gradient {got[i].norm():.2e} is not ~0"
    del names[i], got[i], ref[i], own[i]
    check_all(names, got, ref, own)


# ------------------------------------------------------------------------------ multi-hop pooling


class SelfAttentive(nn.Module):
    """Structured self-attention (Lin et al. 2017) in plain PyTorch: A = softmax(W_s2 tanh(W_s1 H^T))
    over the valid steps, M = A H, penalty ||A A^T - I||_F^2 (batch mean)."""

    def __init__(self, d, a, r):
        super().__init__()
        self.W_s1 = nn.Linear(d, a)
        self.W_s2 = nn.Parameter(torch.randn(r, a) / a**0.5)

    def forward(self, h, lengths):
        s = self.W_s2 @ torch.tanh(self.W_s1(h)).transpose(1, 2)  # (N, r, T)
        pad = torch.arange(h.shape[1], device=h.device)[None, None, :] >= lengths.to(h.device)[:, None, None]
        A = s.masked_fill(pad, float("-inf")).softmax(-1)
        r = A.shape[1]
        penalty = ((A @ A.transpose(1, 2) - torch.eye(r, dtype=A.dtype, device=A.device)) ** 2).sum((1, 2)).mean()
        return A @ h, A, penalty


def test_multi_hop_pooling_matches_lin_et_al(device):
    N, T, D, A, r = 3, 7, 6, 5, 4
    twin = SelfAttentive(D, A, r).to(device)
    m = fastgru.AttentionPooling(D, A, num_heads=r).to(device)
    assert m.context.shape == (r, A)
    with torch.no_grad():
        m.proj.weight.copy_(twin.W_s1.weight)
        m.proj.bias.copy_(twin.W_s1.bias)
        m.context.copy_(twin.W_s2)
    twin64 = SelfAttentive(D, A, r).to(device).double()
    twin64.load_state_dict(twin.state_dict())
    h = rand(N, T, D, device=device)
    lengths = torch.tensor([7, 3, 1])
    g = torch.randn(N, r, D, device=device, dtype=torch.float64)
    gw = torch.randn(N, r, T, device=device, dtype=torch.float64)

    def run(outputs, params, x):
        out, w, penalty = outputs
        loss = (out * g.to(out.dtype)).sum() + (w * gw.to(w.dtype)).sum() + 0.3 * penalty
        return [out, w, penalty, *grads_of(loss, [x, *params])]

    out, w = m(h, lengths=lengths, need_weights=True)
    assert out.shape == (N, r, D) and w.shape == (N, r, T)
    got = run((out, w, m.penalty(w)), [m.proj.weight, m.proj.bias, m.context], h)
    h64 = h.detach().double().requires_grad_()
    ref = run(twin64(h64, lengths), [twin64.W_s1.weight, twin64.W_s1.bias, twin64.W_s2], h64)
    own = run(twin(h, lengths), [twin.W_s1.weight, twin.W_s1.bias, twin.W_s2], h)
    check_all(["pooled", "weights", "penalty", "d h", "W_s1.weight", "W_s1.bias", "W_s2"], got, ref, own)


def test_one_hop_pooling_keeps_its_parameters(device):
    m = fastgru.AttentionPooling(6, 5).to(device)
    assert m.context.shape == (5,)
    h = torch.randn(2, 4, 6, device=device)
    pooled, w = m(h, need_weights=True)
    assert pooled.shape == (2, 6) and w.shape == (2, 4)
    hop = fastgru.AttentionPooling(6, 5, num_heads=1).to(device)
    hop.load_state_dict(m.state_dict())
    # A (1, A) context is one hop with the hop axis kept.
    out1, w1 = AF.attention_pooling(h, weight=m.proj.weight, bias=m.proj.bias, context=m.context[None], need_weights=True)
    assert out1.shape == (2, 1, 6) and w1.shape == (2, 1, 4)
    check_close(out1[:, 0], reference.attention_pooling(h.double(), m.proj.weight.double(), m.proj.bias.double(),
                                                        m.context.double())[0], F32)
    torch.testing.assert_close(hop(h)[0], pooled, rtol=0, atol=0)


def test_attention_penalty():
    eye = torch.eye(3)[None].repeat(2, 1, 1)  # orthonormal hops: no penalty
    assert AF.attention_penalty(torch.cat([eye, torch.zeros(2, 3, 4)], dim=2)).item() == 0.0
    same = torch.full((1, 2, 4), 0.25)  # two identical uniform hops: A A^T = 1/4 everywhere
    assert AF.attention_penalty(same).item() == pytest.approx(2 * 0.75**2 + 2 * 0.25**2)


# ------------------------------------------------------------------------------ additive heads


def per_head_additive(m, q, k, v, lengths):
    """The single-head reference run on each head's slice by hand; contexts concatenated."""
    H, a, dv = m.num_heads, m.attention_size // m.num_heads, v.shape[-1] // m.num_heads
    outs, weights = [], []
    for h in range(H):
        f, c = slice(h * a, (h + 1) * a), slice(h * dv, (h + 1) * dv)
        out, w = reference.additive_attention(
            q, k, v[..., c], m.query_proj.weight[f], m.key_proj.weight[f], m.v[f], None, m.key_proj.bias[f], lengths,
        )
        outs.append(out)
        weights.append(w)
    return torch.cat(outs, dim=-1), torch.stack(weights, dim=1)


def test_additive_heads_match_per_head_reference(device):
    N, Tq, T, Dq, Dk, A, Dv, H = 2, 3, 6, 5, 4, 8, 6, 2
    m = fastgru.AdditiveAttention(Dq, Dk, A, num_heads=H).to(device)
    m64 = fastgru.AdditiveAttention(Dq, Dk, A, num_heads=H).to(device).double()
    m64.load_state_dict(m.state_dict())
    q, k, v = rand(N, Tq, Dq, device=device), rand(N, T, Dk, device=device), rand(N, T, Dv, device=device)
    lengths = torch.tensor([6, 2])
    g = torch.randn(N, Tq, Dv, device=device, dtype=torch.float64)
    gw = torch.randn(N, H, Tq, T, device=device, dtype=torch.float64)

    out, w = m(q, k, v, lengths=lengths, need_weights=True, average_attn_weights=False)
    assert out.shape == (N, Tq, Dv) and w.shape == (N, H, Tq, T)
    _, w_mean = m(q, k, v, lengths=lengths, need_weights=True)
    got = [out, w, *grads_of((out * g.float()).sum() + (w * gw.float()).sum(), [q, k, v, *m.parameters()])]
    x64 = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref_out, ref_w = per_head_additive(m64, *x64, lengths)
    ref = [ref_out, ref_w, *grads_of((ref_out * g).sum() + (ref_w * gw).sum(), [*x64, *m64.parameters()])]
    names = ["context", "weights", "d query", "d keys", "d values"] + [n for n, _ in m.named_parameters()]
    check_all(names, got, ref)
    check_close(w_mean, ref_w.mean(dim=1), F32, name="averaged weights")


@pytest.mark.parametrize("kind", ["additive", "dot", "projected", "pooling"])
@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_cpu_backends_agree_with_kernels_on_heads(kind, backend, monkeypatch):
    """The plain-PyTorch paths give what the kernels give with several heads (hops), a 2-D
    query, per-head weights and a fully masked row."""
    N, Tq, T, D = 3, 2, 5, 4
    lengths = torch.tensor([5, 0, 3])
    m = {"additive": fastgru.AdditiveAttention(D, D, 6, num_heads=2), "dot": fastgru.DotAttention(D, num_heads=2),
         "projected": fastgru.DotAttention(D, method="projected", num_heads=2),
         "pooling": fastgru.AttentionPooling(D, 6, num_heads=3)}[kind]
    k = torch.randn(N, T, D)
    args = (k,) if kind == "pooling" else (torch.randn(N, D), k)
    kw = {} if kind == "pooling" else {"average_attn_weights": False}
    for need_weights in (False, True):
        expected = m(*args, lengths=lengths, need_weights=need_weights, **kw)
        with monkeypatch.context() as mp:
            mp.setattr(attention_functional, "backend_for", lambda *t: backend)
            got = m(*args, lengths=lengths, need_weights=need_weights, **kw)
        assert torch.isfinite(got[0]).all()
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
        if need_weights:
            assert got[1].shape == ((N, 3, T) if kind == "pooling" else (N, 2, T))
            torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)


def test_time_first_and_query_2d_with_heads(device):
    N, Tq, T, D, H = 2, 3, 4, 6, 3
    bf = fastgru.DotAttention(D, method="general", num_heads=H).to(device)
    tf = fastgru.DotAttention(D, method="general", num_heads=H, batch_first=False).to(device)
    tf.load_state_dict(bf.state_dict())
    q, k = torch.randn(N, Tq, D, device=device), torch.randn(N, T, D, device=device)
    out, w = bf(q, k, need_weights=True, average_attn_weights=False)
    out_t, w_t = tf(q.transpose(0, 1), k.transpose(0, 1), need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out_t.transpose(0, 1), out)
    torch.testing.assert_close(w_t, w)
    out2, w2 = bf(q[:, 1], k, need_weights=True, average_attn_weights=False)
    assert out2.shape == (N, D) and w2.shape == (N, H, T)
    torch.testing.assert_close(out2, out[:, 1])
    torch.testing.assert_close(w2, w[:, :, 1])


# ------------------------------------------------------------------------------ dropout


def _dropout_case(kind, device, p):
    """A functional call with dropout_p=p and its reference: (run(need_weights, **kw), inputs, ref(keep))."""
    N, Tq, T, D, A, H = 2, 4, 16, 4, 6, 2
    x = {"query": rand(N, Tq, D, device=device), "keys": rand(N, T, D, device=device),
         "values": rand(N, T, D, device=device)}
    lengths = torch.tensor([T, 9], device=device)
    if kind == "additive":
        x.update(query_weight=rand(A, D, device=device), key_weight=rand(A, D, device=device),
                 v=rand(A, device=device), key_bias=rand(A, device=device))

    def run(need_weights=True, dropout_p=p, **kw):
        fn = AF.additive_attention if kind == "additive" else AF.dot_attention
        extra = {k: x[k] for k in ("query_weight", "key_weight", "v", "key_bias")} if kind == "additive" else {"scale": 0.5}
        return fn(x["query"], x["keys"], x["values"], **extra, num_heads=H, dropout_p=dropout_p, lengths=lengths,
                  need_weights=need_weights, average_attn_weights=False, **kw)

    def ref(keep, y):
        if kind == "additive":
            return reference.additive_attention(y["query"], y["keys"], y["values"], y["query_weight"],
                                                y["key_weight"], y["v"], None, y["key_bias"], lengths, num_heads=H,
                                                dropout_p=p, keep=keep)
        return reference.dot_attention(y["query"], y["keys"], y["values"], None, 0.5, lengths, num_heads=H,
                                       dropout_p=p, keep=keep)

    return run, x, ref, lengths


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_dropout_repeats_with_the_seed(kind, device):
    run, x, _, lengths = _dropout_case(kind, device, 0.4)
    torch.manual_seed(1)
    out1, w1 = run()
    torch.manual_seed(1)
    out2, w2 = run()
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    torch.manual_seed(2)
    out3, w3 = run()
    assert not torch.equal(w1 != 0, w3 != 0) and not torch.equal(out1, out3)
    if AF.dot_attention_path(x["query"], x["keys"], need_weights=False) == "fused" or kind == "additive":
        torch.manual_seed(1)  # the weights' output does not change the draw
        out4, _ = run(need_weights=False)
        torch.testing.assert_close(out4, out1, rtol=0, atol=0)
    # rate: the dropped share of the valid weights is near p (2 * 2 * 4 * 25 valid weights)
    valid = (torch.arange(w1.shape[-1], device=device)[None, :] < lengths[:, None])[:, None, None, :].expand_as(w1)
    dropped = ((w1 == 0) & valid).sum().item() / valid.sum().item()
    assert abs(dropped - 0.4) < 0.1, dropped
    # p = 0 is no dropout
    out0, w0 = run(dropout_p=0.0)
    torch.manual_seed(3)
    outn, wn = run(dropout_p=0)
    torch.testing.assert_close(out0, outn, rtol=0, atol=0)
    torch.testing.assert_close(w0.sum(-1), torch.ones_like(w0.sum(-1)))


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_dropout_matches_reference_with_the_kernels_draw(kind, device):
    """Output, weights and every gradient equal the reference replaying the kernels' keep mask
    (a kept weight is nonzero), through the forward and the regenerated backward."""
    p = 0.3
    run, x, ref, _ = _dropout_case(kind, device, p)
    out, w = run()
    keep = w != 0
    names = list(x)
    g = torch.randn(out.shape, device=device, dtype=torch.float64)
    gw = torch.randn(w.shape, device=device, dtype=torch.float64)
    got = [out, w, *grads_of((out * g.float()).sum() + (w * gw.float()).sum(), list(x.values()))]
    x64 = {n: t.detach().double().requires_grad_() for n, t in x.items()}
    ref_out, ref_w = ref(keep, x64)
    assert torch.equal(ref_w != 0, keep)
    ref_all = [ref_out, ref_w, *grads_of((ref_out * g).sum() + (ref_w * gw).sum(), list(x64.values()))]
    check_all(["context", "weights", *[f"d {n}" for n in names]], got, ref_all)


@pytest.mark.parametrize("kind", ["pooling", "additive", "dot", "projected"])
def test_module_dropout_only_in_training(kind, device):
    D = 4
    make = {"pooling": lambda p: fastgru.AttentionPooling(D, 6, num_heads=2, dropout=p),
            "additive": lambda p: fastgru.AdditiveAttention(D, D, 6, num_heads=2, dropout=p),
            "dot": lambda p: fastgru.DotAttention(D, num_heads=2, dropout=p),
            "projected": lambda p: fastgru.DotAttention(D, method="projected", num_heads=2, dropout=p)}[kind]
    m, plain = make(0.5).to(device), make(0.0).to(device)
    plain.load_state_dict(m.state_dict())
    k = torch.randn(2, 12, D, device=device)
    args = (k,) if kind == "pooling" else (torch.randn(2, 3, D, device=device), k)
    m.eval()
    for a, b in zip(m(*args, need_weights=True), plain(*args, need_weights=True)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    m.train()
    _, w = m(*args, need_weights=True)
    _, w_plain = plain(*args, need_weights=True)
    assert not torch.equal(w, w_plain)
    assert "dropout=0.5" in repr(m)


@pytest.mark.parametrize("kind", ["projected", "hops", "additive"])
def test_compile_fullgraph_heads_and_dropout(kind, device):
    """torch.compile(fullgraph=True) through heads, hops and dropout in training: the same
    results and gradients as eager for the same seed."""
    torch._dynamo.reset()
    m = {"projected": fastgru.DotAttention(8, 6, method="projected", num_heads=2, value_size=5, dropout=0.25),
         "hops": fastgru.AttentionPooling(6, 4, num_heads=3, dropout=0.25),
         "additive": fastgru.AdditiveAttention(8, 6, 4, num_heads=2, dropout=0.25)}[kind].to(device)
    q = torch.randn(2, 3, 8, device=device, requires_grad=True)
    keys, values = torch.randn(2, 4, 6, device=device), torch.randn(2, 4, 5, device=device)
    args = {"projected": (q, keys, values), "hops": (keys.requires_grad_(),), "additive": (q, keys)}[kind]
    lengths = torch.tensor([4, 2], device=device)

    def run(module):
        torch.manual_seed(5)
        out, w = module(*args, lengths=lengths, need_weights=True)
        return [out, w, *grads_of(out.square().sum() + (w * torch.arange(4, device=device)).sum(),
                                  [args[0], *m.parameters()])]

    for a, b in zip(run(torch.compile(m, fullgraph=True, backend="aot_eager")), run(m)):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------ paths and checks


def test_dot_attention_path(monkeypatch):
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    expected = {("triton", False): "sdpa", ("triton", True): "fused", ("interpret", False): "fused",
                ("interpret", True): "fused", ("torch", False): "sdpa", ("torch", True): "reference",
                ("reference", False): "reference", ("reference", True): "reference"}
    for (backend, need_weights), path in expected.items():
        with monkeypatch.context() as mp:
            mp.setattr(attention_functional, "backend_for", lambda *t: backend)
            assert AF.dot_attention_path(q, k, need_weights=need_weights) == path, (backend, need_weights)


def test_sdpa_path_matches_reference(monkeypatch):
    """The SDPA path (heads, lengths with an empty row) against the reference; CPU tensors."""
    N, Tq, T, D, H = 3, 2, 5, 6, 3
    q, k, v = torch.randn(N, Tq, D), torch.randn(N, T, D), torch.randn(N, T, D)
    lengths = torch.tensor([5, 0, 2])
    with monkeypatch.context() as mp:
        mp.setattr(attention_functional, "backend_for", lambda *t: "torch")
        out, _ = AF.dot_attention(q, k, v, scale=0.4, num_heads=H, lengths=lengths)
    ref, _ = reference.dot_attention(q.double(), k.double(), v.double(), None, 0.4, lengths, num_heads=H)
    check_close(out, ref, F32)
    assert torch.all(out[1] == 0)


@pytest.fixture
def no_kernel(monkeypatch):
    def launch(*args, **kwargs):
        raise AssertionError("a kernel ran before the inputs were checked")

    monkeypatch.setattr(AA, "_launch", launch)


def _call(kind, **kw):
    N, Tq, T, D, A = 2, 3, 5, 4, 6
    q, k, v = torch.randn(N, Tq, D), torch.randn(N, T, D), torch.randn(N, T, kw.pop("dv", D))
    if kind == "additive":
        return AF.additive_attention(q, k, v, query_weight=torch.randn(A, D), key_weight=torch.randn(A, D),
                                     v=torch.randn(A), **kw)
    return AF.dot_attention(q, k, v, **kw)


BAD_CALLS = [
    ("additive", dict(num_heads=4), ValueError, "num_heads=4 must divide attention_size (6)"),
    ("additive", dict(num_heads=2, dv=5), ValueError, "num_heads=2 must divide the value size (5)"),
    ("additive", dict(num_heads=0), ValueError, "num_heads must be a positive int, got 0"),
    ("additive", dict(num_heads=2.0), TypeError, "num_heads must be a positive int, got float"),
    ("additive", dict(dropout_p=1.0), ValueError, "dropout_p must lie in [0, 1), got 1.0"),
    ("additive", dict(dropout_p=-0.1), ValueError, "dropout_p must lie in [0, 1)"),
    ("dot", dict(num_heads=3), ValueError, "num_heads=3 must divide the key size (4)"),
    ("dot", dict(num_heads=2, dv=3), ValueError, "num_heads=2 must divide the value size (3)"),
    ("dot", dict(num_heads=True), TypeError, "num_heads must be a positive int"),
    ("dot", dict(dropout_p="0.1"), TypeError, "dropout_p must be a float"),
]


@pytest.mark.parametrize("kind, kw, error, message", [pytest.param(*b, id=f"{b[0]}-{i}") for i, b in enumerate(BAD_CALLS)])
def test_bad_head_and_dropout_arguments(kind, kw, error, message, no_kernel):
    with pytest.raises(error, match=_re(message)):
        _call(kind, **kw)


@pytest.mark.parametrize(
    "context, error, message",
    [
        pytest.param(torch.randn(2, 3, 6), ValueError, "context must have shape (6,) or (hops, 6)", id="3d"),
        pytest.param(torch.randn(2, 5), ValueError, "context must have shape (6,) or (hops, 6), got (2, 5)", id="size"),
        pytest.param(torch.randn(0, 6), ValueError, "context must have shape", id="no-hops"),
        pytest.param([1.0] * 6, TypeError, "context must be a torch.Tensor", id="list"),
    ],
)
def test_bad_pooling_context(context, error, message, no_kernel):
    with pytest.raises(error, match=_re(message)):
        AF.attention_pooling(torch.randn(2, 5, 4), weight=torch.randn(6, 4), bias=None, context=context)


def test_bad_penalty_weights():
    with pytest.raises(ValueError, match=_re("weights must have shape (N, hops, T)")):
        AF.attention_penalty(torch.rand(2, 5))
    with pytest.raises(TypeError, match="weights must be a torch.Tensor"):
        AF.attention_penalty([[0.5, 0.5]])


def test_module_construction_errors():
    with pytest.raises(ValueError, match=_re("num_heads=4 must divide attention_size (6)")):
        fastgru.AdditiveAttention(3, 3, 6, num_heads=4)
    with pytest.raises(ValueError, match=_re("num_heads=3 must divide query_size (8)")):
        fastgru.DotAttention(8, 6, method="projected", num_heads=3)
    with pytest.raises(ValueError, match=_re("num_heads=3 must divide key_size (8)")):
        fastgru.DotAttention(8, num_heads=3)
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        fastgru.AttentionPooling(4, 4, num_heads=0)
    with pytest.raises(ValueError, match=_re("dropout must be a float in [0, 1)")):
        fastgru.DotAttention(8, dropout=1.0)
    with pytest.raises(ValueError, match="'dot', 'general' or 'projected'"):
        fastgru.DotAttention(8, method="additive")


def test_projected_checks_features_before_projecting(no_kernel):
    m = fastgru.DotAttention(8, 6, method="projected", num_heads=2, value_size=5)
    with pytest.raises(ValueError, match="values has 6 features, expected 5"):
        m(torch.randn(2, 3, 8), torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="query has 7 features, expected 8"):
        m(torch.randn(2, 3, 7), torch.randn(2, 4, 6), torch.randn(2, 4, 5))


def _re(message):
    import re

    return re.escape(message)
