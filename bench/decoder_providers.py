"""Attention GRU decoder providers: fastgru.AttentionGRUDecoder (additive attention, Bahdanau et
al. 2015) vs a tutorial-style decoder written here in plain PyTorch (``TutorialDecoder``, after
the PyTorch seq2seq tutorial's AttnDecoderRNN with BahdanauAttention), run eagerly (``eager_ref``)
and under torch.compile (``compiled_ref``; compile time in its own column). Every provider holds
the same weights: one set of parameters in fastgru's names (the decoder's state_dict keys),
mapped onto the tutorial's modules. The ground truth is fastgru.reference.attention_decoder
(and its decoder_step) in float64. Batch first; per-row key lengths in [Tin/2, Tin], row 0 at Tin.

Ops (shape keys in brackets; K = the encoder outputs' width, A = the attention size):
  attention_decoder        [B, Tout, Tin, I, H, K, A]  a teacher-forced training step (mode
                           "training"): forward over the Tout target positions from h0, then
                           backward from the outputs h_t and the contexts c_t (a random output
                           gradient on each) to the inputs, the keys, h0 and every parameter.
  attention_decoder_step   [B, Tin, I, H, K, A]  per-token decode latency (mode "inference"):
                           one decoding step under no_grad, x_t (B, I) and a state -> (h_t, c_t).
                           The keys are projected once per sequence beforehand (fastgru's
                           init_state; the tutorial decoder's Ua(keys) likewise), outside the timed
                           step: a step pays the query projection, the scores over the Tin keys,
                           the masked softmax, the context and the GRU step.

Results checked: the outputs and contexts (and h_n, and in training every gradient), by fastgru's
names (grad_inputs, grad_keys, grad_h0, grad_gru.weight_ih_l0, grad_key_proj.bias, grad_v, ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import fastgru
from fastgru import reference
from fastgru.bench.cases import Case
from fastgru.bench.flops import GRU_GATE_FLOPS, Cost, training_cost
from fastgru.bench.providers import Prepared, Setup, backend_name, compile_cold, compiled_prepared

from bench.attention_flops import SOFTMAX_FLOPS

OPS = ("attention_decoder", "attention_decoder_step")

# fastgru's parameter name -> the tutorial decoder's (Va.weight is v as a (1, A) row).
TUTORIAL_NAMES = {
    "gru.weight_ih_l0": "gru.weight_ih", "gru.weight_hh_l0": "gru.weight_hh",
    "gru.bias_ih_l0": "gru.bias_ih", "gru.bias_hh_l0": "gru.bias_hh",
    "query_proj.weight": "Wa.weight", "key_proj.weight": "Ua.weight", "key_proj.bias": "Ua.bias", "v": "Va.weight",
}


# ------------------------------------------------------------------------------ the baseline


class TutorialDecoder(nn.Module):
    """The tutorial's AttnDecoderRNN with Bahdanau attention, as one would write it in PyTorch:
    per step the query projection Wa h_{t-1}, the scores Va tanh(Wa h_{t-1} + Ua k_j), a masked
    softmax over the keys, the context by bmm, then a GRU step on [x_t, c_t].

    Left out: the embedding, dropout and output layer (the benchmark feeds embedded inputs and
    measures the decoder itself). Changed, to hold fastgru's parameters and to be a fair baseline:
    - one GRU step is nn.GRUCell (PyTorch's fused cell; the tutorial steps nn.GRU over a length-1
      sequence, the same math with cuDNN's per-call setup, which dynamo does not trace);
    - Wa and Va have no bias: Va's cancels in the softmax, Wa's adds to Ua's (Ua's holds both);
    - Ua k is computed once per sequence, not at every step as in the tutorial;
    - padded keys are masked (-inf before the softmax; every row keeps at least one key here).
    """

    def __init__(self, input_size, hidden_size, key_size, attention_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, attention_size, bias=False)
        self.Ua = nn.Linear(key_size, attention_size)
        self.Va = nn.Linear(attention_size, 1, bias=False)
        self.gru = nn.GRUCell(input_size + key_size, hidden_size)

    def attention(self, query, keys, projected_keys, ignore):
        """query (N, H), keys (N, Tin, K), projected_keys Ua(keys) (N, Tin, A), ignore (N, Tin)
        True for padding -> (context (N, K), weights (N, Tin))."""
        scores = self.Va(torch.tanh(self.Wa(query).unsqueeze(1) + projected_keys)).squeeze(2)
        weights = F.softmax(scores.masked_fill(ignore, float("-inf")), dim=-1)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
        return context, weights

    def forward_step(self, x, h, keys, projected_keys, ignore):
        """One decoding step: x (N, I), h (N, H) -> (h_t, c_t)."""
        context, _ = self.attention(h, keys, projected_keys, ignore)
        return self.gru(torch.cat((x, context), dim=1), h), context

    def forward(self, inputs, keys, ignore, h0):
        """Teacher forcing over inputs (N, Tout, I) -> (outputs (N, Tout, H), contexts (N, Tout, K), h_n (N, H))."""
        projected_keys = self.Ua(keys)
        h, outputs, contexts = h0, [], []
        for t in range(inputs.shape[1]):
            h, context = self.forward_step(inputs[:, t], h, keys, projected_keys, ignore)
            outputs.append(h)
            contexts.append(context)
        return torch.stack(outputs, dim=1), torch.stack(contexts, dim=1), h


def tutorial_decoder(P, device=None, dtype=None) -> TutorialDecoder:
    """A TutorialDecoder holding the parameters ``P`` (fastgru's names, see TUTORIAL_NAMES)."""
    H, A = P["query_proj.weight"].shape[1], P["v"].shape[0]
    K, I = P["key_proj.weight"].shape[1], P["gru.weight_ih_l0"].shape[1] - P["key_proj.weight"].shape[1]
    mod = TutorialDecoder(I, H, K, A).to(device=device, dtype=dtype)
    own = mod.state_dict()
    mod.load_state_dict({TUTORIAL_NAMES[n]: t.detach().reshape(own[TUTORIAL_NAMES[n]].shape) for n, t in P.items()})
    return mod


def _tutorial_named(mod):
    """The tutorial decoder's parameters under fastgru's names."""
    own = dict(mod.named_parameters())
    return [(n, own[t]) for n, t in TUTORIAL_NAMES.items()]


# ------------------------------------------------------------------------------ parameters and inputs


def _params(I, H, K, A, gen, device, dtype):
    """The case's parameters in fastgru's names, drawn as torch initializes them (nn.GRU's
    U(-1/sqrt(H), 1/sqrt(H)); nn.Linear's U(-1/sqrt(fan_in), ...); v as nn.Linear(A, 1)'s weight)."""
    def u(*shape, fan_in):
        b = 1.0 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=gen) * 2 * b - b).to(device, dtype)
    return {
        "gru.weight_ih_l0": u(3 * H, I + K, fan_in=H), "gru.weight_hh_l0": u(3 * H, H, fan_in=H),
        "gru.bias_ih_l0": u(3 * H, fan_in=H), "gru.bias_hh_l0": u(3 * H, fan_in=H),
        "query_proj.weight": u(A, H, fan_in=H), "key_proj.weight": u(A, K, fan_in=K), "key_proj.bias": u(A, fan_in=K),
        "v": u(A, fan_in=A),
    }


