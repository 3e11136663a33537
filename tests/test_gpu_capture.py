"""Every module captured in a CUDA graph, forward (inference) and forward + backward (training,
static inputs), replayed and compared bitwise with an eager call of the same strategy on the
same inputs. GPU only; tests/test_host_sync.py checks the same call paths
for host synchronisation on the CPU.

A capture needs a warm-up first: the first call compiles (and, for attention, autotunes) the
Triton kernels, which synchronises. ``_capture`` warms up on a side stream, as PyTorch's
documentation does, then captures. Dropout cannot be compared with an eager call (the graph
draws its own numbers), so its test checks what is checkable: every replay draws a new mask,
the same torch.manual_seed before a replay repeats it, and a replay's context and gradients
agree with the weights that replay returned.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastgru

pytestmark = pytest.mark.gpu

DEV = "cuda"
T, N, I, H = 12, 4, 16, 32


def _capture(fn):
    """Warm ``fn`` up on a side stream (compiling, autotuning), capture one call in a graph.
    Returns (graph, the static outputs the replays overwrite)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if out is None:
        return []
    return [t for o in out for t in _flat(o)]


def _same_as_eager(fn):
    """Capture ``fn`` (static inputs), replay it, and compare every output bitwise with an eager
    call on the same inputs. Returns (graph, its static outputs)."""
    graph, static = _capture(fn)
    graph.replay()
    torch.cuda.synchronize()
    replayed = [t.clone() for t in _flat(static)]
    eager = _flat(fn())
    assert len(replayed) == len(eager)
    for i, (r, e) in enumerate(zip(replayed, eager)):
        assert torch.equal(r, e), f"output {i} {tuple(r.shape)}: replay differs from eager"
    return graph, static


def _training(module, inputs, call):
    """forward + backward as one function of static inputs: the outputs and the gradients of a
    fixed loss with respect to every parameter and every floating input that requires grad."""
    wrt = [*module.parameters(), *[x for x in inputs if x.requires_grad]]

    def fn():
        outs = [o for o in _flat(call()) if o.is_floating_point()]
        loss = sum((o.float() * (k + 1)).sum() for k, o in enumerate(outs))
        return [o.detach() for o in outs], torch.autograd.grad(loss, wrt)

    return fn


def _inference(call):
    def fn():
        with torch.no_grad():
            return call()

    return fn


MODES = ["inference", "training"]


# ------------------------------------------------------------------------------ GRU


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent", None])
def test_gru(strategy, dtype, mode):
    """Each strategy forced, and the dispatcher's choice; lengths on the device."""
    gru = fastgru.GRU(I, H, num_layers=2, bidirectional=True, strategy=strategy, device=DEV, dtype=dtype)
    x = torch.randn(T, N, I, device=DEV, dtype=dtype, requires_grad=mode == "training")
    h0 = torch.randn(4, N, H, device=DEV, dtype=dtype)
    lengths = torch.tensor([T, 3, 7, 1], device=DEV)
    _same_as_eager_after_new_values(gru, x, lengths, lambda: gru(x, h0, lengths=lengths), mode)


def _same_as_eager_after_new_values(module, x, lengths, call, mode):
    """A recurrent module's call captured and compared with eager (``_same_as_eager``); then its
    static inputs get new values (x negated, other lengths) and a replay must read them anew."""
    fn = _training(module, [x], call) if mode == "training" else _inference(call)
    graph, static = _same_as_eager(fn)
    with torch.no_grad():
        x.mul_(-1)
        lengths.copy_(torch.tensor([2, T, 1, 5], device=DEV))
    graph.replay()
    for r, e in zip(_flat(static), _flat(fn())):
        assert torch.equal(r, e), "a replay after new input values differs from eager on them"


@pytest.mark.parametrize("mode", MODES)
def test_gru_cudnn(mode):
    """strategy='cudnn' (PyTorch's own operator, where the dispatcher's table sends a call):
    inference bitwise; training within fp32's limit, cuDNN's RNN backward not being promised
    bitwise repeatable."""
    gru = fastgru.GRU(I, H, num_layers=2, strategy="cudnn", device=DEV)
    x = torch.randn(T, N, I, device=DEV, requires_grad=mode == "training")
    call = lambda: gru(x)  # noqa: E731
    if mode == "inference":
        _same_as_eager(_inference(call))
        return
    fn = _training(gru, [x], call)
    graph, static = _capture(fn)
    graph.replay()
    torch.cuda.synchronize()
    for r, e in zip(_flat(static), _flat(fn())):
        torch.testing.assert_close(r, e, rtol=1e-5, atol=1e-6)


