"""The attention GRU decoder: every path (the fused one-layer kernel, Luong without input feeding
through the layer and attention kernels, deeper stacks step by step, the CPU default) against
the float64 reference and against the unfused PyTorch modules a user would write (below),
outputs and every gradient; the step API against teacher forcing; fp32/bf16 to the numerics
contract; the custom op (opcheck), torch.compile, and the errors."""

import pytest
import torch
from torch import nn

import fastgru
from fastgru import backend, reference
from fastgru.ops import decoder as dec_ops
from fastgru.testing import check_close

from helpers import forward_backward

N, T_OUT, T_IN, I, H, A = 3, 4, 5, 6, 8, 7

CONFIGS = {  # id -> (attention, input_feeding, key size)
    "additive": ("additive", False, 10),
    "general-feeding": ("general", True, 10),
    "dot-feeding": ("dot", True, H),
    "general": ("general", False, 10),
}


def _decoder(name, num_layers=1, dtype=torch.float64, device="cpu", bias=True):
    attention, feeding, K = CONFIGS[name]
    return fastgru.AttentionGRUDecoder(I, H, K, attention=attention, input_feeding=feeding, num_layers=num_layers,
                                       attention_size=A if attention == "additive" else None, bias=bias,
                                       device=device, dtype=dtype)


def _data(dec, dtype=torch.float64, device="cpu", masked=True):
    x = torch.randn(N, T_OUT, I, dtype=dtype, device=device, requires_grad=True)
    keys = torch.randn(N, T_IN, dec.key_size, dtype=dtype, device=device, requires_grad=True)
    h0 = torch.randn(dec.num_layers, N, H, dtype=dtype, device=device, requires_grad=True)
    lengths = mask = None
    if masked:
        lengths = torch.tensor([T_IN, 2, 0], device=device)  # a full row, a short one, a fully masked one
        mask = torch.zeros(N, T_IN, dtype=torch.bool, device=device)
        mask[0, 1] = True
    return x, keys, h0, lengths, mask


def _run(dec, x, keys, h0, lengths, mask, which):
    """Outputs and gradients (inputs, h0, every parameter) of the decoder on backend ``which``."""
    leaves = [x, keys, h0, *dec.parameters()]
    with backend.using(which):
        outs = dec(x, keys, key_lengths=lengths, key_padding_mask=mask, h0=h0, need_weights=True)
    gen = torch.Generator().manual_seed(0)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)).sum() for o in outs)
    return [o.detach() for o in outs], list(torch.autograd.grad(loss, leaves))


def _names(dec):
    return ["x", "keys", "h0"] + [n for n, _ in dec.named_parameters()]


def _check_all(dec, got, ref, dtype, baseline=None, tf32=False):
    names = ["outputs", "contexts", "weights", "h_n"] + _names(dec)
    base = [None] * len(names) if baseline is None else baseline[0] + baseline[1]
    for name, g, r, b in zip(names, got[0] + got[1], ref[0] + ref[1], base):
        check_close(g, r, dtype, baseline=b, tf32=tf32, name=name)


# ------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernels_match_the_reference_fp64(name, num_layers):
    """Layer 1: the fused decoder (additive, input feeding) or the layer + attention kernels
    (Luong unfed); 2 layers: step by step through the fused cell and attention kernels."""
    dec = _decoder(name, num_layers)
    data = _data(dec)
    _check_all(dec, _run(dec, *data, "interpret"), _run(dec, *data, "reference"), torch.float64)


@pytest.mark.parametrize("name", ["additive", "dot-feeding"])
def test_cpu_default_matches_the_reference(name):
    dec = _decoder(name)
    data = _data(dec)
    _check_all(dec, _run(dec, *data, "torch"), _run(dec, *data, "reference"), torch.float64)


def test_no_bias_and_no_masks():
    dec = _decoder("additive", bias=False)
    data = _data(dec, masked=False)
    _check_all(dec, _run(dec, *data, "interpret"), _run(dec, *data, "reference"), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["additive", "general-feeding"])