def _inputs(training, B, Tout, Tin, I, H, K, gen, device, dtype):
    """One copy of the inputs (teacher-forced inputs or one step's x, the keys, h0) and, in
    training, the gradients of the outputs and of the contexts."""
    x = torch.randn(B, Tout, I, generator=gen) if training else torch.randn(B, I, generator=gen)
    inp = {"inputs" if training else "x": x.to(device, dtype),
           "keys": torch.randn(B, Tin, K, generator=gen).to(device, dtype),
           "h0": (0.5 * torch.randn(B, H, generator=gen)).to(device, dtype)}
    grads = None
    if training:
        grads = (torch.randn(B, Tout, H, generator=gen).to(device, dtype),
                 torch.randn(B, Tout, K, generator=gen).to(device, dtype))
    return inp, grads


# ------------------------------------------------------------------------------ steps and results


def _train_step(run, inp, params, g):
    """The timed closure of a training step: ``run(inputs) -> (outputs, contexts, h_n)``, then the
    gradients of the inputs, keys, h0 and ``params``."""
    leaves = {k: t.detach().requires_grad_(True) for k, t in inp.items()}
    wrt = list(leaves.values()) + list(params)

    def step():
        out, ctx, _ = run(leaves)
        return torch.autograd.grad((out, ctx), wrt, g)
    return step


