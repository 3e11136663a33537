"""Fused attention kernels (through the public functions) vs the float64 reference: forward,
weights and every gradient; masks; fully masked rows; gradcheck; low precision; GPU sizes."""

import pytest
import torch

import fastgru.functional as AF
from fastgru import reference
from fastgru.backend import uses_kernels
from fastgru.testing import check_close, tolerance

VARIANTS = ("additive", "pooling", "dot", "general")
DQ, DK, A, D = 5, 19, 19, 37  # odd; A and D span two interpreter blocks (16 and 32)


def make_inputs(variant, N, Tq, T, dtype, device, dims=(DQ, DK, A, D)):
    """The differentiable inputs of one variant, as a dict of leaf tensors."""
    dq, dk, a, d = dims
    r = lambda *s, scale=1.0: (torch.randn(*s, dtype=torch.float64, device=device) * scale).to(dtype).requires_grad_()  # noqa: E731
    if variant == "pooling":
        return {"h": r(N, T, d), "weight": r(a, d, scale=d ** -0.5), "bias": r(a, scale=0.5), "context": r(a)}
    x = {"query": r(N, Tq, dq), "keys": r(N, T, dk), "values": r(N, T, d)}
    if variant == "additive":
        x.update(query_weight=r(a, dq, scale=dq ** -0.5), key_weight=r(a, dk, scale=dk ** -0.5),
                 key_bias=r(a, scale=0.5), v=r(a))
    elif variant == "dot":
        x["query"] = r(N, Tq, dk)
    else:
        x["weight"] = r(dq, dk, scale=dq ** -0.5)
    return x


def make_masks(kind, N, T, device):
    """(lengths, key_padding_mask); row 0 is always fully masked when masking."""
    lengths = mask = None
    if kind == "lengths":
        lengths = torch.randint(0, T + 1, (N,), device=device)
        lengths[0] = 0
    elif kind == "kpm":
        mask = torch.rand(N, T, device=device) < 0.4
        mask[0] = True
    elif kind == "both":  # at least two keys per row: with one, the fp32 score gradients are pure
        # rounding noise (PyTorch's own is exactly zero there, by cancellation), a useless comparison
        lengths = torch.randint(2, T + 1, (N,), device=device)
        mask = torch.rand(N, T, device=device) < 0.3
        mask[:, :2] = False
    return lengths, mask


def fused(variant, x, lengths, mask, need_weights=True):
    kw = dict(lengths=lengths, key_padding_mask=mask, need_weights=need_weights)
    if variant == "pooling":
        return AF.attention_pooling(x["h"], weight=x["weight"], bias=x["bias"], context=x["context"], **kw)
    if variant == "additive":
        return AF.additive_attention(x["query"], x["keys"], x["values"], query_weight=x["query_weight"],
                                     key_weight=x["key_weight"], v=x["v"], key_bias=x["key_bias"], **kw)
    return AF.dot_attention(x["query"], x["keys"], x["values"], weight=x.get("weight"), scale=0.7, **kw)


def naive(variant, x, lengths, mask):
    if variant == "pooling":
        return reference.attention_pooling(x["h"], x["weight"], x["bias"], x["context"], lengths, mask)
    if variant == "additive":
        return reference.additive_attention(x["query"], x["keys"], x["values"], x["query_weight"], x["key_weight"],
                                            x["v"], None, x["key_bias"], lengths, mask)
    return reference.dot_attention(x["query"], x["keys"], x["values"], x.get("weight"), 0.7, lengths, mask)


def outputs_and_grads(fn, x, g_out, g_w):
    out, weights = fn()
    loss = (out * g_out).sum() + (weights * g_w).sum()
    grads = torch.autograd.grad(loss, list(x.values()))
    return out, weights, dict(zip(x.keys(), grads))


def compare(variant, x, lengths, mask, dtype, baseline=False):
    """Check fused outputs and gradients against the float64 reference (and, for low
    precision, against PyTorch's own reference computed in ``dtype``)."""
    x64 = {k: v.detach().double().requires_grad_() for k, v in x.items()}
    probe_out, probe_w = naive(variant, x64, lengths, mask)
    g_out, g_w = torch.randn_like(probe_out), torch.randn_like(probe_w)
    out, w, grads = outputs_and_grads(lambda: fused(variant, x, lengths, mask), x, g_out.to(dtype), g_w.to(dtype))
    ref_out, ref_w, ref_grads = outputs_and_grads(lambda: naive(variant, x64, lengths, mask), x64, g_out, g_w)
    base = {}
    if baseline:
        xb = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
        b_out, b_w, b_grads = outputs_and_grads(lambda: naive(variant, xb, lengths, mask), xb, g_out.to(dtype), g_w.to(dtype))
        base = {"@context": b_out, "@weights": b_w, **b_grads}
    check_close(out, ref_out, dtype, baseline=base.get("@context"), name="context")
    check_close(w, ref_w, dtype, baseline=base.get("@weights"), name="weights")
    # With one valid key per row the score gradients are exactly zero in exact arithmetic and
    # rounding noise in floating point: measure those against the scale of the other gradients.
    scale = max(torch.linalg.vector_norm(g.double()).item() for g in ref_grads.values())
    for k in x:
        assert grads[k].dtype == x[k].dtype, k
        if torch.count_nonzero(ref_grads[k]) == 0:
            noise = torch.linalg.vector_norm(grads[k].double()).item()
            assert noise <= tolerance(dtype) * scale, f"d{k}: {noise:.3e} where the reference is exactly zero"
            continue
        check_close(grads[k], ref_grads[k], dtype, baseline=base.get(k), name=f"d{k}")
    return out, w, grads