def test_fused_decoder_meets_the_contract(name, dtype):
    """Against float64, never worse than 2x the same math in PyTorch ops in the same dtype."""
    dec = _decoder(name)
    data64 = _data(dec)
    ref = _run(dec, *data64, "reference")
    low = dec.to(dtype)
    data = [t.detach().to(dtype).requires_grad_() if t is not None and t.is_floating_point() else t for t in data64]
    got = _run(low, *data, "interpret")
    base = _run(low, *data, "reference")
    _check_all(low, got, ref, dtype, baseline=base)


# ------------------------------------------------------------------------------ the unfused modules


class TutorialAttnDecoder(nn.Module):
    """The unfused Bahdanau decoder as the PyTorch seq2seq tutorial writes it (AttnDecoderRNN):
    per step the query projection, tanh(W h + U k), the score layer, softmax, bmm, cat, GRU."""

    def __init__(self, I, H, K, A):
        super().__init__()
        self.Wa, self.Ua, self.Va = nn.Linear(H, A, bias=False), nn.Linear(K, A), nn.Linear(A, 1, bias=False)
        self.gru = nn.GRU(I + K, H, batch_first=True)

    def forward(self, x, keys, h):
        outs = []
        for t in range(x.shape[1]):
            scores = self.Va(torch.tanh(self.Wa(h.permute(1, 0, 2)) + self.Ua(keys))).squeeze(2).unsqueeze(1)
            context = torch.bmm(torch.softmax(scores, dim=-1), keys)
            out, h = self.gru(torch.cat([x[:, t : t + 1], context], dim=2), h)
            outs.append(out)
        return torch.cat(outs, dim=1), h


class LuongFeedingDecoder(nn.Module):
    """Luong's general attention with input feeding of the context: GRUCell, then bmm scores."""

    def __init__(self, I, H, K):
        super().__init__()
        self.cell, self.Wa = nn.GRUCell(I + K, H), nn.Linear(K, H, bias=False)

    def forward(self, x, keys, h):
        c, outs = keys.new_zeros(keys.shape[0], keys.shape[2]), []
        for t in range(x.shape[1]):
            h = self.cell(torch.cat([x[:, t], c], dim=1), h)
            w = torch.softmax(torch.bmm(self.Wa(keys), h[:, :, None]), dim=1)  # (N, T_in, 1)
            c = (w * keys).sum(1)
            outs.append(h)
        return torch.stack(outs, 1), h[None]


def test_matches_the_tutorial_decoder():
    dec = _decoder("additive")
    tut = TutorialAttnDecoder(I, H, dec.key_size, A).double()
    with torch.no_grad():
        tut.Wa.weight.copy_(dec.query_proj.weight)
        tut.Ua.weight.copy_(dec.key_proj.weight)
        tut.Ua.bias.copy_(dec.key_proj.bias)
        tut.Va.weight.copy_(dec.v[None])
        for name, p in tut.gru.named_parameters():
            p.copy_(getattr(dec.gru, name))
    x, keys, h0, _, _ = _data(dec, masked=False)
    out, h_n = tut(x, keys, h0)
    with backend.using("interpret"):
        got, _, _, got_h = dec(x, keys, h0=h0)
    check_close(got, out, torch.float64, name="outputs")
    check_close(got_h, h_n, torch.float64, name="h_n")
    g_ref = torch.autograd.grad((out * out).sum(), [x, keys, h0, tut.gru.weight_ih_l0, tut.Ua.weight])
    g_got = torch.autograd.grad((got * got).sum(), [x, keys, h0, dec.gru.weight_ih_l0, dec.key_proj.weight])
    for name, g, r in zip(["x", "keys", "h0", "weight_ih_l0", "key_proj.weight"], g_got, g_ref):
        check_close(g, r, torch.float64, name=name)


