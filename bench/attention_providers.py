"""Attention providers: fastgru's fused modules vs the naive reference (in the case dtype) vs
PyTorch's own fused attention (F.scaled_dot_product_attention, nn.MultiheadAttention). Batch
first; values = keys; per-row key lengths in [T/2, T].

Ops (shape keys in brackets):
  attention_pooling              [N, T, D, A]  AttentionPooling; naive = fastgru.reference
  additive_attention             [N, Tq, T, D, A]  AdditiveAttention; naive = fastgru.reference
  dot_attention                  [N, Tq, T, D]  DotAttention("dot"), scaled by D ** -0.5 for
                                 every provider (SDPA's default); naive = fastgru.reference, + sdpa
  multihop_pooling               [N, T, D, A, hops]  AttentionPooling(num_heads=hops): one pooled
                                 vector per hop (Lin et al. 2017); naive written out below
  multihead_additive_attention   [N, Tq, T, D, A, heads]  AdditiveAttention(num_heads=heads): the
                                 heads split A and the value columns; naive written out below
  multihead_dot_attention        [N, Tq, T, D, heads]  DotAttention("projected", num_heads=heads),
                                 nn.MultiheadAttention's formulation with embed dim D and scale
                                 (D / heads) ** -0.5; naive written out below, + sdpa (the same
                                 projections around F.scaled_dot_product_attention) and
                                 nn.MultiheadAttention. fastgru's row records the path
                                 fastgru.functional.dot_attention_path reports in its backend
                                 field ("triton/sdpa": backend, then path).

The multi-head and multi-hop naive formulations are plain PyTorch here, independent of fastgru,
so they are the ground truth too. The float64 ground truth runs the naive formulation over
chunks of queries, so that checking a large additive case never materializes the whole
(N, Tq, T, A) tensor.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F

from fastgru import reference
from fastgru.bench.cases import Case
from fastgru.bench.providers import Prepared, Setup, Unavailable, backend_name

from bench import attention_flops as flops

_MODULES = {"attention_pooling": "AttentionPooling", "additive_attention": "AdditiveAttention",
            "dot_attention": "DotAttention", "multihop_pooling": "AttentionPooling",
            "multihead_additive_attention": "AdditiveAttention", "multihead_dot_attention": "DotAttention"}
POOLING = ("attention_pooling", "multihop_pooling")  # ops without a query
MULTI = ("multihop_pooling", "multihead_additive_attention", "multihead_dot_attention")  # need num_heads
# Results left out of the check: the key projection's bias adds q_i . b to every score of query i,
# which the softmax cancels, so its gradient is zero but for rounding (any relative error to the
# float64 rounding residue is meaningless).
_UNCHECKED = {"multihead_dot_attention": ("grad_k_proj.bias",)}
_CHUNK_BYTES = 512 * 2**20  # float64 reference working set per chunk of queries (CPU)
_CHUNK_BYTES_CUDA = 4 * 2**30


def _params(op, D, A, heads, gen, device, dtype):
    """The case's parameters, named as in fastgru's modules (their state_dict keys)."""
    def u(*shape, fan_in):
        b = 1.0 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=gen) * 2 * b - b).to(device, dtype)
    if op == "attention_pooling":
        return {"proj.weight": u(A, D, fan_in=D), "proj.bias": u(A, fan_in=D), "context": u(A, fan_in=A)}
    if op == "multihop_pooling":
        return {"proj.weight": u(A, D, fan_in=D), "proj.bias": u(A, fan_in=D), "context": u(heads, A, fan_in=A)}
    if op in ("additive_attention", "multihead_additive_attention"):
        return {"query_proj.weight": u(A, D, fan_in=D), "key_proj.weight": u(A, D, fan_in=D),
                "key_proj.bias": u(A, fan_in=D), "v": u(A, fan_in=A)}
    if op == "multihead_dot_attention":
        return {f"{n}.{p}": u(D, D, fan_in=D) if p == "weight" else u(D, fan_in=D)
                for n in ("q_proj", "k_proj", "v_proj", "out_proj") for p in ("weight", "bias")}
    return {}


# ------------------------------------------------------------------------------ naive formulations


def _split_heads(x, heads):
    """(N, L, heads * d) -> (N, heads, L, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x):
    """(N, heads, L, d) -> (N, L, heads * d): the heads' results side by side."""
    return x.transpose(1, 2).flatten(2)