CASES = [
    pytest.param(variant, Tq, T, m, id=f"{variant}-Tq{Tq}-T{T}-{m}")
    for variant in VARIANTS
    for Tq in ((1,) if variant == "pooling" else (1, 5))
    for T in (1, 7, 33)
    for m in ("none", "lengths", "kpm")
    if variant in ("additive", "dot") or T == 33 or m == "none"
]


@pytest.mark.parametrize("variant, Tq, T, masking", CASES)
def test_fp32_matches_fp64_reference(variant, Tq, T, masking, device):
    N = 3
    x = make_inputs(variant, N, Tq, T, torch.float32, device)
    lengths, mask = make_masks(masking, N, T, device)
    assert uses_kernels(*x.values()), "the tests must run the kernels (interpret or triton backend)"
    out, w, grads = compare(variant, x, lengths, mask, torch.float32)
    if masking != "none":  # row 0 is fully masked: zero context and weights, zero gradients
        assert torch.all(out[0] == 0) and torch.all(w[0] == 0)
        assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_lengths_and_mask_together(variant, device):
    x = make_inputs(variant, 2, 1 if variant == "pooling" else 3, 9, torch.float32, device)
    lengths, mask = make_masks("both", 2, 9, device)
    compare(variant, x, lengths, mask, torch.float32)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("masking", ["lengths", "kpm"])
def test_fully_masked_batch_gives_zeros_not_nan(variant, masking, device):
    N, Tq, T = 2, 1 if variant == "pooling" else 3, 5
    x = make_inputs(variant, N, Tq, T, torch.float32, device)
    lengths = torch.zeros(N, dtype=torch.long, device=device) if masking == "lengths" else None
    mask = torch.ones(N, T, dtype=torch.bool, device=device) if masking == "kpm" else None
    out, w = fused(variant, x, lengths, mask)
    assert torch.all(out == 0) and torch.all(w == 0)
    grads = torch.autograd.grad(out.sum() + w.sum(), list(x.values()), allow_unused=True)
    for name, g in zip(x, grads):
        assert g is not None and torch.isfinite(g).all(), name
    values = x["h"] if variant == "pooling" else x["values"]
    assert torch.all(grads[list(x).index("h" if variant == "pooling" else "values")] == 0), values.shape


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("masking", ["none", "lengths"])
def test_gradcheck_fp64(variant, masking, device):
    N, Tq, T = 2, 1 if variant == "pooling" else 2, 5
    x = make_inputs(variant, N, Tq, T, torch.float64, device, dims=(3, 4, 3, 3))
    lengths = torch.tensor([3, 5], device=device) if masking == "lengths" else None
    names = list(x)

    def fn(*tensors):
        return fused(variant, dict(zip(names, tensors)), lengths, None)

    assert torch.autograd.gradcheck(fn, tuple(x.values()), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("variant", ["additive", "dot", "pooling"])
def test_low_precision_within_contract_and_pytorch_error(variant, dtype, device):
    N, Tq, T = 3, 1 if variant == "pooling" else 5, 33
    x = make_inputs(variant, N, Tq, T, dtype, device)
    lengths, mask = make_masks("lengths", N, T, device)
    out, w, _ = compare(variant, x, lengths, mask, dtype, baseline=True)
    assert out.dtype == dtype and w.dtype == dtype


def test_weights_only_when_asked(device):
    x = make_inputs("additive", 2, 3, 7, torch.float32, device)
    out, w = fused("additive", x, None, None, need_weights=False)
    assert w is None and out.shape == (2, 3, D)
    out_w, w = fused("additive", x, None, None, need_weights=True)
    assert torch.equal(out, out_w) and w.shape == (2, 3, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, device=device))