def test_matches_luong_general_with_input_feeding():
    dec = _decoder("general-feeding")
    ref = LuongFeedingDecoder(I, H, dec.key_size).double()
    with torch.no_grad():
        ref.Wa.weight.copy_(dec.key_proj.weight)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref.cell, name).copy_(getattr(dec.gru, name + "_l0"))
    x, keys, h0, _, _ = _data(dec, masked=False)
    out, h_n = ref(x, keys, h0[0])
    with backend.using("interpret"):
        got, _, _, got_h = dec(x, keys, h0=h0)
    check_close(got, out, torch.float64, name="outputs")
    check_close(got_h, h_n, torch.float64, name="h_n")
    g_ref = torch.autograd.grad(out.square().sum(), [x, keys, ref.Wa.weight])
    g_got = torch.autograd.grad(got.square().sum(), [x, keys, dec.key_proj.weight])
    for name, g, r in zip(["x", "keys", "key_proj.weight"], g_got, g_ref):
        check_close(g, r, torch.float64, name=name)


# ------------------------------------------------------------------------------ step by step


@pytest.mark.parametrize("which", ["interpret", "torch"])
@pytest.mark.parametrize("name, num_layers", [("additive", 1), ("dot-feeding", 1), ("general", 1), ("additive", 2)])
def test_steps_equal_teacher_forcing(name, num_layers, which):
    dec = _decoder(name, num_layers)
    x, keys, h0, lengths, mask = _data(dec)
    with torch.no_grad(), backend.using(which):
        out, ctx, _, h_n = dec(x, keys, key_lengths=lengths, key_padding_mask=mask, h0=h0)
        state = dec.init_state(keys, key_lengths=lengths, key_padding_mask=mask, h0=h0)
        for t in range(T_OUT):
            o, state = dec.step(x[:, t], state)
            check_close(o, out[:, t], torch.float64, name=f"output {t}")
            check_close(state.context, ctx[:, t], torch.float64, name=f"context {t}")
    check_close(state.h, h_n, torch.float64, name="h_n")


def test_greedy_decode_feeds_back_its_argmax():
    vocab = 5
    dec = _decoder("additive")
    embed, proj = nn.Embedding(vocab, I).double(), nn.Linear(H + dec.key_size, vocab).double()
    _, keys, h0, lengths, _ = _data(dec)
    project = lambda o, c: proj(torch.cat([o, c], -1))  # noqa: E731
    with backend.using("interpret"):
        tokens = fastgru.greedy_decode(dec, embed, project, keys, 0, 3, key_lengths=lengths, h0=h0)
    assert tokens.shape == (N, 3) and tokens.dtype == torch.int64
    with torch.no_grad():  # the same loop by hand, on the reference
        state = dec.init_state(keys, key_lengths=lengths, h0=h0)
        tok = torch.zeros(N, dtype=torch.int64)
        for t in range(3):
            with backend.using("reference"):
                o, state = dec.step(embed(tok), state)
            tok = project(o, state.context).argmax(-1)
            assert torch.equal(tok, tokens[:, t])


# ------------------------------------------------------------------------------ the op, compile, module


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_opcheck_decoder(score):
    K = 6 if score == "additive" else H
    F = A if score == "additive" else H
    r = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)  # noqa: E731
    v, wq = (r(F), r(F, H)) if score == "additive" else (None, None)
    args = (r(N, T_OUT, 3 * H), r(N, T_IN, K), r(N, T_IN, F), v, wq, r(3 * H, K), r(3 * H, H), r(H), r(N, H),
            torch.tensor([5, 3, 1]), None, score, True, True)
    torch.library.opcheck(dec_ops.decoder_fwd, args)


def test_torch_compile_fullgraph():
    dec = _decoder("additive")
    x, keys, h0, lengths, mask = _data(dec)
    eager = forward_backward_decoder(dec, x, keys, h0, lengths)
    compiled = torch.compile(dec, fullgraph=True, backend="aot_eager")
    got = forward_backward_decoder(compiled, x, keys, h0, lengths)
    for g, e in zip(got, eager):
        torch.testing.assert_close(g, e)