def _masked_softmax(scores, ignore):
    """Softmax over the last dim of scores (N, ..., T); ignore (N, T) is True for padded keys
    (every row keeps at least one key here)."""
    ignore = ignore.view(ignore.shape[0], *([1] * (scores.dim() - 2)), ignore.shape[1])
    return scores.masked_fill(ignore, float("-inf")).softmax(dim=-1)


def _multihop_pooling(h, P, ignore):
    """A = softmax(U tanh(W H^T + b)) with U = context (r, A); pooled = A H: (N, r, D)."""
    scores = (torch.tanh(F.linear(h, P["proj.weight"], P["proj.bias"])) @ P["context"].t()).transpose(1, 2)
    return _masked_softmax(scores, ignore) @ h


def _multihead_additive(query, keys, P, ignore, heads):
    """Head h scores with features [h A/H, (h+1) A/H) and v's slice there, and pools value
    columns [h D/H, (h+1) D/H); materializes the (N, Tq, T, A) tensor as the single head does."""
    qp = F.linear(query, P["query_proj.weight"])  # (N, Tq, A)
    kp = F.linear(keys, P["key_proj.weight"], P["key_proj.bias"])  # (N, T, A)
    v = torch.block_diag(*P["v"].view(heads, -1, 1))  # (A, heads): column h is head h's score vector
    scores = (torch.tanh(qp[:, :, None, :] + kp[:, None, :, :]) @ v).permute(0, 3, 1, 2)  # (N, H, Tq, T)
    return _merge_heads(_masked_softmax(scores, ignore) @ _split_heads(keys, heads))


def _multihead_dot(query, keys, P, ignore, heads, scale, sdpa=False):
    """nn.MultiheadAttention's formulation: project q, k, v (with bias), split into heads,
    scaled dot-product attention per head (written out, or SDPA), merge, output projection."""
    def proj(x, name):
        return _split_heads(F.linear(x, P[f"{name}.weight"], P[f"{name}.bias"]), heads)
    q, k, v = proj(query, "q_proj"), proj(keys, "k_proj"), proj(keys, "v_proj")
    if sdpa:
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=~ignore[:, None, None, :], scale=scale)
    else:
        ctx = _masked_softmax(scale * (q @ k.transpose(-1, -2)), ignore) @ v
    return F.linear(_merge_heads(ctx), P["out_proj.weight"], P["out_proj.bias"])


def _naive(op, inp, P, lengths, ignore, heads, scale):
    """The reference formulation (what a user would write in PyTorch); returns the context."""
    if op == "attention_pooling":
        return reference.attention_pooling(inp["keys"], P["proj.weight"], P["proj.bias"], P["context"], lengths)[0]
    if op == "additive_attention":
        return reference.additive_attention(inp["query"], inp["keys"], inp["keys"], P["query_proj.weight"],
                                            P["key_proj.weight"], P["v"], None, P["key_proj.bias"], lengths)[0]
    if op == "dot_attention":
        return reference.dot_attention(inp["query"], inp["keys"], inp["keys"], None, scale, lengths)[0]
    if op == "multihop_pooling":
        return _multihop_pooling(inp["keys"], P, ignore)
    if op == "multihead_additive_attention":
        return _multihead_additive(inp["query"], inp["keys"], P, ignore, heads)
    return _multihead_dot(inp["query"], inp["keys"], P, ignore, heads, scale)


def _sdpa(op, inp, P, ignore, heads, scale):
    if op == "multihead_dot_attention":
        return _multihead_dot(inp["query"], inp["keys"], P, ignore, heads, scale, sdpa=True)
    return F.scaled_dot_product_attention(inp["query"], inp["keys"], inp["keys"], attn_mask=~ignore[:, None, :],
                                          scale=scale)


# ------------------------------------------------------------------------------ modules