# ------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("masking", ["none", "lengths", "kpm"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_realistic_sizes(variant, masking, dtype):
    N, T = 4, 512
    Tq = 1 if variant == "pooling" else 512
    x = make_inputs(variant, N, Tq, T, dtype, "cuda", dims=(384, 512, 256, 512))
    lengths, mask = make_masks(masking, N, T, "cuda")
    compare(variant, x, lengths, mask, dtype, baseline=dtype != torch.float32)


@pytest.mark.gpu
def test_gpu_deterministic():
    x = make_inputs("additive", 4, 64, 300, torch.float32, "cuda", dims=(64, 64, 64, 96))
    lengths, _ = make_masks("lengths", 4, 300, "cuda")
    g = torch.randn(4, 64, 96, device="cuda")
    runs = [torch.autograd.grad((fused("additive", x, lengths, None)[0] * g).sum(), list(x.values())) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.gpu
def test_gpu_fused_additive_memory_far_below_naive():
    N, Tq, T, dims = 4, 512, 512, (256, 256, 256, 256)
    x = make_inputs("additive", N, Tq, T, torch.float32, "cuda", dims=dims)

    def peak(fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out, _ = fn()
        torch.autograd.grad(out.sum(), list(x.values()))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    fused_peak = peak(lambda: fused("additive", x, None, None, need_weights=False))
    naive_peak = peak(lambda: naive("additive", x, None, None))
    four_d = N * Tq * T * dims[2] * 4  # one (N, Tq, T, A) fp32 tensor: 1 GiB here
    assert fused_peak < four_d / 16, (fused_peak, four_d)
    assert fused_peak * 10 < naive_peak, (fused_peak, naive_peak)


# ------------------------------------------------------------------------------ heads and dropout (the op)


def _op_case(score, p_drop, gen, N=2, H=3, Tq=5, T=7, F=6, D=4):
    """attention_op on B = N * H rows (per-head additive score vectors, per-batch lengths) in
    float64, and its plain twin given the keep mask the kernels drew (read off the returned
    weights: a kept weight is nonzero)."""
    from fastgru.ops.attention import attention_op

    B = N * H
    r = lambda *s: torch.randn(*s, dtype=torch.float64, generator=gen).requires_grad_()  # noqa: E731
    q, k, v = r(B, Tq, F), r(B, T, F), r(B, T, D)
    w = r(H, F) if score == "additive" else None
    lengths = torch.tensor([T, T - 3])
    out, weights = attention_op(score, q, k, w, v, lengths, None, 0.5, True, dropout_p=p_drop, heads=H)
    if score == "additive":
        s = torch.einsum("hf,nhqtf->nhqt", w, torch.tanh(q.view(N, H, Tq, 1, F) + k.view(N, H, 1, T, F)))
        s = s.reshape(B, Tq, T)
    else:
        s = 0.5 * q @ k.transpose(1, 2)
    ignore = (torch.arange(T)[None] >= lengths[:, None]).repeat_interleave(H, 0)[:, None]
    keep = (weights != 0).double()
    ref_w = torch.softmax(s.masked_fill(ignore, float("-inf")), -1) * keep / (1 - p_drop)
    leaves = [x for x in (q, k, w, v) if x is not None]
    return (out, weights), (ref_w @ v, ref_w), leaves, keep[~ignore.expand_as(keep)]


@pytest.mark.parametrize("score", ["additive", "dot"])
@pytest.mark.parametrize("p_drop", [0.0, 0.3])
def test_heads_and_dropout_match_the_formula_with_the_kernels_mask(score, p_drop):
    gen = torch.Generator().manual_seed(5)
    (out, w), (ref_out, ref_w), leaves, kept = _op_case(score, p_drop, gen)
    check_close(out, ref_out, torch.float64, name="context")
    check_close(w, ref_w, torch.float64, name="weights")
    g_out, g_w = torch.randn(out.shape, dtype=torch.float64, generator=gen), torch.randn(w.shape, dtype=torch.float64, generator=gen)
    grads = torch.autograd.grad((out * g_out).sum() + (w * g_w).sum(), leaves)
    ref_grads = torch.autograd.grad((ref_out * g_out).sum() + (ref_w * g_w).sum(), leaves)
    for name, a, b in zip("qkwv" if score == "additive" else "qkv", grads, ref_grads):
        check_close(a, b, torch.float64, name=f"d{name}")
    if p_drop:  # 165 valid weights: the kept share is within 4 sigma of 1 - p
        assert abs(kept.mean().item() - (1 - p_drop)) < 4 * (p_drop * (1 - p_drop) / kept.numel()) ** 0.5
    else:
        assert torch.all(kept == 1)


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_dropout_mask_follows_torch_manual_seed(score):
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(_op_case(score, 0.3, torch.Generator().manual_seed(5))[0][0])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