def forward_backward_decoder(module, x, keys, h0, lengths):
    out, ctx, _, h_n = module(x, keys, key_lengths=lengths, h0=h0)
    loss = out.square().sum() + ctx.sum() + h_n.sum()
    return [out.detach(), *torch.autograd.grad(loss, [x, keys, h0])]


def test_parameters_state_dict_and_repr():
    dec = _decoder("additive")
    sd = dec.state_dict()
    assert tuple(sd["gru.weight_ih_l0"].shape) == (3 * H, I + dec.key_size)  # input [x_t, c_t]
    assert set(sd) == {"gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0",
                       "query_proj.weight", "key_proj.weight", "key_proj.bias", "v"}
    assert set(_decoder("general").state_dict()) == {"gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0",
                                                     "gru.bias_hh_l0", "key_proj.weight"}
    assert tuple(_decoder("general").gru.weight_ih_l0.shape) == (3 * H, I)  # no feeding: x_t alone
    assert "attention='additive'" in repr(dec) and "attention_size=7" in repr(dec)


def test_the_fused_path_is_one_launch_each_way(monkeypatch):
    """Forward and backward of the one-layer decoder each launch the decoder kernel once,
    whatever T_out (the backward's other launches are the attention kernels' key side)."""
    from fastgru.launchers import decoder as launcher

    names = []
    real = launcher.launch
    monkeypatch.setattr(launcher, "launch", lambda *a, **k: (names.append(a[0].__name__), real(*a, **k))[1])
    dec = _decoder("additive")
    x, keys, h0, lengths, mask = _data(dec)
    with backend.using("interpret"):
        out, _, _, _ = dec(x, keys, key_lengths=lengths, h0=h0)
        out.sum().backward()
    assert names == ["decoder_fwd_kernel", "decoder_bwd_kernel"]


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(attention="concat"), ValueError, "attention must be one of"),
    (dict(attention="additive", input_feeding=True), ValueError, "input_feeding applies"),
    (dict(attention="dot", key_size=5), ValueError, "key_size"),
    (dict(attention="general", attention_size=4), ValueError, "attention_size applies"),
    (dict(hidden_size=0), ValueError, "hidden_size must be a positive int"),
    (dict(input_feeding=1), TypeError, "input_feeding must be a bool"),
])
def test_constructor_errors(kwargs, error, match):
    args = {**dict(input_size=I, hidden_size=H, key_size=H), **kwargs}
    with pytest.raises(error, match=match):
        fastgru.AttentionGRUDecoder(**args)


def test_forward_errors_name_the_argument():
    dec = _decoder("additive")
    x, keys, h0, _, _ = _data(dec)
    with pytest.raises(ValueError, match="inputs must be"):
        dec(x[0], keys)
    with pytest.raises(ValueError, match="batch size"):
        dec(x[:2], keys)
    with pytest.raises(ValueError, match="w_ih must have shape"):
        dec(x[..., :-1], keys)
    with pytest.raises(ValueError, match="h0 must have shape"):
        dec(x, keys, h0=h0[:, :2])
    with pytest.raises(ValueError, match="lengths must lie in"):
        dec(x, keys, key_lengths=torch.tensor([1, 2, T_IN + 1]))
    with pytest.raises(TypeError, match="dtype"):
        dec(x.float(), keys)
    with pytest.raises(TypeError, match="key_padding_mask must have dtype torch.bool"):
        dec(x, keys, key_padding_mask=torch.zeros(N, T_IN))
    state = dec.init_state(keys)
    with pytest.raises(TypeError, match="state must be a DecoderState"):
        dec.step(x[:, 0], tuple(state))
    with pytest.raises(ValueError, match="batch size"):
        dec.step(x[:2, 0], state)
