"""The GRU providers of a case (time-major input (T, B, I), h0 (L * D, B, H)): fastgru.GRU,
nn.GRU (cuDNN on CUDA) and torch.compile of the reference loop, all from one nn.GRU's weights;
the ground truth is fastgru.reference.gru in float64. A reset_after=False case (the original
formulation, which nn.GRU lacks) has the reference loop run eagerly (eager_ref) instead of nn.GRU.
The inputs, the timed step, the checked results and the module provider are written for any
recurrent module (recurrent_*): the LSTM's providers (lstm_providers.py) use them as they are.
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


def recurrent_inputs(case: Case, device, copies: int, make_src, state_sizes=None, out_size=None):
    """(src, lengths, sets) of a recurrent case (GRU or LSTM): the torch module ``make_src()``
    (built under the case's seed, so every run of the case gets the same weights) in the case's
    dtype on ``device``, per-row lengths for a packed case, and per input copy (x, state, g):
    x (T, B, I), the initial state -- one tensor (L * D, B, n) per size in ``state_sizes``
    (default (H,)), a tuple where there are several (the LSTM's (h0, c0)) -- and the output's
    cotangent g (T, B, D * out_size) (default H), zero at padded positions."""
    s, dtype = case.shape, case.torch_dtype
    D = 2 if s["bidirectional"] else 1
    state_sizes = (s["H"],) if state_sizes is None else tuple(state_sizes)
    out_size = s["H"] if out_size is None else out_size
    gen = torch.Generator().manual_seed(case.seed)
    with torch.random.fork_rng(devices=[]):  # the same weights on every run of this case
        torch.manual_seed(case.seed)
        src = make_src()
    src = src.to(device=device, dtype=dtype)
    lengths = None
    if s["packed"]:
        lengths = torch.randint(max(1, s["T"] // 4), s["T"] + 1, (s["B"],), generator=gen)
        lengths[0] = s["T"]  # the padded length is T
    sets = []
    for _ in range(copies):
        x = torch.randn(s["T"], s["B"], s["I"], generator=gen).to(device, dtype)
        states = tuple((0.5 * torch.randn(s["layers"] * D, s["B"], n, generator=gen)).to(device, dtype)
                       for n in state_sizes)
        g = torch.randn(s["T"], s["B"], D * out_size, generator=gen).to(device, dtype)
        if lengths is not None:  # padded positions carry no gradient
            valid = torch.arange(s["T"]).unsqueeze(1) < lengths.unsqueeze(0)
            g = g * valid.unsqueeze(-1).to(device, dtype)
        sets.append((x, states[0] if len(states) == 1 else states, g))
    return src, lengths, sets


def _gru_inputs(case: Case, device, copies: int):
    s = case.shape
    return recurrent_inputs(case, device, copies,
                            lambda: nn.GRU(s["I"], s["H"], s["layers"], bidirectional=s["bidirectional"]))


def _pack(x, lengths):
    return pack_padded_sequence(x, lengths, enforce_sorted=False)


def recurrent_step(mod, params, x, h0, g, lengths, training):
    """The timed closure: forward under no_grad, or forward + full backward (inputs and weights).

    ``mod(input, h0)`` runs the recurrent module (GRU, or LSTM with h0 = (h0, c0)) whose
    parameters are ``params``.
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


def recurrent_results(fn, named, x, h0, g, pack_lengths, training) -> Results:
    """Output, h_n (an LSTM's c_n too) and (training) every gradient, in padded form, for the check.

    ``fn(input, h0)`` runs the GRU or LSTM whose parameters are ``named`` (name, tensor) pairs;
    with ``pack_lengths`` the input is packed first and the output padded back.
    """
    x = x.detach().requires_grad_(training)
    with torch.set_grad_enabled(training):
        out, h_n = fn(_pack(x, pack_lengths) if pack_lengths is not None else x, h0)
        if isinstance(out, PackedSequence):
            out = pad_packed_sequence(out, total_length=x.shape[0])[0]
        final = h_n if isinstance(h_n, tuple) else (h_n,)  # an LSTM returns (h_n, c_n)
        res = {"output": out, **dict(zip(("h_n", "c_n"), final))}
        if training:
            grads = torch.autograd.grad(out, [x] + [p for _, p in named], g, allow_unused=True)
            res["grad_x"] = grads[0]
            res.update({f"grad_{n}": gr for (n, _), gr in zip(named, grads[1:]) if gr is not None})
    return {k: v.detach() for k, v in res.items()}


def recurrent_provider(make_module, sets, lengths, training, backend=None):
    """A provider (() -> Prepared) running the module ``make_module()`` builds on every input
    copy of ``sets`` (recurrent_inputs), packed with ``lengths`` where given."""
    def prepare():
        mod = make_module()
        calls = [recurrent_step(mod, list(mod.parameters()), x, h0, g, lengths, training) for x, h0, g in sets]
        named = list(mod.named_parameters())
        return Prepared(calls, lambda: recurrent_results(mod, named, *sets[0], lengths, training), backend=backend)
    return prepare


def gru_setup(case: Case, device, copies: int = 1) -> Setup:
    s, training = case.shape, case.mode == "training"
    reset_after = s.get("reset_after", True)
    src, lengths, sets = _gru_inputs(case, device, copies)
    D = 2 if s["bidirectional"] else 1

    def module_provider(make_module, backend=None):
        return recurrent_provider(make_module, sets, lengths, training, backend)

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
        calls = [recurrent_step(fn, [p for _, p in named], x, h0, g, None, training) for x, h0, g in sets]
        # The first call compiles (forward, and backward when training); its time is kept apart.
        return compiled_prepared(Prepared(calls, lambda: recurrent_results(fn, named, *sets[0], None, training)))

    def reference_results() -> Results:
        ref = _ReferenceGRU(src, reset_after).to(torch.float64)
        x, h0, g = (t.double() for t in sets[0])

        def fn(inp, h):
            return reference.gru(inp, h, ref.weights(), ref.num_layers, ref.bidirectional, lengths=lengths,
                                 reset_after=reset_after)
        return recurrent_results(fn, list(ref.named_parameters()), x, h0, g, None, training)

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
