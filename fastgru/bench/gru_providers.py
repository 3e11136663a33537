"""The GRU providers of a case (time-major input (T, B, I), h0 (L * D, B, H)): fastgru.GRU,
nn.GRU (cuDNN on CUDA) and torch.compile of the reference loop, all from one nn.GRU's weights;
the ground truth is fastgru.reference.gru in float64. A reset_after=False case (the original
formulation, which nn.GRU lacks) has the reference loop run eagerly (eager_ref) instead of nn.GRU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import reference
from . import flops
from .cases import Case
from .providers import Prepared, Results, Setup, Unavailable, backend_name, compile_cold, compiled_prepared


def _fastgru():
    import fastgru

    return fastgru


class _ReferenceGRU(nn.Module):
    """fastgru.reference.gru with nn.GRU's parameter names (the thing torch.compile compiles)."""

    def __init__(self, src: nn.GRU, reset_after: bool = True):
        super().__init__()
        self.num_layers, self.bidirectional, self.reset_after = src.num_layers, src.bidirectional, reset_after
        self.names = [n for n, _ in src.named_parameters()]
        for n, p in src.named_parameters():
            self.register_parameter(n, nn.Parameter(p.detach().clone()))

    def weights(self):
        D = 2 if self.bidirectional else 1
        out = []
        for k in range(self.num_layers * D):
            sfx = f"_l{k // D}" + ("_reverse" if k % D else "")
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            out.append(tuple(getattr(self, f"{w}{sfx}", None) for w in names))
        return out

    def forward(self, x, h0):
        """Full-length sequences: the reference's cell (reference.gru_cell) in a plain time loop.

        reference.gru handles per-row lengths with boolean indexing, which breaks a compiled graph
        at every step; with every row at full length the loop below is the same math in one graph.
        """
        D = 2 if self.bidirectional else 1
        layer_in, h_n = x, []
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                w = self.weights()[layer * D + d]
                h, steps = h0[layer * D + d], [None] * x.shape[0]
                for t in (reversed(range(x.shape[0])) if d else range(x.shape[0])):
                    h = reference.gru_cell(layer_in[t], h, *w, reset_after=self.reset_after)
                    steps[t] = h
                outs.append(torch.stack(steps))
                h_n.append(h)
            layer_in = torch.cat(outs, dim=-1) if D == 2 else outs[0]
        return layer_in, torch.stack(h_n)