def _train_results(run, inp, named, g, shapes):
    """Outputs, contexts, h_n (L, N, H) and every gradient, by fastgru's names (a parameter's
    gradient in the shape ``shapes`` gives it)."""
    leaves = {k: t.detach().requires_grad_(True) for k, t in inp.items()}
    with torch.enable_grad():
        out, ctx, h_n = run(leaves)
        grads = torch.autograd.grad((out, ctx), list(leaves.values()) + [p for _, p in named], g)
    res = {"output": out, "context": ctx, "h_n": h_n.reshape(1, *h_n.shape[-2:])}
    res.update({f"grad_{k}": gr for k, gr in zip(leaves, grads)})
    res.update({f"grad_{n}": gr.reshape(shapes[n]) for (n, _), gr in zip(named, grads[len(leaves):])})
    return {k: v.detach() for k, v in res.items()}


def _decode_step(step_fn):
    """The timed closure of one decoding step: ``step_fn() -> (h_t, c_t)`` under no_grad."""
    def step():
        with torch.no_grad():
            return step_fn()
    return step


def _decode_results(step_fn):
    out, ctx = _decode_step(step_fn)()
    return {"output": out.detach(), "context": ctx.detach()}


# ------------------------------------------------------------------------------ FLOPs


def decoder_cost(op, B, Tin, I, H, K, A, Tout=1, mode="inference", elem_bytes=4) -> Cost:
    """FLOPs and bytes of the additive attention decoder, counted once under the conventions of
    fastgru.bench.flops (multiply-add 2, elementwise 1, training 3x the forward FLOPs).

    Per step and row: the query projection 2HA, the scores 4 Tin A (add, tanh, multiply-add with
    v), the softmax 5 Tin, the context 2 Tin K, the GRU step on [x, c] 2 3H (I + K + H) + 12 H.
    The teacher-forced op adds the key projection, 2 Tin K A per row, once per sequence; the
    decode step reads the keys already projected."""
    step = 2 * H * A + 4 * Tin * A + SOFTMAX_FLOPS * Tin + 2 * Tin * K + 2 * 3 * H * (I + K + H) + GRU_GATE_FLOPS * H
    params = 3 * H * (I + K + H) + 6 * H + A * (H + K + 2)
    if op == "attention_decoder_step":
        io = B * (I + H) + B * Tin * (K + A) + B * (H + K) + params  # x, h, keys and their projection; h_t, c_t
        return Cost(B * step, elem_bytes * io)
    flops = B * Tout * step + 2 * B * Tin * K * A
    # inputs, keys, h0 and h_n; outputs and contexts; parameters
    io = B * Tout * I + B * Tin * K + 2 * B * H + B * Tout * (H + K) + params
    fwd = Cost(flops, elem_bytes * io)
    return fwd if mode == "inference" else training_cost(fwd, elem_bytes * io)


# ------------------------------------------------------------------------------ setup


def _tf32_follows():
    """The TF32 flag fastgru's decoder follows: its recurrence follows cudnn.allow_tf32 (as
    fastgru.GRU, with 3xTF32), its GEMMs and attention kernels matmul.allow_tf32; it may use TF32
    where either is set, so name the one that is set (matmul when it is, else cudnn)."""
    return "matmul" if torch.backends.cuda.matmul.allow_tf32 else "cudnn"