def _module(op, D, A, heads, scale, device, dtype, P):
    import fastgru

    cls = getattr(fastgru, _MODULES[op], None)
    if cls is None:
        raise Unavailable(f"fastgru.{_MODULES[op]} is not available in this build")
    kw = {"device": device, "dtype": dtype}
    if op in MULTI:
        if "num_heads" not in inspect.signature(cls).parameters:
            raise Unavailable(f"fastgru.{_MODULES[op]} takes no num_heads in this build")
        kw["num_heads"] = heads
    if op in POOLING:
        mod = cls(D, A, **kw)
    elif op in ("additive_attention", "multihead_additive_attention"):
        mod = cls(D, D, A, **kw)
    elif op == "dot_attention":
        mod = cls(D, scale=scale, **kw)
    else:
        mod = cls(D, method="projected", scale=scale, **kw)
    mod.load_state_dict(P)
    return mod


def _torch_mha(D, heads, P, device, dtype):
    """nn.MultiheadAttention holding the case's q, k, v and output projections."""
    mha = torch.nn.MultiheadAttention(D, heads, batch_first=True, device=device, dtype=dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([P[f"{n}_proj.weight"] for n in "qkv"]))
        mha.in_proj_bias.copy_(torch.cat([P[f"{n}_proj.bias"] for n in "qkv"]))
        mha.out_proj.weight.copy_(P["out_proj.weight"])
        mha.out_proj.bias.copy_(P["out_proj.bias"])
    return mha


def _call(op, fn, inp, lengths):
    if op in POOLING:
        return fn(inp["keys"], lengths=lengths)
    return fn(inp["query"], inp["keys"], lengths=lengths)


def _path(inp, training):
    """Which path fastgru's dot attention takes for these inputs (None where the build cannot say)."""
    from fastgru import functional

    path_of = getattr(functional, "dot_attention_path", None)
    if path_of is None:
        return None
    return path_of(inp["query"].detach().requires_grad_(training), inp["keys"].detach().requires_grad_(training),
                   need_weights=False)


# ------------------------------------------------------------------------------ timing and results


def _step(run, inp, params, g, training):
    """The timed closure: forward under no_grad, or forward + backward to inputs and parameters."""
    leaves = [t.detach().requires_grad_(training) for t in inp.values()]
    inp = dict(zip(inp, leaves))
    if not training:
        def step():
            with torch.no_grad():
                return run(inp)
        return step
    wrt = leaves + list(params)

    def step():
        return torch.autograd.grad(run(inp), wrt, g)
    return step


def _results(run, inp, named, g, training, chunk=None, unchecked=()):
    """Context and (training) the gradients of every input and parameter (but ``unchecked``);
    queries in chunks."""
    leaves = {k: t.detach().requires_grad_(training) for k, t in inp.items()}
    names = [f"grad_{k}" for k in leaves] + [f"grad_{n}" for n, _ in named]
    wrt = list(leaves.values()) + [p for _, p in named]
    Tq = leaves["query"].shape[1] if "query" in leaves else 1
    chunk = chunk or Tq
    outs, grads = [], None
    with torch.set_grad_enabled(training):
        for a in range(0, Tq, chunk):
            part = dict(leaves)
            if "query" in part:
                part["query"] = leaves["query"][:, a:a + chunk]
            out = run(part)
            outs.append(out.detach())
            if training:
                gp = g[:, a:a + chunk] if "query" in part else g
                new = torch.autograd.grad(out, wrt, gp, allow_unused=True)
                grads = new if grads is None else [x if y is None else x + y for x, y in zip(grads, new)]
    res = {"output": torch.cat(outs, dim=1) if "query" in leaves else outs[0]}
    if training:
        res.update({n: gr.detach() for n, gr in zip(names, grads) if gr is not None and n not in unchecked})
    return res


def _inputs(op, N, Tq, T, D, hops, gen, device, dtype):
    """One copy of the inputs (keys, and a query unless pooling) and the output gradient."""
    inp = {"keys": torch.randn(N, T, D, generator=gen).to(device, dtype)}
    if op not in POOLING:
        inp = {"query": torch.randn(N, Tq, D, generator=gen).to(device, dtype), **inp}
    g_shape = {"attention_pooling": (N, D), "multihop_pooling": (N, hops, D)}.get(op, (N, Tq, D))
    return inp, torch.randn(*g_shape, generator=gen).to(device, dtype)