def _gru_inputs(case: Case, device, copies: int):
    s, dtype = case.shape, case.torch_dtype
    D = 2 if s["bidirectional"] else 1
    gen = torch.Generator().manual_seed(case.seed)
    with torch.random.fork_rng(devices=[]):  # the same weights on every run of this case
        torch.manual_seed(case.seed)
        src = nn.GRU(s["I"], s["H"], s["layers"], bidirectional=s["bidirectional"])
    src = src.to(device=device, dtype=dtype)
    lengths = None
    if s["packed"]:
        lengths = torch.randint(max(1, s["T"] // 4), s["T"] + 1, (s["B"],), generator=gen)
        lengths[0] = s["T"]  # the padded length is T
    sets = []
    for _ in range(copies):
        x = torch.randn(s["T"], s["B"], s["I"], generator=gen).to(device, dtype)
        h0 = (0.5 * torch.randn(s["layers"] * D, s["B"], s["H"], generator=gen)).to(device, dtype)
        g = torch.randn(s["T"], s["B"], D * s["H"], generator=gen).to(device, dtype)
        if lengths is not None:  # padded positions carry no gradient
            valid = torch.arange(s["T"]).unsqueeze(1) < lengths.unsqueeze(0)
            g = g * valid.unsqueeze(-1).to(device, dtype)
        sets.append((x, h0, g))
    return src, lengths, sets


def _pack(x, lengths):
    return pack_padded_sequence(x, lengths, enforce_sorted=False)


def _gru_step(mod, params, x, h0, g, lengths, training):
    """The timed closure: forward under no_grad, or forward + full backward (inputs and weights).

    ``mod(input, h0)`` runs the GRU whose parameters are ``params``.
    """
    if lengths is not None:
        packed = _pack(x, lengths)
        data = packed.data.detach().requires_grad_(training)
        inp = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        g_out = _pack(g, lengths).data
        leaf = data
    else:
        leaf = inp = x.detach().requires_grad_(training)
        g_out = g
    if not training:
        def step():
            with torch.no_grad():
                return mod(inp, h0)
        return step

    def step():
        out, _ = mod(inp, h0)
        out = out.data if isinstance(out, PackedSequence) else out
        return torch.autograd.grad(out, [leaf] + params, g_out)
    return step


def _gru_results(fn, named, x, h0, g, pack_lengths, training) -> Results:
    """Output, h_n and (training) every gradient, in padded form, for the check.

    ``fn(input, h0)`` runs the GRU whose parameters are ``named`` (name, tensor) pairs; with
    ``pack_lengths`` the input is packed first and the output padded back.
    """
    x = x.detach().requires_grad_(training)
    with torch.set_grad_enabled(training):
        out, h_n = fn(_pack(x, pack_lengths) if pack_lengths is not None else x, h0)
        if isinstance(out, PackedSequence):
            out = pad_packed_sequence(out, total_length=x.shape[0])[0]
        res = {"output": out, "h_n": h_n}
        if training:
            grads = torch.autograd.grad(out, [x] + [p for _, p in named], g, allow_unused=True)
            res["grad_x"] = grads[0]
            res.update({f"grad_{n}": gr for (n, _), gr in zip(named, grads[1:]) if gr is not None})
    return {k: v.detach() for k, v in res.items()}


def gru_setup(case: Case, device, copies: int = 1) -> Setup:
    s, training = case.shape, case.mode == "training"
    reset_after = s.get("reset_after", True)
    src, lengths, sets = _gru_inputs(case, device, copies)
    D = 2 if s["bidirectional"] else 1

    def module_provider(make_module, backend=None):
        def prepare():
            mod = make_module()
            calls = [_gru_step(mod, list(mod.parameters()), x, h0, g, lengths, training) for x, h0, g in sets]
            named = list(mod.named_parameters())
            return Prepared(calls, lambda: _gru_results(mod, named, *sets[0], lengths, training), backend=backend)
        return prepare

    def make_fastgru():
        fastgru = _fastgru()
        if not hasattr(fastgru, "GRU"):
            raise Unavailable("fastgru.GRU is not available in this build")
        mod = fastgru.GRU(s["I"], s["H"], s["layers"], bidirectional=s["bidirectional"],
                          device=device, dtype=case.torch_dtype, reset_after=reset_after)
        mod.load_state_dict(src.state_dict())
        return mod

    def compiled():
        ref = _ReferenceGRU(src, reset_after)
        fn = compile_cold(ref)
        named = list(ref.named_parameters())
        calls = [_gru_step(fn, [p for _, p in named], x, h0, g, None, training) for x, h0, g in sets]
        # The first call compiles (forward, and backward when training); its time is kept apart.
        return compiled_prepared(Prepared(calls, lambda: _gru_results(fn, named, *sets[0], None, training)))

    def reference_results() -> Results:
        ref = _ReferenceGRU(src, reset_after).to(torch.float64)
        x, h0, g = (t.double() for t in sets[0])

        def fn(inp, h):
            return reference.gru(inp, h, ref.weights(), ref.num_layers, ref.bidirectional, lengths=lengths,
                                 reset_after=reset_after)
        return _gru_results(fn, list(ref.named_parameters()), x, h0, g, None, training)

    providers = {
        "fastgru": module_provider(make_fastgru, backend=backend_name(device)),
        "nn.GRU": module_provider(lambda: src),
        "eager_ref": module_provider(lambda: _ReferenceGRU(src, reset_after)),
        "compiled_ref": compiled,
    }
    if lengths is not None and not reset_after:
        raise ValueError("gru_setup: the reference loop (eager_ref) takes full-length sequences only")
    tokens = int(lengths.sum()) if lengths is not None else s["T"] * s["B"]
    elem = torch.tensor([], dtype=case.torch_dtype).element_size()
    cost = flops.gru(s["T"], s["B"], s["I"], s["H"], s["layers"], s["bidirectional"], case.mode, elem, tokens)
    in_bytes = elem * (s["T"] * s["B"] * (s["I"] + D * s["H"]))
    baseline = "nn.GRU" if reset_after else "eager_ref"
    return Setup(reference_results, providers, ("fastgru",), baseline, tokens, cost, in_bytes, tf32_follows="cudnn")