def test_gru_make_graphed_callables():
    """torch.cuda.make_graphed_callables (separate forward and backward graphs), bf16 training."""
    gru = fastgru.GRU(I, H, device=DEV, dtype=torch.bfloat16)
    x = torch.randn(T, N, I, device=DEV, dtype=torch.bfloat16, requires_grad=True)
    graphed = torch.cuda.make_graphed_callables(gru, (x,))
    out, h_n = graphed(x)
    (out.float().sum() + 2 * h_n.float().sum()).backward()
    got = [x.grad.clone(), *[p.grad.clone() for p in gru.parameters()], out.detach().clone()]
    x.grad = None
    gru.zero_grad(set_to_none=True)
    out, h_n = gru(x)
    (out.float().sum() + 2 * h_n.float().sum()).backward()
    want = [x.grad, *[p.grad for p in gru.parameters()], out.detach()]
    for i, (g, w) in enumerate(zip(got, want)):
        assert torch.equal(g, w), f"quantity {i}: graphed differs from eager"


@pytest.mark.parametrize("family", ["GRU", "LSTM"])
def test_packed_capture(family):
    """A PackedSequence input (enforce_sorted=False), packed before the capture."""
    module = getattr(fastgru, family)(I, H, bidirectional=True, device=DEV)
    packed = pack_padded_sequence(torch.randn(T, N, I, device=DEV), torch.tensor([3, T, 1, 7]), enforce_sorted=False)
    data = packed.data.requires_grad_()  # packing itself (a sort of host lengths) happens before the capture
    def call():
        out, state = module(packed)
        return out.data, state

    _same_as_eager(_training(module, [data], call))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gru_cell(dtype, mode):
    cell = fastgru.GRUCell(I, H, device=DEV, dtype=dtype)
    x = torch.randn(N, I, device=DEV, dtype=dtype, requires_grad=mode == "training")
    h = torch.randn(N, H, device=DEV, dtype=dtype)
    call = lambda: cell(x, cell(x, h))  # noqa: E731
    _same_as_eager(_training(cell, [x], call) if mode == "training" else _inference(call))


