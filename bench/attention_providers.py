"""Attention providers: fastgru's fused modules vs the naive reference (fastgru.reference, in the
case dtype) vs F.scaled_dot_product_attention (dot only). Batch first; values = keys; per-row key
lengths in [T/2, T]; dot attention is scaled by D ** -0.5 for every provider (SDPA's default).

The float64 ground truth runs fastgru.reference over chunks of queries, so that checking a large
additive case never materializes the whole (N, Tq, T, A) tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastgru import reference
from fastgru.bench.cases import Case
from fastgru.bench.providers import Prepared, Setup, Unavailable, backend_name

from bench import attention_flops as flops

_MODULES = {"attention_pooling": "AttentionPooling", "additive_attention": "AdditiveAttention",
            "dot_attention": "DotAttention"}
_CHUNK_BYTES = 512 * 2**20  # float64 reference working set per chunk of queries (CPU)
_CHUNK_BYTES_CUDA = 4 * 2**30


def _params(op, D, A, gen, device, dtype):
    """The case's parameters, named as in fastgru's modules (their state_dict keys)."""
    def u(*shape, fan_in):
        b = 1.0 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=gen) * 2 * b - b).to(device, dtype)
    if op == "attention_pooling":
        return {"proj.weight": u(A, D, fan_in=D), "proj.bias": u(A, fan_in=D), "context": u(A, fan_in=A)}
    if op == "additive_attention":
        return {"query_proj.weight": u(A, D, fan_in=D), "key_proj.weight": u(A, D, fan_in=D),
                "key_proj.bias": u(A, fan_in=D), "v": u(A, fan_in=A)}
    return {}


def _naive(op, inp, P, lengths, scale):
    """The reference formulation (what a user would write in PyTorch); returns the context."""
    if op == "attention_pooling":
        return reference.attention_pooling(inp["keys"], P["proj.weight"], P["proj.bias"], P["context"], lengths)[0]
    if op == "additive_attention":
        return reference.additive_attention(inp["query"], inp["keys"], inp["keys"], P["query_proj.weight"],
                                            P["key_proj.weight"], P["v"], None, P["key_proj.bias"], lengths)[0]
    return reference.dot_attention(inp["query"], inp["keys"], inp["keys"], None, scale, lengths)[0]


def _sdpa(inp, lengths, scale):
    keep = torch.arange(inp["keys"].shape[1], device=lengths.device)[None, :] < lengths[:, None]
    return F.scaled_dot_product_attention(inp["query"], inp["keys"], inp["keys"], attn_mask=keep[:, None, :],
                                          scale=scale)


def _module(op, D, A, scale, device, dtype, P):
    import fastgru

    cls = getattr(fastgru, _MODULES[op], None)
    if cls is None:
        raise Unavailable(f"fastgru.{_MODULES[op]} is not available in this build")
    if op == "attention_pooling":
        mod = cls(D, A, device=device, dtype=dtype)
    elif op == "additive_attention":
        mod = cls(D, D, A, device=device, dtype=dtype)
    else:
        mod = cls(D, scale=scale, device=device, dtype=dtype)
    mod.load_state_dict(P)
    return mod


def _call(op, fn, inp, lengths):
    if op == "attention_pooling":
        return fn(inp["keys"], lengths=lengths)
    return fn(inp["query"], inp["keys"], lengths=lengths)


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


def _results(run, inp, named, g, training, chunk=None):
    """Context and (training) the gradients of every input and parameter; queries in chunks."""
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
        res.update({n: gr.detach() for n, gr in zip(names, grads) if gr is not None})
    return res


def attention_setup(case: Case, device, copies: int = 1) -> Setup:
    op, s, dtype, training = case.op, case.shape, case.torch_dtype, case.mode == "training"
    N, T, D = s["N"], s["T"], s["D"]
    Tq, A = s.get("Tq", 1), s.get("A", 0)
    scale = D ** -0.5
    gen = torch.Generator().manual_seed(case.seed)
    P = _params(op, D, A, gen, device, dtype)
    lengths = torch.randint(max(1, T // 2), T + 1, (N,), generator=gen)
    lengths[0] = T
    lengths = lengths.to(device)
    sets = []
    for _ in range(copies):
        inp = {"keys": torch.randn(N, T, D, generator=gen).to(device, dtype)}
        if op != "attention_pooling":
            inp = {"query": torch.randn(N, Tq, D, generator=gen).to(device, dtype), **inp}
        g_shape = (N, D) if op == "attention_pooling" else (N, Tq, D)
        sets.append((inp, torch.randn(*g_shape, generator=gen).to(device, dtype)))

    def plain(fn_of_params, backend=None):
        """A provider whose parameters are plain leaf tensors (the naive reference)."""
        def prepare():
            mine = {k: v.detach().clone().requires_grad_(training) for k, v in P.items()}
            def run(i):
                return fn_of_params(i, mine)
            calls = [_step(run, inp, mine.values(), g, training) for inp, g in sets]
            return Prepared(calls, lambda: _results(run, sets[0][0], list(mine.items()), sets[0][1], training),
                            backend=backend)
        return prepare

    def fused():
        mod = _module(op, D, A, scale, device, dtype, P)
        def run(i):
            return _call(op, mod, i, lengths)[0]
        calls = [_step(run, inp, list(mod.parameters()), g, training) for inp, g in sets]
        named = list(mod.named_parameters())
        return Prepared(calls, lambda: _results(run, sets[0][0], named, sets[0][1], training),
                        backend=backend_name(device))

    def reference_results():
        P64 = {k: v.detach().double().requires_grad_(training) for k, v in P.items()}
        inp, g = sets[0]
        inp = {k: v.double() for k, v in inp.items()}
        per_query = N * T * 8 * (3 * A if op == "additive_attention" else 4)
        budget = _CHUNK_BYTES_CUDA if torch.device(device).type == "cuda" else _CHUNK_BYTES
        chunk = max(1, budget // max(1, per_query))
        return _results(lambda i: _naive(op, i, P64, lengths, scale), inp, list(P64.items()), g.double(),
                        training, chunk)

    providers = {"fastgru": fused, "naive_ref": plain(lambda i, p: _naive(op, i, p, lengths, scale))}
    if op == "dot_attention":
        providers["sdpa"] = plain(lambda i, p: _sdpa(i, lengths, scale))
    elem = torch.tensor([], dtype=dtype).element_size()
    if op == "attention_pooling":
        cost = flops.attention_pooling(N, T, D, A, case.mode, elem)
    elif op == "additive_attention":
        cost = flops.additive_attention(N, Tq, T, D, D, A, mode=case.mode, elem_bytes=elem)
    else:
        cost = flops.dot_attention(N, Tq, T, D, mode=case.mode, elem_bytes=elem)
    in_bytes = elem * sum(t.numel() for t in sets[0][0].values())
    # The naive formulation in the same dtype is PyTorch's own result: fastgru may be at most 2x worse.
    return Setup(reference_results, providers, ("fastgru",), "naive_ref", N * T, cost, in_bytes,
                 tf32_follows="matmul")