def decoder_setup(case: Case, device, copies: int = 1) -> Setup:
    if case.op not in OPS:
        raise ValueError(f"decoder_setup: unknown op {case.op!r}; choose from {OPS}")
    s, dtype = case.shape, case.torch_dtype
    training = case.op == "attention_decoder"
    if training != (case.mode == "training"):
        raise ValueError(f"{case.op} runs in mode {'training' if training else 'inference'}, not {case.mode!r}")
    B, Tin, I, H, K, A = s["B"], s["Tin"], s["I"], s["H"], s["K"], s["A"]
    Tout = s["Tout"] if training else 1
    gen = torch.Generator().manual_seed(case.seed)
    P = _params(I, H, K, A, gen, device, dtype)
    shapes = {n: t.shape for n, t in P.items()}
    lengths = torch.randint(max(1, Tin // 2), Tin + 1, (B,), generator=gen)
    lengths[0] = Tin
    lengths = lengths.to(device)
    ignore = torch.arange(Tin, device=lengths.device)[None, :] >= lengths[:, None]  # (B, Tin), True = padding
    sets = [_inputs(training, B, Tout, Tin, I, H, K, gen, device, dtype) for _ in range(copies)]

    def prepared(run_train, make_step, named, backend=None):
        """``run_train(inputs) -> (outputs, contexts, h_n)`` (training), ``make_step(inputs) ->
        step_fn`` (decoding: builds the copy's state once, outside the timed step)."""
        if training:
            calls = [_train_step(run_train, inp, [p for _, p in named], g) for inp, g in sets]
            return Prepared(calls, lambda: _train_results(run_train, sets[0][0], named, sets[0][1], shapes),
                            backend=backend)
        step_fns = [make_step(inp) for inp, _ in sets]
        return Prepared([_decode_step(f) for f in step_fns], lambda: _decode_results(step_fns[0]), backend=backend)

    def fused():
        mod = fastgru.AttentionGRUDecoder(I, H, K, attention="additive", attention_size=A, device=device, dtype=dtype)
        mod.load_state_dict(P)

        def run_train(i):
            out, ctx, _, h_n = mod(i["inputs"], i["keys"], key_lengths=lengths, h0=i["h0"][None])
            return out, ctx, h_n

        def make_step(i):
            with torch.no_grad():
                state = mod.init_state(i["keys"], key_lengths=lengths, h0=i["h0"][None])

            def step_fn():
                out, nxt = mod.step(i["x"], state)
                return out, nxt.context
            return step_fn
        return prepared(run_train, make_step, list(mod.named_parameters()), backend_name(device))

    def tutorial(compiled):
        def prepare():
            mod = tutorial_decoder(P, device, dtype)
            named = _tutorial_named(mod)
            if training:
                fn = compile_cold(mod) if compiled else mod
                prep = prepared(lambda i: fn(i["inputs"], i["keys"], ignore, i["h0"]), None, named)
            else:
                fn = compile_cold(mod.forward_step) if compiled else mod.forward_step

                def make_step(i):
                    with torch.no_grad():
                        kp = mod.Ua(i["keys"])
                    return lambda: fn(i["x"], i["h0"], i["keys"], kp, ignore)
                prep = prepared(None, make_step, named)
            # A compiled one's first call compiles (forward, and backward in training); its time is kept apart.
            return compiled_prepared(prep) if compiled else prep
        return prepare

    def reference_results():
        P64 = {k: v.detach().double().requires_grad_(training) for k, v in P.items()}
        layers = [(P64["gru.weight_ih_l0"], P64["gru.weight_hh_l0"], P64["gru.bias_ih_l0"], P64["gru.bias_hh_l0"])]
        wq, wk, bk, v = P64["query_proj.weight"], P64["key_proj.weight"], P64["key_proj.bias"], P64["v"]
        inp = {k: t.double() for k, t in sets[0][0].items()}
        if training:
            def run(i):
                out, ctx, _, h_n = reference.attention_decoder(i["inputs"], i["keys"], i["h0"][None], layers,
                                                               "additive", query_weight=wq, key_weight=wk,
                                                               key_bias=bk, v=v, lengths=lengths)
                return out, ctx, h_n
            return _train_results(run, inp, list(P64.items()), tuple(g.double() for g in sets[0][1]), shapes)

        def step_fn():
            keys = inp["keys"]
            attend = reference.decoder_attention("additive", keys, reference.decoder_keys("additive", keys, wk, bk),
                                                 wq, v, lengths)
            h, ctx, _ = reference.decoder_step(inp["x"], inp["h0"][None], keys.new_zeros(B, K), layers, "additive",
                                               attend)
            return h[-1], ctx
        return _decode_results(step_fn)

    providers = {"fastgru": fused, "eager_ref": tutorial(False), "compiled_ref": tutorial(True)}
    elem = torch.tensor([], dtype=dtype).element_size()
    cost = decoder_cost(case.op, B, Tin, I, H, K, A, Tout, case.mode, elem)
    in_bytes = elem * sum(t.numel() for t in sets[0][0].values())
    if not training:
        in_bytes += elem * B * Tin * A  # the state's projected keys
    # The tutorial decoder run eagerly in the case dtype is PyTorch's own result: fastgru may be at most 2x worse.
    return Setup(reference_results, providers, ("fastgru",), "eager_ref", B * Tout, cost, in_bytes,
                 tf32_follows=_tf32_follows())