def _reference_chunk(op, N, T, A, heads, device):
    """Queries per chunk of the float64 reference: its score tensors stay within the budget."""
    per_key = {"additive_attention": 3 * A, "multihead_additive_attention": 3 * A,
               "multihead_dot_attention": 4 * heads}.get(op, 4)
    budget = _CHUNK_BYTES_CUDA if torch.device(device).type == "cuda" else _CHUNK_BYTES
    return max(1, budget // max(1, N * T * 8 * per_key))


def _cost(op, N, Tq, T, D, A, heads, mode, elem):
    if op in POOLING:
        return flops.attention_pooling(N, T, D, A, mode, elem, hops=heads)
    if op in ("additive_attention", "multihead_additive_attention"):
        return flops.additive_attention(N, Tq, T, D, D, A, mode=mode, elem_bytes=elem, heads=heads)
    method = "projected" if op == "multihead_dot_attention" else "dot"
    return flops.dot_attention(N, Tq, T, D, method=method, mode=mode, elem_bytes=elem, heads=heads)


def attention_setup(case: Case, device, copies: int = 1) -> Setup:
    op, s, dtype, training = case.op, case.shape, case.torch_dtype, case.mode == "training"
    N, T, D = s["N"], s["T"], s["D"]
    Tq, A, heads = s.get("Tq", 1), s.get("A", 0), s.get("heads", s.get("hops", 1))
    scale = (D // heads) ** -0.5  # the head dim's; D ** -0.5 for single-head dot attention
    gen = torch.Generator().manual_seed(case.seed)
    P = _params(op, D, A, heads, gen, device, dtype)
    lengths = torch.randint(max(1, T // 2), T + 1, (N,), generator=gen)
    lengths[0] = T
    lengths = lengths.to(device)
    ignore = torch.arange(T, device=lengths.device)[None, :] >= lengths[:, None]  # (N, T), True = padding
    sets = [_inputs(op, N, Tq, T, D, heads, gen, device, dtype) for _ in range(copies)]
    unchecked = _UNCHECKED.get(op, ())

    def prepared(run, named, backend=None):
        calls = [_step(run, inp, [p for _, p in named], g, training) for inp, g in sets]
        return Prepared(calls, lambda: _results(run, sets[0][0], named, sets[0][1], training, unchecked=unchecked),
                        backend=backend)

    def plain(fn_of_params):
        """A provider whose parameters are plain leaf tensors (the naive reference, sdpa)."""
        def prepare():
            mine = {k: v.detach().clone().requires_grad_(training) for k, v in P.items()}
            return prepared(lambda i: fn_of_params(i, mine), list(mine.items()))
        return prepare

    def fused():
        mod = _module(op, D, A, heads, scale, device, dtype, P)
        backend = backend_name(device)
        path = _path(sets[0][0], training) if op == "multihead_dot_attention" else None
        return prepared(lambda i: _call(op, mod, i, lengths)[0], list(mod.named_parameters()),
                        backend if path is None else f"{backend}/{path}")

    def torch_mha():
        mha = _torch_mha(D, heads, P, device, dtype)
        return prepared(lambda i: mha(i["query"], i["keys"], i["keys"], key_padding_mask=ignore,
                                      need_weights=False)[0], list(mha.named_parameters()))

    def reference_results():
        P64 = {k: v.detach().double().requires_grad_(training) for k, v in P.items()}
        inp, g = sets[0]
        inp = {k: v.double() for k, v in inp.items()}
        return _results(lambda i: _naive(op, i, P64, lengths, ignore, heads, scale), inp, list(P64.items()),
                        g.double(), training, _reference_chunk(op, N, T, A, heads, device), unchecked)

    providers = {"fastgru": fused, "naive_ref": plain(lambda i, p: _naive(op, i, p, lengths, ignore, heads, scale))}
    if op in ("dot_attention", "multihead_dot_attention"):
        providers["sdpa"] = plain(lambda i, p: _sdpa(op, i, p, ignore, heads, scale))
    if op == "multihead_dot_attention":
        providers["nn.MultiheadAttention"] = torch_mha
    elem = torch.tensor([], dtype=dtype).element_size()
    cost = _cost(op, N, Tq, T, D, A, heads, case.mode, elem)
    in_bytes = elem * sum(t.numel() for t in sets[0][0].values())
    # The naive formulation in the same dtype is PyTorch's own result: fastgru may be at most 2x worse.
    return Setup(reference_results, providers, ("fastgru",), "naive_ref", N * T, cost, in_bytes,
                 tf32_follows="matmul")