# ------------------------------------------------------------------------------ LSTM


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,proj", [(torch.bfloat16, 0), (torch.float32, 8)], ids=["bf16", "fp32-proj"])
@pytest.mark.parametrize("strategy", ["rows", "stepwise", "persistent", None])
def test_lstm(strategy, dtype, proj, mode):
    """Each strategy forced, and the dispatcher's choice; lengths on the device; with and without
    a projection."""
    lstm = fastgru.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=proj, strategy=strategy, device=DEV,
                        dtype=dtype)
    x = torch.randn(T, N, I, device=DEV, dtype=dtype, requires_grad=mode == "training")
    hx = (torch.randn(4, N, proj or H, device=DEV, dtype=dtype), torch.randn(4, N, H, device=DEV, dtype=dtype))
    lengths = torch.tensor([T, 3, 7, 1], device=DEV)
    _same_as_eager_after_new_values(lstm, x, lengths, lambda: lstm(x, hx, lengths=lengths), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_lstm_cell(dtype, mode):
    cell = fastgru.LSTMCell(I, H, device=DEV, dtype=dtype)
    x = torch.randn(N, I, device=DEV, dtype=dtype, requires_grad=mode == "training")
    hx = (torch.randn(N, H, device=DEV, dtype=dtype), torch.randn(N, H, device=DEV, dtype=dtype))
    call = lambda: cell(x, cell(x, hx))  # noqa: E731
    _same_as_eager(_training(cell, [x], call) if mode == "training" else _inference(call))


# ------------------------------------------------------------------------------ attention


def _masks():
    mask = torch.zeros(N, T, dtype=torch.bool, device=DEV)
    mask[1, 5:] = True
    return dict(lengths=torch.tensor([T, 4, 0, 9], device=DEV), key_padding_mask=mask)


def _attention_case(name):
    """(module, inputs, call) of one attention module with both masks, weights returned."""
    q, k = torch.randn(N, 3, I, device=DEV), torch.randn(N, T, I, device=DEV)
    m = _masks()
    if name == "pooling":
        mod = fastgru.AttentionPooling(I, 8, device=DEV)
        return mod, [k], lambda: mod(k, need_weights=True, **m)
    if name == "pooling-hops":
        mod = fastgru.AttentionPooling(I, 8, num_heads=3, device=DEV)
        return mod, [k], lambda: mod(k, need_weights=True, **m)
    if name == "additive-heads":
        mod = fastgru.AdditiveAttention(I, I, 8, num_heads=2, device=DEV)
        return mod, [q, k], lambda: mod(q, k, need_weights=True, **m)
    if name == "general":
        mod = fastgru.DotAttention(I, I, method="general", device=DEV)
        return mod, [q, k], lambda: mod(q, k, need_weights=True, **m)
    mod = fastgru.DotAttention(I, I, method="projected", num_heads=2, device=DEV)  # "projected"
    return mod, [q, k], lambda: mod(q, k, need_weights=name.endswith("weights"), **m)


_ATTENTION = [(name, mode) for name in ("pooling", "pooling-hops", "additive-heads", "general", "projected-weights")
              for mode in MODES] + [("projected-sdpa", "inference")]  # SDPA's own backward: not ours to pin


@pytest.mark.parametrize("name,mode", _ATTENTION)
def test_attention(name, mode):
    mod, inputs, call = _attention_case(name)
    if mode == "training":
        for x in inputs:
            x.requires_grad_()
    _same_as_eager(_training(mod, inputs, call) if mode == "training" else _inference(call))


def test_attention_dropout():
    """What dropout allows to check: replays draw new masks, the same seed repeats a replay,
    and a replay's context and value gradient agree with the weights it returned."""
    att = fastgru.DotAttention(I, I, num_heads=2, dropout=0.5, device=DEV).train()
    q, k = torch.randn(N, 3, I, device=DEV), torch.randn(N, T, I, device=DEV)
    v = torch.randn(N, T, 8, device=DEV, requires_grad=True)

    def fn():
        ctx, w = att(q, k, v, need_weights=True, average_attn_weights=False)
        (dv,) = torch.autograd.grad(ctx.sum(), [v])
        return ctx.detach(), w.detach(), dv

    graph, (ctx, w, dv) = _capture(fn)
    torch.manual_seed(7)
    graph.replay()
    first = [t.clone() for t in (ctx, w, dv)]
    graph.replay()
    assert not torch.equal(first[1] != 0, w != 0), "two replays drew the same dropout mask"
    torch.manual_seed(7)
    graph.replay()
    assert all(torch.equal(a, b) for a, b in zip(first, (ctx, w, dv))), "the same seed did not repeat the replay"
    # Per head (N, 2, Tq, T): the context is the returned weights times the values, and the
    # values' gradient of sum(ctx) the weights summed over the queries.
    vh = v.detach().view(N, T, 2, 4).transpose(1, 2)
    torch.testing.assert_close(ctx.view(N, 3, 2, 4).transpose(1, 2), w @ vh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dv.view(N, T, 2, 4).transpose(1, 2), w.sum(2)[..., None].expand(-1, -1, -1, 4),
                               rtol=1e-5, atol=1e-5)


def test_gru_attention():
    model = fastgru.GRUAttention(I, H, 3, num_layers=2, bidirectional=True, device=DEV)
    x = torch.randn(N, T, I, device=DEV, requires_grad=True)
    lengths = torch.tensor([T, 1, 5, 8], device=DEV)
    _same_as_eager(_training(model, [x], lambda: model(x, lengths=lengths)))


# ------------------------------------------------------------------------------ decoder


@pytest.mark.parametrize("attention,input_feeding,layers", [("additive", False, 1), ("dot", False, 1),
                                                             ("general", True, 2)])
def test_decoder(attention, input_feeding, layers):
    """Teacher-forced training (the fused decoder, the unfed Luong path, the step-by-step stack)."""
    K = H if attention == "dot" else I
    dec = fastgru.AttentionGRUDecoder(I, H, K, attention=attention, input_feeding=input_feeding, num_layers=layers,
                                      device=DEV)
    x = torch.randn(N, 5, I, device=DEV, requires_grad=True)
    keys = torch.randn(N, T, K, device=DEV, requires_grad=True)
    lengths = torch.tensor([T, 4, 1, 9], device=DEV)
    _same_as_eager(_training(dec, [x, keys], lambda: dec(x, keys, key_lengths=lengths, need_weights=True)))


def test_decoder_step():
    """One decoding step captured (inference), the state carried in static buffers."""
    dec = fastgru.AttentionGRUDecoder(I, H, I, device=DEV)
    keys = torch.randn(N, T, I, device=DEV)
    state = dec.init_state(keys, key_lengths=torch.tensor([T, 4, 1, 9], device=DEV))
    x = torch.randn(N, I, device=DEV)
    _same_as_eager(_inference(lambda: dec.step(x, state)))
